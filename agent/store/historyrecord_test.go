package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/delen-edge/delen/schema"
	badger "github.com/dgraph-io/badger/v4"
)

// historyCases are records as the agent writes them: served, late, with
// and without a label, meta of every kind a request may carry, arrivals in
// UTC and in other zones.
func historyCases() []Record {
	class, label, wrong := 7, 7, 3
	yes, no := true, false
	live := 0.9731
	at := time.Date(2026, 12, 1, 20, 30, 1, 123456789, time.UTC)
	served := &schema.Result{V: 1, ID: "r1", Tenant: "cam", Model: "mnist-ee", SentAt: 1796156663123456,
		Status: schema.StatusOK, Exit: 3, Exits: 3, Class: &class, Confidence: 0.99871,
		Top:       []schema.ClassProb{{Class: 7, Prob: 0.99871}, {Class: 1, Prob: 0.0011}},
		LatencyMS: 0.412, QueueMS: 0.01, ComputeMS: 0.088, EnergyMJ: 0.44, EnergySource: "model",
		AccuracyEst: 0.991, BoundMet: &yes, DeadlineFrom: schema.DeadlineFromSentAt}
	withMeta := *served
	withMeta.Meta = map[string]any{"frame": int64(12), "big": uint64(1 << 60), "neg": int64(-3), "f": 0.1,
		"f32": float32(0.1), "s": "x", "b": []byte{0, 1, 2}, "nil": nil, "ok": true,
		"list": []any{int64(1), "two", []any{3.5}}, "map": map[string]any{"k": map[string]any{"deep": int64(1)}}}
	late := *served
	late.Status, late.BoundMet = schema.StatusLate, &no
	return []Record{
		{Tenant: "cam", ID: "r1", At: at, Result: served, InputDigest: "0123456789abcdef"},
		{Tenant: "cam", ID: "r2", At: at, Result: &withMeta, InputDigest: "0123456789abcdef", Label: &label, Correct: &yes, LiveAccuracy: &live},
		{Tenant: "cam", ID: "r3", At: at.In(time.FixedZone("CET", 3600)), Result: &late, Label: &wrong, Correct: &no},
		{Tenant: "t", ID: "r4", At: at.In(time.FixedZone("", -9*3600-30*60)), Result: served, Label: &label},
		{Tenant: "t", ID: "r5", At: at, Result: &schema.Result{Status: schema.StatusOK}},
		{Tenant: "t", ID: "r6", At: at}, // no result at all
	}
}

// TestHistoryRecordReadsAsJSONDid: a record written in the binary
// encoding (its result as published, in msgpack or JSON, or encoded by
// the store) reads back as the same record written as JSON did, so
// `delen history --json` prints the same either way.
func TestHistoryRecordReadsAsJSONDid(t *testing.T) {
	for _, rec := range historyCases() {
		old, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Record
		if err := unmarshalRecord(old, &fromJSON); err != nil {
			t.Fatalf("%s: JSON record: %v", rec.ID, err)
		}
		want, _ := json.Marshal(fromJSON)
		for _, tc := range []struct {
			name    string
			payload func() []byte
		}{
			{"encoded by the store", func() []byte { return nil }},
			{"published as msgpack", func() []byte { b, _ := schema.EncodeResult(rec.Result, schema.MsgPack); return b }},
			{"published as JSON", func() []byte { b, _ := schema.EncodeResult(rec.Result, schema.JSON); return b }},
		} {
			r := rec
			if r.Result != nil {
				r.ResultPayload = tc.payload()
			}
			b, err := r.marshal()
			if err != nil {
				t.Fatalf("%s, %s: %v", rec.ID, tc.name, err)
			}
			if b[0] != historyBinary || len(b) >= len(old) && r.Result != nil {
				t.Errorf("%s, %s: %d bytes starting %#x; want the binary form, shorter than JSON's %d", rec.ID, tc.name, len(b), b[0], len(old))
			}
			var got Record
			if err := unmarshalRecord(b, &got); err != nil {
				t.Fatalf("%s, %s: %v", rec.ID, tc.name, err)
			}
			if g, _ := json.Marshal(got); !bytes.Equal(g, want) {
				t.Errorf("%s, %s:\n got %s\nwant %s", rec.ID, tc.name, g, want)
			}
			if !got.At.Equal(rec.At) {
				t.Errorf("%s, %s: at %v, want %v", rec.ID, tc.name, got.At, rec.At)
			}
		}
	}
}

// TestHistoryReadsOldAndNewRecords: History returns records written as
// JSON by an earlier version beside binary ones, in arrival order.
func TestHistoryReadsOldAndNewRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := historyCases()
	for i := range cases {
		cases[i].Tenant = "cam"
		cases[i].At = cases[i].At.Add(time.Duration(i) * time.Millisecond)
	}
	var oldOnes, newOnes []Record
	for i, r := range cases {
		if i%2 == 0 {
			oldOnes = append(oldOnes, r)
		} else {
			newOnes = append(newOnes, r)
		}
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		for _, r := range oldOnes {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := txn.Set(HistoryKey(r.Tenant, r.At, r.ID), b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHistory(newOnes, time.Hour); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	defer s.Close()
	got, err := s.History("cam", time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cases) {
		t.Fatalf("%d records, want %d", len(got), len(cases))
	}
	for i, r := range got {
		b, _ := json.Marshal(cases[i])
		var want Record
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		wb, _ := json.Marshal(want)
		if gb, _ := json.Marshal(r); !bytes.Equal(gb, wb) {
			t.Errorf("record %d:\n got %s\nwant %s", i, gb, wb)
		}
	}
}

// FuzzUnmarshalRecord: any stored bytes decode or fail, never panic, and a
// record that decodes writes back to one that reads the same.
func FuzzUnmarshalRecord(f *testing.F) {
	for _, r := range historyCases() {
		b, err := r.marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		j, _ := json.Marshal(r)
		f.Add(j)
	}
	f.Add([]byte{historyBinary})
	f.Add([]byte{historyBinary, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{historyBinary, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0x0f, 0})
	f.Add([]byte{2, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := unmarshalRecord(b, &r); err != nil {
			return
		}
		first, err := json.Marshal(r)
		if err != nil {
			return // a JSON record whose time JSON cannot print again
		}
		again, err := r.marshal()
		if err != nil {
			t.Fatalf("re-encode of %s: %v", first, err)
		}
		var r2 Record
		if err := unmarshalRecord(again, &r2); err != nil {
			t.Fatalf("re-read of %s: %v", first, err)
		}
		if second, _ := json.Marshal(r2); !bytes.Equal(first, second) {
			t.Fatalf("round trip:\n%s\n%s", first, second)
		}
	})
}

// BenchmarkHistoryRecord: encoding one served request's history record,
// as AppendHistory does for every one: the binary encoding with the
// result's published bytes (what the agent writes), with the store
// encoding the result, and the JSON encoding it replaced.
func BenchmarkHistoryRecord(b *testing.B) {
	rec := historyCases()[0]
	published, _ := schema.EncodeResult(rec.Result, schema.MsgPack)
	for _, tc := range []struct {
		name string
		enc  func() ([]byte, error)
	}{
		{"binary-published", func() ([]byte, error) { r := rec; r.ResultPayload = published; return r.marshal() }},
		{"binary-encoded", func() ([]byte, error) { return rec.marshal() }},
		{"json", func() ([]byte, error) { return json.Marshal(rec) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.enc(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
