package uds

import (
	"context"
	"encoding/binary"
	"slices"
)

// Ready-made services for a Server: data identifiers (0x22, 0x2E),
// routines (0x31) and DTCs (0x14, 0x19), each with the checks and NRC
// order ISO 14229-1 gives the service, so that an ECU model supplies only
// its data.

// DataIdentifier is a DID a Server reads and writes with
// ReadDataByIdentifier and WriteDataByIdentifier.
type DataIdentifier struct {
	// ReadAccess and WriteAccess limit reading and writing; in a session
	// that Access does not allow the DID is treated as not supported, and
	// a missing security level is securityAccessDenied.
	ReadAccess, WriteAccess Access
	// Read returns the value; nil makes the DID write-only. It may return
	// an NRC, such as ConditionsNotCorrect.
	Read func() ([]byte, error)
	// Write stores a value; nil makes the DID read-only. Its errors are
	// as Read's.
	Write func(data []byte) error
	// Len, when not zero, is the exact length a written value must have.
	Len int
}

// maxResponse is the largest response a server builds, the most ISO-TP
// carries with a 12-bit first frame length and what testers generally
// accept; longer ones are responseTooLong.
const maxResponse = 4095

// RegisterDID offers did through ReadDataByIdentifier and
// WriteDataByIdentifier, registering those services on first use.
func (s *Server) RegisterDID(did uint16, d DataIdentifier) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dids == nil {
		s.dids = map[uint16]DataIdentifier{}
		s.services[ReadDataByIdentifier] = Service{Handler: s.readDIDs}
		s.services[WriteDataByIdentifier] = Service{Handler: s.writeDID}
	}
	s.dids[did] = d
}

func (s *Server) did(did uint16) (DataIdentifier, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dids[did]
	return d, ok
}

// readDIDs answers ReadDataByIdentifier: 0x13 for a bad length, 0x31 when
// no DID asked for is supported in the active session, 0x33 for a DID
// whose security level is locked, 0x14 for a response too long, and the
// NRC a Read returns.
func (s *Server) readDIDs(_ context.Context, r *Request) ([]byte, error) {
	ids := r.Message[1:]
	if len(ids) < 2 || len(ids)%2 != 0 {
		return nil, IncorrectMessageLengthOrInvalidFormat
	}
	var resp []byte
	for ; len(ids) > 0; ids = ids[2:] {
		id := binary.BigEndian.Uint16(ids)
		d, ok := s.did(id)
		if !ok || d.Read == nil {
			continue
		}
		switch d.ReadAccess.check(r.Session, r.Security, RequestOutOfRange) {
		case RequestOutOfRange:
			continue
		case SecurityAccessDenied:
			return nil, SecurityAccessDenied
		}
		v, err := d.Read()
		if err != nil {
			return nil, err
		}
		resp = append(binary.BigEndian.AppendUint16(resp, id), v...)
		if len(resp) > maxResponse-1 {
			return nil, ResponseTooLong
		}
	}
	if resp == nil {
		return nil, RequestOutOfRange
	}
	return resp, nil
}

// writeDID answers WriteDataByIdentifier: 0x13, 0x31 for a DID not
// writable in the active session, 0x33, 0x13 for a value of the wrong
// length, and the NRC a Write returns.
func (s *Server) writeDID(_ context.Context, r *Request) ([]byte, error) {
	if len(r.Message) < 4 {
		return nil, IncorrectMessageLengthOrInvalidFormat
	}
	id := binary.BigEndian.Uint16(r.Message[1:])
	d, ok := s.did(id)
	if !ok || d.Write == nil {
		return nil, RequestOutOfRange
	}
	if nrc := d.WriteAccess.check(r.Session, r.Security, RequestOutOfRange); nrc != 0 {
		return nil, nrc
	}
	data := r.Message[3:]
	if d.Len > 0 && len(data) != d.Len {
		return nil, IncorrectMessageLengthOrInvalidFormat
	}
	if err := d.Write(slices.Clone(data)); err != nil {
		return nil, err
	}
	return r.Message[1:3], nil
}

// Routine is a routine a Server runs with RoutineControl. Its handlers
// answer with the routineInfo and routineStatusRecord (what follows the
// routine identifier in the response); the option record follows the
// identifier in the request, at r.Message[4:].
type Routine struct {
	// Access limits the routine; in a session it does not allow, the
	// routine is treated as not supported (requestOutOfRange).
	Access
	Start, Stop, Results HandlerFunc
}

// RegisterRoutine offers a routine through RoutineControl, registering
// that service on first use. A control type the routine has no handler
// for is subFunctionNotSupported; sequencing (stop or results before
// start: requestSequenceError) is the routine's own.
func (s *Server) RegisterRoutine(id uint16, rt Routine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.routines == nil {
		s.routines = map[uint16]Routine{}
		sf := SubFunction{MinLen: 4, Handler: s.routineControl}
		s.services[RoutineControl] = Service{SubFunctions: map[byte]SubFunction{
			StartRoutine: sf, StopRoutine: sf, RequestRoutineResults: sf,
		}}
	}
	s.routines[id] = rt
}

func (s *Server) routineControl(ctx context.Context, r *Request) ([]byte, error) {
	id := binary.BigEndian.Uint16(r.Message[2:])
	s.mu.Lock()
	rt, ok := s.routines[id]
	s.mu.Unlock()
	if !ok {
		return nil, RequestOutOfRange
	}
	if nrc := rt.Access.check(r.Session, r.Security, RequestOutOfRange); nrc != 0 {
		return nil, nrc
	}
	h := [...]HandlerFunc{StartRoutine: rt.Start, StopRoutine: rt.Stop, RequestRoutineResults: rt.Results}[r.SubFunction()]
	if h == nil {
		return nil, SubFunctionNotSupported
	}
	out, err := h(ctx, r)
	if err != nil {
		return nil, err
	}
	return append(slices.Clone(r.Message[2:4]), out...), nil
}

// DTCStore is an ECU's fault memory, served by RegisterDTCs.
type DTCStore interface {
	// DTCs returns the DTCStatusAvailabilityMask and every stored DTC.
	DTCs() (availability byte, dtcs []DTCRecord)
	// ClearDTCs clears the DTCs of a group (AllDTCGroups for all); it
	// returns RequestOutOfRange for a group it does not know, or another
	// NRC.
	ClearDTCs(group uint32) error
}

// RegisterDTCs offers store through ClearDiagnosticInformation and
// ReadDTCInformation reportDTCByStatusMask.
func (s *Server) RegisterDTCs(store DTCStore) {
	s.Register(ReadDTCInformation, Service{SubFunctions: map[byte]SubFunction{
		ReportDTCByStatusMask: {Handler: func(_ context.Context, r *Request) ([]byte, error) {
			if len(r.Message) != 3 {
				return nil, IncorrectMessageLengthOrInvalidFormat
			}
			avail, all := store.DTCs()
			mask := r.Message[2] & avail
			var match []DTCRecord
			for _, d := range all {
				if d.Status&mask != 0 {
					match = append(match, DTCRecord{DTC: d.DTC, Status: d.Status & avail})
				}
			}
			return encodeDTCsByStatus(avail, match)[2:], nil
		}},
	}})
	s.Register(ClearDiagnosticInformation, Service{Handler: func(_ context.Context, r *Request) ([]byte, error) {
		if len(r.Message) != 4 {
			return nil, IncorrectMessageLengthOrInvalidFormat
		}
		group := uint32(r.Message[1])<<16 | uint32(r.Message[2])<<8 | uint32(r.Message[3])
		return nil, store.ClearDTCs(group)
	}})
}
