package schema

import (
	"bytes"
	"encoding/json"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Encoding is the encoding of a payload.
type Encoding uint8

const (
	// MsgPack is the default encoding.
	MsgPack Encoding = iota
	// JSON is used for payloads whose first non-space byte is '{'.
	JSON
)

// String returns "msgpack" or "json".
func (e Encoding) String() string {
	if e == JSON {
		return "json"
	}
	return "msgpack"
}

// DetectEncoding returns JSON if the first byte of payload that is not a
// space, tab, CR or LF is '{', else MsgPack.
func DetectEncoding(payload []byte) Encoding {
	for _, c := range payload {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return JSON
		}
		return MsgPack
	}
	return MsgPack
}

func isBlank(payload []byte) bool {
	return len(bytes.TrimLeft(payload, " \t\r\n")) == 0
}

func newReader(payload []byte, enc Encoding) reader {
	if enc == JSON {
		return newJSONReader(payload)
	}
	return newMsgpackReader(payload)
}

// checkSize applies the byte limit (DefaultMaxBytes when maxBytes <= 0)
// before anything is decoded.
func checkSize(payload []byte, maxBytes int) *Error {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if len(payload) > maxBytes {
		return Errorf(CodeTooLarge, "payload: %d bytes, at most %d allowed", len(payload), maxBytes)
	}
	return nil
}

// DecodeRequest decodes a request payload (JSON if its first non-space byte
// is '{', else msgpack) and returns the encoding so that the result can be
// encoded the same way. It does not validate: call Request.Validate.
//
// A payload longer than maxBytes (DefaultMaxBytes when maxBytes <= 0) is
// refused with too_large without being decoded (its id is looked for in its
// first IDScanBytes bytes); anything malformed is
// bad_request. On error the *Request is still non-nil and holds what could be
// read (unvalidated); if the id could be read and is a valid id it is both in
// Request.ID and in the *Error's ID field, so the agent can answer it
// (NewErrorResult does).
func DecodeRequest(payload []byte, maxBytes int) (*Request, Encoding, error) {
	enc := DetectEncoding(payload)
	req := &Request{}
	if err := checkSize(payload, maxBytes); err != nil {
		// Not decoded; its id is looked for in its first bytes, so that
		// the tenant learns which request was refused.
		id := scanID(payload[:min(len(payload), IDScanBytes)], enc)
		req.ID, err.ID = id, id
		return req, enc, err
	}
	if isBlank(payload) {
		return req, enc, badRequest("payload: empty")
	}
	if err := decodeRequest(newReader(payload, enc), req); err != nil {
		id := req.ID
		if !validID(id) {
			id = scanID(payload, enc)
		}
		req.ID, err.ID = id, id
		return req, enc, err
	}
	return req, enc, nil
}

// EncodeRequest encodes a request (for clients, tests and the simulator).
func EncodeRequest(r *Request, enc Encoding) ([]byte, error) {
	return encode(r, enc, "request")
}

// EncodeResult encodes a result in enc (the encoding of the request). Map
// keys are sorted, so the encoding of a result is deterministic. It fails
// (internal) only for what JSON cannot carry: a NaN or Inf float.
func EncodeResult(r *Result, enc Encoding) ([]byte, error) {
	if enc == JSON {
		return encode(r, enc, "result")
	}
	b, err := appendResultMsgpack(make([]byte, 0, 512), r)
	if err != nil {
		return nil, Errorf(CodeInternal, "encode result: %v", err)
	}
	return b, nil
}

// DecodeResult decodes a result payload (for clients), with the same
// encoding detection, limits and error reporting as DecodeRequest.
func DecodeResult(payload []byte, maxBytes int) (*Result, Encoding, error) {
	return decodePayload(payload, maxBytes, false, decodeResult)
}

// decodePayload is the common path of the decoders: encoding detection,
// the size limit, the empty payload (an error unless emptyOK), then dec.
func decodePayload[T any](payload []byte, maxBytes int, emptyOK bool, dec func(reader, *T) *Error) (*T, Encoding, error) {
	enc := DetectEncoding(payload)
	v := new(T)
	if err := checkSize(payload, maxBytes); err != nil {
		return v, enc, err
	}
	if isBlank(payload) {
		if emptyOK {
			return v, enc, nil
		}
		return v, enc, badRequest("payload: empty")
	}
	if err := dec(newReader(payload, enc), v); err != nil {
		return v, enc, err
	}
	return v, enc, nil
}

// DecodeControl decodes a control payload. It does not validate: call
// Control.Validate. An empty payload (MQTT's way of clearing a retained
// message) decodes to an empty Control, which changes nothing.
func DecodeControl(payload []byte, maxBytes int) (*Control, Encoding, error) {
	return decodePayload(payload, maxBytes, true, decodeControl)
}

// EncodeControl encodes a control message (for clients).
func EncodeControl(c *Control, enc Encoding) ([]byte, error) {
	return encode(c, enc, "control")
}

// EncodeSettings encodes a tenant's effective settings (the state topic and
// the store).
func EncodeSettings(s *Settings, enc Encoding) ([]byte, error) {
	return encode(s, enc, "settings")
}

// DecodeSettings decodes settings as published on the state topic.
func DecodeSettings(payload []byte, maxBytes int) (*Settings, Encoding, error) {
	return decodePayload(payload, maxBytes, false, decodeSettings)
}

func encode(v any, enc Encoding, what string) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	if enc == JSON {
		je := json.NewEncoder(&buf)
		je.SetEscapeHTML(false)
		err = je.Encode(v)
	} else {
		me := msgpack.GetEncoder()
		me.Reset(&buf)
		me.SetSortMapKeys(true)
		me.UseCompactInts(true)
		err = me.Encode(v)
		msgpack.PutEncoder(me)
	}
	if err != nil {
		return nil, Errorf(CodeInternal, "encode %s: %v", what, err)
	}
	b := buf.Bytes()
	if enc == JSON {
		b = bytes.TrimSuffix(b, []byte("\n"))
	}
	return b, nil
}

// ---------------------------------------------------------------- fields

func readInt(r reader, path string) (int, *Error) {
	n, err := r.num(path)
	if err != nil {
		return 0, err
	}
	v, err := n.int(path, math.MinInt, math.MaxInt)
	return int(v), err
}

func readInt64(r reader, path string) (int64, *Error) {
	n, err := r.num(path)
	if err != nil {
		return 0, err
	}
	return n.int(path, math.MinInt64, math.MaxInt64)
}

func readFloat(r reader, path string) (float64, *Error) {
	n, err := r.num(path)
	return n.float(), err
}

func readFloatPtr(r reader, path string) (*float64, *Error) {
	f, err := readFloat(r, path)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

func readIntPtr(r reader, path string) (*int, *Error) {
	v, err := readInt(r, path)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// fields iterates over a map, skipping nil values (absent) and calling f
// for every other key; f reads or skips the value.
func fields(r reader, path string, f func(key string) *Error) *Error {
	it, err := r.mapStart(path)
	if err != nil {
		return err
	}
	for {
		k, ok, err := it.next(r)
		if err != nil || !ok {
			return err
		}
		if isNil, err := r.isNil(); err != nil || isNil {
			if err != nil {
				return err
			}
			continue
		}
		if err := f(k); err != nil {
			return err
		}
	}
}

func (it *iter) next(r reader) (string, bool, *Error) { return r.mapNext(it) }

func decodeRequest(r reader, req *Request) *Error {
	err := fields(r, "", func(k string) *Error {
		var err *Error
		switch k {
		case "v":
			req.V, err = readInt(r, "v")
		case "id":
			req.ID, err = r.str("id")
		case "model":
			req.Model, err = r.str("model")
		case "input":
			err = readTensor(r, &req.Input)
		case "bound":
			err = readBound(r, "bound", &req.Bound)
		case "policy":
			req.Policy, err = r.str("policy")
		case "sent_at":
			req.SentAt, err = readInt64(r, "sent_at")
		case "reply_to":
			req.ReplyTo, err = r.str("reply_to")
		case "label":
			req.Label, err = readIntPtr(r, "label")
		case "meta":
			req.Meta, err = readMeta(r)
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	return r.end()
}

func readTensor(r reader, t *Tensor) *Error {
	*t = Tensor{}
	err := fields(r, "input", func(k string) *Error {
		var err *Error
		switch k {
		case "dtype":
			t.DType, err = r.str("input.dtype")
		case "shape":
			t.Shape, err = readShape(r)
		case "format":
			t.Format, err = r.str("input.format")
		case "data":
			t.Data, err = r.blob("input.data")
		case "values":
			t.Values, err = readValues(r)
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	if t.Data != nil && t.Values != nil {
		return badRequest("input: data and values are mutually exclusive")
	}
	return nil
}

func readShape(r reader) ([]int, *Error) {
	const path = "input.shape"
	it, err := r.arrayStart(path)
	if err != nil {
		return nil, err
	}
	shape := make([]int, 0, min(max(it.n, 4), MaxRank))
	for {
		more, err := r.arrayNext(&it)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		if len(shape) == MaxRank {
			return nil, badRequest("%s: more than %d dimensions", path, MaxRank)
		}
		d, err := readInt(r, path)
		if err != nil {
			return nil, err
		}
		shape = append(shape, d)
	}
	if _, err := shapeElements(path, shape); err != nil {
		return nil, err
	}
	return shape, nil
}

func readValues(r reader) ([]float64, *Error) {
	return r.floats("input.values")
}

func readBound(r reader, path string, b *Bound) *Error {
	*b = Bound{}
	return fields(r, path, func(k string) *Error {
		var err *Error
		switch k {
		case "latency_ms":
			b.LatencyMS, err = readFloatPtr(r, path+".latency_ms")
		case "accuracy":
			b.Accuracy, err = readFloatPtr(r, path+".accuracy")
		case "energy_mj":
			b.EnergyMJ, err = readFloatPtr(r, path+".energy_mj")
		case "confidence":
			b.Confidence, err = readFloatPtr(r, path+".confidence")
		case "exit":
			b.Exit, err = readIntPtr(r, path+".exit")
		default:
			err = r.skip()
		}
		return err
	})
}

// readMeta reads meta: a map of at most MaxMetaBytes encoded bytes and
// MaxMetaDepth levels. An empty map reads as nil (it is not re-encoded).
func readMeta(r reader) (map[string]any, *Error) {
	v, err := r.meta("meta")
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badRequest("meta: expected a map, got %s", goKind(v))
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

func goKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case []byte:
		return "binary"
	case bool:
		return "a bool"
	case nil:
		return "nil"
	}
	return "a number"
}

func readConditions(r reader) ([]Condition, *Error) {
	const path = "conditions"
	it, err := r.arrayStart(path)
	if err != nil {
		return nil, err
	}
	cs := []Condition{}
	for {
		more, err := r.arrayNext(&it)
		if err != nil {
			return nil, err
		}
		if !more {
			return cs, nil
		}
		if len(cs) == MaxConditions {
			return nil, badRequest("%s: more than %d entries (one per exit)", path, MaxConditions)
		}
		var c Condition
		err = fields(r, path+"[]", func(k string) *Error {
			var err *Error
			switch k {
			case "metric":
				c.Metric, err = r.str(path + "[].metric")
			case "op":
				c.Op, err = r.str(path + "[].op")
			case "threshold":
				c.Threshold, err = readFloat(r, path+"[].threshold")
			default:
				err = r.skip()
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
}

func decodeControl(r reader, c *Control) *Error {
	err := fields(r, "", func(k string) *Error {
		if f := settingByName[k]; f != nil {
			return f.decodeControl(r, c)
		}
		return r.skip()
	})
	if err != nil {
		return err
	}
	return r.end()
}

func decodeSettings(r reader, s *Settings) *Error {
	err := fields(r, "", func(k string) *Error {
		if f := settingByName[k]; f != nil {
			return f.decodeSettings(r, s)
		}
		return r.skip()
	})
	if err != nil {
		return err
	}
	return r.end()
}

func decodeResult(r reader, res *Result) *Error {
	err := fields(r, "", func(k string) *Error {
		var err *Error
		switch k {
		case "v":
			res.V, err = readInt(r, "v")
		case "id":
			res.ID, err = r.str("id")
		case "tenant":
			res.Tenant, err = r.str("tenant")
		case "model":
			res.Model, err = r.str("model")
		case "sent_at":
			res.SentAt, err = readInt64(r, "sent_at")
		case "meta":
			res.Meta, err = readMeta(r)
		case "status":
			res.Status, err = r.str("status")
		case "error":
			e := &Error{}
			err = fields(r, "error", func(k string) *Error {
				var err *Error
				switch k {
				case "code":
					e.Code, err = r.str("error.code")
				case "message":
					e.Message, err = r.str("error.message")
				default:
					err = r.skip()
				}
				return err
			})
			res.Error = e
		case "exit":
			res.Exit, err = readInt(r, "exit")
		case "exits":
			res.Exits, err = readInt(r, "exits")
		case "class":
			res.Class, err = readIntPtr(r, "class")
		case "confidence":
			res.Confidence, err = readFloat(r, "confidence")
		case "top":
			res.Top, err = readTop(r)
		case "latency_ms":
			res.LatencyMS, err = readFloat(r, "latency_ms")
		case "queue_ms":
			res.QueueMS, err = readFloat(r, "queue_ms")
		case "compute_ms":
			res.ComputeMS, err = readFloat(r, "compute_ms")
		case "energy_mj":
			res.EnergyMJ, err = readFloat(r, "energy_mj")
		case "energy_source":
			res.EnergySource, err = r.str("energy_source")
		case "accuracy_est":
			res.AccuracyEst, err = readFloat(r, "accuracy_est")
		case "bound_met":
			var b bool
			b, err = r.boolean("bound_met")
			res.BoundMet = &b
		case "deadline_from":
			res.DeadlineFrom, err = r.str("deadline_from")
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	return r.end()
}

func readTop(r reader) ([]ClassProb, *Error) {
	const path = "top"
	it, err := r.arrayStart(path)
	if err != nil {
		return nil, err
	}
	var top []ClassProb
	for {
		more, err := r.arrayNext(&it)
		if err != nil {
			return nil, err
		}
		if !more {
			return top, nil
		}
		pair, err := r.arrayStart(path + "[]")
		if err != nil {
			return nil, err
		}
		var cp ClassProb
		for i := 0; ; i++ {
			more, err := r.arrayNext(&pair)
			if err != nil {
				return nil, err
			}
			if !more {
				if i != 2 {
					return nil, badRequest("%s[]: expected [class, prob], got %d elements", path, i)
				}
				break
			}
			switch i {
			case 0:
				cp.Class, err = readInt(r, path+"[].class")
			case 1:
				cp.Prob, err = readFloat(r, path+"[].prob")
			default:
				return nil, badRequest("%s[]: expected [class, prob], got more elements", path)
			}
			if err != nil {
				return nil, err
			}
		}
		top = append(top, cp)
	}
}

// scanID looks for a top-level "id" string in a payload that failed to
// decode, skipping every other value; it returns "" unless it finds a valid
// id before the payload stops making sense.
func scanID(payload []byte, enc Encoding) string {
	r := newReader(payload, enc)
	it, err := r.mapStart("")
	if err != nil {
		return ""
	}
	id := ""
	for {
		k, ok, err := r.mapNext(&it)
		if err != nil || !ok {
			return id
		}
		if k != "id" {
			if r.skip() != nil {
				return id
			}
			continue
		}
		s, err := r.str("id")
		if err != nil {
			return id // not a string, or the payload broke here
		}
		if validID(s) {
			id = s // the last one wins, as in a full decode
		} else {
			id = ""
		}
	}
}

// readParams reads a map of policy parameters (string keys, numbers).
func readParams(r reader, path string) (map[string]float64, *Error) {
	var out map[string]float64
	err := fields(r, path, func(k string) *Error {
		if len(out) >= MaxConditions {
			return badRequest("%s: more than %d entries", path, MaxConditions)
		}
		v, err := readFloat(r, path+"."+k)
		if err != nil {
			return err
		}
		if out == nil {
			out = map[string]float64{}
		}
		out[k] = v
		return nil
	})
	return out, err
}
