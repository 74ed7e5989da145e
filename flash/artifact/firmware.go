package artifact

import (
	"context"
	"io"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
)

// Media types of a firmware artifact (an OCI artifact, docs/firmware-artifacts.md).
const (
	ArtifactType    = "application/vnd.ecu-kubelet.firmware.v1"
	ConfigMediaType = "application/vnd.ecu-kubelet.firmware.config.v1+json"
	ImageMediaType  = "application/vnd.ecu-kubelet.firmware.image.v1"
	// DeltaMediaType layers hold a delta.Envelope around a detools patch.
	DeltaMediaType = "application/vnd.ecu-kubelet.firmware.delta.v1"
	// AnnotationBaseDigest on a delta layer is the "sha256:<hex>" digest of
	// the whole firmware image (flash/image.Digest) the patch applies to.
	AnnotationBaseDigest = "ecu-kubelet.io/base-digest"
)

// Config is the JSON config of a firmware artifact.
type Config struct {
	// HardwareIDs lists the hardware the image runs on (flash/image
	// Header.HardwareID of the image itself is one of them).
	HardwareIDs []string `json:"hardwareIds"`
	// Version is the software version, as in the image header.
	Version string `json:"version"`
	// ReleaseCounter is the anti-rollback counter of the image header.
	ReleaseCounter uint32 `json:"releaseCounter"`
	// Size and SHA256 describe the whole image (header and payload):
	// SHA256 is "sha256:<hex>", the same as flash/image.Digest.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Firmware is a resolved firmware artifact: its config, the full image and
// the delta patches from earlier images. Every Open verifies the digest of
// what it reads: a reader returns an error at EOF (never io.EOF alone) if
// the bytes do not match the digest the manifest names.
type Firmware struct {
	// Ref is the reference it was resolved from, and Digest the manifest
	// digest it resolved to.
	Ref, Digest string
	Config      Config
	// OpenImage reads the full image.
	OpenImage func(ctx context.Context) (io.ReadCloser, error)
	// Deltas are the patches the artifact carries.
	Deltas []Delta
}

// Delta is one delta layer.
type Delta struct {
	// BaseDigest is the "sha256:<hex>" digest of the image the patch
	// applies to (AnnotationBaseDigest).
	BaseDigest  string
	Compression delta.Compression
	Size        int64 // bytes of the layer (envelope and patch)
	// Open reads the layer: a delta.Envelope and its patch.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// DeltaFrom returns the delta whose base is the image with digest base, if
// the artifact has one.
func (f *Firmware) DeltaFrom(base string) (Delta, bool) {
	for _, d := range f.Deltas {
		if d.BaseDigest == base {
			return d, true
		}
	}
	return Delta{}, false
}
