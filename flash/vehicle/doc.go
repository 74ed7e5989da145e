// Package vehicle is the vehicle description that the provider, the flash
// command and the simulator share: a YAML file naming the vehicle's CAN
// buses and its ECUs with their addressing, identity, OEM adapter and
// flash geometry.
//
//	name: demo-car
//	buses:
//	  - {name: body, url: "mem://body", bitrate: 500000}
//	ecus:
//	  - name: brake
//	    bus: body
//	    addressing: {requestId: 0x7E0, responseId: 0x7E8, functionalId: 0x7DF}
//	    hardwareId: BRK-HW-01
//	    partNumber: 4711-BRK
//	    serial: SN0001
//	    oem: {adapter: generic, settings: {seedKey: xor}}
//	    flash: {slotSize: 1048576, sectorSize: 4096, eraseTimePerSector: 20ms,
//	            writeTimePerKiB: 2ms, slotA: 0x08000000, slotB: 0x08100000}
//	    simulation: {...}   # only package sim reads this
//
// Parse and Load reject unknown keys and impossible values with an error
// that names the field (`ecus[3].flash.sectorSize: must be > 0`, or the
// YAML line for a key that does not exist). The `simulation:` section of
// each ECU is kept as raw YAML (RawSection) and decoded, strictly, only by
// package sim, so that nothing else depends on simulator types.
//
// YAML is read with gopkg.in/yaml.v3 and its KnownFields option rather than
// sigs.k8s.io/yaml: yaml.v3 reports an unknown or mistyped key with its
// line number, which a person editing the file needs, while
// sigs.k8s.io/yaml converts to JSON first and its strict mode says only
// `unknown field "x"`; yaml.v3 also decodes durations ("20ms") and hex
// numbers (0x7E0) directly.
//
// The package must never open buses or talk to ECUs: it describes them.
package vehicle
