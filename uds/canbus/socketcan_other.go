//go:build !linux

package canbus

import (
	"fmt"
	"runtime"
)

// openSocketCAN fails: SocketCAN is a Linux kernel interface.
func openSocketCAN(iface string, cfg Config) (Bus, error) {
	return nil, fmt.Errorf("canbus: socketcan://%s: %w: SocketCAN exists only on Linux, this is %s; reach a Linux machine's bus with socketcand://HOST:PORT/BUS", iface, ErrNoAFCAN, runtime.GOOS)
}
