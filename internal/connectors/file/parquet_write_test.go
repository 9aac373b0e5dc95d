package file

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// flatTestSchema has a column of every type parallelParquet takes, some
// nullable, some not.
var flatTestSchema = arrow.NewSchema([]arrow.Field{
	{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
	{Name: "d", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	{Name: "i8", Type: arrow.PrimitiveTypes.Int8, Nullable: false},
	{Name: "u16", Type: arrow.PrimitiveTypes.Uint16, Nullable: true},
	{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: false},
	{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true},
}, &flatTestMeta)

var flatTestMeta = arrow.NewMetadata([]string{"origin"}, []string{"test"})

// flatBatch builds n rows of flatTestSchema starting at row lo; every
// nullEvery-th value of the nullable columns is null (0: none).
func flatBatch(lo, n, nullEvery int) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, flatTestSchema)
	defer b.Release()
	r := rand.New(rand.NewPCG(uint64(lo), 7))
	for k := lo; k < lo+n; k++ {
		null := nullEvery > 0 && k%nullEvery == 0
		app := func(i int, f func()) {
			if null && flatTestSchema.Field(i).Nullable {
				b.Field(i).AppendNull()
				return
			}
			f()
		}
		app(0, func() { b.Field(0).(*array.Int64Builder).Append(int64(k) * 3) })
		app(1, func() { b.Field(1).(*array.Float64Builder).Append(r.NormFloat64()) })
		app(2, func() { b.Field(2).(*array.StringBuilder).Append(fmt.Sprintf("note %d", r.IntN(50))) })
		app(3, func() { b.Field(3).(*array.BooleanBuilder).Append(k%3 == 0) })
		app(4, func() { b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(int64(k) * 1_000_003)) })
		app(5, func() { b.Field(5).(*array.Date32Builder).Append(arrow.Date32(k % 20000)) })
		app(6, func() { b.Field(6).(*array.Int8Builder).Append(int8(k % 2)) })
		app(7, func() { b.Field(7).(*array.Uint16Builder).Append(uint16(k)) })
		app(8, func() { b.Field(8).(*array.Float32Builder).Append(float32(k) / 7) })
		app(9, func() { b.Field(9).(*array.BinaryBuilder).Append([]byte{byte(k), 0, byte(k >> 8)}) })
	}
	return b.NewRecordBatch()
}

// TestParallelParquetMatchesPqarrow: the parallel writer writes the same
// bytes as pqarrow's FileWriter (buffered row groups) for the same
// batches, with and without nulls, with batches cut across row groups and
// sliced batches.
func TestParallelParquetMatchesPqarrow(t *testing.T) {
	cases := []struct {
		name              string
		sizes             []int
		rowGroup, workers int
		nullEvery         int
		dict              bool
		codec             compress.Compression
		extra             []parquet.WriterProperty
		maxPending        int64
	}{
		{"one batch", []int{100}, 1000, 2, 0, false, compress.Codecs.Snappy, nil, 0},
		{"nulls, across row groups", []int{700, 300, 1, 999, 2000}, 1000, 3, 5, false, compress.Codecs.Snappy, nil, 0},
		{"all-null rows every other", []int{50, 50}, 30, 4, 2, false, compress.Codecs.Zstd, nil, 0},
		{"one worker, dictionary", []int{1234, 4321}, 2048, 1, 11, true, compress.Codecs.Snappy, nil, 0},
		{"more workers than columns", []int{64}, 16, 32, 3, false, compress.Codecs.Uncompressed, nil, 0},
		{"no rows", nil, 100, 2, 0, false, compress.Codecs.Snappy, nil, 0},
		{"small pages, dictionary falling back", []int{3000, 3000}, 4000, 2, 7, true, compress.Codecs.Snappy,
			[]parquet.WriterProperty{parquet.WithDataPageSize(1024), parquet.WithDictionaryPageSizeLimit(300)}, 0},
		{"small pages, all dictionary", []int{3000, 3000}, 4000, 2, 7, true, compress.Codecs.Snappy,
			[]parquet.WriterProperty{parquet.WithDataPageSize(512), parquet.WithDictionaryDefault(true)}, 0},
		{"encoded before the row group is full", []int{500, 700, 300, 2500, 10, 990}, 4000, 2, 9, false, compress.Codecs.Snappy,
			[]parquet.WriterProperty{parquet.WithDataPageSize(2048)}, 20 << 10},
		{"encoded every batch, dictionary", []int{500, 700, 300, 2500, 10, 990}, 2000, 3, 0, true, compress.Codecs.Snappy, nil, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := []parquet.WriterProperty{parquet.WithCompression(c.codec), parquet.WithMaxRowGroupLength(int64(c.rowGroup)), parquet.WithDictionaryDefault(false)}
			if c.dict {
				opts = append(opts, parquet.WithDictionaryFor("s", true))
			}
			opts = append(opts, c.extra...)
			props := parquet.NewWriterProperties(opts...)
			arrProps := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())
			var want, got bytes.Buffer
			ref, err := pqarrow.NewFileWriter(flatTestSchema, &want, props, arrProps)
			if err != nil {
				t.Fatal(err)
			}
			par, err := newParallelParquet(flatTestSchema, &got, props, arrProps, c.workers)
			if err != nil {
				t.Fatal(err)
			}
			if c.maxPending > 0 {
				par.maxPending = c.maxPending
			}
			lo := 0
			for i, n := range c.sizes {
				b := flatBatch(lo, n+2, c.nullEvery)
				lo += n
				// Every other batch is a slice (an offset into its buffers).
				s := b.NewSlice(int64(i%2), int64(i%2+n))
				b.Release()
				if err := ref.WriteBuffered(s); err != nil {
					t.Fatal(err)
				}
				if err := par.write(s); err != nil {
					t.Fatal(err)
				}
				s.Release()
			}
			if err := ref.Close(); err != nil {
				t.Fatal(err)
			}
			if err := par.finish(); err != nil {
				t.Fatal(err)
			}
			sameParquet(t, got.Bytes(), want.Bytes())
		})
	}
}

// sameParquet fails unless got and want are the same file: the same
// bytes, but for the order in which a column chunk's footer lists its
// encoding statistics, which arrow-go takes from a map (so two files
// pqarrow writes for the same batches may differ there too).
func sameParquet(t *testing.T, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("files differ: %d bytes, pqarrow %d bytes", len(got), len(want))
	}
	footer := func(b []byte) int { return len(b) - 8 - int(binary.LittleEndian.Uint32(b[len(b)-8:])) }
	if fg, fw := footer(got), footer(want); fg != fw || !bytes.Equal(got[:fg], want[:fw]) {
		t.Fatalf("files differ before the footer")
	}
	open := func(b []byte) *file.Reader {
		r, err := file.NewParquetReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rg, rw := open(got), open(want)
	if rg.NumRowGroups() != rw.NumRowGroups() {
		t.Fatalf("%d row groups, pqarrow %d", rg.NumRowGroups(), rw.NumRowGroups())
	}
	for g := range rg.NumRowGroups() {
		mg, mw := rg.MetaData().RowGroup(g), rw.MetaData().RowGroup(g)
		for c := range mg.NumColumns() {
			cg, err := mg.ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			cw, err := mw.ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			stats := func(cc *metadata.ColumnChunkMetaData) []string {
				var s []string
				for _, e := range cc.EncodingStats() {
					s = append(s, fmt.Sprint(e))
				}
				slices.Sort(s)
				return s
			}
			if fmt.Sprint(cg.Encodings(), stats(cg), cg.DataPageOffset(), cg.DictionaryPageOffset(), cg.TotalCompressedSize(), cg.NumValues()) !=
				fmt.Sprint(cw.Encodings(), stats(cw), cw.DataPageOffset(), cw.DictionaryPageOffset(), cw.TotalCompressedSize(), cw.NumValues()) {
				t.Fatalf("row group %d column %d: metadata differs", g, c)
			}
		}
	}
}

func TestFlatParquet(t *testing.T) {
	if !flatParquet(flatTestSchema) || !flatParquet(arrow.NewSchema(nil, nil)) {
		t.Error("flat schema refused")
	}
	nested := arrow.NewSchema([]arrow.Field{{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64)}}, nil)
	dict := arrow.NewSchema([]arrow.Field{{Name: "d", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}}}, nil)
	if flatParquet(nested) || flatParquet(dict) {
		t.Error("nested or dictionary schema taken")
	}
}
