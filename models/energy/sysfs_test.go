package energy

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseSysfsInt(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1234\n", 1234, true},
		{"0\n", 0, true},
		{"  42 \n", 42, true},
		{"-17\n", -17, true},
		{"262143328850\n", 262143328850, true},
		{"9223372036854775807", 1<<63 - 1, true},
		{"9223372036854775808", 0, false},
		{"", 0, false},
		{"\n", 0, false},
		{"12 34", 0, false},
		{"0x10", 0, false},
		{"1.5", 0, false},
		{"n/a", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSysfsInt([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSysfsInt(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestCounterDelta(t *testing.T) {
	tests := []struct {
		old, cur, max, want int64
		ok                  bool
	}{
		{100, 250, 1000, 150, true},
		{100, 100, 1000, 0, true},
		{900, 50, 1000, 150, true}, // wrapped: 50 + 1000 - 900
		{900, -200, 1000, 0, false},
	}
	for _, tc := range tests {
		got, err := counterDelta(tc.old, tc.cur, tc.max)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("counterDelta(%d, %d, %d) = %d, %v; want %d, ok=%v", tc.old, tc.cur, tc.max, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseSysfsInt(f *testing.F) {
	for _, s := range []string{"1234\n", "0\n", "-5\n", "262143328850\n", "", "\n", "n/a", "9223372036854775808", " 7 ", "+3", "1e3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseSysfsInt(b)
		if err != nil {
			if v != 0 {
				t.Errorf("error %v with value %d", err, v)
			}
			return
		}
		// Whatever parsed is the decimal number in the trimmed text.
		want, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil || want != v {
			t.Errorf("parseSysfsInt(%q) = %d, strconv says %d, %v", b, v, want, perr)
		}
		// And it round-trips through the kernel's own format.
		if w, err := parseSysfsInt([]byte(strconv.FormatInt(v, 10) + "\n")); err != nil || w != v {
			t.Errorf("round trip of %d: %d, %v", v, w, err)
		}
	})
}
