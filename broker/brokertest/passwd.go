package brokertest

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// DefaultMosquittoPasswd is where Debian installs mosquitto_passwd (it
// comes with the mosquitto package).
const DefaultMosquittoPasswd = "/usr/bin/mosquitto_passwd"

// MosquittoPasswordLine returns one line of a Mosquitto 2 password file,
// "user:$7$101$<salt>$<hash>": PBKDF2-HMAC-SHA512 with 101 iterations and
// a 12-byte random salt, both base64, exactly what `mosquitto_passwd`
// writes by default. It needs no Mosquitto tool.
func MosquittoPasswordLine(user, password string) (string, error) {
	if user == "" || strings.ContainsAny(user, ":\n") {
		return "", fmt.Errorf("brokertest: Mosquitto user name %q", user)
	}
	const iterations = 101
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:$7$%d$%s$%s", user, iterations, base64.StdEncoding.EncodeToString(salt),
		base64.StdEncoding.EncodeToString(key)), nil
}

// AddMosquittoUser adds user with password to the Mosquitto password file
// (creating it). With useTool it runs `mosquitto_passwd -b` (skipping the
// test when the tool is missing, or failing it when the CI environment
// variable is set); without, it writes MosquittoPasswordLine itself.
func AddMosquittoUser(t testing.TB, file, user, password string, useTool bool) {
	t.Helper()
	if useTool {
		bin := DefaultMosquittoPasswd
		if _, err := os.Stat(bin); err != nil {
			p, err := exec.LookPath("mosquitto_passwd")
			if err != nil {
				if os.Getenv("CI") == "" {
					t.Skip("brokertest: mosquitto_passwd not installed (install the mosquitto package; CI fails instead of skipping)")
				}
				t.Fatal("brokertest: mosquitto_passwd not installed")
			}
			bin = p
		}
		args := []string{"-b", file, user, password}
		if _, err := os.Stat(file); err != nil {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("brokertest: mosquitto_passwd: %v\n%s", err, out)
		}
		return
	}
	line, err := MosquittoPasswordLine(user, password)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintln(f, line); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
