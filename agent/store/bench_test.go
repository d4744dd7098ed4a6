package store

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPutDedupe is the store write on every request's hot path.
func BenchmarkPutDedupe(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := make([]byte, 300)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := s.PutDedupe("cam1", fmt.Sprint(i), Dedupe{Topic: "delen/cam1/results", QoS: 1, Payload: payload}, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetDedupeMiss is the lookup every new request makes.
func BenchmarkGetDedupeMiss(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		s.GetDedupe("cam1", "nope")
	}
}
