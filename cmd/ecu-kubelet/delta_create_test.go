package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeltaCreateRoundTripsThroughApply(t *testing.T) {
	old, want, _ := detoolsFoo(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"lzma", nil},
		{"heatshrink", []string{"--compression", "heatshrink"}},
		{"crle envelope", []string{"--compression", "crle", "--envelope"}},
		{"none", []string{"--compression", "none"}},
		{"small window", []string{"--compression", "heatshrink", "--heatshrink-window", "5", "--heatshrink-lookahead", "4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			patch, out := filepath.Join(dir, "p"), filepath.Join(dir, "new")
			var stdout, stderr bytes.Buffer
			args := append([]string{"delta", "create", old, want, "-o", patch}, tc.args...)
			if err := run(context.Background(), &stdout, &stderr, args...); err != nil {
				t.Fatalf("delta create: %v (%s)", err, stderr.String())
			}
			if !strings.Contains(stdout.String(), "of the new image") {
				t.Errorf("stdout %q", stdout.String())
			}
			if err := run(context.Background(), &stdout, &stderr, "delta", "apply", old, patch, "-o", out); err != nil {
				t.Fatalf("delta apply: %v (%s)", err, stderr.String())
			}
			got, _ := os.ReadFile(out)
			w, _ := os.ReadFile(want)
			if !bytes.Equal(got, w) {
				t.Fatal("applying the created patch does not give the new image")
			}
		})
	}
}

func TestDeltaCreateRefusesBadArguments(t *testing.T) {
	old, want, _ := detoolsFoo(t)
	dir := t.TempDir()
	patch := filepath.Join(dir, "p")
	for _, args := range [][]string{
		{"delta", "create", old, want},
		{"delta", "create", old, want, "-o", patch, "--compression", "bz2"},
		{"delta", "create", old, want, "-o", patch, "--compression", "gzip"},
		{"delta", "create", old, want, "-o", patch, "--compression", "heatshrink", "--heatshrink-window", "3"},
		{"delta", "create", filepath.Join(dir, "missing"), want, "-o", patch},
	} {
		if err := run(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}, args...); err == nil {
			t.Errorf("%v succeeded, want an error", args)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed runs left %d files behind", len(entries))
	}
}
