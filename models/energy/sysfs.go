package energy

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// parseSysfsInt parses the content of a sysfs attribute holding one decimal
// integer, such as "1234\n".
func parseSysfsInt(b []byte) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, fmt.Errorf("empty value")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return 0, fmt.Errorf("not a decimal integer: %q", s)
	}
	return v, nil
}

// readInt reads a sysfs attribute holding one decimal integer. Errors name the file.
func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err // *fs.PathError names the file.
	}
	v, err := parseSysfsInt(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readString reads a sysfs attribute holding one line of text.
func readString(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// glob matches pattern (a path relative to root) under root; root itself is
// taken literally even if it contains glob metacharacters.
func glob(root, pattern string) []string {
	var b strings.Builder
	for _, r := range filepath.Clean(root) {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	// The only possible error is ErrBadPattern, and our patterns are fixed.
	m, _ := filepath.Glob(filepath.Join(b.String(), pattern))
	return m
}
