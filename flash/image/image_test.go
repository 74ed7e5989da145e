package image

import (
	"bytes"
	"errors"
	"testing"
)

func TestBuildParseRoundTrip(t *testing.T) {
	hdr := Header{Version: "1.2.3", HardwareID: "BRK-HW-01", ReleaseCounter: 7}
	payload := []byte("the application")
	img, err := Build(hdr, payload)
	if err != nil {
		t.Fatal(err)
	}
	// A slot holds the image and then erased flash.
	slot := append(bytes.Clone(img), bytes.Repeat([]byte{0xFF}, 100)...)
	got, body, err := Parse(slot)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != hdr.Version || got.HardwareID != hdr.HardwareID || got.ReleaseCounter != 7 || got.PayloadLen != uint32(len(payload)) {
		t.Errorf("Parse = %+v", got)
	}
	if !bytes.Equal(body, img) {
		t.Error("Parse did not cut the slot to the image")
	}
}

func TestParseRejects(t *testing.T) {
	img, _ := Build(Header{Version: "1.0", HardwareID: "HW"}, []byte("payload"))
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(img)) }
	tests := []struct {
		name  string
		in    []byte
		field string // "" for ErrNotImage
	}{
		{"empty", nil, ""},
		{"erased flash", bytes.Repeat([]byte{0xFF}, 200), ""},
		{"short header", img[:60], "header"},
		{"layout version", mod(func(b []byte) []byte { b[4] = 2; return b }), "layout version"},
		{"reserved", mod(func(b []byte) []byte { b[120] = 1; return b }), "reserved"},
		{"unprintable version", mod(func(b []byte) []byte { b[9] = 0x01; return b }), "version"},
		{"empty version", mod(func(b []byte) []byte { clear(b[8:40]); return b }), "version"},
		{"NUL inside hardware id", mod(func(b []byte) []byte { b[40] = 0; return b }), "hardware id"},
		{"truncated payload", img[:len(img)-1], "payload"},
		{"damaged payload", mod(func(b []byte) []byte { b[HeaderSize] ^= 1; return b }), "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse(tt.in)
			var fe *FormatError
			switch {
			case tt.field == "" && !errors.Is(err, ErrNotImage):
				t.Errorf("err = %v, want ErrNotImage", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Errorf("err = %v, want a FormatError of %s", err, tt.field)
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	for _, h := range []Header{
		{Version: ""},
		{Version: string(bytes.Repeat([]byte("x"), 33))},
		{Version: "1", HardwareID: "a\nb"},
	} {
		if _, err := Build(h, nil); err == nil {
			t.Errorf("Build(%+v) succeeded", h)
		}
	}
}

func FuzzParse(f *testing.F) {
	img, _ := Build(Header{Version: "1.0", HardwareID: "HW", ReleaseCounter: 3}, []byte("payload"))
	f.Add(img)
	f.Add(img[:HeaderSize])
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Build(h, body[HeaderSize:])
		if err != nil {
			t.Fatalf("a parsed image does not build: %v", err)
		}
		if !bytes.Equal(again, body) {
			t.Fatal("Build(Parse(b)) differs from b's image")
		}
	})
}
