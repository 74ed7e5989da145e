// Package oem defines what the flash engine asks of an OEM: the Adapter
// interface (security keys, routine identifiers and their records, the
// DIDs that hold identity and slot state, slot addresses and download
// formats, pre-flash checks from DIDs the engine reads for the adapter)
// and Generic, the adapter for ECUs that follow the ISO 14229 sequence the
// simulator implements (docs/simulator.md).
//
// Adapter takes and returns plain data, contexts and errors only, so that a
// plugin in another process can implement it over gRPC: package
// flash/oem/plugin runs such plugins, flash/oem/sdk is for writing them,
// flash/oem/acme is the made-up maker of the example plugin
// (docs/oem-adapters.md). Profile.Validate, Profile.CheckKey and
// Slots.Validate check what an adapter answers; a plugin that fails is a
// *PluginError, a pre-flash refusal a *ConditionError.
//
// The package must never reach a bus: adapters get values the engine
// read and answer with values the engine sends.
package oem
