package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// configured finds the command of args in a fresh root, parses its flags
// and runs configure, as the root's PersistentPreRunE does.
func configured(t *testing.T, args ...string) (*cobra.Command, *globals, error) {
	t.Helper()
	cmd, rest, err := newRoot().Find(args)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	g := &globals{}
	return cmd, g, configure(cmd, g)
}

// value is the value flag has after configuring the command of args.
func value(t *testing.T, flag string, args ...string) string {
	t.Helper()
	cmd, _, err := configured(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return lookup(cmd, flag).Value.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestShippedConfigLoads(t *testing.T) {
	_, g, err := configured(t, "serve", "--config", "../../delen.yaml")
	if err != nil {
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
	if g.sources["queue-limit"] != fromFile {
		t.Errorf("queue-limit came from %q, want the file", g.sources["queue-limit"])
	}
}

// testValue is a valid value of f other than its default, and how the flag
// prints it once set.
func testValue(t *testing.T, f *pflag.Flag) (set, shown string) {
	t.Helper()
	if c, ok := f.Value.(*choiceValue); ok {
		for _, v := range c.choices {
			if v != f.DefValue {
				return v, v
			}
		}
	}
	switch typ := f.Value.Type(); typ {
	case "string":
		return "x-" + f.Name, "x-" + f.Name
	case "bool":
		if f.DefValue == "true" {
			return "false", "false"
		}
		return "true", "true"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "7", "7"
	case "float32", "float64":
		return "2.5", "2.5"
	case "duration":
		return "90s", "1m30s"
	case "stringSlice", "stringArray":
		return "a,b", "[a,b]"
	default:
		t.Fatalf("--%s: no test value for a flag of type %s: add one here", f.Name, typ)
		return "", ""
	}
}

// Every flag of `delen serve` (the global ones included) reads its DELEN_*
// variable and is a key of the file, whatever its type: flags added later
// are covered without a change here.
func TestEveryServeFlagReadsItsVariableAndTheFile(t *testing.T) {
	cmd, _, err := configured(t, "serve")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flags(cmd) {
		if f.Name == "config" || f.Name == "help" {
			continue
		}
		set, shown := testValue(t, f)
		t.Run(f.Name+"/variable", func(t *testing.T) {
			t.Setenv(envName(f.Name), set)
			if v := value(t, f.Name, "serve"); v != shown {
				t.Errorf("%s=%s: --%s is %q, want %q", envName(f.Name), set, f.Name, v, shown)
			}
		})
		if !fileKey(f) {
			continue
		}
		t.Run(f.Name+"/file", func(t *testing.T) {
			path := writeConfig(t, fmt.Sprintf("%s: %q\n", f.Name, set))
			if v := value(t, f.Name, "serve", "--config", path); v != shown {
				t.Errorf("file %s: %s: --%s is %q, want %q", path, set, f.Name, v, shown)
			}
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, "workers: 3\nqueue-limit: 50\nhttp: 127.0.0.1:9999\npprof: true\nwatts: 4.5\ninfeasible: shed\nlog-level: warn\n")
	cases := []struct {
		name string
		env  map[string]string
		args []string
		flag string
		want string
	}{
		{"int default", nil, nil, "workers", "0"},
		{"int file", nil, []string{"--config", path}, "workers", "3"},
		{"int variable", map[string]string{"DELEN_WORKERS": "1"}, nil, "workers", "1"},
		{"int variable over file", map[string]string{"DELEN_QUEUE_LIMIT": "9"}, []string{"--config", path}, "queue-limit", "9"},
		{"int flag over variable and file", map[string]string{"DELEN_QUEUE_LIMIT": "9"}, []string{"--config", path, "--queue-limit", "12"}, "queue-limit", "12"},
		{"string file", nil, []string{"--config", path}, "http", "127.0.0.1:9999"},
		{"string variable over file", map[string]string{"DELEN_HTTP": "127.0.0.1:7777"}, []string{"--config", path}, "http", "127.0.0.1:7777"},
		{"string flag over variable", map[string]string{"DELEN_HTTP": "127.0.0.1:7777"}, []string{"--http", ""}, "http", ""},
		{"bool file", nil, []string{"--config", path}, "pprof", "true"},
		{"bool variable over file", map[string]string{"DELEN_PPROF": "false"}, []string{"--config", path}, "pprof", "false"},
		{"bool flag over variable", map[string]string{"DELEN_PPROF": "true"}, []string{"--pprof=false"}, "pprof", "false"},
		{"float variable over file", map[string]string{"DELEN_WATTS": "7.5"}, []string{"--config", path}, "watts", "7.5"},
		{"choice file", nil, []string{"--config", path}, "infeasible", "shed"},
		{"choice variable over file", map[string]string{"DELEN_INFEASIBLE": "late"}, []string{"--config", path}, "infeasible", "late"},
		{"choice variable", map[string]string{"DELEN_INFEASIBLE": "shed"}, nil, "infeasible", "shed"},
		{"global flag variable over file", map[string]string{"DELEN_LOG_LEVEL": "debug"}, []string{"--config", path}, "log-level", "debug"},
		{"global flag over variable", map[string]string{"DELEN_LOG_LEVEL": "debug"}, []string{"--config", path, "--log-level", "error"}, "log-level", "error"},
		{"config from its variable", map[string]string{"DELEN_CONFIG": path}, nil, "workers", "3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			if v := value(t, c.flag, append([]string{"serve"}, c.args...)...); v != c.want {
				t.Errorf("--%s is %q, want %q", c.flag, v, c.want)
			}
		})
	}
}

// The other commands' flags that name the agent's connection read the
// same variables as serve's.
func TestOtherCommandsVariables(t *testing.T) {
	cases := []struct {
		cmd        []string
		env, value string
		flag       string
	}{
		{[]string{"send"}, "DELEN_BROKER", "tcp://10.0.0.1:1883", "broker"},
		{[]string{"send"}, "DELEN_PREFIX", "site1", "prefix"},
		{[]string{"send"}, "DELEN_MQTT_PASSWORD", "pw", "password"},
		{[]string{"send"}, "DELEN_MQTT_USER", "cam1", "username"},
		{[]string{"history"}, "DELEN_HTTP", "127.0.0.1:9", "http"},
		{[]string{"sim"}, "DELEN_PREFIX", "site1", "prefix"},
		{[]string{"profile"}, "DELEN_METER", "model", "meter"},
		{[]string{"models", "list"}, "DELEN_DATA", "/tmp/x", "data"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.cmd, " ")+" "+c.env, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			if v := value(t, c.flag, c.cmd...); v != c.value {
				t.Errorf("--%s is %q, want %q", c.flag, v, c.value)
			}
		})
	}
}

func TestBadVariableStopsTheStart(t *testing.T) {
	cases := []struct {
		env, value string
		want       []string
	}{
		{"DELEN_WORKERS", "x", []string{`DELEN_WORKERS="x"`, "want an integer", "--workers"}},
		{"DELEN_INFEASIBLE", "bogus", []string{`DELEN_INFEASIBLE="bogus"`, "want one of late, shed"}},
		{"DELEN_PPROF", "maybe", []string{"DELEN_PPROF", "true or false"}},
		{"DELEN_WATTS", "lots", []string{"DELEN_WATTS", "a number"}},
		{"DELEN_LOG_FORMAT", "xml", []string{"DELEN_LOG_FORMAT", "one of text, json"}},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			_, _, err := configured(t, "serve")
			if err == nil {
				t.Fatalf("%s=%s accepted", c.env, c.value)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "strconv") {
				t.Errorf("error %q leaks the parser's message", err)
			}
		})
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
		not        []string
	}{
		{"unknown key", "wokers: 2\n", []string{`unknown key "wokers"`, "workers", "queue-limit", tenantDefaultsKey}, []string{"agent-password", "config,", "help"}},
		{"wrong kind", "workers: two\n", []string{`workers: "two": want an integer`}, []string{"strconv", "invalid syntax"}},
		{"wrong bool", "pprof: sometimes\n", []string{`pprof: "sometimes": want true or false`}, []string{"strconv"}},
		{"wrong choice", "infeasible: bogus\n", []string{`infeasible: "bogus": want one of late, shed`}, nil},
		{"secret in the file", "agent-password: hunter2\n", []string{"agent-password", "stays out of the file", "DELEN_AGENT_PASSWORD"}, []string{"hunter2"}},
		{"map for a flag", "listen: {host: x}\n", []string{"listen", "single value"}, nil},
		{"bad tenant name", "tenant-defaults:\n  Bad_Name: {weight: 2}\n", []string{"tenant-defaults.Bad_Name"}, nil},
		{"bad tenant bound", "tenant-defaults:\n  cam1: {bound: {accuracy: 7}}\n", []string{"tenant-defaults.cam1", "accuracy"}, nil},
		{"not yaml", "workers: [\n", []string{"c.yaml"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := configured(t, "serve", "--config", writeConfig(t, c.body))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, w := range c.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}
}

// The unknown-key message lists every key once.
func TestUnknownKeyListsEachKeyOnce(t *testing.T) {
	cmd, _, err := configured(t, "serve", "--config", writeConfig(t, "wokers: 2\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	_, list, _ := strings.Cut(err.Error(), ": ")
	for _, f := range flags(cmd) {
		if !fileKey(f) {
			continue
		}
		if n := strings.Count(list, " "+f.Name+","); n > 1 {
			t.Errorf("key %s listed %d times in %q", f.Name, n, err)
		}
		if !strings.Contains(list, " "+f.Name+",") && !strings.Contains(list, " "+f.Name+";") {
			t.Errorf("key %s not listed in %q", f.Name, err)
		}
	}
}

func TestSentAtPlausibilityFromConfig(t *testing.T) {
	path := writeConfig(t, "sent-at-future: 200ms\nsent-at-max-age: 5s\n")
	for flag, want := range map[string]string{"sent-at-future": "200ms", "sent-at-max-age": "5s"} {
		if v := value(t, flag, "serve", "--config", path); v != want {
			t.Errorf("%s from the file: %s, want %s", flag, v, want)
		}
	}
	if v := value(t, "sent-at-max-age", "serve", "--config", "../../delen.yaml"); v != "1m0s" {
		t.Errorf("shipped config: sent-at-max-age %s, want 1m0s", v)
	}
}
