package file

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
)

// benchCSV writes rows of 8 mixed columns (ints, floats, short strings, a
// bool, a date) like the pipeline benchmark's input.
func benchCSV(b *testing.B, rows int) (string, int64) {
	b.Helper()
	p := filepath.Join(b.TempDir(), "bench.csv")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	countries := []string{"NL", "DE", "FR", "BE", "US", "GB", "ES", "IT"}
	fmt.Fprintln(w, "id,age,income,score,country,segment,active,signup")
	for i := range rows {
		fmt.Fprintf(w, "%d,%d,%d.%02d,%.4f,%s,seg-%d,%t,2024-%02d-%02d\n",
			i, 18+i%70, 20000+i%90000, i%100, float64(i%1000)/7, countries[i%len(countries)], i%13, i%3 == 0, 1+i%12, 1+i%28)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	st, _ := os.Stat(p)
	return p, st.Size()
}

// BenchmarkCSVRead decodes a generated file, or the CSV file named by
// $KILN_BENCH_CSV (its row count is found by the first pass).
func BenchmarkCSVRead(b *testing.B) {
	rows := int64(1_000_000)
	var path string
	var size int64
	if p := os.Getenv("KILN_BENCH_CSV"); p != "" {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		path, size, rows = p, st.Size(), -1
	} else {
		path, size = benchCSV(b, int(rows))
	}
	cfg := defaultSourceConfig()
	cfg.Path = path
	b.SetBytes(size)
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		n := countRows(b, cfg)
		if rows < 0 {
			rows = n
		}
		if n != rows {
			b.Fatalf("%d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(rows*int64(b.N)), "cpu-ns/row")
}

func BenchmarkCSVToParquet(b *testing.B) {
	const rows = 1_000_000
	path, size := benchCSV(b, rows)
	out := filepath.Join(b.TempDir(), "out.parquet")
	b.SetBytes(size)
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		cfg := defaultSourceConfig()
		cfg.Path = path
		src, err := newSource(cfg, pipeline.Env{})
		if err != nil {
			b.Fatal(err)
		}
		sc := defaultSinkConfig()
		sc.Path = out
		snk, err := newSink(sc, pipeline.Env{})
		if err != nil {
			b.Fatal(err)
		}
		err = src.Read(context.Background(), func(ctx context.Context, bt pipeline.Batch, _ pipeline.AckFunc) error {
			_, err := snk.Write(ctx, bt)
			return err
		})
		if cerr := snk.Close(context.Background(), err); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(rows*b.N), "cpu-ns/row")
}

// BenchmarkParquetWrite measures the sink alone on batches decoded once.
func BenchmarkParquetWrite(b *testing.B) {
	const rows = 500_000
	path, _ := benchCSV(b, rows)
	cfg := defaultSourceConfig()
	cfg.Path = path
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		b.Fatal(err)
	}
	var batches []pipeline.Batch
	if err := src.Read(context.Background(), func(_ context.Context, bt pipeline.Batch, _ pipeline.AckFunc) error {
		bt.Retain()
		batches = append(batches, bt)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out.parquet")
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		sc := defaultSinkConfig()
		sc.Path = out
		snk, err := newSink(sc, pipeline.Env{})
		if err != nil {
			b.Fatal(err)
		}
		for _, bt := range batches {
			if _, err := snk.Write(context.Background(), bt); err != nil {
				b.Fatal(err)
			}
		}
		if err := snk.Close(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(rows*b.N), "cpu-ns/row")
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// measures the work better than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCSVDecodeBlock measures one decoder on one block of the
// generated file (no reader, no other workers): the per-record cost of
// the fast path.
func BenchmarkCSVDecodeBlock(b *testing.B) {
	const rows = 200_000
	path, _ := benchCSV(b, rows)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	opt := csvOptions{delim: ',', quote: '"', header: true, nulls: newNullSet(defaultSourceConfig().NullValues)}
	fields, err := sampleCSV([]string{path}, opt, 1000)
	if err != nil {
		b.Fatal(err)
	}
	schema, err := arrowSchema(fields)
	if err != nil {
		b.Fatal(err)
	}
	data = data[bytes.IndexByte(data, '\n')+1:] // the header
	proj := make([]int, len(fields))
	for i := range proj {
		proj[i] = i
	}
	d, err := newBlockDecoder(opt, fields, schema, proj, 1<<16)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		res := d.decode(data)
		if res.recs != rows || len(res.rejects) != 0 {
			b.Fatalf("%d records, %d rejected", res.recs, len(res.rejects))
		}
		for _, bt := range res.batches {
			bt.Release()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows*b.N), "ns/row")
}

// BenchmarkNDJSONRead decodes a generated NDJSON file of the same rows as
// benchCSV's.
func BenchmarkNDJSONRead(b *testing.B) {
	const rows = 200_000
	p := filepath.Join(b.TempDir(), "bench.ndjson")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	countries := []string{"NL", "DE", "FR", "BE", "US", "GB", "ES", "IT"}
	for i := range rows {
		fmt.Fprintf(w, `{"id": %d, "age": %d, "income": %d.%02d, "score": %.4f, "country": %q, "segment": "seg-%d", "active": %t, "signup": "2024-%02d-%02d"}`+"\n",
			i, 18+i%70, 20000+i%90000, i%100, float64(i%1000)/7, countries[i%len(countries)], i%13, i%3 == 0, 1+i%12, 1+i%28)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	st, _ := os.Stat(p)
	cfg := defaultSourceConfig()
	cfg.Path = p
	b.SetBytes(st.Size())
	b.ResetTimer()
	for range b.N {
		n := countRows(b, cfg)
		if n != rows {
			b.Fatalf("%d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkCSVReadRejects reads BenchmarkCSVRead's file with an explicit
// schema and a RejectFunc, as it is and with one record in a hundred
// refused (a letter in the id column): the cost of rejecting.
func BenchmarkCSVReadRejects(b *testing.B) {
	const rows = 1_000_000
	path, size := benchCSV(b, rows)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte{'\n'})
	for i := 1; i < len(lines) && len(lines[i]) > 0; i += 100 {
		lines[i] = append([]byte("x"), lines[i]...)
	}
	bad := filepath.Join(b.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, bytes.Join(lines, nil), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		path     string
		rejected int64
	}{{"clean", path, 0}, {"1% bad", bad, rows / 100}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := defaultSourceConfig()
			cfg.Path = tc.path
			cfg.Schema = []Field{{Name: "id", Type: typeInt64}, {Name: "age", Type: typeInt64}, {Name: "income", Type: typeFloat64}, {Name: "score", Type: typeFloat64},
				{Name: "country", Type: typeString}, {Name: "segment", Type: typeString}, {Name: "active", Type: typeBool}, {Name: "signup", Type: typeDate}}
			b.SetBytes(size)
			cpu0 := cpuTime()
			for range b.N {
				src, err := newSource(cfg, pipeline.Env{})
				if err != nil {
					b.Fatal(err)
				}
				var n, rejected int64
				src.SetReject(func(_ context.Context, recs []pipeline.SourceReject, _ pipeline.AckFunc) error {
					rejected += int64(len(recs))
					return nil
				})
				if err := src.Read(context.Background(), func(_ context.Context, bt pipeline.Batch, _ pipeline.AckFunc) error {
					n += bt.NumRows()
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				if n+rejected != rows || rejected != tc.rejected {
					b.Fatalf("%d rows, %d rejected", n, rejected)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(rows*int64(b.N)), "cpu-ns/row")
		})
	}
}

// countRows reads the source cfg describes and returns its row count.
func countRows(b *testing.B, cfg *SourceConfig) int64 {
	b.Helper()
	src, err := newSource(cfg, pipeline.Env{})
	if err != nil {
		b.Fatal(err)
	}
	n := int64(0)
	if err := src.Read(context.Background(), func(_ context.Context, bt pipeline.Batch, _ pipeline.AckFunc) error {
		n += bt.NumRows()
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return n
}
