package vcanvm

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// cpioWriter writes the "newc" cpio format (magic 070701), the only format
// the kernel's initramfs unpacker reads. Archives may be concatenated: the
// kernel unpacks each in turn, which lets the cached base image and the
// per-run payload stay separate files.
type cpioWriter struct {
	w    *bufio.Writer
	n    int64 // bytes written, for the 4-byte alignment of names and data
	ino  uint32
	err  error
	dirs map[string]bool
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<16), ino: 1, dirs: map[string]bool{}}
}

// Mode bits of cpio entries (the same values as Linux st_mode).
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// Dir adds a directory and any missing parents.
func (c *cpioWriter) Dir(name string) {
	name = strings.Trim(name, "/")
	if name == "" || c.dirs[name] {
		return
	}
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		c.Dir(name[:i])
	}
	c.dirs[name] = true
	c.entry(name, cpioDir|0o755, 0, 0, nil)
}

// File adds a regular file with permissions perm, creating its parents.
func (c *cpioWriter) File(name string, perm fs.FileMode, data []byte) {
	c.parent(name)
	c.entry(strings.Trim(name, "/"), cpioFile|uint32(perm.Perm()), 0, 0, data)
}

// Symlink adds a symbolic link name pointing at target.
func (c *cpioWriter) Symlink(name, target string) {
	c.parent(name)
	c.entry(strings.Trim(name, "/"), cpioSymlink|0o777, 0, 0, []byte(target))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm fs.FileMode, major, minor uint32) {
	c.parent(name)
	c.entry(strings.Trim(name, "/"), cpioCharDev|uint32(perm.Perm()), major, minor, nil)
}

// Close writes the trailer and flushes. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.err
}

func (c *cpioWriter) parent(name string) {
	name = strings.Trim(name, "/")
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		c.Dir(name[:i])
	}
}

func (c *cpioWriter) entry(name string, mode, rdevMajor, rdevMinor uint32, data []byte) {
	if c.err != nil {
		return
	}
	ino := c.ino
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// Fields: ino mode uid gid nlink mtime filesize devmajor devminor
	// rdevmajor rdevminor namesize check. mtime 0 keeps archives
	// reproducible, so the cache key alone decides whether one is stale.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
