package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveCmd returns the serve command of a fresh root, with args parsed.
func serveCmd(t *testing.T, args ...string) (*globals, func() error) {
	t.Helper()
	root := newRoot()
	cmd, rest, err := root.Find(append([]string{"serve"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	g := &globals{}
	return g, func() error { return applyConfigFile(cmd, g) }
}

func value(t *testing.T, args []string, flag string) string {
	t.Helper()
	root := newRoot()
	cmd, rest, _ := root.Find(append([]string{"serve"}, args...))
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(cmd, &globals{}); err != nil {
		t.Fatal(err)
	}
	return lookup(cmd, flag).Value.String()
}

func TestShippedConfigLoads(t *testing.T) {
	g, apply := serveCmd(t, "--config", "../../delen.yaml")
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	if g.config == nil || len(g.config.tenants) != 3 {
		t.Fatalf("tenant defaults: %+v", g.config)
	}
	cam := g.config.tenants["cam1"]
	if cam.Policy != "deadline" || cam.Weight != 2 || cam.Bound.LatencyMS == nil || *cam.Bound.LatencyMS != 30 {
		t.Fatalf("cam1 defaults: %+v", cam)
	}
	if s := g.config.tenants["solar"]; s.Params["joules"] != 5 || s.Infeasible != "shed" || s.RateLimit != 20 {
		t.Fatalf("solar defaults: %+v", s)
	}
	if v := value(t, []string{"--config", "../../delen.yaml"}, "queue-limit"); v != "1024" {
		t.Fatalf("queue-limit from the file: %s", v)
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("workers: 3\nqueue-limit: 50\nhttp: 127.0.0.1:9999\n"), 0o644)
	if v := value(t, []string{"--config", path}, "workers"); v != "3" {
		t.Errorf("file: workers %s, want 3", v)
	}
	if v := value(t, []string{"--config", path, "--workers", "5"}, "workers"); v != "5" {
		t.Errorf("flag over file: workers %s, want 5", v)
	}
	t.Setenv("DELEN_HTTP", "127.0.0.1:7777")
	// The flag's default came from the environment when the command was
	// built; the file must not replace it.
	if v := value(t, []string{"--config", path}, "http"); v != "127.0.0.1:7777" {
		t.Errorf("environment over file: http %s, want 127.0.0.1:7777", v)
	}
	t.Setenv("DELEN_QUEUE_LIMIT", "9")
	if v := value(t, []string{"--config", path}, "queue-limit"); v == "50" {
		t.Errorf("environment over file: queue-limit taken from the file")
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "wokers: 2\n", []string{`unknown key "wokers"`, "workers"}},
		{"wrong kind", "workers: many\n", []string{"workers", "many"}},
		{"map for a flag", "listen: {host: x}\n", []string{"listen", "single value"}},
		{"bad tenant name", "tenant-defaults:\n  Bad_Name: {weight: 2}\n", []string{"tenant-defaults.Bad_Name"}},
		{"bad tenant bound", "tenant-defaults:\n  cam1: {bound: {accuracy: 7}}\n", []string{"tenant-defaults.cam1", "accuracy"}},
		{"not yaml", "workers: [\n", []string{"c.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(c.body), 0o644)
			_, apply := serveCmd(t, "--config", path)
			err := apply()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
