// Package keyrange splits a database query into distributed tasks by ranges
// of an integer key column, for the sql sources (postgres, sqlite): the
// task specs, their encoding, and the predicate that reads one range.
package keyrange

import (
	"encoding/json"
	"fmt"

	"github.com/kilnai/kiln/internal/pipeline"
)

// Range is a task's part of the query: Lo <= key < Hi (<= Hi for the last
// range; the first range also takes null keys). All means the whole query.
type Range struct {
	Lo    int64 `json:"lo"`
	Hi    int64 `json:"hi"`
	First bool  `json:"first,omitempty"`
	Last  bool  `json:"last,omitempty"`
	All   bool  `json:"all,omitempty"`
}

// Whole is the single task of a query that is not split.
func Whole() []pipeline.Task {
	b, _ := json.Marshal(Range{All: true})
	return []pipeline.Task{{ID: "all", Spec: b}}
}

// Tasks cuts [lo, hi] of column into at most n ranges of equal width.
func Tasks(column string, lo, hi int64, n int) ([]pipeline.Task, error) {
	if n < 1 || hi < lo {
		return nil, fmt.Errorf("keyrange: cannot cut [%d, %d] into %d ranges", lo, hi, n)
	}
	span := uint64(hi-lo) + 1
	parts := uint64(n)
	if parts > span {
		parts = span
	}
	step := span / parts
	if span%parts != 0 {
		step++
	}
	var tasks []pipeline.Task
	for i := uint64(0); i < parts; i++ {
		from := lo + int64(i*step)
		if i > 0 && from > hi {
			break
		}
		r := Range{Lo: from, First: i == 0}
		if i+1 == parts || from+int64(step) > hi {
			r.Hi, r.Last = hi, true
		} else {
			r.Hi = from + int64(step)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, pipeline.Task{ID: fmt.Sprintf("%s-%d-%d", column, r.Lo, r.Hi), Spec: b, Weight: r.Hi - r.Lo})
		if r.Last {
			break
		}
	}
	return tasks, nil
}

// Decode reads a task's range; source names the component in errors and
// splitColumn is the source's configured key column.
func Decode(t pipeline.Task, source, splitColumn string) (*Range, error) {
	var r Range
	if err := json.Unmarshal(t.Spec, &r); err != nil {
		return nil, fmt.Errorf("%s task %s: %w", source, t.ID, err)
	}
	if !r.All && (splitColumn == "" || r.Hi < r.Lo) {
		return nil, fmt.Errorf("%s task %s: a key range needs split_column and lo <= hi", source, t.ID)
	}
	return &r, nil
}

// Where returns the predicate on the (already quoted) column that selects
// r, with its two parameters written by param(1) and param(2).
func (r *Range) Where(col string, param func(i int) string) string {
	hiOp := "<"
	if r.Last {
		hiOp = "<="
	}
	cond := fmt.Sprintf("(%s >= %s and %s %s %s)", col, param(1), col, hiOp, param(2))
	if r.First {
		cond = "(" + cond + " or " + col + " is null)"
	}
	return cond
}
