package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delen-edge/delen/sim"
)

func TestSimInProcessAgent(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "s.yaml")
	yml := "name: cli\nduration: 1500ms\nseed: 1\ntenants:\n" +
		"  - name: cam\n    arrival: {process: constant, rate: 20}\n    bound: {latency_ms: 50}\n" +
		"  - name: flow\n    encoding: json\n    arrival: {process: poisson, rate: 10}\n    bound: {exit: 1}\n"
	if err := os.WriteFile(scenario, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	got := run(t, "sim", "--scenario", scenario, "--out", out, "--data", filepath.Join(dir, "data"), "--json")
	var rep sim.Report
	if err := json.Unmarshal([]byte(got), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, got)
	}
	if len(rep.Runs) != 1 || len(rep.Runs[0].Tenants) != 2 {
		t.Fatalf("report: %+v", rep)
	}
	for _, ts := range rep.Runs[0].Tenants {
		if ts.Sent == 0 || ts.Answered != ts.Sent || ts.Lost != 0 {
			t.Errorf("%s: sent %d, answered %d, lost %d", ts.Tenant, ts.Sent, ts.Answered, ts.Lost)
		}
	}
	if cam := rep.Runs[0].Tenants[0]; cam.Sent != 30 {
		t.Errorf("cam sent %d, want 30 (20/s for 1.5 s)", cam.Sent)
	}
	if flow := rep.Runs[0].Tenants[1]; len(flow.Exits) != 1 {
		t.Errorf("flow asked for exit 1 and got exits %v", flow.Exits)
	}
	for _, f := range []string{sim.FileReport, sim.FileRequests, sim.FileLatencyCDF, sim.FileExits, sim.FileSLO, sim.FileEnergy} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestSimNeedsReplicaHint(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "s.yaml")
	yml := "name: r\nduration: 1s\ntenants:\n  - name: cam\n    model: resnet50-nano\n    input: {source: random}\n    arrival: {process: constant, rate: 1}\n"
	if err := os.WriteFile(scenario, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	root.SetArgs([]string{"sim", "--scenario", scenario, "--data", filepath.Join(dir, "data"), "--out", filepath.Join(dir, "out")})
	var errOut bytes.Buffer
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&errOut)
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "delen models gen-replica resnet50-nano") {
		t.Fatalf("want a hint to generate the replica, got %v", err)
	}
}

func TestSimBadScenario(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "s.yaml")
	os.WriteFile(scenario, []byte("name: r\nduration: 1s\ntenants:\n  - name: cam\n    arrival: {process: poisson}\n"), 0o644)
	root := newRoot()
	root.SetArgs([]string{"sim", "--scenario", scenario})
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "tenants[0].arrival.rate") {
		t.Fatalf("want the bad key named, got %v", err)
	}
}
