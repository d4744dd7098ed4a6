package policies

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Default is the policy used when neither the request nor the tenant names
// one: every bound's stopping rule at once.
const Default = "bound"

// ErrUnknownPolicy is returned for a name the registry does not know.
var ErrUnknownPolicy = errors.New("unknown policy")

// Params are a tenant's policy parameters (schema.Settings.Params), such
// as the energy-budget policy's "joules" and "window_s". A policy ignores
// the keys it does not use and reports a bad value as an error.
type Params map[string]float64

// Factory makes a fresh policy instance from a tenant's parameters. The
// agent keeps one instance per tenant and policy, so stateful policies
// (budgets, load tracking) keep their state per tenant.
type Factory func(Params) (Policy, error)

// Registry maps policy names to factories. The zero value is empty; New
// returns one holding the built-in policies. It is safe for concurrent use.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Factory
}

// New returns a registry with the built-in policies:
//
//   - bound (Default): every bound's stopping rule, an accuracy bound by
//     the tuned cascade; params alpha (BoundPolicy);
//   - static: a fixed exit, or the first exit whose profiled accuracy
//     reaches an accuracy bound; params exit (StaticPolicy);
//   - confidence: BranchyNet's top-1 threshold; params threshold
//     (ConfidencePolicy);
//   - deadline: as deep as the deadline allows; params margin_ms
//     (DeadlinePolicy);
//   - accuracy: per-exit confidence thresholds tuned on calibration data
//     with a margin, re-tuned from live labels; params accuracy, alpha
//     (AccuracyPolicy);
//   - energy: a per-request energy budget; params mj (EnergyPolicy);
//   - energy-budget: joules per time window per tenant; params joules,
//     window_s (EnergyBudgetPolicy);
//   - adaptive: load-aware target exit with hysteresis; params target_ms,
//     high, low, raise_after, workers (AdaptivePolicy);
//   - conditions: the reference implementation's exit conditions
//     (ConditionsPolicy).
func New() *Registry {
	r := &Registry{}
	r.Register(Default, func(ps Params) (Policy, error) {
		alpha, err := ps.num("alpha", MarginAlpha, 0, 0.5)
		if err != nil {
			return nil, err
		}
		return BoundPolicy{Accuracy: &AccuracyPolicy{Alpha: alpha}}, nil
	})
	r.Register("static", factory(NewStatic))
	r.Register("confidence", factory(NewConfidence))
	r.Register("deadline", factory(NewDeadline))
	r.Register("accuracy", factory(NewAccuracy))
	r.Register("energy", factory(NewEnergy))
	r.Register("energy-budget", factory(NewEnergyBudget))
	r.Register("adaptive", factory(NewAdaptive))
	r.Register("conditions", func(Params) (Policy, error) { return ConditionsPolicy{}, nil })
	return r
}

// factory adapts a typed constructor to a Factory (no typed nil on error).
func factory[P Policy](f func(Params) (P, error)) Factory {
	return func(ps Params) (Policy, error) {
		p, err := f(ps)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// Register adds (or replaces) a policy.
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]Factory{}
	}
	r.m[name] = f
}

// Has reports whether name is registered ("" means Default).
func (r *Registry) Has(name string) bool {
	if name == "" {
		name = Default
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.m[name]
	return ok
}

// New makes an instance of the named policy ("" means Default) with the
// tenant's parameters.
func (r *Registry) New(name string, params Params) (Policy, error) {
	if name == "" {
		name = Default
	}
	r.mu.RLock()
	f, ok := r.m[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownPolicy, name, r.Names())
	}
	p, err := f(params)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	return p, nil
}

// Names lists the registered policies, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
