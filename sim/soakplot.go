package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
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
	series, err := readSoakSeries(f)
	if err != nil {
		return fmt.Errorf("%s: %w", csvPath, err)
	}
	mem, gor := plot.New(), plot.New()
	mem.Title.Text, mem.Y.Label.Text = "memory", "MiB"
	gor.Title.Text, gor.Y.Label.Text = "goroutines", "count"
	for _, p := range []*plot.Plot{mem, gor} {
		p.X.Label.Text = "time (s)"
		p.Add(plotter.NewGrid())
	}
	for i, sr := range series {
		l, err := plotter.NewLine(sr.pts)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", csvPath, sr.name, err)
		}
		l.Color = lineColor(i)
		l.Width = vg.Points(1.5)
		p := mem
		if sr.name == "goroutines" {
			p = gor
		}
		p.Add(l)
		p.Legend.Add(sr.name, l)
	}
	for _, p := range []*plot.Plot{mem, gor} {
		p.Y.Min = 0
		p.Legend.Top, p.Legend.Left = true, true
	}
	return savePanels(pngPath, [][]*plot.Plot{{mem}, {gor}}, 8*vg.Inch, 7*vg.Inch)
}

// soakSeries is one column of the soak CSV: its name and its numeric
// points against time.
type soakSeries struct {
	name string
	pts  plotter.XYs
}

// readSoakSeries parses the soak CSV: a t_s column first, then one series
// per column. Rows whose t_s is not a number, and cells that are not
// finite numbers, are left out; columns with no point are dropped.
func readSoakSeries(r io.Reader) ([]soakSeries, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // a short row loses its missing cells, not the file
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) < 2 || len(rows[0]) < 2 || rows[0][0] != "t_s" {
		return nil, errors.New("want a header starting with t_s and at least one row")
	}
	var out []soakSeries
	for c := 1; c < len(rows[0]); c++ {
		sr := soakSeries{name: rows[0][c]}
		for _, row := range rows[1:] {
			if c >= len(row) {
				continue
			}
			t, err := strconv.ParseFloat(row[0], 64)
			if err != nil || math.IsNaN(t) || math.IsInf(t, 0) {
				continue
			}
			v, err := strconv.ParseFloat(row[c], 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			sr.pts = append(sr.pts, plotter.XY{X: t, Y: v})
		}
		if len(sr.pts) > 0 {
			out = append(out, sr)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no numeric rows")
	}
	return out, nil
}
