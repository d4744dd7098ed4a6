package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
	"github.com/vmihailenco/msgpack/v5"
)

// record is the history entry of a served job; payload is its result as
// published, which the history writer stores as it is.
func (a *Agent) record(j *job, r *schema.Result, payload []byte) store.Record {
	sum := sha256.Sum256(j.req.Input.Data)
	rec := store.Record{Tenant: j.tenant, ID: r.ID, At: j.arrival, Result: r, ResultPayload: payload,
		InputDigest: hex.EncodeToString(sum[:8]), Label: j.req.Label}
	if j.req.Label != nil && r.Class != nil {
		ok := *j.req.Label == *r.Class
		rec.Correct = &ok
	}
	if p := j.model.profile.Load(); p != nil && p.Live != nil {
		v := p.Live.Measured
		rec.LiveAccuracy = &v
	}
	return rec
}

// observe updates the metrics for a published result.
func (a *Agent) observe(j *job, r *schema.Result) {
	code := ""
	if r.Error != nil {
		code = r.Error.Code
	}
	m, lbl := a.metrics, j.owner.label
	m.requestsOf(j.owner, r.Status, code).Inc()
	m.queueDepthOf(j.owner).Set(float64(a.sched.depth(j.tenant)))
	if r.Status == schema.StatusError {
		return
	}
	m.latencyOf(j.owner).Observe(r.LatencyMS / 1000)
	m.energyOf(j.owner).Add(r.EnergyMJ / 1000) // joules: Prometheus base unit
	if r.Exit > 0 {
		m.exits.WithLabelValues(lbl, j.model.name, strconv.Itoa(r.Exit)).Inc()
	}
	if r.BoundMet != nil && !*r.BoundMet {
		m.boundMisses.WithLabelValues(lbl).Inc()
	}
}

// statusPayload is the agent's status message.
func statusPayload(state string, a *Agent, extra map[string]any) ([]byte, error) {
	s := map[string]any{"status": state, "agent": a.cfg.AgentID}
	if state == "online" {
		s["started_at"] = a.started.UTC().Format(time.RFC3339)
		s["uptime_s"] = int(time.Since(a.started).Seconds())
		s["queued"] = a.sched.len()
		var names []string
		for _, sm := range a.servedModels() {
			names = append(names, sm.name)
		}
		s["models"] = names
	}
	for k, v := range extra {
		s[k] = v
	}
	return json.Marshal(s)
}

func (a *Agent) publishStatus(ctx context.Context, state string) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a.publishStatusCtx(c, state)
}

func (a *Agent) publishStatusCtx(ctx context.Context, state string) {
	b, err := statusPayload(state, a, nil)
	if err != nil {
		return
	}
	if err := a.client.Publish(ctx, a.topics.AgentStatus(a.cfg.AgentID), 1, true, b); err != nil {
		a.log.Warn("publish status", "err", err)
	}
}

// onControl applies a tenant's control message: validate, persist, apply
// to the next requests, publish the effective settings (retained) on the
// tenant's state topic.
func (a *Agent) onControl(msg broker.Message) {
	msg.Ack()
	tenantName, kind, err := a.topics.Parse(msg.Topic())
	if err != nil || kind != schema.KindControl {
		return
	}
	if len(msg.Payload()) == 0 {
		return // a cleared retained control message
	}
	t := a.tenants.get(tenantName)
	if t == nil {
		// No state is published: a retained message per made-up tenant
		// name would grow the broker instead.
		a.metrics.dropped.WithLabelValues("too_many_tenants").Inc()
		a.log.Warn("control message of a new tenant dropped: the agent is at its tenant limit", "tenant", tenantName, "max_tenants", a.cfg.MaxTenants)
		return
	}
	c, enc, err := schema.DecodeControl(msg.Payload(), a.cfg.MaxPayload)
	if err == nil {
		err = c.Validate()
	}
	if err == nil {
		err = t.ceil.check(tenantName, c)
	}
	if err == nil && (c.Policy != nil || c.Params != nil) {
		// Check the policy the tenant would have, with the parameters it
		// would have.
		eff := t.get().Apply(c)
		if !a.cfg.Policies.Has(eff.Policy) {
			err = schema.Errorf(schema.CodeBadRequest, "policy %q is not known (known: %v)", eff.Policy, a.cfg.Policies.Names())
		} else if _, perr := a.cfg.Policies.New(eff.Policy, policies.Params(eff.Params)); perr != nil {
			err = schema.Errorf(schema.CodeBadRequest, "%v", perr)
		}
	}
	if err == nil && c.Model != nil && *c.Model != "" {
		if sm := a.model(*c.Model); sm == nil {
			err = schema.Errorf(schema.CodeUnknownModel, "model %q is not served here", *c.Model)
		} else {
			sm.release()
		}
	}
	if err == nil && (c.Bound != nil || c.Model != nil) {
		// A default bound's exit must be one of the model the tenant
		// would have.
		err = a.checkDefaultExit(t.get().Apply(c))
	}
	if err != nil {
		a.log.Warn("control message refused", "tenant", tenantName, "err", err)
		a.publishState(tenantName, t.get(), enc, err)
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
	a.sched.setWeight(tenantName, t.ceil.weight(set))
	if err := a.cfg.Store.PutTenant(tenantName, set); err != nil {
		a.metrics.storeErrors.Inc()
		a.log.Warn("tenant settings not persisted", "tenant", tenantName, "err", err)
	}
	a.log.Info("tenant settings changed", "tenant", tenantName, "policy", set.Policy, "model", set.Model, "weight", set.Weight)
	a.publishState(tenantName, set, enc, nil)
}

// checkDefaultExit checks that the exit of a tenant's default bound is an
// exit of the tenant's model (or the agent's default model).
func (a *Agent) checkDefaultExit(set schema.Settings) error {
	if set.Bound.Exit == nil {
		return nil
	}
	sm := a.model(a.modelName(set.Model))
	if sm == nil {
		return nil // an unknown model is refused on its own
	}
	defer sm.release()
	return checkExit(sm, set.Bound, true)
}

// publishState publishes a tenant's effective settings, retained; a
// refused control message is reported in "error" next to them.
func (a *Agent) publishState(tenantName string, set schema.Settings, enc schema.Encoding, refused error) {
	var live *liveState
	if t := a.tenants.get(tenantName); t != nil {
		t.mu.Lock()
		t.stateEnc = enc
		t.mu.Unlock()
		live = a.liveStateOf(t, set)
	}
	payload, err := stateEncoding(set, refused, live, enc)
	if err != nil {
		a.log.Error("encode state", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Retained control messages come as soon as the connection is up,
	// before Dial has returned the client.
	select {
	case <-a.connected:
	case <-ctx.Done():
		return
	}
	if err := a.client.Publish(ctx, a.topics.State(tenantName), 1, true, payload); err != nil {
		a.log.Warn("publish state", "tenant", tenantName, "err", err)
	}
}

// stateEncoding encodes a tenant's settings for the state topic; when a
// control message was refused, the state carries the error next to the
// settings that stay in force; with live set, the live accuracy of the
// tenant's model.
func stateEncoding(set schema.Settings, refused error, live *liveState, enc schema.Encoding) ([]byte, error) {
	if refused == nil && live == nil {
		return schema.EncodeSettings(&set, enc)
	}
	var e *schema.Error
	if refused != nil && !errors.As(refused, &e) {
		e = &schema.Error{Code: schema.CodeBadRequest, Message: refused.Error()}
	}
	st := struct {
		schema.Settings `msgpack:",inline"`
		Error           *schema.Error `msgpack:"error,omitempty" json:"error,omitempty"`
		Live            *liveState    `msgpack:"live_accuracy,omitempty" json:"live_accuracy,omitempty"`
	}{set, e, live}
	if enc == schema.JSON {
		return json.Marshal(st)
	}
	return msgpack.Marshal(st)
}
