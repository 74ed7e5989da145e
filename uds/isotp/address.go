package isotp

import (
	"fmt"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// Mode is an ISO 15765-2 addressing format: how the network address
// (source, target, extension) maps onto CAN identifiers and data bytes.
type Mode uint8

// The addressing formats.
const (
	// Normal: the CAN identifiers are the addresses (TxID, RxID; 11 or 29
	// bit). All data bytes carry protocol data.
	Normal Mode = iota
	// NormalFixed: 29-bit identifiers built from the addresses (SAE J1939
	// style): 0x18DA<Target><Source> physical, 0x18DB<Target><Source>
	// functional. We receive on 0x18DA<Source><Target>.
	NormalFixed
	// Extended: TxID and RxID as in Normal, and the first data byte of
	// every frame is the target address: Target in the frames we send,
	// Source in the frames we accept.
	Extended
	// Mixed: the first data byte of every frame is AddressExtension, in
	// both directions. With 11-bit identifiers TxID and RxID are given; with
	// Extended29 the identifiers are built like NormalFixed's from 0x18CE
	// (physical) and 0x18CD (functional).
	Mixed
)

var modeNames = [...]string{Normal: "normal", NormalFixed: "normal-fixed", Extended: "extended", Mixed: "mixed"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Address says where a Conn sends and what it receives.
type Address struct {
	Mode Mode
	// TxID and RxID are the CAN identifiers we send and receive on, for
	// Normal, Extended and 11-bit Mixed addressing. NormalFixed and 29-bit
	// Mixed build them from Source and Target and ignore these.
	TxID, RxID uint32
	// Extended29 says TxID and RxID are 29-bit identifiers; with Mixed it
	// selects 29-bit mixed addressing (0x18CE/0x18CD). NormalFixed is always
	// 29-bit.
	Extended29 bool
	// Source is our network address (N_SA) and Target the peer's (N_TA),
	// used by NormalFixed, Extended and 29-bit Mixed.
	Source, Target byte
	// AddressExtension is the first data byte of every frame with Mixed
	// addressing (N_AE).
	AddressExtension byte
	// Functional sends to a functional (one-to-many) target: the 0x18DB or
	// 0x18CD identifiers in NormalFixed and 29-bit Mixed, TxID as given in
	// the other modes. ISO 15765-2 allows only single frames on functional
	// addresses, so Send rejects larger messages with ErrFunctional and
	// first frames received are ignored: take segmented responses on a
	// physically addressed Conn.
	Functional bool
}

// link is an Address resolved to what goes on the wire.
type link struct {
	txID, rxID uint32
	extended   bool // 29-bit identifiers
	prefixLen  int  // 1 with an address byte before the N_PCI, else 0
	txPrefix   byte // the address byte of the frames we send
	rxPrefix   byte // the address byte of the frames we accept
	functional bool
}

// Validate reports whether the address is complete and consistent.
func (a Address) Validate() error {
	_, err := a.resolve()
	return err
}

func (a Address) resolve() (link, error) {
	l := link{txID: a.TxID, rxID: a.RxID, extended: a.Extended29, functional: a.Functional}
	fixed := func(physical, functional uint32) {
		pre := physical
		if a.Functional {
			pre = functional
		}
		l.txID = pre<<16 | uint32(a.Target)<<8 | uint32(a.Source)
		l.rxID = physical<<16 | uint32(a.Source)<<8 | uint32(a.Target)
		l.extended = true
	}
	switch a.Mode {
	case Normal:
	case NormalFixed:
		fixed(0x18DA, 0x18DB)
	case Extended:
		l.prefixLen, l.txPrefix, l.rxPrefix = 1, a.Target, a.Source
	case Mixed:
		l.prefixLen, l.txPrefix, l.rxPrefix = 1, a.AddressExtension, a.AddressExtension
		if a.Extended29 {
			fixed(0x18CE, 0x18CD)
		}
	default:
		return l, newError(ErrInvalid, fmt.Sprintf("addressing mode %d: want Normal, NormalFixed, Extended or Mixed", a.Mode))
	}
	max := uint32(canbus.MaxStdID)
	if l.extended {
		max = canbus.MaxExtID
	}
	if l.txID > max || l.rxID > max {
		bits := "11"
		if l.extended {
			bits = "29"
		}
		return l, newError(ErrInvalid, fmt.Sprintf("identifiers tx %#x rx %#x: a %s-bit identifier is at most %#x (set Extended29 for 29-bit)", l.txID, l.rxID, bits, max))
	}
	if l.txID == l.rxID && l.txPrefix == l.rxPrefix {
		return l, newError(ErrInvalid, fmt.Sprintf("%v addressing sends and receives on the same identifier %#x: we would receive our own frames; give the peer's address", a.Mode, l.txID))
	}
	return l, nil
}

func (a Address) String() string {
	l, err := a.resolve()
	if err != nil {
		return fmt.Sprintf("invalid %v address", a.Mode)
	}
	s := fmt.Sprintf("%v tx %#x rx %#x", a.Mode, l.txID, l.rxID)
	if l.prefixLen > 0 {
		s += fmt.Sprintf(" (address bytes tx %#02x rx %#02x)", l.txPrefix, l.rxPrefix)
	}
	if a.Functional {
		s += " functional"
	}
	return s
}
