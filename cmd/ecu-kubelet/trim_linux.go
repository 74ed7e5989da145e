package main

import (
	"bufio"
	"debug/elf"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimExecutable lets the kernel drop the pages of this executable's
// read-only mappings that start-up touched, and asks it not to read ahead
// around later faults: a long-running provider then keeps resident only
// the code it runs, not most of a 90 MB binary. The pages come back from
// the file (and the page cache) when needed. Writable mappings are left
// alone, and so is read-only data of a position-independent executable:
// its relocated part (RELRO) was patched at load time and would come back
// from the file unpatched. Errors are ignored: this only saves memory.
func trimExecutable() {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	ef, err := elf.Open(exe)
	if err != nil {
		return
	}
	fixed := ef.Type == elf.ET_EXEC
	ef.Close()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-02095000 r-xp 00000000 fe:00 10010880 /path/ecu-kubelet
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe {
			continue
		}
		switch perms := fields[1]; {
		case strings.Contains(perms, "w"):
			continue
		case !strings.Contains(perms, "x") && !fixed:
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		for _, advice := range []uintptr{unix.MADV_RANDOM, unix.MADV_DONTNEED} {
			unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), advice)
		}
	}
}
