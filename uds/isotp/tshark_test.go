package isotp

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/ecu-kubelet/ecu-kubelet/internal/tshark"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// TestTsharkDecodesISOTP records ISO-TP transfers on the mem bus as pcap and
// has Wireshark's ISO 15765 dissector decode them: every frame must decode
// as the frame type we sent, with no malformed or expert marks, and every
// segmented message must reassemble to its full length. (The vcan tests do
// the same for captures made by the socketcan transport.)
func TestTsharkDecodesISOTP(t *testing.T) {
	tshark.Path(t)
	sizes := []int{1, 6, 7, 8, 62, 63, 64, 4095, 4096, 5000}
	for _, tc := range []struct {
		name      string
		bus       canbus.Config
		opts      Options
		segmented int // messages of sizes that need a first frame
	}{
		{"classic", classic500, Options{}, 7},
		{"classic-unpadded", classic500, Options{NoPadding: true}, 7},
		{"fd-64", fd500x2M, Options{TxDL: 64, BRS: true}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stamped []stamped
			synctest.Test(t, func(t *testing.T) {
				b := newBench(t, tc.bus)
				defer b.close()
				tester := dial(t, b.a, Address{TxID: 0x7E0, RxID: 0x7E8}, tc.opts)
				defer tester.Close()
				ecu := dial(t, b.b, Address{TxID: 0x7E8, RxID: 0x7E0}, tc.opts)
				defer ecu.Close()
				for _, n := range sizes {
					msg := bytes.Repeat([]byte{byte(n)}, n)
					exchange(t, tester, ecu, msg, msg[:min(n, 3)])
				}
				synctest.Wait()
				b.rec.mu.Lock()
				stamped = append(stamped, b.rec.frames...) // in bus order
				b.rec.mu.Unlock()
			})
			path := filepath.Join(t.TempDir(), tc.name+".pcap")
			writePcap(t, path, stamped)
			checkTshark(t, path, len(stamped), 2*len(sizes), tc.segmented)
		})
	}
}

func writePcap(t *testing.T, path string, frames []stamped) {
	t.Helper()
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := canbus.NewPcapWriter(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range frames {
		if err := w.WriteFrame(s.at, s.f); err != nil {
			t.Fatal(err)
		}
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkTshark decodes path as ISO 15765 and checks that it holds frames
// packets (any number if frames < 0), each a well-formed ISO-TP frame, that
// messages of them are single or first frames, and that tshark reassembles
// segmented messages.
func checkTshark(t *testing.T, path string, frames, messages, segmented int) {
	t.Helper()
	rows := tshark.Fields(t, path, tshark.ISOTP, "frame.number", "iso15765.message_type",
		"iso15765.frame_length", "iso15765.reassembled.length", "_ws.malformed", "_ws.expert")
	if frames >= 0 && len(rows) != frames || len(rows) == 0 {
		t.Fatalf("tshark decoded %d packets, want %d", len(rows), frames)
	}
	starts := 0
	for _, v := range rows {
		l := strings.Join(v, "|")
		if v[4] != "" || v[5] != "" {
			t.Errorf("packet %s: tshark marks malformed %q expert %q: %s", v[0], v[4], v[5], l)
		}
		typ, _ := strconv.ParseUint(v[1], 0, 8)
		switch {
		case v[1] == "":
			t.Errorf("packet %s: not decoded as ISO 15765: %s", v[0], l)
		case typ == 0: // single frame
			starts++
		case typ == 1: // first frame: reassembly must yield the announced length
			starts++
			if v[3] != "" && v[3] != v[2] {
				t.Errorf("packet %s: first frame announces %s bytes, tshark reassembled %s", v[0], v[2], v[3])
			}
		case typ > 3:
			t.Errorf("packet %s: ISO 15765 message type %s is not SF, FF, CF or FC: %s", v[0], v[1], l)
		}
	}
	if starts != messages {
		t.Errorf("tshark found %d single or first frames, want %d messages", starts, messages)
	}
	reassembled := 0
	for _, v := range rows {
		if n, err := strconv.Atoi(v[3]); err == nil && n > 0 {
			reassembled++
		}
	}
	if reassembled != segmented {
		t.Errorf("tshark reassembled %d messages, want %d", reassembled, segmented)
	}
}
