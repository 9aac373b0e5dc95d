package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/registry/dataset"
)

// datasetStore keeps dataset records in memory (the app wires the
// registry sink's store).
type datasetStore struct {
	records map[string][]dataset.Record // by datasetKey
	err     error
}

func (d datasetStore) Datasets(_ context.Context, model string, version int64) ([]dataset.Record, error) {
	if d.err != nil {
		return nil, d.err
	}
	return d.records[datasetKey(model, version)], nil
}

func datasetKey(model string, version int64) string { return fmt.Sprintf("%s/%d", model, version) }

func TestRegistryVersionDatasets(t *testing.T) {
	mean, std := 5.84, 0.83
	training := dataset.Record{
		Model: "churn", Version: 1, Name: "customers-2026-11", Role: "training", RunID: "run-2",
		Digest: "sha256:" + strings.Repeat("ab", 32), DigestKind: "unordered", Rows: 150,
		Created: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC),
		Profile: &dataset.Profile{Rows: 150, Columns: []*dataset.Column{
			{Name: "age", Type: "float64", Kind: "numeric", Count: 149, Nulls: 1, Mean: &mean, Std: &std,
				Quantiles: map[string]float64{"p50": 5.8}, Histogram: &dataset.Histogram{Edges: []float64{4, 8}, Fractions: []float64{1}}},
			{Name: "country", Type: "utf8", Kind: "categorical", Count: 150, Distinct: 2,
				Top: []dataset.Category{{Value: "fr", Count: 100}, {Value: "de", Count: 50}}},
		}},
	}
	scoring := dataset.Record{
		Model: "churn", Version: 1, Name: "scoring-daily", Role: "scoring", RunID: "run-1", Task: "t3",
		Digest: "sha256:" + strings.Repeat("cd", 32), DigestKind: "ordered", Rows: 20,
		Created: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
	}
	noProfile := training
	noProfile.Profile = nil

	e := newRegEnv(t)
	if r := e.json("POST", "/api/v1/models", `{"name":"churn"}`); r.code != 201 {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	e.register("churn", "v1 weights", `{}`)
	e.register("churn", "v2 weights", `{}`)
	plain := e.srv
	withRecords := func(err error) *Server {
		opts := plain.opts
		opts.Datasets = datasetStore{
			records: map[string][]dataset.Record{datasetKey("churn", 1): {training, scoring}},
			err:     err,
		}
		return New(opts)
	}
	good, failing := withRecords(nil), withRecords(errors.New("database is locked"))

	for _, tc := range []struct {
		name     string
		srv      *Server
		path     string
		wantCode int
		want     []dataset.Record // for 200
		wantErr  string           // error code, for the others
		wantMsg  string
	}{
		{name: "found", srv: good, path: "/api/v1/models/churn/versions/1/datasets", wantCode: 200, want: []dataset.Record{training, scoring}},
		{name: "role filter", srv: good, path: "/api/v1/models/churn/versions/1/datasets?role=training", wantCode: 200, want: []dataset.Record{training}},
		{name: "role without records", srv: good, path: "/api/v1/models/churn/versions/1/datasets?role=test", wantCode: 200, want: []dataset.Record{}},
		{name: "without profiles", srv: good, path: "/api/v1/models/churn/versions/1/datasets?role=training&profile=false", wantCode: 200, want: []dataset.Record{noProfile}},
		{name: "empty", srv: good, path: "/api/v1/models/churn/versions/2/datasets", wantCode: 200, want: []dataset.Record{}},
		{name: "unknown version", srv: good, path: "/api/v1/models/churn/versions/7/datasets", wantCode: 404, wantErr: "NOT_FOUND", wantMsg: "7"},
		{name: "unknown model", srv: good, path: "/api/v1/models/nope/versions/1/datasets", wantCode: 404, wantErr: "NOT_FOUND", wantMsg: "nope"},
		{name: "bad version", srv: good, path: "/api/v1/models/churn/versions/one/datasets", wantCode: 400, wantErr: "INVALID_ARGUMENT", wantMsg: `"one"`},
		{name: "version zero", srv: good, path: "/api/v1/models/churn/versions/0/datasets", wantCode: 400, wantErr: "INVALID_ARGUMENT", wantMsg: "positive integer"},
		{name: "bad role", srv: good, path: "/api/v1/models/churn/versions/1/datasets?role=train", wantCode: 400, wantErr: "INVALID_ARGUMENT", wantMsg: "training, validation, test, scoring"},
		{name: "bad profile flag", srv: good, path: "/api/v1/models/churn/versions/1/datasets?profile=maybe", wantCode: 400, wantErr: "INVALID_ARGUMENT", wantMsg: "profile"},
		{name: "store failure", srv: failing, path: "/api/v1/models/churn/versions/1/datasets", wantCode: 500, wantErr: "INTERNAL", wantMsg: "database is locked"},
		{name: "no dataset store", srv: plain, path: "/api/v1/models/churn/versions/1/datasets", wantCode: 404, wantErr: "NOT_FOUND", wantMsg: "keeps no dataset records"},
		{name: "no dataset store, unknown version", srv: plain, path: "/api/v1/models/churn/versions/7/datasets", wantCode: 404, wantErr: "NOT_FOUND", wantMsg: "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.srv = tc.srv
			r := e.do("GET", tc.path, nil, nil)
			if r.code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", r.code, tc.wantCode, r.body)
			}
			if tc.wantCode != 200 {
				if got := r.errCode(t); got != tc.wantErr {
					t.Fatalf("code %s, want %s: %s", got, tc.wantErr, r.body)
				}
				var body registryError
				r.decode(t, &body)
				if !strings.Contains(body.Error.Message, tc.wantMsg) {
					t.Fatalf("message %q does not mention %q", body.Error.Message, tc.wantMsg)
				}
				return
			}
			var page struct {
				Datasets []dataset.Record `json:"datasets"`
			}
			r.decode(t, &page)
			if page.Datasets == nil {
				t.Fatalf("datasets is not a list: %s", r.body)
			}
			if !reflect.DeepEqual(page.Datasets, tc.want) {
				t.Fatalf("datasets\n got %+v\nwant %+v", page.Datasets, tc.want)
			}
		})
	}
}

// FuzzRegistryVersionDatasets sends arbitrary versions and query values to
// the datasets route: nothing may panic or answer 5xx, and a 200 is the
// list of the version's records of the asked role.
func FuzzRegistryVersionDatasets(f *testing.F) {
	f.Add("1", "training", "false")
	f.Add("0", "", "")
	f.Add("-3", "scoring", "1")
	f.Add("99999999999999999999", "train", "maybe")
	f.Add("1 ", "validation", "TRUE")
	e := newRegEnv(f)
	if r := e.json("POST", "/api/v1/models", `{"name":"fz"}`); r.code != 201 {
		f.Fatalf("create: %d %s", r.code, r.body)
	}
	e.register("fz", "weights", `{}`)
	opts := e.srv.opts
	opts.Datasets = datasetStore{records: map[string][]dataset.Record{datasetKey("fz", 1): {
		{Model: "fz", Version: 1, Name: "a", Role: "training", Rows: 3, Profile: &dataset.Profile{Rows: 3}},
		{Model: "fz", Version: 1, Name: "b", Role: "scoring", Rows: 4},
	}}}
	e.srv = New(opts)
	f.Fuzz(func(t *testing.T, version, role, profile string) {
		e.t = t
		q := url.Values{}
		if role != "" {
			q.Set("role", role)
		}
		if profile != "" {
			q.Set("profile", profile)
		}
		r := e.do("GET", "/api/v1/models/fz/versions/"+url.PathEscape(version)+"/datasets?"+q.Encode(), nil, nil)
		if r.code >= 500 {
			t.Fatalf("answered %d: %s", r.code, r.body)
		}
		if r.code != 200 {
			return
		}
		var page struct {
			Datasets []dataset.Record `json:"datasets"`
		}
		r.decode(t, &page)
		if n, _ := strconv.ParseInt(version, 10, 64); page.Datasets == nil || n != 1 && len(page.Datasets) != 0 {
			t.Fatalf("version %q: %s", version, r.body)
		}
		for _, d := range page.Datasets {
			if role != "" && d.Role != role {
				t.Fatalf("role %q: %s", role, r.body)
			}
		}
	})
}
