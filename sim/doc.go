// Package sim is Dělen's workload simulator: it plays a scenario of tenants
// against an agent over MQTT, measures what each tenant sees, and writes a
// report with plots.
//
// # Scenarios
//
// A scenario is a YAML file (see sim/scenarios/ and LoadScenario):
//
//	name: multi-tenant
//	duration: 20s          # how long requests are sent
//	seed: 1                # seeds every arrival process
//	tenants:
//	  - name: camera
//	    arrival: {process: poisson, rate: 200}
//	    bound: {latency_ms: 5}
//	    policy: deadline   # request policy; empty: the tenant's
//	    model: mnist-ee    # empty: the tenant's (the agent's default)
//	    qos: 1             # 0 or 1 (default 1)
//	    encoding: msgpack  # or json
//	    input: {dtype: uint8, offset: 0}
//	    controls:
//	      - at: 10s
//	        bound: {latency_ms: 2}
//
// Arrival processes (all generated ahead of time from the seed, so a
// schedule never depends on how fast the agent is):
//
//   - constant: one request every 1/rate seconds, from t = 0.
//   - poisson: exponential inter-arrival times with mean 1/rate.
//   - bursty: cycles of `off` at `rate` then `on` at `burst_rate`
//     (each cycle starts with the quiet phase).
//   - step: `rate` until the first of `steps` [{at, rate}], then each
//     step's rate from its `at` on.
//   - trace: the timestamps (seconds from the start, one per line; a
//     header line, blank lines and # comments are skipped; with several
//     CSV columns the first is used) of `file`, a path relative to the
//     scenario file. Timestamps at or after `duration` are ignored.
//
// bursty and step draw Poisson arrivals within each phase; `spacing:
// constant` spaces them evenly instead.
//
// Inputs are MNIST test images (`input.source: mnist`, the default), image
// (offset + n) mod 10000 for the n-th request, sent as uint8 or float32
// (scaled to 0..1) with their labels, so accuracy is measured. Models that
// do not take 28×28 digits (the resnet50-nano cost replica) get
// `input.source: random`: seeded uniform noise of `input.shape` (default
// [3, 224, 224]), without labels.
//
// Controls are published, retained, on <prefix>/<tenant>/control at their
// time `at`. Unless a tenant sets `reset: false`, the simulator first resets
// the tenant's settings on the agent (bound, policy, model, weight,
// conditions, params, infeasible, queue and rate limits back to the
// defaults), merged with the tenant's controls at 0 s into one control
// message, and waits until the agent's state topic confirms it (or refuses
// it: the refusal is a warning in the report), so every run starts from the
// same settings.
//
// # Comparing policies
//
// A scenario may carry `compare:`, a list of variants. The scenario is then
// run once per variant, one after the other against the same agent; each
// variant overrides, for every tenant, the request `policy` and `bound` and
// adds its other settings (conditions, params, weight, infeasible,
// queue_limit, rate_limit, model) to the tenant's initial control. Between
// variants the simulator waits (bounded by RunOptions.Drain) until the
// agent has answered every request of the previous variant, so one
// variant's backlog does not eat into the next one's machine.
//
// # Measurement
//
// Each tenant has an MQTT client of its own (clean session) that subscribes
// to its results before anything is sent. A single scheduler loop publishes
// every request at its scheduled time (open loop: publishes run in their
// own goroutines, so neither a slow agent nor a slow PUBACK delays the
// next send), stamped with `sent_at` and `label`. A request whose result
// has not arrived RunOptions.Timeout after it was sent is lost; after the
// last send the runner waits until every request is answered or lost.
//
// Per tenant the report has: sent, answered, lost, duplicates; statuses
// (ok, late, shed, error) and error codes; end-to-end latency (receive time
// − sent_at) of the served requests (ok and late) as p50/p95/p99/mean/max;
// the deadline-met ratio, the fraction of SENT requests served within the
// deadline (slo_ms, else the latency bound in force), so lost, shed and
// failed requests count as misses; the agent's bound_met ratio over the
// results that carry it; accuracy against the labels over served requests;
// mean energy per served request; the exit histogram; and the same as a
// per-second series bucketed by send time.
package sim
