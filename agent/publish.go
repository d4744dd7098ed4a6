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
		for _, sm := range a.models.all() {
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

// onControl takes a control message off the broker for the control step.
func (a *Agent) onControl(msg broker.Message) {
	msg.Ack()
	tenantName, kind, err := a.topics.Parse(msg.Topic())
	if err != nil || kind != schema.KindControl {
		return
	}
	if len(msg.Payload()) == 0 {
		return // a cleared retained control message
	}
	a.control.apply(tenantName, msg.Payload())
}

// checkControlModel is the control step's checkModel: a model the
// control names must be served here, and a default bound's exit must be
// one of the model the tenant would have (eff).
func (a *Agent) checkControlModel(c *schema.Control, eff schema.Settings) error {
	if c.Model != nil && *c.Model != "" {
		sm := a.models.get(*c.Model)
		if sm == nil {
			return schema.Errorf(schema.CodeUnknownModel, "model %q is not served here", *c.Model)
		}
		sm.release()
	}
	if c.Bound != nil || c.Model != nil {
		return a.checkDefaultExit(eff)
	}
	return nil
}

// checkDefaultExit checks that the exit of a tenant's default bound is an
// exit of the tenant's model (or the agent's default model).
func (a *Agent) checkDefaultExit(set schema.Settings) error {
	if set.Bound.Exit == nil {
		return nil
	}
	sm := a.models.get(a.modelName(set.Model))
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
