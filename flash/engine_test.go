package flash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

const (
	testHW      = "SIM-HW-1"
	testPayload = 12 << 10
)

var busSeq atomic.Uint64

// testVehicle is a vehicle of n ECUs (brake0, brake1, ...) on the given
// buses, round robin, 500 kbit/s mem buses, 64 KiB slots, each running
// the synthetic image 1.0.0 (release counter 1) of testPayload bytes.
func testVehicle(t testing.TB, n, buses int, simulation string) *vehicle.Vehicle {
	t.Helper()
	seq := busSeq.Add(1)
	doc := "name: test-car\nbuses:\n"
	for b := range buses {
		doc += fmt.Sprintf("  - {name: bus%d, url: \"mem://flash-test-%d-%d\", bitrate: 500000}\n", b, seq, b)
	}
	doc += "ecus:\n"
	for i := range n {
		doc += fmt.Sprintf(`  - name: brake%d
    bus: bus%d
    addressing: {requestId: 0x%X, responseId: 0x%X, functionalId: 0x7DF}
    hardwareId: %s
    partNumber: PN-1
    serial: SN-1
    flash: {slotSize: 65536, sectorSize: 4096, eraseTimePerSector: 20ms, writeTimePerKiB: 1ms, slotA: 0x1000000, slotB: 0x2000000}
    simulation:
      slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: %d}}
%s`, i, i%buses, 0x700+i, 0x780+i, testHW, testPayload, simulation)
	}
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return v
}

// baseImage is the image the test ECUs run.
func baseImage(t testing.TB) []byte {
	t.Helper()
	img, err := sim.SyntheticImage(image.Header{Version: "1.0.0", HardwareID: testHW, ReleaseCounter: 1}, testPayload)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// nextImage is base with a few changes: a realistic delta pair.
func nextImage(t testing.TB, base []byte, version string, release uint32) []byte {
	t.Helper()
	_, payload, err := image.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Clone(payload)
	for i := 100; i < len(p); i += 997 {
		p[i] ^= 0x5A
	}
	img, err := image.Build(image.Header{Version: version, HardwareID: testHW, ReleaseCounter: release}, p)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func opener(b []byte) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// firmware is an artifact for img with deltas from each of bases.
func firmware(t testing.TB, img []byte, bases ...[]byte) *artifact.Firmware {
	t.Helper()
	hdr, _, err := image.Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	fw := &artifact.Firmware{
		Ref: "test/" + hdr.Version,
		Config: artifact.Config{HardwareIDs: []string{hdr.HardwareID}, Version: hdr.Version, ReleaseCounter: hdr.ReleaseCounter,
			Size: int64(len(img)), SHA256: digestString(image.Digest(img))},
		OpenImage: opener(img),
	}
	for _, b := range bases {
		fw.Deltas = append(fw.Deltas, deltaLayer(t, b, img, b))
	}
	return fw
}

// deltaLayer is a delta layer labelled as applying to label, patching
// base into img.
func deltaLayer(t testing.TB, base, img, label []byte) artifact.Delta {
	t.Helper()
	env, err := delta.NewEnvelope(base, img, delta.CompressionLZMA).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var patch bytes.Buffer
	if err := delta.Create(&patch, base, img, nil); err != nil {
		t.Fatal(err)
	}
	layer := append(env, patch.Bytes()...)
	return artifact.Delta{BaseDigest: digestString(image.Digest(label)), Compression: delta.CompressionLZMA, Size: int64(len(layer)), Open: opener(layer)}
}

// rig is simulated ECUs on their buses and an engine attached to them.
// Make it inside a synctest bubble.
type rig struct {
	t    *testing.T
	v    *vehicle.Vehicle
	ecus []*sim.ECU
	eng  *Engine
	stop func()
}

// newRig runs v's ECUs, each with faults injected.
func newRig(t *testing.T, v *vehicle.Vehicle, faults ...sim.Fault) *rig {
	t.Helper()
	r := &rig{t: t, v: v, eng: &Engine{Buses: map[string]canbus.Bus{}, StateDir: t.TempDir()}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var buses []canbus.Bus
	open := func(url string) canbus.Bus {
		b, err := canbus.Open(url, canbus.Config{Bitrate: 500000})
		if err != nil {
			t.Fatal(err)
		}
		buses = append(buses, b)
		return b
	}
	urls := map[string]string{}
	for _, b := range v.Buses {
		urls[b.Name] = b.URL
	}
	for _, c := range v.ECUs {
		url := urls[c.Bus]
		if _, ok := r.eng.Buses[c.Bus]; !ok {
			r.eng.Buses[c.Bus] = open(url)
		}
		e, err := sim.NewECU(c, open(url), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range faults {
			if err := e.Inject(f); err != nil {
				t.Fatal(err)
			}
		}
		r.ecus = append(r.ecus, e)
		wg.Go(func() {
			if err := e.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	r.stop = func() {
		cancel()
		wg.Wait()
		for _, b := range buses {
			b.Close()
		}
	}
	t.Cleanup(r.stop)
	for _, e := range r.ecus {
		waitRunning(t, e)
	}
	return r
}

// waitRunning waits (in virtual time) until the ECU answers.
func waitRunning(t *testing.T, e *sim.ECU) sim.ECUStatus {
	t.Helper()
	var st sim.ECUStatus
	for range 3000 {
		if st = e.Status(); st.State == sim.StateRunning {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the ECU does not run: %+v", st)
	return st
}

// flash runs a job for the rig's i-th ECU.
func (r *rig) flash(i int, fw *artifact.Firmware) Result {
	return r.eng.Flash(context.Background(), Job{ECU: r.v.ECUs[i], Firmware: fw})
}

// checkBootsValid asserts invariant 1: the ECU runs a valid, confirmed
// image, one of imgs.
func checkBootsValid(t *testing.T, e *sim.ECU, imgs ...[]byte) sim.SlotStatus {
	t.Helper()
	st := waitRunning(t, e)
	for _, s := range st.Slots {
		if s.Name != st.ActiveSlot {
			continue
		}
		for _, img := range imgs {
			if s.Digest == digestString(image.Digest(img)) && s.Confirmed {
				return s
			}
		}
		t.Fatalf("the ECU runs slot %s %+v, none of the expected images", st.ActiveSlot, s)
	}
	t.Fatalf("no active slot: %+v", st)
	return sim.SlotStatus{}
}

// expect checks a result's outcome.
func expect(t *testing.T, res Result, want Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome %v (%v), want %v; plan %+v", res.Outcome, res.Err, want, res.Plan)
	}
	if want != Done && res.Err == nil {
		t.Fatalf("outcome %v without an error", res.Outcome)
	}
}

func TestFlashFullImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		var events []Event
		ch := make(chan Event)
		r.eng.Events = ch
		var transcript []TranscriptEntry
		r.eng.Transcript = func(e TranscriptEntry) { transcript = append(transcript, e) }
		done := make(chan struct{})
		go func() {
			for ev := range ch {
				events = append(events, ev)
			}
			close(done)
		}()
		res := r.flash(0, firmware(t, next))
		close(ch)
		<-done
		expect(t, res, Done)
		if res.Plan.Delta || res.Plan.Size != int64(len(next)) || res.Plan.NoOp {
			t.Errorf("plan %+v: want the full image", res.Plan)
		}
		checkBootsValid(t, r.ecus[0], next)
		var sawTransfer, sawConfirm bool
		for _, ev := range events {
			sawTransfer = sawTransfer || (ev.Phase == PhaseTransfer && ev.Bytes == ev.Total && ev.Total > 0 && ev.Rate > 0)
			sawConfirm = sawConfirm || ev.Phase == PhaseConfirm
		}
		if !sawTransfer || !sawConfirm {
			t.Errorf("events lack the end of the transfer or the confirmation: %d events", len(events))
		}
		if len(transcript) == 0 || !transcript[0].Sent || transcript[1].Sent || transcript[1].Elapsed <= 0 {
			t.Errorf("transcript does not start with a timed request and response: %+v", transcript[:min(2, len(transcript))])
		}
	})
}

func TestFlashDelta(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		res := r.flash(0, firmware(t, next, base))
		expect(t, res, Done)
		if !res.Plan.Delta || res.Plan.Size >= int64(len(next))/2 {
			t.Errorf("plan %+v: want a small delta", res.Plan)
		}
		checkBootsValid(t, r.ecus[0], next)
	})
}

func TestFlashAlreadyRunningIsNoOp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		base := baseImage(t)
		var sent []TranscriptEntry
		r.eng.Transcript = func(e TranscriptEntry) {
			if e.Sent {
				sent = append(sent, e)
			}
		}
		res := r.flash(0, firmware(t, base))
		expect(t, res, Done)
		if !res.Plan.NoOp {
			t.Errorf("plan %+v: want a no-op", res.Plan)
		}
		for _, e := range sent {
			if e.Message[0] != 0x22 {
				t.Errorf("a no-op sent %s %X", e.Service, e.Message)
			}
		}
	})
}

func TestFlashRefuses(t *testing.T) {
	base := baseImage(t)
	other, err := image.Build(image.Header{Version: "2.0.0", HardwareID: "OTHER-HW", ReleaseCounter: 2}, make([]byte, 100))
	if err != nil {
		t.Fatal(err)
	}
	older := nextImage(t, base, "0.9.0", 0)
	// An image larger than a slot is refused before a byte of it is read.
	huge := firmware(t, nextImage(t, base, "3.0.0", 3))
	huge.Config.Size = 64 << 10
	huge.OpenImage = func(context.Context) (io.ReadCloser, error) {
		return nil, errors.New("the image of a refused job was read")
	}
	for _, tc := range []struct {
		name string
		fw   *artifact.Firmware
	}{
		{"hardware mismatch", firmware(t, other)},
		{"downgrade", firmware(t, older)},
		{"larger than a slot", huge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, testVehicle(t, 1, 1, ""))
				res := r.flash(0, tc.fw)
				expect(t, res, Refused)
				var re *RefusedError
				if !errors.As(res.Err, &re) {
					t.Errorf("error %v is not a *RefusedError", res.Err)
				}
				checkBootsValid(t, r.ecus[0], base)
			})
		})
	}
}

func TestFlashCorruptArtifactFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		fw := firmware(t, next)
		bad := bytes.Clone(next)
		bad[len(bad)-1] ^= 1
		fw.OpenImage = opener(bad)
		res := r.flash(0, fw)
		expect(t, res, Failed)
		if res.Attempts != 0 {
			t.Errorf("%d programming attempts with a corrupt artifact", res.Attempts)
		}
		checkBootsValid(t, r.ecus[0], base)
	})
}

func TestFlashWrongDeltaBaseSendsFullImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		otherBase := nextImage(t, base, "1.5.0", 1)
		fw := firmware(t, next)
		// A layer that claims to patch the running image but patches another.
		fw.Deltas = []artifact.Delta{deltaLayer(t, otherBase, next, base)}
		res := r.flash(0, fw)
		expect(t, res, Done)
		if res.Plan.Delta {
			t.Errorf("plan %+v: sent a patch for another base", res.Plan)
		}
		checkBootsValid(t, r.ecus[0], next)
	})
}

func at(n int64) *int64 { return &n }

// TestFault runs a delta and a full flash with each fault kind of the
// simulator striking at each phase, and checks the outcome and that the
// ECU boots a valid image (invariant 1).
func TestFault(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault sim.Fault
		want  Outcome
	}{
		{"PowerLossErase", sim.Fault{Kind: sim.FaultPowerLoss, Phase: sim.PhaseErase, Sector: 3}, Done},
		// With a patch that fits one block the power loss would strike
		// while 0x37 is handled, where the simulator's FinishDownload and
		// abort race (docs/flash-engine.md, known limits); striking early
		// in a longer transfer tests the same thing on the engine's side.
		{"PowerLossTransfer", sim.Fault{Kind: sim.FaultPowerLoss, AtByte: at(5000)}, Done},
		{"PowerLossTransferExit", sim.Fault{Kind: sim.FaultPowerLoss, Phase: sim.PhaseTransferExit}, Done},
		{"PowerLossVerify", sim.Fault{Kind: sim.FaultPowerLoss, Phase: sim.PhaseVerify}, Done},
		{"PowerLossActivate", sim.Fault{Kind: sim.FaultPowerLoss, Phase: sim.PhaseActivate}, Done},
		{"PowerLossBoot", sim.Fault{Kind: sim.FaultPowerLoss, Phase: sim.PhaseBoot}, Done},
		{"PowerLossConfirm", sim.Fault{Kind: sim.FaultPowerLoss, Phase: sim.PhaseConfirm}, Done},
		{"NRCSecurityKey", sim.Fault{Kind: sim.FaultNRC, Service: 0x27, Step: 2, Code: 0x22}, Done},
		{"NRCErase", sim.Fault{Kind: sim.FaultNRC, Service: 0x31, Step: 1, Code: 0x72}, Done},
		{"NRCRequestDownload", sim.Fault{Kind: sim.FaultNRC, Service: 0x34, Step: 1, Code: 0x70}, Done},
		{"NRCTransferData", sim.Fault{Kind: sim.FaultNRC, Service: 0x36, Step: 5, Code: 0x72}, Done},
		{"NRCTransferExit", sim.Fault{Kind: sim.FaultNRC, Service: 0x37, Step: 1, Code: 0x72}, Done},
		{"NRCVerify", sim.Fault{Kind: sim.FaultNRC, Service: 0x31, Step: 2, Code: 0x22}, Done},
		{"NRCReset", sim.Fault{Kind: sim.FaultNRC, Service: 0x11, Step: 1, Code: 0x22}, Done},
		{"PendingStormErase", sim.Fault{Kind: sim.FaultPendingStorm, Service: 0x31, Step: 1, Duration: 30 * time.Second}, Done},
		{"PendingStormTransferData", sim.Fault{Kind: sim.FaultPendingStorm, Service: 0x36, Step: 3, Duration: 20 * time.Second}, Done},
		{"DropFrames", sim.Fault{Kind: sim.FaultDropFrames, AfterFrames: 300, Count: 3}, Done},
		{"CorruptFrames", sim.Fault{Kind: sim.FaultCorruptFrames, AfterFrames: 400, Count: 1}, Done},
		{"BusSilent", sim.Fault{Kind: sim.FaultBusSilent, AfterFrames: 200, Duration: 2 * time.Second}, Done},
		{"SecurityLockout", sim.Fault{Kind: sim.FaultSecurityLockout}, Done},
		{"BootFailure", sim.Fault{Kind: sim.FaultBootFailure, Version: "2.0.0"}, RolledBack},
		{"NeverConfirm", sim.Fault{Kind: sim.FaultNeverConfirm, Version: "2.0.0"}, RolledBack},
	} {
		for _, mode := range []string{"full", "delta"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					r := newRig(t, testVehicle(t, 1, 1, ""), tc.fault)
					base := baseImage(t)
					next := nextImage(t, base, "2.0.0", 2)
					if tc.fault.AtByte != nil {
						var err error
						if next, err = sim.SyntheticImage(image.Header{Version: "2.0.0", HardwareID: testHW, ReleaseCounter: 2}, testPayload); err != nil {
							t.Fatal(err)
						}
					}
					fw := firmware(t, next)
					if mode == "delta" {
						fw = firmware(t, next, base)
					}
					res := r.flash(0, fw)
					t.Logf("%v after %d attempts: %v", res.Outcome, res.Attempts, res.Err)
					expect(t, res, tc.want)
					if tc.want == Done {
						checkBootsValid(t, r.ecus[0], next)
					} else {
						checkBootsValid(t, r.ecus[0], base)
					}
				})
			})
		}
	}
}

func imageDigest(b []byte) [32]byte { return image.Digest(b) }

func asRollback(err error, rb **RollbackError) bool { return errors.As(err, rb) }

// TestFlashLeavesNoConnection: a job hangs up every connection it made,
// also the ones its redials made after resets. A connection left behind
// would answer the ECU's next long responses with flow control of its own.
func TestFlashLeavesNoConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		expect(t, r.flash(0, firmware(t, nextImage(t, baseImage(t), "2.0.0", 2))), Done)
		tester, ecu := r.v.ECUs[0].Addresses()
		bus := r.eng.Buses["bus0"]
		fc := bus.Subscribe(canbus.ExactFilter(tester.TxID, false))
		defer fc.Close()
		synctest.Wait()
		// A first frame on the ECU's response identifier, as the start of
		// a long response: only a live tester connection answers it.
		ff := canbus.Frame{ID: ecu.TxID, Len: 8, Data: [64]byte{0x10, 0x20, 0x62, 0xF1, 0x89}}
		if err := bus.Send(context.Background(), ff); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		select {
		case f := <-fc.Frames():
			t.Fatalf("a connection of the finished job is still open: it sent %v", f)
		default:
		}
	})
}

// TestFlashArtifactLargerThanItSays: an image stream that goes on past
// the size its artifact names is cut off and fails the job.
func TestFlashArtifactLargerThanItSays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		next := nextImage(t, baseImage(t), "2.0.0", 2)
		fw := firmware(t, next)
		fw.OpenImage = opener(append(bytes.Clone(next), make([]byte, 1<<20)...))
		res := r.flash(0, fw)
		expect(t, res, Failed)
		if !strings.Contains(res.Err.Error(), "larger than") {
			t.Errorf("error %v does not say the image is larger than its artifact says", res.Err)
		}
		checkBootsValid(t, r.ecus[0], baseImage(t))
	})
}

// TestFlashBeforeActivateCanStopTheJob: a job its caller calls off at the
// last moment leaves the ECU on its previous image, the new one verified
// but not active.
func TestFlashBeforeActivateCanStopTheJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		asked := false
		res := r.eng.Flash(ctx, Job{ECU: r.v.ECUs[0], Firmware: firmware(t, nextImage(t, baseImage(t), "2.0.0", 2)),
			BeforeActivate: func() error { asked = true; cancel(); return errors.New("the pod was deleted") }})
		expect(t, res, Failed)
		if !asked || !strings.Contains(res.Err.Error(), "not activated: the pod was deleted") {
			t.Errorf("asked %v, error %v", asked, res.Err)
		}
		checkBootsValid(t, r.ecus[0], baseImage(t))
	})
}
