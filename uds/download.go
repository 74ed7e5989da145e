package uds

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// Memory is the flash model of an ECU behind Download: what a simulated
// bootloader plugs in. Download calls it with its own lock held, one call
// at a time. Errors that are NRCs are sent as they are; others become the
// NRC each method names.
type Memory interface {
	// StartDownload accepts or refuses a download: RequestOutOfRange for
	// an address range or data format it does not have,
	// UploadDownloadNotAccepted (the default) when it cannot take one now.
	StartDownload(r DownloadRequest) error
	// Write stores data at addr, the download's address plus the bytes
	// already written. GeneralProgrammingFailure is the default NRC.
	Write(addr uint64, data []byte) error
	// FinishDownload completes a download all of whose bytes were written,
	// returning the transferResponseParameterRecord for
	// RequestTransferExit. GeneralProgrammingFailure is the default NRC.
	FinishDownload() ([]byte, error)
	// AbortDownload drops a download left unfinished: by a session change,
	// a reset or a new RequestDownload after a failure.
	AbortDownload()
}

// DownloadOptions configure Download.
type DownloadOptions struct {
	// Access limits RequestDownload; the zero value allows the
	// programming session only and needs no security level.
	// TransferData and RequestTransferExit are allowed in the same
	// sessions.
	Access Access
	// MaxBlockLength is the maxNumberOfBlockLength the server reports: the
	// longest TransferData request it takes, SID and counter included.
	// Zero means DefaultMaxBlock.
	MaxBlockLength int
}

// Download is the bookkeeping of RequestDownload (0x34), TransferData
// (0x36) and RequestTransferExit (0x37) in a Server: the request's format,
// the block sequence counter (1 first, wrapping from 0xFF to 0x00), a
// repeated block (the client's retransmission after a lost response: the
// same counter again is answered positively and not written twice), the
// byte count against memorySize, and the NRCs of ISO 14229-1 for each
// (0x13, 0x22, 0x24, 0x31, 0x70, 0x71, 0x72, 0x73). The Memory does the
// writing.
type Download struct {
	mem  Memory
	opts DownloadOptions

	mu       sync.Mutex
	active   bool
	req      DownloadRequest
	written  uint64
	counter  byte // the last block accepted
	accepted bool // whether a block was accepted since RequestDownload
}

// NewDownload returns the download services for mem and registers them
// on s. A session change ends a download in progress.
func NewDownload(s *Server, mem Memory, opts DownloadOptions) *Download {
	if opts.Access.Sessions == nil {
		opts.Access.Sessions = []Session{ProgrammingSession}
	}
	if opts.MaxBlockLength <= 0 {
		opts.MaxBlockLength = DefaultMaxBlock
	}
	opts.MaxBlockLength = max(opts.MaxBlockLength, 3)
	d := &Download{mem: mem, opts: opts}
	sessions := Access{Sessions: opts.Access.Sessions}
	s.Register(RequestDownload, Service{Access: opts.Access, MinLen: 3, Handler: d.requestDownload})
	s.Register(TransferData, Service{Access: sessions, MinLen: 2, Handler: d.transferData})
	s.Register(RequestTransferExit, Service{Access: sessions, MinLen: 1, Handler: d.transferExit})
	s.OnSessionChange(func(_, _ Session) { d.Abort() })
	return d
}

// Active reports whether a download is in progress, and how many of its
// bytes were written.
func (d *Download) Active() (active bool, written uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.active, d.written
}

// Abort ends a download in progress, telling the Memory.
func (d *Download) Abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.abortLocked()
}

func (d *Download) abortLocked() {
	if d.active {
		d.active = false
		d.mem.AbortDownload()
	}
}

// asNRC returns err if it is an NRC, else def.
func asNRC(err error, def NRC) error {
	var n NRC
	if errors.As(err, &n) {
		return n
	}
	return def
}

func (d *Download) requestDownload(_ context.Context, r *Request) ([]byte, error) {
	req, err := parseRequestDownload(r.Message)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return nil, ConditionsNotCorrect
	}
	if req.Size == 0 {
		return nil, RequestOutOfRange
	}
	if err := d.mem.StartDownload(req); err != nil {
		return nil, asNRC(err, UploadDownloadNotAccepted)
	}
	d.active, d.req, d.written, d.counter, d.accepted = true, req, 0, 0, false
	return encodeDownloadResponse(uint64(d.opts.MaxBlockLength))[1:], nil
}

func (d *Download) transferData(_ context.Context, r *Request) ([]byte, error) {
	counter, data := r.Message[1], r.Message[2:]
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return nil, RequestSequenceError
	}
	if len(r.Message) > d.opts.MaxBlockLength || len(data) == 0 {
		return nil, IncorrectMessageLengthOrInvalidFormat
	}
	if d.accepted && counter == d.counter {
		return []byte{counter}, nil // a repeat: written already
	}
	if counter != d.counter+1 {
		return nil, WrongBlockSequenceCounter
	}
	if uint64(len(data)) > d.req.Size-d.written {
		return nil, TransferDataSuspended
	}
	if err := d.mem.Write(d.req.Address+d.written, slices.Clone(data)); err != nil {
		return nil, asNRC(err, GeneralProgrammingFailure)
	}
	d.written += uint64(len(data))
	d.counter, d.accepted = counter, true
	return []byte{counter}, nil
}

func (d *Download) transferExit(context.Context, *Request) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active || d.written < d.req.Size {
		return nil, RequestSequenceError
	}
	d.active = false
	resp, err := d.mem.FinishDownload()
	if err != nil {
		return nil, asNRC(err, GeneralProgrammingFailure)
	}
	return resp, nil
}
