package artifact

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// testImage builds a firmware image of n pseudo-random bytes; images with
// the same seed and a different version differ in a few places only, as
// firmware releases do.
func testImage(t testing.TB, version string, counter uint32, seed uint64, n int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	for i := 0; i < len(version) && i < n; i++ {
		payload[n/2+i%(n/2)] ^= version[i]
	}
	img, err := image.Build(image.Header{Version: version, HardwareID: "BRAKE-HW-2", ReleaseCounter: counter}, payload)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type images struct{ v1, v2, v3 []byte }

func testImages(t testing.TB) images {
	return images{
		v1: testImage(t, "1.0.0", 1, 7, 8<<10),
		v2: testImage(t, "1.1.0", 2, 7, 8<<10),
		v3: testImage(t, "2.0.0", 3, 7, 8<<10),
	}
}

// registryServer starts go-containerregistry's registry on loopback;
// wrap, if not nil, wraps its handler.
func registryServer(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func readAll(t *testing.T, open func(context.Context) (io.ReadCloser, error)) ([]byte, error) {
	t.Helper()
	rc, err := open(t.Context())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// checkFirmware asserts that fw holds img and a delta from each base that
// turns it into img.
func checkFirmware(t *testing.T, fw *Firmware, img []byte, bases ...[]byte) {
	t.Helper()
	got, err := readAll(t, fw.OpenImage)
	if err != nil {
		t.Fatalf("read image: %v", err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("image read back differs from the packed one")
	}
	if fw.Config.SHA256 != imageDigest(img) || fw.Config.Size != int64(len(img)) {
		t.Errorf("config %+v does not describe the image", fw.Config)
	}
	if len(fw.Deltas) != len(bases) {
		t.Fatalf("%d deltas, want %d", len(fw.Deltas), len(bases))
	}
	for _, base := range bases {
		d, ok := fw.DeltaFrom(imageDigest(base))
		if !ok {
			t.Fatalf("no delta from %s", imageDigest(base))
		}
		patch, err := readAll(t, d.Open)
		if err != nil {
			t.Fatalf("read delta: %v", err)
		}
		if int64(len(patch)) != d.Size {
			t.Errorf("delta of %d bytes, Size says %d", len(patch), d.Size)
		}
		var out bytes.Buffer
		if _, err := delta.ApplyEnvelope(bytes.NewReader(base), int64(len(base)), bytes.NewReader(patch), &out, nil); err != nil {
			t.Fatalf("apply delta: %v", err)
		}
		if !bytes.Equal(out.Bytes(), img) {
			t.Fatal("delta applied to its base does not give the image")
		}
	}
}

func TestPackPushResolveFromRegistry(t *testing.T) {
	ims := testImages(t)
	host := registryServer(t, nil)
	rc := uint32(3)
	p, err := Pack(t.Context(), ims.v3, [][]byte{ims.v1, ims.v2}, &PackOptions{
		HardwareIDs: []string{"BRAKE-HW-2", "BRAKE-HW-2B"}, Version: "2.0.0", ReleaseCounter: &rc,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := &Options{PlainHTTP: true}
	ref := host + "/fw/brake:2.0.0"
	byDigest, err := p.Push(t.Context(), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{ref, byDigest} {
		fw, err := Resolve(t.Context(), r, opts)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", r, err)
		}
		if fw.Digest != p.Manifest.Digest.String() || fw.Ref != r {
			t.Errorf("Ref, Digest = %s, %s; want %s, %s", fw.Ref, fw.Digest, r, p.Manifest.Digest)
		}
		if got := fw.Config.HardwareIDs; len(got) != 2 || fw.Config.Version != "2.0.0" || fw.Config.ReleaseCounter != 3 {
			t.Errorf("config %+v", fw.Config)
		}
		checkFirmware(t, fw, ims.v3, ims.v1, ims.v2)
	}
}

func TestPlainHTTPOnlyForLoopback(t *testing.T) {
	_, err := Resolve(t.Context(), "registry.example.com/fw/brake:1", &Options{PlainHTTP: true})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("plain HTTP to a remote host: err = %v, want a refusal", err)
	}
}

// basicAuth lets through requests with user:pass only.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="firmware"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func dockerConfig(host, user, pass string) []byte {
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))},
	}})
	return b
}

func TestRegistryCredentials(t *testing.T) {
	ims := testImages(t)
	host := registryServer(t, basicAuth("ci", "s3cret"))
	ref := host + "/fw/brake:1.1.0"
	dir := t.TempDir()
	good := filepath.Join(dir, "config.json")
	if err := os.WriteFile(good, dockerConfig(host, "ci", "s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Pack(t.Context(), ims.v2, [][]byte{ims.v1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(t.Context(), ref, &Options{PlainHTTP: true, DockerConfig: good}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		opts   Options
		wantOK bool
	}{
		{"docker config", Options{DockerConfig: good}, true},
		{"pull secret", Options{PullSecret: dockerConfig(host, "ci", "s3cret")}, true},
		{"wrong password in pull secret", Options{PullSecret: dockerConfig(host, "ci", "guess")}, false},
		{"no credentials", Options{}, false},
		{"credentials for another host", Options{PullSecret: dockerConfig("127.0.0.1:1", "ci", "s3cret")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.PlainHTTP = true
			fw, err := Resolve(t.Context(), ref, &tt.opts)
			if !tt.wantOK {
				if err == nil {
					t.Fatal("resolved without valid credentials")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkFirmware(t, fw, ims.v2, ims.v1)
		})
	}
}

// tamper flips a byte of every blob GET for a digest in bad.
func tamper(bad map[string]bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := strings.LastIndex(r.URL.Path, "/blobs/")
			if r.Method != http.MethodGet || i < 0 || !bad[r.URL.Path[i+len("/blobs/"):]] {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[len(body)-1] ^= 0x20
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

func TestTamperedBlobDetected(t *testing.T) {
	ims := testImages(t)
	p, err := Pack(t.Context(), ims.v2, [][]byte{ims.v1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := manifestOf(t, p)
	tests := []struct {
		name string
		blob ocispec.Descriptor
		read func(fw *Firmware) func(context.Context) (io.ReadCloser, error)
	}{
		{"image", m.Layers[0], func(fw *Firmware) func(context.Context) (io.ReadCloser, error) { return fw.OpenImage }},
		{"delta", m.Layers[1], func(fw *Firmware) func(context.Context) (io.ReadCloser, error) { return fw.Deltas[0].Open }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := registryServer(t, tamper(map[string]bool{tt.blob.Digest.String(): true}))
			ref := host + "/fw/brake:1.1.0"
			if _, err := p.Push(t.Context(), ref, &Options{PlainHTTP: true}); err != nil {
				t.Fatal(err)
			}
			fw, err := Resolve(t.Context(), ref, &Options{PlainHTTP: true})
			if err != nil {
				t.Fatal(err) // the flipped byte is the last, past the headers Resolve checks
			}
			_, err = readAll(t, tt.read(fw))
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("reading a tampered %s: err = %v, want ErrDigestMismatch", tt.name, err)
			}
		})
	}
	t.Run("config", func(t *testing.T) {
		host := registryServer(t, tamper(map[string]bool{m.Config.Digest.String(): true}))
		ref := host + "/fw/brake:1.1.0"
		if _, err := p.Push(t.Context(), ref, &Options{PlainHTTP: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := Resolve(t.Context(), ref, &Options{PlainHTTP: true}); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})
}

func manifestOf(t *testing.T, p *Packed) ocispec.Manifest {
	t.Helper()
	b, err := content.FetchAll(t.Context(), p.store, p.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// handMade packs a manifest from parts, as a tool other than Pack might,
// into a layout and returns its reference.
func handMade(t *testing.T, artifactType string, config []byte, layers []ocispec.Descriptor, blobs ...[]byte) string {
	t.Helper()
	ctx := t.Context()
	s := memory.New()
	for _, l := range layers {
		for _, b := range blobs {
			if content.NewDescriptorFromBytes(l.MediaType, b).Digest != l.Digest {
				continue
			}
			if err := s.Push(ctx, l, bytes.NewReader(b)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
				t.Fatal(err)
			}
		}
	}
	cd, err := push(ctx, s, ConfigMediaType, config, nil)
	if err != nil {
		t.Fatal(err)
	}
	md, err := oras.PackManifest(ctx, s, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{ConfigDescriptor: &cd, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	p := &Packed{Manifest: md, store: s}
	ref := LayoutPrefix + t.TempDir() + ":bad"
	if _, err := p.Push(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestInvalidArtifactRejected(t *testing.T) {
	ims := testImages(t)
	img := content.NewDescriptorFromBytes(ImageMediaType, ims.v2)
	cfg := func(drop string, extra string) []byte {
		m := map[string]any{
			"hardwareIds": []string{"BRAKE-HW-2"}, "version": "1.1.0", "releaseCounter": 2,
			"size": len(ims.v2), "sha256": imageDigest(ims.v2),
		}
		delete(m, drop)
		if extra != "" {
			m[extra] = true
		}
		b, _ := json.Marshal(m)
		return b
	}
	patch, err := deltaLayer(ims.v1, ims.v2, nil)
	if err != nil {
		t.Fatal(err)
	}
	dl := content.NewDescriptorFromBytes(DeltaMediaType, patch)
	annotated := dl
	annotated.Annotations = map[string]string{AnnotationBaseDigest: imageDigest(ims.v1)}
	wrongBase := dl
	wrongBase.Annotations = map[string]string{AnnotationBaseDigest: imageDigest(ims.v3)}
	notEnvelope := content.NewDescriptorFromBytes(DeltaMediaType, ims.v1)
	notEnvelope.Annotations = annotated.Annotations

	tests := []struct {
		name, artifactType string
		config             []byte
		layers             []ocispec.Descriptor
		want               string
	}{
		{"valid", ArtifactType, cfg("", ""), []ocispec.Descriptor{img, annotated}, ""},
		{"wrong artifactType", "application/vnd.example.other", cfg("", ""), []ocispec.Descriptor{img}, "artifactType"},
		{"missing version", ArtifactType, cfg("version", ""), []ocispec.Descriptor{img}, "version: missing"},
		{"missing releaseCounter", ArtifactType, cfg("releaseCounter", ""), []ocispec.Descriptor{img}, "releaseCounter: missing"},
		{"missing hardwareIds", ArtifactType, cfg("hardwareIds", ""), []ocispec.Descriptor{img}, "hardwareIds: missing"},
		{"unknown field", ArtifactType, cfg("", "signedBy"), []ocispec.Descriptor{img}, "signedBy"},
		{"no image layer", ArtifactType, cfg("", ""), []ocispec.Descriptor{annotated}, "no image layer"},
		{"two image layers", ArtifactType, cfg("", ""), []ocispec.Descriptor{img, img}, "more than one image layer"},
		{"delta without base annotation", ArtifactType, cfg("", ""), []ocispec.Descriptor{img, dl}, "annotation"},
		{"delta annotated with another base", ArtifactType, cfg("", ""), []ocispec.Descriptor{img, wrongBase}, "differs from its annotation"},
		{"delta without envelope", ArtifactType, cfg("", ""), []ocispec.Descriptor{img, notEnvelope}, "ECUDELTA"},
		{"config for another image", ArtifactType, func() []byte {
			var m map[string]any
			json.Unmarshal(cfg("", ""), &m)
			m["sha256"] = imageDigest(ims.v1)
			b, _ := json.Marshal(m)
			return b
		}(), []ocispec.Descriptor{img}, "the config says"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := handMade(t, tt.artifactType, tt.config, tt.layers, ims.v2, patch, ims.v1)
			fw, err := Resolve(t.Context(), ref, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				checkFirmware(t, fw, ims.v2, ims.v1)
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

func TestPackRefusesContradictingFlags(t *testing.T) {
	ims := testImages(t)
	wrong := uint32(9)
	other := testImage(t, "0.9", 1, 7, 8<<10)
	otherHW, err := image.Build(image.Header{Version: "0.1", HardwareID: "WIPER", ReleaseCounter: 1}, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		bases [][]byte
		opts  PackOptions
		want  string
	}{
		{"version", nil, PackOptions{Version: "9.9.9"}, "version"},
		{"release counter", nil, PackOptions{ReleaseCounter: &wrong}, "release counter"},
		{"hardware id", nil, PackOptions{HardwareIDs: []string{"WIPER"}}, "hardware ids"},
		{"base for other hardware", [][]byte{otherHW}, PackOptions{}, "hardware"},
		{"base twice", [][]byte{other, other}, PackOptions{}, "each base once"},
		{"base is the image", [][]byte{ims.v2}, PackOptions{}, "each base once"},
		{"not an image", [][]byte{[]byte("garbage")}, PackOptions{}, "magic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Pack(t.Context(), ims.v2, tt.bases, &tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}

func TestLayoutRoundTripOffline(t *testing.T) {
	ims := testImages(t)
	p, err := Pack(t.Context(), ims.v3, [][]byte{ims.v2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	byDigest, err := p.Push(t.Context(), LayoutPrefix+dir+":2.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{LayoutPrefix + dir + ":2.0.0", byDigest} {
		fw, err := Resolve(t.Context(), ref, nil)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", ref, err)
		}
		checkFirmware(t, fw, ims.v3, ims.v2)
	}
	if _, err := Resolve(t.Context(), LayoutPrefix+dir+":9.9.9", nil); err == nil {
		t.Error("resolved a tag the layout does not have")
	}
	if _, err := Resolve(t.Context(), LayoutPrefix+filepath.Join(dir, "none")+":2.0.0", nil); err == nil {
		t.Error("resolved from a directory that does not exist")
	}
	empty := t.TempDir()
	if _, err := Resolve(t.Context(), LayoutPrefix+empty+":2.0.0", nil); err == nil {
		t.Error("resolved from a directory that is not a layout")
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("Resolve wrote %d entries into the directory it read", len(entries))
	}
}

func TestLayoutTamperedBlobDetected(t *testing.T) {
	ims := testImages(t)
	p, err := Pack(t.Context(), ims.v2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ref := LayoutPrefix + dir + ":1.1.0"
	if _, err := p.Push(t.Context(), ref, nil); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(imageDigest(ims.v2), "sha256:"))
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	fw, err := Resolve(t.Context(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, fw.OpenImage); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
}

func TestCopyFillsOfflineCache(t *testing.T) {
	ims := testImages(t)
	host := registryServer(t, basicAuth("ci", "pw"))
	opts := &Options{PlainHTTP: true, PullSecret: dockerConfig(host, "ci", "pw")}
	p, err := Pack(t.Context(), ims.v2, [][]byte{ims.v1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	byDigest, err := p.Push(t.Context(), host+"/fw/brake:1.1.0", opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	for _, ref := range []string{host + "/fw/brake:1.1.0", byDigest} {
		local, err := Copy(t.Context(), ref, dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		fw, err := Resolve(t.Context(), local, nil)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", local, err)
		}
		checkFirmware(t, fw, ims.v2, ims.v1)
	}
}

func TestCopyRefusesTamperedBlob(t *testing.T) {
	ims := testImages(t)
	p, err := Pack(t.Context(), ims.v2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	host := registryServer(t, tamper(map[string]bool{imageDigest(ims.v2): true}))
	opts := &Options{PlainHTTP: true}
	if _, err := p.Push(t.Context(), host+"/fw/brake:1.1.0", opts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Copy(t.Context(), host+"/fw/brake:1.1.0", dir, opts); err == nil {
		t.Fatal("copied a tampered image into the cache")
	}
	if _, err := Resolve(t.Context(), LayoutPrefix+dir+":1.1.0", nil); err == nil {
		t.Fatal("the cache holds the tampered artifact")
	}
}

func TestLayerTitlesAreSafeFileNames(t *testing.T) {
	for in, want := range map[string]string{
		"BRAKE-HW-2-1.1.0.img": "BRAKE-HW-2-1.1.0.img",
		"../etc/passwd":        "_._etc_passwd",
		"a b/c..d":             "a_b_c._d",
		".hidden":              "_hidden",
	} {
		if got := fileName(in); got != want {
			t.Errorf("fileName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseReference(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in, dir, ref string
		bad          bool
	}{
		{in: "oci-layout:/var/cache/fw:1.2", dir: "/var/cache/fw", ref: "1.2"},
		{in: "oci-layout:/var/cache/fw@" + d, dir: "/var/cache/fw", ref: d},
		{in: "oci-layout:/var/cache/fw", bad: true},
		{in: "oci-layout:/var/cache/fw@sha256:12", bad: true},
		{in: "oci-layout::tag", bad: true},
		{in: "127.0.0.1:5000/fw/brake:1.2", ref: "1.2"},
		{in: "127.0.0.1:5000/fw/brake@" + d, ref: d},
		{in: "127.0.0.1:5000/fw/brake", bad: true},
		{in: "brake", bad: true},
	}
	for _, tt := range tests {
		r, err := parseReference(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("parseReference(%q): err = %v", tt.in, err)
			continue
		}
		if !tt.bad && (r.layoutDir != tt.dir || r.ref != tt.ref) {
			t.Errorf("parseReference(%q) = dir %q ref %q, want %q %q", tt.in, r.layoutDir, r.ref, tt.dir, tt.ref)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"hardwareIds":["A"],"version":"1","releaseCounter":1,"size":200,"sha256":"sha256:` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`{"hardwareIds":[],"version":"","releaseCounter":-1}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		// A config that parses survives a round trip unchanged.
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseConfig(out)
		if err != nil || fmt.Sprint(c2) != fmt.Sprint(c) {
			t.Fatalf("round trip of %+v: %+v, %v", c, c2, err)
		}
	})
}

// FuzzLoadManifest feeds manifests (a valid one, mutated) to the checks
// Resolve runs, over the blobs of a valid artifact: never a panic, and
// whatever is accepted has a valid config and readable, verified image.
func FuzzLoadManifest(f *testing.F) {
	ims := testImages(f)
	p, err := Pack(context.Background(), ims.v2, [][]byte{ims.v1}, nil)
	if err != nil {
		f.Fatal(err)
	}
	mb, err := content.FetchAll(context.Background(), p.store, p.Manifest)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mb)
	f.Add([]byte(`{"schemaVersion":2,"artifactType":"` + ArtifactType + `","config":{},"layers":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := memory.New()
		// The memory store finds blobs by digest, media type and size, so
		// give it the artifact's blobs as the fuzzed manifest describes them.
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) == nil {
			for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
				if rc, err := p.store.Fetch(t.Context(), ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}); err == nil {
					s.Push(t.Context(), d, rc)
					rc.Close()
				}
			}
		}
		desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, b)
		if err := s.Push(t.Context(), desc, bytes.NewReader(b)); err != nil {
			return
		}
		fw, err := load(t.Context(), s, desc)
		if err != nil {
			return
		}
		if err := fw.Config.validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		img, err := readAll(t, fw.OpenImage)
		if err != nil || imageDigest(img) != fw.Config.SHA256 {
			t.Fatalf("accepted an artifact whose image reads %v", err)
		}
	})
}

// FuzzParseReference: a pod's image field is outside input; it is parsed
// or refused, never a panic, and a parsed one names a tag or digest.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"oci-layout:/c:1", "oci-layout:/c@sha256:" + strings.Repeat("0", 64), "127.0.0.1:5000/a/b:1", "a/b@sha256:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseReference(s)
		if err == nil && r.ref == "" {
			t.Fatalf("parseReference(%q) accepted a reference without tag or digest", s)
		}
	})
}
