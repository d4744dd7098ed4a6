package agent

import (
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// job is one request in flight through the agent, from intake to the
// publish of its result.
type job struct {
	tenant string
	owner  *tenant // its unanswered count is released after publish
	req    *schema.Request
	enc    schema.Encoding
	// msgs are the broker deliveries this job answers: the request and any
	// duplicate delivered while it ran; all are acknowledged after publish.
	msgs  []broker.Message
	qos   byte
	topic string // where the result goes

	model      *servedModel
	policy     policies.Policy
	bound      schema.Bound
	conditions []schema.Condition
	infeasible string // "late" or "shed"

	arrival time.Time
	// origin is what the latency deadline counts from (sent_at or
	// arrival); deadlineFrom names it for the result.
	origin       time.Time
	deadlineFrom string
	input        []float32
	state        *models.State
	task         task
	done         int // exits run
	energyMJ     float64
	compute      time.Duration
	queue        time.Duration
	conf         float64
	class        int
	top          []schema.ClassProb
	// late: the policy found the bound infeasible and the tenant chose to
	// be served anyway (infeasible: late): exit 1 only.
	late bool
	// cut: a hard limit (latency, energy) stopped the job before its
	// policy's own stopping rule fired (policies.Decision.Limit).
	cut    bool
	reason string
	// plan is the request\'s entry in the scheduler\'s plan (plan.go).
	plan jobPlan

	result *schema.Result
}

// Defaults of Config.SentAtFuture and Config.SentAtMaxAge.
const (
	DefaultSentAtFuture = 50 * time.Millisecond
	DefaultSentAtMaxAge = 60 * time.Second
)

// deadlineOrigin is what a latency bound's deadline counts from
// (DESIGN.md, "Bounds and policies"): the request's sent_at (unix µs) when
// the agent's clock finds it plausible, at most future ahead of arrival and
// at most maxAge before it; else arrival. It also names the choice for the
// result's deadline_from.
func deadlineOrigin(sentAt int64, arrival time.Time, future, maxAge time.Duration) (time.Time, string) {
	if sentAt > 0 {
		t := time.UnixMicro(sentAt)
		if !t.After(arrival.Add(future)) && !t.Before(arrival.Add(-maxAge)) {
			return t, schema.DeadlineFromSentAt
		}
	}
	return arrival, schema.DeadlineFromArrival
}

// setDeadline fixes the job's deadline origin and its task's deadline
// from its latency bound (none: no deadline).
func (j *job) setDeadline(future, maxAge time.Duration) {
	j.origin, j.deadlineFrom = j.arrival, ""
	if j.bound.LatencyMS == nil {
		return
	}
	j.origin, j.deadlineFrom = deadlineOrigin(j.req.SentAt, j.arrival, future, maxAge)
	j.task.deadline = j.origin.Add(time.Duration(*j.bound.LatencyMS * float64(time.Millisecond)))
}
