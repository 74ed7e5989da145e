package isotp

import (
	"testing"
	"time"
)

func TestSTminDuration(t *testing.T) {
	for _, tt := range []struct {
		b    byte
		want time.Duration
	}{
		{0x00, 0},
		{0x01, time.Millisecond},
		{0x7F, 127 * time.Millisecond},
		{0x80, 127 * time.Millisecond}, // reserved
		{0xF0, 127 * time.Millisecond}, // reserved
		{0xF1, 100 * time.Microsecond},
		{0xF9, 900 * time.Microsecond},
		{0xFA, 127 * time.Millisecond}, // reserved
		{0xFF, 127 * time.Millisecond}, // reserved
	} {
		if got := STminDuration(tt.b); got != tt.want {
			t.Errorf("STminDuration(%#02x) = %v, want %v", tt.b, got, tt.want)
		}
	}
}

func TestZeroOptionsAreTheStandardDefaults(t *testing.T) {
	c := mustConfig(t, Options{})
	want := config{
		txDL: 8, pad: true, padByte: 0xCC,
		nAs: time.Second, nAr: time.Second, nBs: time.Second, nCr: time.Second,
		wftMax: DefaultWFTMax, maxRecv: DefaultMaxRecvLen,
	}
	if c != want {
		t.Fatalf("zero Options resolve to %+v, want %+v", c, want)
	}
}

func TestOptionsResolve(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
		want func(config) bool
	}{
		{"TxDL above 8 means CAN FD", Options{TxDL: 12}, func(c config) bool { return c.fd && c.txDL == 12 }},
		{"FD with TxDL 8", Options{FD: true}, func(c config) bool { return c.fd && c.txDL == 8 }},
		{"BRS on FD", Options{TxDL: 64, BRS: true}, func(c config) bool { return c.fd && c.brs }},
		{"PadZero pads with 0x00", Options{PadZero: true}, func(c config) bool { return c.pad && c.padByte == 0 }},
		{"NoPadding", Options{NoPadding: true}, func(c config) bool { return !c.pad }},
		{"negative WFTMax accepts no WAIT", Options{WFTMax: -5}, func(c config) bool { return c.wftMax == -1 }},
		{"timeouts are taken", Options{Timeouts: Timeouts{Cr: 5 * time.Millisecond}}, func(c config) bool { return c.nCr == 5*time.Millisecond && c.nBs == time.Second }},
		{"STmin 0xF5 is allowed in our flow controls", Options{STmin: 0xF5}, func(c config) bool { return c.fcSTmin == 0xF5 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if c := mustConfig(t, tt.opts); !tt.want(c) {
				t.Fatalf("resolved to %+v", c)
			}
		})
	}
}
