package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the paths of the control plane's programs.
type Binaries struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	Kubectl               string
}

// ErrUnavailable reports that the programs are not built and cannot be
// here: there is no Go toolchain on PATH, or the modules they are built from
// cannot be fetched (no module proxy, no network). Other build failures are
// not wrapped in it.
var ErrUnavailable = errors.New("controlplane: the control plane's programs are not built and cannot be built here")

// mainModule is the module whose source tree holds the tools modules.
const mainModule = "github.com/ecu-kubelet/ecu-kubelet"

// toolsDir is the tools modules' parent directory, relative to the main
// module's root.
const toolsDir = "provider/internal/controlplane/tools"

// buildArgs are the go build flags of every program, with stamp's -X
// flags. Without the stamp they are part of the cache key, so changing them
// rebuilds (the stamp comes from go.mod, which is part of it too).
// CGO_ENABLED=0 (see runGo) makes the programs static and the build
// independent of a C toolchain, as Kubernetes' release builds of these
// programs are.
func buildArgs(stamp []string) []string {
	return []string{"-trimpath", "-ldflags=" + strings.Join(append([]string{"-s", "-w"}, stamp...), " ")}
}

// A toolsModule is one directory under tools/ with its own go.mod, and the
// programs it builds.
type toolsModule struct {
	name     string
	programs []program
	// stampedBy is the module whose version the programs report, stamped
	// into them with -X by stamp; empty for none.
	stampedBy string
	stamp     func(version string) []string
}

// A program is one main package of a tools module and its file name.
type program struct {
	name string
	pkg  string
}

var toolsModules = []toolsModule{
	{
		name: "kube",
		programs: []program{
			{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"},
			{"kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"},
			{"kubectl", "k8s.io/kubernetes/cmd/kubectl"},
		},
		stampedBy: "k8s.io/kubernetes",
		stamp:     kubeVersionFlags,
	},
	{
		name:     "etcd",
		programs: []program{{"etcd", "go.etcd.io/etcd/server/v3"}},
	},
}

// kubeVersionFlags sets the version that the Kubernetes programs report,
// as Kubernetes' release builds do (hack/lib/version.sh); unset, it is
// v0.0.0-master and kubectl warns about version skew.
func kubeVersionFlags(version string) []string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	var x []string
	for _, pkg := range []string{"k8s.io/client-go/pkg/version", "k8s.io/component-base/version"} {
		x = append(x,
			"-X", pkg+".gitVersion="+version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean")
	}
	return x
}

// EnsureBinaries returns the control plane's programs, building those that
// are not in the cache yet (minutes for kube-apiserver on a cold Go build
// cache). logf reports progress. Concurrent callers, in this process or
// others, build each version once: the others wait. The error wraps
// ErrUnavailable when the Go toolchain or the module proxy is missing.
func EnsureBinaries(ctx context.Context, logf func(format string, args ...any)) (Binaries, error) {
	tools, err := findToolsDir()
	if err != nil {
		return Binaries{}, err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return Binaries{}, fmt.Errorf("controlplane: no cache directory for the control plane's programs (set XDG_CACHE_HOME or HOME): %w", err)
	}
	cache = filepath.Join(cache, "ecu-kubelet", "controlplane")
	paths := make(map[string]string)
	for _, m := range toolsModules {
		dir, err := m.ensure(ctx, filepath.Join(tools, m.name), cache, logf)
		if err != nil {
			return Binaries{}, err
		}
		for _, p := range m.programs {
			paths[p.name] = filepath.Join(dir, p.name)
		}
	}
	return Binaries{
		Etcd:                  paths["etcd"],
		KubeAPIServer:         paths["kube-apiserver"],
		KubeControllerManager: paths["kube-controller-manager"],
		Kubectl:               paths["kubectl"],
	}, nil
}

// findToolsDir finds the tools modules from the working directory, which
// is inside the main module's tree when go test or go run runs.
func findToolsDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("controlplane: %w", err)
	}
	for dir := wd; ; {
		if isMainModule(filepath.Join(dir, "go.mod")) {
			return filepath.Join(dir, filepath.FromSlash(toolsDir)), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("controlplane: %s is not inside the %s source tree, whose %s modules build etcd and kube-apiserver; run from the source tree", wd, mainModule, toolsDir)
		}
		dir = parent
	}
}

// isMainModule reports whether the go.mod file at path declares mainModule.
func isMainModule(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == mainModule
		}
	}
	return false
}

// cacheKey identifies one build of a tools module: its requirements, the
// platform and the build flags. Any change to them builds anew.
func cacheKey(goMod, goSum []byte, goos, goarch string, flags []string) string {
	h := sha256.New()
	for _, part := range [][]byte{goMod, goSum, []byte(goos + "/" + goarch), []byte(strings.Join(flags, "\x00"))} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ensure returns the cache directory holding m's programs, building them
// there first if they are missing.
func (m toolsModule) ensure(ctx context.Context, src, cache string, logf func(string, ...any)) (string, error) {
	goMod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("controlplane: tools module %s: %w", m.name, err)
	}
	goSum, err := os.ReadFile(filepath.Join(src, "go.sum"))
	if err != nil {
		return "", fmt.Errorf("controlplane: tools module %s: %w (run go mod tidy in %s)", m.name, err, src)
	}
	dir := filepath.Join(cache, m.name+"-"+cacheKey(goMod, goSum, runtime.GOOS, runtime.GOARCH, buildArgs(nil)))
	if m.built(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("controlplane: %w", err)
	}
	unlock, err := lockDir(ctx, dir, logf)
	if err != nil {
		return "", err
	}
	defer unlock()
	if m.built(dir) { // by the process we waited for
		return dir, nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", fmt.Errorf("%w: no go command on PATH to build them from %s", ErrUnavailable, src)
	}
	return dir, m.build(ctx, src, dir, logf)
}

// built reports whether every program of m is in dir. Programs are renamed
// into place complete, so one that exists is whole.
func (m toolsModule) built(dir string) bool {
	for _, p := range m.programs {
		if _, err := os.Stat(filepath.Join(dir, p.name)); err != nil {
			return false
		}
	}
	return true
}

// build builds m's programs from src into dir.
func (m toolsModule) build(ctx context.Context, src, dir string, logf func(string, ...any)) error {
	var names, pkgs []string
	for _, p := range m.programs {
		names = append(names, p.name)
		pkgs = append(pkgs, p.pkg)
	}
	what := strings.Join(names, ", ")
	logf("building %s from %s into %s: once per version, minutes from a cold Go build cache (.ci/install-controlplane.sh does it ahead of the tests)", what, src, dir)
	start := time.Now()

	// Fetching first tells a missing module proxy apart from a failed build.
	if _, err := runGo(ctx, src, logf, "fetching the modules of "+what, append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("controlplane: fetching the modules of %s: %w", what, ctx.Err())
		}
		return fmt.Errorf("%w: fetching the modules of %s in %s failed; is the module proxy reachable (GOPROXY=%s)? %v", ErrUnavailable, what, src, goEnvValue("GOPROXY"), err)
	}
	var stamp []string
	if m.stampedBy != "" {
		version, err := runGo(ctx, src, nil, "", "list", "-m", "-f", "{{.Version}}", m.stampedBy)
		if err != nil {
			return fmt.Errorf("controlplane: the version of %s in %s: %v", m.stampedBy, src, err)
		}
		stamp = m.stamp(strings.TrimSpace(version))
	}
	// Under the lock, any earlier build directory is a killed build's.
	if stale, err := filepath.Glob(filepath.Join(dir, ".build-*")); err == nil {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, p := range m.programs {
		args := append(append([]string{"build", "-v"}, buildArgs(stamp)...), "-o", filepath.Join(tmp, p.name), p.pkg)
		if _, err := runGo(ctx, src, logf, "building "+p.name, args...); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("controlplane: building %s did not finish (%s so far; the Go build cache keeps what is done): %w", p.name, time.Since(start).Round(time.Second), ctx.Err())
			}
			return fmt.Errorf("controlplane: building %s in %s failed: %v", p.name, src, err)
		}
	}
	for _, p := range m.programs {
		if err := os.Rename(filepath.Join(tmp, p.name), filepath.Join(dir, p.name)); err != nil {
			return fmt.Errorf("controlplane: %w", err)
		}
	}
	logf("built %s in %s", what, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// progressEvery is how often a long go command reports that it is still
// running.
const progressEvery = 30 * time.Second

// runGo runs the go command in dir and returns its standard output; its
// error carries the standard error. While it runs, logf (if not nil) hears
// every progressEvery what it is doing. The command and everything it
// started are killed when ctx is done.
func runGo(ctx context.Context, dir string, logf func(string, ...any), doing string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 10 * time.Second
	var stdout bytes.Buffer
	var stderr goOutput
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	if err := startChild(cmd); err != nil {
		return "", fmt.Errorf("go %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var tick <-chan time.Time
	if logf != nil {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-done:
			if err != nil {
				return "", fmt.Errorf("go %s: %w\n%s", args[0], err, stderr.String())
			}
			return stdout.String(), nil
		case <-tick:
			logf("%s: %s so far (%d lines of output; last: %s)", doing, time.Since(start).Round(time.Second), stderr.count(), stderr.last())
		}
	}
}

// goEnvValue returns the go command's setting of key, or "" when go cannot
// tell.
func goEnvValue(key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// goOutput keeps a go command's standard error: the whole of it for an
// error message, and its line count and last line for progress reports.
type goOutput struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines int
}

func (l *goOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines += bytes.Count(p, []byte("\n"))
	return l.buf.Write(p)
}

func (l *goOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *goOutput) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines
}

func (l *goOutput) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last string
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			last = s
		}
	}
	return last
}

// lockDir takes an exclusive lock on dir shared with other processes, so
// that one of them builds and the others wait, and returns its release.
// Waiting ends with ctx.
func lockDir(ctx context.Context, dir string, logf func(string, ...any)) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	waiting := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("controlplane: locking %s: %w", dir, err)
		}
		if !waiting {
			logf("waiting for another process that is building into %s", dir)
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("controlplane: waiting for another process building into %s: %w", dir, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
