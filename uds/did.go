package uds

import (
	"fmt"
)

// The identification DIDs of ISO 14229-1 annex C.1 that ECUs commonly
// report as text.
const (
	DIDBootSoftwareIdentification             uint16 = 0xF180
	DIDApplicationSoftwareIdentification      uint16 = 0xF181
	DIDSparePartNumber                        uint16 = 0xF187
	DIDECUSoftwareVersionNumber               uint16 = 0xF189
	DIDECUSerialNumber                        uint16 = 0xF18C
	DIDVIN                                    uint16 = 0xF190
	DIDVehicleManufacturerECUHardwareNumber   uint16 = 0xF191
	DIDSystemSupplierECUSoftwareVersionNumber uint16 = 0xF195
)

var didNames = map[uint16]string{
	DIDBootSoftwareIdentification:             "bootSoftwareIdentification",
	DIDApplicationSoftwareIdentification:      "applicationSoftwareIdentification",
	DIDSparePartNumber:                        "vehicleManufacturerSparePartNumber",
	DIDECUSoftwareVersionNumber:               "vehicleManufacturerECUSoftwareVersionNumber",
	DIDECUSerialNumber:                        "ECUSerialNumber",
	DIDVIN:                                    "VIN",
	DIDVehicleManufacturerECUHardwareNumber:   "vehicleManufacturerECUHardwareNumber",
	DIDSystemSupplierECUSoftwareVersionNumber: "systemSupplierECUSoftwareVersionNumber",
}

// DIDName returns the ISO 14229-1 name of an identification DID, or the
// DID in hexadecimal for others.
func DIDName(did uint16) string {
	if n, ok := didNames[did]; ok {
		return n
	}
	return fmt.Sprintf("DID 0x%04X", did)
}

// IdentificationString decodes the value of one of the identification
// DIDs above as text. The software identification DIDs (F180, F181) start
// with the number of modules, a byte that is skipped when it is not
// printable; trailing NUL, 0xFF and space padding is trimmed. ok is false
// for other DIDs and for values that are not printable ASCII, which
// callers then show in hexadecimal.
func IdentificationString(did uint16, data []byte) (s string, ok bool) {
	if _, known := didNames[did]; !known {
		return "", false
	}
	if (did == DIDBootSoftwareIdentification || did == DIDApplicationSoftwareIdentification) &&
		len(data) > 1 && data[0] < 0x20 {
		data = data[1:]
	}
	end := len(data)
	for end > 0 && (data[end-1] == 0 || data[end-1] == 0xFF || data[end-1] == ' ') {
		end--
	}
	data = data[:end]
	for _, c := range data {
		if c < 0x20 || c > 0x7E {
			return "", false
		}
	}
	return string(data), true
}
