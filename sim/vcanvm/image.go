package vcanvm

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// imageFormat names the layout of the cached image; change it whenever the
// way the image is built changes, so that stale caches are not used.
const imageFormat = "vcanvm-image-2"

// modules are the kernel modules the VM loads, in load order: vcan needs
// can-dev, can-raw and can-isotp need can. They may be plain (.ko, as in
// Debian 12) or xz-compressed (.ko.xz, later Debian kernels); the init
// script unpacks the latter with busybox's unxz.
var modules = []string{"can", "can-raw", "can-isotp", "can-dev", "vcan"}

// netModules are the kernel modules of the virtio network card, in load
// order. Debian builds them as modules; the init script loads them only for
// a run with forwarded ports (Options.Forward), so that other runs boot as
// fast as before.
var netModules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "failover", "net_failover", "virtio_net"}

// canUtils are the can-utils programs copied into the VM.
var canUtils = []string{"candump", "cansend", "cangen", "isotpsend", "isotprecv", "isotpdump"}

// debs are the Debian packages the image is made of, by file name.
// .ci/install-vcanvm.sh downloads them into the cache's debs directory.
var debs = []struct {
	role    string
	pattern *regexp.Regexp
}{
	{"kernel", regexp.MustCompile(`^linux-image-\d+\.\d+\.\d+-\d+-amd64_[^_]+_amd64\.deb$`)},
	{"busybox", regexp.MustCompile(`^busybox-static_[^_]+_amd64\.deb$`)},
	{"can-utils", regexp.MustCompile(`^can-utils_[^_]+_amd64\.deb$`)},
}

// initScript is the VM's /init. It prepares the machine, runs the payload's
// /vcanvm/run and prints the exit marker that the host waits for. A setup
// failure reports status 125 so that the host can tell it from a test
// failure.
var initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
nonce=$(cat /vcanvm/nonce)
fail() {
	echo "vcanvm: setup failed: $*"
	echo "vcanvm-exit $nonce 125"
	poweroff -f
}
load() {
	for m in "$@"; do
		f=$(echo /lib/modules/$m.ko*)
		case $f in
		*.xz) unxz -c $f >/tmp/$m.ko && f=/tmp/$m.ko ;; # newer Debian kernels compress modules
		esac
		insmod $f || fail "insmod $m"
	done
}
load ` + strings.Join(modules, " ") + `
ip link set lo up || fail "ip link set lo up"
ip link add dev vcan0 type vcan || fail "ip link add vcan0"
ip link set vcan0 mtu 16 up || fail "ip link set vcan0 mtu 16 up"
ip link add dev vcan1 type vcan || fail "ip link add vcan1"
ip link set vcan1 mtu 72 up || fail "ip link set vcan1 mtu 72 up"
if [ -e /vcanvm/net ]; then
	# qemu's user network: slirp's default guest address; the forwarded
	# ports are at ` + HostAddr + `, on the same /24.
	load ` + strings.Join(netModules, " ") + `
	ip link set eth0 up || fail "ip link set eth0 up"
	ip addr add ` + guestAddr + `/24 dev eth0 || fail "ip addr add ` + guestAddr + `/24 dev eth0"
fi
echo "vcanvm-ready $nonce $(cut -d' ' -f1 /proc/uptime)"
cd /tmp
HOME=/tmp TMPDIR=/tmp ` + envInside + `=1 sh /vcanvm/run
echo "vcanvm-exit $nonce $?"
poweroff -f
`

// errMissing marks a missing prerequisite: the harness skips the test and
// says what to install instead of failing.
type errMissing struct{ msg string }

func (e *errMissing) Error() string { return e.msg }

func missingf(format string, args ...any) error {
	return &errMissing{fmt.Sprintf(format, args...)}
}

// cacheRoot returns the harness's cache directory,
// $XDG_CACHE_HOME/ecu-kubelet/vcanvm or ~/.cache/ecu-kubelet/vcanvm, the
// same directory .ci/install-vcanvm.sh fills.
func cacheRoot() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", missingf("no cache directory (%v); set HOME or XDG_CACHE_HOME", err)
	}
	return filepath.Join(d, "ecu-kubelet", "vcanvm"), nil
}

// image is a bootable kernel and the base initramfs that goes with it.
type image struct {
	kernel  string // bzImage
	initrd  string // newc cpio: busybox, modules, can-utils, /init
	busybox string // the same static busybox, for the host: its nc carries forwarded connections
}

// findDebs returns the package files of the image, by role. Where a role
// has several (an upgrade left the old one), the newest file wins.
func findDebs(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	found := map[string]string{}
	var missing []string
	for _, d := range debs {
		var best string
		var bestTime int64
		for _, e := range entries {
			if !d.pattern.MatchString(e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return nil, err
			}
			if best == "" || info.ModTime().UnixNano() > bestTime {
				best, bestTime = filepath.Join(dir, e.Name()), info.ModTime().UnixNano()
			}
		}
		if best == "" {
			missing = append(missing, d.role)
			continue
		}
		found[d.role] = best
	}
	if len(missing) > 0 {
		return nil, missingf("no Debian package for %s in %s", strings.Join(missing, ", "), dir)
	}
	return found, nil
}

// imageKey identifies an image by everything it is built from.
func imageKey(pkgs map[string]string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%q\n%q\n%q\n", imageFormat, initScript, modules, netModules, canUtils)
	roles := make([]string, 0, len(pkgs))
	for r := range pkgs {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		info, err := os.Stat(pkgs[r])
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %s %d %d\n", r, filepath.Base(pkgs[r]), info.Size(), info.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildImage returns the cached image for the packages in root/debs,
// building it first if needed. Concurrent builders (go test runs packages
// in parallel) each build into a private directory and the first rename
// wins, so no reader ever sees a half-written image.
func buildImage(t *testing.T, root string) (image, error) {
	t.Helper()
	pkgs, err := findDebs(filepath.Join(root, "debs"))
	if err != nil {
		return image{}, err
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return image{}, missingf("dpkg-deb not found; the harness unpacks Debian packages with it (apt-get install dpkg)")
	}
	key, err := imageKey(pkgs)
	if err != nil {
		return image{}, err
	}
	dir := filepath.Join(root, "image-"+key)
	img := image{kernel: filepath.Join(dir, "vmlinuz"), initrd: filepath.Join(dir, "base.cpio"), busybox: filepath.Join(dir, "busybox")}
	if _, err := os.Stat(img.initrd); err == nil {
		return img, nil
	}
	t.Logf("vcanvm: building the VM image in %s from %s", dir, strings.Join(slices.Sorted(maps.Values(pkgs)), ", "))
	tmp, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return image{}, err
	}
	defer os.RemoveAll(tmp)
	if err := writeImage(tmp, pkgs); err != nil {
		return image{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(img.initrd); statErr != nil {
			return image{}, fmt.Errorf("vcanvm: storing the image in %s: %v", dir, err)
		}
		return img, nil
	}
	pruneImages(root, dir)
	return img, nil
}

// pruneImages removes the images other than keep that were built more than
// a day ago: their packages were replaced, and no run still boots them.
func pruneImages(root, keep string) {
	old, _ := filepath.Glob(filepath.Join(root, "image-*"))
	for _, dir := range old {
		info, err := os.Stat(dir)
		if dir != keep && err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			os.RemoveAll(dir)
		}
	}
}

// writeImage unpacks what the VM needs from the packages into dir/vmlinuz
// and dir/base.cpio.
func writeImage(dir string, pkgs map[string]string) error {
	f, err := os.Create(filepath.Join(dir, "base.cpio"))
	if err != nil {
		return err
	}
	defer f.Close()
	cw := newCPIOWriter(f)
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "usr/bin", "lib/modules", "vcanvm"} {
		cw.Dir(d)
	}
	// The kernel opens /dev/console for init before anything is mounted.
	cw.CharDev("dev/console", 0o600, 5, 1)
	cw.File("init", 0o755, []byte(initScript))

	// Kernel and modules.
	var kernel bool
	loaded := map[string]bool{}
	err = eachDebFile(pkgs["kernel"], func(name string, r io.Reader) error {
		base := path.Base(name)
		if strings.HasPrefix(name, "boot/vmlinuz-") {
			kernel = true
			return copyToFile(filepath.Join(dir, "vmlinuz"), r)
		}
		if !strings.Contains(name, "lib/modules/") {
			return nil
		}
		mod, _, _ := strings.Cut(base, ".ko")
		if !strings.Contains(base, ".ko") || !slices.Contains(modules, mod) && !slices.Contains(netModules, mod) {
			return nil
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		loaded[mod] = true
		cw.File("lib/modules/"+base, 0o644, data)
		return nil
	})
	if err != nil {
		return err
	}
	if !kernel {
		return fmt.Errorf("vcanvm: %s holds no boot/vmlinuz-*", pkgs["kernel"])
	}
	for _, m := range slices.Concat(modules, netModules) {
		if !loaded[m] {
			return fmt.Errorf("vcanvm: %s holds no module %s; the image needs %s", pkgs["kernel"], m, strings.Join(slices.Concat(modules, netModules), ", "))
		}
	}

	// busybox: the shell, mount, insmod, ip and poweroff.
	var busybox bool
	err = eachDebFile(pkgs["busybox"], func(name string, r io.Reader) error {
		if name != "bin/busybox" && name != "usr/bin/busybox" {
			return nil
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		busybox = true
		cw.File("bin/busybox", 0o755, data)
		return os.WriteFile(filepath.Join(dir, "busybox"), data, 0o755)
	})
	if err != nil {
		return err
	}
	if !busybox {
		return fmt.Errorf("vcanvm: %s holds no bin/busybox", pkgs["busybox"])
	}

	// can-utils and the shared libraries they load.
	libs := map[string]bool{}
	var tools []string
	err = eachDebFile(pkgs["can-utils"], func(name string, r io.Reader) error {
		if !strings.HasPrefix(name, "usr/bin/") || !slices.Contains(canUtils, path.Base(name)) {
			return nil
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		tools = append(tools, path.Base(name))
		cw.File(name, 0o755, data)
		return addLibs(cw, data, libs)
	})
	if err != nil {
		return err
	}
	if len(tools) != len(canUtils) {
		return fmt.Errorf("vcanvm: %s holds %v of %v", pkgs["can-utils"], tools, canUtils)
	}
	if err := cw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// eachDebFile calls fn for every regular file in a Debian package, with
// its path relative to / ("boot/vmlinuz-..."). dpkg-deb undoes the
// package's compression, whichever it is.
func eachDebFile(deb string, fn func(name string, r io.Reader) error) error {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	tr := tar.NewReader(out)
	var walkErr error
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			walkErr = fmt.Errorf("vcanvm: reading %s: %v", deb, err)
			break
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := fn(strings.TrimPrefix(path.Clean(hdr.Name), "./"), tr); err != nil {
			walkErr = err
			break
		}
	}
	io.Copy(io.Discard, out) // let dpkg-deb finish writing before Wait
	if err := cmd.Wait(); err != nil && walkErr == nil {
		walkErr = fmt.Errorf("vcanvm: dpkg-deb --fsys-tarfile %s: %v: %s", deb, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return walkErr
}

// libDirs are where the dynamic loader of a Debian amd64 system finds
// libraries; can-utils' dependencies are taken from this machine.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// addLibs adds the program interpreter and the shared libraries that the
// ELF executable or library exe needs, transitively, at the paths the
// loader looks for them (what ldd would list).
func addLibs(cw *cpioWriter, exe []byte, have map[string]bool) error {
	ef, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		return fmt.Errorf("vcanvm: not an ELF file: %v", err)
	}
	var paths []string
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return err
			}
			paths = append(paths, strings.TrimRight(string(b), "\x00"))
		}
	}
	needed, err := ef.ImportedLibraries()
	if err != nil {
		return err
	}
	for _, lib := range needed {
		p, err := findLib(lib)
		if err != nil {
			return err
		}
		paths = append(paths, p)
	}
	for _, p := range paths {
		if have[p] {
			continue
		}
		have[p] = true
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("vcanvm: can-utils needs %s: %v", p, err)
		}
		cw.File(p, 0o755, data)
		if err := addLibs(cw, data, have); err != nil {
			return err
		}
	}
	return nil
}

func findLib(name string) (string, error) {
	for _, d := range libDirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("vcanvm: can-utils needs %s, which is in none of %v", name, libDirs)
}

func copyToFile(name string, r io.Reader) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
