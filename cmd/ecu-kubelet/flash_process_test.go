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
	desc, err := os.ReadFile(vehiclePath)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "car.yaml")
	if err := os.WriteFile(config, bytes.ReplaceAll(desc, []byte("127.0.0.1:29536"), []byte(busAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	flashWithCommand(t, config, "door-fl", image.Header{Version: "1.4.0", HardwareID: "DOOR-HW-01", ReleaseCounter: 6}, 20000)
}

// flashWithCommand packs a synthetic image with hdr and a payload of n
// bytes into an OCI layout and flashes it onto ecu of the vehicle config
// with `ecu-kubelet flash -o json`; the job must end done.
func flashWithCommand(t *testing.T, config, ecu string, hdr image.Header, n int) {
	t.Helper()
	dir := t.TempDir()
	img, err := sim.SyntheticImage(hdr, n)
	if err != nil {
		t.Fatal(err)
	}
	p, err := artifact.Pack(context.Background(), img, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := "oci-layout:" + filepath.Join(dir, "layout") + ":" + ecu
	if _, err := p.Push(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
	code, out := runFlashCommand(t, "--config", config, "--ecu", ecu, "--image", ref, "-o", "json", "--state-dir", filepath.Join(dir, "state"))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; code != exitFlashDone || !strings.Contains(last, `"outcome":"done"`) || !strings.Contains(last, `"version":"`+hdr.Version+`"`) {
		t.Fatalf("flash %s exited %d; its output:\n%s", ecu, code, out.String())
	}
}

// runFlashCommand runs `ecu-kubelet flash args...` in-process and returns
// the exit code it chose and what it printed on stdout and stderr.
func runFlashCommand(t *testing.T, args ...string) (int, *bytes.Buffer) {
	t.Helper()
	code := exitFlashDone
	flashExit = func(c int) { code = c }
	defer func() { flashExit = os.Exit }()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--log-level", "error", "flash"}, args...))
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("flash %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return code, &out
}
