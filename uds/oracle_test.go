package uds

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/ecu-kubelet/ecu-kubelet/internal/tshark"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// TestTsharkOracle records every request and response of a full session,
// every service of the client, as pcap and has Wireshark's UDS dissector
// read it: each message must decode as the service it is, in order, with
// no malformed or expert marks.
func TestTsharkOracle(t *testing.T) {
	tshark.Path(t)
	var (
		pcap       bytes.Buffer
		recorded   = make(chan error, 1)
		mu         sync.Mutex
		transcript [][]byte // what the client sent and received, in order
	)
	synctest.Test(t, func(t *testing.T) {
		s, _ := newTestServer(h("36573658")) // one seed per SecurityAccess
		r := newRig(t)
		t.Cleanup(r.close)
		tap, err := canbus.Open(r.url, canbus.Config{Bitrate: 500000})
		if err != nil {
			t.Fatal(err)
		}
		r.buses = append(r.buses, tap)
		w, err := canbus.NewPcapWriter(&pcap)
		if err != nil {
			t.Fatal(err)
		}
		sub := tap.Subscribe()
		go func() { recorded <- canbus.Record(context.Background(), sub, w) }()
		phys, fun := r.tester(0)
		r.ecu(0, s, nil)
		c := NewClient(phys, ClientOptions{Functional: fun, Trace: func(sent bool, msg []byte) {
			mu.Lock()
			transcript = append(transcript, append([]byte(nil), msg...))
			mu.Unlock()
		}})
		ctx := context.Background()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		_, err = c.DiagnosticSessionControl(ctx, ExtendedSession)
		must(err)
		_, err = c.ReadDataByIdentifier(ctx, DIDVIN, DIDECUSoftwareVersionNumber)
		must(err)
		_, _, err = c.ReadDTCByStatusMask(ctx, 0xFF)
		must(err)
		must(c.ClearDiagnosticInformation(ctx, AllDTCGroups))
		must(c.TesterPresent(ctx, 0))
		must(c.ControlDTCSetting(ctx, DTCSettingOff, nil))
		must(c.CommunicationControl(ctx, DisableRxAndTx, NormalCommunicationMessages))
		must(c.SecurityAccess(ctx, 1, testKey))
		must(c.WriteDataByIdentifier(ctx, DIDVIN, []byte("WVWZZZ1JZXW000001")))
		_, err = c.DiagnosticSessionControl(ctx, ProgrammingSession)
		must(err)
		must(c.SecurityAccess(ctx, 1, testKey))
		_, err = c.RoutineControl(ctx, StartRoutine, 0xFF01, nil)
		must(err)
		img := make([]byte, 600)
		_, err = c.Download(ctx, DownloadRequest{Address: 0x602000}, img, nil)
		must(err)
		_, err = c.ReadDataByIdentifier(ctx, 0x7777) // not supported: a negative response
		if _, ok := err.(*NegativeResponse); !ok {
			t.Fatalf("reading DID 7777: %v, want a negative response", err)
		}
		_, err = c.ECUReset(ctx, HardReset)
		must(err)
		synctest.Wait()
	})

	if err := <-recorded; err != nil { // the bus closed with the bubble's cleanup
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "session.pcap")
	if err := os.WriteFile(path, pcap.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rows := tshark.Fields(t, path, tshark.UDS, "frame.number", "uds.sid", "uds.reply", "uds.err.sid", "uds.err.code", "_ws.malformed", "_ws.expert")
	var decoded []string
	for _, v := range rows {
		if v[5] != "" || v[6] != "" {
			t.Errorf("packet %s: tshark marks malformed %q expert %q", v[0], v[5], v[6])
		}
		if v[1] == "" {
			continue // a frame that does not end a message
		}
		sid, err := strconv.ParseUint(v[1], 0, 8)
		if err != nil {
			t.Fatalf("packet %s: uds.sid %q", v[0], v[1])
		}
		if reply, _ := strconv.ParseUint(v[2], 0, 8); reply != 0 {
			sid |= 0x40 // tshark names the service; the reply flag makes it the response SID
		}
		got := fmt.Sprintf("%02X", sid)
		if sid == NegativeResponseSID {
			errSID, _ := strconv.ParseUint(v[3], 0, 8)
			code, _ := strconv.ParseUint(v[4], 0, 8)
			got += fmt.Sprintf(" %02X %02X", errSID, code)
		}
		decoded = append(decoded, got)
	}
	var want []string
	for _, msg := range transcript {
		w := fmt.Sprintf("%02X", msg[0])
		if msg[0] == NegativeResponseSID {
			w = fmt.Sprintf("% X", msg)
		}
		want = append(want, w)
	}
	if fmt.Sprint(decoded) != fmt.Sprint(want) {
		t.Fatalf("tshark decoded the services\n%v\nthe client's transcript has\n%v", decoded, want)
	}
	services := map[string]bool{}
	for _, s := range want {
		services[s] = true
	}
	for _, sid := range []SID{DiagnosticSessionControl, ECUReset, ClearDiagnosticInformation, ReadDTCInformation,
		ReadDataByIdentifier, SecurityAccess, CommunicationControl, WriteDataByIdentifier, RoutineControl,
		RequestDownload, TransferData, RequestTransferExit, TesterPresent, ControlDTCSetting} {
		if !services[fmt.Sprintf("%02X", byte(sid))] || !services[fmt.Sprintf("%02X", byte(sid)+0x40)] {
			t.Errorf("the session lacks a request or positive response of %v", sid)
		}
	}
	if !services["7F 22 31"] {
		t.Error("the session lacks the negative response requestOutOfRange to ReadDataByIdentifier")
	}
}
