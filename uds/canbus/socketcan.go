package canbus

import "errors"

// Errors of the socketcan:// transport that callers may want to tell apart,
// for example to suggest creating an interface or to skip where the kernel
// cannot do CAN at all.
var (
	// ErrNoAFCAN means the kernel has no CAN protocol family: the can and
	// can-raw modules are not loaded or not built, or the system is not
	// Linux.
	ErrNoAFCAN = errors.New("the kernel has no AF_CAN")
	// ErrNoInterface means the named network interface does not exist.
	ErrNoInterface = errors.New("no such CAN interface")
)
