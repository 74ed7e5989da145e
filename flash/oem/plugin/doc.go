// Package plugin runs OEM adapters that live in their own processes: a
// car maker's security access, routines and checks, built with package
// flash/oem/sdk and named in the vehicle file (oem.adapter, oem.plugin,
// oem.sha256), loaded through github.com/hashicorp/go-plugin over gRPC
// with automatic mutual TLS (docs/oem-adapters.md).
//
// A Host starts a plugin only after the SHA-256 of its binary matches the
// vehicle file's, checks the handshake's protocol version, bounds every
// call with a timeout, and checks every answer (a key of the wrong
// length, a routine identifier of 0, a slot state that does not exist).
// A plugin that crashes, hangs or answers nonsense fails the job with an
// *oem.PluginError that names the plugin, what happened and what to do;
// the process of a plugin that crashed or hung is started again for the
// next job. The flash engine keeps its invariants whatever a plugin does:
// before activation a failure leaves the running image alone, after it
// the new image stays on trial until a later job confirms it or the
// bootloader reverts it.
//
// The package must never hand a plugin the bus, the artifact or the
// host's environment: a plugin sees the ECU's description and the values
// the engine chose to give it, and answers with plain data.
package plugin
