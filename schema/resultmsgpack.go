package schema

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// appendResultMsgpack appends r in msgpack, byte for byte what the
// msgpack library writes for it with sorted map keys and compact ints (the
// encoding every result had before; TestResultMsgpackAsTheLibraryWrites):
// a map of the fields in declaration order, omitempty fields left out
// when empty, ints in their shortest form, floats as float64. Only meta
// goes through the library. A result is encoded for every request, and
// reflection over the struct cost several µs of each.
func appendResultMsgpack(b []byte, r *Result) ([]byte, error) {
	n := 5 // status, latency_ms, queue_ms, compute_ms, energy_mj
	for _, set := range [...]bool{r.V != 0, r.ID != "", r.Tenant != "", r.Model != "", r.SentAt != 0, len(r.Meta) > 0,
		r.Error != nil, r.Exit != 0, r.Exits != 0, r.Class != nil, r.Confidence != 0, len(r.Top) > 0, r.EnergySource != "",
		r.AccuracyEst != 0, r.BoundMet != nil, r.DeadlineFrom != ""} {
		if set {
			n++
		}
	}
	if n < 16 { // fixmap, else map 16: at most 20 fields
		b = append(b, 0x80|byte(n))
	} else {
		b = binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	if r.V != 0 {
		b = mpInt(mpStr(b, "v"), int64(r.V))
	}
	if r.ID != "" {
		b = mpStr(mpStr(b, "id"), r.ID)
	}
	if r.Tenant != "" {
		b = mpStr(mpStr(b, "tenant"), r.Tenant)
	}
	if r.Model != "" {
		b = mpStr(mpStr(b, "model"), r.Model)
	}
	if r.SentAt != 0 {
		b = mpInt(mpStr(b, "sent_at"), r.SentAt)
	}
	if len(r.Meta) > 0 {
		b = mpStr(b, "meta")
		var buf bytes.Buffer
		me := msgpack.GetEncoder()
		me.Reset(&buf)
		me.SetSortMapKeys(true)
		me.UseCompactInts(true)
		err := me.Encode(r.Meta)
		msgpack.PutEncoder(me)
		if err != nil {
			return nil, err
		}
		b = append(b, buf.Bytes()...)
	}
	b = mpStr(mpStr(b, "status"), r.Status)
	if r.Error != nil {
		b = append(mpStr(b, "error"), 0x82)
		b = mpStr(mpStr(b, "code"), r.Error.Code)
		b = mpStr(mpStr(b, "message"), r.Error.Message)
	}
	if r.Exit != 0 {
		b = mpInt(mpStr(b, "exit"), int64(r.Exit))
	}
	if r.Exits != 0 {
		b = mpInt(mpStr(b, "exits"), int64(r.Exits))
	}
	if r.Class != nil {
		b = mpInt(mpStr(b, "class"), int64(*r.Class))
	}
	if r.Confidence != 0 {
		b = mpFloat(mpStr(b, "confidence"), r.Confidence)
	}
	if len(r.Top) > 0 {
		b = mpArrayLen(mpStr(b, "top"), len(r.Top))
		for _, c := range r.Top {
			b = mpFloat(mpInt(append(b, 0x92), int64(c.Class)), c.Prob)
		}
	}
	b = mpFloat(mpStr(b, "latency_ms"), r.LatencyMS)
	b = mpFloat(mpStr(b, "queue_ms"), r.QueueMS)
	b = mpFloat(mpStr(b, "compute_ms"), r.ComputeMS)
	b = mpFloat(mpStr(b, "energy_mj"), r.EnergyMJ)
	if r.EnergySource != "" {
		b = mpStr(mpStr(b, "energy_source"), r.EnergySource)
	}
	if r.AccuracyEst != 0 {
		b = mpFloat(mpStr(b, "accuracy_est"), r.AccuracyEst)
	}
	if r.BoundMet != nil {
		b = mpStr(b, "bound_met")
		if *r.BoundMet {
			b = append(b, 0xc3)
		} else {
			b = append(b, 0xc2)
		}
	}
	if r.DeadlineFrom != "" {
		b = mpStr(mpStr(b, "deadline_from"), r.DeadlineFrom)
	}
	return b, nil
}

// mpStr appends s as a msgpack str.
func mpStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// mpInt appends n in its shortest msgpack form.
func mpInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= math.MaxInt8:
		return append(b, byte(n))
	case n >= -32 && n < 0:
		return append(b, byte(0xe0|(n+32)))
	case n > 0 && n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n > 0 && n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n > 0 && n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n > 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

// mpFloat appends f as a msgpack float64.
func mpFloat(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(f))
}

// mpArrayLen appends an array header of n elements.
func mpArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}
