//go:build !linux

package main

// trimExecutable does nothing where /proc/self/maps and madvise are not
// at hand.
func trimExecutable() {}
