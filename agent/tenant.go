package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// tenant is one tenant's settings, policy instances and rate limiter.
type tenant struct {
	label    string // its tenant label in metrics, fixed at creation (tenantTable.label)
	metrics  tenantMetrics
	ceil     Ceilings
	mu       sync.Mutex
	settings schema.Settings
	policies map[string]policies.Policy
	// token bucket for Settings.RateLimit: tokens left at last.
	tokens float64
	last   time.Time
	// unanswered counts the tenant's requests admitted and not yet
	// published, for the queue limit.
	unanswered atomic.Int64
	// labelled is set once the tenant sends labels: its state then shows
	// its model's live accuracy (stateLive: the figures last shown), in
	// stateEnc, the encoding of its last control message.
	labelled  atomic.Bool
	stateEnc  schema.Encoding
	stateLive *profile.LiveAccuracy
}

// reserve counts one more unanswered request unless the tenant already has
// limit of them (limit ≤ 0: no limit).
func (t *tenant) reserve(limit int) bool {
	if n := t.unanswered.Add(1); limit > 0 && n > int64(limit) {
		t.unanswered.Add(-1)
		return false
	}
	return true
}

// admit takes a token from the tenant's rate limiter (burst: one second's
// worth, at least 1); it reports false when the tenant is over its rate.
func (t *tenant) admit(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	rate := t.ceil.rateLimit(t.settings)
	if rate <= 0 {
		return true
	}
	burst := max(rate, 1)
	if t.last.IsZero() {
		t.tokens = burst
	} else {
		t.tokens = min(burst, t.tokens+now.Sub(t.last).Seconds()*rate)
	}
	t.last = now
	if t.tokens < 1 {
		return false
	}
	t.tokens--
	return true
}

// policyFor returns the tenant's instance of the named policy.
func (t *tenant) policyFor(reg *policies.Registry, name string) (policies.Policy, error) {
	if name == "" {
		name = policies.Default
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.policies[name]; p != nil {
		return p, nil
	}
	p, err := reg.New(name, policies.Params(t.settings.Params))
	if err != nil {
		return nil, err
	}
	t.policies[name] = p
	return p, nil
}

func (t *tenant) get() schema.Settings {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.settings
}

// overflowLabel is the tenant label of metrics about tenants beyond
// MaxTenants.
const overflowLabel = "_other"

// tenantTable holds the tenants' state, for at most max tenants: anyone
// may name a new tenant in a topic when tenant isolation is off, so the
// agent keeps no state for names beyond the limit. It also fixes the
// tenant label of each name in the metrics.
type tenantTable struct {
	max      int
	ceilings func(name string) Ceilings

	mu     sync.Mutex
	byName map[string]*tenant

	labelsMu sync.Mutex
	labels   map[string]struct{} // tenant names used as metric labels
}

func newTenantTable(max int, ceilings func(name string) Ceilings) *tenantTable {
	return &tenantTable{max: max, ceilings: ceilings, byName: map[string]*tenant{}, labels: map[string]struct{}{}}
}

// get returns tenant name's state, created with default settings; nil
// when name is new and the table already holds max tenants.
func (tt *tenantTable) get(name string) *tenant {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.byName[name]
	if t == nil {
		if len(tt.byName) >= tt.max {
			return nil
		}
		t = tt.newTenant(name, schema.Settings{Weight: 1})
		tt.byName[name] = t
	}
	return t
}

// load sets tenant name's state from stored settings (at start, before
// any request), whatever the limit.
func (tt *tenantTable) load(name string, set schema.Settings) *tenant {
	if set.Weight <= 0 {
		set.Weight = 1
	}
	t := tt.newTenant(name, set)
	tt.mu.Lock()
	tt.byName[name] = t
	tt.mu.Unlock()
	return t
}

func (tt *tenantTable) newTenant(name string, set schema.Settings) *tenant {
	return &tenant{settings: set, policies: map[string]policies.Policy{}, label: tt.label(name), ceil: tt.ceilings(name)}
}

// each calls fn for every tenant, on a copy of the table taken at once
// (fn may call get).
func (tt *tenantTable) each(fn func(name string, t *tenant)) {
	type entry struct {
		name string
		t    *tenant
	}
	tt.mu.Lock()
	list := make([]entry, 0, len(tt.byName))
	for name, t := range tt.byName {
		list = append(list, entry{name, t})
	}
	tt.mu.Unlock()
	for _, e := range list {
		fn(e.name, e.t)
	}
}

// label is the tenant label for name in metrics: the name for up to max
// names, overflowLabel beyond, so that made-up tenant names cannot grow
// the metrics without bound.
func (tt *tenantTable) label(name string) string {
	tt.labelsMu.Lock()
	defer tt.labelsMu.Unlock()
	if _, ok := tt.labels[name]; ok {
		return name
	}
	if len(tt.labels) >= tt.max {
		return overflowLabel
	}
	tt.labels[name] = struct{}{}
	return name
}
