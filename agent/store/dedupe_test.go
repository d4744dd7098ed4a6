package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// TestPutDedupesGroupSurvivesReopen: a group of records committed together
// is all there after a reopen, a record in the older JSON form still reads,
// and an id never recorded is not found.
func TestPutDedupesGroupSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var group []DedupeEntry
	for i := 0; i < 5000; i++ { // more than one Badger transaction holds
		group = append(group, DedupeEntry{Tenant: "cam", ID: fmt.Sprint(i),
			Dedupe: Dedupe{Topic: "delen/cam/results", QoS: byte(i % 2), Payload: bytes.Repeat([]byte{byte(i)}, 300)}})
	}
	if err := s.PutDedupes(group, time.Hour); err != nil {
		t.Fatal(err)
	}
	old, _ := json.Marshal(Dedupe{Topic: "delen/old/results", QoS: 1, Payload: []byte("old bytes")})
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(DedupeKey("old", "1"), old) }); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	defer s.Close()
	for _, i := range []int{0, 1, 2999, 4999} {
		d, err := s.GetDedupe("cam", fmt.Sprint(i))
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if want := group[i].Dedupe; d.Topic != want.Topic || d.QoS != want.QoS || !bytes.Equal(d.Payload, want.Payload) {
			t.Fatalf("record %d: %+v, want %+v", i, d, want)
		}
	}
	if d, err := s.GetDedupe("old", "1"); err != nil || d.Topic != "delen/old/results" || string(d.Payload) != "old bytes" {
		t.Fatalf("JSON record: %+v, %v", d, err)
	}
	if _, err := s.GetDedupe("cam", "5000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unrecorded id: %v, want ErrNotFound", err)
	}
}

// FuzzUnmarshalDedupe: any stored bytes decode or fail, never panic, and
// what marshal writes reads back the same.
func FuzzUnmarshalDedupe(f *testing.F) {
	f.Add((&Dedupe{Topic: "delen/a/results", QoS: 1, Payload: []byte{1, 2, 3}}).marshal())
	f.Add((&Dedupe{}).marshal())
	f.Add([]byte(`{"topic":"t","qos":1,"payload":"AAE="}`))
	f.Add([]byte{dedupeBinary, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{dedupeBinary, 0, 10, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Dedupe
		if err := unmarshalDedupe(b, &d); err != nil {
			return
		}
		var again Dedupe
		if err := unmarshalDedupe(d.marshal(), &again); err != nil {
			t.Fatalf("re-read of %+v: %v", d, err)
		}
		if again.Topic != d.Topic || again.QoS != d.QoS || !bytes.Equal(again.Payload, d.Payload) {
			t.Fatalf("round trip: %+v then %+v", d, again)
		}
	})
}
