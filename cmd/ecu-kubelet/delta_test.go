package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
)

// detoolsFoo returns detools' foo pair and heatshrink patch from the shared
// test data, skipping (failing under CI=true) when it is absent.
func detoolsFoo(t *testing.T) (old, new, patch string) {
	dir := filepath.Join("..", "..", "..", "shared", "testdata", "detools", "foo")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("detools test vectors missing at %s", dir)
		}
		t.Skipf("detools test vectors not found at %s; skipping", dir)
	}
	return filepath.Join(dir, "old"), filepath.Join(dir, "new"), filepath.Join(dir, "heatshrink.patch")
}

func TestDeltaApplyWritesTheNewImage(t *testing.T) {
	old, want, patch := detoolsFoo(t)
	out := filepath.Join(t.TempDir(), "new.bin")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), &stdout, &stderr, "delta", "apply", old, patch, "-o", out); err != nil {
		t.Fatalf("delta apply: %v (%s)", err, stderr.String())
	}
	got, _ := os.ReadFile(out)
	w, _ := os.ReadFile(want)
	if !bytes.Equal(got, w) {
		t.Fatalf("new image differs from %s", want)
	}
	if !strings.Contains(stdout.String(), "wrote 2780 bytes") {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestDeltaApplyInPlacePatch(t *testing.T) {
	old, want, patch := detoolsFoo(t)
	patch = filepath.Join(filepath.Dir(patch), "in-place-3000-500.patch")
	out := filepath.Join(t.TempDir(), "new.bin")
	if err := run(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}, "delta", "apply", old, patch, "-o", out); err != nil {
		t.Fatalf("delta apply: %v", err)
	}
	got, _ := os.ReadFile(out)
	w, _ := os.ReadFile(want)
	if !bytes.Equal(got, w) {
		t.Fatalf("new image differs from %s (%d bytes, want %d)", want, len(got), len(w))
	}
}

func TestDeltaApplyEnvelopeRefusesWrongBaseAndLeavesNoFile(t *testing.T) {
	old, want, patch := detoolsFoo(t)
	oldB, _ := os.ReadFile(old)
	newB, _ := os.ReadFile(want)
	patchB, _ := os.ReadFile(patch)
	dir := t.TempDir()
	env, _ := delta.NewEnvelope(oldB, newB, delta.CompressionHeatshrink).AppendBinary(nil)
	enveloped := filepath.Join(dir, "p.delta")
	if err := os.WriteFile(enveloped, append(env, patchB...), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "new.bin")
	if err := run(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}, "delta", "apply", old, enveloped, "-o", out); err != nil {
		t.Fatalf("enveloped patch on the right base: %v", err)
	}
	os.Remove(out)
	err := run(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}, "delta", "apply", want, enveloped, "-o", out)
	if !errors.Is(err, delta.ErrWrongBase) {
		t.Fatalf("wrong base: error %v, want ErrWrongBase", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a failed apply left files behind: %v", entries)
	}
}

func TestDeltaInspect(t *testing.T) {
	_, _, patch := detoolsFoo(t)
	var stdout bytes.Buffer
	if err := run(context.Background(), &stdout, &bytes.Buffer{}, "delta", "inspect", patch); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sequential", "heatshrink (window 8 bits, lookahead 7 bits)", "new size:", "2780 bytes", "ratio:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, stdout.String())
		}
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte{0x7f}, 0o644)
	if err := run(context.Background(), &stdout, &bytes.Buffer{}, "delta", "inspect", bad); err == nil {
		t.Error("inspect of a non-patch succeeded")
	}
}
