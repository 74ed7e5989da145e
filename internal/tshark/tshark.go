// Package tshark runs Wireshark's tshark as a test oracle: the project's
// captures must decode the way an outside implementation of CAN, ISO-TP and
// UDS reads them. It is for tests only.
//
// It never writes captures of its own and never decides what is right: the
// caller compares the fields it returns against what it sent.
package tshark

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Decode-as rules for the project's captures (LINKTYPE_CAN_SOCKETCAN):
// CAN payloads are ISO 15765, and ISO 15765 messages UDS.
var (
	ISOTP = []string{"-d", "can.subdissector,iso15765"}
	UDS   = []string{"-d", "can.subdissector,iso15765", "-d", "iso15765.subdissector,uds"}
)

// Path returns tshark's path, or skips t saying what to install.
func Path(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		const msg = "tshark is not installed (apt-get install tshark); the capture is not checked against Wireshark"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg) // CI installs it: a skip there would hide a broken setup
		}
		t.Skip("SKIP: " + msg)
	}
	return p
}

// Fields decodes the capture at path with the decode-as rules and returns,
// for every packet, the first occurrence of each field (empty where the
// packet has none). It fails t if tshark fails.
func Fields(t testing.TB, path string, decodeAs []string, fields ...string) [][]string {
	t.Helper()
	args := append([]string{"-r", path}, decodeAs...)
	args = append(args, "-T", "fields", "-E", "separator=|", "-E", "occurrence=f")
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(Path(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		row := strings.Split(line, "|")
		if len(row) != len(fields) {
			t.Fatalf("tshark printed %q: %d fields, want %d", line, len(row), len(fields))
		}
		rows = append(rows, row)
	}
	return rows
}
