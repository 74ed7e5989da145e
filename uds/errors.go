package uds

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ResponseError reports a response that does not answer the request it
// was read for: the wrong service echoed, the wrong sub-function, DID,
// routine or block counter, or a length that its format cannot have. The
// client never accepts such a response as an answer.
type ResponseError struct {
	Service  SID    // the service of the request
	Response []byte // the response as received
	Problem  string // what is wrong with it
}

func (e *ResponseError) Error() string {
	r := hex.EncodeToString(e.Response)
	if len(r) > 64 {
		r = r[:64] + "..."
	}
	return fmt.Sprintf("uds: %v: invalid response %s: %s", e.Service, r, e.Problem)
}

// TimeoutError reports a request that got no final response in time.
type TimeoutError struct {
	Service SID
	// Waited is how long the client waited since sending the request.
	Waited time.Duration
	// Pending counts the responsePending (0x78) answers the ECU sent before
	// time ran out; more than zero means the ECU accepted the request and
	// was still working on it.
	Pending int
	// Deadline is true when the request's overall deadline (the context's
	// or ClientOptions.Timeout) ran out rather than P2 or P2*.
	Deadline bool
	// Err is the context's error for a deadline, or else the last problem
	// seen while waiting, if any: a transport reception error, or a
	// *ResponseError for an answer to another request that was skipped.
	Err error
}

func (e *TimeoutError) Error() string {
	var why string
	switch {
	case e.Deadline:
		why = fmt.Sprintf("the request's deadline ran out after %v", e.Waited)
	case e.Pending > 0:
		why = fmt.Sprintf("no response within P2* after the last responsePending, %v after the request", e.Waited)
	default:
		why = fmt.Sprintf("no response within P2 (%v)", e.Waited)
	}
	s := fmt.Sprintf("uds: %v: %s", e.Service, why)
	if e.Pending > 0 {
		s += fmt.Sprintf("; the ECU had answered %s %d times and was still busy", ResponsePending.String(), e.Pending)
	} else {
		s += "; check the bus, the addressing and that the ECU is powered"
	}
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

// Unwrap returns the context error or transport error behind the timeout.
func (e *TimeoutError) Unwrap() error { return e.Err }

// Timeout reports true, as net.Error does.
func (e *TimeoutError) Timeout() bool { return true }

// ErrNoFunctionalTransport is returned by functional requests on a client
// made without ClientOptions.Functional.
var ErrNoFunctionalTransport = errors.New("uds: functional request on a client without a functional transport; set ClientOptions.Functional")
