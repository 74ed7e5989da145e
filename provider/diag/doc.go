// Package diag is the allow-list behind `kubectl exec POD -- COMMAND ARGS`:
// a few harmless diagnostics that run over UDS against the pod's ECU.
//
//	read-did DID [DID...]   ReadDataByIdentifier (0x22), one DID a request
//	read-dtc [MASK]         ReadDTCInformation reportDTCByStatusMask (0x19 02)
//	clear-dtc [GROUP]       ClearDiagnosticInformation (0x14), default FFFFFF
//	tester-present          TesterPresent (0x3E 00)
//	identity                the identification DIDs the uds package knows
//	help                    this list
//
// Run takes the command line as kubectl sends it. A command that is not on
// the list is a *RefusedError, bad arguments a *UsageError; an ECU's
// refusal is the uds package's *NegativeResponse, which names the NRC.
// ExitCode gives each its exit status; virtual-kubelet passes a status on
// to kubectl when the error is a k8s.io/utils/exec ExitError (such as
// exec.CodeExitError), and reports any other error as an internal one.
// Check gives Run's verdict on a command line without an ECU, so that a
// caller refuses before it connects.
//
// # What it must never do
//
// It must never send anything on the bus for a command that is not on the
// list, or for arguments it cannot parse: no writes, routines, session
// changes, security access, resets or raw requests, whatever the
// spelling. It never changes the ECU's session, so it does not disturb a
// running application. It shares the ECU's addresses with flash jobs: the
// caller must not run it while a job programs the same ECU (see
// flash.Session).
package diag
