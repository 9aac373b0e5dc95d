package file

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// openParquet opens a Parquet file for reading as Arrow.
func openParquet(path string, rows int) (*file.Reader, *pqarrow.FileReader, error) {
	pf, err := file.OpenParquetFile(path, true)
	if err != nil {
		return nil, nil, err
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(rows), Parallel: true}, memory.DefaultAllocator)
	if err != nil {
		pf.Close()
		return nil, nil, err
	}
	return pf, fr, nil
}

// parquetSchema returns the Arrow schema of a Parquet file.
func parquetSchema(path string) (*arrow.Schema, error) {
	pf, fr, err := openParquet(path, 1024)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	return fr.Schema()
}

// readParquet emits the row groups of a file (all when rowGroups is nil).
func readParquet(ctx context.Context, path string, rowGroups []int, rows int, want *arrow.Schema, progress func(int64), emit func(context.Context, arrow.RecordBatch) error) error {
	pf, fr, err := openParquet(path, rows)
	if err != nil {
		return err
	}
	defer pf.Close()
	sc, err := fr.Schema()
	if err != nil {
		return err
	}
	if want != nil && !sc.Equal(want) {
		return fmt.Errorf("schema %s differs from the first file's %s", sc, want)
	}
	for _, g := range rowGroups {
		if g < 0 || g >= pf.NumRowGroups() {
			return fmt.Errorf("row group %d out of range (the file has %d)", g, pf.NumRowGroups())
		}
	}
	rr, err := fr.GetRecordReader(ctx, nil, rowGroups)
	if err != nil {
		return err
	}
	defer rr.Release()
	for {
		b, err := rr.Read()
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if b == nil {
			return nil
		}
		progress(b.NumRows())
		if err := emit(ctx, b); err != nil {
			return err
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}
