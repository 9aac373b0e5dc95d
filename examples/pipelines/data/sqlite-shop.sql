-- The sqlite example's database, made from this file with
-- python3 -c "import sqlite3; sqlite3.connect('examples/pipelines/data/sqlite-shop.db').executescript(open('examples/pipelines/data/sqlite-shop.sql').read())"
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer TEXT NOT NULL,
  country TEXT,
  amount REAL,
  paid BOOLEAN,
  ordered_at DATETIME
);
INSERT INTO orders VALUES (1, 'customer-1', 'DE', 788.25, 1, '2026-02-02T01:30:00Z');
INSERT INTO orders VALUES (2, 'customer-2', 'FR', 657.85, 0, '2026-03-03T02:30:00Z');
INSERT INTO orders VALUES (3, 'customer-3', 'BE', 262.70, 1, '2026-04-04T03:30:00Z');
INSERT INTO orders VALUES (4, 'customer-4', 'US', 882.26, 0, '2026-05-05T04:30:00Z');
INSERT INTO orders VALUES (5, 'customer-5', 'NL', 110.67, 1, '2026-06-06T05:30:00Z');
INSERT INTO orders VALUES (6, 'customer-6', 'DE', 379.22, 0, '2026-07-07T06:30:00Z');
INSERT INTO orders VALUES (7, 'customer-7', 'FR', 682.64, 1, '2026-08-08T07:30:00Z');
INSERT INTO orders VALUES (8, 'customer-8', 'BE', 141.03, 0, '2026-09-09T08:30:00Z');
INSERT INTO orders VALUES (9, 'customer-0', 'US', 442.62, 1, '2026-10-10T09:30:00Z');
INSERT INTO orders VALUES (10, 'customer-1', 'NL', 40.09, 0, '2026-11-11T10:30:00Z');
INSERT INTO orders VALUES (11, 'customer-2', 'DE', 603.05, 1, '2026-12-12T11:30:00Z');
INSERT INTO orders VALUES (12, 'customer-3', 'FR', 689.29, 0, '2026-01-13T12:30:00Z');
INSERT INTO orders VALUES (13, 'customer-4', 'BE', NULL, 1, '2026-02-14T13:30:00Z');
INSERT INTO orders VALUES (14, 'customer-5', 'US', 517.86, 0, '2026-03-15T14:30:00Z');
INSERT INTO orders VALUES (15, 'customer-6', 'NL', 788.55, 1, '2026-04-16T15:30:00Z');
INSERT INTO orders VALUES (16, 'customer-7', 'DE', 285.80, 0, '2026-05-17T16:30:00Z');
INSERT INTO orders VALUES (17, 'customer-8', 'FR', 627.29, 1, '2026-06-18T17:30:00Z');
INSERT INTO orders VALUES (18, 'customer-0', 'BE', 536.96, 0, '2026-07-19T18:30:00Z');
INSERT INTO orders VALUES (19, 'customer-1', 'US', 524.01, 1, '2026-08-20T19:30:00Z');
INSERT INTO orders VALUES (20, 'customer-2', 'NL', 413.30, 0, '2026-09-21T20:30:00Z');
INSERT INTO orders VALUES (21, 'customer-3', 'DE', 756.77, 1, '2026-10-22T21:30:00Z');
INSERT INTO orders VALUES (22, 'customer-4', 'FR', 850.49, 0, '2026-11-23T22:30:00Z');
INSERT INTO orders VALUES (23, 'customer-5', 'BE', 429.32, 1, '2026-12-24T23:30:00Z');
INSERT INTO orders VALUES (24, 'customer-6', 'US', 599.42, 0, '2026-01-25T00:30:00Z');
INSERT INTO orders VALUES (25, 'customer-7', 'NL', 59.30, 1, '2026-02-26T01:30:00Z');
INSERT INTO orders VALUES (26, 'customer-8', 'DE', NULL, 0, '2026-03-27T02:30:00Z');
INSERT INTO orders VALUES (27, 'customer-0', 'FR', 632.84, 1, '2026-04-01T03:30:00Z');
INSERT INTO orders VALUES (28, 'customer-1', 'BE', 584.18, 0, '2026-05-02T04:30:00Z');
INSERT INTO orders VALUES (29, 'customer-2', 'US', 893.82, 1, '2026-06-03T05:30:00Z');
INSERT INTO orders VALUES (30, 'customer-3', 'NL', 740.62, 0, '2026-07-04T06:30:00Z');
INSERT INTO orders VALUES (31, 'customer-4', 'DE', 259.71, 1, '2026-08-05T07:30:00Z');
INSERT INTO orders VALUES (32, 'customer-5', 'FR', 350.28, 0, '2026-09-06T08:30:00Z');
INSERT INTO orders VALUES (33, 'customer-6', 'BE', 603.44, 1, '2026-10-07T09:30:00Z');
INSERT INTO orders VALUES (34, 'customer-7', 'US', 25.19, 0, '2026-11-08T10:30:00Z');
INSERT INTO orders VALUES (35, 'customer-8', 'NL', 418.22, 1, '2026-12-09T11:30:00Z');
INSERT INTO orders VALUES (36, 'customer-0', 'DE', 155.40, 0, '2026-01-10T12:30:00Z');
INSERT INTO orders VALUES (37, 'customer-1', 'FR', 109.80, 1, '2026-02-11T13:30:00Z');
INSERT INTO orders VALUES (38, 'customer-2', 'BE', 57.76, 0, '2026-03-12T14:30:00Z');
INSERT INTO orders VALUES (39, 'customer-3', 'US', NULL, 1, '2026-04-13T15:30:00Z');
INSERT INTO orders VALUES (40, 'customer-4', 'NL', 692.57, 0, '2026-05-14T16:30:00Z');
INSERT INTO orders VALUES (41, 'customer-5', 'DE', 120.76, 1, '2026-06-15T17:30:00Z');
INSERT INTO orders VALUES (42, 'customer-6', 'FR', 226.62, 0, '2026-07-16T18:30:00Z');
INSERT INTO orders VALUES (43, 'customer-7', 'BE', 354.90, 1, '2026-08-17T19:30:00Z');
INSERT INTO orders VALUES (44, 'customer-8', 'US', 784.92, 0, '2026-09-18T20:30:00Z');
INSERT INTO orders VALUES (45, 'customer-0', 'NL', 77.12, 1, '2026-10-19T21:30:00Z');
INSERT INTO orders VALUES (46, 'customer-1', 'DE', 407.02, 0, '2026-11-20T22:30:00Z');
INSERT INTO orders VALUES (47, 'customer-2', 'FR', 496.75, 1, '2026-12-21T23:30:00Z');
INSERT INTO orders VALUES (48, 'customer-3', 'BE', 795.63, 0, '2026-01-22T00:30:00Z');
INSERT INTO orders VALUES (49, 'customer-4', 'US', 738.26, 1, '2026-02-23T01:30:00Z');
INSERT INTO orders VALUES (50, 'customer-5', 'NL', 778.27, 0, '2026-03-24T02:30:00Z');
