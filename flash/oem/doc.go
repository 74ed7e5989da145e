// Package oem defines what the flash engine asks of an OEM: the Adapter
// interface (security keys, routine identifiers and their records, the
// DIDs that hold identity and slot state, slot addresses and download
// formats, pre-flash checks) and Generic, the adapter for ECUs that follow
// the ISO 14229 sequence the simulator implements (docs/simulator.md).
//
// Adapter takes and returns plain data, contexts and errors only, so that a
// plugin in another process can implement it over gRPC.
package oem
