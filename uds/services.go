package uds

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The client's service methods. Each builds its request, checks that the
// response answers it (the service, and the sub-function, DID, routine or
// block counter it echoes) and decodes it. Methods that take a
// sub-function accept SuppressPositiveResponse or'ed into it; they then
// return zero values on success.

// echoes returns a check that the response repeats the request's bytes
// [1:n] (with the suppress bit cleared in a sub-function) and is at least
// minLen long.
func echoes(req []byte, n, minLen int) func([]byte) string {
	want := append([]byte(nil), req[1:n]...)
	if len(want) > 0 && SID(req[0]).HasSubFunction() {
		want[0] &^= SuppressPositiveResponse
	}
	return func(resp []byte) string {
		if len(resp) < minLen {
			return fmt.Sprintf("%d bytes, at least %d expected", len(resp), minLen)
		}
		for i, b := range want {
			if resp[1+i] != b {
				return fmt.Sprintf("byte %d is 0x%02X, the request's 0x%02X", 1+i, resp[1+i], b)
			}
		}
		return ""
	}
}

// DiagnosticSessionControl switches the ECU to session and returns the
// timing it reports, which the client uses from then on.
func (c *Client) DiagnosticSessionControl(ctx context.Context, session Session) (Timing, error) {
	req := []byte{byte(DiagnosticSessionControl), byte(session)}
	resp, err := c.do(ctx, req, echoes(req, 2, 6))
	if err != nil || resp == nil {
		return Timing{}, err
	}
	t := decodeTiming(resp[2:])
	if t.P2 <= 0 || t.P2Star <= 0 {
		return Timing{}, &ResponseError{Service: DiagnosticSessionControl, Response: resp, Problem: "P2 or P2* is zero"}
	}
	c.setTiming(t)
	return t, nil
}

// ECUReset asks the ECU to reset. For EnableRapidPowerShutDown it returns
// the powerDownTime in seconds the ECU reports, else 0.
func (c *Client) ECUReset(ctx context.Context, resetType byte) (powerDownTime byte, err error) {
	req := []byte{byte(ECUReset), resetType}
	resp, err := c.do(ctx, req, echoes(req, 2, 2))
	if err != nil || len(resp) < 3 {
		return 0, err
	}
	return resp[2], nil
}

// ClearDiagnosticInformation clears the DTCs of group (AllDTCGroups for
// all), a three-byte groupOfDTC.
func (c *Client) ClearDiagnosticInformation(ctx context.Context, group uint32) error {
	if group > 0xFFFFFF {
		return fmt.Errorf("uds: DTC group 0x%X has more than three bytes", group)
	}
	req := []byte{byte(ClearDiagnosticInformation), byte(group >> 16), byte(group >> 8), byte(group)}
	_, err := c.do(ctx, req, func(resp []byte) string {
		if len(resp) != 1 {
			return "a ClearDiagnosticInformation response has one byte"
		}
		return ""
	})
	return err
}

// ReadDTCByStatusMask reads the DTCs whose status has any bit of mask set
// (ReadDTCInformation reportDTCByStatusMask) and the ECU's
// DTCStatusAvailabilityMask.
func (c *Client) ReadDTCByStatusMask(ctx context.Context, mask byte) (availability byte, dtcs []DTCRecord, err error) {
	req := []byte{byte(ReadDTCInformation), ReportDTCByStatusMask, mask}
	resp, err := c.do(ctx, req, func(resp []byte) string {
		if p := echoes(req, 2, 3)(resp); p != "" {
			return p
		}
		_, _, p := decodeDTCsByStatus(resp)
		return p
	})
	if err != nil {
		return 0, nil, err
	}
	availability, dtcs, _ = decodeDTCsByStatus(resp)
	return availability, dtcs, nil
}

// StandardDIDLengths holds the lengths of the identification DIDs whose
// size ISO 14229-1 fixes; the others are the manufacturer's choice.
var StandardDIDLengths = map[uint16]int{
	DIDVIN: 17,
}

// didLength returns the length the client knows for did.
func (c *Client) didLength(did uint16) (int, bool) {
	if n, ok := c.opts.DIDLengths[did]; ok {
		return n, true
	}
	n, ok := StandardDIDLengths[did]
	return n, ok
}

// ReadDataByIdentifier reads one or more DIDs in one request and returns
// their records in the order asked; an ECU leaves out the DIDs it does not
// support (and refuses the request with requestOutOfRange when it
// supports none of them). The ECU's response concatenates
// DID-value pairs with no lengths, so to read several at once the client
// must know the length of every DID but the last (ClientOptions.DIDLengths
// or StandardDIDLengths); with one DID, the rest of the response is its
// value.
func (c *Client) ReadDataByIdentifier(ctx context.Context, dids ...uint16) ([]DataRecord, error) {
	if len(dids) == 0 {
		return nil, errors.New("uds: ReadDataByIdentifier needs at least one DID")
	}
	for _, did := range dids[:len(dids)-1] {
		if _, ok := c.didLength(did); !ok {
			return nil, fmt.Errorf("uds: length of DID 0x%04X unknown, so it cannot be read with others in one request; read it alone or set ClientOptions.DIDLengths", did)
		}
	}
	req := []byte{byte(ReadDataByIdentifier)}
	for _, did := range dids {
		req = binary.BigEndian.AppendUint16(req, did)
	}
	var recs []DataRecord
	_, err := c.do(ctx, req, func(resp []byte) string {
		var p string
		recs, p = c.splitDataRecords(resp[1:], dids)
		return p
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// splitDataRecords cuts the records out of b. The ECU leaves out the DIDs
// it does not support and keeps the order of the others, so each record
// must be one of the DIDs asked for after the previous record's.
func (c *Client) splitDataRecords(b []byte, dids []uint16) ([]DataRecord, string) {
	var recs []DataRecord
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, "a record ends inside its DID"
		}
		got := binary.BigEndian.Uint16(b)
		i := slices.Index(dids, got)
		if i < 0 {
			return nil, fmt.Sprintf("DID 0x%04X was not asked for, or not at this place", got)
		}
		dids = dids[i+1:]
		b = b[2:]
		n, known := c.didLength(got)
		switch {
		case !known:
			n = len(b) // only the last DID asked for may have an unknown length
		case n > len(b):
			return nil, fmt.Sprintf("DID 0x%04X has %d bytes, %d expected", got, len(b), n)
		case len(dids) == 0 && n != len(b):
			return nil, fmt.Sprintf("DID 0x%04X has %d bytes, %d expected", got, len(b), n)
		}
		recs = append(recs, DataRecord{DID: got, Data: b[:n:n]})
		b = b[n:]
	}
	if len(recs) == 0 {
		return nil, "no data record"
	}
	return recs, ""
}

// KeyFunc computes the key for a security level's seed. Both the client
// (to answer) and the server framework (to check) take one; level is the
// odd requestSeed sub-function.
type KeyFunc func(level byte, seed []byte) ([]byte, error)

// SecurityAccess unlocks a security level: it requests a seed with the
// odd sub-function level and sends the key that key computes for it with
// level+1. A seed of all zeros means the level is unlocked already; then
// no key is sent.
func (c *Client) SecurityAccess(ctx context.Context, level byte, key KeyFunc) error {
	if level%2 == 0 || level > 0x7F || level < 0x01 {
		return fmt.Errorf("uds: security level 0x%02X is not an odd requestSeed value between 0x01 and 0x7D", level)
	}
	req := []byte{byte(SecurityAccess), level}
	resp, err := c.do(ctx, req, echoes(req, 2, 3))
	if err != nil {
		return err
	}
	seed := resp[2:]
	if allZero(seed) {
		return nil
	}
	k, err := key(level, seed)
	if err != nil {
		return fmt.Errorf("uds: computing the key for security level 0x%02X: %w", level, err)
	}
	req = append([]byte{byte(SecurityAccess), level + 1}, k...)
	_, err = c.do(ctx, req, echoes(req, 2, 2))
	return err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// CommunicationControl switches the ECU's sending and receiving of the
// communication type (NormalCommunicationMessages, ...) on or off.
func (c *Client) CommunicationControl(ctx context.Context, control, commType byte) error {
	req := []byte{byte(CommunicationControl), control, commType}
	_, err := c.do(ctx, req, echoes(req, 2, 2))
	return err
}

// WriteDataByIdentifier writes data to did.
func (c *Client) WriteDataByIdentifier(ctx context.Context, did uint16, data []byte) error {
	req := binary.BigEndian.AppendUint16([]byte{byte(WriteDataByIdentifier)}, did)
	req = append(req, data...)
	_, err := c.do(ctx, req, func(resp []byte) string {
		if len(resp) != 3 {
			return "a WriteDataByIdentifier response has 3 bytes"
		}
		return echoes(req, 3, 3)(resp)
	})
	return err
}

// RoutineControl starts or stops a routine or requests its results
// (StartRoutine, StopRoutine, RequestRoutineResults), with an optional
// routineControlOptionRecord, and returns what follows the routine
// identifier in the response (routineInfo and the routineStatusRecord).
func (c *Client) RoutineControl(ctx context.Context, controlType byte, routine uint16, option []byte) ([]byte, error) {
	req := binary.BigEndian.AppendUint16([]byte{byte(RoutineControl), controlType}, routine)
	req = append(req, option...)
	resp, err := c.do(ctx, req, echoes(req, 4, 4))
	if err != nil || resp == nil {
		return nil, err
	}
	return resp[4:], nil
}

// RequestDownload asks the ECU to accept r.Size bytes at r.Address and
// returns maxNumberOfBlockLength: the length of a whole TransferData
// request the ECU accepts, its SID and block counter included, so each
// block carries up to maxBlock-2 bytes of data.
func (c *Client) RequestDownload(ctx context.Context, r DownloadRequest) (maxBlock uint64, err error) {
	req, err := encodeRequestDownload(r)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(ctx, req, func(resp []byte) string {
		_, p := decodeDownloadResponse(resp)
		return p
	})
	if err != nil {
		return 0, err
	}
	maxBlock, _ = decodeDownloadResponse(resp)
	return maxBlock, nil
}

// TransferData sends one block with its blockSequenceCounter (1 for the
// first block after RequestDownload, then counting up and wrapping from
// 0xFF to 0x00) and returns the transferResponseParameterRecord. If the
// response is lost (no answer within P2), it sends the same block with the
// same counter again, up to ClientOptions.TransferRetries times; ISO
// 14229-1 has the ECU recognise the repeat and not write the data twice.
// A late response to an earlier copy is skipped.
func (c *Client) TransferData(ctx context.Context, counter byte, data []byte) ([]byte, error) {
	req := append([]byte{byte(TransferData), counter}, data...)
	prev := counter - 1
	check := func(resp []byte) string {
		if len(resp) >= 2 && resp[1] == prev && prev != counter {
			return staleProblem // the late answer to the previous block
		}
		return echoes(req, 2, 2)(resp)
	}
	retries := max(c.opts.TransferRetries, 0)
	for attempt := 0; ; attempt++ {
		resp, err := c.do(ctx, req, check)
		var te *TimeoutError
		if errors.As(err, &te) && !te.Deadline && te.Pending == 0 && attempt < retries {
			continue
		}
		if err != nil {
			return nil, err
		}
		return resp[2:], nil
	}
}

// RequestTransferExit ends a download and returns the
// transferResponseParameterRecord.
func (c *Client) RequestTransferExit(ctx context.Context, param []byte) ([]byte, error) {
	req := append([]byte{byte(RequestTransferExit)}, param...)
	resp, err := c.do(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	return resp[1:], nil
}

// TesterPresent tells the ECU a tester is still there, which restarts its
// S3 timer. Pass SuppressPositiveResponse to send 3E 80.
func (c *Client) TesterPresent(ctx context.Context, subFunction byte) error {
	req := []byte{byte(TesterPresent), subFunction}
	_, err := c.do(ctx, req, echoes(req, 2, 2))
	return err
}

// ControlDTCSetting stops (DTCSettingOff) or resumes (DTCSettingOn) the
// ECU's updating of DTC status, with an optional
// DTCSettingControlOptionRecord.
func (c *Client) ControlDTCSetting(ctx context.Context, setting byte, option []byte) error {
	req := append([]byte{byte(ControlDTCSetting), setting}, option...)
	_, err := c.do(ctx, req, echoes(req, 2, 2))
	return err
}

// Download writes data to the ECU: RequestDownload for r (r.Size is set
// to len(data)), TransferData in blocks of the largest size the ECU takes
// with the counter from 1 and wrapping, and RequestTransferExit, whose
// transferResponseParameterRecord it returns. progress, when set, is
// called after each block with the bytes sent so far. Run KeepAlive
// alongside when the caller may pause between requests.
func (c *Client) Download(ctx context.Context, r DownloadRequest, data []byte, progress func(sent int)) ([]byte, error) {
	r.Size = uint64(len(data))
	maxBlock, err := c.RequestDownload(ctx, r)
	if err != nil {
		return nil, err
	}
	n := int(min(maxBlock-2, uint64(len(data))))
	counter := byte(1)
	for off := 0; off < len(data); off += n {
		end := min(off+n, len(data))
		if _, err := c.TransferData(ctx, counter, data[off:end]); err != nil {
			return nil, fmt.Errorf("uds: block %d of the download (bytes %d to %d): %w", counter, off, end, err)
		}
		counter++
		if progress != nil {
			progress(end)
		}
	}
	return c.RequestTransferExit(ctx, nil)
}
