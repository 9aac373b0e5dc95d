package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

// TestSourceRejects: records of a page that are not objects or hold a
// value that does not fit the schema go to the RejectFunc, with the page
// and their number in it; the others are delivered.
func TestSourceRejects(t *testing.T) {
	pages := []string{
		`{"items": [{"id": 1, "name": "a"}, 7, {"id": "two"}], "page": 1}`,
		`{"items": [{"id": 3, "when": "2024-01-02"}, {"id": 4, "when": "2024-01-02T03:04:05Z"}, "x"], "page": 2}`,
		`{"items": [], "page": 3}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		fmt.Sscan(r.URL.Query().Get("page"), &n)
		if n < 1 || n > len(pages) {
			http.Error(w, "no such page", http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, pages[n-1])
	}))
	defer srv.Close()
	cases := []struct {
		name, schema, rows, rejects string
	}{
		{"explicit schema", "schema: [{name: id, type: int64}, {name: when, type: timestamp}]",
			`{"id":1,"when":null} {"id":4,"when":"2024-01-02T03:04:05Z"}`,
			"page 1#2 7 | want a JSON object, got a number\n" +
				"page 2#3 \"x\" | want a JSON object, got a string\n" +
				"page 1#3 {\"id\": \"two\"} | column \"id\": \"two\" is not an integer\n" +
				"page 2#1 {\"id\": 3, \"when\": \"2024-01-02\"} | column \"when\": \"2024-01-02\" is not an RFC 3339 timestamp\n"},
		{"inferred from the first record", "infer_records: 1",
			`{"id":1,"name":"a"} {"id":3,"name":null} {"id":4,"name":null}`,
			"page 1#2 7 | want a JSON object, got a number\n" +
				"page 2#3 \"x\" | want a JSON object, got a string\n" +
				"page 1#3 {\"id\": \"two\"} | column \"id\": \"two\" is not an integer\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{url: "` + srv.URL + `/items", records: items, pagination: {type: page, size: 3}, batch_size: 10, ` + tc.schema + `}`
			s := decodeSource(t, body)
			var got strings.Builder
			s.SetReject(func(_ context.Context, recs []pipeline.SourceReject, ack pipeline.AckFunc) error {
				if ack != nil {
					t.Error("the http source passed an ack")
				}
				for _, r := range recs {
					loc := r.Location()
					if !strings.HasPrefix(loc, srv.URL+"/items?page=…&per_page=… ") {
						t.Errorf("location %q does not name the page URL", loc)
					}
					fmt.Fprintf(&got, "%s %s | %v\n", loc[strings.Index(loc, "page "):], r.Record, r.Err)
				}
				return nil
			})
			rows, _, err := readAll(t, s)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(rows, " ") != tc.rows {
				t.Errorf("rows %v, want %s", rows, tc.rows)
			}
			if got.String() != tc.rejects {
				t.Errorf("rejects\n%s\nwant\n%s", got.String(), tc.rejects)
			}
			if done, _ := s.Progress(); done != 6 {
				t.Errorf("progress %d records, want 6 (rejected ones included)", done)
			}
		})
	}
	t.Run("a RejectFunc that stops ends the read", func(t *testing.T) {
		s := decodeSource(t, `{url: "`+srv.URL+`/items", records: items, pagination: {type: page, size: 3}}`)
		stop := errors.New("policy stop")
		s.SetReject(func(context.Context, []pipeline.SourceReject, pipeline.AckFunc) error { return stop })
		if _, _, err := readAll(t, s); !errors.Is(err, stop) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("without a RejectFunc the first fails the read", func(t *testing.T) {
		_, _, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/items", records: items, pagination: {type: page, size: 3}}`))
		if err == nil || !strings.Contains(err.Error(), "record 1: want a JSON object, got a number") {
			t.Fatalf("err = %v", err)
		}
	})
}
