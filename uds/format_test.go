package uds

import (
	"slices"
	"testing"
)

func TestDIDValueShowsTextWhereTheDIDIsAnIdentificationString(t *testing.T) {
	tests := []struct {
		rec  DataRecord
		want string
	}{
		{DataRecord{DID: DIDECUSoftwareVersionNumber, Data: []byte("1.4.0\x00\x00")}, `F189 vehicleManufacturerECUSoftwareVersionNumber: "1.4.0"`},
		{DataRecord{DID: DIDVIN, Data: []byte{0x01, 0xFE}}, "F190 VIN: 01FE"},
		{DataRecord{DID: 0x0101, Data: []byte("text")}, "0101 DID 0x0101: 74657874"},
		{DataRecord{DID: 0x0102}, "0102 DID 0x0102: "},
	}
	for _, tt := range tests {
		if got := tt.rec.Describe().String(); got != tt.want {
			t.Errorf("DataRecord{%04X, % X} reads %q, want %q", tt.rec.DID, tt.rec.Data, got, tt.want)
		}
	}
}

func TestIdentificationDIDsAreTheNamedOnesInOrder(t *testing.T) {
	dids := IdentificationDIDs()
	if len(dids) != len(didNames) || !slices.IsSorted(dids) {
		t.Fatalf("IdentificationDIDs() = %04X; want the %d named DIDs in ascending order", dids, len(didNames))
	}
	for _, d := range dids {
		if _, ok := IdentificationString(d, []byte("x")); !ok {
			t.Errorf("IdentificationDIDs() has %04X, which IdentificationString does not decode", d)
		}
	}
}

func TestParseHex(t *testing.T) {
	tests := []struct {
		in   string
		bits int
		want uint64
		ok   bool
	}{
		{"F189", 16, 0xF189, true},
		{"0xf189", 16, 0xF189, true},
		{"0XF189", 16, 0xF189, true},
		{"F1899", 16, 0, false},
		{"", 16, 0, false},
		{"0x", 16, 0, false},
		{"-1", 16, 0, false},
		{"+1", 16, 0, false},
		{"F_1", 16, 0, false},
		{"FFFFFF", 24, 0xFFFFFF, true},
		{"1000000", 24, 0, false},
	}
	for _, tt := range tests {
		got, err := ParseHex("DID", tt.in, tt.bits)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseHex(%q, %d) = %X, %v; want %X, ok %v", tt.in, tt.bits, got, err, tt.want, tt.ok)
		}
	}
}
