package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/kilnai/kiln/internal/registry"
)

const versionCols = `v.id, v.model_id, v.model_name, v.version, v.artifact_digest, v.artifact_size, v.artifact_format, v.artifact_manifest,
	v.signature, v.lineage, v.source, v.run_id, v.run_link, v.status, v.status_message, v.description, v.stage,
	v.created_by, v.created_at, v.updated_by, v.updated_at, COALESCE(v.idempotency_key, ''), v.content_digest, v.immutable_json`

type versionRow struct {
	id      int64
	modelID int64
	v       registry.ModelVersion
	// cached: metrics and params came from the row's immutable_json
	cached bool
}

// immutableJSON is the row copy of a version's metrics, params, signature
// and lineage (they never change, so the copy cannot go stale); rows
// written before migration 5 have none and are read from the key/value
// tables and the signature and lineage columns.
type immutableJSON struct {
	Metrics   map[string]registry.Metric `json:"metrics"`
	Params    map[string]string          `json:"params"`
	Signature *registry.Signature        `json:"signature,omitempty"`
	Lineage   *registry.Lineage          `json:"lineage,omitempty"`
}

type versionKey struct {
	modelID int64
	version int64
}

// scanVersion reads one row of versionCols. The immutable document is
// decoded through s.imm, so re-reading a version costs no JSON decoding.
func (s *Store) scanVersion(rs *sql.Rows) (versionRow, error) {
	var r versionRow
	var sig, lin, imm sql.RawBytes
	var stage, status string
	var manifest int
	var created, updated int64
	v := &r.v
	if err := rs.Scan(&r.id, &r.modelID, &v.Model, &v.Version, &v.Artifact.Digest, &v.Artifact.Size, &v.Artifact.Format, &manifest,
		&sig, &lin, &v.Source, &v.RunID, &v.RunLink, &status, &v.StatusMessage, &v.Description, &stage,
		&v.CreatedBy, &created, &v.UpdatedBy, &updated, &v.IdempotencyKey, &v.ContentDigest, &imm); err != nil {
		return r, err
	}
	var ij immutableJSON
	if len(imm) > 0 {
		var err error
		if ij, err = s.imm.decode(r.id, imm); err != nil {
			return r, fmt.Errorf("decode metrics and params of %s version %d: %w", v.Model, v.Version, err)
		}
		v.Metrics, v.Params, r.cached = ij.Metrics, ij.Params, true
	}
	v.Artifact.Manifest = manifest != 0
	v.Stage, v.Status = registry.Stage(stage), registry.Status(status)
	v.CreatedAt, v.UpdatedAt = fromMicros(created), fromMicros(updated)
	if ij.Signature != nil {
		v.Signature = *ij.Signature
	} else if err := json.Unmarshal(sig, &v.Signature); err != nil {
		return r, fmt.Errorf("decode signature of %s version %d: %w", v.Model, v.Version, err)
	}
	if ij.Lineage != nil {
		v.Lineage = *ij.Lineage
	} else if err := json.Unmarshal(lin, &v.Lineage); err != nil {
		return r, fmt.Errorf("decode lineage of %s version %d: %w", v.Model, v.Version, err)
	}
	return r, nil
}

// hydrateVersions fills metrics, params, tags and aliases of rows with a
// few batched queries.
func (s *Store) hydrateVersions(ctx context.Context, q querier, rows []versionRow) ([]versionRow, error) {
	if len(rows) == 0 {
		return rows, nil
	}
	byID := make(map[int64]*registry.ModelVersion, len(rows))
	byKey := make(map[versionKey]*registry.ModelVersion, len(rows))
	ids := make([]any, len(rows))
	modelIDs := map[int64]bool{}
	var uncached []any
	for i := range rows {
		v := &rows[i].v
		if v.Metrics == nil {
			v.Metrics = map[string]registry.Metric{}
		}
		if v.Params == nil {
			v.Params = map[string]string{}
		}
		v.Tags, v.Aliases = map[string]string{}, []string{}
		byID[rows[i].id] = v
		byKey[versionKey{rows[i].modelID, v.Version}] = v
		ids[i] = rows[i].id
		modelIDs[rows[i].modelID] = true
		if !rows[i].cached {
			uncached = append(uncached, rows[i].id)
		}
	}
	for from := 0; from < len(uncached); from += 500 {
		chunk := uncached[from:min(from+500, len(uncached))]
		in := placeholders(len(chunk))
		if err := s.eachRow(ctx, q, `SELECT version_id, key, value, direction FROM registry_version_metrics WHERE version_id IN (`+in+`)`, chunk, func(rs *sql.Rows) error {
			var id int64
			var k, dir string
			var val float64
			if err := rs.Scan(&id, &k, &val, &dir); err != nil {
				return err
			}
			byID[id].Metrics[k] = registry.Metric{Value: val, Direction: registry.Direction(dir)}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("load metrics: %w", err)
		}
		if err := s.eachRow(ctx, q, `SELECT version_id, key, value FROM registry_version_params WHERE version_id IN (`+in+`)`, chunk, func(rs *sql.Rows) error {
			var id int64
			var k, val string
			if err := rs.Scan(&id, &k, &val); err != nil {
				return err
			}
			byID[id].Params[k] = val
			return nil
		}); err != nil {
			return nil, fmt.Errorf("load params: %w", err)
		}
	}
	for from := 0; from < len(ids); from += 500 {
		chunk := ids[from:min(from+500, len(ids))]
		if err := s.eachRow(ctx, q, `SELECT version_id, key, value FROM registry_version_tags WHERE version_id IN (`+placeholders(len(chunk))+`)`, chunk, func(rs *sql.Rows) error {
			var id int64
			var k, val string
			if err := rs.Scan(&id, &k, &val); err != nil {
				return err
			}
			byID[id].Tags[k] = val
			return nil
		}); err != nil {
			return nil, fmt.Errorf("load tags: %w", err)
		}
	}
	mids := make([]any, 0, len(modelIDs))
	for id := range modelIDs {
		mids = append(mids, id)
	}
	if err := s.eachRow(ctx, q, `SELECT model_id, alias, version FROM registry_aliases WHERE model_id IN (`+placeholders(len(mids))+`)`, mids, func(rs *sql.Rows) error {
		var k versionKey
		var a string
		if err := rs.Scan(&k.modelID, &a, &k.version); err != nil {
			return err
		}
		if v, ok := byKey[k]; ok {
			v.Aliases = append(v.Aliases, a)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load aliases: %w", err)
	}
	for _, v := range byID {
		sort.Strings(v.Aliases)
	}
	return rows, nil
}

func nonNil[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

func (s *Store) eachRow(ctx context.Context, q querier, query string, args []any, fn func(*sql.Rows) error) error {
	rs, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return err
	}
	for rs.Next() {
		if err := fn(rs); err != nil {
			rs.Close()
			return err
		}
	}
	return closeRows(rs)
}

func (s *Store) queryVersions(ctx context.Context, q querier, where string, args ...any) ([]versionRow, error) {
	rs, err := q.QueryContext(ctx, s.q(`SELECT `+versionCols+` FROM registry_versions v `+where), args...)
	if err != nil {
		return nil, err
	}
	var rows []versionRow
	for rs.Next() {
		r, err := s.scanVersion(rs)
		if err != nil {
			rs.Close()
			return nil, err
		}
		rows = append(rows, r)
	}
	if err := closeRows(rs); err != nil {
		return nil, err
	}
	return s.hydrateVersions(ctx, q, rows)
}

func (s *Store) getVersion(ctx context.Context, q querier, model string, version int64) (versionRow, error) {
	rows, err := s.queryVersions(ctx, q, `WHERE v.model_name = ? AND v.version = ?`, model, version)
	if err != nil {
		return versionRow{}, fmt.Errorf("get %s version %d: %w", model, version, err)
	}
	if len(rows) == 0 {
		if _, err := s.modelID(ctx, q, model); err != nil {
			return versionRow{}, err
		}
		return versionRow{}, fmt.Errorf("%w: model %q has no version %d", registry.ErrNotFound, model, version)
	}
	return rows[0], nil
}

// GetVersion implements registry.Store.
func (s *Store) GetVersion(ctx context.Context, model string, version int64) (registry.ModelVersion, error) {
	var out registry.ModelVersion
	err := s.read(ctx, func(tx *sql.Tx) error {
		r, err := s.getVersion(ctx, tx, model, version)
		out = r.v
		return err
	})
	return out, err
}

// CreateVersion implements registry.Store.
func (s *Store) CreateVersion(ctx context.Context, v registry.ModelVersion) (registry.ModelVersion, bool, error) {
	sig, err := json.Marshal(v.Signature)
	if err != nil {
		return registry.ModelVersion{}, false, fmt.Errorf("encode signature: %w", err)
	}
	lin, err := json.Marshal(v.Lineage)
	if err != nil {
		return registry.ModelVersion{}, false, fmt.Errorf("encode lineage: %w", err)
	}
	imm, err := json.Marshal(immutableJSON{Metrics: nonNil(v.Metrics), Params: nonNil(v.Params), Signature: &v.Signature, Lineage: &v.Lineage})
	if err != nil {
		return registry.ModelVersion{}, false, fmt.Errorf("encode metrics and params: %w", err)
	}
	var out registry.ModelVersion
	created := false
	err = s.write(ctx, func(tx *sql.Tx) error {
		modelID, err := s.lockModel(ctx, tx, v.Model)
		if err != nil {
			return err
		}
		if v.IdempotencyKey != "" {
			rows, err := s.queryVersions(ctx, tx, `WHERE v.model_id = ? AND v.idempotency_key = ?`, modelID, v.IdempotencyKey)
			if err != nil {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
			if len(rows) > 0 {
				if rows[0].v.ContentDigest != v.ContentDigest {
					return fmt.Errorf("%w: idempotency key %q was used for %s version %d with other content",
						registry.ErrConflict, v.IdempotencyKey, v.Model, rows[0].v.Version)
				}
				out = rows[0].v
				return nil
			}
		}
		var num int64
		if err := tx.QueryRowContext(ctx, s.q(`UPDATE registry_models SET next_version = next_version + 1 WHERE id = ? RETURNING next_version`), modelID).Scan(&num); err != nil {
			return fmt.Errorf("allocate version number: %w", err)
		}
		var idem any
		if v.IdempotencyKey != "" {
			idem = v.IdempotencyKey
		}
		manifest := 0
		if v.Artifact.Manifest {
			manifest = 1
		}
		var id int64
		err = tx.QueryRowContext(ctx, s.q(`INSERT INTO registry_versions (model_id, model_name, version, artifact_digest, artifact_size, artifact_format,
			artifact_manifest, signature, lineage, source, run_id, run_link, status, status_message, description, stage,
			created_by, created_at, updated_by, updated_at, idempotency_key, content_digest, immutable_json)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			modelID, v.Model, num, v.Artifact.Digest, v.Artifact.Size, v.Artifact.Format, manifest, string(sig), string(lin),
			v.Source, v.RunID, v.RunLink, string(v.Status), v.StatusMessage, v.Description, string(v.Stage),
			v.CreatedBy, micros(v.CreatedAt), v.UpdatedBy, micros(v.UpdatedAt), idem, v.ContentDigest, string(imm)).Scan(&id)
		if err != nil {
			return fmt.Errorf("insert %s version %d: %w", v.Model, num, err)
		}
		for _, k := range sortedKeys(v.Metrics) {
			m := v.Metrics[k]
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_version_metrics (version_id, key, value, direction) VALUES (?, ?, ?, ?)`),
				id, k, m.Value, string(m.Direction)); err != nil {
				return fmt.Errorf("insert metric %q: %w", k, err)
			}
		}
		for _, k := range sortedKeys(v.Params) {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_version_params (version_id, key, value) VALUES (?, ?, ?)`), id, k, v.Params[k]); err != nil {
				return fmt.Errorf("insert param %q: %w", k, err)
			}
		}
		if err := s.putTags(ctx, tx, "registry_version_tags", "version_id", id, v.Tags); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_transitions (model_id, version, from_stage, to_stage, actor, at, reason) VALUES (?, ?, '', ?, ?, ?, 'registered')`),
			modelID, num, string(v.Stage), v.CreatedBy, micros(v.CreatedAt)); err != nil {
			return fmt.Errorf("record registration: %w", err)
		}
		r, err := s.getVersion(ctx, tx, v.Model, num)
		if err != nil {
			return err
		}
		out, created = r.v, true
		return nil
	})
	if err != nil {
		return registry.ModelVersion{}, false, err
	}
	if created && s.creates.Add(1)%optimizeEvery == 0 {
		if err := s.Optimize(ctx); err != nil {
			s.log.Warn("registry: refreshing planner statistics failed", "err", err)
		}
	}
	return out, created, nil
}

// UpdateVersion implements registry.Store.
func (s *Store) UpdateVersion(ctx context.Context, model string, version int64, upd registry.VersionUpdate, actor string, at time.Time) (registry.ModelVersion, error) {
	var out registry.ModelVersion
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.lockModel(ctx, tx, model); err != nil {
			return err
		}
		r, err := s.getVersion(ctx, tx, model, version)
		if err != nil {
			return err
		}
		if upd.Description != nil {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE registry_versions SET description = ? WHERE id = ?`), *upd.Description, r.id); err != nil {
				return fmt.Errorf("update %s version %d: %w", model, version, err)
			}
		}
		if err := s.putTags(ctx, tx, "registry_version_tags", "version_id", r.id, upd.SetTags); err != nil {
			return err
		}
		for _, k := range upd.DeleteTags {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM registry_version_tags WHERE version_id = ? AND key = ?`), r.id, k); err != nil {
				return fmt.Errorf("delete tag %q: %w", k, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE registry_versions SET updated_by = ?, updated_at = ? WHERE id = ?`), actor, micros(at), r.id); err != nil {
			return fmt.Errorf("update %s version %d: %w", model, version, err)
		}
		r, err = s.getVersion(ctx, tx, model, version)
		out = r.v
		return err
	})
	return out, err
}

// DeleteVersion implements registry.Store.
func (s *Store) DeleteVersion(ctx context.Context, model string, version int64, actor string, at time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		modelID, err := s.lockModel(ctx, tx, model)
		if err != nil {
			return err
		}
		r, err := s.getVersion(ctx, tx, model, version)
		if err != nil {
			return err
		}
		if len(r.v.Aliases) > 0 {
			return fmt.Errorf("%w: %s version %d is aliased", registry.ErrPreconditionFailed, model, version)
		}
		for _, st := range []string{
			`DELETE FROM registry_version_tags WHERE version_id = ?`,
			`DELETE FROM registry_version_metrics WHERE version_id = ?`,
			`DELETE FROM registry_version_params WHERE version_id = ?`,
			`DELETE FROM registry_versions WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, s.q(st), r.id); err != nil {
				if isForeignKey(err) {
					return fmt.Errorf("%w: %s version %d is aliased", registry.ErrPreconditionFailed, model, version)
				}
				return fmt.Errorf("delete %s version %d: %w", model, version, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_transitions (model_id, version, from_stage, to_stage, actor, at, reason) VALUES (?, ?, ?, '', ?, ?, 'deleted')`),
			modelID, version, string(r.v.Stage), actor, micros(at)); err != nil {
			return fmt.Errorf("record deletion: %w", err)
		}
		return nil
	})
}

// SearchVersions implements registry.Store.
func (s *Store) SearchVersions(ctx context.Context, q registry.Query) ([]registry.ModelVersion, string, error) {
	var out []registry.ModelVersion
	var next string
	err := s.read(ctx, func(tx *sql.Tx) error {
		b := &sqlBuilder{s: s, target: registry.TargetVersions}
		where, err := b.where(q)
		if err != nil {
			return err
		}
		// two steps: the ids of one page (a narrow query the sort and
		// LIMIT handle cheaply, often from an index alone), then the rows
		args := append(b.args, q.Limit+1)
		var ids []any
		if err := s.eachRow(ctx, tx, `SELECT v.id FROM registry_versions v`+where+b.orderBy(q.Order)+` LIMIT ?`, args, func(rs *sql.Rows) error {
			var id int64
			if err := rs.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
			return nil
		}); err != nil {
			return fmt.Errorf("search versions: %w", err)
		}
		var rows []versionRow
		if len(ids) > 0 {
			got, err := s.queryVersions(ctx, tx, `WHERE v.id IN (`+placeholders(len(ids))+`)`, ids...)
			if err != nil {
				return fmt.Errorf("search versions: %w", err)
			}
			pos := make(map[int64]int, len(ids))
			for i, id := range ids {
				pos[id.(int64)] = i
			}
			rows = make([]versionRow, len(got))
			for _, r := range got {
				rows[pos[r.id]] = r
			}
			if len(got) != len(ids) {
				return fmt.Errorf("search versions: %d of %d rows read back", len(got), len(ids))
			}
		}
		if len(rows) > q.Limit {
			rows = rows[:q.Limit]
			last := rows[len(rows)-1].v
			next, err = encodeCursor(q.Order, cursorValues{name: last.Model, version: last.Version,
				created: micros(last.CreatedAt), updated: micros(last.UpdatedAt)})
			if err != nil {
				return err
			}
		}
		out = make([]registry.ModelVersion, len(rows))
		for i, r := range rows {
			out[i] = r.v
		}
		return nil
	})
	return out, next, err
}

// StageHolders implements registry.Store.
func (s *Store) StageHolders(ctx context.Context, model string, stage registry.Stage) ([]registry.ModelVersion, error) {
	var out []registry.ModelVersion
	err := s.read(ctx, func(tx *sql.Tx) error {
		id, err := s.modelID(ctx, tx, model)
		if err != nil {
			return err
		}
		rows, err := s.queryVersions(ctx, tx, `WHERE v.model_id = ? AND v.stage = ? ORDER BY v.version DESC`, id, string(stage))
		if err != nil {
			return fmt.Errorf("list %s versions in %s: %w", model, stage, err)
		}
		out = make([]registry.ModelVersion, len(rows))
		for i, r := range rows {
			out[i] = r.v
		}
		return nil
	})
	return out, err
}

// Transition implements registry.Store.
func (s *Store) Transition(ctx context.Context, c registry.StageChange) (registry.ModelVersion, []registry.Transition, error) {
	var out registry.ModelVersion
	var recorded []registry.Transition
	err := s.write(ctx, func(tx *sql.Tx) error {
		modelID, err := s.lockModel(ctx, tx, c.Model)
		if err != nil {
			return err
		}
		r, err := s.getVersion(ctx, tx, c.Model, c.Version)
		if err != nil {
			return err
		}
		if c.ExpectFrom != "" && r.v.Stage != c.ExpectFrom {
			return fmt.Errorf("%w: %s version %d moved from %s to %s meanwhile", registry.ErrConflict, c.Model, c.Version, c.ExpectFrom, r.v.Stage)
		}
		var holders []int64
		if err := s.eachRow(ctx, tx, `SELECT version FROM registry_versions WHERE model_id = ? AND stage = ? AND version <> ? ORDER BY version`,
			[]any{modelID, string(c.To), c.Version}, func(rs *sql.Rows) error {
				var n int64
				if err := rs.Scan(&n); err != nil {
					return err
				}
				holders = append(holders, n)
				return nil
			}); err != nil {
			return fmt.Errorf("list holders of %s: %w", c.To, err)
		}
		if c.ExpectHolders != nil {
			want := slices.Clone(c.ExpectHolders)
			slices.Sort(want)
			if !slices.Equal(want, holders) {
				return fmt.Errorf("%w: the versions in %s of %s changed meanwhile (now %v, expected %v)", registry.ErrConflict, c.To, c.Model, holders, want)
			}
		}
		move := func(version int64, from, to registry.Stage) error {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE registry_versions SET stage = ?, updated_by = ?, updated_at = ? WHERE model_id = ? AND version = ?`),
				string(to), c.Actor, micros(c.At), modelID, version); err != nil {
				return fmt.Errorf("move %s version %d to %s: %w", c.Model, version, to, err)
			}
			var id int64
			if err := tx.QueryRowContext(ctx, s.q(`INSERT INTO registry_transitions (model_id, version, from_stage, to_stage, actor, at, reason) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
				modelID, version, string(from), string(to), c.Actor, micros(c.At), c.Reason).Scan(&id); err != nil {
				return fmt.Errorf("record transition: %w", err)
			}
			recorded = append(recorded, registry.Transition{ID: id, Model: c.Model, Version: version, From: from, To: to, Actor: c.Actor, At: c.At, Reason: c.Reason})
			return nil
		}
		if r.v.Stage != c.To {
			if err := move(c.Version, r.v.Stage, c.To); err != nil {
				return err
			}
		}
		if c.ArchiveExisting && c.To != registry.StageArchived {
			for _, h := range holders {
				if err := move(h, c.To, registry.StageArchived); err != nil {
					return err
				}
			}
		}
		if s.dialect == dialectPostgres && len(recorded) > 0 {
			// replicas listening on kiln_registry learn of the change at commit
			payload, _ := json.Marshal(map[string]any{"kind": "stage_changed", "model": c.Model, "version": c.Version, "to": c.To})
			if _, err := tx.ExecContext(ctx, `SELECT pg_notify('kiln_registry', $1)`, string(payload)); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
		}
		r, err = s.getVersion(ctx, tx, c.Model, c.Version)
		out = r.v
		return err
	})
	return out, recorded, err
}

// SetAlias implements registry.Store.
func (s *Store) SetAlias(ctx context.Context, c registry.AliasChange) (registry.Alias, error) {
	err := s.write(ctx, func(tx *sql.Tx) error {
		modelID, err := s.lockModel(ctx, tx, c.Model)
		if err != nil {
			return err
		}
		if _, err := s.getVersion(ctx, tx, c.Model, c.Version); err != nil {
			return err
		}
		cur, err := s.currentAlias(ctx, tx, modelID, c.Alias)
		if err != nil {
			return err
		}
		if c.Expected != nil && *c.Expected != cur {
			return aliasCASError(c, cur)
		}
		if cur == c.Version {
			return nil // already there: nothing to record
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_aliases (model_id, alias, version, updated_by, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version, updated_by = excluded.updated_by, updated_at = excluded.updated_at`),
			modelID, c.Alias, c.Version, c.Actor, micros(c.At)); err != nil {
			return fmt.Errorf("set alias %q: %w", c.Alias, err)
		}
		return s.aliasEvent(ctx, tx, modelID, c, cur, c.Version)
	})
	if err != nil {
		return registry.Alias{}, err
	}
	return s.GetAlias(ctx, c.Model, c.Alias)
}

func aliasCASError(c registry.AliasChange, cur int64) error {
	now := "does not exist"
	if cur != 0 {
		now = fmt.Sprintf("points at version %d", cur)
	}
	want := "not to exist"
	if *c.Expected != 0 {
		want = fmt.Sprintf("to point at version %d", *c.Expected)
	}
	return fmt.Errorf("%w: alias %q of model %q %s, expected it %s", registry.ErrConflict, c.Alias, c.Model, now, want)
}

func (s *Store) currentAlias(ctx context.Context, tx *sql.Tx, modelID int64, alias string) (int64, error) {
	var cur int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT version FROM registry_aliases WHERE model_id = ? AND alias = ?`), modelID, alias).Scan(&cur)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read alias %q: %w", alias, err)
	}
	return cur, nil
}

func (s *Store) aliasEvent(ctx context.Context, tx *sql.Tx, modelID int64, c registry.AliasChange, from, to int64) error {
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_alias_events (model_id, alias, from_version, to_version, actor, at, reason) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		modelID, c.Alias, from, to, c.Actor, micros(c.At), c.Reason); err != nil {
		return fmt.Errorf("record alias event: %w", err)
	}
	if s.dialect == dialectPostgres {
		payload, _ := json.Marshal(map[string]any{"kind": "alias_changed", "model": c.Model, "alias": c.Alias, "version": to})
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify('kiln_registry', $1)`, string(payload)); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	return nil
}

// DeleteAlias implements registry.Store.
func (s *Store) DeleteAlias(ctx context.Context, c registry.AliasChange) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		modelID, err := s.lockModel(ctx, tx, c.Model)
		if err != nil {
			return err
		}
		cur, err := s.currentAlias(ctx, tx, modelID, c.Alias)
		if err != nil {
			return err
		}
		if c.Expected != nil && *c.Expected != cur {
			return aliasCASError(c, cur)
		}
		if cur == 0 {
			return fmt.Errorf("%w: model %q has no alias %q", registry.ErrNotFound, c.Model, c.Alias)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM registry_aliases WHERE model_id = ? AND alias = ?`), modelID, c.Alias); err != nil {
			return fmt.Errorf("delete alias %q: %w", c.Alias, err)
		}
		return s.aliasEvent(ctx, tx, modelID, c, cur, 0)
	})
}

// GetAlias implements registry.Store.
func (s *Store) GetAlias(ctx context.Context, model, alias string) (registry.Alias, error) {
	a := registry.Alias{Model: model, Name: alias}
	var at int64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT a.version, a.updated_by, a.updated_at FROM registry_aliases a JOIN registry_models m ON m.id = a.model_id
		WHERE m.name = ? AND a.alias = ?`), model, alias).Scan(&a.Version, &a.UpdatedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.modelID(ctx, s.r, model); err != nil {
			return registry.Alias{}, err
		}
		return registry.Alias{}, fmt.Errorf("%w: model %q has no alias %q", registry.ErrNotFound, model, alias)
	}
	if err != nil {
		return registry.Alias{}, fmt.Errorf("get alias %q: %w", alias, err)
	}
	a.UpdatedAt = fromMicros(at)
	return a, nil
}

// Transitions implements registry.Store.
func (s *Store) Transitions(ctx context.Context, model string, q registry.HistoryQuery) ([]registry.Transition, error) {
	var out []registry.Transition
	err := s.read(ctx, func(tx *sql.Tx) error {
		id, err := s.modelID(ctx, tx, model)
		if err != nil {
			return err
		}
		where, args := `WHERE model_id = ?`, []any{id}
		if q.Version != 0 {
			where += ` AND version = ?`
			args = append(args, q.Version)
		}
		if !q.Until.IsZero() {
			where += ` AND at <= ?`
			args = append(args, micros(q.Until))
		}
		query := `SELECT id, version, from_stage, to_stage, actor, at, reason FROM registry_transitions ` + where + ` ORDER BY at DESC, id DESC`
		if q.Limit > 0 {
			query += ` LIMIT ?`
			args = append(args, q.Limit)
		}
		err = s.eachRow(ctx, tx, query, args, func(rs *sql.Rows) error {
			t := registry.Transition{Model: model}
			var from, to string
			var at int64
			if err := rs.Scan(&t.ID, &t.Version, &from, &to, &t.Actor, &at, &t.Reason); err != nil {
				return err
			}
			t.From, t.To, t.At = registry.Stage(from), registry.Stage(to), fromMicros(at)
			out = append(out, t)
			return nil
		})
		if err != nil {
			return fmt.Errorf("list transitions of %q: %w", model, err)
		}
		slices.Reverse(out)
		return nil
	})
	return out, err
}

// AliasEvents implements registry.Store.
func (s *Store) AliasEvents(ctx context.Context, model string, q registry.HistoryQuery) ([]registry.AliasEvent, error) {
	var out []registry.AliasEvent
	err := s.read(ctx, func(tx *sql.Tx) error {
		id, err := s.modelID(ctx, tx, model)
		if err != nil {
			return err
		}
		where, args := `WHERE model_id = ?`, []any{id}
		if q.Alias != "" {
			where += ` AND alias = ?`
			args = append(args, q.Alias)
		}
		if !q.Until.IsZero() {
			where += ` AND at <= ?`
			args = append(args, micros(q.Until))
		}
		query := `SELECT id, alias, from_version, to_version, actor, at, reason FROM registry_alias_events ` + where + ` ORDER BY at DESC, id DESC`
		if q.Limit > 0 {
			query += ` LIMIT ?`
			args = append(args, q.Limit)
		}
		err = s.eachRow(ctx, tx, query, args, func(rs *sql.Rows) error {
			e := registry.AliasEvent{Model: model}
			var at int64
			if err := rs.Scan(&e.ID, &e.Alias, &e.From, &e.To, &e.Actor, &at, &e.Reason); err != nil {
				return err
			}
			e.At = fromMicros(at)
			out = append(out, e)
			return nil
		})
		if err != nil {
			return fmt.Errorf("list alias events of %q: %w", model, err)
		}
		slices.Reverse(out)
		return nil
	})
	return out, err
}
