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

// New returns a registry with the built-in policies.
func New() *Registry {
	r := &Registry{}
	r.Register(Default, func(Params) (Policy, error) { return BoundPolicy{}, nil })
	return r
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
