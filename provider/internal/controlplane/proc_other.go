//go:build !linux

package controlplane

import "syscall"

// setParentDeathSignal does nothing: only Linux has a parent-death signal,
// so elsewhere a killed test process can leave its children running.
func setParentDeathSignal(*syscall.SysProcAttr) {}
