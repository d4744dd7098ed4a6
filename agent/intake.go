package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
)

// onRequest receives a delivery on the MQTT client's delivery goroutine:
// it queues the delivery under its tenant (intakeQueue) and, when a runner
// slot is free, serves the intake queue itself until it is empty.
func (a *Agent) onRequest(msg broker.Message) {
	if a.stopping.Load() {
		return // not acknowledged: the broker redelivers it to the next session
	}
	arrival := time.Now()
	tenantName, kind, err := a.topics.Parse(msg.Topic())
	if err != nil || kind != schema.KindRequests {
		// No tenant to answer to: count it, acknowledge it, drop it.
		a.metrics.dropped.WithLabelValues("bad_topic").Inc()
		a.log.Warn("request on an unexpected topic dropped", "topic", msg.Topic(), "err", err)
		msg.Ack()
		return
	}
	if !a.intake.push(delivery{msg: msg, tenant: tenantName, arrival: arrival}) {
		return // a runner will take it
	}
	for d, ok := a.intake.next(); ok; d, ok = a.intake.next() {
		if a.stopping.Load() {
			continue // not acknowledged: redelivered to the next session
		}
		a.handleRequest(d.msg, d.tenant, d.arrival)
	}
}

// handleRequest is the intake proper: decode, validate, dedupe, admit. It
// never blocks on inference (at most one stage runs inline, when a worker
// slot is free).
func (a *Agent) handleRequest(msg broker.Message, tenantName string, arrival time.Time) {
	qos := msg.QoS()
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		a.log.Debug("request received", "topic", msg.Topic(), "bytes", len(msg.Payload()), "qos", qos, "dup", msg.Duplicate())
	}
	req, enc, err := schema.DecodeRequest(msg.Payload(), a.cfg.MaxPayload)
	if err == nil {
		err = req.ValidateWith(a.topics, tenantName)
	}
	if err != nil {
		a.answerError(tenantName, req, enc, qos, a.topics.Results(tenantName), err, msg)
		return
	}
	topic := a.topics.Results(tenantName)
	if req.ReplyTo != "" {
		topic = req.ReplyTo
	}
	// A request id already answered gets the same bytes again.
	key := tenantName + "/" + req.ID
	d, err := a.cfg.Store.GetDedupe(tenantName, req.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.Warn("dedupe lookup failed; serving anyway", "tenant", tenantName, "id", req.ID, "err", err)
	}
	if err != nil {
		d, _ = a.spilled.get(key, arrival) // a record the store refused
	}
	if d != nil {
		a.metrics.deduped.WithLabelValues(a.label(tenantName)).Inc()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.client.Publish(ctx, d.Topic, d.QoS, false, d.Payload); err != nil {
			a.log.Warn("republish deduplicated result", "tenant", tenantName, "id", req.ID, "err", err)
			return // not acknowledged: the broker redelivers
		}
		msg.Ack()
		return
	}
	a.inflightMu.Lock()
	if j := a.inflight[key]; j != nil {
		// Redelivered while the first delivery is still being served:
		// answer both with the one result.
		j.msgs = append(j.msgs, msg)
		a.inflightMu.Unlock()
		a.metrics.deduped.WithLabelValues(a.label(tenantName)).Inc()
		return
	}
	a.inflightMu.Unlock()

	t := a.tenantFor(tenantName)
	if t == nil {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeOverloaded, "the agent serves at most %d tenants", a.cfg.MaxTenants), msg)
		return
	}
	set := t.get()
	if !t.admit(arrival) {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeOverloaded, "tenant %s is over its rate limit of %g requests/s", tenantName, set.RateLimit), msg)
		return
	}
	limit := a.cfg.QueueLimit
	if set.QueueLimit > 0 {
		limit = set.QueueLimit
	}
	if !t.reserve(limit) {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeOverloaded, "tenant %s has %d requests waiting", tenantName, limit), msg)
		return
	}
	admitted := false // once true, the job holds the reservation and the model
	defer func() {
		if !admitted {
			t.unanswered.Add(-1)
		}
	}()
	modelName := req.Model
	if modelName == "" {
		modelName = set.Model
	}
	if modelName == "" {
		modelName = a.cfg.DefaultModel
	}
	sm := a.model(modelName)
	if sm == nil {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeUnknownModel, "model %q is not served here", modelName), msg)
		return
	}
	defer func() {
		if !admitted {
			sm.release()
		}
	}()
	bound := req.Bound
	if bound.IsZero() {
		bound = set.Bound
	}
	if err := checkExit(sm, bound, !req.Bound.IsZero()); err != nil {
		a.answerError(tenantName, req, enc, qos, topic, err, msg)
		return
	}
	input, err := a.inputFor(sm, &req.Input)
	if err != nil {
		a.answerError(tenantName, req, enc, qos, topic, err, msg)
		return
	}
	policyName := req.Policy
	if policyName == "" {
		policyName = set.Policy
	}
	if policyName == "" {
		policyName = a.cfg.DefaultPolicy
	}
	conditions := set.Conditions
	if conditions == nil {
		conditions = a.cfg.DefaultConditions
	}
	pol, err := t.policyFor(a.cfg.Policies, policyName)
	if err != nil {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeBadRequest, "policy: %v", err), msg)
		return
	}
	j := &job{
		tenant: tenantName, owner: t, req: req, enc: enc, msgs: []broker.Message{msg}, qos: qos, topic: topic,
		model: sm, policy: pol, bound: bound, conditions: conditions, infeasible: a.cfg.Infeasible,
		arrival: arrival, input: input,
	}
	j.task = task{tenant: tenantName, seq: a.sched.nextSeq(), job: j, queuedAt: arrival}
	j.setDeadline(a.cfg.SentAtFuture, a.cfg.SentAtMaxAge)
	a.setNextStage(j)
	if set.Infeasible != "" {
		j.infeasible = set.Infeasible
	}
	a.inflightMu.Lock()
	if other := a.inflight[key]; other != nil {
		other.msgs = append(other.msgs, msg)
		a.inflightMu.Unlock()
		return
	}
	a.inflight[key] = j
	a.inflightMu.Unlock()
	a.active.Add(1)
	admitted = true // the job's reference is released after its publish
	if err := a.sched.pushWake(&j.task, false); err != nil {
		// Closed: the agent is stopping. Not acknowledged: the broker
		// redelivers the request to the next session.
		a.inflightMu.Lock()
		delete(a.inflight, key)
		a.inflightMu.Unlock()
		a.active.Done()
		admitted = false
		return
	}
	a.metrics.queueDepth.WithLabelValues(t.label).Set(float64(a.sched.depth(tenantName)))
	a.runInline()
	a.sched.wakeIfQueued()
}

// checkExit refuses a bound whose exit the model does not have (exits are
// 1..Exits()): a malformed request, not one to serve at the last exit.
// own tells whether the bound is the request's own or the tenant's default.
func checkExit(sm *servedModel, b schema.Bound, own bool) error {
	if b.Exit == nil || *b.Exit <= sm.m.Exits() {
		return nil
	}
	whose := "bound.exit"
	if !own {
		whose = "the tenant's default bound.exit"
	}
	return schema.Errorf(schema.CodeBadRequest, "%s: model %s has exits 1..%d, not %d", whose, sm.name, sm.m.Exits(), *b.Exit)
}

// inputFor checks the request tensor against the model's input and
// converts it to the model's float32 layout.
func (a *Agent) inputFor(sm *servedModel, t *schema.Tensor) ([]float32, error) {
	man := sm.m.Manifest
	if !sameShape(t.Shape, man.Input.Shape) {
		return nil, schema.Errorf(schema.CodeShapeMismatch, "input shape %v does not fit model %s (input %v)", t.Shape, man.Name, man.Input.Shape)
	}
	out := make([]float32, man.SampleSize())
	switch t.DType {
	case "uint8":
		u, err := t.Uint8s()
		if err != nil {
			return nil, err
		}
		man.Normalize(out, u)
	case "float32":
		if _, err := t.Float32s(out); err != nil {
			return nil, err
		}
	default:
		return nil, schema.Errorf(schema.CodeShapeMismatch, "dtype %q is not accepted by model %s", t.DType, man.Name)
	}
	return out, nil
}

// sameShape compares shapes ignoring leading 1s (a batch of one, or a
// channel of one for single-channel models).
func sameShape(got []int, want []int64) bool {
	for len(got) > 0 && got[0] == 1 {
		got = got[1:]
	}
	for len(want) > 0 && want[0] == 1 {
		want = want[1:]
	}
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if int64(got[i]) != want[i] {
			return false
		}
	}
	return true
}

// stageCost is the predicted time (ms) of stage i, for fair sharing.
func (a *Agent) stageCost(sm *servedModel, i int) float64 {
	p := sm.profile.Load()
	if p == nil || i >= len(p.Stages) {
		return 1
	}
	return p.Stages[i].LatencyMS.P50
}

// answerError publishes an error result for a request that will not be
// served and acknowledges it.
func (a *Agent) answerError(tenantName string, req *schema.Request, enc schema.Encoding, qos byte, topic string, err error, msg broker.Message) {
	res := schema.NewErrorResult(tenantName, req, err)
	a.metrics.requests.WithLabelValues(a.label(tenantName), schema.StatusError, res.Error.Code).Inc()
	payload, encErr := schema.EncodeResult(res, enc)
	if encErr != nil {
		a.log.Error("encode error result", "err", encErr)
		msg.Ack()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.client.Publish(ctx, topic, qos, false, payload); err != nil {
		a.log.Warn("publish error result", "tenant", tenantName, "err", err)
		return
	}
	msg.Ack()
	a.log.Debug("request refused", "tenant", tenantName, "id", res.ID, "code", res.Error.Code, "err", fmt.Sprint(err))
}
