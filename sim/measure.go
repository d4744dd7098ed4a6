package sim

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/delen-edge/delen/schema"
)

// deadlineMS is the deadline the simulator judges request at (sent at
// offset at) against: slo_ms, else the request's latency bound when it
// sends a bound, else the latency of the tenant default bound set by the
// latest control before at (after the reset, none). 0 means none.
func (tr *tenantRun) deadlineMS(at time.Duration) float64 {
	if tr.spec.SLOMS != nil {
		return *tr.spec.SLOMS
	}
	if !tr.bound.IsZero() {
		if tr.bound.LatencyMS != nil {
			return *tr.bound.LatencyMS
		}
		return 0
	}
	lat := 0.0
	for _, c := range tr.spec.Controls {
		if c.At.D() > at {
			break
		}
		if c.Bound != nil {
			lat = 0
			if c.Bound.LatencyMS != nil {
				lat = *c.Bound.LatencyMS
			}
		}
	}
	return lat
}

// bucketAcc accumulates one second of a tenant's series.
type bucketAcc struct {
	b                      Bucket
	lat                    []float64
	dlMet, dlN, bmMet, bmN int
	correct, labelled      int
}

// summarize computes the tenant's summary, its request records, its
// control events and warnings, as of end.
func (tr *tenantRun) summarize(end time.Time) (TenantSummary, []Record, []ControlEvent, []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r := tr.r
	timeout := r.opt.Timeout.Microseconds()
	start := r.start.UnixMicro()
	sum := TenantSummary{Tenant: tr.spec.Name, Variant: r.variant, Policy: tr.spec.Policy, Model: tr.spec.Model,
		Scheduled: len(tr.reqs), Statuses: map[string]int{}, Errors: map[string]int{}, Exits: []int{}, Series: []Bucket{}}
	var lat, agentLat []float64
	var dlMet, dlN, bmMet, bmN, correct, labelled, served int
	var accEst float64
	var accEstN int
	var servedEnergy float64
	slo, sloConst := -1.0, true
	var buckets []*bucketAcc
	bucket := func(sentAt int64) *bucketAcc {
		i := max(0, int((sentAt-start)/1e6))
		for len(buckets) <= i {
			buckets = append(buckets, &bucketAcc{b: Bucket{T: len(buckets), Exits: []int{}}})
		}
		return buckets[i]
	}
	// Every second of the scenario has a bucket, even an empty one.
	bucket(start + r.duration.Microseconds() - 1)
	addExit := func(ex *[]int, k int) {
		for len(*ex) < k {
			*ex = append(*ex, 0)
		}
		(*ex)[k-1]++
	}
	var recs []Record
	var lateResults, dups, sendErrors int
	for seq := range tr.reqs {
		q := &tr.reqs[seq]
		if q.sentAt == 0 {
			continue // never sent (cancelled)
		}
		rec := Record{Variant: r.variant, Tenant: tr.spec.Name, ID: tr.idPrefix + "-" + fmt.Sprint(seq), SentAt: q.sentAt,
			Class: -1, Label: -1, Correct: -1, BoundMet: -1, Model: q.res.model}
		if tr.images != nil {
			rec.Label = tr.images.Label((tr.spec.Input.Offset + seq) % tr.images.Len())
		}
		if q.failed && q.recvAt == 0 {
			sendErrors++
			rec.Status = "send_error"
			recs = append(recs, rec)
			continue
		}
		sum.Sent++
		dups += q.dups
		dl := tr.deadlineMS(q.at)
		rec.DeadlineMS = dl
		if slo < 0 {
			slo = dl
		} else if slo != dl {
			sloConst = false
		}
		b := bucket(q.sentAt)
		b.b.Sent++
		if dl > 0 {
			dlN++
			b.dlN++
		}
		if q.recvAt != 0 {
			rec.ReceivedAt = q.recvAt
			rec.LatencyMS = float64(q.recvAt-q.sentAt) / 1000
			rec.Code, rec.Exit, rec.Class, rec.EnergyMJ = q.res.code, q.res.exit, q.res.class, q.res.energyMJ
			rec.BoundMet, rec.AgentLatencyMS, rec.AccuracyEst = q.res.boundMet, q.res.agentLatencyMS, q.res.accuracyEst
			rec.Confidence = q.res.confidence
			rec.ComputeMS, rec.QueueMS = q.res.computeMS, q.res.queueMS
			if rec.Label >= 0 && rec.Class >= 0 {
				rec.Correct = 0
				if rec.Label == rec.Class {
					rec.Correct = 1
				}
			}
		}
		if q.recvAt == 0 || q.recvAt-q.sentAt > timeout {
			if q.recvAt != 0 {
				lateResults++
			}
			rec.Status = "lost"
			sum.Lost++
			b.b.Lost++
			recs = append(recs, rec)
			continue
		}
		rec.Status = q.res.status
		sum.Answered++
		b.b.Answered++
		sum.Statuses[q.res.status]++
		if q.res.code != "" {
			sum.Errors[q.res.code]++
		}
		sum.EnergyTotalMJ += q.res.energyMJ
		b.b.EnergyMJ += q.res.energyMJ
		switch q.res.status {
		case schema.StatusOK:
			b.b.OK++
		case schema.StatusLate:
			b.b.Late++
		case schema.StatusShed:
			b.b.Shed++
		default:
			b.b.Error++
		}
		if q.res.boundMet >= 0 {
			bmN++
			b.bmN++
			bmMet += q.res.boundMet
			b.bmMet += q.res.boundMet
		}
		if q.res.status == schema.StatusOK || q.res.status == schema.StatusLate {
			served++
			lat = append(lat, rec.LatencyMS)
			b.lat = append(b.lat, rec.LatencyMS)
			agentLat = append(agentLat, q.res.agentLatencyMS)
			servedEnergy += q.res.energyMJ
			if q.res.accuracyEst > 0 {
				accEst += q.res.accuracyEst
				accEstN++
			}
			if q.res.exit > 0 {
				addExit(&sum.Exits, q.res.exit)
				addExit(&b.b.Exits, q.res.exit)
			}
			if dl > 0 && rec.LatencyMS <= dl {
				dlMet++
				b.dlMet++
			}
			if rec.Correct >= 0 {
				labelled++
				b.labelled++
				correct += rec.Correct
				b.correct += rec.Correct
			}
		}
		recs = append(recs, rec)
	}
	secs := r.duration.Seconds()
	sum.SendErrors, sum.LateResults, sum.Duplicates, sum.ForeignResults = sendErrors, lateResults, dups, tr.foreign
	sum.OfferedRPS = float64(sum.Sent) / secs
	sum.ServedRPS = float64(served) / secs
	sum.LatencyMS = stats(lat)
	sum.AgentLatencyMS = stats(agentLat)
	if sloConst && slo > 0 {
		v := slo
		sum.SLOMS = &v
	}
	sum.DeadlineMet = ratioOf(dlMet, dlN)
	sum.BoundMet = ratioOf(bmMet, bmN)
	sum.Accuracy = ratioOf(correct, labelled)
	if accEstN > 0 {
		v := accEst / float64(accEstN)
		sum.AccuracyEst = &v
	}
	if served > 0 {
		sum.EnergyMJ = servedEnergy / float64(served)
	}
	if len(sum.Errors) == 0 {
		sum.Errors = nil
	}
	for _, b := range buckets {
		if len(b.lat) > 0 {
			st := stats(b.lat)
			b.b.P50MS, b.b.P95MS = st.P50, st.P95
		}
		b.b.DeadlineMet = ratioOf(b.dlMet, b.dlN)
		b.b.BoundMet = ratioOf(b.bmMet, b.bmN)
		b.b.Accuracy = ratioOf(b.correct, b.labelled)
		sum.Series = append(sum.Series, b.b)
	}

	var ctl []ControlEvent
	var warn []string
	for _, ce := range tr.controls {
		ctl = append(ctl, ce.ev)
		switch ce.ev.Result {
		case "refused", "unsent":
			warn = append(warn, fmt.Sprintf("tenant %s: control at %gs %s: %s", tr.spec.Name, ce.ev.AtS, ce.ev.Result, ce.ev.Error))
		case "unconfirmed":
			warn = append(warn, fmt.Sprintf("tenant %s: control at %gs: the agent did not confirm it on %s", tr.spec.Name, ce.ev.AtS, r.topics.State(tr.spec.Name)))
		}
	}
	if sendErrors > 0 {
		warn = append(warn, fmt.Sprintf("tenant %s: %d publishes failed", tr.spec.Name, sendErrors))
	}
	if tr.foreign > 0 {
		warn = append(warn, fmt.Sprintf("tenant %s: %d results on %s belong to no request of this run (another client or an earlier run)",
			tr.spec.Name, tr.foreign, r.topics.Results(tr.spec.Name)))
	}
	for _, code := range slices.Sorted(maps.Keys(sum.Errors)) {
		if code != schema.CodeOverloaded {
			warn = append(warn, fmt.Sprintf("tenant %s: %d results with error %s", tr.spec.Name, sum.Errors[code], code))
		}
	}
	return sum, recs, ctl, warn
}
