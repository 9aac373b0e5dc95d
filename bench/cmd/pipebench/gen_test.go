package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGenerateDeterministic(t *testing.T) {
	gen := func(seed uint64, rows, minBytes int64) ([]byte, GenStats) {
		t.Helper()
		var b bytes.Buffer
		st, err := Generate(&b, seed, rows, minBytes)
		if err != nil {
			t.Fatal(err)
		}
		return b.Bytes(), st
	}
	a, sa := gen(7, 5000, 0)
	b, sb := gen(7, 5000, 0)
	if !bytes.Equal(a, b) || sa != sb {
		t.Fatal("same seed, different output")
	}
	c, _ := gen(8, 5000, 0)
	if bytes.Equal(a, c) {
		t.Fatal("different seeds, same output")
	}
	if sa.Rows != 5000 || sa.Bytes != int64(len(a)) {
		t.Fatalf("stats %+v for %d bytes", sa, len(a))
	}
	// The byte-size rule stops at the first row reaching the size, and
	// its rows are the same as the row-count rule's.
	d, sd := gen(7, 0, 100_000)
	if sd.Bytes < 100_000 || sd.Bytes != int64(len(d)) {
		t.Fatalf("byte rule: %+v for %d bytes", sd, len(d))
	}
	lastLine := bytes.LastIndexByte(d[:len(d)-1], '\n') + 1
	if int64(lastLine) >= 100_000 {
		t.Fatalf("byte rule wrote a row after reaching the size (%d ≥ 100000)", lastLine)
	}
	e, _ := gen(7, sd.Rows, 0)
	if !bytes.Equal(d, e) {
		t.Fatal("byte rule and row rule disagree on the same rows")
	}
	// A golden digest of the first rows: the data must not change without
	// genVersion changing (cached files are reused by version).
	small, _ := gen(1, 1000, 0)
	if got := fmt.Sprintf("%x", sha256.Sum256(small)); got != goldenDigest {
		t.Errorf("seed 1, 1000 rows: sha256 %s, want %s (bump genVersion and the digest if the change is intended)", got, goldenDigest)
	}
}

const goldenDigest = "01b8a88531b669630ed8d843f65e791f270760a8b30ac8aa1016dd203da39862"

func TestGenerateSchema(t *testing.T) {
	var b bytes.Buffer
	st, err := Generate(&b, 3, 20000, 0)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(recs[0], ","); got != Header {
		t.Fatalf("header %q", got)
	}
	if len(recs[0]) != len(Schema) {
		t.Fatalf("header has %d columns, schema %d", len(recs[0]), len(Schema))
	}
	for i, c := range Schema {
		if recs[0][i] != c.Name {
			t.Fatalf("column %d is %s, schema says %s", i, recs[0][i], c.Name)
		}
	}
	var kept int64
	countries := map[string]int{}
	prevTS := time.Time{}
	for i, r := range recs[1:] {
		if len(r) != 8 {
			t.Fatalf("row %d has %d fields", i, len(r))
		}
		id, err := strconv.ParseInt(r[0], 10, 64)
		if err != nil || id != int64(i+1) {
			t.Fatalf("row %d: id %q", i, r[0])
		}
		ts, err := time.Parse(TimestampLayout, r[1])
		if err != nil || !ts.After(prevTS) {
			t.Fatalf("row %d: ts %q not increasing (%v)", i, r[1], err)
		}
		prevTS = ts
		if q, err := strconv.ParseInt(r[2], 10, 64); err != nil || q < -50 || q >= 950 {
			t.Fatalf("row %d: qty %q", i, r[2])
		}
		if !slices.Contains(Countries, r[3]) {
			t.Fatalf("row %d: country %q", i, r[3])
		}
		countries[r[3]]++
		amount, err := strconv.ParseFloat(r[4], 64)
		if err != nil || amount < -400 || amount >= 1600 || len(r[4])-strings.IndexByte(r[4], '.') != 3 {
			t.Fatalf("row %d: amount %q", i, r[4])
		}
		active, err := strconv.ParseBool(r[5])
		if err != nil {
			t.Fatalf("row %d: active %q", i, r[5])
		}
		if n := len(r[6]); n < 4 || n > 12 || strings.Trim(r[6], "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("row %d: note %q", i, r[6])
		}
		if s, err := strconv.ParseFloat(r[7], 64); err != nil || s < 0 || s >= 1 || len(r[7]) != 8 {
			t.Fatalf("row %d: score %q", i, r[7])
		}
		if amount > 0 && active {
			kept++
		}
	}
	if kept != st.Kept {
		t.Fatalf("stats say %d rows pass the filter, counted %d", st.Kept, kept)
	}
	if frac := float64(kept) / float64(st.Rows); frac < 0.5 || frac > 0.7 {
		t.Errorf("filter keeps %.2f of the rows, want about 0.6", frac)
	}
	if len(countries) != len(Countries) {
		t.Errorf("%d distinct countries, want %d", len(countries), len(Countries))
	}
	if !slices.IsSorted(Countries) {
		t.Error("Countries must be sorted (one_hot's category order)")
	}
}

func TestGenerateBadArgs(t *testing.T) {
	for _, tt := range []struct{ rows, bytes int64 }{{0, 0}, {-1, 0}, {0, -5}} {
		if _, err := Generate(&bytes.Buffer{}, 1, tt.rows, tt.bytes); err == nil {
			t.Errorf("Generate(rows %d, bytes %d) accepted", tt.rows, tt.bytes)
		}
	}
}

func TestEnsureDataReuses(t *testing.T) {
	dir := t.TempDir()
	logf := func(string, ...any) {}
	p1, st1, err := ensureData(dir, 2, 1000, 0, logf)
	if err != nil {
		t.Fatal(err)
	}
	fi1, _ := os.Stat(p1)
	p2, st2, err := ensureData(dir, 2, 1000, 0, logf)
	if err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(p2)
	if p1 != p2 || st1 != st2 || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Fatal("second call regenerated the file")
	}
	// A truncated file is generated again.
	if err := os.Truncate(p1, 10); err != nil {
		t.Fatal(err)
	}
	p3, st3, err := ensureData(dir, 2, 1000, 0, logf)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p3); fi.Size() != st3.Bytes || st3 != st1 {
		t.Fatalf("truncated file not regenerated: %d bytes, stats %+v", fi.Size(), st3)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestAppendFixed(t *testing.T) {
	for _, tt := range []struct {
		v    int64
		dec  int
		want string
	}{{12345, 2, "123.45"}, {-5, 2, "-0.05"}, {0, 2, "0.00"}, {7, 6, "0.000007"}, {-40000, 2, "-400.00"}} {
		if got := string(appendFixed(nil, tt.v, tt.dec)); got != tt.want {
			t.Errorf("appendFixed(%d, %d) = %s, want %s", tt.v, tt.dec, got, tt.want)
		}
	}
}
