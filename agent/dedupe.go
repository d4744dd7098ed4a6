package agent

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
)

// dedupeLookup is where the dedupe index finds the results already sent:
// the store in production.
type dedupeLookup interface {
	GetDedupe(tenant, id string) (*store.Dedupe, error)
}

// dedupeIndex is the one place that knows whether a request id was seen:
// the store's records of results already sent, the records the store
// refused (kept in memory, spillDedupe), and the jobs in flight, which a
// duplicate delivered meanwhile joins. Intake asks it before admitting a
// request; the results step settles a job's entry when its dedupe record
// is written.
type dedupeIndex struct {
	store   dedupeLookup
	log     *slog.Logger
	spilled spillDedupe

	mu       sync.Mutex
	inflight map[string]*job // tenant/id → job
}

func newDedupeIndex(st dedupeLookup, log *slog.Logger) *dedupeIndex {
	return &dedupeIndex{store: st, log: log, inflight: map[string]*job{}}
}

// dedupeKey is the index's key of a tenant's request id.
func dedupeKey(tenant, id string) string { return tenant + "/" + id }

// answered returns the stored answer to tenant's request id, if one was
// sent: from the store, else from the records it refused. A store that
// fails is logged and the request served anyway.
func (x *dedupeIndex) answered(tenant, id string, now time.Time) *store.Dedupe {
	d, err := x.store.GetDedupe(tenant, id)
	if err == nil {
		return d
	}
	if !errors.Is(err, store.ErrNotFound) {
		x.log.Warn("dedupe lookup failed; serving anyway", "tenant", tenant, "id", id, "err", err)
	}
	d, _ = x.spilled.get(dedupeKey(tenant, id), now)
	return d
}

// join adds msg to the job in flight under key, if there is one: the
// duplicate is acknowledged with that job's result.
func (x *dedupeIndex) join(key string, msg broker.Message) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	j := x.inflight[key]
	if j == nil {
		return false
	}
	j.msgs = append(j.msgs, msg)
	return true
}

// claim records j as the job in flight under key. When another job got
// there first (the same id delivered twice at once), j's deliveries join
// it instead and claim reports false: j is not to be served.
func (x *dedupeIndex) claim(key string, j *job) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if other := x.inflight[key]; other != nil {
		other.msgs = append(other.msgs, j.msgs...)
		j.msgs = nil
		return false
	}
	x.inflight[key] = j
	return true
}

// forget drops the claim j holds under key (a job that will not be
// served) and returns how many deliveries it held.
func (x *dedupeIndex) forget(key string, j *job) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inflight[key] == j {
		delete(x.inflight, key)
	}
	return len(j.msgs)
}

// settle ends the claims of the group's jobs, whose dedupe records are
// written (or kept in memory): a repeat that comes from now on finds the
// record. Each answer takes its job's deliveries, to acknowledge after
// the publish.
func (x *dedupeIndex) settle(group []*answer) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, an := range group {
		if j := an.job; j != nil {
			if key := dedupeKey(j.tenant, j.req.ID); x.inflight[key] == j {
				delete(x.inflight, key)
			}
			an.msgs, j.msgs = j.msgs, nil
		}
	}
}

// keep holds records the store refused in memory until ttl passes.
func (x *dedupeIndex) keep(recs []store.DedupeEntry, ttl time.Duration) {
	exp := time.Now().Add(ttl)
	for _, e := range recs {
		x.spilled.put(dedupeKey(e.Tenant, e.ID), e.Dedupe, exp)
	}
}
