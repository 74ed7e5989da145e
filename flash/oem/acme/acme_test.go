package acme

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestKeyIsStable pins the algorithm: a plugin and the ECUs it programs
// must agree on it byte for byte, across releases.
func TestKeyIsStable(t *testing.T) {
	k, err := Key(SecurityLevel, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(k); got != keyOf12345678 {
		t.Errorf("key %s, want %s", got, keyOf12345678)
	}
	other, _ := Key(SecurityLevel+2, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if bytes.Equal(k, other) {
		t.Error("the level does not change the key")
	}
	for _, seed := range [][]byte{nil, make([]byte, 4), make([]byte, 9)} {
		if _, err := Key(SecurityLevel, seed); err == nil {
			t.Errorf("a seed of %d bytes answered", len(seed))
		}
	}
}

func TestFingerprint(t *testing.T) {
	f := Fingerprint(0x4B42)
	if len(f) != FingerprintLength || f[0] != 0x4B || f[1] != 0x42 || string(f[2:13]) != "ecu-kubelet" || f[17] != 0 {
		t.Errorf("fingerprint % X", f)
	}
}

// keyOf12345678 is the key of seed 01..08 at level 0x11, worked out with
// Python's hmac module, not with this package.
const keyOf12345678 = "5c9b4081b1879730"
