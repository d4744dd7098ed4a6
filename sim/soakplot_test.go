package sim

import (
	"bytes"
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
