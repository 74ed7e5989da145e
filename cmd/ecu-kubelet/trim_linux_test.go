package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"testing"
)

// TestTrimExecutableKeepsTheProgramWorking: after the executable's pages
// are released the program runs on: code, read-only data, type metadata
// and stack unwinding come back from the file intact. (A PIE build is
// covered by `go test -buildmode=pie`, where read-only data is left alone.)
func TestTrimExecutableKeepsTheProgramWorking(t *testing.T) {
	trimExecutable()
	b, err := json.Marshal(map[string]any{"ecu": "brake", "slots": []int{0, 1}})
	if err != nil || string(b) != `{"ecu":"brake","slots":[0,1]}` {
		t.Fatalf("json after trimming: %s, %v", b, err)
	}
	if got := reflect.TypeOf(runFlags{}).Name(); got != "runFlags" {
		t.Errorf("type name %q", got)
	}
	pcs := make([]uintptr, 8)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	if f, _ := frames.Next(); f.Function == "" {
		t.Error("no stack frame after trimming")
	}
	runtime.GC()
	if s := fmt.Sprintf("%v", newRootCmd().Commands()); s == "" {
		t.Error("no commands")
	}
}
