// Package artifact resolves firmware artifacts: OCI artifacts of type
// application/vnd.ecu-kubelet.firmware.v1 holding a JSON config (hardware
// ids, version, release counter, size, SHA-256), the full image and delta
// patches from earlier images, pulled from an OCI registry or read from an
// OCI image layout directory (the offline cache inside the vehicle).
//
// It must never hand out bytes it has not checked against the digest the
// manifest names.
//
// Resolve takes a registry reference (HOST[:PORT]/REPO:TAG or @sha256:...)
// or an OCI layout reference (oci-layout:DIR:TAG or oci-layout:DIR@sha256:...)
// and checks the manifest, the config (ParseConfig, strict), the image
// header and every delta envelope before it returns a Firmware. Readers
// stream: the bytes they return are checked as a whole when the reader
// reaches the end, where a mismatch is an error matching ErrDigestMismatch
// instead of io.EOF, so a consumer reads to EOF before it trusts (or
// activates) anything it read. Errors about a malformed artifact match
// ErrInvalid. Pack builds an artifact and (*Packed).Push writes it to a
// registry or layout; Copy fills the offline cache from a registry.
// docs/firmware-artifacts.md describes the format.
package artifact
