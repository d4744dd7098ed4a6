package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models/imagein"
	"github.com/delen-edge/delen/schema"
)

// onRequest receives a delivery on the MQTT client's delivery goroutine:
// it queues the delivery under its tenant (intakeQueue) and, when a runner
// slot is free and the intake window has room, wakes an intake runner.
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
	if a.intake.push(delivery{msg: msg, tenant: tenantName, arrival: arrival}) {
		a.wakeIntake()
	}
}

// runIntakeLoop is one of the intakeRunners long-lived intake goroutines.
// The MQTT client runs each delivery on a new goroutine; intake on it
// (decoding, admission, often a stage) grew and copied that goroutine's
// stack several times per request, 4-5% of the agent's CPU at 3,000 req/s.
// A runner's stack stays grown.
func (a *Agent) runIntakeLoop(quit <-chan struct{}) {
	for {
		select {
		case <-a.intakeWake:
			a.runIntake()
		case <-quit:
			return
		}
	}
}

// wakeIntake hands the runner slot the caller took to a parked runner.
// The channel holds as many tokens as there are slots, so it never
// blocks.
func (a *Agent) wakeIntake() { a.intakeWake <- struct{}{} }

// runIntake takes deliveries from the intake queue until it is empty or
// the window is full; the caller holds a runner slot.
func (a *Agent) runIntake() {
	for d, ok := a.intake.next(); ok; d, ok = a.intake.next() {
		if a.stopping.Load() {
			// Not acknowledged: redelivered to the next session.
			a.release(1)
			continue
		}
		a.handleRequest(d.msg, d.tenant, d.arrival)
	}
}

// handleRequest is the intake proper: decode, validate, dedupe, admit. It
// never blocks on inference (at most one stage runs inline, when a worker
// slot is free) nor on the broker: answers go to the results path. The
// delivery holds a place in the intake window until its answer is out.
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
	topic := first(req.ReplyTo, a.topics.Results(tenantName))
	// A request id already answered gets the same bytes again.
	key := dedupeKey(tenantName, req.ID)
	if d := a.dedupe.answered(tenantName, req.ID, arrival); d != nil {
		a.active.Add(1)
		a.results.add(&answer{tenant: tenantName, topic: d.Topic, qos: d.QoS, payload: d.Payload,
			msgs: []broker.Message{msg}, deduped: true})
		return
	}
	if a.dedupe.join(key, msg) {
		// Redelivered while the first delivery is still being served:
		// answer both with the one result.
		a.metrics.deduped.WithLabelValues(a.tenants.label(tenantName)).Inc()
		return
	}

	t := a.tenants.get(tenantName)
	if t == nil {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeOverloaded, "the agent serves at most %d tenants", a.cfg.MaxTenants), msg)
		return
	}
	set := t.get()
	if !t.admit(arrival) {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeOverloaded, "tenant %s is over its rate limit of %g requests/s", tenantName, t.ceil.rateLimit(set)), msg)
		return
	}
	limit := t.ceil.queueLimit(set)
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
	ad := admit(req, topic, set, a.defaults)
	sm := a.models.get(ad.model)
	if sm == nil {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeUnknownModel, "model %q is not served here", ad.model), msg)
		return
	}
	defer func() {
		if !admitted {
			sm.release()
		}
	}()
	if err := checkExit(sm, ad.bound, ad.ownBound); err != nil {
		a.answerError(tenantName, req, enc, qos, topic, err, msg)
		return
	}
	input, err := a.inputFor(sm, &req.Input)
	if err != nil {
		a.answerError(tenantName, req, enc, qos, topic, err, msg)
		return
	}
	pol, err := t.policyFor(a.cfg.Policies, ad.policy)
	if err != nil {
		a.answerError(tenantName, req, enc, qos, topic, schema.Errorf(schema.CodeBadRequest, "policy: %v", err), msg)
		return
	}
	j := &job{
		tenant: tenantName, owner: t, req: req, enc: enc, msgs: []broker.Message{msg}, qos: qos, topic: topic,
		model: sm, policy: pol, bound: ad.bound, conditions: ad.conditions, infeasible: ad.infeasible,
		arrival: arrival, input: input,
	}
	if lb := ad.bound.LatencyMS; lb != nil && *lb < tightLatencyMS {
		a.tightSeen.Store(arrival.UnixNano())
	}
	j.task = task{tenant: tenantName, seq: a.sched.nextSeq(), job: j, queuedAt: arrival}
	j.setDeadline(a.cfg.SentAtFuture, a.cfg.SentAtMaxAge)
	// Claimed before it is planned: a job that loses the claim to the same
	// id delivered at once has nothing booked to take back.
	if !a.dedupe.claim(key, j) {
		a.metrics.deduped.WithLabelValues(a.tenants.label(tenantName)).Inc()
		return
	}
	a.setNextStage(j)
	a.admitPlan(j, arrival)
	a.active.Add(1)
	admitted = true // the job's reference is released after its publish
	if err := a.sched.pushWake(&j.task, false); err != nil {
		// Closed: the agent is stopping. Not acknowledged: the broker
		// redelivers the request to the next session.
		a.sched.book(j, 0)
		n := a.dedupe.forget(key, j)
		a.active.Done()
		admitted = false
		a.release(n)
		return
	}
	a.metrics.queueDepthOf(t).Set(float64(a.sched.depth(tenantName)))
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
// converts it to the model's float32 layout; an encoded image is decoded,
// converted and resized to it (models/imagein).
func (a *Agent) inputFor(sm *servedModel, t *schema.Tensor) ([]float32, error) {
	man := sm.m.Manifest
	if t.IsImage() {
		return imagein.Input(man, t.Format, t.Data, a.cfg.MaxPixels)
	}
	if !sameShape(t.Shape, man.Input.Shape) {
		return nil, schema.Errorf(schema.CodeShapeMismatch, "input shape %v does not fit model %s (input %v)", t.Shape, man.Name, man.Input.Shape)
	}
	out := sm.input()
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

// input returns a sample buffer of the model's sample size, reused from
// one given back with putInput when there is one; every element is
// overwritten by the conversion.
func (sm *servedModel) input() []float32 {
	if p, _ := sm.inputs.Get().(*[]float32); p != nil {
		return *p
	}
	return make([]float32, sm.m.Manifest.SampleSize())
}

// putInput gives a sample buffer back once its contents are copied.
func (sm *servedModel) putInput(in []float32) {
	if len(in) == sm.m.Manifest.SampleSize() {
		sm.inputs.Put(&in)
	}
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
