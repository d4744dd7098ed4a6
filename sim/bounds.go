package sim

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// HindsightVariant names the hindsight bound's rows of a bounds table.
const HindsightVariant = "hindsight"

// FileBounds is a matrix scenario's plot: deadlines met against accuracy,
// one point per variant, one panel per arrival pattern and deadline.
const FileBounds = "bounds.png"

// BoundsRow is one variant at one arrival pattern and deadline of a
// matrix scenario (or, with Variant HindsightVariant, the hindsight bound).
type BoundsRow struct {
	Arrival    string  `json:"arrival"`
	DeadlineMS float64 `json:"deadline_ms"`
	Variant    string  `json:"variant"`
	// Run is the run judged (its name).
	Run  string `json:"run,omitempty"`
	Sent int    `json:"sent"`
	// DeadlineMet is the fraction of sent requests served (ok or late)
	// within the deadline, end to end (receive time − sent_at).
	DeadlineMet float64 `json:"deadline_met"`
	// AccuracyEst is the mean expected accuracy (the results'
	// accuracy_est) of the served requests.
	AccuracyEst float64 `json:"accuracy_est"`
	// OfHindsight is AccuracyEst over the hindsight bound's.
	OfHindsight float64 `json:"of_hindsight"`
	// P50MS and P99MS are end-to-end latencies of the served requests.
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	// EnergyMJ is the mean energy per served request.
	EnergyMJ float64 `json:"energy_mj"`
	// Exits[k] counts served requests that took exit k+1.
	Exits []int `json:"exits"`
}

// boundsTable judges a matrix scenario's runs at each of its deadlines and
// adds the hindsight bound of each arrival pattern and deadline.
func boundsTable(s *Scenario, runs []RunReport, workers int) []BoundsRow {
	var out []BoundsRow
	for _, a := range s.Matrix.Arrivals {
		var pattern []*RunReport
		for i := range runs {
			if runs[i].Arrival == a.Name {
				pattern = append(pattern, &runs[i])
			}
		}
		if len(pattern) == 0 {
			continue
		}
		for _, d := range s.Matrix.DeadlinesMS {
			var rows []BoundsRow
			for _, run := range pattern {
				if run.DeadlineMS != 0 && run.DeadlineMS != d {
					continue
				}
				rows = append(rows, judge(run, a.Name, d))
			}
			h := hindsight(pattern, d, workers)
			h.Arrival = a.Name
			for i := range rows {
				if h.AccuracyEst > 0 {
					rows[i].OfHindsight = rows[i].AccuracyEst / h.AccuracyEst
				}
			}
			h.OfHindsight = 1
			out = append(out, rows...)
			out = append(out, h)
		}
	}
	return out
}

// judge summarises run at deadline d.
func judge(run *RunReport, arrival string, d float64) BoundsRow {
	row := BoundsRow{Arrival: arrival, DeadlineMS: d, Variant: run.Base, Run: run.Variant, Exits: []int{}}
	var lat []float64
	var acc, mj float64
	met := 0
	for _, q := range run.Requests {
		if q.Status == "send_error" {
			continue
		}
		row.Sent++
		if q.Status != "ok" && q.Status != "late" {
			continue
		}
		lat = append(lat, q.LatencyMS)
		acc += q.AccuracyEst
		mj += q.EnergyMJ
		if q.LatencyMS <= d {
			met++
		}
		for len(row.Exits) < q.Exit {
			row.Exits = append(row.Exits, 0)
		}
		if q.Exit > 0 {
			row.Exits[q.Exit-1]++
		}
	}
	if row.Sent > 0 {
		row.DeadlineMet = float64(met) / float64(row.Sent)
	}
	if n := len(lat); n > 0 {
		st := stats(lat)
		row.P50MS, row.P99MS = st.P50, st.P99
		row.AccuracyEst, row.EnergyMJ = acc/float64(n), mj/float64(n)
	}
	return row
}

// hindsightStepMS is the hindsight bound's resolution of work.
const hindsightStepMS = 0.25

// hindsight is the best per-request exit plan for the recorded arrivals of
// one pattern at deadline d, computed offline: the requests' send times
// (from the pattern's first run), each exit's work (the mean compute_ms of
// the requests served at it in all of the pattern's runs) and accuracy
// (their accuracy_est), and the time outside the stages (the median over
// those requests of end-to-end latency − queue_ms − compute_ms). The
// agent is modelled as one server of `workers` times a worker's speed
// serving in order of arrival (with one bound, earliest deadline first):
// a fluid relaxation of its workers that ignores that a stage cannot be
// split, which flatters the bound. Work is counted in steps of
// hindsightStepMS, rounded up (which costs the bound a little). A dynamic
// program over the backlog then maximises the deadlines met and, among
// plans that meet as many, the sum of expected accuracy. A request no plan
// can serve in time counts as missed, served at exit 1 without using the
// workers (which flatters the bound again).
func hindsight(pattern []*RunReport, d float64, workers int) BoundsRow {
	row := BoundsRow{DeadlineMS: d, Variant: HindsightVariant, Exits: []int{}}
	var work, acc, mj []float64
	var n []int
	var outside []float64
	for _, run := range pattern {
		for _, q := range run.Requests {
			if (q.Status != "ok" && q.Status != "late") || q.Exit < 1 {
				continue
			}
			for len(n) < q.Exit {
				work, acc, mj, n = append(work, 0), append(acc, 0), append(mj, 0), append(n, 0)
			}
			k := q.Exit - 1
			work[k] += q.ComputeMS
			acc[k] += q.AccuracyEst
			mj[k] += q.EnergyMJ
			n[k]++
			outside = append(outside, q.LatencyMS-q.QueueMS-q.ComputeMS)
		}
	}
	type exit struct {
		k          int // 1-based
		units      int
		acc, mj    float64
		workMS     float64
		accOfExit1 float64
	}
	var exits []exit
	for k := range n {
		if n[k] == 0 {
			continue
		}
		w := work[k] / float64(n[k])
		exits = append(exits, exit{k: k + 1, units: int(math.Ceil(w / hindsightStepMS)), acc: acc[k] / float64(n[k]), mj: mj[k] / float64(n[k]), workMS: w})
	}
	var sent []int64
	for _, q := range pattern[0].Requests {
		if q.Status != "send_error" {
			sent = append(sent, q.SentAt)
		}
	}
	slices.Sort(sent)
	row.Sent = len(sent)
	if len(exits) == 0 || len(sent) == 0 {
		return row
	}
	over := 0.0
	if len(outside) > 0 {
		over = stats(outside).P50
	}
	m := float64(max(1, workers))
	capUnits := int(math.Floor(m * (d - over) / hindsightStepMS))
	if capUnits < 0 {
		capUnits = 0
	}
	N := len(sent)
	// val[b]: the best (met·(N+1) + accuracy) with backlog b units at the
	// next arrival; from[i][b], took[i][b]: its backlog at request i's
	// arrival and request i's exit (0: missed).
	inf := math.Inf(-1)
	val := make([]float64, capUnits+1)
	next := make([]float64, capUnits+1)
	for b := range val {
		val[b] = inf
	}
	val[0] = 0
	from := make([][]int32, N)
	took := make([][]int8, N)
	scale := float64(N + 1)
	missAcc := exits[0].acc
	if exits[0].k != 1 {
		missAcc = 0
	}
	for i := 0; i < N; i++ {
		for b := range next {
			next[b] = inf
		}
		fr := make([]int32, capUnits+1)
		tk := make([]int8, capUnits+1)
		dec := 0
		if i+1 < N {
			dec = int(math.Floor(m * float64(sent[i+1]-sent[i]) / 1000 / hindsightStepMS))
		}
		relax := func(b, nb int, v float64, k int) {
			nb = max(0, nb-dec)
			if v > next[nb] {
				next[nb], fr[nb], tk[nb] = v, int32(b), int8(k)
			}
		}
		for b, v := range val {
			if v == inf {
				continue
			}
			relax(b, b, v+missAcc, 0)
			for _, e := range exits {
				if nb := b + e.units; nb <= capUnits {
					relax(b, nb, v+scale+e.acc, e.k)
				}
			}
		}
		from[i], took[i] = fr, tk
		val, next = next, val
	}
	best, bb := inf, 0
	for b, v := range val {
		if v > best {
			best, bb = v, b
		}
	}
	// Walk the plan back.
	met := 0
	var accSum, mjSum float64
	byK := map[int]exit{}
	for _, e := range exits {
		byK[e.k] = e
	}
	for i := N - 1; i >= 0; i-- {
		k := int(took[i][bb])
		bb = int(from[i][bb])
		if k == 0 {
			k = 1
		} else {
			met++
		}
		for len(row.Exits) < k {
			row.Exits = append(row.Exits, 0)
		}
		row.Exits[k-1]++
		e, ok := byK[k]
		if ok {
			accSum += e.acc
			mjSum += e.mj
		}
	}
	row.DeadlineMet = float64(met) / float64(N)
	row.AccuracyEst = accSum / float64(N)
	row.EnergyMJ = mjSum / float64(N)
	return row
}

// boundsTableText is the bounds table as text.
func boundsTableText(rows []BoundsRow) (header []string, out [][]string) {
	header = []string{"ARRIVAL", "DEADLINE_MS", "VARIANT", "SENT", "DEADLINE_MET", "ACCURACY_EST", "OF_HINDSIGHT", "P50_MS", "P99_MS", "ENERGY_MJ", "EXITS"}
	for _, r := range rows {
		exits := make([]string, len(r.Exits))
		for i, n := range r.Exits {
			exits[i] = strconv.Itoa(n)
		}
		lat := func(v float64) string {
			if r.Variant == HindsightVariant {
				return "-"
			}
			return fmt.Sprintf("%.1f", v)
		}
		out = append(out, []string{r.Arrival, strconv.FormatFloat(r.DeadlineMS, 'f', -1, 64), r.Variant, strconv.Itoa(r.Sent),
			fmt.Sprintf("%.3f", r.DeadlineMet), fmt.Sprintf("%.3f", r.AccuracyEst), fmt.Sprintf("%.3f", r.OfHindsight),
			lat(r.P50MS), lat(r.P99MS), fmt.Sprintf("%.1f", r.EnergyMJ), strings.Join(exits, "/")})
	}
	return header, out
}

// plotBounds draws deadlines met (x) against mean expected accuracy (y),
// one point per variant, one panel per arrival pattern (row) and deadline
// (column); the hindsight bound is the red star.
func plotBounds(path string, rows []BoundsRow) error {
	type cell struct {
		arrival string
		d       float64
	}
	var cells []cell
	seen := map[cell]bool{}
	var arrivals []string
	var deadlines []float64
	for _, r := range rows {
		c := cell{r.Arrival, r.DeadlineMS}
		if !seen[c] {
			seen[c] = true
			cells = append(cells, c)
			if !slices.Contains(arrivals, r.Arrival) {
				arrivals = append(arrivals, r.Arrival)
			}
			if !slices.Contains(deadlines, r.DeadlineMS) {
				deadlines = append(deadlines, r.DeadlineMS)
			}
		}
	}
	if len(cells) == 0 {
		return nil
	}
	sort.Float64s(deadlines)
	plots := make([][]*plot.Plot, len(arrivals))
	for i := range plots {
		plots[i] = make([]*plot.Plot, len(deadlines))
	}
	for ai, a := range arrivals {
		for di, d := range deadlines {
			p := plot.New()
			p.Title.Text = fmt.Sprintf("%s, deadline %g ms", a, d)
			p.X.Label.Text = "deadlines met (end to end)"
			p.Y.Label.Text = "mean expected accuracy"
			p.X.Min, p.X.Max = 0, 1.05
			var pts plotter.XYs
			var labels []string
			var star plotter.XYs
			for _, r := range rows {
				if r.Arrival != a || r.DeadlineMS != d {
					continue
				}
				if r.Variant == HindsightVariant {
					star = append(star, plotter.XY{X: r.DeadlineMet, Y: r.AccuracyEst})
					continue
				}
				pts = append(pts, plotter.XY{X: r.DeadlineMet, Y: r.AccuracyEst})
				labels = append(labels, r.Variant)
			}
			if len(pts) > 0 {
				sc, err := plotter.NewScatter(pts)
				if err != nil {
					return err
				}
				sc.GlyphStyle.Radius = vg.Points(2.5)
				sc.GlyphStyle.Color = color.RGBA{B: 160, A: 255}
				p.Add(sc)
				lb, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
				if err != nil {
					return err
				}
				for i := range lb.TextStyle {
					lb.TextStyle[i].Font.Size = vg.Points(6)
					lb.Offset = vg.Point{X: vg.Points(3), Y: vg.Points(-2)}
				}
				p.Add(lb)
			}
			if len(star) > 0 {
				sc, err := plotter.NewScatter(star)
				if err != nil {
					return err
				}
				sc.GlyphStyle.Shape = draw.PyramidGlyph{}
				sc.GlyphStyle.Radius = vg.Points(4)
				sc.GlyphStyle.Color = color.RGBA{R: 220, A: 255}
				p.Add(sc)
				p.Legend.Add(HindsightVariant, sc)
				p.Legend.Top, p.Legend.Left = false, true
			}
			plots[ai][di] = p
		}
	}
	return savePanels(path, plots, vg.Points(330*float64(len(deadlines))), vg.Points(300*float64(len(arrivals))))
}

// writeBoundsPlot writes FileBounds into dir when the report has a table.
func (r *Report) writeBoundsPlot(dir string) error {
	if len(r.Bounds) == 0 {
		return nil
	}
	return plotBounds(filepath.Join(dir, FileBounds), r.Bounds)
}
