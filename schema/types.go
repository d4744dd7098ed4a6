package schema

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the schema version this package speaks; requests with a higher
// `v` are refused with bad_request, and results carry it.
const Version = 1

// Data types of a Tensor.
const (
	DTypeFloat32 = "float32"
	DTypeUint8   = "uint8"
)

// Image formats of an encoded-image input (Tensor.Format).
const (
	FormatJPEG = "jpeg"
	FormatPNG  = "png"
)

// Result statuses (docs/protocol.md, "Result").
const (
	// StatusOK: served, and the bound held.
	StatusOK = "ok"
	// StatusLate: served, but the bound was missed.
	StatusLate = "late"
	// StatusShed: refused because the bound could not be met.
	StatusShed = "shed"
	// StatusError: not served; see Result.Error.
	StatusError = "error"
)

// Limits applied by the decoders and by validation.
const (
	// DefaultMaxBytes is the payload limit used when a decoder is given
	// maxBytes <= 0.
	DefaultMaxBytes = 8 << 20
	// IDScanBytes is how much of a payload too large to decode is searched
	// for its id (a top-level "id" before that point is found).
	IDScanBytes = 64 << 10
	// MaxIDBytes is the longest request id.
	MaxIDBytes = 128
	// MaxNameBytes is the longest model or policy name.
	MaxNameBytes = 128
	// MaxElements is the largest number of tensor elements (product of the
	// shape).
	MaxElements = 1 << 24
	// MaxRank is the largest number of tensor dimensions.
	MaxRank = 16
	// MaxMetaDepth is the deepest nesting of maps and arrays in meta; meta
	// itself is level 1.
	MaxMetaDepth = 16
	// MaxMetaBytes is the largest encoded size of meta inside a payload.
	MaxMetaBytes = 64 << 10
	// MaxConditions is the longest list of exit conditions (one per exit).
	MaxConditions = 64
	// MaxWeight is the largest scheduling weight a tenant may ask for.
	MaxWeight = 1000
)

// Request is one inference request, published by a tenant on
// <prefix>/<tenant>/requests.
type Request struct {
	// V is the schema version; 0 (absent) means 1.
	V int `msgpack:"v,omitempty" json:"v,omitempty"`
	// ID is unique per tenant (1–128 bytes) and is the dedupe key.
	ID string `msgpack:"id" json:"id"`
	// Model names the model; empty means the tenant's default model.
	Model string `msgpack:"model,omitempty" json:"model,omitempty"`
	// Input is the input tensor. Required.
	Input Tensor `msgpack:"input" json:"input"`
	// Bound is the request's bound; zero means the tenant's default bound.
	Bound Bound `msgpack:"bound,omitempty" json:"bound,omitzero"`
	// Policy names a policy for this request; empty means the tenant's.
	Policy string `msgpack:"policy,omitempty" json:"policy,omitempty"`
	// SentAt is the client's send time in unix microseconds, echoed back.
	SentAt int64 `msgpack:"sent_at,omitempty" json:"sent_at,omitempty"`
	// ReplyTo, when set, is the topic the result goes to instead of
	// <prefix>/<tenant>/results; it must lie under <prefix>/<tenant>/.
	ReplyTo string `msgpack:"reply_to,omitempty" json:"reply_to,omitempty"`
	// Label is the ground-truth class, when known (>= 0); the agent records
	// whether the result was correct.
	Label *int `msgpack:"label,omitempty" json:"label,omitempty"`
	// Meta is echoed back in the result untouched. See the package doc for
	// the value types it may hold.
	Meta map[string]any `msgpack:"meta,omitempty" json:"meta,omitempty"`
}

// Tensor is an input tensor: a dtype, a shape and the elements in row-major
// order as raw little-endian bytes; or an encoded image as cameras send it:
// a Format (FormatJPEG or FormatPNG) and the file's bytes in Data, without
// dtype, shape or values. The agent decodes an image, converts it (gray ↔
// RGB) and resizes it to the model's input (models/imagein).
//
// On the wire `data` is msgpack bin (or str) and, in JSON, a base64 string.
// Instead of `data` a client may send `values`, an array of numbers (one per
// element, flat, row-major); validation converts them into Data with the
// dtype and clears Values. Sending both is a bad_request.
type Tensor struct {
	// DType is DTypeFloat32 or DTypeUint8; empty for an encoded image.
	DType string `msgpack:"dtype,omitempty" json:"dtype,omitempty"`
	// Shape holds the dimensions; each is > 0. Empty for an encoded image.
	Shape []int `msgpack:"shape,omitempty" json:"shape,omitempty"`
	// Format, when set, makes Data an encoded image file: FormatJPEG or
	// FormatPNG.
	Format string `msgpack:"format,omitempty" json:"format,omitempty"`
	// Data holds product(Shape) × size(DType) bytes, little-endian; or,
	// with Format, the image file's bytes.
	Data []byte `msgpack:"data,omitempty" json:"data,omitempty"`
	// Values is the alternative to Data: one number per element.
	Values []float64 `msgpack:"values,omitempty" json:"values,omitempty"`
}

// IsZero reports whether the tensor is entirely absent.
func (t Tensor) IsZero() bool {
	return t.DType == "" && t.Shape == nil && t.Format == "" && t.Data == nil && t.Values == nil
}

// Bound is what a request (or a tenant's default) asks of the serving: any
// subset of a latency deadline, a minimum accuracy, an energy budget, a
// confidence threshold and a fixed exit. A nil field is absent, which differs
// from zero.
type Bound struct {
	// LatencyMS: deadline = sent_at + LatencyMS when the request's sent_at
	// is plausible, else arrival at the agent + LatencyMS; > 0.
	LatencyMS *float64 `msgpack:"latency_ms,omitempty" json:"latency_ms,omitempty"`
	// Accuracy: minimum expected accuracy of the exit served; in (0, 1].
	Accuracy *float64 `msgpack:"accuracy,omitempty" json:"accuracy,omitempty"`
	// EnergyMJ: energy budget of the stages run, in millijoules; > 0.
	EnergyMJ *float64 `msgpack:"energy_mj,omitempty" json:"energy_mj,omitempty"`
	// Confidence: stop at the first exit whose top-1 probability reaches it;
	// in (0, 1].
	Confidence *float64 `msgpack:"confidence,omitempty" json:"confidence,omitempty"`
	// Exit: run exactly to this exit (1-based); >= 1.
	Exit *int `msgpack:"exit,omitempty" json:"exit,omitempty"`
}

// IsZero reports whether no field of the bound is set.
func (b Bound) IsZero() bool {
	return b.LatencyMS == nil && b.Accuracy == nil && b.EnergyMJ == nil &&
		b.Confidence == nil && b.Exit == nil
}

// Result is the agent's answer to one request (also to a malformed one),
// published on <prefix>/<tenant>/results or the request's reply_to.
type Result struct {
	// V is the schema version of the result (Version).
	V int `msgpack:"v,omitempty" json:"v,omitempty"`
	// ID echoes the request id; empty when it could not be read.
	ID string `msgpack:"id,omitempty" json:"id,omitempty"`
	// Tenant is the tenant the request came from.
	Tenant string `msgpack:"tenant,omitempty" json:"tenant,omitempty"`
	// Model is the model that served (or would have served) the request.
	Model string `msgpack:"model,omitempty" json:"model,omitempty"`
	// SentAt echoes the request's sent_at.
	SentAt int64 `msgpack:"sent_at,omitempty" json:"sent_at,omitempty"`
	// Meta echoes the request's meta.
	Meta map[string]any `msgpack:"meta,omitempty" json:"meta,omitempty"`

	// Status is StatusOK, StatusLate, StatusShed or StatusError.
	Status string `msgpack:"status" json:"status"`
	// Error is set when Status is StatusError (and may explain a shed).
	Error *Error `msgpack:"error,omitempty" json:"error,omitempty"`

	// Exit is the exit taken (1-based); 0 when none was.
	Exit int `msgpack:"exit,omitempty" json:"exit,omitempty"`
	// Exits is how many exits the model has.
	Exits int `msgpack:"exits,omitempty" json:"exits,omitempty"`
	// Class is the top-1 class; nil when nothing was served.
	Class *int `msgpack:"class,omitempty" json:"class,omitempty"`
	// Confidence is the softmax probability of Class.
	Confidence float64 `msgpack:"confidence,omitempty" json:"confidence,omitempty"`
	// Top is the top-k, best first, as [[class, prob], ...] on the wire.
	Top []ClassProb `msgpack:"top,omitempty" json:"top,omitempty"`

	// LatencyMS is the time from arrival at the agent to publish.
	LatencyMS float64 `msgpack:"latency_ms" json:"latency_ms"`
	// QueueMS is the time spent waiting in the scheduler.
	QueueMS float64 `msgpack:"queue_ms" json:"queue_ms"`
	// ComputeMS is the time spent running stages.
	ComputeMS float64 `msgpack:"compute_ms" json:"compute_ms"`
	// EnergyMJ is the energy of the stages run, in millijoules.
	EnergyMJ float64 `msgpack:"energy_mj" json:"energy_mj"`
	// EnergySource is where EnergyMJ comes from: "ina3221", "rapl" or "model".
	EnergySource string `msgpack:"energy_source,omitempty" json:"energy_source,omitempty"`
	// AccuracyEst is the profiled accuracy of the exit taken.
	AccuracyEst float64 `msgpack:"accuracy_est,omitempty" json:"accuracy_est,omitempty"`
	// BoundMet tells whether the request's bound held; nil for errors.
	BoundMet *bool `msgpack:"bound_met,omitempty" json:"bound_met,omitempty"`
	// DeadlineFrom says what a latency bound's deadline counted from:
	// DeadlineFromSentAt or DeadlineFromArrival; empty without one.
	DeadlineFrom string `msgpack:"deadline_from,omitempty" json:"deadline_from,omitempty"`
}

// What a latency bound's deadline counts from (Result.DeadlineFrom).
const (
	// DeadlineFromSentAt: the request's sent_at, which the agent's clock
	// found plausible; the deadline is what the tenant sees end to end.
	DeadlineFromSentAt = "sent_at"
	// DeadlineFromArrival: arrival at the agent (no sent_at, or one too far
	// in the future or too old to trust).
	DeadlineFromArrival = "arrival"
)

// NewErrorResult builds the status "error" result for a request that failed
// (to decode, validate or run). req may be nil or partial (as returned with a
// decoding error); its id, model, sent_at and meta are echoed. If err carries
// no *Error it is reported as CodeInternal.
func NewErrorResult(tenant string, req *Request, err error) *Result {
	r := &Result{V: Version, Tenant: tenant, Status: StatusError}
	var e *Error
	if errors.As(err, &e) && e != nil {
		r.Error = &Error{Code: e.Code, Message: e.Message}
		r.ID = e.ID
	} else {
		msg := "unknown error"
		if err != nil {
			msg = err.Error()
		}
		r.Error = &Error{Code: CodeInternal, Message: msg}
	}
	if req != nil {
		if validID(req.ID) {
			r.ID = req.ID
		}
		if checkName("model", req.Model) == nil {
			r.Model = req.Model
		}
		r.SentAt = req.SentAt
		r.Meta = req.Meta
	}
	return r
}

// ClassProb is one entry of Result.Top; on the wire it is the 2-array
// [class, prob].
type ClassProb struct {
	Class int
	Prob  float64
}

var (
	_ msgpack.CustomEncoder = ClassProb{}
	_ msgpack.CustomDecoder = (*ClassProb)(nil)
	_ json.Marshaler        = ClassProb{}
	_ json.Unmarshaler      = (*ClassProb)(nil)
)

// EncodeMsgpack writes [class, prob].
func (c ClassProb) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := enc.EncodeInt(int64(c.Class)); err != nil {
		return err
	}
	return enc.EncodeFloat64(c.Prob)
}

// DecodeMsgpack reads [class, prob].
func (c *ClassProb) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != 2 {
		return fmt.Errorf("schema: top entry: expected [class, prob], got %d elements", n)
	}
	if c.Class, err = dec.DecodeInt(); err != nil {
		return err
	}
	c.Prob, err = dec.DecodeFloat64()
	return err
}

// MarshalJSON writes [class, prob].
func (c ClassProb) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]any{c.Class, c.Prob})
}

// UnmarshalJSON reads [class, prob].
func (c *ClassProb) UnmarshalJSON(b []byte) error {
	var a []json.Number
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) != 2 {
		return fmt.Errorf("schema: top entry: expected [class, prob], got %d elements", len(a))
	}
	cl, err := a[0].Int64()
	if err != nil {
		f, ferr := a[0].Float64()
		if ferr != nil || f != float64(int(f)) {
			return fmt.Errorf("schema: top entry: class %q is not an integer", a[0])
		}
		cl = int64(f)
	}
	p, err := a[1].Float64()
	if err != nil {
		return err
	}
	c.Class, c.Prob = int(cl), p
	return nil
}

// Condition is one exit condition of the reference implementation's
// condition files: at its exit, stop when `<metric> <op> <threshold>` holds.
type Condition struct {
	// Metric is one of the Metric* constants.
	Metric string `msgpack:"metric" json:"metric"`
	// Op is one of the Op* constants.
	Op string `msgpack:"op" json:"op"`
	// Threshold is the value the metric is compared with.
	Threshold float64 `msgpack:"threshold" json:"threshold"`
}

// Condition metrics.
const (
	MetricResponseTime = "response_time"
	MetricConfidence   = "confidence"
	MetricAccuracy     = "accuracy"
	MetricEnergy       = "energy"
	MetricComputation  = "computation"
	MetricExit         = "exit"
)

// Condition operators.
const (
	OpLess      = "less"
	OpLessEq    = "less_eq"
	OpEqual     = "equal"
	OpGreater   = "greater"
	OpGreaterEq = "greater_eq"
)

// Control is a message on <prefix>/<tenant>/control (its fields, and
// Settings', are listed once in settings.go's settingFields): any subset of the
// tenant's default bound, policy, model, scheduling weight and exit
// conditions. A nil field leaves the setting as it is; a present field
// replaces it: a present Bound replaces the whole default bound (an empty
// Bound clears it), an empty Policy or Model returns to the agent's default,
// and a present empty Conditions list clears the conditions.
type Control struct {
	Bound      *Bound      `msgpack:"bound" json:"bound,omitempty"` // nil: absent (msgpack nil)
	Policy     *string     `msgpack:"policy,omitempty" json:"policy,omitempty"`
	Model      *string     `msgpack:"model,omitempty" json:"model,omitempty"`
	Weight     *float64    `msgpack:"weight,omitempty" json:"weight,omitempty"`
	Conditions []Condition `msgpack:"conditions" json:"conditions"` // nil: absent (encoded as null)
	// Params are the tenant's policy parameters (for example the
	// energy-budget policy's "joules" and "window_s"); a present map
	// replaces them all, an empty one clears them.
	Params map[string]float64 `msgpack:"params,omitempty" json:"params,omitzero"`
	// Infeasible is what happens to a request whose bound not even exit 1
	// can meet: "late" serves exit 1 anyway, "shed" answers at once; ""
	// returns to the agent's default.
	Infeasible *string `msgpack:"infeasible,omitempty" json:"infeasible,omitempty"`
	// QueueLimit caps the tenant's waiting requests (0: the agent's default).
	QueueLimit *int `msgpack:"queue_limit,omitempty" json:"queue_limit,omitempty"`
	// RateLimit caps the tenant's requests per second (0: no limit).
	RateLimit *float64 `msgpack:"rate_limit,omitempty" json:"rate_limit,omitempty"`
}

// IsEmpty reports whether the control changes nothing.
func (c *Control) IsEmpty() bool {
	for _, f := range settingFields {
		if f.present(c) {
			return false
		}
	}
	return true
}

// Settings are a tenant's effective settings, published (retained) on
// <prefix>/<tenant>/state after every change and stored by the agent.
type Settings struct {
	Bound      Bound       `msgpack:"bound,omitempty" json:"bound,omitzero"`
	Policy     string      `msgpack:"policy,omitempty" json:"policy,omitempty"`
	Model      string      `msgpack:"model,omitempty" json:"model,omitempty"`
	Weight     float64     `msgpack:"weight" json:"weight"`
	Conditions []Condition `msgpack:"conditions,omitempty" json:"conditions,omitempty"`
	// Params are the policy parameters (see Control.Params).
	Params map[string]float64 `msgpack:"params,omitempty" json:"params,omitempty"`
	// Infeasible is "late", "shed" or "" (the agent's default).
	Infeasible string `msgpack:"infeasible,omitempty" json:"infeasible,omitempty"`
	// QueueLimit and RateLimit are the tenant's admission limits (0: the
	// agent's defaults: its queue limit, no rate limit).
	QueueLimit int     `msgpack:"queue_limit,omitempty" json:"queue_limit,omitempty"`
	RateLimit  float64 `msgpack:"rate_limit,omitempty" json:"rate_limit,omitempty"`
}

// Apply returns s with the fields present in c replaced (see Control).
// It does not validate c.
func (s Settings) Apply(c *Control) Settings {
	if c == nil {
		return s
	}
	for _, f := range settingFields {
		if f.present(c) {
			f.apply(&s, c)
		}
	}
	return s
}

// clone returns a copy of b that shares no pointers with it.
func (b Bound) clone() Bound {
	cp := func(p *float64) *float64 {
		if p == nil {
			return nil
		}
		v := *p
		return &v
	}
	out := Bound{LatencyMS: cp(b.LatencyMS), Accuracy: cp(b.Accuracy), EnergyMJ: cp(b.EnergyMJ), Confidence: cp(b.Confidence)}
	if b.Exit != nil {
		v := *b.Exit
		out.Exit = &v
	}
	return out
}
