package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// genVersion changes whenever the generator's output changes, so that a
// cached file from an older generator is not reused.
const genVersion = 1

// Countries are the values of the category column, sorted, with the
// weights (out of 100) the generator draws them with.
var (
	Countries      = []string{"AU", "BR", "CA", "CN", "DE", "ES", "FR", "GB", "IN", "JP", "US", "ZA"}
	countryWeights = []int{5, 7, 6, 12, 10, 6, 9, 8, 11, 7, 15, 4}
)

// tsBase is the timestamp of row 0 (row i is about 3i seconds later).
var tsBase = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// TimestampLayout is the Go layout of the ts column (no zone: UTC).
const TimestampLayout = "2006-01-02T15:04:05"

// Header is the CSV header the generator writes.
const Header = "id,ts,qty,country,amount,active,note,score"

// rng is SplitMix64: tiny, fast, and fully specified here, so the data
// does not depend on the Go release's math/rand algorithms.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// GenStats describes a generated file.
type GenStats struct {
	Version int    `json:"generator"`
	Seed    uint64 `json:"seed"`
	Rows    int64  `json:"rows"`
	Bytes   int64  `json:"bytes"`
	// Kept is the number of rows the benchmark filter keeps
	// (amount > 0 and active), the row count every output must have.
	Kept int64 `json:"kept"`
}

// Generate writes the header and rows to w until rows rows are written or,
// when rows is 0, until at least minBytes bytes are. The content depends
// only on seed; the first n rows are the same whatever the stop rule.
//
// Columns: id int64 (1, 2, …), ts timestamp text (TimestampLayout,
// increasing), qty int64 in [-50, 950), country (one of Countries,
// weighted), amount float64 with two decimals in [-400, 1600) (about 20 %
// ≤ 0), active bool (75 % true), note 4–12 lowercase letters, score
// float64 with six decimals in [0, 1).
func Generate(w io.Writer, seed uint64, rows, minBytes int64) (GenStats, error) {
	if rows < 0 || minBytes < 0 || (rows == 0 && minBytes == 0) {
		return GenStats{}, errors.New("generate: give a positive row count or byte size")
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	st := GenStats{Version: genVersion, Seed: seed}
	n, err := bw.WriteString(Header + "\n")
	if err != nil {
		return st, err
	}
	st.Bytes = int64(n)
	var cum [12]int
	total := 0
	for i, wgt := range countryWeights {
		total += wgt
		cum[i] = total
	}
	r := rng{s: seed}
	line := make([]byte, 0, 128)
	for id := int64(1); ; id++ {
		if rows > 0 && id > rows {
			break
		}
		if rows == 0 && st.Bytes >= minBytes {
			break
		}
		line = line[:0]
		line = strconv.AppendInt(line, id, 10)
		line = append(line, ',')
		ts := tsBase + id*3 + int64(r.next()%3)
		line = time.Unix(ts, 0).UTC().AppendFormat(line, TimestampLayout)
		line = append(line, ',')
		line = strconv.AppendInt(line, int64(r.next()%1000)-50, 10)
		line = append(line, ',')
		pick := int(r.next() % uint64(total))
		c := 0
		for pick >= cum[c] {
			c++
		}
		line = append(line, Countries[c]...)
		line = append(line, ',')
		cents := int64(r.next()%200000) - 40000
		line = appendFixed(line, cents, 2)
		line = append(line, ',')
		active := r.next()%4 != 0
		line = strconv.AppendBool(line, active)
		line = append(line, ',')
		nl := 4 + int(r.next()%9)
		for range nl {
			line = append(line, byte('a'+r.next()%26))
		}
		line = append(line, ',')
		line = appendFixed(line, int64(r.next()%1000000), 6)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return st, err
		}
		st.Rows++
		st.Bytes += int64(len(line))
		if cents > 0 && active {
			st.Kept++
		}
	}
	return st, bw.Flush()
}

// appendFixed appends v / 10^dec with exactly dec decimals.
func appendFixed(b []byte, v int64, dec int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	p := int64(1)
	for range dec {
		p *= 10
	}
	b = strconv.AppendInt(b, v/p, 10)
	b = append(b, '.')
	frac := strconv.FormatInt(v%p, 10)
	for i := len(frac); i < dec; i++ {
		b = append(b, '0')
	}
	return append(b, frac...)
}

// ensureData returns the generated CSV for (seed, rows or minBytes) in dir,
// generating it (streamed to a temporary file, then renamed) unless a
// complete file from the same generator is already there. Its stats are
// kept beside it in a .json file.
func ensureData(dir string, seed uint64, rows, minBytes int64, logf func(string, ...any)) (string, GenStats, error) {
	var name string
	if rows > 0 {
		name = fmt.Sprintf("pipebench-v%d-s%d-r%d", genVersion, seed, rows)
	} else {
		name = fmt.Sprintf("pipebench-v%d-s%d-b%d", genVersion, seed, minBytes)
	}
	path := filepath.Join(dir, name+".csv")
	meta := filepath.Join(dir, name+".json")
	if b, err := os.ReadFile(meta); err == nil {
		var st GenStats
		if json.Unmarshal(b, &st) == nil && st.Version == genVersion && st.Seed == seed {
			if fi, err := os.Stat(path); err == nil && fi.Size() == st.Bytes {
				return path, st, nil
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", GenStats{}, err
	}
	logf("generating %s", path)
	start := time.Now()
	f, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		return "", GenStats{}, err
	}
	defer os.Remove(f.Name())
	st, err := Generate(f, seed, rows, minBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", GenStats{}, fmt.Errorf("generating %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", GenStats{}, err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(meta, append(b, '\n'), 0o644); err != nil {
		return "", GenStats{}, err
	}
	logf("generated %d rows, %s in %s", st.Rows, humanBytes(st.Bytes), time.Since(start).Round(time.Millisecond))
	return path, st, nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
