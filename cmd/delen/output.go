package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows under header, aligned in columns.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, h := range header {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, h)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// progress is a line of progress on a terminal, each show replacing the
// previous one. On anything else (a pipe, a file, a test's buffer) it
// writes nothing, so logs and captured output carry no carriage returns or
// terminal escapes.
type progress struct {
	w  io.Writer
	on bool
}

// newProgress shows progress on w when w is a terminal.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok {
		return &progress{w: w}
	}
	st, err := f.Stat()
	return &progress{w: w, on: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

// show replaces the line with s.
func (p *progress) show(s string) {
	if p.on {
		fmt.Fprintf(p.w, "\r%s\x1b[K", s)
	}
}

// clear removes the line.
func (p *progress) clear() {
	if p.on {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// keep ends the line, leaving its last text on the screen.
func (p *progress) keep() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}
