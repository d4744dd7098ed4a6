package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// run executes the CLI in-process and returns what it printed on stdout.
func run(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("delen %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

type inspected struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Exits   []struct {
		Exit      int      `json:"exit"`
		Accuracy  float64  `json:"accuracy"`
		FLOPs     float64  `json:"flops"`
		EnergyMJ  *float64 `json:"energy_mj"`
		LatencyMS *struct {
			P50, P95, P99 float64
		} `json:"latency_ms"`
	} `json:"exits"`
}

func TestInspectBeforeAndAfterProfile(t *testing.T) {
	data := t.TempDir()
	var before inspected
	if err := json.Unmarshal([]byte(run(t, "models", "inspect", "mnist-ee", "--json", "--data", data)), &before); err != nil {
		t.Fatal(err)
	}
	if before.Name != "mnist-ee" || before.Version == "" || len(before.Exits) != 3 {
		t.Fatalf("inspect: %+v", before)
	}
	for i, e := range before.Exits {
		if e.Exit != i+1 || e.Accuracy < 0.9 || e.FLOPs <= 0 || e.LatencyMS != nil {
			t.Fatalf("exit %d before profiling: %+v", i+1, e)
		}
	}
	run(t, "profile", "mnist-ee", "--json", "--runs", "200", "--warmup", "5", "--meter", "model", "--data", data)
	var after inspected
	if err := json.Unmarshal([]byte(run(t, "models", "inspect", "mnist-ee", "--json", "--data", data)), &after); err != nil {
		t.Fatal(err)
	}
	prev := 0.0
	for i, e := range after.Exits {
		if e.LatencyMS == nil || e.EnergyMJ == nil {
			t.Fatalf("exit %d after profiling has no latency or energy", i+1)
		}
		if e.LatencyMS.P50 <= 0 || e.LatencyMS.P95 < e.LatencyMS.P50 || e.LatencyMS.P99 < e.LatencyMS.P95 {
			t.Errorf("exit %d latency quantiles %+v", i+1, *e.LatencyMS)
		}
		if *e.EnergyMJ <= prev {
			t.Errorf("exit %d cumulative energy %.4f does not grow", i+1, *e.EnergyMJ)
		}
		prev = *e.EnergyMJ
	}
}

func TestListJSON(t *testing.T) {
	var list []modelSummary
	if err := json.Unmarshal([]byte(run(t, "models", "list", "--json", "--data", t.TempDir())), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 || list[0].Name != "mnist-ee" || list[0].Source != "builtin" {
		t.Fatalf("list: %+v", list)
	}
}

func TestBenchExecutorJSON(t *testing.T) {
	var r struct {
		StagedMS float64 `json:"staged_median_ms"`
		MonoMS   float64 `json:"monolithic_median_ms"`
		Ratio    float64 `json:"ratio"`
	}
	out := run(t, "bench", "executor", "--json", "--reps", "20", "--warmup", "2", "--data", t.TempDir())
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.StagedMS <= 0 || r.MonoMS <= 0 || r.Ratio <= 0 {
		t.Fatalf("bench executor: %s", out)
	}
}
