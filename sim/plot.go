package sim

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotSeries is one line of the plots: a tenant in a run.
type plotSeries struct {
	label string
	sum   *TenantSummary
	lat   []float64 // sorted end-to-end latencies of served requests
}

func (r *Report) plotSeries() []plotSeries {
	var out []plotSeries
	for ri := range r.Runs {
		run := &r.Runs[ri]
		lat := map[string][]float64{}
		for _, q := range run.Requests {
			if q.Status == "ok" || q.Status == "late" {
				lat[q.Tenant] = append(lat[q.Tenant], q.LatencyMS)
			}
		}
		for ti := range run.Tenants {
			t := &run.Tenants[ti]
			label := t.Tenant
			if t.Variant != "" {
				label = t.Variant + "/" + t.Tenant
			}
			l := lat[t.Tenant]
			slices.Sort(l)
			out = append(out, plotSeries{label: label, sum: t, lat: l})
		}
	}
	return out
}

func lineColor(i int) color.Color { return plotutil.DarkColors[i%len(plotutil.DarkColors)] }

// timeAxis sets p's x axis to the seconds of the longest series.
func timeAxis(p *plot.Plot, series []plotSeries) {
	n := 1
	for _, s := range series {
		n = max(n, len(s.sum.Series))
	}
	p.X.Label.Text = "time (s, by send time)"
	p.X.Min, p.X.Max = 0, float64(n)
}

func (r *Report) writePlots(dir string) error {
	series := r.plotSeries()
	for _, f := range []struct {
		name string
		fn   func(string, []plotSeries) error
	}{
		{FileLatencyCDF, plotLatencyCDF}, {FileExits, plotExits}, {FileSLO, plotSLO}, {FileEnergy, plotEnergy},
	} {
		if err := f.fn(filepath.Join(dir, f.name), series); err != nil {
			return fmt.Errorf("plot %s: %w", f.name, err)
		}
	}
	return nil
}

// plotLatencyCDF: the empirical CDF of each series' end-to-end latency,
// on a log axis when latencies span more than a decade.
func plotLatencyCDF(path string, series []plotSeries) error {
	p := plot.New()
	p.Title.Text = "End-to-end latency (served requests)"
	p.X.Label.Text = "latency (ms)"
	p.Y.Label.Text = "fraction of requests ≤ x"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), 0.0
	for i, s := range series {
		if len(s.lat) == 0 {
			continue
		}
		const maxPoints = 2000
		step := max(1, len(s.lat)/maxPoints)
		var xy plotter.XYs
		for k := 0; k < len(s.lat); k += step {
			xy = append(xy, plotter.XY{X: max(s.lat[k], 1e-3), Y: float64(k+1) / float64(len(s.lat))})
		}
		xy = append(xy, plotter.XY{X: max(s.lat[len(s.lat)-1], 1e-3), Y: 1})
		lo, hi = min(lo, xy[0].X), max(hi, xy[len(xy)-1].X)
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color = lineColor(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.label, l)
	}
	if hi > 0 && hi/lo > 10 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if hi == 0 {
		p.Title.Text += ": none"
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// plotExits: per series, the share of served requests per exit over
// time, stacked.
func plotExits(path string, series []plotSeries) error {
	cols := min(max(len(series), 1), 3)
	rows := max(1, (len(series)+cols-1)/cols)
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, s := range series {
		p := plot.New()
		p.Title.Text = "Exit mix: " + s.label
		timeAxis(p, series)
		p.Y.Label.Text = "share of served"
		p.Y.Min, p.Y.Max = 0, 1
		p.Legend.Top = true
		exits := 0
		for _, b := range s.sum.Series {
			exits = max(exits, len(b.Exits))
		}
		for k := exits; k >= 1; k-- {
			var xy plotter.XYs
			for _, b := range s.sum.Series {
				n, le := 0, 0
				for e, c := range b.Exits {
					n += c
					if e < k {
						le += c
					}
				}
				y := 0.0
				if n > 0 {
					y = float64(le) / float64(n)
				}
				xy = append(xy, plotter.XY{X: float64(b.T), Y: y})
			}
			if len(xy) > 0 {
				xy = append(xy, plotter.XY{X: xy[len(xy)-1].X + 1, Y: xy[len(xy)-1].Y})
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return err
			}
			l.StepStyle = plotter.PostStep
			l.FillColor = plotutil.Color(k - 1)
			l.Width = 0
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("exit %d", k), l)
		}
		grid[i/cols][i%cols] = p
	}
	if len(series) == 0 {
		grid[0][0] = plot.New()
		grid[0][0].Title.Text = "Exit mix: no data"
	}
	return savePanels(path, grid, vg.Length(cols)*5*vg.Inch, vg.Length(rows)*3.2*vg.Inch)
}

// plotSLO: deadline-met ratio and accuracy per second.
func plotSLO(path string, series []plotSeries) error {
	top, bottom := plot.New(), plot.New()
	top.Title.Text = "Deadline met (fraction of requests sent that second)"
	bottom.Title.Text = "Accuracy (served labelled requests)"
	for _, p := range []*plot.Plot{top, bottom} {
		timeAxis(p, series)
		p.Y.Min, p.Y.Max = 0, 1.05
		p.Legend.Top = false
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
	}
	top.Y.Label.Text = "deadline met"
	bottom.Y.Label.Text = "accuracy"
	drawn := map[*plot.Plot]bool{}
	for i, s := range series {
		for _, pl := range []struct {
			p *plot.Plot
			v func(Bucket) *float64
		}{
			{top, func(b Bucket) *float64 { return b.DeadlineMet }},
			{bottom, func(b Bucket) *float64 { return b.Accuracy }},
		} {
			var xy plotter.XYs
			for _, b := range s.sum.Series {
				if v := pl.v(b); v != nil {
					xy = append(xy, plotter.XY{X: float64(b.T) + 0.5, Y: *v})
				}
			}
			if len(xy) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(xy)
			if err != nil {
				return err
			}
			l.Color, pts.Color = lineColor(i), lineColor(i)
			pts.Radius = vg.Points(1.5)
			pl.p.Add(l, pts)
			pl.p.Legend.Add(s.label, l)
			drawn[pl.p] = true
		}
	}
	if !drawn[top] {
		top.Title.Text += ": no request had a latency bound or slo_ms"
	}
	if !drawn[bottom] {
		bottom.Title.Text += ": no labelled request was served"
	}
	return savePanels(path, [][]*plot.Plot{{top}, {bottom}}, 9*vg.Inch, 7*vg.Inch)
}

// plotEnergy: the energy of the requests sent each second.
func plotEnergy(path string, series []plotSeries) error {
	p := plot.New()
	p.Title.Text = "Energy per second"
	timeAxis(p, series)
	p.Y.Label.Text = "energy (mJ per second of requests)"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for i, s := range series {
		var xy plotter.XYs
		for _, b := range s.sum.Series {
			xy = append(xy, plotter.XY{X: float64(b.T), Y: b.EnergyMJ})
		}
		if len(xy) == 0 {
			continue
		}
		xy = append(xy, plotter.XY{X: xy[len(xy)-1].X + 1, Y: xy[len(xy)-1].Y})
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.StepStyle = plotter.PostStep
		l.Color = lineColor(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.label, l)
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// savePanels draws a grid of plots (nil cells stay blank) into one PNG.
func savePanels(path string, grid [][]*plot.Plot, w, h vg.Length) error {
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(grid), Cols: len(grid[0]), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, t, dc)
	for j := range grid {
		for i, p := range grid[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
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
