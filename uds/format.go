package uds

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// DIDValue is one data record as a person reads it: the DID and its name,
// the value in hexadecimal, and the value as text where the DID is an
// identification string (IdentificationString). The command line tool
// and the provider's diagnostics print it the same way.
type DIDValue struct {
	DID  string `json:"did"`
	Name string `json:"name"`
	Hex  string `json:"hex"`
	Text string `json:"text,omitempty"`
}

// Describe returns r as a DIDValue.
func (r DataRecord) Describe() DIDValue {
	v := DIDValue{DID: fmt.Sprintf("%04X", r.DID), Name: DIDName(r.DID), Hex: strings.ToUpper(hex.EncodeToString(r.Data))}
	if s, ok := IdentificationString(r.DID, r.Data); ok {
		v.Text = s
	}
	return v
}

// String returns `F189 vehicleManufacturerECUSoftwareVersionNumber: "1.4.0"`
// for text and `0101 DID 0x0101: ABCD` for other values. The text is
// quoted so that padding and empty values stay visible.
func (v DIDValue) String() string {
	if v.Text != "" {
		return fmt.Sprintf("%s %s: %q", v.DID, v.Name, v.Text)
	}
	return fmt.Sprintf("%s %s: %s", v.DID, v.Name, v.Hex)
}

// IdentificationDIDs returns the identification DIDs that DIDName names
// and IdentificationString decodes, in ascending order.
func IdentificationDIDs() []uint16 {
	return slices.Sorted(maps.Keys(didNames))
}

// ParseHex reads a hexadecimal argument of at most bits bits, with or
// without a 0x prefix: a DID, a status mask, a DTC group. what names the
// argument in the error.
func ParseHex(what, s string, bits int) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, bits)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a hex number of at most %d bits", what, s, bits)
	}
	return v, nil
}

// ParseDIDs parses data identifiers given in hexadecimal (with or without
// 0x), as the CLI and exec diagnostics take them.
func ParseDIDs(args []string) ([]uint16, error) {
	dids := make([]uint16, len(args))
	for i, a := range args {
		v, err := ParseHex("DID", a, 16)
		if err != nil {
			return nil, err
		}
		dids[i] = uint16(v)
	}
	return dids, nil
}
