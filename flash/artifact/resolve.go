package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// MaxManifestSize is the largest manifest Resolve reads: a firmware
// manifest with a hundred deltas is well under it.
const MaxManifestSize = 1 << 20

// ErrDigestMismatch is matched (errors.Is) by the error a reader returns
// at its end when the bytes it gave do not have the digest or size the
// manifest names: they must not be used.
var ErrDigestMismatch = errors.New("artifact: content does not match its digest")

// invalidf returns an error that matches ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Resolve finds the firmware artifact ref names, a registry reference
// (HOST[:PORT]/REPO:TAG or @sha256:<hex>) or an OCI layout reference
// (oci-layout:DIR:TAG or oci-layout:DIR@sha256:<hex>), checks its manifest,
// config, image header and delta envelopes, and returns it. opts may be
// nil; it is not used for layouts. Errors about the artifact itself match
// ErrInvalid.
func Resolve(ctx context.Context, ref string, opts *Options) (*Firmware, error) {
	r, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	t, err := r.source(ctx, opts)
	if err != nil {
		return nil, err
	}
	desc, err := t.Resolve(ctx, r.ref)
	if err != nil {
		return nil, fmt.Errorf("artifact: resolve %s: %w", ref, err)
	}
	fw, err := load(ctx, t, desc)
	if err != nil {
		return nil, fmt.Errorf("artifact: %s: %w", ref, err)
	}
	fw.Ref = ref
	return fw, nil
}

// Copy copies the artifact at the registry reference ref, with everything
// it holds, into the OCI layout directory layoutDir (created if need be),
// tagged with ref's tag or digest, after checking that it is a valid
// firmware artifact. It returns the oci-layout reference to resolve it by.
func Copy(ctx context.Context, ref, layoutDir string, opts *Options) (string, error) {
	r, err := parseReference(ref)
	if err != nil {
		return "", err
	}
	if r.layoutDir != "" {
		return "", fmt.Errorf("artifact: copy from %s: want a registry reference, this is a layout", ref)
	}
	fw, err := Resolve(ctx, ref, opts)
	if err != nil {
		return "", err
	}
	src, err := r.source(ctx, opts)
	if err != nil {
		return "", err
	}
	dst := reference{layoutDir: layoutDir, ref: r.ref}
	dt, err := dst.destination(ctx, nil)
	if err != nil {
		return "", err
	}
	// Copying the digest just checked, not the tag again, keeps a tag moved
	// in between from putting an unchecked artifact in the cache.
	if _, err := oras.Copy(ctx, src, fw.Digest, dt, r.ref, oras.DefaultCopyOptions); err != nil {
		return "", fmt.Errorf("artifact: copy %s to %s: %w", ref, layoutDir, err)
	}
	sep := ":"
	if validDigest(r.ref) {
		sep = "@"
	}
	return LayoutPrefix + layoutDir + sep + r.ref, nil
}

// load reads and checks the manifest desc names and what it refers to.
func load(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) (*Firmware, error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, invalidf("manifest media type %q, want %q", desc.MediaType, ocispec.MediaTypeImageManifest)
	}
	if desc.Size > MaxManifestSize {
		return nil, invalidf("manifest of %d bytes, more than %d", desc.Size, MaxManifestSize)
	}
	b, err := fetchAll(ctx, f, desc)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, invalidf("manifest: %v", err)
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return nil, invalidf("manifest says media type %q, want %q", m.MediaType, ocispec.MediaTypeImageManifest)
	}
	if m.ArtifactType != ArtifactType {
		return nil, invalidf("artifactType %q, want %q: this is not a firmware artifact", m.ArtifactType, ArtifactType)
	}
	if m.Config.MediaType != ConfigMediaType {
		return nil, invalidf("config media type %q, want %q", m.Config.MediaType, ConfigMediaType)
	}
	if !validDigest(m.Config.Digest.String()) || m.Config.Size < 0 {
		return nil, invalidf("config digest %q and size %d: want a sha256 digest", m.Config.Digest, m.Config.Size)
	}
	if m.Config.Size > MaxConfigSize {
		return nil, invalidf("config of %d bytes, more than %d", m.Config.Size, MaxConfigSize)
	}
	cb, err := fetchAll(ctx, f, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(cb)
	if err != nil {
		return nil, err
	}

	fw := &Firmware{Digest: desc.Digest.String(), Config: cfg}
	var img *ocispec.Descriptor
	bases := map[string]bool{}
	for i := range m.Layers {
		l := m.Layers[i]
		if !validDigest(l.Digest.String()) || l.Size < 0 {
			return nil, invalidf("layer %d: digest %q and size %d: want a sha256 digest", i, l.Digest, l.Size)
		}
		switch l.MediaType {
		case ImageMediaType:
			if img != nil {
				return nil, invalidf("more than one image layer (%d and an earlier one)", i)
			}
			img = &l
		case DeltaMediaType:
			d, err := checkDelta(ctx, f, l, cfg)
			if err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			if bases[d.BaseDigest] {
				return nil, invalidf("layer %d: a second delta from base %s", i, d.BaseDigest)
			}
			bases[d.BaseDigest] = true
			fw.Deltas = append(fw.Deltas, d)
		default:
			return nil, invalidf("layer %d: media type %q is neither %q nor %q", i, l.MediaType, ImageMediaType, DeltaMediaType)
		}
	}
	if img == nil {
		return nil, invalidf("no image layer (%q): a firmware artifact carries its full image", ImageMediaType)
	}
	if img.Size != cfg.Size || img.Digest.String() != cfg.SHA256 {
		return nil, invalidf("image layer is %s of %d bytes, the config says %s of %d bytes", img.Digest, img.Size, cfg.SHA256, cfg.Size)
	}
	if err := checkImageHeader(ctx, f, *img, cfg); err != nil {
		return nil, err
	}
	imgDesc := *img
	fw.OpenImage = func(ctx context.Context) (io.ReadCloser, error) { return open(ctx, f, imgDesc) }
	return fw, nil
}

// checkImageHeader reads the image layer's header and checks it against
// the config, so that the engine's plan (hardware id, release counter)
// never trusts a config that disagrees with the bytes it will write.
func checkImageHeader(ctx context.Context, f content.Fetcher, l ocispec.Descriptor, cfg Config) error {
	var b [image.HeaderSize]byte
	if err := readPrefix(ctx, f, l, b[:]); err != nil {
		return fmt.Errorf("image layer: %w", err)
	}
	h, err := image.ParseHeader(b[:])
	if err != nil {
		return invalidf("image layer: %v", err)
	}
	switch {
	case h.Size() != cfg.Size:
		return invalidf("image header says %d bytes, the config %d", h.Size(), cfg.Size)
	case h.Version != cfg.Version:
		return invalidf("image header has version %q, the config %q", h.Version, cfg.Version)
	case h.ReleaseCounter != cfg.ReleaseCounter:
		return invalidf("image header has release counter %d, the config %d", h.ReleaseCounter, cfg.ReleaseCounter)
	}
	for _, id := range cfg.HardwareIDs {
		if id == h.HardwareID {
			return nil
		}
	}
	return invalidf("image header has hardware id %q, which the config's hardwareIds %q do not list", h.HardwareID, cfg.HardwareIDs)
}

// checkDelta checks a delta layer's annotation and envelope.
func checkDelta(ctx context.Context, f content.Fetcher, l ocispec.Descriptor, cfg Config) (Delta, error) {
	base, ok := l.Annotations[AnnotationBaseDigest]
	if !ok {
		return Delta{}, invalidf("delta layer %s has no %s annotation: the engine cannot tell which image it applies to", l.Digest, AnnotationBaseDigest)
	}
	if !validDigest(base) {
		return Delta{}, invalidf("delta layer %s: %s %q is not a sha256 digest", l.Digest, AnnotationBaseDigest, base)
	}
	if base == cfg.SHA256 {
		return Delta{}, invalidf("delta layer %s applies to the image it makes", l.Digest)
	}
	var b [delta.EnvelopeSize]byte
	if err := readPrefix(ctx, f, l, b[:]); err != nil {
		return Delta{}, fmt.Errorf("delta layer %s: %w", l.Digest, err)
	}
	env, err := delta.ReadEnvelope(bytes.NewReader(b[:]))
	if err != nil {
		return Delta{}, invalidf("delta layer %s: %v", l.Digest, err)
	}
	if "sha256:"+hex.EncodeToString(env.BaseSHA256[:]) != base {
		return Delta{}, invalidf("delta layer %s: envelope base sha256:%x differs from its annotation %s", l.Digest, env.BaseSHA256, base)
	}
	if "sha256:"+hex.EncodeToString(env.TargetSHA256[:]) != cfg.SHA256 || env.TargetSize != cfg.Size {
		return Delta{}, invalidf("delta layer %s makes sha256:%x of %d bytes, not this artifact's image %s of %d bytes", l.Digest, env.TargetSHA256, env.TargetSize, cfg.SHA256, cfg.Size)
	}
	return Delta{
		BaseDigest:  base,
		Compression: env.Compression,
		Size:        l.Size,
		Open:        func(ctx context.Context) (io.ReadCloser, error) { return open(ctx, f, l) },
	}, nil
}

// readPrefix fills b from the start of the blob l. It reads only a prefix,
// so the digest of the whole is checked by every later full read.
func readPrefix(ctx context.Context, f content.Fetcher, l ocispec.Descriptor, b []byte) error {
	if l.Size < int64(len(b)) {
		return invalidf("%d bytes, shorter than its %d-byte header", l.Size, len(b))
	}
	rc, err := f.Fetch(ctx, l)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, b); err != nil {
		return fmt.Errorf("reading its header: %w", err)
	}
	return nil
}

// fetchAll reads a whole small blob through a verifying reader.
func fetchAll(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := open(ctx, f, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// open fetches a blob and verifies it as it is read.
func open(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("artifact: fetch %s: %w", desc.Digest, err)
	}
	return &verifyReader{rc: rc, desc: desc, h: sha256.New()}, nil
}

// verifyReader hashes what it reads and, at the end, returns
// ErrDigestMismatch instead of io.EOF if the digest or size is not the
// descriptor's. It never reads more than the descriptor's size, so a
// server sending more cannot make it read without end.
type verifyReader struct {
	rc   io.ReadCloser
	desc ocispec.Descriptor
	h    hash.Hash
	n    int64
	err  error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if left := v.desc.Size - v.n; int64(len(p)) > left+1 {
		// One byte beyond the size lets an overlong blob be seen.
		p = p[:left+1]
	}
	n, err := v.rc.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	switch {
	case v.n > v.desc.Size:
		v.err = fmt.Errorf("%w: %s is longer than its %d bytes", ErrDigestMismatch, v.desc.Digest, v.desc.Size)
		return n, v.err
	case err == io.EOF:
		v.err = v.verify()
		return n, v.err
	case err != nil:
		v.err = err
	}
	return n, err
}

func (v *verifyReader) verify() error {
	if v.n != v.desc.Size {
		return fmt.Errorf("%w: %s: read %d bytes, want %d", ErrDigestMismatch, v.desc.Digest, v.n, v.desc.Size)
	}
	if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.desc.Digest.String() {
		return fmt.Errorf("%w: read %s, want %s: the blob was altered or damaged; fetch it again", ErrDigestMismatch, got, v.desc.Digest)
	}
	return io.EOF
}

func (v *verifyReader) Close() error { return v.rc.Close() }
