package sim

import (
	"strings"
	"testing"
)

func TestDecodeConfigRejects(t *testing.T) {
	tests := []struct {
		name, sim, want string
	}{
		{"unknown key", `{slots: {a: {version: "1", payloadSize: 10}}, bootTme: 1s}`, "field bootTme not found"},
		{"image larger than the slot", `{slots: {a: {version: "1", payloadSize: 61441}}}`, "ecus[0].simulation.slots.a: image of 61569 bytes does not fit"},
		{"active slot empty", `{slots: {a: {version: "1", payloadSize: 10}}, active: b}`, "ecus[0].simulation.slots.b: the active slot needs an image"},
		{"bad active", `{slots: {a: {version: "1", payloadSize: 10}}, active: c}`, "ecus[0].simulation.active"},
		{"confirmWithin too large", `{slots: {a: {version: "1", payloadSize: 10}}, confirmWithin: 65}`, "ecus[0].simulation.confirmWithin"},
		{"missing image file", `{slots: {a: {file: /nonexistent/fw.bin}}}`, "ecus[0].simulation.slots.a"},
		{"file and version", `{slots: {a: {file: x, version: "1"}}}`, "either file or version"},
		{"no version", `{slots: {a: {payloadSize: 10}}}`, "ecus[0].simulation.slots.a: image: version: empty"},
		{"negative boot time", `{slots: {a: {version: "1", payloadSize: 10}}, bootTime: -1s}`, "ecus[0].simulation.bootTime"},
		{"bad txDL", `{slots: {a: {version: "1", payloadSize: 10}}, txDL: 10}`, "ecus[0].simulation.txDL"},
		{"bad fault", `{slots: {a: {version: "1", payloadSize: 10}}, faults: [{kind: nrc, service: 0x36, step: 1}]}`, "ecus[0].simulation.faults[0].code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeConfig(testVehicle(t, tt.sim))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDecodeConfigOtherHardwareRejected(t *testing.T) {
	img, err := SyntheticImage(imageHeader("1.0", "OTHER-HW"), 100)
	if err != nil {
		t.Fatal(err)
	}
	_, err = DecodeConfig(testVehicle(t, "slots: {a: {file: "+imageFile(t, img)+"}}"))
	if err == nil || !strings.Contains(err.Error(), `image is for hardware "OTHER-HW"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeConfigDefaults(t *testing.T) {
	cfg, err := DecodeConfig(testVehicle(t, `slots: {b: {version: "1", payloadSize: 10}}
active: B`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Active != "b" || cfg.BootTime != DefaultBootTime || cfg.ConfirmWithin != DefaultConfirmWithin || cfg.DeltaMemory != DefaultDeltaMemory || cfg.AutoConfirm != nil {
		t.Fatalf("defaults: %+v", cfg)
	}
}
