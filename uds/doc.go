// Package uds is Unified Diagnostic Services (ISO 14229-1:2020): a client
// for flashing and diagnostics, and a server framework that simulated ECUs
// run. Both speak whole messages through a Transport, which an
// *isotp.Conn satisfies.
//
// # Client
//
// NewClient takes a physically addressed Transport and ClientOptions; its
// methods are the services (DiagnosticSessionControl, ECUReset,
// ClearDiagnosticInformation, ReadDTCByStatusMask, ReadDataByIdentifier,
// SecurityAccess, CommunicationControl, WriteDataByIdentifier,
// RoutineControl, RequestDownload, TransferData, RequestTransferExit,
// TesterPresent, ControlDTCSetting) and Do for anything else:
//
//	c := uds.NewClient(conn, uds.ClientOptions{Functional: fconn})
//	if _, err := c.DiagnosticSessionControl(ctx, uds.ExtendedSession); err != nil { ... }
//	recs, err := c.ReadDataByIdentifier(ctx, uds.DIDECUSoftwareVersionNumber)
//
// It waits P2 (plus a margin for the transport) for each response, then
// P2* after each responsePending (0x78), however often the ECU sends one,
// but never beyond the request's deadline (the context's, or
// ClientOptions.Timeout): a *TimeoutError then says how many
// responsePending answers came. P2 and P2* start at ISO 14229-2's
// defaults and follow each DiagnosticSessionControl response. A negative
// response is a *NegativeResponse naming the NRC; a response that does not
// answer the request (another service, sub-function, DID, routine or block
// counter) is a *ResponseError and is never taken as the answer.
//
// Functional sends one request to every ECU through the functional
// transport and collects each ECU's answer from its own client. KeepAlive
// holds a non-default session open with TesterPresent (3E 80) while the
// caller is busy between requests.
//
// # Server
//
// A Server is the diagnostic core of an ECU: Handle takes one request and
// returns its response, with no I/O and with time from the time package,
// so tests drive it step by step (and testing/synctest in virtual time).
// It keeps the session (with the S3 timeout back to the default session)
// and the security state (seeds, keys, attempt counting and the lockout
// delay), answers DiagnosticSessionControl, SecurityAccess and
// TesterPresent itself, and dispatches other services to handlers
// registered per service and sub-function, with the session and security
// level each needs. It applies ISO 14229-1's order of checks (figures 5
// and 6), so the NRC a client gets is the one the standard prescribes, and
// stays silent where the standard says a functional request gets no answer.
// Serve runs a Server on transports and sends responsePending (0x78) for
// any handler that takes longer than P2, repeated within P2*.
//
// Download is the RequestDownload / TransferData / RequestTransferExit
// bookkeeping (addresses, sizes, the block sequence counter, repeated
// blocks, the NRCs) in front of a Memory the ECU model provides.
//
// # What it must never do
//
// Nothing received may make the client or the server panic or accept a
// malformed message; the client never takes a response to another request
// as its answer, and never lets responsePending extend a request past its
// deadline.
package uds
