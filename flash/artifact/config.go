package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// MaxConfigSize is the largest config blob Resolve reads; a firmware config
// is a few hundred bytes, so anything larger is not one.
const MaxConfigSize = 64 << 10

// ErrInvalid is matched (errors.Is) by every error that says an artifact's
// manifest, config or layers are not a well-formed firmware artifact; such
// an artifact must be rebuilt with 'ecu-kubelet firmware pack'.
var ErrInvalid = errors.New("artifact: not a valid firmware artifact")

// ConfigError is a firmware config that is missing a field, has one it
// does not know, or has a value out of range. It matches ErrInvalid.
type ConfigError struct {
	Field  string // JSON name of the field, or "" for the document
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return "artifact: firmware config: " + e.Reason
	}
	return fmt.Sprintf("artifact: firmware config: %s: %s", e.Field, e.Reason)
}

// Is makes a ConfigError match ErrInvalid.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalid }

// rawConfig has pointers so that a missing field is told from a zero one.
type rawConfig struct {
	HardwareIDs    []string `json:"hardwareIds"`
	Version        *string  `json:"version"`
	ReleaseCounter *uint32  `json:"releaseCounter"`
	Size           *int64   `json:"size"`
	SHA256         *string  `json:"sha256"`
}

// ParseConfig decodes a firmware config strictly: every field must be
// present and valid, unknown fields and trailing data are rejected, so that
// a config written for a later format is never half understood.
func ParseConfig(b []byte) (Config, error) {
	if len(b) > MaxConfigSize {
		return Config{}, &ConfigError{Reason: fmt.Sprintf("%d bytes, more than the %d a config may have", len(b), MaxConfigSize)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var raw rawConfig
	if err := dec.Decode(&raw); err != nil {
		return Config{}, &ConfigError{Reason: "not a JSON object of the known fields: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, &ConfigError{Reason: "data after the JSON object"}
	}
	switch {
	case raw.HardwareIDs == nil:
		return Config{}, &ConfigError{Field: "hardwareIds", Reason: "missing"}
	case raw.Version == nil:
		return Config{}, &ConfigError{Field: "version", Reason: "missing"}
	case raw.ReleaseCounter == nil:
		return Config{}, &ConfigError{Field: "releaseCounter", Reason: "missing"}
	case raw.Size == nil:
		return Config{}, &ConfigError{Field: "size", Reason: "missing"}
	case raw.SHA256 == nil:
		return Config{}, &ConfigError{Field: "sha256", Reason: "missing"}
	}
	c := Config{
		HardwareIDs:    raw.HardwareIDs,
		Version:        *raw.Version,
		ReleaseCounter: *raw.ReleaseCounter,
		Size:           *raw.Size,
		SHA256:         *raw.SHA256,
	}
	return c, c.validate()
}

// validate checks the values of a config, parsed or about to be packed.
func (c Config) validate() error {
	if len(c.HardwareIDs) == 0 {
		return &ConfigError{Field: "hardwareIds", Reason: "empty: list the hardware the image runs on"}
	}
	seen := make(map[string]bool, len(c.HardwareIDs))
	for _, id := range c.HardwareIDs {
		if err := validField(id); err != nil {
			return &ConfigError{Field: "hardwareIds", Reason: fmt.Sprintf("%q: %s", id, err)}
		}
		if seen[id] {
			return &ConfigError{Field: "hardwareIds", Reason: fmt.Sprintf("%q listed twice", id)}
		}
		seen[id] = true
	}
	if err := validField(c.Version); err != nil {
		return &ConfigError{Field: "version", Reason: err.Error()}
	}
	if c.Size < image.HeaderSize || c.Size > image.HeaderSize+image.MaxPayload {
		return &ConfigError{Field: "size", Reason: fmt.Sprintf("%d is not the size of a firmware image (%d to %d bytes)", c.Size, image.HeaderSize, int64(image.HeaderSize+image.MaxPayload))}
	}
	if !validDigest(c.SHA256) {
		return &ConfigError{Field: "sha256", Reason: fmt.Sprintf("%q is not \"sha256:\" and 64 lowercase hex digits", c.SHA256)}
	}
	return nil
}

// validField mirrors what an image header holds in a version or hardware
// id: 1 to image.MaxFieldLen printable ASCII characters.
func validField(s string) error {
	if s == "" || len(s) > image.MaxFieldLen {
		return fmt.Errorf("want 1 to %d characters, have %d", image.MaxFieldLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("character %q at %d is not printable ASCII", s[i], i)
		}
	}
	return nil
}

// validDigest reports whether d is "sha256:" and 64 lowercase hex digits,
// the only digest a firmware artifact uses.
func validDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
