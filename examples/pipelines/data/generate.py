#!/usr/bin/env python3
"""Writes the example pipelines' test data from scripts/demo/data/iris.csv.

iris.csv    id, the four measurements (cm), species name; every 10th row
            has an empty sepal_width (a null for fill_null to complete).
iris.ndjson the same rows as newline-delimited JSON (nulls as null).

Run from the repository root: python3 examples/pipelines/data/generate.py
"""
import csv
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "..", "..", "..", "scripts", "demo", "data", "iris.csv")
names = ["setosa", "versicolor", "virginica"]
cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

rows = []
with open(src) as f:
    r = csv.reader(f)
    next(r)  # sklearn header: n_rows, n_features, class names
    for i, rec in enumerate(r, start=1):
        vals = [float(v) for v in rec[:4]]
        row = {"id": i}
        for c, v in zip(cols, vals):
            row[c] = v
        if i % 10 == 0:
            row["sepal_width"] = None
        row["species"] = names[int(rec[4])]
        rows.append(row)

with open(os.path.join(here, "iris.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["id"] + cols + ["species"])
    for row in rows:
        w.writerow([row["id"]] + ["" if row[c] is None else row[c] for c in cols] + [row["species"]])

with open(os.path.join(here, "iris.ndjson"), "w") as f:
    for row in rows:
        f.write(json.dumps(row) + "\n")
