package pipeline

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// startProgress reports the run's progress until the returned stop is
// called: a bar redrawn in place on opts.Progress (a terminal), else a
// log line every opts.ProgressEvery.
func (r *runner) startProgress(src Source, opts RunOptions) (stop func()) {
	every := opts.ProgressEvery
	if opts.Progress != nil {
		every = 100 * time.Millisecond
	} else if every <= 0 {
		every = 10 * time.Second
	}
	prog, _ := src.(Progresser)
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if opts.Progress != nil {
					r.draw(opts.Progress, prog, start, true)
				}
				return
			case <-t.C:
				if opts.Progress != nil {
					r.draw(opts.Progress, prog, start, false)
					continue
				}
				rows := r.source.out.Load()
				el := time.Since(start).Seconds()
				args := []any{"rows", rows, "rows_per_s", int64(float64(rows) / el)}
				if pct, ok := percent(prog); ok {
					args = append(args, "percent", fmt.Sprintf("%.1f", pct))
				}
				r.log.Info("pipeline progress", args...)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func percent(p Progresser) (float64, bool) {
	if p == nil {
		return 0, false
	}
	d, t := p.Progress()
	if t <= 0 {
		return 0, false
	}
	return min(100, 100*float64(d)/float64(t)), true
}

// draw renders one progress line: rows, rows/s and a bar with the
// percentage when the source knows its size.
func (r *runner) draw(w io.Writer, prog Progresser, start time.Time, final bool) {
	rows := r.source.out.Load()
	el := time.Since(start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(rows) / el
	}
	var b strings.Builder
	b.WriteString("\r\x1b[K")
	fmt.Fprintf(&b, "%s  %s rows  %s rows/s", r.plan.Name, groupDigits(rows), groupDigits(int64(rate)))
	if pct, ok := percent(prog); ok {
		const width = 24
		n := int(pct / 100 * width)
		fmt.Fprintf(&b, "  [%s%s] %5.1f%%", strings.Repeat("=", n), strings.Repeat(" ", width-n), pct)
	}
	if rej := r.rejectedSoFar(); rej > 0 {
		fmt.Fprintf(&b, "  %s rejected", groupDigits(rej))
	}
	if final {
		b.WriteString("\n")
	}
	_, _ = io.WriteString(w, b.String())
}

func (r *runner) rejectedSoFar() int64 {
	var n int64
	for _, c := range r.xs {
		n += c.rejected.Load()
	}
	for _, c := range r.ss {
		n += c.rejected.Load()
	}
	return n
}

// groupDigits writes n with thousands separators (1,234,567).
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
