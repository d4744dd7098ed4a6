package agent

import (
	"log/slog"

	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// settingsStore is where the control step persists tenant settings: the
// store in production.
type settingsStore interface {
	PutTenant(tenant string, s schema.Settings) error
}

// control is the control step: a tenant's control message decoded,
// checked against the agent's policies, models and the operator's
// ceilings, applied to the tenant's settings (the next requests are served
// under them), persisted, and answered with the effective settings on the
// tenant's state topic, with the error next to them when it was refused.
// It is given everything it touches, so it is unit-tested without a broker
// (control_test.go).
type control struct {
	tenants    *tenantTable
	policies   *policies.Registry
	maxPayload int
	// checkModel refuses a control whose model is not served here, or
	// whose default bound names an exit the tenant's model (eff) lacks.
	checkModel func(c *schema.Control, eff schema.Settings) error
	store      settingsStore
	// setWeight passes a tenant's new weight to the scheduler.
	setWeight func(tenant string, w float64)
	// publish answers on the tenant's state topic.
	publish func(tenant string, set schema.Settings, enc schema.Encoding, refused error)
	log     *slog.Logger
	metrics *Metrics
}

// apply handles one control message of tenantName.
func (k *control) apply(tenantName string, payload []byte) {
	t := k.tenants.get(tenantName)
	if t == nil {
		// No state is published: a retained message per made-up tenant
		// name would grow the broker instead.
		k.metrics.dropped.WithLabelValues("too_many_tenants").Inc()
		k.log.Warn("control message of a new tenant dropped: the agent is at its tenant limit", "tenant", tenantName, "max_tenants", k.tenants.max)
		return
	}
	c, enc, err := schema.DecodeControl(payload, k.maxPayload)
	if err == nil {
		err = k.check(tenantName, t, c)
	}
	if err != nil {
		k.log.Warn("control message refused", "tenant", tenantName, "err", err)
		k.publish(tenantName, t.get(), enc, err)
		return
	}
	t.mu.Lock()
	t.settings = t.settings.Apply(c)
	set := t.settings
	if c.Params != nil || c.Policy != nil {
		// New parameters: policies start afresh with them.
		t.policies = map[string]policies.Policy{}
	}
	t.mu.Unlock()
	k.setWeight(tenantName, t.ceil.weight(set))
	if err := k.store.PutTenant(tenantName, set); err != nil {
		k.metrics.storeErrors.Inc()
		k.log.Warn("tenant settings not persisted", "tenant", tenantName, "err", err)
	}
	k.log.Info("tenant settings changed", "tenant", tenantName, "policy", set.Policy, "model", set.Model, "weight", set.Weight)
	k.publish(tenantName, set, enc, nil)
}

// check refuses a control message the tenant may not apply: invalid
// fields, beyond the operator's ceilings, a policy unknown or refusing
// the parameters the tenant would have, a model not served here.
func (k *control) check(tenantName string, t *tenant, c *schema.Control) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := t.ceil.check(tenantName, c); err != nil {
		return err
	}
	eff := t.get().Apply(c)
	if c.Policy != nil || c.Params != nil {
		// The policy the tenant would have, with the parameters it would
		// have.
		if !k.policies.Has(eff.Policy) {
			return schema.Errorf(schema.CodeBadRequest, "policy %q is not known (known: %v)", eff.Policy, k.policies.Names())
		}
		if _, err := k.policies.New(eff.Policy, policies.Params(eff.Params)); err != nil {
			return schema.Errorf(schema.CodeBadRequest, "%v", err)
		}
	}
	return k.checkModel(c, eff)
}
