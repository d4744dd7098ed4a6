package agent

import (
	"testing"
)

// The intake queue on its own: tenants take turns, at most window
// deliveries are taken until done gives places back, and runner slots
// are handed out only while there is something to take.
func TestIntakeQueue(t *testing.T) {
	q := newIntakeQueue(2, 3)
	push := func(tenant string, n int) (runs int) {
		for range n {
			if q.push(delivery{msg: &fakeMsg{topic: "delen/" + tenant + "/requests"}, tenant: tenant}) {
				runs++
			}
		}
		return runs
	}
	// A flood from one tenant, then one request from another.
	if runs := push("flood", 5); runs != 2 {
		t.Fatalf("5 deliveries took %d runner slots, want 2 (the runners)", runs)
	}
	if push("quiet", 1) != 0 {
		t.Fatal("a runner slot past the runners")
	}
	var order []string
	for {
		d, ok := q.next()
		if !ok {
			break
		}
		order = append(order, d.tenant)
	}
	// The window (3) stops the runner: flood, quiet, flood: the quiet
	// tenant waited for one delivery of the flood, not five.
	want := []string{"flood", "quiet", "flood"}
	if len(order) != len(want) {
		t.Fatalf("took %v, want %v (the window)", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("took %v, want %v", order, want)
		}
	}
	if q.inWindow() != 3 || q.len() != 3 {
		t.Fatalf("in window %d, waiting %d; want 3 and 3", q.inWindow(), q.len())
	}
	// The other runner finds the window full and gives its slot back.
	if _, ok := q.next(); ok {
		t.Fatal("took a delivery past the window")
	}
	// Two answered: two places back, and a runner slot to fill them.
	if !q.done(2) {
		t.Fatal("places given back with deliveries waiting, but no runner slot")
	}
	n := 0
	for _, ok := q.next(); ok; _, ok = q.next() {
		n++
	}
	if n != 2 || q.inWindow() != 3 || q.len() != 1 {
		t.Errorf("after done(2): took %d, in window %d, waiting %d; want 2, 3, 1", n, q.inWindow(), q.len())
	}
	if q.peakWindow() != 3 {
		t.Errorf("peak window %d, want 3", q.peakWindow())
	}
	// Nothing waits: no runner slot for the places given back.
	q.done(3)
	for _, ok := q.next(); ok; _, ok = q.next() {
	}
	if q.done(0) {
		t.Error("a runner slot with nothing waiting")
	}
}
