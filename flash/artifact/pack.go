package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// PackOptions are what Pack is told about an image beyond its header.
// Fields left zero are taken from the header; fields set must agree with
// it, so that a typo on the command line never mislabels firmware.
type PackOptions struct {
	// HardwareIDs lists the hardware the image runs on; the header's
	// hardware id must be among them. Empty means just the header's.
	HardwareIDs []string
	// Version, if set, must equal the header's.
	Version string
	// ReleaseCounter, if set, must equal the header's.
	ReleaseCounter *uint32
	// Delta tunes the patches from each base; nil means delta.Create's
	// defaults.
	Delta *delta.CreateOptions
}

// Packed is a firmware artifact built in memory, ready to be pushed.
type Packed struct {
	Config Config
	// Manifest is the artifact's manifest descriptor.
	Manifest ocispec.Descriptor
	store    *memory.Store
}

// Pack builds a firmware artifact from the firmware image img (the
// flash/image format) and a delta patch from each earlier image in bases.
func Pack(ctx context.Context, img []byte, bases [][]byte, opts *PackOptions) (*Packed, error) {
	if opts == nil {
		opts = &PackOptions{}
	}
	hdr, _, err := image.Parse(img)
	if err != nil {
		return nil, fmt.Errorf("artifact: pack: %w", err)
	}
	cfg, err := packConfig(hdr, img, opts)
	if err != nil {
		return nil, err
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	store := memory.New()
	configDesc, err := push(ctx, store, ConfigMediaType, cb, nil)
	if err != nil {
		return nil, err
	}
	imgDesc, err := push(ctx, store, ImageMediaType, img, map[string]string{
		ocispec.AnnotationTitle: fileName(hdr.HardwareID + "-" + hdr.Version + ".img"),
	})
	if err != nil {
		return nil, err
	}
	layers := []ocispec.Descriptor{imgDesc}
	seen := map[string]bool{cfg.SHA256: true}
	for i, base := range bases {
		bh, _, err := image.Parse(base)
		if err != nil {
			return nil, fmt.Errorf("artifact: pack: base image %d: %w", i+1, err)
		}
		if bh.HardwareID != hdr.HardwareID {
			return nil, fmt.Errorf("artifact: pack: base image %d is for hardware %q, the image for %q: a delta between them makes no sense", i+1, bh.HardwareID, hdr.HardwareID)
		}
		bd := imageDigest(base)
		if seen[bd] {
			return nil, fmt.Errorf("artifact: pack: base image %d (%s) is the image itself or an earlier base: give each base once", i+1, bd)
		}
		seen[bd] = true
		layer, err := deltaLayer(base, img, opts.Delta)
		if err != nil {
			return nil, fmt.Errorf("artifact: pack: delta from base image %d (version %s): %w", i+1, bh.Version, err)
		}
		d, err := push(ctx, store, DeltaMediaType, layer, map[string]string{
			AnnotationBaseDigest:    bd,
			ocispec.AnnotationTitle: fileName(hdr.HardwareID + "-" + hdr.Version + "-from-" + bh.Version + ".delta"),
		})
		if err != nil {
			return nil, err
		}
		layers = append(layers, d)
	}
	m, err := oras.PackManifest(ctx, store, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{
		ConfigDescriptor: &configDesc,
		Layers:           layers,
		ManifestAnnotations: map[string]string{
			ocispec.AnnotationVersion: cfg.Version,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("artifact: pack manifest: %w", err)
	}
	return &Packed{Config: cfg, Manifest: m, store: store}, nil
}

// packConfig fills a config from the header and checks the options
// against it.
func packConfig(hdr image.Header, img []byte, opts *PackOptions) (Config, error) {
	if opts.Version != "" && opts.Version != hdr.Version {
		return Config{}, fmt.Errorf("artifact: pack: version %q given, the image header says %q: fix the flag or the image", opts.Version, hdr.Version)
	}
	if opts.ReleaseCounter != nil && *opts.ReleaseCounter != hdr.ReleaseCounter {
		return Config{}, fmt.Errorf("artifact: pack: release counter %d given, the image header says %d: fix the flag or the image", *opts.ReleaseCounter, hdr.ReleaseCounter)
	}
	ids := opts.HardwareIDs
	if len(ids) == 0 {
		ids = []string{hdr.HardwareID}
	} else if !slices.Contains(ids, hdr.HardwareID) {
		return Config{}, fmt.Errorf("artifact: pack: hardware ids %q given, the image header says %q: list the image's own hardware id too", ids, hdr.HardwareID)
	}
	cfg := Config{
		HardwareIDs:    slices.Clone(ids),
		Version:        hdr.Version,
		ReleaseCounter: hdr.ReleaseCounter,
		Size:           int64(len(img)),
		SHA256:         imageDigest(img),
	}
	if err := cfg.validate(); err != nil {
		return Config{}, fmt.Errorf("artifact: pack: %w", err)
	}
	return cfg, nil
}

// deltaLayer is an enveloped patch from base to target.
func deltaLayer(base, target []byte, opts *delta.CreateOptions) ([]byte, error) {
	var c delta.Compression = delta.CompressionLZMA
	if opts != nil {
		c = opts.Compression
	}
	b, err := delta.NewEnvelope(base, target, c).AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	buf := bytes.NewBuffer(b)
	if err := delta.Create(buf, base, target, opts); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fileName makes s safe as the file name tools like oras pull write a
// layer to: header fields may hold '/' or "..", which must not become a
// path.
func fileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' && i > 0 && b[i-1] != '.') {
			b[i] = '_'
		}
	}
	return string(b)
}

// imageDigest is flash/image.Digest as an OCI digest string.
func imageDigest(img []byte) string {
	d := image.Digest(img)
	return digest.NewDigestFromBytes(digest.SHA256, d[:]).String()
}

func push(ctx context.Context, s content.Pusher, mediaType string, b []byte, annotations map[string]string) (ocispec.Descriptor, error) {
	d := content.NewDescriptorFromBytes(mediaType, b)
	d.Annotations = annotations
	if err := s.Push(ctx, d, bytes.NewReader(b)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("artifact: pack: %w", err)
	}
	return d, nil
}

// Push copies the artifact to ref, a registry reference with a tag or an
// oci-layout:DIR:TAG reference (the directory is created if need be),
// and returns the reference by digest it can be resolved by.
func (p *Packed) Push(ctx context.Context, ref string, opts *Options) (string, error) {
	r, err := parseReference(ref)
	if err != nil {
		return "", err
	}
	if validDigest(r.ref) {
		return "", fmt.Errorf("artifact: push to %s: give a tag, not a digest: the digest is the artifact's own (%s)", ref, p.Manifest.Digest)
	}
	t, err := r.destination(ctx, opts)
	if err != nil {
		return "", err
	}
	if err := oras.CopyGraph(ctx, p.store, t, p.Manifest, oras.DefaultCopyGraphOptions); err != nil {
		return "", fmt.Errorf("artifact: push to %s: %w", ref, err)
	}
	if err := t.Tag(ctx, p.Manifest, r.ref); err != nil {
		return "", fmt.Errorf("artifact: tag %s: %w", ref, err)
	}
	if r.layoutDir != "" {
		return LayoutPrefix + r.layoutDir + "@" + p.Manifest.Digest.String(), nil
	}
	return r.registry.Registry + "/" + r.registry.Repository + "@" + p.Manifest.Digest.String(), nil
}
