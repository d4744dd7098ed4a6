// Package grafana holds the Grafana dashboard of the agent's metrics and
// tests it against a live agent: the metrics follow Prometheus' naming
// conventions (promtool check metrics), and every query of the dashboard,
// evaluated by a real Prometheus that scrapes the agent under load,
// returns data.
package grafana

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/schema"
)

// need finds a program, failing in CI (where `make setup` installs it)
// and skipping elsewhere.
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (make setup installs it)", prog)
		}
		t.Skipf("%s not found", prog)
	}
	return p
}

// liveAgent is an in-process agent on an embedded broker with its
// /metrics on a loopback HTTP server, and a tenant sending it requests.
type liveAgent struct {
	metricsURL string
	tenant     *broker.Client
	results    chan struct{}
}

func startAgent(t *testing.T) *liveAgent {
	t.Helper()
	if os.Getenv("DELEN_ORT_LIB") == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("DELEN_ORT_LIB is not set")
		}
		t.Skip("DELEN_ORT_LIB is not set")
	}
	emb := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	st, err := store.Open(filepath.Join(t.TempDir(), "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, agent.Config{BrokerURL: emb.Addr(), Store: st, AgentID: "grafana-test", ProfileRuns: 20,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	srv := httptest.NewServer(a.Metrics().Handler())
	t.Cleanup(func() { srv.Close(); cancel(); <-done; st.Close() })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := a.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	c, err := broker.Dial(wctx, broker.ClientConfig{URL: emb.Addr(), ClientID: "grafana-test-tenant", CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	la := &liveAgent{metricsURL: srv.URL + "/metrics", tenant: c, results: make(chan struct{}, 1<<16)}
	var topics schema.Topics
	if err := c.Subscribe(topics.Results("cam"), 1, func(m broker.Message) {
		m.Ack()
		la.results <- struct{}{}
	}); err != nil {
		t.Fatal(err)
	}
	return la
}

// send publishes one request of every kind the dashboard shows: served
// ones at exits 1..3, one whose latency bound cannot hold (a bound miss),
// one malformed (an error), and one on a topic no tenant can have (a
// dropped message). It returns how many results to expect.
func (la *liveAgent) send(t *testing.T, round int) int {
	t.Helper()
	test, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	var topics schema.Topics
	var payloads [][]byte
	for k := 1; k <= 3; k++ {
		i := (round*3 + k) % test.Len()
		req := &schema.Request{ID: fmt.Sprintf("r%d-exit%d", round, k), Input: schema.NewUint8Tensor([]int{1, 28, 28}, test.Images[i]),
			Bound: schema.Bound{Exit: &k}}
		p, err := schema.EncodeRequest(req, schema.MsgPack)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, p)
	}
	tight := 1e-6
	req := &schema.Request{ID: fmt.Sprintf("r%d-tight", round), Input: schema.NewUint8Tensor([]int{1, 28, 28}, test.Images[round%test.Len()]),
		Bound: schema.Bound{LatencyMS: &tight}}
	p, err := schema.EncodeRequest(req, schema.MsgPack)
	if err != nil {
		t.Fatal(err)
	}
	payloads = append(payloads, p, []byte(`{"id":"bad-`+fmt.Sprint(round)+`","input":{}}`))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := la.tenant.Publish(ctx, "delen/Not A Tenant/requests", 1, false, payloads[0]); err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		if err := la.tenant.Publish(ctx, topics.Requests("cam"), 1, false, p); err != nil {
			t.Fatal(err)
		}
	}
	return len(payloads)
}

// wait waits for n results.
func (la *liveAgent) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for range n {
		select {
		case <-la.results:
		case <-timeout.C:
			t.Fatal("results missing after 30 s")
		}
	}
}

func get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", u, resp.Status, b)
	}
	return b
}

// sample is the value of the unlabelled series name in a /metrics body.
func sample(body []byte, name string) (float64, bool) {
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// TestMetricsFollowPrometheusConventions runs promtool check metrics on
// the /metrics of an agent that has served every kind of result, so that
// every series family has samples: promtool must find nothing to say. The
// history log's gauges show the history written: as many records as
// delen_history_written_total (no trim, no expiry yet), in segment files
// of some bytes.
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	promtool := need(t, "promtool")
	la := startAgent(t)
	la.wait(t, la.send(t, 0))
	// The dropped message has no result to wait for, and history is
	// written in batches every 200 ms: poll until both show.
	var body []byte
	var missing []string
	var history string
	for deadline := time.Now().Add(10 * time.Second); ; {
		body, missing = get(t, la.metricsURL), nil
		for _, name := range []string{"delen_requests_total", "delen_exits_total", "delen_energy_joules_total",
			"delen_bound_misses_total", "delen_dropped_total", "delen_stage_seconds_bucket"} {
			if !bytes.Contains(body, []byte("\n"+name+"{")) {
				missing = append(missing, name)
			}
		}
		written, _ := sample(body, "delen_history_written_total")
		records, _ := sample(body, "delen_history_records")
		segments, _ := sample(body, "delen_history_log_segments")
		size, _ := sample(body, "delen_history_log_bytes")
		history = ""
		if written == 0 || records != written || segments < 1 || size <= 0 {
			history = fmt.Sprintf("delen_history_written_total %v, delen_history_records %v, delen_history_log_segments %v, delen_history_log_bytes %v",
				written, records, segments, size)
		}
		if (len(missing) == 0 && history == "") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling /metrics
	}
	if len(missing) > 0 {
		t.Errorf("/metrics has no samples of %v", missing)
	}
	if history != "" {
		t.Errorf("the history log's gauges do not show the history written: %s", history)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// dashboardQueries reads every target expression of the dashboard.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("delen-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("delen-dashboard.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return exprs
}

// freeAddr is a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPrometheus runs a real Prometheus scraping target every second and
// returns its HTTP API's base URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin := need(t, "prometheus")
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: delen\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var log bytes.Buffer
	var logMu sync.Mutex
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = lockedWriter{&log, &logMu}, lockedWriter{&log, &logMu}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			logMu.Lock()
			t.Logf("prometheus log:\n%s", log.String())
			logMu.Unlock()
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %v", cmd.ProcessState)
		case <-time.After(200 * time.Millisecond): // polling readiness
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready after 60 s")
		}
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// query evaluates expr through Prometheus' HTTP API and returns how many
// series the result has.
func query(t *testing.T, base, expr string) int {
	t.Helper()
	b := get(t, base+"/api/v1/query?query="+url.QueryEscape(expr))
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("query %s: %v\n%s", expr, err, b)
	}
	if r.Status != "success" {
		t.Fatalf("query %s: %s %s", expr, r.Status, r.Error)
	}
	if r.Data.ResultType != "vector" {
		t.Fatalf("query %s: result type %s, want vector", expr, r.Data.ResultType)
	}
	return len(r.Data.Result)
}

// TestDashboardQueriesReturnData runs a real Prometheus scraping an agent
// under load and evaluates every query of delen-dashboard.json through its
// HTTP API: each must return at least one series (a panel that shows "no
// data" on a busy agent queries a metric that does not exist, or under a
// wrong name).
func TestDashboardQueriesReturnData(t *testing.T) {
	exprs := dashboardQueries(t)
	la := startAgent(t)
	u, err := url.Parse(la.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	base := startPrometheus(t, u.Host)

	// Load until every query has data, or a minute has passed.
	pending := map[string]bool{}
	for _, e := range exprs {
		pending[e] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	for round := 0; len(pending) > 0 && time.Now().Before(deadline); round++ {
		la.wait(t, la.send(t, round))
		for _, e := range exprs {
			if pending[e] && query(t, base, e) > 0 {
				delete(pending, e)
			}
		}
	}
	for _, e := range exprs {
		if pending[e] {
			t.Errorf("dashboard query returned no data: %s", e)
		}
	}
	if n := query(t, base, `up{job="delen"} == 1`); n != 1 {
		t.Errorf("prometheus scraped %d live agents, want 1", n)
	}
	t.Logf("%d dashboard queries evaluated by prometheus, %d without data", len(exprs), len(pending))
	if len(pending) > 0 {
		t.Log(strings.Join(exprs, "\n"))
	}
}
