package sim

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/delen-edge/delen/models/profile"
)

// Report is the outcome of Run: what was run, where, and what every tenant
// saw. It is written as report.json (Requests go to requests.csv).
type Report struct {
	// Scenario is the scenario as run.
	Scenario *Scenario `json:"scenario"`
	// Machine describes the simulator's host and the agents it saw.
	Machine Machine `json:"machine"`
	// Started is when the run began.
	Started time.Time `json:"started"`
	// Options are the run options that shape the numbers.
	Options ReportOptions `json:"options"`
	// Runs holds one run per variant (one run without compare).
	Runs []RunReport `json:"runs"`
	// Bounds is a matrix scenario's table: per arrival pattern, deadline
	// and variant, deadlines met end to end against accuracy, and the
	// hindsight bound (see Matrix).
	Bounds []BoundsRow `json:"bounds,omitempty"`
}

// ReportOptions are the RunOptions recorded in a report.
type ReportOptions struct {
	BrokerURL string   `json:"broker_url"` // the broker the run talked to
	Prefix    string   `json:"prefix"`     // the topic prefix
	Timeout   Duration `json:"timeout"`    // after it, a request is lost
}

// Machine describes where the simulator ran and the agents it saw on the
// broker's status topics.
type Machine struct {
	GOOS      string `json:"goos"`               // runtime.GOOS of the simulator
	GOARCH    string `json:"goarch"`             // runtime.GOARCH of the simulator
	CPUs      int    `json:"cpus"`               // runtime.NumCPU of the simulator
	GoVersion string `json:"go_version"`         // the Go release it was built with
	Hostname  string `json:"hostname,omitempty"` // the simulator's host name
	// Agents are the agents whose status was on the broker.
	Agents []AgentInfo `json:"agents"`
	// Models are the models the agents serve and the results named.
	Models []string `json:"models"`
}

// AgentInfo is one agent's retained status.
type AgentInfo struct {
	ID     string   `json:"id"`               // agent id
	Status string   `json:"status"`           // online or offline
	Models []string `json:"models,omitempty"` // the models it serves
}

// RunReport is one run of the scenario (one variant).
type RunReport struct {
	// Variant names the compare variant; empty without compare.
	Variant string `json:"variant,omitempty"`
	// Arrival, DeadlineMS and Base place a matrix run: its arrival
	// pattern, its deadline (0: a variant without a latency bound, judged
	// at every deadline of the matrix) and the compare variant it runs.
	Arrival    string  `json:"arrival,omitempty"`
	DeadlineMS float64 `json:"deadline_ms,omitempty"`
	Base       string  `json:"base,omitempty"`
	// RunID prefixes every request id of the run.
	RunID string `json:"run_id"`
	// Started is when the first request was due.
	Started time.Time `json:"started"`
	// SendS is how long sending took; WallS includes waiting for the last
	// results.
	SendS float64 `json:"send_s"`
	WallS float64 `json:"wall_s"`
	// MaxSendLagMS is the largest delay of a send behind its schedule: a
	// check that the sender kept up (open loop).
	MaxSendLagMS float64 `json:"max_send_lag_ms"`
	// Tenants are the per-tenant summaries and series.
	Tenants []TenantSummary `json:"tenants"`
	// Controls are the control messages published and what the agent said.
	Controls []ControlEvent `json:"controls"`
	// Warnings are problems worth a look (refused controls, foreign results).
	Warnings []string `json:"warnings,omitempty"`
	// Requests holds one record per request sent (for requests.csv).
	Requests []Record `json:"-"`
}

// ControlEvent is one control message the simulator published.
type ControlEvent struct {
	// Tenant is the tenant the control is for.
	Tenant string `json:"tenant"`
	// AtS is the scheduled time from the start of the run; initial
	// controls (the reset) are published before the start, at 0.
	AtS float64 `json:"at_s"`
	// Control is the message as sent.
	Control json.RawMessage `json:"control"`
	// Result is "applied", "refused" or "unconfirmed" (no state seen).
	Result string `json:"result"`
	// Error is the agent's reason for a refusal.
	Error string `json:"error,omitempty"`
}

// Stats summarises a set of latencies in milliseconds.
type Stats struct {
	Count int     `json:"count"` // number of samples
	Mean  float64 `json:"mean"`  // arithmetic mean
	P50   float64 `json:"p50"`   // median
	P95   float64 `json:"p95"`   // 95th percentile
	P99   float64 `json:"p99"`   // 99th percentile
	Max   float64 `json:"max"`   // largest sample
}

// TenantSummary is what one tenant saw during a run.
type TenantSummary struct {
	Tenant  string `json:"tenant"`            // tenant name
	Variant string `json:"variant,omitempty"` // compare variant, if any
	Policy  string `json:"policy,omitempty"`  // policy sent with the requests
	Model   string `json:"model,omitempty"`   // model sent with the requests
	// Scheduled is how many requests the arrival process produced; Sent
	// how many were published (fewer when the run was cancelled or a
	// publish failed: SendErrors).
	Scheduled  int `json:"scheduled"`
	Sent       int `json:"sent"`
	SendErrors int `json:"send_errors"`
	// Answered got a result within the timeout; Lost did not
	// (Answered + Lost = Sent). LateResults counts results that came
	// after the timeout (they are lost). Duplicates counts extra results
	// for a request already answered.
	Answered    int `json:"answered"`
	Lost        int `json:"lost"`
	LateResults int `json:"late_results"`
	Duplicates  int `json:"duplicates"`
	// Statuses counts answered results by status (ok, late, shed, error);
	// Errors counts error and shed results by error code.
	Statuses map[string]int `json:"statuses"`
	Errors   map[string]int `json:"errors,omitempty"`
	// OfferedRPS is Sent per second of the scenario; ServedRPS the served
	// (ok + late) results per second.
	OfferedRPS float64 `json:"offered_rps"`
	ServedRPS  float64 `json:"served_rps"`
	// LatencyMS is the end-to-end latency (receive time − sent_at) of
	// served requests; AgentLatencyMS the agent's own latency_ms.
	LatencyMS      Stats `json:"latency_ms"`
	AgentLatencyMS Stats `json:"agent_latency_ms"`
	// SLOMS is the deadline judged (slo_ms or the latency bound), when
	// constant over the run.
	SLOMS *float64 `json:"slo_ms,omitempty"`
	// DeadlineMet is the fraction of sent requests with a deadline that
	// were served within it; nil when no request had one.
	DeadlineMet *float64 `json:"deadline_met"`
	// BoundMet is the fraction of answered results with bound_met that
	// say true (the agent's own judgement).
	BoundMet *float64 `json:"bound_met"`
	// Accuracy is the fraction of served labelled requests whose class was
	// right; AccuracyEst the mean of the agent's accuracy_est.
	Accuracy    *float64 `json:"accuracy"`
	AccuracyEst *float64 `json:"accuracy_est"`
	// EnergyMJ is the mean energy per served request; EnergyTotalMJ the
	// energy of every result.
	EnergyMJ      float64 `json:"energy_mj"`
	EnergyTotalMJ float64 `json:"energy_total_mj"`
	// Exits[k] counts served requests that took exit k+1.
	Exits []int `json:"exits"`
	// ForeignResults counts results on the tenant's topic that belong to
	// no request of this run.
	ForeignResults int `json:"foreign_results,omitempty"`
	// Series is the same per second, bucketed by send time.
	Series []Bucket `json:"series"`
}

// Bucket is one second of a tenant's run, by send time.
type Bucket struct {
	// T is the second from the start of the run.
	T           int      `json:"t"`
	Sent        int      `json:"sent"`         // requests sent
	Answered    int      `json:"answered"`     // of them, answered within the timeout
	Lost        int      `json:"lost"`         // of them, lost
	OK          int      `json:"ok"`           // answered with status ok
	Late        int      `json:"late"`         // answered with status late
	Shed        int      `json:"shed"`         // answered with status shed
	Error       int      `json:"error"`        // answered with status error
	P50MS       float64  `json:"p50_ms"`       // median end-to-end latency of the served
	P95MS       float64  `json:"p95_ms"`       // p95 end-to-end latency of the served
	DeadlineMet *float64 `json:"deadline_met"` // as TenantSummary.DeadlineMet
	BoundMet    *float64 `json:"bound_met"`    // as TenantSummary.BoundMet
	Accuracy    *float64 `json:"accuracy"`     // as TenantSummary.Accuracy
	EnergyMJ    float64  `json:"energy_mj"`    // energy of all results
	Exits       []int    `json:"exits"`        // as TenantSummary.Exits
}

// Record is one request, as written to requests.csv.
type Record struct {
	Variant        string  // compare variant, if any
	Tenant         string  // tenant name
	ID             string  // request id
	SentAt         int64   // unix µs
	ReceivedAt     int64   // unix µs; 0 when no result came
	LatencyMS      float64 // end to end: ReceivedAt − SentAt
	Status         string  // ok, late, shed, error, lost, send_error
	Code           string  // error code of error and shed results
	Exit           int     // exit taken; 0: none
	Class          int     // -1: none
	Label          int     // -1: none
	Correct        int     // -1: unknown, 0, 1
	EnergyMJ       float64 // the result's energy_mj
	BoundMet       int     // -1: absent, 0, 1
	AgentLatencyMS float64 // the result's latency_ms (arrival at the agent to publish)
	AccuracyEst    float64 // the result's accuracy_est
	Confidence     float64 // the result's confidence
	Model          string  // the model that served it
	DeadlineMS     float64 // the deadline judged; 0: none
	ComputeMS      float64 // the result's compute_ms
	QueueMS        float64 // the result's queue_ms
}

// Snapshot is the live state of a run, passed to RunOptions.Progress about
// once a second and once at the end.
type Snapshot struct {
	Variant  string        // compare variant, if any
	Elapsed  time.Duration // since the run started
	Duration time.Duration // of the scenario
	// Waiting is true once every request is sent and the run waits for
	// the last results; Done on the last snapshot of a run.
	Waiting, Done bool
	// Sent, Answered, Lost and Pending count requests so far (Lost: no
	// result within the timeout; Pending: still within it).
	Sent, Answered, Lost, Pending int
	// OK, Late, Shed and Error count the answered by status.
	OK, Late, Shed, Error int
	// RecentP95MS is the p95 end-to-end latency of the results received
	// since the previous snapshot (0 when none).
	RecentP95MS float64
	// Tenants are the per-tenant counts.
	Tenants []TenantSnapshot
}

// TenantSnapshot is one tenant's counts in a Snapshot.
type TenantSnapshot struct {
	// Tenant is the tenant name.
	Tenant string
	// Sent, Answered, Lost and Pending are as in Snapshot.
	Sent, Answered, Lost, Pending int
}

// String is a one-line progress summary.
func (s Snapshot) String() string {
	var b strings.Builder
	if s.Variant != "" {
		fmt.Fprintf(&b, "[%s] ", s.Variant)
	}
	fmt.Fprintf(&b, "%.0fs/%s", s.Elapsed.Seconds(), s.Duration)
	switch {
	case s.Done:
		b.WriteString(" done")
	case s.Waiting:
		b.WriteString(" waiting")
	}
	fmt.Fprintf(&b, "  sent %d  answered %d  pending %d  lost %d  (ok %d late %d shed %d error %d)  p95 %.1f ms",
		s.Sent, s.Answered, s.Pending, s.Lost, s.OK, s.Late, s.Shed, s.Error, s.RecentP95MS)
	return b.String()
}

// File names written by WriteFiles.
const (
	FileReport     = "report.json"     // scenario, machine, summaries, series
	FileRequests   = "requests.csv"    // one row per request
	FileLatencyCDF = "latency_cdf.png" // end-to-end latency CDF per tenant
	FileExits      = "exits.png"       // exit mix over time per tenant
	FileSLO        = "slo.png"         // deadline-met ratio and accuracy over time
	FileEnergy     = "energy.png"      // energy per second over time
)

// WriteFiles writes report.json, requests.csv and the plots into dir,
// creating it.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, FileReport), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := r.writeCSV(filepath.Join(dir, FileRequests)); err != nil {
		return err
	}
	if err := r.writePlots(dir); err != nil {
		return err
	}
	return r.writeBoundsPlot(dir)
}

// CSVHeader is the header of requests.csv.
var CSVHeader = []string{"tenant", "id", "sent_at", "received_at", "latency_ms", "status", "code", "exit",
	"class", "label", "correct", "energy_mj", "bound_met", "agent_latency_ms", "accuracy_est", "confidence", "model", "deadline_ms", "variant", "compute_ms", "queue_ms"}

func (r *Report) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(CSVHeader)
	opt := func(v int) string {
		if v < 0 {
			return ""
		}
		return strconv.Itoa(v)
	}
	boolish := func(v int) string {
		switch v {
		case 0:
			return "false"
		case 1:
			return "true"
		}
		return ""
	}
	num := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	for _, run := range r.Runs {
		for _, q := range run.Requests {
			recv, lat := "", ""
			if q.ReceivedAt != 0 {
				recv = strconv.FormatInt(q.ReceivedAt, 10)
				lat = num(q.LatencyMS, 3)
			}
			exit := ""
			if q.Exit > 0 {
				exit = strconv.Itoa(q.Exit)
			}
			dl := ""
			if q.DeadlineMS > 0 {
				dl = num(q.DeadlineMS, 3)
			}
			agentLat, accEst, conf, energy, compute, queue := "", "", "", "", "", ""
			if q.ReceivedAt != 0 {
				agentLat, accEst, energy = num(q.AgentLatencyMS, 3), num(q.AccuracyEst, 4), num(q.EnergyMJ, 4)
				compute, queue = num(q.ComputeMS, 3), num(q.QueueMS, 3)
				if q.Exit > 0 {
					conf = num(q.Confidence, 4)
				}
			}
			w.Write([]string{q.Tenant, q.ID, strconv.FormatInt(q.SentAt, 10), recv, lat, q.Status, q.Code, exit,
				opt(q.Class), opt(q.Label), boolish(q.Correct), energy, boolish(q.BoundMet), agentLat, accEst, conf, q.Model, dl, q.Variant, compute, queue})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SummaryTable returns the per-tenant summary as a header and rows of
// text, one row per tenant and run (variant/tenant with compare).
//
// A matrix scenario's summary is its bounds table instead (Report.Bounds;
// the per-run summaries are in report.json).
func (r *Report) SummaryTable() (header []string, rows [][]string) {
	if len(r.Bounds) > 0 {
		return boundsTableText(r.Bounds)
	}
	header = []string{"TENANT", "SENT", "ANSWERED", "LOST", "OK", "LATE", "SHED", "ERROR", "P50_MS", "P95_MS", "P99_MS",
		"DEADLINE_MET", "BOUND_MET", "ACCURACY", "ENERGY_MJ", "EXITS"}
	ratio := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.3f", *p)
	}
	for _, run := range r.Runs {
		for _, t := range run.Tenants {
			name := t.Tenant
			if t.Variant != "" {
				name = t.Variant + "/" + t.Tenant
			}
			exits := make([]string, len(t.Exits))
			for i, n := range t.Exits {
				exits[i] = strconv.Itoa(n)
			}
			lat := func(v float64) string {
				if t.LatencyMS.Count == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f", v)
			}
			rows = append(rows, []string{name, strconv.Itoa(t.Sent), strconv.Itoa(t.Answered), strconv.Itoa(t.Lost),
				strconv.Itoa(t.Statuses["ok"]), strconv.Itoa(t.Statuses["late"]), strconv.Itoa(t.Statuses["shed"]), strconv.Itoa(t.Statuses["error"]),
				lat(t.LatencyMS.P50), lat(t.LatencyMS.P95), lat(t.LatencyMS.P99),
				ratio(t.DeadlineMet), ratio(t.BoundMet), ratio(t.Accuracy), fmt.Sprintf("%.3f", t.EnergyMJ), strings.Join(exits, "/")})
		}
	}
	return header, rows
}

// stats summarises latencies (ms); it sorts v.
func stats(v []float64) Stats {
	if len(v) == 0 {
		return Stats{}
	}
	sort.Float64s(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return Stats{Count: len(v), Mean: sum / float64(len(v)), P50: profile.Quantile(v, 0.50), P95: profile.Quantile(v, 0.95),
		P99: profile.Quantile(v, 0.99), Max: v[len(v)-1]}
}

func ratioOf(num, den int) *float64 {
	if den == 0 {
		return nil
	}
	v := float64(num) / float64(den)
	return &v
}
