package flash

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/sim"
)

// killAt runs a job and cancels its context (the process dies) at the
// first event stop accepts, then returns the journal it left.
func killAt(t *testing.T, r *rig, fw Job, stop func(Event) bool) journalState {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan Event)
	r.eng.Events = ch
	done := make(chan Result)
	go func() { done <- r.eng.Flash(ctx, fw) }()
	var res Result
loop:
	for {
		select {
		case ev := <-ch:
			if stop(ev) {
				cancel()
			}
		case res = <-done:
			break loop
		}
	}
	r.eng.Events = nil
	if res.Outcome != Failed || ctx.Err() == nil {
		t.Fatalf("the killed job ended %v (%v)", res.Outcome, res.Err)
	}
	b, err := os.ReadFile(filepath.Join(r.eng.StateDir, fw.ECU.Name+".json"))
	if err != nil {
		t.Fatalf("no journal after the kill: %v", err)
	}
	var j journalState
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// restart is a new engine, as after a process restart, on the same buses
// and state directory.
func (r *rig) restart() {
	r.eng = &Engine{Buses: r.eng.Buses, StateDir: r.eng.StateDir}
}

func TestJournalKilledMidTransferRestarts(t *testing.T) {
	for _, mode := range []string{"full", "delta"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, testVehicle(t, 1, 1, ""))
				base := baseImage(t)
				next := nextImage(t, base, "2.0.0", 2)
				fw := firmware(t, next)
				if mode == "delta" {
					fw = firmware(t, next, base)
				}
				job := Job{ECU: r.v.ECUs[0], Firmware: fw}
				j := killAt(t, r, job, func(ev Event) bool { return ev.Phase == PhaseTransfer && ev.Bytes > ev.Total/2 })
				if j.Phase != PhaseTransfer || j.Target != digestString(imageDigest(next)) {
					t.Fatalf("journal %+v: want the transfer of the target", j)
				}
				r.restart()
				res := r.eng.Flash(context.Background(), job)
				expect(t, res, Done)
				if !res.Resumed {
					t.Error("the restarted job did not find its journal")
				}
				checkBootsValid(t, r.ecus[0], next)
				if _, err := os.Stat(filepath.Join(r.eng.StateDir, "brake0.json")); !os.IsNotExist(err) {
					t.Errorf("journal left after the job: %v", err)
				}
			})
		})
	}
}

func TestJournalKilledAfterActivationResumes(t *testing.T) {
	for _, at := range []Phase{PhaseReset, PhaseConfirm} {
		t.Run(string(at), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, testVehicle(t, 1, 1, ""))
				base := baseImage(t)
				next := nextImage(t, base, "2.0.0", 2)
				job := Job{ECU: r.v.ECUs[0], Firmware: firmware(t, next)}
				killAt(t, r, job, func(ev Event) bool { return ev.Phase == at })
				r.restart()
				res := r.eng.Flash(context.Background(), job)
				expect(t, res, Done)
				if !res.Resumed || res.Attempts != 0 {
					t.Errorf("resumed %v after %d new programming attempts; want a resumption without reprogramming", res.Resumed, res.Attempts)
				}
				checkBootsValid(t, r.ecus[0], next)
			})
		})
	}
}

func TestRollbackSeenAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""), sim.Fault{Kind: sim.FaultBootFailure, Version: "2.0.0"})
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		job := Job{ECU: r.v.ECUs[0], Firmware: firmware(t, next)}
		killAt(t, r, job, func(ev Event) bool { return ev.Phase == PhaseConfirm })
		time.Sleep(10 * time.Second) // the bootloader gives up on the new image meanwhile
		r.restart()
		res := r.eng.Flash(context.Background(), job)
		expect(t, res, RolledBack)
		checkBootsValid(t, r.ecus[0], base)
	})
}

func TestRollbackConfirmDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""), sim.Fault{Kind: sim.FaultNeverConfirm, Version: "2.0.0"})
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		res := r.flash(0, firmware(t, next))
		expect(t, res, RolledBack)
		var rb *RollbackError
		if !asRollback(res.Err, &rb) || rb.Reason == "" {
			t.Errorf("error %v is not a *RollbackError with a reason", res.Err)
		}
		checkBootsValid(t, r.ecus[0], base)
	})
}

func TestFlashAllOneAtATimePerBus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 4, 2, ""))
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		var mu sync.Mutex
		active := map[string]int{}
		peak := map[string]int{}
		busOf := map[string]string{}
		for _, e := range r.v.ECUs {
			busOf[e.Name] = e.Bus
		}
		ch := make(chan Event)
		r.eng.Events = ch
		go func() {
			seen := map[string]bool{}
			for ev := range ch {
				mu.Lock()
				b := busOf[ev.ECU]
				if !seen[ev.ECU] {
					seen[ev.ECU] = true
					active[b]++
					peak[b] = max(peak[b], active[b])
				}
				if ev.Phase == PhaseDone {
					active[b]--
				}
				mu.Unlock()
			}
		}()
		var jobs []Job
		for _, e := range r.v.ECUs {
			jobs = append(jobs, Job{ECU: e, Firmware: firmware(t, next)})
		}
		start := time.Now()
		results := r.eng.FlashAll(context.Background(), jobs)
		took := time.Since(start)
		close(ch)
		for i, res := range results {
			expect(t, res, Done)
			checkBootsValid(t, r.ecus[i], next)
		}
		mu.Lock()
		defer mu.Unlock()
		if peak["bus0"] != 1 || peak["bus1"] != 1 {
			t.Errorf("peak ECUs flashing at once per bus: %v; want 1", peak)
		}
		t.Logf("4 ECUs on 2 buses in %v", took)
	})
}

// TestJournalKilledAtEachPhase kills the process as each phase starts and
// restarts it from its journal: the job always ends done, the ECU always
// boots a valid image.
func TestJournalKilledAtEachPhase(t *testing.T) {
	for _, at := range []Phase{PhaseUnlock, PhaseErase, PhaseTransfer, PhaseVerify, PhaseActivate, PhaseReset, PhaseConfirm} {
		t.Run(string(at), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, testVehicle(t, 1, 1, ""))
				base := baseImage(t)
				next := nextImage(t, base, "2.0.0", 2)
				job := Job{ECU: r.v.ECUs[0], Firmware: firmware(t, next, base)}
				killAt(t, r, job, func(ev Event) bool { return ev.Phase == at })
				// Between the runs the ECU runs one of the images, the new
				// one possibly still on trial.
				st := waitRunning(t, r.ecus[0])
				for _, sl := range st.Slots {
					if sl.Name == st.ActiveSlot && sl.Digest != digestString(imageDigest(base)) && sl.Digest != digestString(imageDigest(next)) {
						t.Fatalf("between the runs the ECU runs %+v", sl)
					}
				}
				r.restart()
				res := r.eng.Flash(context.Background(), job)
				expect(t, res, Done)
				checkBootsValid(t, r.ecus[0], next)
			})
		})
	}
}
