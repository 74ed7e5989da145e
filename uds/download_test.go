package uds

import (
	"bytes"
	"context"
	"testing"
)

// programming returns a test server in the programming session with
// security level 1 unlocked.
func programming(t *testing.T) (*Server, *flash, func(req []byte, want string)) {
	t.Helper()
	s, fl := newTestServer(h("3657"))
	ctx := context.Background()
	do := func(req []byte, want string) {
		t.Helper()
		if got := s.Handle(ctx, req, false); !bytes.Equal(got, h(want)) {
			t.Fatalf("% X: answered % X, want %s", req[:min(len(req), 8)], got, want)
		}
	}
	do(h("10 02"), "50 02 0032 01F4")
	do(h("27 01"), "67 01 3657")
	do(h("27 02 C9A9"), "67 02")
	return s, fl, do
}

func block(counter byte, data []byte) []byte { return append([]byte{0x36, counter}, data...) }

// TestDownloadCounterWraps defends the block sequence counter: 1 first,
// then up to 0xFF and on from 0x00, over 300 blocks.
func TestDownloadCounterWraps(t *testing.T) {
	_, fl, do := programming(t)
	const n, size = 300, 127
	img := make([]byte, n*size)
	for i := range img {
		img[i] = byte(i * 7)
	}
	do(h("34 00 44 00602000 000094D4"), "74 20 0081")
	for i := range n {
		c := byte(i + 1)
		do(block(c, img[i*size:(i+1)*size]), "76 "+hexOf(string([]byte{c})))
	}
	do(h("37"), "77")
	if !bytes.Equal(fl.bytes(0x602000, len(img)), img) {
		t.Error("flash does not hold the image")
	}
}

// TestDownloadRepeatedBlock defends the answer to a retransmitted block:
// positive, with the data written once.
func TestDownloadRepeatedBlock(t *testing.T) {
	_, fl, do := programming(t)
	do(h("34 00 44 00602000 00000004"), "74 20 0081")
	do(block(1, h("AABB")), "76 01")
	do(block(1, h("AABB")), "76 01")
	do(block(2, h("CCDD")), "76 02")
	do(block(2, h("CCDD")), "76 02")
	do(h("37"), "77")
	if fl.writes != 2 {
		t.Errorf("%d writes, want 2", fl.writes)
	}
	if got := fl.bytes(0x602000, 4); !bytes.Equal(got, h("AABBCCDD")) {
		t.Errorf("flash holds % X", got)
	}
}

// TestDownloadNRCs defends the NRC of each way a download goes wrong.
func TestDownloadNRCs(t *testing.T) {
	t.Run("wrong counter", func(t *testing.T) {
		_, _, do := programming(t)
		do(h("34 00 44 00602000 00000010"), "74 20 0081")
		do(block(2, h("00")), "7F 36 73")
		do(block(0, h("00")), "7F 36 73") // no block accepted yet: 0 is no repeat
		do(block(1, h("00")), "76 01")
		do(block(3, h("00")), "7F 36 73")
	})
	t.Run("more data than announced", func(t *testing.T) {
		_, _, do := programming(t)
		do(h("34 00 44 00602000 00000002"), "74 20 0081")
		do(block(1, h("0011")), "76 01")
		do(block(2, h("22")), "7F 36 71")
	})
	t.Run("block longer than maxNumberOfBlockLength", func(t *testing.T) {
		_, _, do := programming(t)
		do(h("34 00 44 00602000 00001000"), "74 20 0081")
		do(block(1, make([]byte, 0x80)), "7F 36 13")
		do(block(1, nil), "7F 36 13")
		do(block(1, make([]byte, 0x7F)), "76 01")
	})
	t.Run("exit before all data", func(t *testing.T) {
		_, _, do := programming(t)
		do(h("34 00 44 00602000 00000002"), "74 20 0081")
		do(block(1, h("00")), "76 01")
		do(h("37"), "7F 37 24")
	})
	t.Run("second request while active", func(t *testing.T) {
		_, _, do := programming(t)
		do(h("34 00 44 00602000 00000002"), "74 20 0081")
		do(h("34 00 44 00602000 00000002"), "7F 34 22")
	})
	t.Run("write failure", func(t *testing.T) {
		_, fl, do := programming(t)
		do(h("34 00 44 00602000 00000002"), "74 20 0081")
		fl.fail = true
		do(block(1, h("00")), "7F 36 72")
		fl.fail = false
		do(block(1, h("00")), "76 01") // the counter did not advance
	})
	t.Run("unsupported data format", func(t *testing.T) {
		_, _, do := programming(t)
		do(h("34 22 44 00602000 00000002"), "7F 34 31")
	})
	t.Run("session change aborts", func(t *testing.T) {
		s, fl, do := programming(t)
		do(h("34 00 44 00602000 00000002"), "74 20 0081")
		do(h("10 03"), "50 03 0032 01F4")
		if fl.aborted != 1 {
			t.Errorf("memory told of %d aborts, want 1", fl.aborted)
		}
		s.Handle(context.Background(), h("10 02"), false)
		do(block(1, h("00")), "7F 36 24")
	})
	t.Run("not in default session", func(t *testing.T) {
		s, _ := newTestServer(nil)
		if got := s.Handle(context.Background(), h("36 01 00"), false); !bytes.Equal(got, h("7F 36 7F")) {
			t.Errorf("answered % X", got)
		}
	})
}
