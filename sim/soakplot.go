package sim

import (
	"encoding/csv"
	"fmt"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotSoakSeries draws the resource series `make soak` samples (a CSV with
// a t_s column of seconds, or "idle"/"drained", and MiB or count columns)
// into a PNG: every *_mib column against time in one panel, goroutines in
// a second. Rows whose t_s is not a number are left out.
func PlotSoakSeries(csvPath, pngPath string) error {
	f, err := os.Open(csvPath)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return fmt.Errorf("%s: %w", csvPath, err)
	}
	if len(rows) < 2 || len(rows[0]) < 2 || rows[0][0] != "t_s" {
		return fmt.Errorf("%s: want a header starting with t_s and at least one row", csvPath)
	}
	header := rows[0]
	mem, gor := plot.New(), plot.New()
	mem.Title.Text, mem.Y.Label.Text = "memory", "MiB"
	gor.Title.Text, gor.Y.Label.Text = "goroutines", "count"
	for _, p := range []*plot.Plot{mem, gor} {
		p.X.Label.Text = "time (s)"
		p.Add(plotter.NewGrid())
	}
	drawn := 0
	for c := 1; c < len(header); c++ {
		var pts plotter.XYs
		for _, r := range rows[1:] {
			t, err := strconv.ParseFloat(r[0], 64)
			if err != nil || c >= len(r) {
				continue
			}
			v, err := strconv.ParseFloat(r[c], 64)
			if err != nil {
				continue
			}
			pts = append(pts, plotter.XY{X: t, Y: v})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = lineColor(c - 1)
		l.Width = vg.Points(1.5)
		p := mem
		if header[c] == "goroutines" {
			p = gor
		}
		p.Add(l)
		p.Legend.Add(header[c], l)
		drawn++
	}
	if drawn == 0 {
		return fmt.Errorf("%s: no numeric rows", csvPath)
	}
	for _, p := range []*plot.Plot{mem, gor} {
		p.Y.Min = 0
		p.Legend.Top, p.Legend.Left = true, true
	}
	return savePanels(pngPath, [][]*plot.Plot{{mem}, {gor}}, 8*vg.Inch, 7*vg.Inch)
}
