package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/kilnai/kiln/internal/loadgen"
)

// palette gives every contender and protocol the same color in every plot.
var palette = map[string]color.RGBA{
	"kiln http-json":      {0xd6, 0x27, 0x28, 0xff},
	"kiln http-binary":    {0xff, 0x7f, 0x0e, 0xff},
	"kiln grpc":           {0x8c, 0x56, 0x4b, 0xff},
	"minimal http-json":   {0x1f, 0x77, 0xb4, 0xff},
	"minimal http-binary": {0x17, 0xbe, 0xcf, 0xff},
	"minimal grpc":        {0x94, 0x67, 0xbd, 0xff},
	"node http-json":      {0x2c, 0xa0, 0x2c, 0xff},
	"python http-json":    {0x7f, 0x7f, 0x7f, 0xff},
}

func colorOf(label string) color.Color {
	if c, ok := palette[label]; ok {
		return c
	}
	return color.Black
}

// powTwoTicks labels a log2 concurrency axis at the measured levels.
func powTwoTicks(levels []int) plot.ConstantTicks {
	var t plot.ConstantTicks
	for _, l := range levels {
		t = append(t, plot.Tick{Value: float64(l), Label: strconv.Itoa(l)})
	}
	return t
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// addSeries draws value(result) against concurrency for each series.
func addSeries(p *plot.Plot, series []Series, dashes []vg.Length, suffix string, value func(*loadgen.Result) float64) error {
	for i := range series {
		s := &series[i]
		var xy plotter.XYs
		for j := range s.Results {
			r := &s.Results[j]
			if r.Mode != loadgen.ModeConcurrency || r.Requests == 0 {
				continue
			}
			if v := value(r); v > 0 && !math.IsNaN(v) {
				xy = append(xy, plotter.XY{X: float64(r.Concurrency), Y: v})
			}
		}
		if len(xy) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		c := colorOf(s.Label())
		l.Color, pts.Color = c, c
		l.Dashes = dashes
		l.Width = vg.Points(1.5)
		pts.Shape = draw.CircleGlyph{}
		p.Add(l, pts)
		p.Legend.Add(s.Label()+suffix, l, pts)
	}
	return nil
}

func concurrencyAxis(p *plot.Plot, series []Series) {
	lv := levelsOf(series)
	if len(lv) > 1 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = powTwoTicks(lv)
		p.X.Min, p.X.Max = float64(lv[0])/1.2, float64(lv[len(lv)-1])*1.2
	}
}

func writePlots(rep *Report, dir string) ([]Plot, error) {
	var out []Plot
	save := func(title, file string, p *plot.Plot) error {
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, file)); err != nil {
			return err
		}
		out = append(out, Plot{Title: title, Path: file})
		return nil
	}
	if len(rep.MLP) > 0 {
		p := newPlot("MLP: throughput vs concurrency (one row per request)", "concurrency (closed loop)", "requests/s")
		if err := addSeries(p, rep.MLP, nil, "", func(r *loadgen.Result) float64 { return r.Throughput }); err != nil {
			return nil, err
		}
		concurrencyAxis(p, rep.MLP)
		p.Y.Min = 0
		p.Y.Max *= 1.45 // room for the legend
		if err := save("MLP throughput", "mlp-throughput.png", p); err != nil {
			return nil, err
		}
		if err := latencyTiles(rep.MLP, filepath.Join(dir, "mlp-latency.png")); err != nil {
			return nil, err
		}
		out = append(out, Plot{Title: "MLP latency", Path: "mlp-latency.png"})
	}
	if len(rep.Open) > 0 {
		p, err := openLoopBars(rep)
		if err != nil {
			return nil, err
		}
		if err := save("MLP open-loop latency", "mlp-open-loop.png", p); err != nil {
			return nil, err
		}
	}
	if len(rep.ResNet) > 0 {
		p := newPlot("ResNet-18: throughput vs concurrency (one image per request)", "concurrency (closed loop)", "images/s")
		if err := addSeries(p, rep.ResNet, nil, "", func(r *loadgen.Result) float64 { return r.RowsPerSec }); err != nil {
			return nil, err
		}
		for _, in := range rep.Inproc {
			if in.Model != "resnet18" {
				continue
			}
			lv := levelsOf(rep.ResNet)
			line, err := plotter.NewLine(plotter.XYs{{X: float64(lv[0]), Y: in.Result.RowsPerS}, {X: float64(lv[len(lv)-1]), Y: in.Result.RowsPerS}})
			if err != nil {
				return nil, err
			}
			line.Color = color.Black
			line.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(line)
			p.Legend.Add(fmt.Sprintf("in-process ORT (%s, batch %.1f)", in.Key, in.Result.MeanBatch), line)
		}
		concurrencyAxis(p, rep.ResNet)
		p.Y.Min = 0
		p.Y.Max *= 1.45
		if err := save("ResNet-18 throughput", "resnet18-throughput.png", p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// latencyTiles draws p50 and p99 against concurrency side by side.
func latencyTiles(series []Series, path string) error {
	var plots []*plot.Plot
	for _, q := range []struct {
		name string
		f    func(*loadgen.Result) float64
	}{
		{"p50", func(r *loadgen.Result) float64 { return us(r.Latency.P50) / 1e3 }},
		{"p99", func(r *loadgen.Result) float64 { return us(r.Latency.P99) / 1e3 }},
	} {
		p := newPlot("MLP: "+q.name+" latency vs concurrency", "concurrency (closed loop)", q.name+" latency, ms (log)")
		if err := addSeries(p, series, nil, "", q.f); err != nil {
			return err
		}
		concurrencyAxis(p, series)
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		plots = append(plots, p)
	}
	const w, h = 14 * vg.Inch, 5.5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8}
	canvases := plot.Align([][]*plot.Plot{plots}, t, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// openLoopBars groups p50/p90/p99 per series at the open-loop rate.
func openLoopBars(rep *Report) (*plot.Plot, error) {
	p := newPlot(fmt.Sprintf("MLP open loop at %.0f requests/s: latency percentiles", rep.OpenRate), "", "latency, ms")
	var names []string
	qs := []struct {
		name string
		f    func(loadgen.LatencyStats) float64
		c    color.Color
	}{
		{"p50", func(l loadgen.LatencyStats) float64 { return us(l.P50) / 1e3 }, color.RGBA{0x1f, 0x77, 0xb4, 0xff}},
		{"p90", func(l loadgen.LatencyStats) float64 { return us(l.P90) / 1e3 }, color.RGBA{0xff, 0x7f, 0x0e, 0xff}},
		{"p99", func(l loadgen.LatencyStats) float64 { return us(l.P99) / 1e3 }, color.RGBA{0xd6, 0x27, 0x28, 0xff}},
	}
	vals := make([]plotter.Values, len(qs))
	for _, s := range rep.Open {
		if len(s.Results) == 0 {
			continue
		}
		names = append(names, s.Label())
		for i, q := range qs {
			vals[i] = append(vals[i], q.f(s.Results[0].Latency))
		}
	}
	w := vg.Points(max(8, 120/float64(max(len(names), 1))))
	for i, q := range qs {
		b, err := plotter.NewBarChart(vals[i], w)
		if err != nil {
			return nil, err
		}
		b.Color = q.c
		b.LineStyle.Width = 0
		b.Offset = vg.Length(i-1) * w
		p.Add(b)
		p.Legend.Add(q.name, b)
	}
	p.NominalX(slices.Clone(names)...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Min = 0
	p.Y.Max *= 1.3
	return p, nil
}
