package sim

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlotSoakSeries(t *testing.T) {
	dir := t.TempDir()
	good := "t_s,rss_mib,rss_anon_mib,goroutines\nidle,100,50,70\n10,300,200,80\n20,320,210,81\ndrained,310,205,70\n"
	for _, tc := range []struct {
		name, csv, wantErr string
	}{
		{"series", good, ""},
		{"no header", "a,b\n1,2\n", "t_s"},
		{"no numbers", "t_s,rss_mib\nidle,100\n", "no numeric rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, out := filepath.Join(dir, tc.name+".csv"), filepath.Join(dir, tc.name+".png")
			if err := os.WriteFile(in, []byte(tc.csv), 0o644); err != nil {
				t.Fatal(err)
			}
			err := PlotSoakSeries(in, out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || len(b) < 5000 {
				t.Fatalf("not a PNG with content: %d bytes, %v", len(b), err)
			}
		})
	}
}

// FuzzReadSoakSeries: any input parses to finite points or an error,
// never a panic.
func FuzzReadSoakSeries(f *testing.F) {
	f.Add("t_s,rss_mib,goroutines\nidle,100,70\n10,300,80\n")
	f.Add("t_s,rss_mib\n10,NaN\n20,Inf\n")
	f.Add("t_s,a,b\n1,2\n3\n")
	f.Add("t_s\n1\n")
	f.Add("t_s,x\n\"1,2\n")
	f.Fuzz(func(t *testing.T, in string) {
		series, err := readSoakSeries(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range series {
			if len(s.pts) == 0 {
				t.Fatalf("series %q without points", s.name)
			}
			for _, p := range s.pts {
				if math.IsNaN(p.X) || math.IsNaN(p.Y) || math.IsInf(p.X, 0) || math.IsInf(p.Y, 0) {
					t.Fatalf("series %q has a point that cannot be drawn: %v", s.name, p)
				}
			}
		}
	})
}
