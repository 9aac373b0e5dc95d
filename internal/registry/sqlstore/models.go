package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kilnai/kiln/internal/registry"
)

// CreateModel implements registry.Store.
func (s *Store) CreateModel(ctx context.Context, m registry.RegisteredModel) error {
	gates, err := json.Marshal(nonNilGates(m.Gates))
	if err != nil {
		return fmt.Errorf("encode gates: %w", err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, s.q(`INSERT INTO registry_models (name, description, gates, created_by, created_at, updated_by, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			m.Name, m.Description, string(gates), m.CreatedBy, micros(m.CreatedAt), m.UpdatedBy, micros(m.UpdatedAt)).Scan(&id)
		if isUnique(err) {
			return fmt.Errorf("%w: model %q", registry.ErrAlreadyExists, m.Name)
		}
		if err != nil {
			return fmt.Errorf("insert model %q: %w", m.Name, err)
		}
		return s.putTags(ctx, tx, "registry_model_tags", "model_id", id, m.Tags)
	})
}

func nonNilGates(g map[registry.Stage][]string) map[registry.Stage][]string {
	if g == nil {
		return map[registry.Stage][]string{}
	}
	return g
}

func (s *Store) putTags(ctx context.Context, tx *sql.Tx, table, col string, id int64, tags map[string]string) error {
	if len(tags) == 0 {
		return nil
	}
	stmt := s.q(`INSERT INTO ` + table + ` (` + col + `, key, value) VALUES (?, ?, ?)
		ON CONFLICT (` + col + `, key) DO UPDATE SET value = excluded.value`)
	for _, k := range sortedKeys(tags) {
		if _, err := tx.ExecContext(ctx, stmt, id, k, tags[k]); err != nil {
			return fmt.Errorf("set tag %q: %w", k, err)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const modelCols = `m.id, m.name, m.description, m.gates, m.next_version, m.created_by, m.created_at, m.updated_by, m.updated_at`

type modelRow struct {
	id int64
	m  registry.RegisteredModel
}

func scanModel(sc interface{ Scan(...any) error }) (modelRow, error) {
	var r modelRow
	var gates string
	var created, updated int64
	var next int64
	if err := sc.Scan(&r.id, &r.m.Name, &r.m.Description, &gates, &next, &r.m.CreatedBy, &created, &r.m.UpdatedBy, &updated); err != nil {
		return r, err
	}
	r.m.CreatedAt, r.m.UpdatedAt = fromMicros(created), fromMicros(updated)
	if err := json.Unmarshal([]byte(gates), &r.m.Gates); err != nil {
		return r, fmt.Errorf("decode gates of model %q: %w", r.m.Name, err)
	}
	if len(r.m.Gates) == 0 {
		r.m.Gates = nil
	}
	return r, nil
}

// GetModel implements registry.Store.
func (s *Store) GetModel(ctx context.Context, name string) (registry.RegisteredModel, error) {
	var out registry.RegisteredModel
	err := s.read(ctx, func(tx *sql.Tx) error {
		r, err := scanModel(tx.QueryRowContext(ctx, s.q(`SELECT `+modelCols+` FROM registry_models m WHERE m.name = ?`), name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: model %q", registry.ErrNotFound, name)
		}
		if err != nil {
			return fmt.Errorf("get model %q: %w", name, err)
		}
		ms, err := s.hydrateModels(ctx, tx, []modelRow{r})
		if err != nil {
			return err
		}
		out = ms[0]
		return nil
	})
	return out, err
}

// hydrateModels fills tags, aliases, latest version and latest version per
// stage of the rows, in a few batched queries.
func (s *Store) hydrateModels(ctx context.Context, q querier, rows []modelRow) ([]registry.RegisteredModel, error) {
	if len(rows) == 0 {
		return []registry.RegisteredModel{}, nil
	}
	byID := make(map[int64]*registry.RegisteredModel, len(rows))
	ids := make([]any, len(rows))
	out := make([]registry.RegisteredModel, len(rows))
	for i, r := range rows {
		out[i] = r.m
		out[i].Tags = map[string]string{}
		out[i].Aliases = map[string]int64{}
		out[i].LatestVersions = []registry.ModelVersion{}
		byID[r.id] = &out[i]
		ids[i] = r.id
	}
	in := placeholders(len(ids))
	// tags
	rs, err := q.QueryContext(ctx, s.q(`SELECT model_id, key, value FROM registry_model_tags WHERE model_id IN (`+in+`)`), ids...)
	if err != nil {
		return nil, fmt.Errorf("load model tags: %w", err)
	}
	for rs.Next() {
		var id int64
		var k, v string
		if err := rs.Scan(&id, &k, &v); err != nil {
			rs.Close()
			return nil, fmt.Errorf("load model tags: %w", err)
		}
		byID[id].Tags[k] = v
	}
	if err := closeRows(rs); err != nil {
		return nil, fmt.Errorf("load model tags: %w", err)
	}
	// aliases
	rs, err = q.QueryContext(ctx, s.q(`SELECT model_id, alias, version FROM registry_aliases WHERE model_id IN (`+in+`)`), ids...)
	if err != nil {
		return nil, fmt.Errorf("load aliases: %w", err)
	}
	for rs.Next() {
		var id, v int64
		var a string
		if err := rs.Scan(&id, &a, &v); err != nil {
			rs.Close()
			return nil, fmt.Errorf("load aliases: %w", err)
		}
		byID[id].Aliases[a] = v
	}
	if err := closeRows(rs); err != nil {
		return nil, fmt.Errorf("load aliases: %w", err)
	}
	// latest version per stage: one index seek per model and stage (a
	// GROUP BY over the versions would read every version of the models)
	vs, err := s.queryVersions(ctx, q, `WHERE v.id IN (SELECT (SELECT x.id FROM registry_versions x
		WHERE x.model_id = m.id AND x.stage = st.stage ORDER BY x.version DESC LIMIT 1)
		FROM registry_models m CROSS JOIN (`+stageTable+`) st WHERE m.id IN (`+in+`))`, ids...)
	if err != nil {
		return nil, fmt.Errorf("load latest versions: %w", err)
	}
	for _, v := range vs {
		m := byID[v.modelID]
		m.LatestVersions = append(m.LatestVersions, v.v)
		if v.v.Version > m.LatestVersion {
			m.LatestVersion = v.v.Version
		}
	}
	if len(vs) > 0 {
		order := map[registry.Stage]int{}
		for i, st := range registry.Stages() {
			order[st] = i
		}
		for _, m := range byID {
			sort.Slice(m.LatestVersions, func(i, j int) bool {
				return order[m.LatestVersions[i].Stage] < order[m.LatestVersions[j].Stage]
			})
		}
	}
	return out, nil
}

// stageTable is a derived table of the stage names, one row each.
var stageTable = func() string {
	parts := make([]string, 0, len(registry.Stages()))
	for _, st := range registry.Stages() {
		parts = append(parts, "SELECT '"+string(st)+"' AS stage")
	}
	return strings.Join(parts, " UNION ALL ")
}()

func closeRows(rs *sql.Rows) error {
	err := rs.Err()
	if cerr := rs.Close(); err == nil {
		err = cerr
	}
	return err
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// UpdateModel implements registry.Store.
func (s *Store) UpdateModel(ctx context.Context, name string, upd registry.ModelUpdate, actor string, at time.Time) (registry.RegisteredModel, error) {
	err := s.write(ctx, func(tx *sql.Tx) error {
		id, err := s.lockModel(ctx, tx, name)
		if err != nil {
			return err
		}
		if upd.Description != nil {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE registry_models SET description = ? WHERE id = ?`), *upd.Description, id); err != nil {
				return fmt.Errorf("update model %q: %w", name, err)
			}
		}
		if len(upd.Gates) > 0 {
			var cur string
			if err := tx.QueryRowContext(ctx, s.q(`SELECT gates FROM registry_models WHERE id = ?`), id).Scan(&cur); err != nil {
				return fmt.Errorf("update model %q: %w", name, err)
			}
			g := map[registry.Stage][]string{}
			if err := json.Unmarshal([]byte(cur), &g); err != nil {
				return fmt.Errorf("decode gates of model %q: %w", name, err)
			}
			for st, rules := range upd.Gates {
				if len(rules) == 0 {
					delete(g, st)
				} else {
					g[st] = rules
				}
			}
			b, err := json.Marshal(g)
			if err != nil {
				return fmt.Errorf("encode gates: %w", err)
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE registry_models SET gates = ? WHERE id = ?`), string(b), id); err != nil {
				return fmt.Errorf("update model %q: %w", name, err)
			}
		}
		if err := s.putTags(ctx, tx, "registry_model_tags", "model_id", id, upd.SetTags); err != nil {
			return err
		}
		for _, k := range upd.DeleteTags {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM registry_model_tags WHERE model_id = ? AND key = ?`), id, k); err != nil {
				return fmt.Errorf("delete tag %q: %w", k, err)
			}
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE registry_models SET updated_by = ?, updated_at = ? WHERE id = ?`), actor, micros(at), id)
		if err != nil {
			return fmt.Errorf("update model %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return registry.RegisteredModel{}, err
	}
	return s.GetModel(ctx, name)
}

// RenameModel implements registry.Store.
func (s *Store) RenameModel(ctx context.Context, from, to, actor string, at time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		id, err := s.lockModel(ctx, tx, from)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE registry_models SET name = ?, updated_by = ?, updated_at = ? WHERE id = ?`), to, actor, micros(at), id)
		if isUnique(err) {
			return fmt.Errorf("%w: model %q", registry.ErrAlreadyExists, to)
		}
		if err != nil {
			return fmt.Errorf("rename model %q: %w", from, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE registry_versions SET model_name = ? WHERE model_id = ?`), to, id); err != nil {
			return fmt.Errorf("rename model %q: %w", from, err)
		}
		return nil
	})
}

// DeleteModel implements registry.Store.
func (s *Store) DeleteModel(ctx context.Context, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		id, err := s.lockModel(ctx, tx, name)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM registry_aliases WHERE model_id = ?`), id).Scan(&n); err != nil {
			return fmt.Errorf("delete model %q: %w", name, err)
		}
		if n > 0 {
			return fmt.Errorf("%w: model %q still has %d aliases", registry.ErrPreconditionFailed, name, n)
		}
		// children first: SQLite checks the alias→version key per statement
		for _, st := range []string{
			`DELETE FROM registry_version_tags WHERE version_id IN (SELECT id FROM registry_versions WHERE model_id = ?)`,
			`DELETE FROM registry_version_metrics WHERE version_id IN (SELECT id FROM registry_versions WHERE model_id = ?)`,
			`DELETE FROM registry_version_params WHERE version_id IN (SELECT id FROM registry_versions WHERE model_id = ?)`,
			`DELETE FROM registry_versions WHERE model_id = ?`,
			`DELETE FROM registry_model_tags WHERE model_id = ?`,
			`DELETE FROM registry_transitions WHERE model_id = ?`,
			`DELETE FROM registry_alias_events WHERE model_id = ?`,
			`DELETE FROM registry_models WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, s.q(st), id); err != nil {
				return fmt.Errorf("delete model %q: %w", name, err)
			}
		}
		return nil
	})
}

// SearchModels implements registry.Store.
func (s *Store) SearchModels(ctx context.Context, q registry.Query) ([]registry.RegisteredModel, string, error) {
	var out []registry.RegisteredModel
	var next string
	err := s.read(ctx, func(tx *sql.Tx) error {
		b := &sqlBuilder{s: s, target: registry.TargetModels}
		where, err := b.where(q)
		if err != nil {
			return err
		}
		query := `SELECT ` + modelCols + ` FROM registry_models m` + where + b.orderBy(q.Order) + ` LIMIT ?`
		args := append(b.args, q.Limit+1)
		rs, err := tx.QueryContext(ctx, s.q(query), args...)
		if err != nil {
			return fmt.Errorf("search models: %w", err)
		}
		var rows []modelRow
		for rs.Next() {
			r, err := scanModel(rs)
			if err != nil {
				rs.Close()
				return fmt.Errorf("search models: %w", err)
			}
			rows = append(rows, r)
		}
		if err := closeRows(rs); err != nil {
			return fmt.Errorf("search models: %w", err)
		}
		if len(rows) > q.Limit {
			rows = rows[:q.Limit]
			last := rows[len(rows)-1].m
			next, err = encodeCursor(q.Order, cursorValues{name: last.Name, created: micros(last.CreatedAt), updated: micros(last.UpdatedAt)})
			if err != nil {
				return err
			}
		}
		out, err = s.hydrateModels(ctx, tx, rows)
		return err
	})
	return out, next, err
}
