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

	arrival  time.Time
	input    []float32
	state    *models.State
	task     task
	done     int // exits run
	energyMJ float64
	compute  time.Duration
	queue    time.Duration
	conf     float64
	class    int
	top      []schema.ClassProb
	late     bool
	reason   string

	result *schema.Result
}
