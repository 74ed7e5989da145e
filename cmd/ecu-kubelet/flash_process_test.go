package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
)

// flashThroughSimProcess flashes door-fl of the demo car, simulated by
// another process that serves its buses over socketcand at busAddr, with
// `ecu-kubelet flash` from an OCI layout: the whole path of a firmware
// update between two processes. The vehicle file is the demo car's with
// its socketcand address replaced by busAddr.
func flashThroughSimProcess(t *testing.T, vehiclePath, busAddr string) {
	t.Helper()
	dir := t.TempDir()
	desc, err := os.ReadFile(vehiclePath)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "car.yaml")
	if err := os.WriteFile(config, bytes.ReplaceAll(desc, []byte("127.0.0.1:29536"), []byte(busAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := sim.SyntheticImage(image.Header{Version: "1.4.0", HardwareID: "DOOR-HW-01", ReleaseCounter: 6}, 20000)
	if err != nil {
		t.Fatal(err)
	}
	p, err := artifact.Pack(context.Background(), img, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := "oci-layout:" + filepath.Join(dir, "layout") + ":door-1.4.0"
	if _, err := p.Push(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
	code := exitFlashDone
	flashExit = func(c int) { code = c }
	defer func() { flashExit = os.Exit }()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--log-level", "error", "flash", "--config", config, "--ecu", "door-fl", "--image", ref,
		"-o", "json", "--state-dir", filepath.Join(dir, "state")})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("flash: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; code != exitFlashDone || !strings.Contains(last, `"outcome":"done"`) || !strings.Contains(last, `"version":"1.4.0"`) {
		t.Fatalf("flash exited %d; its output:\n%s", code, out.String())
	}
}
