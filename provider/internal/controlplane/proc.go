package controlplane

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// childAttr returns the attributes of every process this package starts:
// a process group of its own, so that stopping it stops whatever it
// started, and on Linux a signal that kills it when this process dies, so
// that a test killed by its timeout leaves nothing behind.
func childAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(attr)
	return attr
}

// killGroup kills the process group that pid leads.
func killGroup(pid int) error {
	return signalGroup(pid, syscall.SIGKILL)
}

// signalGroup sends sig to the process group that pid leads. A group that
// is gone already is not an error.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// startChild starts cmd from one OS thread that never exits. Linux sends
// the parent-death signal when the thread that forked the child exits, not
// the process, and the Go runtime may end the thread of any goroutine that
// exits locked to it; a thread kept for starting children is the one whose
// end is the process's end.
func startChild(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawn)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for s := range spawns {
				s.done <- s.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawns <- spawn{cmd, done}
	return <-done
}

type spawn struct {
	cmd  *exec.Cmd
	done chan<- error
}

var (
	spawnOnce sync.Once
	spawns    chan spawn
)
