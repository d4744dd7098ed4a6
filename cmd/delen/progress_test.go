package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Progress lines are for terminals: piped or captured output of bench,
// sim and profile has no carriage returns or terminal escapes, and the
// results are still printed.
func TestNoProgressEscapesOffATerminal(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(scenario, []byte("name: p\nduration: 500ms\nseed: 1\ntenants:\n  - name: cam\n    arrival: {process: constant, rate: 10}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string // on stdout
	}{
		{"bench executor", []string{"bench", "executor", "--reps", "20", "--warmup", "2", "--data", dir}, "RATIO"},
		{"bench overhead", []string{"bench", "overhead", "--n", "20"}, "ratio"},
		{"sim", []string{"sim", "--scenario", scenario, "--out", filepath.Join(dir, "out"), "--data", filepath.Join(dir, "data")}, "cam"},
		{"profile", []string{"profile", "mnist-ee", "--runs", "20", "--warmup", "2", "--meter", "model", "--data", filepath.Join(dir, "prof")}, "EXIT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := newRoot()
			root.SetArgs(c.args)
			root.SetOut(&out)
			root.SetErr(&errOut)
			if err := root.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("%v\n%s", err, errOut.String())
			}
			for _, s := range []string{out.String(), errOut.String()} {
				if strings.ContainsAny(s, "\r\x1b") {
					t.Errorf("output carries terminal control characters: %q", s)
				}
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("stdout %q lacks %q", out.String(), c.want)
			}
		})
	}
}
