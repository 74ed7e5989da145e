package diag

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

var busSeq atomic.Uint64

// ecuUnderTest is a tester connected to an ECU over ISO-TP on a mem bus.
type ecuUnderTest struct {
	client *uds.Client
	url    string // the bus, for a capture of its own
}

// connect dials the ECU at ecu from a tester attachment of url and closes
// everything when the test ends, after stop.
func connect(t *testing.T, url string, tester isotp.Address, stop func()) *ecuUnderTest {
	t.Helper()
	bus, err := canbus.Open(url, canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := isotp.Dial(bus, tester, isotp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		conn.Close()
		bus.Close()
	})
	return &ecuUnderTest{client: uds.NewClient(conn, uds.ClientOptions{Timeout: 10 * time.Second}), url: url}
}

// simulated runs a simulated brake ECU (sim.NewECU) on a fresh mem bus
// until the test ends. Call it inside a synctest bubble: the ECU boots in
// virtual time.
func simulated(t *testing.T) *ecuUnderTest {
	t.Helper()
	doc := fmt.Sprintf(`
name: diag-car
buses: [{name: body, url: "mem://diag-%d"}]
ecus:
  - name: brake
    bus: body
    addressing: {requestId: 0x7E0, responseId: 0x7E8}
    hardwareId: BRK-HW-1
    partNumber: PN-BRK
    serial: SN-0001
    flash: {slotSize: 65536, sectorSize: 4096, eraseTimePerSector: 1ms, writeTimePerKiB: 1ms, slotA: 0x10000, slotB: 0x20000}
    simulation:
      slots: {a: {version: "2.4.1", releaseCounter: 3, payloadSize: 1024}}
`, busSeq.Add(1))
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	desc := v.ECUs[0]
	ebus, err := canbus.Open(v.Buses[0].URL, canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ecu, err := sim.NewECU(desc, ebus, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ecu.Run(ctx) }()
	tester, _ := desc.Addresses()
	e := connect(t, v.Buses[0].URL, tester, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ECU Run: %v", err)
		}
		ebus.Close()
	})
	for ecu.Status().State != sim.StateRunning {
		time.Sleep(10 * time.Millisecond)
	}
	return e
}

// faultMemory is a DTC store, which the simulator does not model.
type faultMemory struct {
	dtcs    []uds.DTCRecord
	cleared []uint32
}

func (m *faultMemory) DTCs() (byte, []uds.DTCRecord) { return 0x2F, m.dtcs }

func (m *faultMemory) ClearDTCs(group uint32) error {
	if group != uds.AllDTCGroups && group != 0xC07300 {
		return uds.RequestOutOfRange
	}
	m.cleared = append(m.cleared, group)
	m.dtcs = nil
	return nil
}

// withFaultMemory serves m with the uds package's server on a fresh mem
// bus until the test ends.
func withFaultMemory(t *testing.T, m *faultMemory) *ecuUnderTest {
	t.Helper()
	url := fmt.Sprintf("mem://diag-dtc-%d", busSeq.Add(1))
	bus, err := canbus.Open(url, canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := isotp.Dial(bus, isotp.Address{TxID: 0x7E8, RxID: 0x7E0}, isotp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := uds.NewServer(uds.ServerConfig{})
	s.RegisterDTCs(m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx, conn, nil) }()
	return connect(t, url, isotp.Address{TxID: 0x7E0, RxID: 0x7E8}, func() {
		cancel()
		<-done
		conn.Close()
		bus.Close()
	})
}

func run(e *ecuUnderTest, args ...string) (string, error) {
	var out bytes.Buffer
	err := Run(context.Background(), e.client, args, &out)
	return out.String(), err
}

func TestAllowedCommandsReadTheECU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := simulated(t)
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"read-did", "F189"}, `F189 vehicleManufacturerECUSoftwareVersionNumber: "2.4.1"` + "\n"},
			{[]string{"read-did", "0xf191", "F18C"}, `F191 vehicleManufacturerECUHardwareNumber: "BRK-HW-1"` + "\n" + `F18C ECUSerialNumber: "SN-0001"` + "\n"},
			// The simulator's active-slot DID: slot A, not on trial.
			{[]string{"read-did", "FD00"}, "FD00 DID 0xFD00: 0000\n"},
			{[]string{"tester-present"}, "ECU present\n"},
			{[]string{"identity"}, strings.Join([]string{
				`F180 bootSoftwareIdentification: "ecu-kubelet-sim-boot 1"`,
				`F187 vehicleManufacturerSparePartNumber: "PN-BRK"`,
				`F189 vehicleManufacturerECUSoftwareVersionNumber: "2.4.1"`,
				`F18C ECUSerialNumber: "SN-0001"`,
				`F191 vehicleManufacturerECUHardwareNumber: "BRK-HW-1"`,
				`F195 systemSupplierECUSoftwareVersionNumber: "2.4.1"`,
			}, "\n") + "\n"},
		}
		for _, tt := range tests {
			got, err := run(e, tt.args...)
			if err != nil {
				t.Errorf("%s: %v", strings.Join(tt.args, " "), err)
				continue
			}
			if got != tt.want {
				t.Errorf("%s printed\n%s\nwant\n%s", strings.Join(tt.args, " "), got, tt.want)
			}
		}
	})
}

func TestDTCCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &faultMemory{dtcs: []uds.DTCRecord{{DTC: 0xC07300, Status: 0x09}, {DTC: 0x012345, Status: 0x20}}}
		e := withFaultMemory(t, m)
		steps := []struct {
			args []string
			want string
		}{
			{[]string{"read-dtc"}, "C07300 status 09\n012345 status 20\n"},
			{[]string{"read-dtc", "01"}, "C07300 status 09\n"},
			{[]string{"read-dtc", "0x40"}, "no DTCs match status mask 40\n"},
			{[]string{"clear-dtc", "C07300"}, "DTC group C07300 cleared\n"},
			{[]string{"clear-dtc"}, "DTC group FFFFFF cleared\n"},
			{[]string{"read-dtc"}, "no DTCs match status mask FF\n"},
		}
		for _, s := range steps {
			got, err := run(e, s.args...)
			if err != nil || got != s.want {
				t.Errorf("%s printed %q, %v; want %q", strings.Join(s.args, " "), got, err, s.want)
			}
		}
		if want := []uint32{0xC07300, uds.AllDTCGroups}; fmt.Sprint(m.cleared) != fmt.Sprint(want) {
			t.Errorf("the ECU cleared groups %06X, want %06X", m.cleared, want)
		}
	})
}

// TestECURefusalNamesTheNRC: what the ECU refuses fails with the NRC's
// name, and exits 1.
func TestECURefusalNamesTheNRC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := simulated(t)
		dtc := withFaultMemory(t, &faultMemory{})
		tests := []struct {
			e    *ecuUnderTest
			args []string
			nrc  uds.NRC
		}{
			{e, []string{"read-did", "F189", "1234"}, uds.RequestOutOfRange},
			{e, []string{"read-dtc"}, uds.ServiceNotSupported}, // the simulator has no fault memory
			{dtc, []string{"clear-dtc", "000001"}, uds.RequestOutOfRange},
		}
		for _, tt := range tests {
			_, err := run(tt.e, tt.args...)
			var nr *uds.NegativeResponse
			if !errors.As(err, &nr) || nr.Code != tt.nrc || !strings.Contains(err.Error(), tt.nrc.String()) {
				t.Errorf("%s: error %v; want a negative response naming %v", strings.Join(tt.args, " "), err, tt.nrc)
			}
			if ExitCode(err) != ExitFailed {
				t.Errorf("%s: exit code %d, want %d", strings.Join(tt.args, " "), ExitCode(err), ExitFailed)
			}
		}
	})
}

// TestRefusedAndBadCommandsSendNothing: a command off the allow-list, or
// with arguments it cannot take, is refused before a single frame goes on
// the bus.
func TestRefusedAndBadCommandsSendNothing(t *testing.T) {
	refused := [][]string{
		{},
		{"write-did", "F189", "00"},
		{"routine", "start", "FF00"},
		{"routine-control", "01", "FF00"},
		{"session", "2"},
		{"security-access", "1"},
		{"reset", "1"},
		{"ecu-reset"},
		{"request", "1101"},
		{"raw", "3E00"},
		{"Read-DID", "F189"},
		{"read-di", "F189"},
		{"read-did-", "F189"},
		{" read-did", "F189"},
		{"readdid", "F189"},
		{"clear-dtcs"},
		{"--help"},
		{"sh", "-c", "read-did F189"},
		{"read-did F189"},
	}
	bad := [][]string{
		{"read-did"},
		{"read-did", "F1899"},
		{"read-did", "F189", "zz"},
		{"read-did", "F189", "-1"},
		{"read-did", "0x"},
		{"read-did", "F180", "F181", "F187", "F189", "F18C", "F190", "F191", "F195", "F180", "F181", "F187", "F189", "F18C", "F190", "F191", "F195", "F180"},
		{"read-dtc", "100"},
		{"read-dtc", "FF", "FF"},
		{"clear-dtc", "1000000"},
		{"clear-dtc", "FFFFFF", "extra"},
		{"tester-present", "80"},
		{"identity", "all"},
		{"help", "me"},
	}
	synctest.Test(t, func(t *testing.T) {
		e := simulated(t)
		capture, err := canbus.Open(e.url, canbus.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer capture.Close()
		sub := capture.Subscribe()
		sent := func() int {
			synctest.Wait()
			n := 0
			for len(sub.Frames()) > 0 {
				<-sub.Frames()
				n++
			}
			return n
		}
		check := func(args []string, wantCode int, wantText string) {
			t.Helper()
			if code := ExitCode(Check(args)); code != wantCode {
				t.Errorf("Check(%q): exit %d, want %d", args, code, wantCode)
			}
			out, err := run(e, args...)
			if ExitCode(err) != wantCode || !strings.Contains(fmt.Sprint(err), wantText) {
				t.Errorf("%q: error %v (exit %d); want exit %d and an error saying %q", args, err, ExitCode(err), wantCode, wantText)
			}
			if out != "" {
				t.Errorf("%q printed %q", args, out)
			}
			if n := sent(); n != 0 {
				t.Errorf("%q put %d frames on the bus, want none", args, n)
			}
		}
		for _, args := range refused {
			check(args, ExitRefused, "allowed: read-did, read-dtc, clear-dtc, tester-present, identity, help")
			if len(args) > 0 {
				check(args, ExitRefused, fmt.Sprintf("%q", args[0]))
			}
		}
		for _, args := range bad {
			check(args, ExitUsage, "usage: "+args[0])
		}
		// The capture sees what an allowed command sends, so the checks
		// above could fail.
		if _, err := run(e, "tester-present"); err != nil {
			t.Fatal(err)
		}
		if sent() == 0 {
			t.Fatal("the capture saw no frames of tester-present")
		}
	})
}

func TestRefusedErrorsAreTyped(t *testing.T) {
	err := Run(context.Background(), nil, []string{"write-did", "F189", "00"}, &bytes.Buffer{})
	var re *RefusedError
	if !errors.As(err, &re) || re.Command != "write-did" {
		t.Fatalf("write-did: %v; want a *RefusedError naming it", err)
	}
	err = Run(context.Background(), nil, []string{"read-did", "G"}, &bytes.Buffer{})
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Command != "read-did" || !strings.Contains(err.Error(), `DID "G"`) {
		t.Fatalf("read-did G: %v; want a *UsageError naming the DID", err)
	}
}

func TestCheckPassesAllowedCommands(t *testing.T) {
	for _, args := range [][]string{{"read-did", "F189", "0x0101"}, {"read-dtc"}, {"read-dtc", "0C"}, {"clear-dtc", "C07300"}, {"tester-present"}, {"identity"}, {"help"}} {
		if err := Check(args); err != nil {
			t.Errorf("Check(%q): %v", args, err)
		}
	}
}

func TestHelpListsEveryCommandWithoutTheBus(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), nil, []string{"help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range Commands() {
		if !strings.Contains(out.String(), "\n  "+c) {
			t.Errorf("help does not list %s:\n%s", c, out.String())
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{&RefusedError{Command: "reset"}, ExitRefused},
		{fmt.Errorf("wrapped: %w", &UsageError{Command: "read-did"}), ExitUsage},
		{&uds.NegativeResponse{Service: uds.ReadDataByIdentifier, Code: uds.RequestOutOfRange}, ExitFailed},
		{context.DeadlineExceeded, ExitFailed},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
