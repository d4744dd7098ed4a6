package sim_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/delen-edge/delen/sim"
)

// startAgent runs an agent on an embedded broker for the test and returns
// the broker URL.
func startAgent(t *testing.T) string {
	t.Helper()
	url := brokertest.StartEmbedded(t, broker.EmbeddedConfig{}).Addr()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, agent.Config{AgentID: "sim-test", BrokerURL: url, Store: st, ProfileRuns: 20,
		Zoo: zoo.New(filepath.Join(dir, "models")), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		st.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := a.WaitReady(wctx); err != nil {
		t.Fatalf("agent not ready: %v", err)
	}
	return url
}

const shortScenario = `
name: short
duration: 2500ms
seed: 42
tenants:
  - name: camera
    arrival: {process: constant, rate: 20}
    bound: {latency_ms: 50}
  - name: flow
    encoding: json
    qos: 0
    arrival: {process: poisson, rate: 20}
    input: {dtype: float32, offset: 500}
    controls:
      - at: 0s
        bound: {accuracy: 0.99}
      - at: 1s
        bound: {exit: 1}
        weight: 2
`

func TestRunEndToEnd(t *testing.T) {
	url := startAgent(t)
	s, err := sim.ParseScenario([]byte(shortScenario), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var snaps []sim.Snapshot
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := sim.Run(ctx, s, sim.RunOptions{BrokerURL: url, Timeout: 5 * time.Second,
		Progress: func(s sim.Snapshot) { snaps = append(snaps, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 || len(rep.Runs[0].Tenants) != 2 {
		t.Fatalf("report has %d runs", len(rep.Runs))
	}
	run := rep.Runs[0]
	total := 0
	for _, ts := range run.Tenants {
		if ts.Sent != ts.Scheduled || ts.Answered+ts.Lost != ts.Sent {
			t.Errorf("%s: scheduled %d, sent %d, answered %d, lost %d: not every request accounted for",
				ts.Tenant, ts.Scheduled, ts.Sent, ts.Answered, ts.Lost)
		}
		if ts.Lost != 0 || ts.Statuses["error"] != 0 {
			t.Errorf("%s: lost %d, statuses %v, errors %v, warnings %v", ts.Tenant, ts.Lost, ts.Statuses, ts.Errors, run.Warnings)
		}
		if ts.Accuracy == nil || *ts.Accuracy < 0.9 {
			t.Errorf("%s: accuracy %v on MNIST, want ≥ 0.9", ts.Tenant, ts.Accuracy)
		}
		if ts.LatencyMS.Count != ts.Answered || ts.LatencyMS.P50 <= 0 || ts.LatencyMS.P99 < ts.LatencyMS.P50 {
			t.Errorf("%s: latency %+v", ts.Tenant, ts.LatencyMS)
		}
		total += ts.Sent
	}
	cam, flow := run.Tenants[0], run.Tenants[1]
	if cam.Sent != 50 {
		t.Errorf("camera: constant 20/s over 2.5 s sent %d, want 50", cam.Sent)
	}
	if cam.DeadlineMet == nil || cam.SLOMS == nil || *cam.SLOMS != 50 {
		t.Errorf("camera: deadline %v, slo %v", cam.DeadlineMet, cam.SLOMS)
	}
	if flow.DeadlineMet != nil {
		t.Errorf("flow has no latency bound, yet deadline_met is %v", *flow.DeadlineMet)
	}
	// The control at 1 s switched flow to exit 1; before it the accuracy
	// bound (0.99: with its margin, above what mnist-ee's calibration
	// split allows a cascade) runs the full model.
	if len(flow.Exits) < 2 || flow.Exits[0] == 0 || flow.Exits[0] == flow.Answered {
		t.Errorf("flow exits %v: want exit 1 after the control at 1 s and deeper exits before", flow.Exits)
	}
	if len(run.Controls) != 4 { // two resets, flow's control at 0 s, flow's at 1 s
		t.Errorf("controls %+v", run.Controls)
	}
	for _, c := range run.Controls {
		if c.Result != "applied" {
			t.Errorf("control %s at %gs: %s %s", c.Tenant, c.AtS, c.Result, c.Error)
		}
	}
	if len(snaps) == 0 || !snaps[len(snaps)-1].Done || snaps[len(snaps)-1].Answered != total {
		t.Errorf("progress: %d snapshots, last %+v", len(snaps), snaps[len(snaps)-1])
	}
	if len(cam.Series) != 3 || cam.Series[0].Sent+cam.Series[1].Sent+cam.Series[2].Sent != cam.Sent {
		t.Errorf("camera series %+v", cam.Series)
	}
	if got := rep.Machine.Models; len(got) == 0 || got[0] != "mnist-ee" {
		t.Errorf("machine models %v", got)
	}

	out := filepath.Join(t.TempDir(), "out")
	if err := rep.WriteFiles(out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, sim.FileReport))
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Scenario struct {
			Name     string `json:"name"`
			Duration string `json:"duration"`
		} `json:"scenario"`
		Machine struct {
			GOARCH string `json:"goarch"`
			CPUs   int    `json:"cpus"`
		} `json:"machine"`
		Runs []struct {
			Tenants []struct {
				Tenant string            `json:"tenant"`
				Sent   int               `json:"sent"`
				Series []json.RawMessage `json:"series"`
			} `json:"tenants"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b, &parsed); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if parsed.Scenario.Name != "short" || parsed.Scenario.Duration != "2.5s" || parsed.Machine.GOARCH == "" || parsed.Machine.CPUs < 1 ||
		len(parsed.Runs) != 1 || parsed.Runs[0].Tenants[1].Sent != flow.Sent || len(parsed.Runs[0].Tenants[1].Series) != 3 {
		t.Errorf("report.json: %s", b[:min(len(b), 400)])
	}

	f, err := os.Open(filepath.Join(out, sim.FileRequests))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != total+1 || rows[0][0] != "tenant" || rows[0][4] != "latency_ms" {
		t.Fatalf("requests.csv: %d rows for %d requests; header %v", len(rows), total, rows[0])
	}
	ids := map[string]bool{}
	for _, r := range rows[1:] {
		if r[5] != "ok" && r[5] != "late" {
			t.Errorf("request row %v", r)
		}
		ids[r[0]+"/"+r[1]] = true
	}
	if len(ids) != total {
		t.Errorf("requests.csv has %d distinct requests, want %d", len(ids), total)
	}

	for _, name := range []string{sim.FileLatencyCDF, sim.FileExits, sim.FileSLO, sim.FileEnergy} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := img.Bounds(); r.Dx() < 300 || r.Dy() < 200 {
			t.Errorf("%s is %v", name, r)
		}
	}
}

// A cancelled run stops sending and still accounts for what was sent.
func TestRunCancelled(t *testing.T) {
	url := startAgent(t)
	s, err := sim.ParseScenario([]byte("name: long\nduration: 1h\ntenants:\n  - name: cam\n    arrival: {process: constant, rate: 50}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep, err := sim.Run(ctx, s, sim.RunOptions{BrokerURL: url, Progress: func(s sim.Snapshot) {
		if s.Answered > 0 {
			cancel()
		}
	}})
	if err != context.Canceled {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	ts := rep.Runs[0].Tenants[0]
	if ts.Sent == 0 || ts.Sent >= ts.Scheduled || ts.Answered+ts.Lost != ts.Sent || len(rep.Runs[0].Requests) != ts.Sent+ts.SendErrors {
		t.Fatalf("cancelled run: scheduled %d, sent %d, answered %d, lost %d, records %d",
			ts.Scheduled, ts.Sent, ts.Answered, ts.Lost, len(rep.Runs[0].Requests))
	}
}
