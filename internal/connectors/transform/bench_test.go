package transform

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/pipeline"
)

const benchRows = 64 << 10

// benchBatch is the pipeline benchmark's shape: an amount (float64, some
// nulls), a flag, a 12-value category and two numeric columns.
func benchBatch(b *testing.B) pipeline.Batch {
	mem := memory.DefaultAllocator
	countries := []string{"AT", "BE", "CH", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IT", "NL"}
	amount, active, country := array.NewFloat64Builder(mem), array.NewBooleanBuilder(mem), array.NewStringBuilder(mem)
	age, score := array.NewInt64Builder(mem), array.NewFloat64Builder(mem)
	for i := range benchRows {
		if i%97 == 0 {
			amount.AppendNull()
		} else {
			amount.Append(float64(i%2000) - 500)
		}
		active.Append(i%3 != 0)
		country.Append(countries[(i*7)%len(countries)])
		age.Append(int64(18 + i%60))
		score.Append(float64(i%1000) / 10)
	}
	bs := []array.Builder{amount, active, country, age, score}
	cols := make([]arrow.Array, len(bs))
	for i, bl := range bs {
		cols[i] = bl.NewArray()
		bl.Release()
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true}, {Name: "active", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "country", Type: arrow.BinaryTypes.String}, {Name: "age", Type: arrow.PrimitiveTypes.Int64}, {Name: "score", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	rec := array.NewRecordBatch(schema, cols, benchRows)
	releaseAll(cols)
	b.Cleanup(rec.Release)
	return rec
}

func benchApply(b *testing.B, tr pipeline.Transform, in pipeline.Batch) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out, _, err := tr.Apply(context.Background(), in)
		if err != nil {
			b.Fatal(err)
		}
		if out != nil && out != in {
			out.Release()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchRows, "ns/row")
}

func BenchmarkFilter(b *testing.B) {
	in := benchBatch(b)
	for _, expr := range []string{"amount > 0 and active", "age >= 30", "len(country) == 2 and amount > 0"} {
		b.Run(expr, func(b *testing.B) {
			benchApply(b, build(b, "filter", strconvQuote(expr)), in)
		})
	}
}

func BenchmarkStandardize(b *testing.B) {
	in := benchBatch(b)
	tr := build(b, "standardize", "{columns: [amount, score]}")
	fit(b, tr, in)
	benchApply(b, tr, in)
}

func BenchmarkOneHot(b *testing.B) {
	in := benchBatch(b)
	tr := build(b, "one_hot", "{column: country, categories: [AT, BE, CH, DE, DK, ES, FI, FR, GB, IE, IT, NL]}")
	benchApply(b, tr, in)
}

func BenchmarkDerive(b *testing.B) {
	in := benchBatch(b)
	benchApply(b, build(b, "derive", `{x: "amount * 2 + score", adult: "age >= 21"}`), in)
}

func BenchmarkHash(b *testing.B) {
	in := benchBatch(b)
	benchApply(b, build(b, "hash", "{columns: [country], salt: 0123456789abcdef}"), in)
}

func BenchmarkFilterRowByRow(b *testing.B) {
	in := benchBatch(b)
	benchApply(b, build(b, "filter", `'country matches "^[A-F]" and amount > 0'`), in)
}
