// Package registrytest is the conformance suite every registry.Store passes.
// A store's tests call Run with a constructor that returns a fresh, empty
// store per call; the suite drives it through registry.Service (validation,
// gates, idempotency, history) and checks every operation, every sentinel
// error, concurrency-safe numbering, compare-and-swap aliases, search
// filters and pagination.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/registry"
)

// Run runs the suite. newStore must return an empty store; the suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) registry.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"Models", testModels},
		{"RenameAndDeleteModel", testRenameDelete},
		{"Versions", testVersions},
		{"VersionValidation", testVersionValidation},
		{"ConcurrentNumbering", testConcurrentNumbering},
		{"Idempotency", testIdempotency},
		{"Aliases", testAliases},
		{"Transitions", testTransitions},
		{"ConcurrentPromotion", testConcurrentPromotion},
		{"Gates", testGates},
		{"Compare", testCompare},
		{"History", testHistory},
		{"DeleteRefusal", testDeleteRefusal},
		{"SearchModels", testSearchModels},
		{"SearchVersions", testSearchVersions},
		{"Pagination", testPagination},
		{"Events", testEvents},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t)
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
			e := newEnv(st)
			tc.fn(t, e)
		})
	}
}

// clock is a deterministic clock: every reading is 1ms after the previous.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *clock) Peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

type servedSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *servedSet) Served(_ context.Context, model string, version int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[fmt.Sprintf("%s/%d", model, version)], nil
}

func (s *servedSet) set(model string, version int64, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[fmt.Sprintf("%s/%d", model, version)] = on
}

type blobSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (b *blobSet) Has(_ context.Context, d string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[d], nil
}

type recorder struct {
	mu     sync.Mutex
	events []registry.Event
}

func (r *recorder) Notify(_ context.Context, e registry.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds() []registry.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]registry.EventKind, len(r.events))
	for i, e := range r.events {
		out[i] = e.Kind
	}
	return out
}

type env struct {
	store  registry.Store
	svc    *registry.Service
	clock  *clock
	served *servedSet
	blobs  *blobSet
	events *recorder
	ctx    context.Context
}

func newEnv(st registry.Store) *env {
	e := &env{
		store:  st,
		clock:  &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		served: &servedSet{m: map[string]bool{}},
		blobs:  &blobSet{m: map[string]bool{}},
		events: &recorder{},
		ctx:    context.Background(),
	}
	e.svc = registry.NewService(st, registry.Options{Clock: e.clock.Now, Served: e.served, Blobs: e.blobs, Notifier: e.events})
	return e
}

// digest returns a valid artifact digest derived from s and registers the
// blob as present.
func (e *env) digest(s string) string {
	var b strings.Builder
	b.WriteString("sha256:")
	for i := 0; b.Len() < 7+64; i++ {
		fmt.Fprintf(&b, "%x", (len(s)*31+i*7+int(s[i%len(s)]))%16)
	}
	d := b.String()[:7+64]
	e.blobs.mu.Lock()
	e.blobs.m[d] = true
	e.blobs.mu.Unlock()
	return d
}

func (e *env) model(t *testing.T, name string) registry.RegisteredModel {
	t.Helper()
	m, err := e.svc.CreateModel(e.ctx, "alice", registry.CreateModelInput{Name: name})
	if err != nil {
		t.Fatalf("create model %q: %v", name, err)
	}
	return m
}

func (e *env) version(t *testing.T, model string, metrics map[string]registry.Metric) registry.ModelVersion {
	t.Helper()
	v, created, err := e.svc.CreateVersion(e.ctx, "bob", registry.CreateVersionInput{
		Model: model, Artifact: registry.Artifact{Digest: e.digest(model), Size: 10, Format: "onnx"}, Metrics: metrics,
	})
	if err != nil || !created {
		t.Fatalf("create version of %q: created=%v err=%v", model, created, err)
	}
	return v
}

func (e *env) promote(t *testing.T, model string, version int64, to registry.Stage, archive bool) registry.TransitionResult {
	t.Helper()
	r, err := e.svc.Transition(e.ctx, "carol", registry.TransitionInput{Model: model, Version: version, To: to, ArchiveExisting: archive, Reason: "test"})
	if err != nil {
		t.Fatalf("promote %s v%d to %s: %v", model, version, to, err)
	}
	return r
}

func wantErr(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
}

func hi(v float64) registry.Metric {
	return registry.Metric{Value: v, Direction: registry.HigherIsBetter}
}
func lo(v float64) registry.Metric {
	return registry.Metric{Value: v, Direction: registry.LowerIsBetter}
}
func ptr[T any](v T) *T { return &v }

func testModels(t *testing.T, e *env) {
	m, err := e.svc.CreateModel(e.ctx, "alice", registry.CreateModelInput{
		Name: "churn", Description: "predicts churn", Tags: map[string]string{"team": "growth", "tier": "1"},
		Gates: map[registry.Stage][]string{registry.StageProduction: {"accuracy >= 0.5"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "churn" || m.Description != "predicts churn" || m.CreatedBy != "alice" || m.UpdatedBy != "alice" ||
		m.CreatedAt.IsZero() || !m.CreatedAt.Equal(m.UpdatedAt) || m.LatestVersion != 0 {
		t.Fatalf("created model = %+v", m)
	}
	if !reflect.DeepEqual(m.Tags, map[string]string{"team": "growth", "tier": "1"}) {
		t.Fatalf("tags = %v", m.Tags)
	}
	if got := m.Gates[registry.StageProduction]; len(got) != 1 || got[0] != "accuracy >= 0.5" {
		t.Fatalf("gates = %v", m.Gates)
	}
	got, err := e.svc.GetModel(e.ctx, "churn")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(m.CreatedAt) || got.Description != m.Description || len(got.Aliases) != 0 {
		t.Fatalf("get = %+v, want %+v", got, m)
	}

	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			name string
			err  error
			want error
		}{
			{"duplicate", func() error {
				_, err := e.svc.CreateModel(e.ctx, "x", registry.CreateModelInput{Name: "churn"})
				return err
			}(), registry.ErrAlreadyExists},
			{"empty name", func() error { _, err := e.svc.CreateModel(e.ctx, "x", registry.CreateModelInput{Name: ""}); return err }(), registry.ErrInvalid},
			{"slash", func() error {
				_, err := e.svc.CreateModel(e.ctx, "x", registry.CreateModelInput{Name: "a/b"})
				return err
			}(), registry.ErrInvalid},
			{"too long", func() error {
				_, err := e.svc.CreateModel(e.ctx, "x", registry.CreateModelInput{Name: strings.Repeat("a", 257)})
				return err
			}(), registry.ErrInvalid},
			{"bad tag key", func() error {
				_, err := e.svc.CreateModel(e.ctx, "x", registry.CreateModelInput{Name: "ok", Tags: map[string]string{"a\x00": "b"}})
				return err
			}(), registry.ErrInvalid},
			{"bad gate", func() error {
				_, err := e.svc.CreateModel(e.ctx, "x", registry.CreateModelInput{Name: "ok", Gates: map[registry.Stage][]string{registry.StageProduction: {"accuracy >>= 1"}}})
				return err
			}(), registry.ErrInvalid},
			{"missing", func() error { _, err := e.svc.GetModel(e.ctx, "nope"); return err }(), registry.ErrNotFound},
			{"update missing", func() error {
				_, err := e.svc.UpdateModel(e.ctx, "x", "nope", registry.ModelUpdate{Description: ptr("d")})
				return err
			}(), registry.ErrNotFound},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { wantErr(t, c.err, c.want) })
		}
		if _, err := e.svc.GetModel(e.ctx, "ok"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("a failed create left a model behind: %v", err)
		}
	})

	t.Run("update", func(t *testing.T) {
		u, err := e.svc.UpdateModel(e.ctx, "dave", "churn", registry.ModelUpdate{
			Description: ptr("new"), SetTags: map[string]string{"tier": "2", "owner": "dave"}, DeleteTags: []string{"team", "absent"},
			Gates: map[registry.Stage][]string{registry.StageProduction: nil, registry.StageStaging: {"latency <= 5"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if u.Description != "new" || u.UpdatedBy != "dave" || !u.UpdatedAt.After(m.UpdatedAt) || u.CreatedBy != "alice" {
			t.Fatalf("updated = %+v", u)
		}
		if !reflect.DeepEqual(u.Tags, map[string]string{"tier": "2", "owner": "dave"}) {
			t.Fatalf("tags = %v", u.Tags)
		}
		if _, ok := u.Gates[registry.StageProduction]; ok || len(u.Gates[registry.StageStaging]) != 1 {
			t.Fatalf("gates = %v", u.Gates)
		}
	})
}

func testRenameDelete(t *testing.T, e *env) {
	e.model(t, "a")
	e.model(t, "b")
	v := e.version(t, "a", nil)
	e.promote(t, "a", v.Version, registry.StageStaging, false)
	if _, err := e.svc.RenameModel(e.ctx, "x", "a", "b"); !errors.Is(err, registry.ErrAlreadyExists) {
		t.Fatalf("rename onto existing: %v", err)
	}
	if _, err := e.svc.RenameModel(e.ctx, "x", "nope", "c"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("rename missing: %v", err)
	}
	m, err := e.svc.RenameModel(e.ctx, "x", "a", "c")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "c" || m.LatestVersion != 1 {
		t.Fatalf("renamed = %+v", m)
	}
	got, err := e.svc.GetVersion(e.ctx, "c", 1)
	if err != nil || got.Model != "c" || got.Stage != registry.StageStaging {
		t.Fatalf("version after rename = %+v, %v", got, err)
	}
	if _, err := e.svc.GetModel(e.ctx, "a"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("old name still there: %v", err)
	}
	h, err := e.svc.History(e.ctx, "c", registry.HistoryQuery{})
	if err != nil || len(h) != 2 {
		t.Fatalf("history after rename = %v, %v", h, err)
	}
	if err := e.svc.DeleteModel(e.ctx, "x", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.GetModel(e.ctx, "c"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted model still there: %v", err)
	}
	if _, err := e.svc.GetVersion(e.ctx, "c", 1); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted model's version still there: %v", err)
	}
	wantErr(t, e.svc.DeleteModel(e.ctx, "x", "c"), registry.ErrNotFound)
	// the name can be used again, from version 1
	e.model(t, "c")
	if v := e.version(t, "c", nil); v.Version != 1 {
		t.Fatalf("recreated model's first version = %d", v.Version)
	}
}

func testVersions(t *testing.T, e *env) {
	e.model(t, "m")
	in := registry.CreateVersionInput{
		Model:    "m",
		Artifact: registry.Artifact{Digest: e.digest("m-art"), Size: 1234, Format: "onnx", Manifest: true},
		Signature: registry.Signature{
			Inputs:  []registry.TensorSpec{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}},
			Outputs: []registry.TensorSpec{{Name: "y", Datatype: "FP32", Shape: []int64{-1, 3}}},
		},
		Metrics: map[string]registry.Metric{"accuracy": hi(0.93), "latency_ms": lo(4.5)},
		Params:  map[string]string{"epochs": "20", "lr": "0.01"},
		Tags:    map[string]string{"git": "abc123"},
		Lineage: registry.Lineage{PipelineRunID: "run-7", DatasetDigests: []string{"sha256:aa", "sha256:bb"}},
		Source:  "s3://bucket/model", RunID: "r1", RunLink: "http://mlflow/r1",
		Description: "first",
	}
	v, created, err := e.svc.CreateVersion(e.ctx, "bob", in)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	want := registry.ModelVersion{
		Model: "m", Version: 1, Artifact: in.Artifact, Signature: in.Signature, Metrics: in.Metrics, Params: in.Params, Tags: in.Tags,
		Lineage: in.Lineage, Source: in.Source, RunID: in.RunID, RunLink: in.RunLink, Status: registry.StatusReady,
		Description: "first", Stage: registry.StageDevelopment, Aliases: []string{}, CreatedBy: "bob", CreatedAt: v.CreatedAt,
		UpdatedBy: "bob", UpdatedAt: v.CreatedAt, ContentDigest: v.ContentDigest,
	}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("created\n got %+v\nwant %+v", v, want)
	}
	got, err := e.svc.GetVersion(e.ctx, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("get\n got %+v\nwant %+v", got, want)
	}
	for i := int64(2); i <= 3; i++ {
		if v := e.version(t, "m", nil); v.Version != i {
			t.Fatalf("version number = %d, want %d", v.Version, i)
		}
	}
	m, err := e.svc.GetModel(e.ctx, "m")
	if err != nil || m.LatestVersion != 3 || len(m.LatestVersions) != 1 || m.LatestVersions[0].Version != 3 {
		t.Fatalf("model after 3 versions = %+v, %v", m, err)
	}

	u, err := e.svc.UpdateVersion(e.ctx, "erin", "m", 1, registry.VersionUpdate{Description: ptr("better"),
		SetTags: map[string]string{"reviewed": "yes"}, DeleteTags: []string{"git"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Description != "better" || u.UpdatedBy != "erin" || !u.UpdatedAt.After(v.UpdatedAt) || !reflect.DeepEqual(u.Tags, map[string]string{"reviewed": "yes"}) {
		t.Fatalf("updated = %+v", u)
	}
	if !reflect.DeepEqual(u.Metrics, v.Metrics) || u.Artifact != v.Artifact || u.CreatedBy != "bob" {
		t.Fatalf("update changed immutable fields: %+v", u)
	}

	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			name string
			err  error
			want error
		}{
			{"missing version", func() error { _, err := e.svc.GetVersion(e.ctx, "m", 99); return err }(), registry.ErrNotFound},
			{"missing model", func() error { _, err := e.svc.GetVersion(e.ctx, "nope", 1); return err }(), registry.ErrNotFound},
			{"version zero", func() error { _, err := e.svc.GetVersion(e.ctx, "m", 0); return err }(), registry.ErrInvalid},
			{"create on missing model", func() error {
				_, _, err := e.svc.CreateVersion(e.ctx, "x", registry.CreateVersionInput{Model: "nope", Artifact: registry.Artifact{Digest: e.digest("z")}})
				return err
			}(), registry.ErrNotFound},
			{"update missing", func() error {
				_, err := e.svc.UpdateVersion(e.ctx, "x", "m", 42, registry.VersionUpdate{Description: ptr("d")})
				return err
			}(), registry.ErrNotFound},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { wantErr(t, c.err, c.want) })
		}
	})
}

func testVersionValidation(t *testing.T, e *env) {
	e.model(t, "m")
	good := func() registry.CreateVersionInput {
		return registry.CreateVersionInput{Model: "m", Artifact: registry.Artifact{Digest: e.digest("m"), Size: 1, Format: "onnx"}}
	}
	cases := []struct {
		name   string
		mutate func(in *registry.CreateVersionInput)
		want   error
	}{
		{"bad digest", func(in *registry.CreateVersionInput) { in.Artifact.Digest = "md5:abc" }, registry.ErrInvalid},
		{"uppercase digest", func(in *registry.CreateVersionInput) { in.Artifact.Digest = strings.ToUpper(in.Artifact.Digest) }, registry.ErrInvalid},
		{"negative size", func(in *registry.CreateVersionInput) { in.Artifact.Size = -1 }, registry.ErrInvalid},
		{"bad format", func(in *registry.CreateVersionInput) { in.Artifact.Format = "ON NX" }, registry.ErrInvalid},
		{"metric without direction", func(in *registry.CreateVersionInput) {
			in.Metrics = map[string]registry.Metric{"acc": {Value: 1}}
		}, registry.ErrInvalid},
		{"bad metric key", func(in *registry.CreateVersionInput) { in.Metrics = map[string]registry.Metric{"": hi(1)} }, registry.ErrInvalid},
		{"duplicate tensor", func(in *registry.CreateVersionInput) {
			in.Signature.Inputs = []registry.TensorSpec{{Name: "x"}, {Name: "x"}}
		}, registry.ErrInvalid},
		{"bad dimension", func(in *registry.CreateVersionInput) {
			in.Signature.Inputs = []registry.TensorSpec{{Name: "x", Shape: []int64{-2}}}
		}, registry.ErrInvalid},
		{"long description", func(in *registry.CreateVersionInput) { in.Description = strings.Repeat("d", 5001) }, registry.ErrInvalid},
		{"missing blob", func(in *registry.CreateVersionInput) {
			in.Artifact.Digest = "sha256:" + strings.Repeat("0", 64)
		}, registry.ErrPreconditionFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := good()
			c.mutate(&in)
			_, _, err := e.svc.CreateVersion(e.ctx, "x", in)
			wantErr(t, err, c.want)
		})
	}
	// nothing was stored, and numbering is not disturbed
	if v := e.version(t, "m", nil); v.Version != 1 {
		t.Fatalf("first good version = %d, want 1", v.Version)
	}
}

func testConcurrentNumbering(t *testing.T, e *env) {
	e.model(t, "m")
	const workers, each = 16, 4
	var wg sync.WaitGroup
	nums := make(chan int64, workers*each)
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				v, _, err := e.svc.CreateVersion(e.ctx, fmt.Sprintf("w%d", w), registry.CreateVersionInput{
					Model: "m", Artifact: registry.Artifact{Digest: e.digest("m"), Size: int64(i)}})
				if err != nil {
					errs <- err
					continue
				}
				nums <- v.Version
			}
		}(w)
	}
	wg.Wait()
	close(nums)
	close(errs)
	for err := range errs {
		t.Errorf("concurrent create: %v", err)
	}
	var got []int64
	for n := range nums {
		got = append(got, n)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	if len(got) != workers*each {
		t.Fatalf("%d versions created, want %d", len(got), workers*each)
	}
	for i, n := range got {
		if n != int64(i+1) {
			t.Fatalf("version numbers %v: want 1..%d without gaps or duplicates", got, workers*each)
		}
	}
	page, err := e.svc.SearchVersions(e.ctx, registry.SearchQuery{Filter: "name = 'm'", MaxResults: 1000})
	if err != nil || len(page.Versions) != workers*each {
		t.Fatalf("stored versions = %d, %v", len(page.Versions), err)
	}
}

func testIdempotency(t *testing.T, e *env) {
	e.model(t, "m")
	in := registry.CreateVersionInput{Model: "m", Artifact: registry.Artifact{Digest: e.digest("m"), Size: 5},
		Metrics: map[string]registry.Metric{"acc": hi(0.9)}, IdempotencyKey: "req-1"}
	v1, created, err := e.svc.CreateVersion(e.ctx, "a", in)
	if err != nil || !created {
		t.Fatalf("first create: %v %v", created, err)
	}
	v2, created, err := e.svc.CreateVersion(e.ctx, "a", in)
	if err != nil || created {
		t.Fatalf("retry: created=%v err=%v", created, err)
	}
	if v2.Version != v1.Version || !v2.CreatedAt.Equal(v1.CreatedAt) {
		t.Fatalf("retry returned version %d (created %v), want %d", v2.Version, v2.CreatedAt, v1.Version)
	}
	other := in
	other.Metrics = map[string]registry.Metric{"acc": hi(0.8)}
	_, _, err = e.svc.CreateVersion(e.ctx, "a", other)
	wantErr(t, err, registry.ErrConflict)

	// the same key on another model is independent
	e.model(t, "n")
	onN := in
	onN.Model = "n"
	onN.Artifact.Digest = e.digest("n")
	if v, created, err := e.svc.CreateVersion(e.ctx, "a", onN); err != nil || !created || v.Version != 1 {
		t.Fatalf("same key on another model: %+v %v %v", v, created, err)
	}

	// concurrent retries of one request make one version
	in.IdempotencyKey = "req-2"
	var wg sync.WaitGroup
	res := make(chan int64, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := e.svc.CreateVersion(e.ctx, "a", in)
			if err != nil {
				t.Errorf("concurrent retry: %v", err)
				return
			}
			res <- v.Version
		}()
	}
	wg.Wait()
	close(res)
	first := int64(-1)
	for n := range res {
		if first == -1 {
			first = n
		}
		if n != first {
			t.Fatalf("concurrent retries made versions %d and %d", first, n)
		}
	}
	m, err := e.svc.GetModel(e.ctx, "m")
	if err != nil || m.LatestVersion != 2 {
		t.Fatalf("latest version = %d (%v), want 2", m.LatestVersion, err)
	}
}

func testAliases(t *testing.T, e *env) {
	e.model(t, "m")
	e.version(t, "m", nil)
	e.version(t, "m", nil)
	a, err := e.svc.SetAlias(e.ctx, "ann", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 1 || a.UpdatedBy != "ann" || a.Name != "champion" || a.Model != "m" || a.UpdatedAt.IsZero() {
		t.Fatalf("alias = %+v", a)
	}
	v, err := e.svc.VersionByAlias(e.ctx, "m", "champion")
	if err != nil || v.Version != 1 || !reflect.DeepEqual(v.Aliases, []string{"champion"}) {
		t.Fatalf("by alias = %+v, %v", v, err)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"reserved latest", func() error {
			_, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "m", Alias: "latest", Version: 1})
			return err
		}(), registry.ErrInvalid},
		{"reserved v1", func() error {
			_, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "m", Alias: "v1", Version: 1})
			return err
		}(), registry.ErrInvalid},
		{"bad chars", func() error {
			_, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "m", Alias: "a b", Version: 1})
			return err
		}(), registry.ErrInvalid},
		{"missing version", func() error {
			_, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "m", Alias: "x", Version: 9})
			return err
		}(), registry.ErrNotFound},
		{"missing model", func() error {
			_, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "nope", Alias: "x", Version: 1})
			return err
		}(), registry.ErrNotFound},
		{"missing alias", func() error { _, err := e.svc.GetAlias(e.ctx, "m", "nope"); return err }(), registry.ErrNotFound},
		{"CAS wrong version", func() error {
			_, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 2, ExpectedVersion: ptr(int64(2))})
			return err
		}(), registry.ErrConflict},
		{"CAS expected absent", func() error {
			_, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 2, ExpectedVersion: ptr(int64(0))})
			return err
		}(), registry.ErrConflict},
		{"delete missing", e.svc.DeleteAlias(e.ctx, "x", registry.DeleteAliasInput{Model: "m", Alias: "nope"}), registry.ErrNotFound},
		{"delete CAS", e.svc.DeleteAlias(e.ctx, "x", registry.DeleteAliasInput{Model: "m", Alias: "champion", ExpectedVersion: ptr(int64(2))}), registry.ErrConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantErr(t, c.err, c.want) })
	}
	if a, err := e.svc.GetAlias(e.ctx, "m", "champion"); err != nil || a.Version != 1 {
		t.Fatalf("failed changes moved the alias: %+v %v", a, err)
	}
	// CAS move succeeds when the expectation holds
	if a, err := e.svc.SetAlias(e.ctx, "ann", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 2, ExpectedVersion: ptr(int64(1))}); err != nil || a.Version != 2 {
		t.Fatalf("CAS move: %+v %v", a, err)
	}
	if _, err := e.svc.SetAlias(e.ctx, "ann", registry.SetAliasInput{Model: "m", Alias: "challenger", Version: 1, ExpectedVersion: ptr(int64(0))}); err != nil {
		t.Fatalf("CAS create: %v", err)
	}
	m, err := e.svc.GetModel(e.ctx, "m")
	if err != nil || !reflect.DeepEqual(m.Aliases, map[string]int64{"champion": 2, "challenger": 1}) {
		t.Fatalf("model aliases = %v, %v", m.Aliases, err)
	}
	// concurrent CAS moves from the same expectation: exactly one wins
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := e.svc.SetAlias(e.ctx, "race", registry.SetAliasInput{Model: "m", Alias: "champion", Version: int64(1 + i%2), ExpectedVersion: ptr(int64(2))})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, registry.ErrConflict):
				conflicts++
			default:
				t.Errorf("CAS race: %v", err)
			}
		}(i)
	}
	wg.Wait()
	// a mover that sets the value it expects (2 → 2) also succeeds as a no-op;
	// at most one real move (2 → 1) can win, and every loser sees a conflict
	if wins+conflicts != 6 || wins < 1 {
		t.Fatalf("CAS race: %d wins, %d conflicts", wins, conflicts)
	}
	if err := e.svc.DeleteAlias(e.ctx, "ann", registry.DeleteAliasInput{Model: "m", Alias: "challenger", ExpectedVersion: ptr(int64(1))}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.GetAlias(e.ctx, "m", "challenger"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted alias: %v", err)
	}
}

func testTransitions(t *testing.T, e *env) {
	e.model(t, "m")
	for i := 0; i < 3; i++ {
		e.version(t, "m", nil)
	}
	r := e.promote(t, "m", 1, registry.StageProduction, false)
	if r.Version.Stage != registry.StageProduction || len(r.Transitions) != 1 || r.Transitions[0].From != registry.StageDevelopment ||
		r.Transitions[0].Actor != "carol" || r.Transitions[0].Reason != "test" {
		t.Fatalf("promote = %+v", r)
	}
	e.promote(t, "m", 2, registry.StageProduction, false)
	hs, err := e.store.StageHolders(e.ctx, "m", registry.StageProduction)
	if err != nil || len(hs) != 2 || hs[0].Version != 2 || hs[1].Version != 1 {
		t.Fatalf("production holders = %v, %v", hs, err)
	}
	r = e.promote(t, "m", 3, registry.StageProduction, true)
	if len(r.Transitions) != 3 {
		t.Fatalf("archive_existing recorded %d transitions, want 3: %+v", len(r.Transitions), r.Transitions)
	}
	for _, n := range []int64{1, 2} {
		v, err := e.svc.GetVersion(e.ctx, "m", n)
		if err != nil || v.Stage != registry.StageArchived || v.UpdatedBy != "carol" {
			t.Fatalf("version %d after archive_existing = %+v, %v", n, v, err)
		}
	}
	latest, err := e.svc.LatestVersions(e.ctx, "m", nil)
	if err != nil || len(latest) != 2 || latest[0].Stage != registry.StageProduction || latest[0].Version != 3 ||
		latest[1].Stage != registry.StageArchived || latest[1].Version != 2 {
		t.Fatalf("latest versions = %+v, %v", latest, err)
	}
	latest, err = e.svc.LatestVersions(e.ctx, "m", []registry.Stage{registry.StageStaging})
	if err != nil || len(latest) != 0 {
		t.Fatalf("latest staging = %+v, %v", latest, err)
	}
	// a transition to the stage a version is already in records nothing
	r = e.promote(t, "m", 3, registry.StageProduction, false)
	if len(r.Transitions) != 0 {
		t.Fatalf("no-op transition recorded %+v", r.Transitions)
	}
	_, err = e.svc.Transition(e.ctx, "x", registry.TransitionInput{Model: "m", Version: 3, To: "live"})
	wantErr(t, err, registry.ErrInvalid)
	_, err = e.svc.Transition(e.ctx, "x", registry.TransitionInput{Model: "m", Version: 9, To: registry.StageStaging})
	wantErr(t, err, registry.ErrNotFound)
	// the store refuses a transition planned against a stale view
	_, _, err = e.store.Transition(e.ctx, registry.StageChange{Model: "m", Version: 1, To: registry.StageProduction,
		ExpectHolders: []int64{}, Actor: "x", At: e.clock.Now()})
	wantErr(t, err, registry.ErrConflict)
	_, _, err = e.store.Transition(e.ctx, registry.StageChange{Model: "m", Version: 1, To: registry.StageStaging,
		ExpectFrom: registry.StageDevelopment, Actor: "x", At: e.clock.Now()})
	wantErr(t, err, registry.ErrConflict)
}

func testConcurrentPromotion(t *testing.T, e *env) {
	e.model(t, "m")
	for i := 0; i < 8; i++ {
		e.version(t, "m", nil)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 1; i <= 8; i++ {
		wg.Add(1)
		go func(n int64) {
			defer wg.Done()
			_, err := e.svc.Transition(e.ctx, "race", registry.TransitionInput{Model: "m", Version: n, To: registry.StageProduction, ArchiveExisting: true})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if !errors.Is(err, registry.ErrConflict) {
				t.Errorf("concurrent promotion: %v", err)
			}
		}(int64(i))
	}
	wg.Wait()
	hs, err := e.store.StageHolders(e.ctx, "m", registry.StageProduction)
	if err != nil {
		t.Fatal(err)
	}
	if ok < 1 || len(hs) != 1 {
		t.Fatalf("%d promotions succeeded, production holds %d versions; want >= 1 and exactly 1", ok, len(hs))
	}
}

func testGates(t *testing.T, e *env) {
	_, err := e.svc.CreateModel(e.ctx, "alice", registry.CreateModelInput{Name: "m", Gates: map[registry.Stage][]string{
		registry.StageProduction: {"no_regression(accuracy, production, 0.01)", "accuracy >= production.accuracy - 0.01"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	v1 := e.version(t, "m", map[string]registry.Metric{"accuracy": hi(0.90), "latency_p99": lo(20)})
	v2 := e.version(t, "m", map[string]registry.Metric{"accuracy": hi(0.85), "latency_p99": lo(10)})
	v3 := e.version(t, "m", map[string]registry.Metric{"accuracy": hi(0.895), "latency_p99": lo(30)})
	v4 := e.version(t, "m", map[string]registry.Metric{"latency_p99": lo(5)})

	// nobody holds production: the rules comparing against it pass (skipped)
	r := e.promote(t, "m", v1.Version, registry.StageProduction, true)
	if len(r.Gates) != 2 || !r.Gates[0].Passed || !r.Gates[0].Skipped {
		t.Fatalf("first promotion gates = %+v", r.Gates)
	}

	cases := []struct {
		name    string
		version int64
		extra   []string
		skip    bool
		pass    bool
		detail  string
	}{
		{"accuracy drop beyond tolerance", v2.Version, nil, false, false, "0.85"},
		{"within tolerance", v3.Version, nil, false, true, ""},
		{"call gate on lower-is-better", v3.Version, []string{"latency_p99 <= 25"}, false, false, "30"},
		{"no regression uses declared direction", v2.Version, []string{"no_regression(latency_p99, production)"}, true, true, ""},
		{"regression in lower-is-better", v3.Version, []string{"no_regression(latency_p99, production)"}, true, false, "latency_p99"},
		{"improves", v2.Version, []string{"improves(latency_p99, production, 5)"}, true, true, ""},
		{"candidate lacks metric", v4.Version, nil, false, false, "no metric"},
		{"skip stored gates", v2.Version, nil, true, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.svc.CheckGates(e.ctx, "m", c.version, registry.StageProduction, c.extra)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.svc.Transition(e.ctx, "x", registry.TransitionInput{Model: "m", Version: c.version, To: registry.StageStaging})
			if err != nil {
				t.Fatalf("staging has no gates: %v", err)
			}
			in := registry.TransitionInput{Model: "m", Version: c.version, To: registry.StageProduction, Gates: c.extra, SkipStoredGates: c.skip}
			got, err := e.svc.Transition(e.ctx, "x", in)
			if c.pass {
				if err != nil {
					t.Fatalf("promotion refused: %v", err)
				}
				for _, g := range got.Gates {
					if !g.Passed {
						t.Fatalf("passed promotion reports a failed gate: %+v", g)
					}
				}
				// put the original production version back for the next case
				e.promote(t, "m", v1.Version, registry.StageProduction, true)
				return
			}
			wantErr(t, err, registry.ErrPreconditionFailed)
			ge, ok := registry.IsGateError(err)
			if !ok || ge.Version != c.version || ge.To != registry.StageProduction {
				t.Fatalf("error %v is not a GateError for version %d", err, c.version)
			}
			if !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("error %q does not name %q", err, c.detail)
			}
			if !c.skip {
				failed := 0
				for _, g := range res {
					if !g.Passed {
						failed++
					}
				}
				if failed == 0 {
					t.Fatalf("dry run passed but promotion failed: %+v", res)
				}
			}
			v, err := e.svc.GetVersion(e.ctx, "m", c.version)
			if err != nil || v.Stage != registry.StageStaging {
				t.Fatalf("refused promotion moved the version: %+v %v", v, err)
			}
		})
	}
	_, err = e.svc.Transition(e.ctx, "x", registry.TransitionInput{Model: "m", Version: v2.Version, To: registry.StageProduction, Gates: []string{"accuracy >"}})
	wantErr(t, err, registry.ErrInvalid)
}

func testCompare(t *testing.T, e *env) {
	e.model(t, "m")
	mk := func(metrics map[string]registry.Metric, params map[string]string, sig registry.Signature, art string) registry.ModelVersion {
		v, _, err := e.svc.CreateVersion(e.ctx, "x", registry.CreateVersionInput{Model: "m",
			Artifact: registry.Artifact{Digest: e.digest(art), Size: 1}, Metrics: metrics, Params: params, Signature: sig})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a := mk(map[string]registry.Metric{"acc": hi(0.8), "lat": lo(10), "loss": lo(0.5), "old": hi(1), "f1": hi(0.7), "mix": hi(1)},
		map[string]string{"lr": "0.1", "epochs": "10", "gone": "x"},
		registry.Signature{Inputs: []registry.TensorSpec{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}, {Name: "mask", Datatype: "BOOL"}}}, "a")
	b := mk(map[string]registry.Metric{"acc": hi(0.9), "lat": lo(12), "loss": lo(0.5), "new": lo(3), "f1": hi(0.6), "mix": lo(2)},
		map[string]string{"lr": "0.1", "epochs": "20", "added": "y"},
		registry.Signature{Inputs: []registry.TensorSpec{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 8}}}, Outputs: []registry.TensorSpec{{Name: "y", Datatype: "FP32"}}}, "b")
	c, err := e.svc.Compare(e.ctx, "m", a.Version, b.Version)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]string{}
	for _, m := range c.Metrics {
		verdicts[m.Name] = m.Verdict
		if m.Name == "acc" && (m.Delta == nil || *m.Delta < 0.099 || *m.Delta > 0.101) {
			t.Fatalf("acc delta = %v", m.Delta)
		}
	}
	want := map[string]string{"acc": "improved", "lat": "regressed", "loss": "unchanged", "old": "only_a", "new": "only_b", "f1": "regressed", "mix": "direction_mismatch"}
	if !reflect.DeepEqual(verdicts, want) {
		t.Fatalf("verdicts = %v, want %v", verdicts, want)
	}
	params := map[string][2]string{}
	for _, p := range c.Params {
		var x, y string
		if p.A != nil {
			x = *p.A
		}
		if p.B != nil {
			y = *p.B
		}
		params[p.Name] = [2]string{x, y}
	}
	if !reflect.DeepEqual(params, map[string][2]string{"epochs": {"10", "20"}, "gone": {"x", ""}, "added": {"", "y"}}) {
		t.Fatalf("param diffs = %v", params)
	}
	changes := map[string]string{}
	for _, d := range c.Signature {
		changes[d.Kind+"/"+d.Name] = d.Change
	}
	if !c.SignatureChanged || !reflect.DeepEqual(changes, map[string]string{"input/x": "changed", "input/mask": "removed", "output/y": "added"}) {
		t.Fatalf("signature diff = %v (changed=%v)", changes, c.SignatureChanged)
	}
	if !c.ArtifactChanged {
		t.Fatal("artifact change not reported")
	}
	same, err := e.svc.Compare(e.ctx, "m", a.Version, a.Version)
	if err != nil || same.SignatureChanged || len(same.Params) != 0 || same.ArtifactChanged {
		t.Fatalf("self-compare = %+v, %v", same, err)
	}
	_, err = e.svc.Compare(e.ctx, "m", a.Version, 99)
	wantErr(t, err, registry.ErrNotFound)
}

func testHistory(t *testing.T, e *env) {
	e.model(t, "m")
	e.version(t, "m", nil)
	e.version(t, "m", nil)
	t0 := e.clock.Peek()
	e.promote(t, "m", 1, registry.StageProduction, true)
	t1 := e.clock.Peek()
	e.promote(t, "m", 2, registry.StageProduction, true)
	t2 := e.clock.Peek()
	e.promote(t, "m", 1, registry.StageProduction, true) // rollback
	t3 := e.clock.Peek()
	cases := []struct {
		at   time.Time
		want []int64
	}{
		{t0, []int64{}},
		{t1, []int64{1}},
		{t2, []int64{2}},
		{t3, []int64{1}},
	}
	for i, c := range cases {
		got, err := e.svc.StageAt(e.ctx, "m", registry.StageProduction, c.at)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Fatalf("case %d: production at %v = %v, want %v", i, c.at, got, c.want)
		}
	}
	if got, err := e.svc.StageAt(e.ctx, "m", registry.StageArchived, t2); err != nil || !reflect.DeepEqual(got, []int64{1}) {
		t.Fatalf("archived at t2 = %v, %v", got, err)
	}
	h, err := e.svc.History(e.ctx, "m", registry.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	// 2 registrations + 1 + 2 + 2
	if len(h) != 7 {
		t.Fatalf("history has %d entries, want 7: %+v", len(h), h)
	}
	for i := 1; i < len(h); i++ {
		if h[i].At.Before(h[i-1].At) {
			t.Fatalf("history out of order: %+v", h)
		}
	}
	if h[0].From != "" || h[0].To != registry.StageDevelopment || h[0].Actor != "bob" {
		t.Fatalf("registration entry = %+v", h[0])
	}
	if h1, err := e.svc.History(e.ctx, "m", registry.HistoryQuery{Version: 2}); err != nil || len(h1) != 3 {
		t.Fatalf("history of version 2 = %+v, %v", h1, err)
	}
	if last, err := e.svc.History(e.ctx, "m", registry.HistoryQuery{Limit: 2}); err != nil || len(last) != 2 || !last[1].At.Equal(h[6].At) {
		t.Fatalf("last 2 = %+v, %v", last, err)
	}

	// alias history
	a0 := e.clock.Peek()
	if _, err := e.svc.SetAlias(e.ctx, "ann", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 1, Reason: "first"}); err != nil {
		t.Fatal(err)
	}
	a1 := e.clock.Peek()
	if _, err := e.svc.SetAlias(e.ctx, "ann", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 2}); err != nil {
		t.Fatal(err)
	}
	a2 := e.clock.Peek()
	if err := e.svc.DeleteAlias(e.ctx, "ann", registry.DeleteAliasInput{Model: "m", Alias: "champion"}); err != nil {
		t.Fatal(err)
	}
	a3 := e.clock.Peek()
	for i, c := range []struct {
		at   time.Time
		want int64
	}{{a0, 0}, {a1, 1}, {a2, 2}, {a3, 0}} {
		got, err := e.svc.AliasAt(e.ctx, "m", "champion", c.at)
		if c.want == 0 {
			if !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("case %d: alias at %v = %d, %v; want not found", i, c.at, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Fatalf("case %d: alias at %v = %d, %v; want %d", i, c.at, got, err, c.want)
		}
	}
	ev, err := e.svc.AliasHistory(e.ctx, "m", registry.HistoryQuery{Alias: "champion"})
	if err != nil || len(ev) != 3 || ev[0].From != 0 || ev[0].To != 1 || ev[0].Reason != "first" || ev[1].From != 1 || ev[1].To != 2 ||
		ev[2].From != 2 || ev[2].To != 0 || ev[2].Actor != "ann" {
		t.Fatalf("alias history = %+v, %v", ev, err)
	}
	_, err = e.svc.History(e.ctx, "nope", registry.HistoryQuery{})
	wantErr(t, err, registry.ErrNotFound)

	// a deletion ends the version's time in its stage, without rewriting the past
	d0 := e.clock.Peek()
	if err := e.svc.DeleteVersion(e.ctx, "dan", "m", 1); err != nil {
		t.Fatal(err)
	}
	d1 := e.clock.Peek()
	if got, err := e.svc.StageAt(e.ctx, "m", registry.StageProduction, d0); err != nil || !reflect.DeepEqual(got, []int64{1}) {
		t.Fatalf("production before the deletion = %v, %v", got, err)
	}
	if got, err := e.svc.StageAt(e.ctx, "m", registry.StageProduction, d1); err != nil || len(got) != 0 {
		t.Fatalf("production after the deletion = %v, %v", got, err)
	}
	h, err = e.svc.History(e.ctx, "m", registry.HistoryQuery{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if last := h[len(h)-1]; last.From != registry.StageProduction || last.To != "" || last.Actor != "dan" || last.Reason != "deleted" {
		t.Fatalf("deletion entry = %+v", last)
	}
}

func testDeleteRefusal(t *testing.T, e *env) {
	e.model(t, "m")
	e.version(t, "m", nil)
	e.version(t, "m", nil)
	e.version(t, "m", nil)
	if _, err := e.svc.SetAlias(e.ctx, "a", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 1}); err != nil {
		t.Fatal(err)
	}
	e.served.set("m", 2, true)
	wantErr(t, e.svc.DeleteVersion(e.ctx, "x", "m", 1), registry.ErrPreconditionFailed)
	wantErr(t, e.svc.DeleteVersion(e.ctx, "x", "m", 2), registry.ErrPreconditionFailed)
	wantErr(t, e.store.DeleteVersion(e.ctx, "m", 1, "x", e.clock.Now()), registry.ErrPreconditionFailed) // the store guards aliases too
	wantErr(t, e.svc.DeleteModel(e.ctx, "x", "m"), registry.ErrPreconditionFailed)
	wantErr(t, e.svc.DeleteVersion(e.ctx, "x", "m", 9), registry.ErrNotFound)
	if err := e.svc.DeleteVersion(e.ctx, "x", "m", 3); err != nil {
		t.Fatalf("delete an unaliased, unserved version: %v", err)
	}
	if _, err := e.svc.GetVersion(e.ctx, "m", 3); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted version: %v", err)
	}
	// numbers are never reused
	if v := e.version(t, "m", nil); v.Version != 4 {
		t.Fatalf("version after delete = %d, want 4", v.Version)
	}
	if err := e.svc.DeleteAlias(e.ctx, "x", registry.DeleteAliasInput{Model: "m", Alias: "champion"}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteVersion(e.ctx, "x", "m", 1); err != nil {
		t.Fatalf("delete after the alias is gone: %v", err)
	}
	wantErr(t, e.svc.DeleteModel(e.ctx, "x", "m"), registry.ErrPreconditionFailed) // v2 still served
	e.served.set("m", 2, false)
	if err := e.svc.DeleteModel(e.ctx, "x", "m"); err != nil {
		t.Fatal(err)
	}
}

func testSearchModels(t *testing.T, e *env) {
	for _, n := range []string{"churn", "Churn-EU", "fraud", "fraud-v2", "ranker"} {
		e.model(t, n)
	}
	if _, err := e.svc.UpdateModel(e.ctx, "x", "fraud", registry.ModelUpdate{SetTags: map[string]string{"team": "risk"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdateModel(e.ctx, "x", "churn", registry.ModelUpdate{SetTags: map[string]string{"team": "growth"}}); err != nil {
		t.Fatal(err)
	}
	e.version(t, "ranker", nil)
	if _, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "ranker", Alias: "prod", Version: 1}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		filter string
		order  []string
		want   []string
	}{
		{"", nil, []string{"Churn-EU", "churn", "fraud", "fraud-v2", "ranker"}},
		{"name = 'fraud'", nil, []string{"fraud"}},
		{"name LIKE 'fraud%'", nil, []string{"fraud", "fraud-v2"}},
		{"name LIKE 'churn%'", nil, []string{"churn"}},
		{"name ILIKE 'churn%'", nil, []string{"Churn-EU", "churn"}},
		{"name NOT LIKE '%ur%'", nil, []string{"fraud", "fraud-v2", "ranker"}},
		{"tags.team = 'risk'", nil, []string{"fraud"}},
		{"tags.team != 'risk'", nil, []string{"churn"}},
		{"tags.team = 'risk' OR name = 'ranker'", nil, []string{"fraud", "ranker"}},
		{"alias = 'prod'", nil, []string{"ranker"}},
		{"name IN ('churn', 'ranker', 'none')", []string{"name DESC"}, []string{"ranker", "churn"}},
		{"", []string{"creation_timestamp DESC"}, []string{"ranker", "fraud-v2", "fraud", "Churn-EU", "churn"}},
		{"", []string{"last_updated_timestamp DESC"}, []string{"churn", "fraud", "ranker", "fraud-v2", "Churn-EU"}},
	}
	for _, c := range cases {
		t.Run(c.filter+" "+strings.Join(c.order, ","), func(t *testing.T) {
			p, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{Filter: c.filter, OrderBy: c.order})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range p.Models {
				got = append(got, m.Name)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
	p, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{Filter: "name = 'ranker'"})
	if err != nil || len(p.Models) != 1 || p.Models[0].Aliases["prod"] != 1 || len(p.Models[0].LatestVersions) != 1 {
		t.Fatalf("search result is not a whole model: %+v, %v", p.Models, err)
	}
	for _, bad := range []string{"version_number = 1", "name = ", "name == 'a' AND", "(name = 'a'", "tags.x > 'a'", "bogus = 1", "name = 1"} {
		if _, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{Filter: bad}); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("filter %q: error = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{OrderBy: []string{"version_number"}}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("bad order: %v", err)
	}
	if _, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{MaxResults: registry.MaxModelPage + 1}); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("too many results: %v", err)
	}
}

func testSearchVersions(t *testing.T, e *env) {
	e.model(t, "a")
	e.model(t, "b")
	mk := func(model string, acc float64, run string, tags map[string]string, params map[string]string) {
		_, _, err := e.svc.CreateVersion(e.ctx, "u-"+model, registry.CreateVersionInput{Model: model,
			Artifact: registry.Artifact{Digest: e.digest(model), Size: 1, Format: "onnx"},
			Metrics:  map[string]registry.Metric{"accuracy": hi(acc)}, RunID: run, Tags: tags, Params: params})
		if err != nil {
			t.Fatal(err)
		}
	}
	mk("a", 0.70, "r1", map[string]string{"env": "dev"}, map[string]string{"lr": "0.1"})
	mk("a", 0.80, "r2", map[string]string{"env": "prod"}, map[string]string{"lr": "0.01"})
	mk("a", 0.90, "r3", nil, nil)
	mk("b", 0.60, "r4", map[string]string{"env": "prod"}, nil)
	mk("b", 0.95, "r5", nil, map[string]string{"lr": "0.1"})
	e.promote(t, "a", 2, registry.StageProduction, false)
	e.promote(t, "b", 2, registry.StageStaging, false)
	if _, err := e.svc.SetAlias(e.ctx, "x", registry.SetAliasInput{Model: "a", Alias: "champion", Version: 2}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		filter string
		order  []string
		want   []string
	}{
		{"", nil, []string{"a/3", "a/2", "a/1", "b/2", "b/1"}},
		{"name = 'a'", nil, []string{"a/3", "a/2", "a/1"}},
		{"name = 'a' AND version_number > 1", []string{"version_number ASC"}, []string{"a/2", "a/3"}},
		{"version_number <= 1", nil, []string{"a/1", "b/1"}},
		{"version_number IN (1, 3)", nil, []string{"a/3", "a/1", "b/1"}},
		{"run_id = 'r4'", nil, []string{"b/1"}},
		{"run_id IN ('r1', 'r5')", nil, []string{"a/1", "b/2"}},
		{"tags.env = 'prod'", nil, []string{"a/2", "b/1"}},
		{"tag.`env` LIKE 'd%'", nil, []string{"a/1"}},
		{"params.lr = '0.1'", nil, []string{"a/1", "b/2"}},
		{"metrics.accuracy >= 0.9", nil, []string{"a/3", "b/2"}},
		{"metrics.accuracy < 0.65 OR metrics.accuracy > 0.92", nil, []string{"b/2", "b/1"}},
		{"stage = 'production'", nil, []string{"a/2"}},
		{"current_stage = 'Staging'", nil, []string{"b/2"}},
		{"stage IN ('production', 'staging')", nil, []string{"a/2", "b/2"}},
		{"stage != 'development'", nil, []string{"a/2", "b/2"}},
		{"alias = 'champion'", nil, []string{"a/2"}},
		{"alias != 'champion' AND name = 'a'", nil, []string{"a/3", "a/1"}},
		{"user_id = 'u-b'", nil, []string{"b/2", "b/1"}},
		{"(name = 'a' OR name = 'b') AND (metrics.accuracy > 0.75 AND tags.env = 'prod')", nil, []string{"a/2"}},
		{"format = 'onnx' AND name LIKE 'b'", nil, []string{"b/2", "b/1"}},
		{"name = 'a' AND tags.env = 'prod'", nil, []string{"a/2"}},
		{"name = 'a' AND metrics.accuracy >= 0.8 AND params.lr != '0.1'", nil, []string{"a/2"}},
		{"name = 'a' AND tags.env NOT IN ('prod')", nil, []string{"a/3", "a/1"}},
		{"tags.env NOT IN ('prod') AND name = 'a'", []string{"version_number"}, []string{"a/1", "a/3"}},
		{"", []string{"creation_timestamp DESC"}, []string{"b/2", "b/1", "a/3", "a/2", "a/1"}},
		{"", []string{"last_updated_timestamp DESC"}, []string{"b/2", "a/2", "b/1", "a/3", "a/1"}},
	}
	for _, c := range cases {
		t.Run(c.filter+" "+strings.Join(c.order, ","), func(t *testing.T) {
			p, err := e.svc.SearchVersions(e.ctx, registry.SearchQuery{Filter: c.filter, OrderBy: c.order})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range p.Versions {
				got = append(got, fmt.Sprintf("%s/%d", v.Model, v.Version))
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
	p, err := e.svc.SearchVersions(e.ctx, registry.SearchQuery{Filter: "alias = 'champion'"})
	if err != nil || len(p.Versions) != 1 || !reflect.DeepEqual(p.Versions[0].Aliases, []string{"champion"}) || p.Versions[0].Metrics["accuracy"].Value != 0.8 {
		t.Fatalf("search result is not a whole version: %+v, %v", p.Versions, err)
	}
	for _, bad := range []string{"metrics.accuracy LIKE '1'", "stage = 'live'", "version_number = 1.5", "version_number = 'x'", "name > 'a'", "creation_timestamp = 'yesterday'"} {
		if _, err := e.svc.SearchVersions(e.ctx, registry.SearchQuery{Filter: bad}); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("filter %q: error = %v, want ErrInvalid", bad, err)
		}
	}
}

func testPagination(t *testing.T, e *env) {
	const models, perModel = 7, 6
	for i := 0; i < models; i++ {
		name := fmt.Sprintf("model-%02d", i)
		e.model(t, name)
		for j := 0; j < perModel; j++ {
			e.version(t, name, map[string]registry.Metric{"acc": hi(float64(j) / 10)})
		}
	}
	for _, order := range [][]string{nil, {"version_number DESC"}, {"creation_timestamp ASC"}, {"last_updated_timestamp DESC", "name DESC"}} {
		for _, size := range []int{1, 5, 13, 100} {
			t.Run(fmt.Sprintf("%v/%d", order, size), func(t *testing.T) {
				all, err := e.svc.SearchVersions(e.ctx, registry.SearchQuery{OrderBy: order, MaxResults: 1000, Filter: "metrics.acc >= 0.2"})
				if err != nil {
					t.Fatal(err)
				}
				if len(all.Versions) != models*(perModel-2) || all.NextPageToken != "" {
					t.Fatalf("one big page has %d versions (token %q)", len(all.Versions), all.NextPageToken)
				}
				var paged []registry.ModelVersion
				tok := ""
				for pages := 0; ; pages++ {
					if pages > len(all.Versions)+1 {
						t.Fatal("pagination does not end")
					}
					p, err := e.svc.SearchVersions(e.ctx, registry.SearchQuery{OrderBy: order, MaxResults: size, PageToken: tok, Filter: "metrics.acc >= 0.2"})
					if err != nil {
						t.Fatal(err)
					}
					if len(p.Versions) > size {
						t.Fatalf("page of %d for max_results %d", len(p.Versions), size)
					}
					paged = append(paged, p.Versions...)
					if p.NextPageToken == "" {
						break
					}
					tok = p.NextPageToken
				}
				if len(paged) != len(all.Versions) {
					t.Fatalf("pages hold %d versions, want %d", len(paged), len(all.Versions))
				}
				for i := range paged {
					if paged[i].Model != all.Versions[i].Model || paged[i].Version != all.Versions[i].Version {
						t.Fatalf("page item %d = %s/%d, want %s/%d", i, paged[i].Model, paged[i].Version, all.Versions[i].Model, all.Versions[i].Version)
					}
				}
			})
		}
	}
	p, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{MaxResults: 3})
	if err != nil || len(p.Models) != 3 || p.NextPageToken == "" {
		t.Fatalf("first model page: %d models, token %q, %v", len(p.Models), p.NextPageToken, err)
	}
	p2, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{MaxResults: 3, PageToken: p.NextPageToken})
	if err != nil || len(p2.Models) != 3 || p2.Models[0].Name != "model-03" {
		t.Fatalf("second model page: %+v, %v", p2.Models, err)
	}
	for _, order := range [][]string{{"name DESC"}, {"last_updated_timestamp DESC"}, {"creation_timestamp"}} {
		all, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{OrderBy: order, MaxResults: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		tok := ""
		for pages := 0; pages <= models; pages++ {
			p, err := e.svc.SearchModels(e.ctx, registry.SearchQuery{OrderBy: order, MaxResults: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range p.Models {
				names = append(names, m.Name)
			}
			if tok = p.NextPageToken; tok == "" {
				break
			}
		}
		var want []string
		for _, m := range all.Models {
			want = append(want, m.Name)
		}
		if len(want) != models || !reflect.DeepEqual(names, want) {
			t.Fatalf("models by %v in pages of 2 = %v, want %v", order, names, want)
		}
	}
	// a token only continues the search it came from
	_, err = e.svc.SearchModels(e.ctx, registry.SearchQuery{MaxResults: 3, PageToken: p.NextPageToken, Filter: "name LIKE 'model%'"})
	wantErr(t, err, registry.ErrInvalid)
	_, err = e.svc.SearchModels(e.ctx, registry.SearchQuery{PageToken: "garbage!"})
	wantErr(t, err, registry.ErrInvalid)
}

func testEvents(t *testing.T, e *env) {
	e.model(t, "m")
	e.version(t, "m", nil)
	e.version(t, "m", nil)
	e.promote(t, "m", 1, registry.StageProduction, false)
	e.promote(t, "m", 2, registry.StageProduction, true)
	if _, err := e.svc.SetAlias(e.ctx, "a", registry.SetAliasInput{Model: "m", Alias: "x", Version: 2}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteAlias(e.ctx, "a", registry.DeleteAliasInput{Model: "m", Alias: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteVersion(e.ctx, "a", "m", 1); err != nil {
		t.Fatal(err)
	}
	// failed operations emit nothing
	_, _ = e.svc.CreateModel(e.ctx, "a", registry.CreateModelInput{Name: "m"})
	want := []registry.EventKind{registry.EventModelCreated, registry.EventVersionCreated, registry.EventVersionCreated,
		registry.EventStageChanged, registry.EventStageChanged, registry.EventStageChanged,
		registry.EventAliasSet, registry.EventAliasDeleted, registry.EventVersionDeleted}
	if got := e.events.kinds(); !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}
