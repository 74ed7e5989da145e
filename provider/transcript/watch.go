package transcript

import (
	"path/filepath"
	"sync"
)

// watch tells the followers of one file in this process that a writer of
// the same process appended to it. Writers and followers of a path share
// one, found by the path, so a follower that opened the file before its
// writer existed (a flash resumed after a restart) is woken all the same.
type watch struct {
	key  string
	refs int // guarded by watches.mu

	mu sync.Mutex
	ch chan struct{} // closed and replaced by notify
}

// watches are the watches in use, by absolute path: a process-wide table
// because the file it stands for is process-wide too.
var watches = struct {
	mu sync.Mutex
	m  map[string]*watch
}{m: map[string]*watch{}}

func watchKey(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// acquire returns the watch of path; release it when done.
func acquire(path string) *watch {
	key := watchKey(path)
	watches.mu.Lock()
	defer watches.mu.Unlock()
	w, ok := watches.m[key]
	if !ok {
		w = &watch{key: key, ch: make(chan struct{})}
		watches.m[key] = w
	}
	w.refs++
	return w
}

func (w *watch) release() {
	watches.mu.Lock()
	defer watches.mu.Unlock()
	if w.refs--; w.refs == 0 {
		delete(watches.m, w.key)
	}
}

// changed returns a channel that is closed at the next notify. Take it
// before reading, so that a line written between the read and the wait
// is not missed.
func (w *watch) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *watch) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.ch)
	w.ch = make(chan struct{})
}
