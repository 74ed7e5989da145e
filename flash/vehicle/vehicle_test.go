package vehicle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

const good = `
name: demo-car
buses:
  - {name: body, url: "mem://body", bitrate: 500000}
  - {name: chassis, url: "socketcand://127.0.0.1:29536/chassis", bitrate: 500000, dataBitrate: 2000000, fd: true}
ecus:
  - name: brake
    bus: body
    addressing: {requestId: 0x7E0, responseId: 0x7E8}
    hardwareId: BRK-HW-01
    partNumber: PN-1
    serial: SN-1
    oem: {adapter: generic, settings: {seedKey: add}}
    flash: {slotSize: 65536, sectorSize: 4096, eraseTimePerSector: 20ms, writeTimePerKiB: 1ms, slotA: 0x10000, slotB: 0x20000}
    simulation: {bootTime: 100ms}
  - name: gateway
    bus: chassis
    addressing: {mode: normal-fixed, ecuAddress: 0x10}
    hardwareId: GW-1
    flash: {slotSize: 8192, sectorSize: 4096, slotA: 0, slotB: 8192}
`

func TestParseGood(t *testing.T) {
	v, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	brake, gw := v.ECUs[0], v.ECUs[1]
	if brake.Addressing.FunctionalID != 0x7DF || brake.OEM.Adapter != "generic" || gw.OEM.Adapter != "generic" {
		t.Errorf("defaults not filled: %+v %+v", brake.Addressing, gw.OEM)
	}
	if brake.Flash.EraseTimePerSector.Milliseconds() != 20 {
		t.Errorf("eraseTimePerSector = %v", brake.Flash.EraseTimePerSector)
	}
	tester, ecu := brake.Addresses()
	if tester != (isotp.Address{TxID: 0x7E0, RxID: 0x7E8}) || ecu != (isotp.Address{TxID: 0x7E8, RxID: 0x7E0}) {
		t.Errorf("Addresses = %v, %v", tester, ecu)
	}
	tester, ecu = gw.Addresses()
	if tester.Mode != isotp.NormalFixed || tester.Source != 0xF1 || tester.Target != 0x10 || ecu.Source != 0x10 || ecu.Target != 0xF1 {
		t.Errorf("normal-fixed Addresses = %v, %v", tester, ecu)
	}
	for _, e := range v.ECUs {
		ft, fe := e.FunctionalAddresses()
		for _, a := range []isotp.Address{ft, fe} {
			if err := a.Validate(); err != nil {
				t.Errorf("%s functional address %v: %v", e.Name, a, err)
			}
		}
	}
	bus, _ := v.Bus("chassis")
	if c := bus.Config(); !c.FD || c.DataBitrate != 2000000 || c.Bitrate != 500000 {
		t.Errorf("Config = %+v", c)
	}
	var sim struct {
		BootTime string `yaml:"bootTime"`
	}
	if err := brake.Simulation.Decode(&sim); err != nil || sim.BootTime != "100ms" {
		t.Errorf("Simulation.Decode = %+v, %v", sim, err)
	}
	var strict struct{}
	if err := brake.Simulation.Decode(&strict); err == nil {
		t.Error("Simulation.Decode took an unknown key")
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		from string // replaced in good
		to   string
		want string // in the error
	}{
		{"unknown key", "hardwareId: GW-1", "hardwareId: GW-1\n    colour: red", "field colour not found"},
		{"typo in flash", "sectorSize: 4096, slotA: 0", "sectorSiz: 4096, slotA: 0", "field sectorSiz not found"},
		{"zero sector size", "sectorSize: 4096, slotA: 0", "sectorSize: 0, slotA: 0", "ecus[1].flash.sectorSize: must be > 0"},
		{"slot not whole sectors", "slotSize: 8192", "slotSize: 8000", "ecus[1].flash.slotSize"},
		{"overlapping slots", "slotB: 8192", "slotB: 4096", "ecus[1].flash.slotB: slots overlap"},
		{"unaligned slot", "slotB: 8192", "slotB: 8200", "ecus[1].flash.slotB"},
		{"duplicate ECU name", "name: gateway", "name: brake", "ecus[1].name: \"brake\" is also ecus[0]'s name"},
		{"bad ECU name", "name: gateway", "name: Gate_Way", "ecus[1].name"},
		{"unknown bus", "bus: chassis\n", "bus: powertrain\n", "ecus[1].bus: \"powertrain\" is not one of"},
		{"duplicate bus", "name: chassis,", "name: body,", "buses[1].name"},
		{"bad URL", "url: \"mem://body\"", "url: \"http://body\"", "buses[0].url"},
		{"URL with query", "url: \"mem://body\"", "url: \"mem://body?bitrate=1\"", "buses[0].url"},
		{"data bitrate on classic", "bitrate: 500000}\n", "bitrate: 500000, dataBitrate: 2000000}\n", "buses[0].dataBitrate"},
		{"11-bit id too large", "requestId: 0x7E0", "requestId: 0x800", "ecus[0].addressing.requestId"},
		{"same request and response", "responseId: 0x7E8", "responseId: 0x7E0", "ecus[0].addressing: requestId, responseId"},
		{"unknown mode", "mode: normal-fixed", "mode: mixed", "ecus[1].addressing.mode"},
		{"normal-fixed without address", "mode: normal-fixed, ecuAddress: 0x10", "mode: normal-fixed", "ecus[1].addressing.ecuAddress: must be set"},
		{"no hardware id", "hardwareId: GW-1", "partNumber: x", "ecus[1].hardwareId"},
		{"negative erase time", "eraseTimePerSector: 20ms", "eraseTimePerSector: -20ms", "ecus[0].flash.eraseTimePerSector"},
		{"two documents", "\n", "\n---\nname: x\n---\n", "one vehicle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(good, tt.from, tt.to, 1)
			if doc == good {
				t.Fatalf("%q is not in the good description", tt.from)
			}
			_, err := Parse([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAddressSharedOnBusRejected(t *testing.T) {
	doc := good + `
  - name: door
    bus: body
    addressing: {requestId: 0x7E1, responseId: 0x7E0}
    hardwareId: D-1
    flash: {slotSize: 8192, sectorSize: 4096, slotA: 0, slotB: 8192}
`
	_, err := Parse([]byte(doc))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "ecus[2].addressing.responseId" {
		t.Fatalf("err = %v, want a FieldError of ecus[2].addressing.responseId", err)
	}
	// Nor may an ECU take the functional identifier, in either order.
	for _, doc := range []string{
		strings.Replace(doc, "requestId: 0x7E1, responseId: 0x7E0", "requestId: 0x7E1, responseId: 0x7DF", 1),
		strings.Replace(doc, "requestId: 0x7E1, responseId: 0x7E0", "requestId: 0x7E1, responseId: 0x7E9, functionalId: 0x7E8", 1),
	} {
		if _, err := Parse([]byte(doc)); !errors.As(err, &fe) || !strings.Contains(fe.Path, "ecus[2].addressing") {
			t.Errorf("functional identifier used physically: err = %v", err)
		}
	}
	// The same identifiers on another bus are fine.
	if _, err := Parse([]byte(strings.Replace(doc, "bus: body\n    addressing: {requestId: 0x7E1", "bus: chassis\n    addressing: {requestId: 0x7E1", 1))); err != nil {
		t.Fatalf("identifiers on another bus: %v", err)
	}
}

func TestCheckImage(t *testing.T) {
	v, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	gw := v.ECUs[1] // 8 KiB slots with 4 KiB sectors: 4 KiB for the image
	if err := gw.CheckImage("simulation.slots.a", 4096); err != nil {
		t.Errorf("an image that fits: %v", err)
	}
	err = gw.CheckImage("simulation.slots.a", 4097)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "ecus[1].simulation.slots.a" {
		t.Errorf("err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "car.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(good, "slotSize: 8192", "slotSize: 0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "ecus[1].flash.slotSize") {
		t.Fatalf("err = %v, want the path and the field", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("name: x\nbuses: []\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever passes must give usable addresses and geometry.
		for _, e := range v.ECUs {
			tester, ecu := e.Addresses()
			if tester.Validate() != nil || ecu.Validate() != nil {
				t.Fatalf("%s: invalid addresses %v %v", e.Name, tester, ecu)
			}
			if e.Flash.SectorSize == 0 || e.Flash.ImageCapacity() == 0 {
				t.Fatalf("%s: geometry %+v", e.Name, e.Flash)
			}
			var section map[string]any
			_ = e.Simulation.Decode(&section)
		}
	})
}

func TestOEMPluginFields(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		oem, wantPath string
	}{
		{`{adapter: acme, plugin: /opt/oem/acme, sha256: ` + sum + `}`, ""},
		{`{adapter: acme, sha256: ` + sum + `}`, "ecus[0].oem.plugin"},
		{`{adapter: acme, plugin: oem/acme, sha256: ` + sum + `}`, "ecus[0].oem.plugin"},
		{`{adapter: acme, plugin: /opt/oem/acme}`, "ecus[0].oem.sha256"},
		{`{adapter: acme, plugin: /opt/oem/acme, sha256: ` + strings.ToUpper(sum) + `}`, "ecus[0].oem.sha256"},
		{`{adapter: Acme_Motors, plugin: /opt/oem/acme, sha256: ` + sum + `}`, "ecus[0].oem.adapter"},
		{`{adapter: generic, plugin: /opt/oem/acme}`, "ecus[0].oem.plugin"},
	}
	for _, tt := range tests {
		doc := strings.Replace(good, "oem: {adapter: generic, settings: {seedKey: add}}", "oem: "+tt.oem, 1)
		_, err := Parse([]byte(doc))
		var fe *FieldError
		switch {
		case tt.wantPath == "" && err != nil:
			t.Errorf("%s: %v", tt.oem, err)
		case tt.wantPath != "" && (!errors.As(err, &fe) || fe.Path != tt.wantPath):
			t.Errorf("%s: %v, want an error at %s", tt.oem, err, tt.wantPath)
		}
	}
}
