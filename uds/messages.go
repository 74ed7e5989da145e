package uds

import (
	"encoding/binary"
	"fmt"
	"time"
)

// This file holds the message formats that both the client and the server
// framework encode or decode, so that each is written once.

// Timing holds the server timing parameters a DiagnosticSessionControl
// positive response reports: P2, within which the server starts every
// response, and P2*, within which it follows a responsePending (0x78).
type Timing struct {
	P2     time.Duration
	P2Star time.Duration
}

// encodeTiming writes the sessionParameterRecord: P2 in milliseconds and
// P2* in units of 10 ms, each in two bytes, saturating at their maxima.
func encodeTiming(t Timing) []byte {
	p2 := min(t.P2/time.Millisecond, 0xFFFF)
	p2s := min(t.P2Star/(10*time.Millisecond), 0xFFFF)
	return []byte{byte(p2 >> 8), byte(p2), byte(p2s >> 8), byte(p2s)}
}

func decodeTiming(b []byte) Timing {
	return Timing{
		P2:     time.Duration(binary.BigEndian.Uint16(b)) * time.Millisecond,
		P2Star: time.Duration(binary.BigEndian.Uint16(b[2:])) * 10 * time.Millisecond,
	}
}

// DTCRecord is one DTC and its status byte, as ReadDTCInformation reports
// them.
type DTCRecord struct {
	DTC    uint32 // three bytes: DTCHighByte, DTCMiddleByte, DTCLowByte
	Status byte   // statusOfDTC bits (testFailed 0x01 ... warningIndicatorRequested 0x80)
}

func (r DTCRecord) String() string { return fmt.Sprintf("%06X status %02X", r.DTC, r.Status) }

// encodeDTCsByStatus writes the positive response to ReadDTCInformation
// reportDTCByStatusMask: 59 02 availabilityMask (DTC status)*.
func encodeDTCsByStatus(availability byte, dtcs []DTCRecord) []byte {
	b := []byte{byte(ReadDTCInformation) + 0x40, ReportDTCByStatusMask, availability}
	for _, r := range dtcs {
		b = append(b, byte(r.DTC>>16), byte(r.DTC>>8), byte(r.DTC), r.Status)
	}
	return b
}

func decodeDTCsByStatus(resp []byte) (availability byte, dtcs []DTCRecord, problem string) {
	if len(resp) < 3 || (len(resp)-3)%4 != 0 {
		return 0, nil, fmt.Sprintf("length %d is not 3 plus 4 per DTC", len(resp))
	}
	for b := resp[3:]; len(b) >= 4; b = b[4:] {
		dtcs = append(dtcs, DTCRecord{DTC: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]), Status: b[3]})
	}
	return resp[2], dtcs, ""
}

// DataRecord is one data identifier and its value.
type DataRecord struct {
	DID  uint16
	Data []byte
}

// DownloadRequest is the content of a RequestDownload request.
type DownloadRequest struct {
	// DataFormat is the dataFormatIdentifier: the compression method in
	// the high nibble, the encryption method in the low one; 0x00 for
	// neither.
	DataFormat byte
	Address    uint64 // memoryAddress
	Size       uint64 // memorySize: the number of bytes that will follow
	// AddressLen and SizeLen are the number of bytes the memoryAddress and
	// memorySize take on the wire (1 to 8 each, the two nibbles of the
	// addressAndLengthFormatIdentifier); 0 means 4.
	AddressLen, SizeLen int
}

// encodeRequestDownload writes 34 DFI ALFID address size.
func encodeRequestDownload(r DownloadRequest) ([]byte, error) {
	al, sl := cmp0(r.AddressLen, 4), cmp0(r.SizeLen, 4)
	if al < 1 || al > 8 || sl < 1 || sl > 8 {
		return nil, fmt.Errorf("uds: RequestDownload: address and size lengths must be 1 to 8 bytes, not %d and %d", al, sl)
	}
	if !fits(r.Address, al) || !fits(r.Size, sl) {
		return nil, fmt.Errorf("uds: RequestDownload: address 0x%X or size %d does not fit in %d and %d bytes; set AddressLen and SizeLen", r.Address, r.Size, al, sl)
	}
	b := []byte{byte(RequestDownload), r.DataFormat, byte(sl<<4 | al)}
	b = appendUint(b, r.Address, al)
	return appendUint(b, r.Size, sl), nil
}

// parseRequestDownload reads a RequestDownload request; a format error is
// the NRC to answer with.
func parseRequestDownload(req []byte) (DownloadRequest, error) {
	if len(req) < 3 {
		return DownloadRequest{}, IncorrectMessageLengthOrInvalidFormat
	}
	al, sl := int(req[2]&0x0F), int(req[2]>>4)
	if al < 1 || al > 8 || sl < 1 || sl > 8 {
		return DownloadRequest{}, RequestOutOfRange
	}
	if len(req) != 3+al+sl {
		return DownloadRequest{}, IncorrectMessageLengthOrInvalidFormat
	}
	return DownloadRequest{
		DataFormat: req[1],
		Address:    readUint(req[3 : 3+al]),
		Size:       readUint(req[3+al:]),
		AddressLen: al,
		SizeLen:    sl,
	}, nil
}

// encodeDownloadResponse writes 74 LFID maxNumberOfBlockLength, in two
// bytes as the standard's examples do, or more when it needs them.
func encodeDownloadResponse(maxBlock uint64) []byte {
	n := 2
	for !fits(maxBlock, n) {
		n++
	}
	return appendUint([]byte{byte(RequestDownload) + 0x40, byte(n << 4)}, maxBlock, n)
}

func decodeDownloadResponse(resp []byte) (maxBlock uint64, problem string) {
	if len(resp) < 2 {
		return 0, "no lengthFormatIdentifier"
	}
	n := int(resp[1] >> 4)
	if n < 1 || n > 8 || len(resp) != 2+n {
		return 0, fmt.Sprintf("lengthFormatIdentifier 0x%02X does not match the %d bytes that follow", resp[1], len(resp)-2)
	}
	maxBlock = readUint(resp[2:])
	if maxBlock < 3 {
		return 0, fmt.Sprintf("maxNumberOfBlockLength %d leaves no room for data after the SID and block counter", maxBlock)
	}
	return maxBlock, ""
}

func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// fits reports whether v fits in n bytes.
func fits(v uint64, n int) bool { return n >= 8 || v>>(8*n) == 0 }

func appendUint(b []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

func readUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}
