package canbus

import (
	"errors"
	"testing"
)

func TestFrameValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		want error
	}{
		{"zero value is a valid classic frame", Frame{}, nil},
		{"largest 11-bit id", Frame{ID: MaxStdID, Len: 8}, nil},
		{"11-bit id too large", Frame{ID: MaxStdID + 1}, ErrIDRange},
		{"largest 29-bit id", Frame{ID: MaxExtID, Extended: true}, nil},
		{"29-bit id too large", Frame{ID: MaxExtID + 1, Extended: true}, ErrIDRange},
		{"classic length 9", Frame{Len: 9}, ErrLength},
		{"remote frame", Frame{ID: 0x123, RTR: true, Len: 8}, nil},
		{"FD length 12", Frame{FD: true, Len: 12}, nil},
		{"FD length 64 with BRS and ESI", Frame{FD: true, BRS: true, ESI: true, Len: 64}, nil},
		{"FD length 9 is not a DLC length", Frame{FD: true, Len: 9}, ErrLength},
		{"FD length 65", Frame{FD: true, Len: 65}, ErrLength},
		{"FD remote frame", Frame{FD: true, RTR: true}, ErrFlags},
		{"BRS on classic", Frame{BRS: true}, ErrFlags},
		{"ESI on classic", Frame{ESI: true}, ErrFlags},
		{"error frame", Frame{Error: true, ID: 0x4, Len: 8}, nil},
		{"error frame with FD", Frame{Error: true, FD: true}, ErrFlags},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFDLengths(t *testing.T) {
	valid := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true,
		12: true, 16: true, 20: true, 24: true, 32: true, 48: true, 64: true}
	for n := -1; n <= 65; n++ {
		if got := ValidFDLen(n); got != valid[n] {
			t.Errorf("ValidFDLen(%d) = %v, want %v", n, got, valid[n])
		}
	}
	for n := 0; n <= 64; n++ {
		r := RoundFDLen(n)
		if r < n || !ValidFDLen(r) {
			t.Errorf("RoundFDLen(%d) = %d, want the smallest valid length >= %d", n, r, n)
		}
		for m := n; m < r; m++ {
			if ValidFDLen(m) {
				t.Errorf("RoundFDLen(%d) = %d, but %d is valid and smaller", n, r, m)
			}
		}
		if got := DLCToLen(LenToDLC(r), true); got != r {
			t.Errorf("DLCToLen(LenToDLC(%d)) = %d", r, got)
		}
	}
	if got := DLCToLen(15, false); got != 8 {
		t.Errorf("classic DLC 15 carries %d bytes, want 8", got)
	}
}

func TestFrameStringRoundTrip(t *testing.T) {
	tests := []string{
		"123#DEADBEEF",
		"7E0#",
		"12345678#0011223344556677",
		"123#R",
		"123#R8",
		"7E8##1000102030405060708090A0B",
		"18DAF110##3" + "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
		"20000004#0000080000000000",
	}
	for _, s := range tests {
		f, err := ParseFrame(s)
		if err != nil {
			t.Fatalf("ParseFrame(%q): %v", s, err)
		}
		if got := f.String(); got != s {
			t.Errorf("ParseFrame(%q).String() = %q", s, got)
		}
	}
}

func TestParseFrameRejects(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", ErrMalformed},
		{"123", ErrMalformed},
		{"12#00", ErrMalformed},
		{"XYZ#00", ErrMalformed},
		{"123#0", ErrMalformed},
		{"123#GG", ErrMalformed},
		{"123#001122334455667788", ErrLength},
		{"800#00", ErrIDRange},
		{"123##", ErrMalformed},
		{"123##1001122334455667788", ErrLength},
		{"123#R9", ErrLength},
		{"123#R12", ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := ParseFrame(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("ParseFrame(%q) error = %v, want %v", tt.in, err, tt.want)
		}
	}
}

// FuzzParseFrame feeds arbitrary text to the candump notation decoder: it
// must never panic, and whatever it accepts must be valid and print back to
// a string that parses to the same frame.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{"123#DEADBEEF", "12345678#00", "123#R2", "123##1AABB", "20000004#00", "1.2#..", "123#11.22"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := ParseFrame(s)
		if err != nil {
			return
		}
		if err := fr.Validate(); err != nil {
			t.Fatalf("ParseFrame(%q) accepted an invalid frame: %v", s, err)
		}
		again, err := ParseFrame(fr.String())
		if err != nil || again != fr {
			t.Fatalf("round trip of %q via %q: %+v, %v", s, fr.String(), again, err)
		}
	})
}
