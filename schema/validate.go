package schema

import (
	"math"
	"strings"
	"unicode/utf8"
)

// Validate checks a request from tenant against the contract, with the
// default topic prefix; see ValidateWith.
func (r *Request) Validate(tenant string) error {
	return r.ValidateWith(Topics{}, tenant)
}

// ValidateWith checks a request from tenant against the contract, with the
// topic prefix of t (for reply_to). Every failure is an *Error with code
// bad_request whose ID is the request id when that id is valid.
//
// A tensor given as Values is converted to Data with its dtype (float32, or
// uint8 for integers 0–255), and Values is cleared: after a successful
// Validate, Input.Data holds the elements.
//
// Checks: v <= 1; id 1–128 bytes of UTF-8; input present, dtype float32 or
// uint8, shape non-empty with dims >= 1 and at most MaxElements elements,
// exactly one of data and values, len(data) = elements × dtype size, no NaN
// or Inf (or, for an encoded image, format jpeg or png, non-empty data and
// no dtype, shape or values); bound ranges (see Bound); model and policy at most 128 bytes;
// reply_to under <prefix>/<tenant>/, not an agent-read topic, no wildcards;
// label >= 0; meta within the depth limit and of the allowed types.
// Whether the model exists and the tensor fits it is for the agent to check
// (unknown_model, shape_mismatch), and so is whether an image decodes
// (bad_request) within the pixel limit (too_large).
func (r *Request) ValidateWith(t Topics, tenant string) error {
	err := r.validate(t, tenant)
	if err != nil && validID(r.ID) {
		err.ID = r.ID
	}
	if err == nil {
		return nil
	}
	return err
}

func (r *Request) validate(t Topics, tenant string) *Error {
	if !ValidTenant(tenant) {
		return badRequest("tenant %q is not a valid tenant name", tenant)
	}
	if r.V < 0 || r.V > Version {
		return badRequest("v: unsupported schema version %d (this agent speaks %d)", r.V, Version)
	}
	switch {
	case r.ID == "":
		return badRequest("id: required")
	case len(r.ID) > MaxIDBytes:
		return badRequest("id: %d bytes, at most %d allowed", len(r.ID), MaxIDBytes)
	case !utf8.ValidString(r.ID):
		return badRequest("id: invalid UTF-8")
	}
	if err := checkName("model", r.Model); err != nil {
		return err
	}
	if err := checkName("policy", r.Policy); err != nil {
		return err
	}
	data, err := checkTensor(&r.Input)
	if err != nil {
		return err
	}
	if err := r.Bound.check("bound"); err != nil {
		return err
	}
	if r.ReplyTo != "" {
		if err := checkReplyTo(t, tenant, r.ReplyTo); err != nil {
			return err
		}
	}
	if r.Label != nil && *r.Label < 0 {
		return badRequest("label: must be >= 0, got %d", *r.Label)
	}
	if r.Meta != nil {
		if err := checkMeta(r.Meta, 1); err != nil {
			return err
		}
	}
	if data != nil {
		r.Input.Data, r.Input.Values = data, nil
	}
	return nil
}

func validID(id string) bool {
	return id != "" && len(id) <= MaxIDBytes && utf8.ValidString(id)
}

func checkName(field, s string) *Error {
	if len(s) > MaxNameBytes {
		return badRequest("%s: %d bytes, at most %d allowed", field, len(s), MaxNameBytes)
	}
	if !utf8.ValidString(s) {
		return badRequest("%s: invalid UTF-8", field)
	}
	return nil
}

// check validates the ranges of the fields present; path prefixes messages.
func (b *Bound) check(path string) *Error {
	if v := b.LatencyMS; v != nil && !(*v > 0 && !math.IsInf(*v, 1)) {
		return badRequest("%s.latency_ms: must be a finite number > 0, got %g", path, *v)
	}
	if v := b.Accuracy; v != nil && !(*v > 0 && *v <= 1) {
		return badRequest("%s.accuracy: must be in (0, 1], got %g", path, *v)
	}
	if v := b.EnergyMJ; v != nil && !(*v > 0 && !math.IsInf(*v, 1)) {
		return badRequest("%s.energy_mj: must be a finite number > 0, got %g", path, *v)
	}
	if v := b.Confidence; v != nil && !(*v > 0 && *v <= 1) {
		return badRequest("%s.confidence: must be in (0, 1], got %g", path, *v)
	}
	if v := b.Exit; v != nil && *v < 1 {
		return badRequest("%s.exit: must be >= 1 (exits are 1-based), got %d", path, *v)
	}
	return nil
}

// Validate checks the ranges of the fields present in the bound, with the
// same rules as a request's bound.
func (b Bound) Validate() error {
	if err := b.check("bound"); err != nil {
		return err
	}
	return nil
}

// checkReplyTo: reply_to must be a topic under <prefix>/<tenant>/, without
// wildcards or NUL, and not one of the topics the agent reads or owns
// (requests, control, state), which would loop results back into the agent.
func checkReplyTo(t Topics, tenant, topic string) *Error {
	base := t.prefix() + "/" + tenant + "/"
	switch {
	case !utf8.ValidString(topic):
		return badRequest("reply_to: invalid UTF-8")
	case strings.ContainsAny(topic, "+#\x00"):
		return badRequest("reply_to: %q must be a topic name, without wildcards", topic)
	case len(topic) > 65535:
		return badRequest("reply_to: longer than an MQTT topic may be")
	case !strings.HasPrefix(topic, base) || len(topic) == len(base):
		return badRequest("reply_to: %q must lie under %s", topic, base)
	}
	switch topic[len(base):] {
	case KindRequests, KindControl, KindState:
		return badRequest("reply_to: %q is a topic the agent reads or owns", topic)
	}
	return nil
}

// checkMeta checks a meta value built by a client (the decoders enforce the
// same rules while reading): map keys are strings, values of the allowed
// types, floats finite, nesting at most MaxMetaDepth.
func checkMeta(v any, depth int) *Error {
	switch x := v.(type) {
	case nil, bool, string, []byte,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		if s, ok := x.(string); ok && !utf8.ValidString(s) {
			return badRequest("meta: invalid UTF-8 in a string")
		}
		return nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return badRequest("meta: NaN and Inf are not allowed")
		}
		return nil
	case float32:
		return checkMeta(float64(x), depth)
	case map[string]any:
		if depth > MaxMetaDepth {
			return metaDepthError()
		}
		for k, e := range x {
			if !utf8.ValidString(k) {
				return badRequest("meta: invalid UTF-8 in a key")
			}
			if err := checkMeta(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case []any:
		if depth > MaxMetaDepth {
			return metaDepthError()
		}
		for _, e := range x {
			if err := checkMeta(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return badRequest("meta: values of type %T are not allowed", v)
}

func metaDepthError() *Error {
	return badRequest("meta: nested deeper than %d levels", MaxMetaDepth)
}

// Validate checks a control message, each present field by its rule in
// settingFields: bound ranges, policy and model names at most 128 bytes,
// weight in (0, MaxWeight], at most MaxConditions conditions with known
// metrics and operators and finite thresholds, finite params, infeasible
// late or shed, queue_limit and rate_limit ≥ 0. Failures are bad_request
// *Errors.
func (c *Control) Validate() error {
	for _, f := range settingFields {
		if f.check != nil && f.present(c) {
			if err := f.check(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// What to do with a request whose bound not even exit 1 can meet.
const (
	InfeasibleLate = "late"
	InfeasibleShed = "shed"
)

func checkConditions(cs []Condition) *Error {
	if len(cs) > MaxConditions {
		return badRequest("conditions: %d entries, at most %d allowed (one per exit)", len(cs), MaxConditions)
	}
	for i, c := range cs {
		switch c.Metric {
		case MetricResponseTime, MetricConfidence, MetricAccuracy, MetricEnergy, MetricComputation, MetricExit:
		default:
			return badRequest("conditions[%d].metric: %q is not one of response_time, confidence, accuracy, energy, computation, exit", i, c.Metric)
		}
		switch c.Op {
		case OpLess, OpLessEq, OpEqual, OpGreater, OpGreaterEq:
		default:
			return badRequest("conditions[%d].op: %q is not one of less, less_eq, equal, greater, greater_eq", i, c.Op)
		}
		if math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) {
			return badRequest("conditions[%d].threshold: must be finite", i)
		}
	}
	return nil
}

// Validate checks settings with the rules of Control.Validate; a zero weight
// is allowed here and means the default weight.
func (s *Settings) Validate() error {
	c := Control{Bound: &s.Bound, Policy: &s.Policy, Model: &s.Model, Conditions: s.Conditions,
		Params: s.Params, Infeasible: &s.Infeasible, QueueLimit: &s.QueueLimit, RateLimit: &s.RateLimit}
	if s.Weight != 0 {
		c.Weight = &s.Weight
	}
	return c.Validate()
}
