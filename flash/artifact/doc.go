// Package artifact resolves firmware artifacts: OCI artifacts of type
// application/vnd.ecu-kubelet.firmware.v1 holding a JSON config (hardware
// ids, version, release counter, size, SHA-256), the full image and delta
// patches from earlier images, pulled from an OCI registry or read from an
// OCI image layout directory (the offline cache inside the vehicle).
//
// It must never hand out bytes it has not checked against the digest the
// manifest names.
package artifact
