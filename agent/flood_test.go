package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
)

// procStatus reads VmRSS and VmHWM (peak RSS) of this process in bytes;
// zeros where /proc is not available.
func procStatus() (rss, hwm uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseUint(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	return rss, hwm
}

// floodCounter receives a flooding tenant's results: one per request id
// f<i>, counted by status and code, duplicates and strays noted.
type floodCounter struct {
	n          int
	mu         sync.Mutex
	seen       []bool
	answered   int
	dups       int
	strays     []string
	byOutcome  map[string]int // "ok", "late", "error:overloaded", ...
	done       chan struct{}
	doneAt     time.Time
	lastAt     time.Time
	closedOnce sync.Once
}

func (fc *floodCounter) handle(m broker.Message) {
	m.Ack()
	r, _, err := schema.DecodeResult(m.Payload(), 1<<20)
	fc.mu.Lock()
	defer fc.mu.Unlock()
	i := -1
	if err == nil && strings.HasPrefix(r.ID, "f") {
		if v, err := strconv.Atoi(r.ID[1:]); err == nil && v >= 0 && v < fc.n {
			i = v
		}
	}
	if i < 0 {
		fc.strays = append(fc.strays, fmt.Sprintf("%q (%v)", m.Payload(), err))
		return
	}
	if fc.seen[i] {
		fc.dups++
		return
	}
	fc.seen[i] = true
	fc.answered++
	fc.lastAt = time.Now()
	outcome := r.Status
	if r.Error != nil {
		outcome += ":" + r.Error.Code
	}
	fc.byOutcome[outcome]++
	if fc.answered == fc.n {
		fc.closedOnce.Do(func() { fc.doneAt = time.Now(); close(fc.done) })
	}
}

// last is when the latest result came (the zero time before the first).
func (fc *floodCounter) last() time.Time {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.lastAt
}

func (fc *floodCounter) count() int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.answered
}

// TestFloodBoundedResources: one tenant floods the agent with 20,000 small
// requests, as fast as one MQTT client publishes them (QoS 1, 32 in
// flight), against small limits (a queue of 64 per tenant, 16 KiB
// payloads). Every flood request gets exactly one result (served, or
// refused as overloaded); a light tenant that sends one request at a time
// throughout is answered within a latency bound; the heap stays bounded
// under the flood and returns to where it was after it.
func TestFloodBoundedResources(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	const (
		window     = 32 // flood publishes in flight
		queueLimit = 64 // per tenant
		// The light tenant's bound, arrival at the agent to publish of its
		// result: the scheduler puts its one stage ahead of the flood's
		// queue; generous for a shared 2-core machine under -race.
		lightAgentBound = 500 * time.Millisecond
		// Its round trip, which also holds the broker's backlog of flood
		// messages ahead of it on the agent's one connection: answered,
		// not starved.
		lightRTTBound = 10 * time.Second
		heapBound     = 512 << 20 // growth of the peak heap (with garbage) over idle
		settleBound   = 64 << 20  // growth of the heap after the flood, after a GC
	)
	brokerLog := &warnCounter{counts: map[string]int{}}
	url := startEmbedded(t, broker.EmbeddedConfig{Logger: slog.New(brokerLog)}).Addr()
	r := startAgent(t, url, t.TempDir(), func(c *agent.Config) {
		c.QueueLimit = queueLimit
		c.MaxPayload = 16 << 10
	})
	light := newStream(t, url, "light")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc, err := broker.Dial(ctx, broker.ClientConfig{URL: url, ClientID: fmt.Sprintf("flood-%d", time.Now().UnixNano()),
		CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	counter := &floodCounter{n: n, seen: make([]bool, n), byOutcome: map[string]int{}, done: make(chan struct{})}
	if err := fc.Subscribe(schema.Topics{}.Results("flood"), 1, counter.handle); err != nil {
		t.Fatal(err)
	}
	payloads := make([][]byte, n)
	for i := range payloads {
		b, err := schema.EncodeRequest(&schema.Request{ID: fmt.Sprintf("f%d", i), Input: schema.NewUint8Tensor([]int{1, 28, 28}, testSet.Images[i%1000])}, schema.MsgPack)
		if err != nil {
			t.Fatal(err)
		}
		payloads[i] = b
	}

	// Warm up and take the idle figures.
	for i := 0; i < 50; i++ {
		light.publish(goodPayload(t, fmt.Sprintf("warm%d", i), i))
	}
	for i := 0; i < 50; i++ {
		light.next("warm-up")
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	idleHeap, idleG := ms.HeapAlloc, runtime.NumGoroutine()
	idleRSS, idleHWM := procStatus()

	// Sample the heap, goroutines and RSS under the flood.
	var peakHeap, peakRSS uint64
	peakG := 0
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	var stopOnce sync.Once
	stopSampler := func() { stopOnce.Do(func() { close(stopSampling); <-sampled }) }
	defer stopSampler()
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peakHeap = max(peakHeap, m.HeapAlloc)
			peakG = max(peakG, runtime.NumGoroutine())
			rss, _ := procStatus()
			peakRSS = max(peakRSS, rss)
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// The flood: as fast as one client publishes, bounded in time.
	floodStart := time.Now()
	floodCtx, floodCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer floodCancel()
	var next atomic.Int64
	var published atomic.Int64
	var pubErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < window; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || floodCtx.Err() != nil {
					return
				}
				if err := fc.Publish(floodCtx, schema.Topics{}.Requests("flood"), 1, false, payloads[i]); err != nil {
					pubErr.CompareAndSwap(nil, err)
					return
				}
				published.Add(1)
			}
		}()
	}
	publishing := make(chan struct{})
	var publishedIn time.Duration
	go func() { wg.Wait(); publishedIn = time.Since(floodStart); close(publishing) }()

	// The light tenant: one request at a time, every 50 ms, for as long as
	// the flood is being published or answered (at most 3 minutes from the start).
	var rtts []time.Duration
	var worstAgentMS float64
	floodOver := func() bool {
		select {
		case <-counter.done:
			return true
		case <-publishing:
			// Published: over when every result is in, or when none has
			// come for 15 s (lost: reported below).
			return time.Since(counter.last()) > 15*time.Second || time.Since(floodStart) > 3*time.Minute
		default:
			return time.Since(floodStart) > 3*time.Minute
		}
	}
	for k := 0; k == 0 || !floodOver(); k++ {
		id := fmt.Sprintf("light%d", k)
		req := digit(id, k, schema.Bound{Exit: intp(1), LatencyMS: f64(float64(lightAgentBound.Milliseconds()))})
		// No sent_at: the bound is the agent's (from arrival). The flood
		// queues in the broker before the agent, which the round-trip
		// bound below judges.
		req.SentAt = 0
		b, err := schema.EncodeRequest(req, schema.MsgPack)
		if err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		light.publish(b)
		var res *schema.Result
		select {
		case got := <-light.ch:
			res = got.res
		case <-time.After(30 * time.Second):
		}
		if res == nil || res.ID != id {
			body := scrape(t, r.a.Metrics().Handler())
			t.Fatalf("light %d during the flood: no result within 30 s (got %+v); the agent counted %v results for the light tenant, %v for the flood (%d received); broker warnings: %s",
				k, res, metricValue(body, "delen_requests_total", "tenant", "light"), metricValue(body, "delen_requests_total", "tenant", "flood"), counter.count(), brokerLog.String())
		}
		rtt := time.Since(sent)
		rtts = append(rtts, rtt)
		worstAgentMS = max(worstAgentMS, res.LatencyMS)
		if res.Status != schema.StatusOK || res.Exit != 1 || res.BoundMet == nil || !*res.BoundMet {
			t.Errorf("light %d during the flood: status %s exit %d error %+v; agent latency %.1f ms (bound %s: queue %.1f ms, compute %.1f ms, the rest hand-off to publish); round trip %s; flood %d of %d published, %d answered",
				k, res.Status, res.Exit, res.Error, res.LatencyMS, lightAgentBound, res.QueueMS, res.ComputeMS, rtt.Round(time.Millisecond), published.Load(), n, counter.count())
		}
		if rtt > lightRTTBound {
			t.Errorf("light %d during the flood: answered after %s, want < %s", k, rtt.Round(time.Millisecond), lightRTTBound)
		}
		if d := time.Until(sent.Add(50 * time.Millisecond)); d > 0 {
			time.Sleep(d) // the light tenant's send schedule, not synchronisation
		}
	}
	<-publishing
	if err := pubErr.Load(); err != nil {
		t.Fatalf("flood publish: %v", err)
	}
	allAnswered := false
	select {
	case <-counter.done:
		allAnswered = true
	case <-time.After(time.Second): // the light loop above waited for them
		// Where did they go? The agent's own count tells lost requests
		// (never reached the agent, or never answered) from lost results.
		body := scrape(t, r.a.Metrics().Handler())
		t.Errorf("flood: %d of %d published, %d results received, none for %s; the agent's delen_requests_total{tenant=\"flood\"} = %v (%v ok, %v overloaded), dropped %v; broker warnings: %s",
			published.Load(), n, counter.count(), time.Since(counter.last()).Round(time.Millisecond),
			metricValue(body, "delen_requests_total", "tenant", "flood"), metricValue(body, "delen_requests_total", "tenant", "flood", "status", "ok"),
			metricValue(body, "delen_requests_total", "tenant", "flood", "code", "overloaded"), metricValue(body, "delen_dropped_total"), brokerLog.String())
	}
	answered := "all answered in " + counter.doneAt.Sub(floodStart).Round(time.Millisecond).String()
	if !allAnswered {
		answered = fmt.Sprintf("%d answered", counter.count())
	}
	stopSampler()
	_, floodHWM := procStatus()

	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	afterHeap, afterG := ms.HeapAlloc, runtime.NumGoroutine()
	afterRSS, _ := procStatus()

	counter.mu.Lock()
	outcomes := maps2string(counter.byOutcome)
	dups, strays := counter.dups, counter.strays
	served := counter.byOutcome[schema.StatusOK] + counter.byOutcome[schema.StatusLate]
	refused := counter.byOutcome[schema.StatusError+":"+schema.CodeOverloaded]
	counter.mu.Unlock()

	slices.Sort(rtts)
	t.Logf("flood: %d requests published in %s (%.0f/s), %s: %s",
		n, publishedIn.Round(time.Millisecond), float64(n)/publishedIn.Seconds(), answered, outcomes)
	t.Logf("light tenant: %d requests during the flood, round trip p50 %s, max %s (bound %s); agent latency max %.1f ms (bound %s)",
		len(rtts), rtts[len(rtts)/2].Round(time.Microsecond), rtts[len(rtts)-1].Round(time.Microsecond), lightRTTBound, worstAgentMS, lightAgentBound)
	t.Logf("heap (HeapAlloc): idle %.1f MiB, peak %.1f MiB, after the flood (GC) %.1f MiB; goroutines: idle %d, peak %d, after %d",
		mib(idleHeap), mib(peakHeap), mib(afterHeap), idleG, peakG, afterG)
	t.Logf("broker warnings: %s", brokerLog.String())
	t.Logf("RSS: idle %.1f MiB (VmHWM %.1f), peak sampled %.1f MiB, VmHWM after the flood %.1f MiB, after %.1f MiB",
		mib(idleRSS), mib(idleHWM), mib(peakRSS), mib(floodHWM), mib(afterRSS))

	if dups > 0 || len(strays) > 0 {
		t.Errorf("flood: %d duplicate results, %d strays %v", dups, len(strays), strays[:min(3, len(strays))])
	}
	if allAnswered && served+refused != n {
		t.Errorf("flood: outcomes %s: want every request served or refused as overloaded", outcomes)
	}
	if served == 0 {
		t.Errorf("flood: nothing served")
	}
	if len(rtts) < 3 {
		t.Errorf("only %d light requests during the flood: the flood did not last", len(rtts))
	}
	if peakHeap > idleHeap+heapBound {
		t.Errorf("peak heap %.1f MiB under the flood, idle %.1f MiB: grew by more than %d MiB", mib(peakHeap), mib(idleHeap), heapBound>>20)
	}
	if afterHeap > idleHeap+settleBound {
		t.Errorf("heap after the flood %.1f MiB, idle %.1f MiB: grew by more than %d MiB", mib(afterHeap), mib(idleHeap), settleBound>>20)
	}
	if afterG > idleG+50 {
		t.Errorf("goroutines after the flood: %d, idle %d", afterG, idleG)
	}
}

func maps2string(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

// warnCounter is a slog handler that counts the warnings and errors logged
// (by the embedded broker), by message.
type warnCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.counts[r.Message]++
	w.mu.Unlock()
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }
func (w *warnCounter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.counts) == 0 {
		return "none"
	}
	return maps2string(w.counts)
}
