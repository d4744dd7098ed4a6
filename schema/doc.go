// Package schema is Dělen's wire contract: the payloads tenants and the agent
// exchange over MQTT, their msgpack and JSON codecs, their validation, and the
// topic names.
//
// The contract is written down in docs/protocol.md; this package is
// the only place that knows it. It imports nothing but the standard library and
// github.com/vmihailenco/msgpack/v5.
//
// # Encodings
//
// A payload whose first non-space byte is '{' is JSON; anything else is
// msgpack. Field names are the same in both. The decoders return the
// [Encoding] they saw so that the agent answers in kind (Node-RED speaks JSON).
//
// # Decoding untrusted payloads
//
// [DecodeRequest] and [DecodeControl] read payloads published by tenants. They
// never panic, refuse payloads above a byte limit before looking at them,
// allocate at most in proportion to the payload, bound the nesting and size of
// meta, and report every problem as an [*Error] with a code from this package
// ([CodeBadRequest], [CodeTooLarge], ...) and a message naming the field. When
// a request is malformed but its id could be read, the id is in [Error.ID] (and
// in the returned partial *Request), so the agent can still answer it.
//
// Unknown fields are ignored; a field whose value is nil (msgpack nil, JSON
// null) counts as absent. Integer fields accept integral floating-point
// numbers (JavaScript clients have no integers). Strings must be valid UTF-8.
//
// # meta
//
// meta is echoed back as map[string]any. Keys must be strings at every level;
// values are nil, bool, int64 (uint64 above math.MaxInt64), float64 (float32
// stays float32 in msgpack), string, []byte (msgpack bin only), []any and
// map[string]any. msgpack extension types and non-finite floats are refused.
// In JSON, a number with an integral value becomes int64 (or uint64), so
// {"n": 1.0} comes back as {"n": 1}: the same number to every JSON reader.
//
// # Contract details
//
// docs/protocol.md leaves some points open; this package settles them as follows.
//
//   - Limits: payloads above DefaultMaxBytes (8 MiB, or the agent's limit)
//     get too_large without being decoded; their id is looked for in their
//     first IDScanBytes (64 KiB), so the result names the request when the
//     id stands before the bulk of the payload. A tensor has
//     at most MaxRank (16) dimensions and MaxElements (1<<24) elements; ids
//     are 1–128 bytes; model and policy names at most 128 bytes; meta at most
//     MaxMetaDepth (16) levels and MaxMetaBytes (64 KiB) encoded.
//   - `v` absent or 0 means 1; a higher version is bad_request.
//   - A payload must be exactly one map: trailing bytes are bad_request.
//   - `values` is a flat, row-major array with one number per element; it is
//     accepted in msgpack too. `data` may be msgpack bin or str; in JSON,
//     base64 with or without padding.
//   - `reply_to` must name a topic strictly below <prefix>/<tenant>/, without
//     wildcards or NUL, and not <prefix>/<tenant>/requests, /control or
//     /state (the agent would read its own result back).
//   - Control: a present field replaces the setting (a present bound
//     replaces the whole default bound; {} clears it; "" resets policy or
//     model; conditions [] clears the conditions); an absent or null field
//     keeps it. An empty payload (a cleared retained message) changes
//     nothing. weight is in (0, 1000]; at most 64 conditions.
//   - Result: `class` and `bound_met` are omitted when nothing was decided
//     (errors), `exit`, `exits`, `confidence`, `top`, `accuracy_est`,
//     `energy_source`, `deadline_from` when zero; `latency_ms`, `queue_ms`, `compute_ms` and
//     `energy_mj` are always present. `top` is [[class, prob], ...].
//   - Status topics <prefix>/_agents/<agent-id>/status parse (Topics.Parse)
//     to the agent id and KindStatus; "_agents" is not a valid tenant name.
package schema
