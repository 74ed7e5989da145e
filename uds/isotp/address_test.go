package isotp

import "testing"

func TestAddressResolve(t *testing.T) {
	for _, tt := range []struct {
		name string
		addr Address
		want link
	}{
		{"normal 11-bit", Address{TxID: 0x7E0, RxID: 0x7E8},
			link{txID: 0x7E0, rxID: 0x7E8}},
		{"normal 29-bit", Address{TxID: 0x18DA10F1, RxID: 0x18DAF110, Extended29: true},
			link{txID: 0x18DA10F1, rxID: 0x18DAF110, extended: true}},
		{"normal fixed physical", Address{Mode: NormalFixed, Source: 0xF1, Target: 0x10, TxID: 0x123},
			link{txID: 0x18DA10F1, rxID: 0x18DAF110, extended: true}},
		{"normal fixed functional", Address{Mode: NormalFixed, Source: 0xF1, Target: 0x33, Functional: true},
			link{txID: 0x18DB33F1, rxID: 0x18DAF133, extended: true, functional: true}},
		{"extended", Address{Mode: Extended, TxID: 0x6F1, RxID: 0x610, Source: 0xF1, Target: 0x10},
			link{txID: 0x6F1, rxID: 0x610, prefixLen: 1, txPrefix: 0x10, rxPrefix: 0xF1}},
		{"mixed 11-bit", Address{Mode: Mixed, TxID: 0x700, RxID: 0x701, AddressExtension: 0x42},
			link{txID: 0x700, rxID: 0x701, prefixLen: 1, txPrefix: 0x42, rxPrefix: 0x42}},
		{"mixed 29-bit physical", Address{Mode: Mixed, Extended29: true, Source: 0xF1, Target: 0x10, AddressExtension: 0x42},
			link{txID: 0x18CE10F1, rxID: 0x18CEF110, extended: true, prefixLen: 1, txPrefix: 0x42, rxPrefix: 0x42}},
		{"mixed 29-bit functional", Address{Mode: Mixed, Extended29: true, Source: 0xF1, Target: 0x33, AddressExtension: 0x42, Functional: true},
			link{txID: 0x18CD33F1, rxID: 0x18CEF133, extended: true, prefixLen: 1, txPrefix: 0x42, rxPrefix: 0x42, functional: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustLink(t, tt.addr); got != tt.want {
				t.Fatalf("resolve = %+v, want %+v", got, tt.want)
			}
			if tt.addr.String() == "" {
				t.Fatal("empty String")
			}
		})
	}
}
