package vcanvm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The interfaces the VM provides.
const (
	ClassicIface = "vcan0" // classic CAN, MTU 16
	FDIface      = "vcan1" // CAN FD, MTU 72
)

// HostAddr is where a test inside the VM reaches the host's loopback ports
// that Options.Forward names: a connection to HostAddr:port is one to
// 127.0.0.1:port on the host.
const HostAddr = "10.0.2.100"

// guestAddr is the VM's address on qemu's user network (slirp's default).
const guestAddr = "10.0.2.15"

// FilesDir is the directory inside the VM that holds Options.Files.
const FilesDir = "/vcanvm/files"

// Options are what a VM run provides besides vcan0 and vcan1.
type Options struct {
	// Forward lists host loopback ports that the VM may connect to, at
	// HostAddr:port. The VM gets a network card on qemu's user network
	// with restrict=on: it reaches nothing but these ports, and nothing
	// on the host reaches it. On the host each connection is made by a
	// process of the harness to 127.0.0.1:port, so the host side need
	// listen on loopback only.
	Forward []int
	// Files are put into the VM's initramfs, each at FilesDir/name. A
	// name may have slashes (a directory tree, an OCI layout); it must
	// be relative and must not climb out with "..".
	Files map[string][]byte
}

// validate reports what is wrong with o.
func (o Options) validate() error {
	seen := map[int]bool{}
	for _, p := range o.Forward {
		if p < 1 || p > 65535 || seen[p] {
			return fmt.Errorf("vcanvm: Options.Forward %v: want distinct ports from 1 to 65535", o.Forward)
		}
		seen[p] = true
	}
	for name := range o.Files {
		if !filepath.IsLocal(name) || strings.ContainsAny(name, "\x00\n") {
			return fmt.Errorf("vcanvm: Options.Files %q: want a relative path inside %s", name, FilesDir)
		}
	}
	return nil
}

// DefaultTimeout bounds one VM run: building the test binary, booting and
// the tests themselves. A test's own -timeout deadline shortens it.
const DefaultTimeout = 10 * time.Minute

// envInside is set by the VM's init for the test binary it runs.
const envInside = "ECU_KUBELET_VCANVM"

// Inside reports whether this process runs inside the microVM.
func Inside() bool { return os.Getenv(envInside) == "1" }

// maxExport bounds what one Export may carry over the console.
const maxExport = 512 << 10

// Export hands data, a file the test made inside the VM (a capture, say),
// to the host test that booted the VM, which reads it with Files after Run
// returns. It travels base64-encoded on the console, marked with the run's
// nonce, so it is meant for files of up to 512 KiB. Outside the VM it does
// nothing.
func Export(t *testing.T, name string, data []byte) {
	t.Helper()
	if !Inside() {
		return
	}
	if len(data) > maxExport || name == "" || strings.ContainsAny(name, " /\n") {
		t.Fatalf("vcanvm: Export %q (%d bytes): want a plain file name and at most %d bytes", name, len(data), maxExport)
	}
	nonce, err := os.ReadFile("/vcanvm/nonce")
	if err != nil {
		t.Fatalf("vcanvm: Export: %v", err)
	}
	fmt.Printf("\nvcanvm-file %s %s %s\n", strings.TrimSpace(string(nonce)), name, base64.StdEncoding.EncodeToString(data))
}

// exported holds, per host test, the files its VM run exported.
var exported sync.Map // *testing.T -> map[string][]byte

// Files returns the files that the tests in t's VM run passed to Export,
// by name. Call it after Run has returned true.
func Files(t *testing.T) map[string][]byte {
	if m, ok := exported.Load(t); ok {
		return m.(map[string][]byte)
	}
	return nil
}

// Run runs the calling test inside a qemu microVM whose kernel has vcan0
// (classic CAN) and vcan1 (CAN FD) and the CAN, CAN_RAW and CAN_ISOTP
// protocols, and reports whether it did. Use it as the first statement of a
// test:
//
//	func TestVcanX(t *testing.T) {
//		if vcanvm.Run(t) {
//			return // the body ran in the VM
//		}
//		// the body: runs only inside the VM
//	}
//
// On the host, Run builds a static test binary of the calling package, boots
// Debian's kernel under qemu (TCG) with it, runs the test of the same name
// with -test.v, streams the VM's console into t.Log and fails t if the tests
// in the VM failed. Inside the VM it returns false at once. Where qemu or
// the Debian packages are missing it skips the test, saying what to install
// (with CI=true it fails instead, so that CI cannot pass without running
// it); with -short it skips, since a VM run takes 5 to 15 seconds, more on
// a loaded machine.
func Run(t *testing.T) bool {
	t.Helper()
	return RunWith(t, Options{})
}

// RunWith is Run with more than vcan: ports forwarded to the host and
// files in the VM (see Options). Options matter only on the host; inside
// the VM RunWith returns false at once, like Run.
func RunWith(t *testing.T, opts Options) bool {
	t.Helper()
	if Inside() {
		return false
	}
	if err := opts.validate(); err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		t.Skip("SKIP: vcan microVM tests do not run with -short: each boots a qemu VM")
	}
	timeout := DefaultTimeout
	if d, ok := t.Deadline(); ok {
		// Leave time for the test binary to report a timeout of its own.
		timeout = min(timeout, time.Until(d)-15*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	start := time.Now()
	vm, err := prepare(ctx, t, opts)
	if err != nil {
		var m *errMissing
		if errors.As(err, &m) {
			msg := "SKIP: vcan microVM: " + m.msg + "; run `sudo bash .ci/install-vcanvm.sh`, which installs qemu-system-x86 and downloads Debian's kernel, busybox-static and can-utils packages into the harness's cache"
			if os.Getenv("CI") == "true" {
				t.Fatal(strings.Replace(msg, "SKIP", "CI must run the vcan tests", 1))
			}
			t.Skip(msg)
		}
		t.Fatalf("vcanvm: %v", err)
	}
	t.Logf("vcanvm: image and static test binary ready in %v", time.Since(start).Round(100*time.Millisecond))
	res := vm.boot(ctx, t, timeout)
	exported.Store(t, res.files)
	t.Cleanup(func() { exported.Delete(t) })
	res.report(t, timeout)
	return true
}

// testPattern is the -test.run pattern that selects exactly the test
// called name (a subtest's name has its parents' names before slashes).
func testPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// machine is one prepared VM run.
type machine struct {
	qemu   string
	img    image
	initrd string // base image plus this run's payload
	nonce  string
	test   string // the test's name
	opts   Options
}

// prepare finds qemu and the image and builds this run's initramfs.
func prepare(ctx context.Context, t *testing.T, opts Options) (*machine, error) {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return nil, missingf("the harness runs on linux/amd64 hosts only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, missingf("qemu-system-x86_64 not found")
	}
	root, err := cacheRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	img, err := buildImage(t, root)
	if err != nil {
		return nil, err
	}
	if len(opts.Forward) > 0 && strings.ContainsAny(img.busybox, " \t\n'\"\\") {
		// qemu splits a guestfwd's cmd: into words by shell rules.
		return nil, fmt.Errorf("the cache path %s has blanks or quotes, which forwarded ports cannot pass to qemu; set XDG_CACHE_HOME to a plain path", img.busybox)
	}
	m := &machine{qemu: qemu, img: img, nonce: newNonce(), test: t.Name(), opts: opts}
	dir := t.TempDir()
	bin := filepath.Join(dir, "test.bin")
	if err := buildTestBinary(ctx, bin); err != nil {
		return nil, err
	}
	m.initrd = filepath.Join(dir, "initrd.cpio")
	return m, m.writeInitrd(bin, timeoutInside(ctx))
}

// timeoutInside is the -test.timeout of the test binary in the VM: what is
// left of ctx after the boot, so that a hung test panics with its
// goroutines' stacks on the console before the host gives up.
func timeoutInside(ctx context.Context) time.Duration {
	d, _ := ctx.Deadline()
	return max(time.Until(d)-45*time.Second, 30*time.Second)
}

// buildTestBinary compiles the calling package's tests (the working
// directory of a test is its package's directory) as a static linux/amd64
// binary, which runs in the VM without any shared library.
func buildTestBinary(ctx context.Context, out string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return missingf("the go command is not on PATH; the harness builds the package's test binary with it")
	}
	cmd := exec.CommandContext(ctx, gobin, "test", "-c", "-vet=off", "-ldflags=-s -w", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the static test binary (CGO_ENABLED=0 go test -c): %v\n%s", err, msg)
	}
	return nil
}

// writeInitrd writes the base image followed by a second cpio archive with
// the test binary, the nonce and the run script. The kernel unpacks
// concatenated archives in turn.
func (m *machine) writeInitrd(bin string, inside time.Duration) error {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	out, err := os.Create(m.initrd)
	if err != nil {
		return err
	}
	defer out.Close()
	base, err := os.Open(m.img.initrd)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, base)
	base.Close()
	if err != nil {
		return err
	}
	cw := newCPIOWriter(out)
	cw.File("vcanvm/nonce", 0o644, []byte(m.nonce+"\n"))
	if len(m.opts.Forward) > 0 {
		cw.File("vcanvm/net", 0o644, nil) // tells the init script to bring eth0 up
	}
	for _, name := range slices.Sorted(maps.Keys(m.opts.Files)) {
		cw.File(path.Join(FilesDir, filepath.ToSlash(name)), 0o644, m.opts.Files[name])
	}
	cw.File("vcanvm/test", 0o755, exe)
	run := fmt.Sprintf("exec /vcanvm/test -test.run %s -test.v -test.count 1 -test.timeout %s\n",
		shellQuote(testPattern(m.test)), inside.Round(time.Second))
	cw.File("vcanvm/run", 0o644, []byte(run))
	if err := cw.Close(); err != nil {
		return err
	}
	return out.Close()
}

// qemuArgs is the command line of one VM run. TCG, not KVM: with KVM the
// Debian kernel hung or crashed on the machines this was measured on.
func (m *machine) qemuArgs() []string {
	args := []string{
		"-machine", "accel=tcg",
		"-cpu", "max",
		"-smp", "2",
		"-m", "512",
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-serial", "stdio",
		"-no-reboot",
		"-kernel", m.img.kernel,
		"-initrd", m.initrd,
		// panic=-1 turns a kernel panic into a reboot, which -no-reboot
		// turns into qemu's exit: no hung VM waits for the timeout.
		"-append", "console=ttyS0 quiet panic=-1 oops=panic mitigations=off",
	}
	if len(m.opts.Forward) == 0 {
		return args
	}
	// restrict=on isolates the guest: it reaches no address but the
	// guestfwd ones. A guestfwd to a chardev would carry a single
	// connection, made when qemu starts; cmd: runs a command per guest
	// connection with the connection as its stdin and stdout, here the
	// image's static busybox nc to the host's loopback port.
	netdev := "user,id=n0,restrict=on,ipv6=off"
	for _, p := range m.opts.Forward {
		cmd := fmt.Sprintf("%s nc 127.0.0.1 %d", m.img.busybox, p)
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s", HostAddr, p, strings.ReplaceAll(cmd, ",", ",,"))
	}
	// romfile= leaves out the card's iPXE boot ROM: the kernel is booted
	// directly, and ipxe-qemu need not be installed.
	return append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile=")
}

// result is what a VM run reported.
type result struct {
	exit      int           // exit status from the marker, -1 without one
	boot      time.Duration // from qemu's start to vcan0 and vcan1 up
	guestBoot string        // the same as the VM's clock saw it, in seconds
	total     time.Duration
	failures  []string          // "--- FAIL" lines of the tests in the VM
	setup     []string          // "vcanvm: setup failed" lines
	files     map[string][]byte // what the tests exported
	err       error             // qemu's own failure
	stderr    string
	timedOut  bool
}

// boot runs qemu and streams its console into t.Log.
func (m *machine) boot(ctx context.Context, t *testing.T, timeout time.Duration) result {
	t.Helper()
	res := result{exit: -1}
	start := time.Now()
	cmd := exec.CommandContext(ctx, m.qemu, m.qemuArgs()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		res.err = err
		return res
	}
	t.Logf("vcanvm: booting %s with %s (timeout %v)", filepath.Base(m.img.kernel), m.qemu, timeout.Round(time.Second))
	if err := cmd.Start(); err != nil {
		res.err = err
		return res
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if !strings.Contains(line, "vcanvm-file ") { // base64, not for people
			t.Log(line)
		}
		res.parse(line, m.nonce, time.Since(start))
	}
	res.err = cmd.Wait()
	res.total = time.Since(start)
	res.stderr = strings.TrimSpace(stderr.String())
	res.timedOut = ctx.Err() != nil
	return res
}

// parse takes one console line into account. Markers carry the run's
// nonce, so that no output of the tests can be taken for one.
func (r *result) parse(line, nonce string, at time.Duration) {
	if uptime, ok := markerValue(line, "vcanvm-ready "+nonce+" "); ok {
		r.boot, r.guestBoot = at, uptime
		return
	}
	if rest, ok := markerValue(line, "vcanvm-file "+nonce+" "); ok {
		name, b64, _ := strings.Cut(rest, " ")
		if data, err := base64.StdEncoding.DecodeString(b64); err == nil {
			if r.files == nil {
				r.files = make(map[string][]byte)
			}
			r.files[name] = data
		}
		return
	}
	if rest, ok := markerValue(line, "vcanvm-exit "+nonce+" "); ok {
		if n, err := strconv.Atoi(rest); err == nil {
			r.exit = n
		}
		return
	}
	switch {
	case strings.Contains(line, "--- FAIL"):
		r.failures = append(r.failures, strings.TrimSpace(line))
	case strings.Contains(line, "vcanvm: setup failed"):
		r.setup = append(r.setup, strings.TrimSpace(line))
	}
}

// markerValue returns what follows marker on line. The kernel may print in
// the middle of a line, so the marker is searched, not anchored.
func markerValue(line, marker string) (string, bool) {
	i := strings.Index(line, marker)
	if i < 0 {
		return "", false
	}
	return strings.TrimSpace(line[i+len(marker):]), true
}

// report turns the run's result into the host test's outcome.
func (r *result) report(t *testing.T, timeout time.Duration) {
	t.Helper()
	switch {
	case r.exit == 0:
		t.Logf("vcanvm: passed; boot to vcan up %v (the kernel's clock: %s s), whole run %v",
			r.boot.Round(100*time.Millisecond), r.guestBoot, r.total.Round(100*time.Millisecond))
	case r.exit == 125:
		t.Fatalf("vcanvm: the VM's setup failed: %s", strings.Join(r.setup, "; "))
	case r.exit > 0:
		t.Fatalf("vcanvm: the tests in the VM failed (exit status %d):\n%s", r.exit, strings.Join(r.failures, "\n"))
	case r.timedOut:
		t.Fatalf("vcanvm: the VM run did not finish within %v; the console above shows how far it got (raise go test -timeout if the machine is slow)", timeout.Round(time.Second))
	default:
		t.Fatalf("vcanvm: qemu stopped without the VM reporting an exit status (%v); qemu said: %s; the console above shows how far the VM got", r.err, r.stderr)
	}
}

func newNonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// shellQuote quotes s for sh as one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
