package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/schema"
)

// servedAgent is a `delen serve` running in-process for a test.
type servedAgent struct {
	broker, http, data string
}

// startServe runs `delen serve` in-process on free loopback ports with its
// data in data (a new folder when empty) and returns once it is ready; it
// stops when the test ends.
func startServe(t *testing.T, data string, args ...string) servedAgent {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	ready := make(chan servedAgent, 1)
	g := &globals{onReady: func(b, h string) { ready <- servedAgent{b, h, data} }}
	root := newRootWith(g)
	var errOut bytes.Buffer
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data", data,
		"--meter", "model", "--log-level", "warn",
		// GOMAXPROCS is the test process's, shared by parallel tests.
		"--tune-procs=false"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a
	case err := <-done:
		t.Fatalf("serve stopped: %v\n%s", err, errOut.String())
	}
	panic("unreachable")
}

// runErr executes the CLI in-process and returns stdout and its error.
func runErr(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// send's table rounds the top-k probabilities, and --json carries the label
// the table shows.
func TestSendOutput(t *testing.T) {
	a := startServe(t, "")
	out := run(t, "send", "--broker", a.broker, "--tenant", "cam1", "--mnist", "0")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("send printed %q", out)
	}
	header, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	col := func(name string) string {
		for i, h := range header {
			if h == name && i < len(row) {
				return row[i]
			}
		}
		t.Fatalf("no column %s in %q", name, out)
		return ""
	}
	if top := col("TOP"); !regexp.MustCompile(`^\d+:[01]\.\d{3}(,\d+:[01]\.\d{3})*$`).MatchString(top) {
		t.Errorf("TOP %q: want class:probability with 3 decimals", top)
	}
	if l := col("LABEL"); l != "7" {
		t.Errorf("LABEL %s, want 7 (MNIST test image 0)", l)
	}

	var res struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Class  *int   `json:"class"`
		Label  *int   `json:"label"`
	}
	if err := json.Unmarshal([]byte(run(t, "send", "--broker", a.broker, "--tenant", "cam1", "--mnist", "0", "--json", "--id", "j1")), &res); err != nil {
		t.Fatal(err)
	}
	if res.ID != "j1" || res.Status != schema.StatusOK || res.Class == nil || res.Label == nil || *res.Label != 7 {
		t.Fatalf("send --json: %+v", res)
	}

	// The README's --image example: the shipped PNG of the same digit.
	res.Class = nil
	if err := json.Unmarshal([]byte(run(t, "send", "--broker", a.broker, "--tenant", "cam1", "--image", "../../deploy/clients/mnist-7.png", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.Status != schema.StatusOK || res.Class == nil || *res.Class != 7 {
		t.Fatalf("send --image mnist-7.png: %+v", res)
	}
}

// `delen models inspect` reads the profile the running agent holds (its
// store is locked by the agent) through the agent's HTTP endpoint.
func TestInspectWhileServing(t *testing.T) {
	a := startServe(t, "") // profiles mnist-ee on its first start
	var v inspected
	out, err := runErr("models", "inspect", "mnist-ee", "--json", "--data", a.data, "--http", a.http)
	if err != nil {
		t.Fatalf("inspect while serving: %v", err)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Exits) != 3 {
		t.Fatalf("inspect: %+v", v)
	}
	for _, e := range v.Exits {
		if e.LatencyMS == nil || e.EnergyMJ == nil {
			t.Errorf("exit %d: no profile figures while serving", e.Exit)
		}
	}
}

// An explicit --data decides which store is read, even while an agent with
// another data folder answers on --http.
func TestExplicitDataBeatsTheRunningAgent(t *testing.T) {
	a := startServe(t, "") // profiled mnist-ee into its own store
	other := t.TempDir()
	var v inspected
	if err := json.Unmarshal([]byte(run(t, "models", "inspect", "mnist-ee", "--json", "--data", other, "--http", a.http)), &v); err != nil {
		t.Fatal(err)
	}
	for _, e := range v.Exits {
		if e.LatencyMS != nil {
			t.Fatalf("inspect --data %s showed the running agent's profile", other)
		}
	}
	if _, err := runErr("history", "--json", "--data", other, "--http", a.http); err == nil || !strings.Contains(err.Error(), "no store") {
		t.Errorf("history --data with no store there: %v, want no store", err)
	}
}

// `delen profile` while the agent holds the store says so at once, before
// measuring anything.
func TestProfileWhileServing(t *testing.T) {
	a := startServe(t, "")
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetArgs([]string{"profile", "mnist-ee", "--meter", "model", "--data", a.data})
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "stop the running agent first") {
		t.Fatalf("profile while serving: %v", err)
	}
	if strings.Contains(errOut.String(), "profiling") {
		t.Errorf("measured before finding the store in use:\n%s", errOut.String())
	}
}

// `delen history --limit 3` gives the newest three, through the agent and
// from the store once it stopped.
func TestHistoryLimitNewest(t *testing.T) {
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	var recs []store.Record
	for i := range 6 {
		id := fmt.Sprintf("r%d", i)
		recs = append(recs, store.Record{Tenant: "cam1", ID: id, At: t0.Add(time.Duration(i) * time.Second),
			Result: &schema.Result{Tenant: "cam1", ID: id, Status: schema.StatusOK}})
	}
	if err := st.AppendHistory(recs, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ids := func(out string) string {
		var got []store.Record
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var s []string
		for _, r := range got {
			s = append(s, r.ID)
		}
		return strings.Join(s, ",")
	}
	closed := freeAddr(t)
	if got := ids(run(t, "history", "--tenant", "cam1", "--limit", "3", "--json", "--data", data, "--http", closed)); got != "r3,r4,r5" {
		t.Errorf("from the store: %s, want r3,r4,r5", got)
	}
	a := startServe(t, data)
	if got := ids(run(t, "history", "--tenant", "cam1", "--limit", "3", "--json", "--http", a.http)); got != "r3,r4,r5" {
		t.Errorf("through the agent: %s, want r3,r4,r5", got)
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A refused connection and refused credentials end `delen send` at once
// (not at --timeout) with one line saying which.
func TestSendConnectErrors(t *testing.T) {
	auth := &broker.Authenticator{
		Users: []broker.User{{Name: "cam1", PasswordHash: "plain:right"}},
		ACL:   broker.TenantACL(schema.Topics{}, "delen-agent"),
		VerifyPassword: func(hash, pw []byte) error {
			if string(hash) != "plain:"+string(pw) {
				return errors.New("mismatch")
			}
			return nil
		},
	}
	secured := brokertest.StartEmbedded(t, broker.EmbeddedConfig{Auth: auth})
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"refused", []string{"--broker", "tcp://" + freeAddr(t)}, "connection refused"},
		{"wrong password", []string{"--broker", secured.Addr(), "--password", "wrong"}, `not authorized (user "cam1"`},
		{"no password", []string{"--broker", secured.Addr()}, "not authorized (the broker wants a username and password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A long timeout: a send that waited for it instead of failing
			// at once would end with a deadline error.
			_, err := runErr(append([]string{"send", "--tenant", "cam1", "--mnist", "0", "--timeout", "30s"}, c.args...)...)
			if err == nil {
				t.Fatal("send succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) || strings.Contains(msg, "deadline") || strings.Contains(msg, "\n") || strings.Count(msg, "connect to") > 1 {
				t.Errorf("error %q, want one line with %q", msg, c.want)
			}
		})
	}
}

func init() {
	// The CLI's tests run serve and send with the flags they give, not
	// with the variables of the shell that runs them.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DELEN_") && k != "DELEN_ORT_LIB" && k != "DELEN_MNIST_DIR" {
			os.Unsetenv(k)
		}
	}
}
