package agent

import (
	"log/slog"
	"sync"
	"time"

	"github.com/delen-edge/delen/agent/store"
)

// historyWriter batches history records off the hot path: records are
// written every flushEvery or when maxBatch have gathered. When the store
// fails (a full or read-only disk), the agent keeps serving; the records
// are counted as lost and logged. Every trimEvery, and once more at close,
// it deletes each tenant's records beyond the newest keep, so history is
// bounded on disk by count as well as by its time to live.
type historyWriter struct {
	st        *store.Store
	ttl       time.Duration
	keep      int           // records kept per tenant; ≤ 0: no limit
	trimEvery time.Duration // 0: after every flush
	log       *slog.Logger
	metrics   *Metrics
	in        chan store.Record
	done      chan struct{}
	closeOne  sync.Once
}

const (
	historyQueue = 8192
	maxBatch     = 512
	flushEvery   = 200 * time.Millisecond
	// trimEvery: a trimmed record's space in the store's history log is
	// reclaimed only after the trim (the log's upkeep deletes or
	// compacts its segments every 10 s), so the files hold a trim
	// period's records beyond the keep. A trim drops index entries and
	// saves the tenant's cut (a small file).
	trimEvery = 10 * time.Second
)

func newHistoryWriter(st *store.Store, ttl time.Duration, keep int, log *slog.Logger, m *Metrics) *historyWriter {
	return &historyWriter{st: st, ttl: ttl, keep: keep, trimEvery: trimEvery, log: log, metrics: m,
		in: make(chan store.Record, historyQueue), done: make(chan struct{})}
}

// add queues a record; when the queue is full the record is dropped and
// counted rather than slowing the serving down.
func (h *historyWriter) add(r store.Record) {
	select {
	case h.in <- r:
	default:
		h.metrics.historyDropped.Inc()
	}
}

// run writes batches until close, then flushes what is left.
func (h *historyWriter) run() {
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	batch := make([]store.Record, 0, maxBatch)
	written := map[string]bool{} // tenants with records since the last trim
	lastTrim := time.Now()
	trim := func() {
		lastTrim = time.Now()
		if h.keep <= 0 {
			clear(written)
			return
		}
		// One call for every tenant written to: the history log saves
		// its cuts (two fsyncs) once per round, not once per tenant.
		tenants := make([]string, 0, len(written))
		for tenant := range written {
			tenants = append(tenants, tenant)
		}
		n, err := h.st.TrimHistories(tenants, h.keep)
		h.metrics.historyTrimmed.Add(float64(n))
		if err != nil {
			h.log.Warn("history not trimmed", "tenants", len(tenants), "keep", h.keep, "err", err)
			return // tried again at the next trim
		}
		clear(written)
	}
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := h.st.AppendHistory(batch, h.ttl); err != nil {
			h.metrics.historyDropped.Add(float64(len(batch)))
			h.metrics.storeErrors.Inc()
			h.log.Warn("history batch not written; serving continues without it", "records", len(batch), "err", err)
		} else {
			h.metrics.historyWritten.Add(float64(len(batch)))
			for _, r := range batch {
				written[r.Tenant] = true
			}
		}
		batch = batch[:0]
		if time.Since(lastTrim) >= h.trimEvery {
			trim()
		}
	}
	for {
		select {
		case r := <-h.in:
			batch = append(batch, r)
			if len(batch) >= maxBatch {
				flush()
			}
		case <-tick.C:
			flush()
		case <-h.done:
			for {
				select {
				case r := <-h.in:
					batch = append(batch, r)
					if len(batch) >= maxBatch {
						flush()
					}
				default:
					flush()
					trim()
					return
				}
			}
		}
	}
}

// close stops run after a final flush.
func (h *historyWriter) close() { h.closeOne.Do(func() { close(h.done) }) }
