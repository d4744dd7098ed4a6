package agent

import (
	"github.com/delen-edge/delen/schema"
)

// defaults are the agent's own answers to what a request and its tenant's
// settings leave open.
type defaults struct {
	model      string
	policy     string
	conditions []schema.Condition
	infeasible string
}

// admission is what one request is served under, resolved from the
// request, its tenant's settings and the agent's defaults.
type admission struct {
	// topic is where the result goes: the request's reply_to, else the
	// tenant's results topic.
	topic string
	model string
	bound schema.Bound
	// ownBound tells a bound the request carries from the tenant's
	// default one (for the error that names it).
	ownBound   bool
	policy     string
	conditions []schema.Condition
	infeasible string
}

// admit resolves what req is served under; a pure function of its
// arguments. For each setting, the first of the request's own, the
// tenant's and the agent's default that is set wins (conditions and
// infeasible are the tenant's or the agent's; a request carries none).
func admit(req *schema.Request, results string, set schema.Settings, d defaults) admission {
	ad := admission{
		topic:      first(req.ReplyTo, results),
		model:      first(req.Model, set.Model, d.model),
		bound:      req.Bound,
		ownBound:   !req.Bound.IsZero(),
		policy:     first(req.Policy, set.Policy, d.policy),
		conditions: set.Conditions,
		infeasible: first(set.Infeasible, d.infeasible),
	}
	if !ad.ownBound {
		ad.bound = set.Bound
	}
	if ad.conditions == nil {
		ad.conditions = d.conditions
	}
	return ad
}

// first returns the first non-empty string of its arguments, or "".
func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
