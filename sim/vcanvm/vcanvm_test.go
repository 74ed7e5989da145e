package vcanvm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cpioEntry is one entry as read back from a newc archive.
type cpioEntry struct {
	name               string
	mode               uint32
	rdevMajor, rdevMin uint32
	data               string
}

// readCPIO parses newc archives (several may be concatenated), checking the
// 4-byte alignment the kernel's unpacker relies on.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("offset %d field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off < len(b) {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("offset %d: magic %q", off, b[off:off+6])
		}
		size, nameSize := int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+nameSize-1])
		if b[off+110+nameSize-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		dataOff := align(off + 110 + nameSize)
		e := cpioEntry{name: name, mode: field(1), rdevMajor: field(9), rdevMin: field(10), data: string(b[dataOff : dataOff+size])}
		off = align(dataOff + size)
		if name == "TRAILER!!!" {
			continue
		}
		out = append(out, e)
	}
	return out
}

func TestCPIOWriterEntries(t *testing.T) {
	var buf bytes.Buffer
	cw := newCPIOWriter(&buf)
	cw.File("init", 0o755, []byte("#!/bin/sh\n"))
	cw.File("usr/bin/odd", 0o755, []byte("12345")) // data needing padding
	cw.Symlink("bin/sh", "busybox")
	cw.CharDev("dev/console", 0o600, 5, 1)
	cw.Dir("usr") // already there: not added twice
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, buf.Bytes())
	want := []cpioEntry{
		{name: "init", mode: cpioFile | 0o755, data: "#!/bin/sh\n"},
		{name: "usr", mode: cpioDir | 0o755},
		{name: "usr/bin", mode: cpioDir | 0o755},
		{name: "usr/bin/odd", mode: cpioFile | 0o755, data: "12345"},
		{name: "bin", mode: cpioDir | 0o755},
		{name: "bin/sh", mode: cpioSymlink | 0o777, data: "busybox"},
		{name: "dev", mode: cpioDir | 0o755},
		{name: "dev/console", mode: cpioCharDev | 0o600, rdevMajor: 5, rdevMin: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// The base image and the payload are separate archives in one file, as
// the kernel reads them.
func TestCPIOArchivesConcatenate(t *testing.T) {
	var buf bytes.Buffer
	for _, name := range []string{"a", "b"} {
		cw := newCPIOWriter(&buf)
		cw.File(name, 0o644, []byte(name+name+name))
		if err := cw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got := readCPIO(t, buf.Bytes())
	if len(got) != 2 || got[0].name != "a" || got[1].data != "bbb" {
		t.Fatalf("got %+v", got)
	}
}

func TestTestPatternSelectsExactlyTheTest(t *testing.T) {
	tests := []struct {
		name    string
		matches []string
		misses  []string
	}{
		{"TestVcan", []string{"TestVcan"}, []string{"TestVcanX", "XTestVcan"}},
		{"TestVcan/FD(64)", []string{"TestVcan/FD(64)"}, []string{"TestVcan/FD(64)x"}},
	}
	for _, tt := range tests {
		pat := testPattern(tt.name)
		// go test splits -run at slashes and matches each level.
		parts := strings.Split(pat, "/")
		match := func(name string) bool {
			levels := strings.Split(name, "/")
			if len(levels) != len(parts) {
				return false
			}
			for i := range parts {
				if !regexp.MustCompile(parts[i]).MatchString(levels[i]) {
					return false
				}
			}
			return true
		}
		for _, m := range tt.matches {
			if !match(m) {
				t.Errorf("%s: pattern %q does not select %q", tt.name, pat, m)
			}
		}
		for _, m := range tt.misses {
			if match(m) {
				t.Errorf("%s: pattern %q selects %q", tt.name, pat, m)
			}
		}
	}
}

func TestResultParsesMarkersOfItsOwnRunOnly(t *testing.T) {
	var r result
	r.exit = -1
	for i, line := range []string{
		"vcanvm-ready other 1.5",
		"vcanvm-ready n0nce 2.10",
		"    --- FAIL: TestVcan/x (0.01s)",
		"vcanvm-exit other 0",
		"vcanvm-file other x.pcap aGVsbG8=",
		"vcanvm-file n0nce a.pcap aGVsbG8=",
		"vcanvm-file n0nce bad.pcap !!!",
		"[    3.1] something vcanvm-exit n0nce 1",
	} {
		r.parse(line, "n0nce", time.Duration(i)*time.Second)
	}
	if r.boot != time.Second || r.exit != 1 || len(r.failures) != 1 {
		t.Fatalf("got boot %v exit %d failures %q; want 1s, 1, one failure", r.boot, r.exit, r.failures)
	}
	if len(r.files) != 1 || string(r.files["a.pcap"]) != "hello" {
		t.Fatalf("got files %q; want only a.pcap holding hello", r.files)
	}
}

func TestFindDebsReportsMissingPackages(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb",
		"linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb", // not this flavour
		"busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := findDebs(dir)
	var m *errMissing
	if !errors.As(err, &m) || !strings.Contains(err.Error(), "can-utils") || strings.Contains(err.Error(), "kernel") {
		t.Fatalf("got %v; want a missing-package error naming only can-utils", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "can-utils_2020.11.0-1_amd64.deb"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := findDebs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(got["kernel"]) != "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb" {
		t.Errorf("kernel package %s", got["kernel"])
	}
}

func TestShellQuoteSurvivesSh(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"^TestVcan$", "it's", `a"b$c\d`, "^A$/^B C$"} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh printed %q (%v), want %q", out, err, s)
		}
	}
}

// TestVcanForwardReachesHostLoopbackOnly boots a VM with a host loopback
// port forwarded and a file tree inside: concurrent connections from the
// VM reach the host's listener, each its own connection, and the host's
// other address on the user network (10.0.2.2) stays unreachable.
func TestVcanForwardReachesHostLoopbackOnly(t *testing.T) {
	if !Inside() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns atomic.Int32
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "host says %s", r.URL.Path) }),
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			},
		}
		go srv.Serve(ln)
		defer srv.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		if !RunWith(t, Options{Forward: []int{port}, Files: map[string][]byte{"port": []byte(strconv.Itoa(port)), "deep/dir/f": []byte("tree")}}) {
			t.Fatal("RunWith returned false on the host")
		}
		if n := conns.Load(); n < 3 {
			t.Errorf("the host's listener saw %d connections, want at least 3", n)
		}
		return
	}
	b, err := os.ReadFile(filepath.Join(FilesDir, "port"))
	if err != nil {
		t.Fatal(err)
	}
	if tree, err := os.ReadFile(filepath.Join(FilesDir, "deep/dir/f")); err != nil || string(tree) != "tree" {
		t.Errorf("deep/dir/f: %q, %v", tree, err)
	}
	port := string(b)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			resp, err := client.Get(fmt.Sprintf("http://%s/%d", net.JoinHostPort(HostAddr, port), i))
			if err != nil {
				t.Errorf("GET %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if want := fmt.Sprintf("host says /%d", i); string(body) != want {
				t.Errorf("GET %d: %q, want %q", i, body, want)
			}
		})
	}
	wg.Wait()
	// The bound only ends the dial; restrict=on drops the packets.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("10.0.2.2", port), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the VM reached the host at 10.0.2.2:%s; restrict=on should keep it to the forwarded ports", port)
	}
}

func TestOptionsValidateRejectsBadPortsAndPaths(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"none", Options{}, true},
		{"ports and a tree", Options{Forward: []int{6443, 1}, Files: map[string][]byte{"layout/blobs/sha256/ab": nil, "kubeconfig": nil}}, true},
		{"port 0", Options{Forward: []int{0}}, false},
		{"port too high", Options{Forward: []int{65536}}, false},
		{"port twice", Options{Forward: []int{6443, 6443}}, false},
		{"absolute file", Options{Files: map[string][]byte{"/etc/passwd": nil}}, false},
		{"climbing file", Options{Files: map[string][]byte{"../init": nil}}, false},
		{"empty name", Options{Files: map[string][]byte{"": nil}}, false},
		{"newline in name", Options{Files: map[string][]byte{"a\nb": nil}}, false},
	} {
		if err := tc.opts.validate(); (err == nil) != tc.ok {
			t.Errorf("%s: validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestQemuArgsNetworkOnlyWithForwards(t *testing.T) {
	m := &machine{img: image{kernel: "/k", initrd: "/i", busybox: "/cache/image,x/busybox"}, initrd: "/r"}
	if args := strings.Join(m.qemuArgs(), " "); strings.Contains(args, "-netdev") {
		t.Errorf("no forwards, yet a network: %s", args)
	}
	m.opts.Forward = []int{6443, 8080}
	args := m.qemuArgs()
	i := slices.Index(args, "-netdev")
	if i < 0 {
		t.Fatalf("no -netdev in %q", args)
	}
	want := "user,id=n0,restrict=on,ipv6=off" +
		",guestfwd=tcp:10.0.2.100:6443-cmd:/cache/image,,x/busybox nc 127.0.0.1 6443" +
		",guestfwd=tcp:10.0.2.100:8080-cmd:/cache/image,,x/busybox nc 127.0.0.1 8080"
	if args[i+1] != want {
		t.Errorf("-netdev %s\nwant    %s", args[i+1], want)
	}
}
