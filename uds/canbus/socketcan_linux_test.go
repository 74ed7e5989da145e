//go:build linux

package canbus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mustParse(t testing.TB, s string) Frame {
	t.Helper()
	f, err := ParseFrame(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSocketCANCodecRoundTrips(t *testing.T) {
	for _, s := range []string{
		"123#DEADBEEF",
		"000#",
		"7FF#0102030405060708",
		"00000000#",
		"1FFFFFFF#11223344",
		"123#R",
		"12345678#R8",
		"123##0",
		"123##1DEADBEEF",
		"123##2" + strings.Repeat("AB", 12),
		"1ABCDEF0##3" + strings.Repeat("5A", 64),
	} {
		t.Run(s, func(t *testing.T) {
			want := mustParse(t, s)
			var buf [canfdMTU]byte
			b := encodeSocketCAN(&want, &buf, binary.NativeEndian)
			if wantLen := map[bool]int{false: canMTU, true: canfdMTU}[want.FD]; len(b) != wantLen {
				t.Fatalf("encoded %d bytes, want %d", len(b), wantLen)
			}
			got, err := decodeSocketCAN(b, binary.NativeEndian)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("round trip: got %v, want %v", got, want)
			}
		})
	}
}

// The layout is the kernel's, so it is pinned byte by byte here; the vcan
// tests check it against the kernel itself.
func TestSocketCANEncodingLayout(t *testing.T) {
	le32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	tests := []struct {
		frame string
		want  []byte // the first bytes of the encoding
	}{
		{"123#AABB", append(le32(0x123), 2, 0, 0, 0, 0xAA, 0xBB, 0, 0, 0, 0, 0, 0)},
		{"12345678#R3", append(le32(0x12345678|unix.CAN_EFF_FLAG|unix.CAN_RTR_FLAG), 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"123##1CC", append(le32(0x123), 1, canfdFDF|canfdBRS, 0, 0, 0xCC)},
		{"123##2CC", append(le32(0x123), 1, canfdFDF|canfdESI, 0, 0, 0xCC)},
	}
	for _, tt := range tests {
		f := mustParse(t, tt.frame)
		var buf [canfdMTU]byte
		got := encodeSocketCAN(&f, &buf, binary.NativeEndian)
		if !bytes.HasPrefix(got, tt.want) {
			t.Errorf("%s: encoded % X, want prefix % X", tt.frame, got, tt.want)
		}
	}
}

func TestDecodeSocketCAN(t *testing.T) {
	raw := func(n int, id uint32, length, flags byte, data ...byte) []byte {
		b := make([]byte, n)
		binary.NativeEndian.PutUint32(b, id)
		b[4], b[5] = length, flags
		copy(b[8:], data)
		return b
	}
	tests := []struct {
		name    string
		in      []byte
		want    string // candump notation, or "" with wantErr
		wantErr error
	}{
		{"classic frame", raw(canMTU, 0x7E8, 3, 0, 1, 2, 3, 4), "7E8#010203", nil},
		{"bytes past the length are not data", raw(canMTU, 0x100, 0, 0, 9), "100#", nil},
		{"extended id", raw(canMTU, 0x18DAF110|unix.CAN_EFF_FLAG, 1, 0, 0xFF), "18DAF110#FF", nil},
		{"remote frame keeps its length, not its data", raw(canMTU, 0x123|unix.CAN_RTR_FLAG, 4, 0, 1, 2), "123#R4", nil},
		{"FD frame with BRS", raw(canfdMTU, 0x123, 2, canfdFDF|canfdBRS, 0xAA, 0xBB), "123##1AABB", nil},
		{"FD length between valid ones is padded up", raw(canfdMTU, 0x123, 13, canfdFDF, 1), "123##0" + "01" + strings.Repeat("00", 15), nil},
		{"FD frame ignores the RTR bit", raw(canfdMTU, 0x123|unix.CAN_RTR_FLAG, 1, 0, 7), "123##007", nil},
		{"classic length 9", raw(canMTU, 0x123, 9, 0), "", ErrMalformed},
		{"FD length 65", raw(canfdMTU, 0x123, 65, 0), "", ErrMalformed},
		{"FD error frame", raw(canfdMTU, unix.CAN_ERR_FLAG|4, 8, 0), "", ErrMalformed},
		{"neither size", make([]byte, 20), "", ErrMalformed},
		{"empty", nil, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSocketCAN(tt.in, binary.NativeEndian)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := mustParse(t, tt.want); got != want {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
	t.Run("error frame", func(t *testing.T) {
		got, err := decodeSocketCAN(raw(canMTU, unix.CAN_ERR_FLAG|0x04, 8, 0, 0, 0x10), binary.NativeEndian)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Error || got.ID != 0x04 || got.Len != 8 || got.Data[1] != 0x10 {
			t.Fatalf("got %+v, want error class 0x04 with controller status 0x10", got)
		}
	})
}

// FuzzDecodeSocketCAN feeds arbitrary reads to the decoder: it must not
// panic, whatever it accepts must be valid, and a data frame must survive
// encoding and decoding again unchanged.
func FuzzDecodeSocketCAN(f *testing.F) {
	var buf [canfdMTU]byte
	for _, s := range []string{"123#DEADBEEF", "12345678#R2", "123##1" + strings.Repeat("AA", 64)} {
		fr := mustParse(f, s)
		f.Add(bytes.Clone(encodeSocketCAN(&fr, &buf, binary.NativeEndian)))
	}
	f.Add(make([]byte, canMTU))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeSocketCAN(b, binary.NativeEndian)
		if err != nil {
			return
		}
		if err := fr.Validate(); err != nil {
			t.Fatalf("decoded an invalid frame %v: %v", fr, err)
		}
		if fr.Error {
			return
		}
		var buf [canfdMTU]byte
		again, err := decodeSocketCAN(encodeSocketCAN(&fr, &buf, binary.NativeEndian), binary.NativeEndian)
		if err != nil || again != fr {
			t.Fatalf("re-encoding %v gave %v, %v", fr, again, err)
		}
	})
}

// Where the kernel has no CAN (the development machines), opening must say
// so, not that the interface is missing. Inside the vcan VM this is
// skipped; TestVcan covers the interface errors there.
func TestOpenSocketCANWithoutAFCAN(t *testing.T) {
	fd, err := unix.Socket(unix.AF_CAN, unix.SOCK_RAW, unix.CAN_RAW)
	if err == nil {
		unix.Close(fd)
		t.Skip("this kernel has AF_CAN")
	}
	_, err = Open("socketcan://vcan0", Config{})
	if !errors.Is(err, ErrNoAFCAN) || !strings.Contains(err.Error(), "the kernel has no AF_CAN: ") {
		t.Fatalf("Open without AF_CAN: %v; want ErrNoAFCAN saying \"the kernel has no AF_CAN: ...\"", err)
	}
}
