package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// ecuState is what the test ECU was told: its fault memory's last cleared
// group and the last value written to DID 0102.
type ecuState struct {
	cleared uint32
	written []byte
}

func (e *ecuState) DTCs() (byte, []uds.DTCRecord) {
	return 0xFF, []uds.DTCRecord{{DTC: 0xC07300, Status: 0x09}}
}

func (e *ecuState) ClearDTCs(group uint32) error { e.cleared = group; return nil }

// startECU serves a UDS ECU on 7E0/7E8 of the untimed mem bus url until
// the test ends.
func startECU(t *testing.T, url string) *ecuState {
	t.Helper()
	bus, err := canbus.Open(url, canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := isotp.Dial(bus, isotp.Address{TxID: 0x7E8, RxID: 0x7E0}, isotp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := uds.NewServer(uds.ServerConfig{})
	s.RegisterDID(uds.DIDECUSoftwareVersionNumber, uds.DataIdentifier{Read: func() ([]byte, error) { return []byte("brake 2.4.1"), nil }})
	s.RegisterDID(0x0101, uds.DataIdentifier{Read: func() ([]byte, error) { return []byte{0xAB, 0xCD}, nil }})
	state := &ecuState{}
	s.RegisterDID(0x0102, uds.DataIdentifier{Write: func(b []byte) error { state.written = b; return nil }})
	s.RegisterRoutine(0xFF01, uds.Routine{Start: func(context.Context, *uds.Request) ([]byte, error) { return []byte{0x00}, nil }})
	s.Register(uds.ECUReset, uds.Service{SubFunctions: map[byte]uds.SubFunction{
		uds.HardReset: {Handler: func(_ context.Context, r *uds.Request) ([]byte, error) {
			r.AfterResponse(s.Reset)
			return nil, nil
		}},
	}})
	s.RegisterDTCs(state)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx, conn, nil) }()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
		bus.Close()
	})
	return state
}

func runUDS(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), &out, &errOut, append([]string{"uds", "--bus", url}, args...)...)
	return strings.TrimSpace(out.String()), err
}

func TestUDSCommands(t *testing.T) {
	url := "mem://cli-uds"
	state := startECU(t, url)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"session", "3"}, "session 03 active; P2 50 ms, P2* 5000 ms"},
		{[]string{"read-did", "F189"}, `F189 vehicleManufacturerECUSoftwareVersionNumber: "brake 2.4.1"`},
		{[]string{"read-did", "0101"}, "0101 DID 0x0101: ABCD"},
		{[]string{"write-did", "0102", "0A0B"}, "0102 written (2 bytes)"},
		{[]string{"dtc"}, "C07300 status 09"},
		{[]string{"clear-dtc"}, "DTC group FFFFFF cleared"},
		{[]string{"routine", "start", "FF01", "01"}, "routine FF01: start accepted, status 00"},
		{[]string{"tester-present"}, "ECU present"},
		{[]string{"request", "3E00"}, "7E00"},
		{[]string{"reset", "1"}, "ECU reset (type 01) accepted"},
	}
	for _, tt := range tests {
		got, err := runUDS(t, url, tt.args...)
		if err != nil {
			t.Errorf("uds %s: %v", strings.Join(tt.args, " "), err)
			continue
		}
		if got != tt.want {
			t.Errorf("uds %s printed %q, want %q", strings.Join(tt.args, " "), got, tt.want)
		}
	}
	if state.cleared != 0xFFFFFF {
		t.Errorf("clear-dtc cleared group %06X, want FFFFFF", state.cleared)
	}
	if !bytes.Equal(state.written, []byte{0x0A, 0x0B}) {
		t.Errorf("write-did wrote % X, want 0A 0B", state.written)
	}
}

func TestUDSJSON(t *testing.T) {
	url := "mem://cli-uds-json"
	startECU(t, url)
	out, err := runUDS(t, url, "-o", "json", "read-did", "F189")
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json printed %q: %v", out, err)
	}
	if len(got) != 1 || got[0]["did"] != "F189" || got[0]["text"] != "brake 2.4.1" || got[0]["hex"] != "6272616B6520322E342E31" {
		t.Fatalf("-o json printed %v", got)
	}
}

// TestUDSNegativeResponseNamesTheNRC: an ECU's refusal is an error that
// names the NRC, so the command exits non-zero with it.
func TestUDSNegativeResponseNamesTheNRC(t *testing.T) {
	url := "mem://cli-uds-nrc"
	startECU(t, url)
	_, err := runUDS(t, url, "read-did", "1234")
	var nr *uds.NegativeResponse
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "requestOutOfRange (0x31)") {
		t.Fatalf("reading an unknown DID gave %v; want a negative response naming requestOutOfRange (0x31)", err)
	}
}

func TestUDSRejectsBadArguments(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--tx", "XYZ", "tester-present"}, "--tx"},
		{[]string{"--tx", "7E0", "--rx", "18DAF110", "tester-present"}, "two 11-bit or two 29-bit"},
		{[]string{"-o", "yaml", "tester-present"}, "want text or json"},
		{[]string{"read-did", "F1899"}, "DID"},
		{[]string{"write-did", "0102", "zz"}, "hex bytes"},
		{[]string{"routine", "begin", "FF01"}, "start, stop or results"},
		{[]string{"request", ""}, "empty"},
	}
	for _, tt := range tests {
		_, err := runUDS(t, "mem://cli-uds-bad", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("uds %s: error %v, want one mentioning %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}
