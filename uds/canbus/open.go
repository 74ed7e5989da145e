package canbus

import (
	"fmt"
	"net/url"
	"strconv"
)

// Config describes a bus beyond its URL. The vehicle config fills it; URL
// query parameters (bitrate, dbitrate, fd) override it, so that a URL alone
// is enough on the command line.
type Config struct {
	Bitrate     int  // nominal bit rate in bit/s; the mem bus paces frames by it (0: untimed)
	DataBitrate int  // CAN FD data-phase bit rate in bit/s (0: same as Bitrate)
	FD          bool // the bus carries CAN FD frames
	QueueLen    int  // receive queue per subscription (0: DefaultQueueLen)
}

// Open attaches to the bus named by rawURL:
//
//	mem://NAME                      in-process bus with a timing model
//	socketcan://IFACE               Linux SocketCAN raw socket
//	socketcand://HOST:PORT/BUS      socketcand server over TCP (raw mode)
//
// Query parameters bitrate=, dbitrate= and fd=true override cfg, for example
// mem://body?bitrate=500000&dbitrate=2000000&fd=true.
func Open(rawURL string, cfg Config) (Bus, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("canbus: bus URL %q: %v; want mem://NAME, socketcan://IFACE or socketcand://HOST:PORT/BUS", rawURL, err)
	}
	if err := applyQuery(u.Query(), &cfg); err != nil {
		return nil, fmt.Errorf("canbus: bus URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "mem":
		if u.Host == "" {
			return nil, fmt.Errorf("canbus: bus URL %q names no bus; want mem://NAME", rawURL)
		}
		return openMem(u.Host, cfg)
	case "socketcan":
		if u.Host == "" {
			return nil, fmt.Errorf("canbus: bus URL %q names no interface; want socketcan://IFACE such as socketcan://vcan0", rawURL)
		}
		return openSocketCAN(u.Host, cfg)
	case "socketcand":
		if u.Host == "" || len(u.Path) < 2 {
			return nil, fmt.Errorf("canbus: bus URL %q needs a server and a bus; want socketcand://HOST:PORT/BUS", rawURL)
		}
		return DialSocketcand(u.Host, u.Path[1:], cfg)
	}
	return nil, fmt.Errorf("canbus: bus URL %q has unknown scheme %q; want mem, socketcan or socketcand", rawURL, u.Scheme)
}

func applyQuery(q url.Values, cfg *Config) error {
	for key, vals := range q {
		v := vals[len(vals)-1]
		switch key {
		case "bitrate", "dbitrate":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%s=%q is not a bit rate in bit/s", key, v)
			}
			if key == "bitrate" {
				cfg.Bitrate = n
			} else {
				cfg.DataBitrate = n
			}
		case "fd":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("fd=%q is not true or false", v)
			}
			cfg.FD = b
		default:
			return fmt.Errorf("unknown parameter %q; known: bitrate, dbitrate, fd", key)
		}
	}
	return nil
}
