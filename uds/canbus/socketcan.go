package canbus

import "errors"

// openSocketCAN is written by the socketcan work; placeholder so the package builds.
func openSocketCAN(iface string, cfg Config) (Bus, error) {
	return nil, errors.New("canbus: socketcan not built yet")
}
