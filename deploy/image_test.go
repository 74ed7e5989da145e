package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// imageBinary is where the image keeps ecu-kubelet.
const imageBinary = "usr/local/bin/ecu-kubelet"

// buildFlags are the go build flags of the image's binary, as in the
// Makefile's image target and the Dockerfile's build stage.
var buildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// buildah returns a command line for buildah with its own storage under
// dir (vfs: no overlay mounts needed), so that a test neither needs nor
// touches the machine's image store. Without buildah it skips t, or
// fails it under CI=true.
func buildah(t *testing.T, dir string) func(args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath("buildah")
	if err != nil {
		msg := "buildah is not installed (apt-get install buildah): the container image is not built"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (with CI=true this fails the test)")
	}
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	return func(args ...string) *exec.Cmd {
		return exec.Command(path, slices.Concat([]string{"--root", root, "--runroot", run, "--storage-driver", "vfs"}, args)...)
	}
}

// TestImage builds the image's prebuilt target from a fresh static binary
// with buildah, the path CI can take offline, and checks what it ships:
// the binary statically linked, a non-root numeric user, the entrypoint,
// and the files a scratch image must bring itself; then runs the binary
// in it.
func TestImage(t *testing.T) {
	work := t.TempDir()
	bah := buildah(t, filepath.Join(work, "storage"))

	// The context holds what the prebuilt target copies: the files of
	// deploy/image and bin/image, as `make image` lays them out.
	ctx := filepath.Join(work, "context")
	copyTree(t, "image", filepath.Join(ctx, "deploy", "image"))
	bin := filepath.Join(ctx, "bin", "image")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", slices.Concat([]string{"build"}, buildFlags, []string{"-o", filepath.Join(bin, "ecu-kubelet"), "../cmd/ecu-kubelet"})...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	run(t, build)
	if err := os.WriteFile(filepath.Join(bin, "ca-certificates.crt"), testCA(t), 0o644); err != nil {
		t.Fatal(err)
	}

	dockerfile, err := filepath.Abs("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	const tag = "localhost/ecu-kubelet:test"
	run(t, bah("bud", "--target", "prebuilt", "--isolation", "chroot", "-f", dockerfile, "-t", tag, ctx))
	layout := filepath.Join(work, "layout")
	run(t, bah("push", tag, "oci:"+layout+":test"))

	img := readLayout(t, layout)
	cfg := img.config.Config
	if cfg.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532: numeric and not root, so that runAsNonRoot can check it", cfg.User)
	}
	if want := []string{"/" + imageBinary}; !slices.Equal(cfg.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", cfg.Entrypoint, want)
	}
	if len(cfg.Volumes) > 0 {
		t.Errorf("volumes %v: the state directory must be a mount the operator chooses, not an anonymous volume", cfg.Volumes)
	}

	for _, name := range []string{imageBinary, "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt"} {
		if _, ok := img.files[name]; !ok {
			t.Errorf("the image has no /%s; files: %v", name, slices.Sorted(maps.Keys(img.files)))
		}
	}
	if f, ok := img.files[imageBinary]; ok {
		if f.mode&0o111 == 0 {
			t.Errorf("/%s mode %v is not executable", imageBinary, f.mode)
		}
		if err := static(f.data); err != nil {
			t.Errorf("/%s: %v; build it with CGO_ENABLED=0", imageBinary, err)
		}
	}
	if f, ok := img.files["etc/passwd"]; ok && !strings.Contains(string(f.data), ":65532:65532:") {
		t.Errorf("/etc/passwd names no user 65532:\n%s", f.data)
	}

	// And it runs, as the image's user, with nothing but what it ships.
	from := bah("from", tag)
	out, err := from.Output()
	if err != nil {
		t.Fatalf("buildah from: %v", err)
	}
	container := strings.TrimSpace(string(out))
	help, err := bah("run", "--isolation", "chroot", container, "--", "/"+imageBinary, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "Usage:") {
		t.Errorf("ecu-kubelet --help in the image: %v\n%s", err, help)
	}
}

// TestImageFinalStagesAgree defends the Dockerfile's one duplication: the
// from-source release target and the offline prebuilt target (the one CI
// builds) must end with the same instructions, so that what CI checks is
// what users build.
func TestImageFinalStagesAgree(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "# --- final instructions", "# --- end of final instructions ---"
	var blocks []string
	rest := string(data)
	for {
		i := strings.Index(rest, begin)
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], end)
		if j < 0 {
			t.Fatalf("Dockerfile: %q without %q", begin, end)
		}
		blocks = append(blocks, rest[i:i+j])
		rest = rest[i+j+len(end):]
	}
	if len(blocks) != 2 {
		t.Fatalf("Dockerfile has %d blocks of final instructions, want 2 (prebuilt and release)", len(blocks))
	}
	if blocks[0] != blocks[1] {
		t.Errorf("the final instructions of the prebuilt and release stages differ:\n%s\n---\n%s", blocks[0], blocks[1])
	}
	for _, stage := range []string{"AS prebuilt", "AS build", "AS release"} {
		if !strings.Contains(string(data), stage) {
			t.Errorf("Dockerfile has no stage %q", stage)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(string(data)), end) {
		t.Error("the release stage is not the Dockerfile's last: a plain docker build must build it")
	}
}

// static reports why an ELF executable is not statically linked: an
// interpreter (the dynamic loader) or shared libraries it needs.
func static(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: it has an interpreter (PT_INTERP)")
		}
	}
	libs, err := f.ImportedLibraries()
	if err == nil && len(libs) > 0 {
		return fmt.Errorf("dynamically linked against %v", libs)
	}
	return nil
}

type imageFile struct {
	mode os.FileMode
	data []byte
}

type image struct {
	config struct {
		Config struct {
			User       string
			Entrypoint []string
			Volumes    map[string]struct{}
		} `json:"config"`
	}
	files map[string]imageFile
}

// readLayout reads the one image of an OCI image layout: its config and
// the regular files of its layers.
func readLayout(t *testing.T, dir string) image {
	t.Helper()
	blob := func(digest string) []byte {
		alg, hex, ok := strings.Cut(digest, ":")
		if !ok {
			t.Fatalf("digest %q", digest)
		}
		b, err := os.ReadFile(filepath.Join(dir, "blobs", alg, hex))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type descriptor struct {
		Digest string `json:"digest"`
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests", err, len(index.Manifests))
	}
	var manifest struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	var img image
	if err := json.Unmarshal(blob(manifest.Config.Digest), &img.config); err != nil {
		t.Fatal(err)
	}
	img.files = map[string]imageFile{}
	for _, l := range manifest.Layers {
		r := bufio.NewReader(bytes.NewReader(blob(l.Digest)))
		var layer io.Reader = r
		if magic, _ := r.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			layer = zr
		}
		tr := tar.NewReader(layer)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			img.files[strings.TrimPrefix(h.Name, "./")] = imageFile{mode: h.FileInfo().Mode(), data: b}
		}
	}
	return img
}

// testCA is a PEM certificate standing in for the host's CA bundle.
func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "image test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// run runs cmd and fails t with its output when it fails.
func run(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// TestStaticRefusesADynamicExecutable: the check above can fail.
func TestStaticRefusesADynamicExecutable(t *testing.T) {
	data, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh to try: %v", err)
	}
	if err := static(data); err == nil {
		t.Error("/bin/sh passes as statically linked")
	}
	if err := static([]byte("#!/bin/sh\n")); err == nil {
		t.Error("a shell script passes as a static executable")
	}
}
