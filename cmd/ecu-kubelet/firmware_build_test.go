package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

func TestFirmwareBuildWrapsAPayload(t *testing.T) {
	dir := t.TempDir()
	payload := bytes.Repeat([]byte{0xA5, 0x5A}, 3000)
	raw := filepath.Join(dir, "app.bin")
	if err := os.WriteFile(raw, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "app.img")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), &stdout, &stderr, "firmware", "build", "--hardware-id", "BRK-HW-01",
		"--version", "1.3.0", "--release-counter", "5", raw, "-o", out); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	hdr, got, err := image.Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.HardwareID != "BRK-HW-01" || hdr.Version != "1.3.0" || hdr.ReleaseCounter != 5 || !bytes.Equal(got[image.HeaderSize:], payload) {
		t.Fatalf("image header %+v with %d payload bytes", hdr, len(got))
	}
	if !strings.Contains(stdout.String(), "BRK-HW-01 1.3.0 release 5") {
		t.Errorf("printed %q", stdout.String())
	}
}

func TestFirmwareBuildRejects(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "app.bin")
	os.WriteFile(raw, []byte{1, 2, 3}, 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--hardware-id", "H", "--version", "1", raw}, "-o IMAGE"},
		{[]string{"--hardware-id", "H", "--version", "1", filepath.Join(dir, "missing.bin"), "-o", filepath.Join(dir, "x")}, "no such file"},
		{[]string{"--hardware-id", "H\x01", "--version", "1", raw, "-o", filepath.Join(dir, "x")}, "hardware id"},
		{[]string{"--version", "1", raw, "-o", filepath.Join(dir, "x")}, "hardware-id"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), &stdout, &stderr, append([]string{"firmware", "build"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("firmware build %q: %v, want an error mentioning %q", tt.args, err, tt.want)
		}
	}
}
