package canbus

import "errors"

// DialSocketcand is written by the socketcand work; placeholder so the package builds.
func DialSocketcand(hostport, bus string, cfg Config) (Bus, error) {
	return nil, errors.New("canbus: socketcand not built yet")
}
