// Package isotp is the ISO-TP transport (ISO 15765-2:2016) over CAN and
// CAN FD: it carries messages of 1 byte to 4 GiB, such as UDS requests and
// responses, as sequences of CAN frames between two network addresses.
//
// A Conn, made by Dial on a canbus.Bus, sends and receives whole messages
// to and from one peer, in both directions at once:
//
//	bus, _ := canbus.Open("socketcan://vcan0", canbus.Config{})
//	c, err := isotp.Dial(bus, isotp.Address{TxID: 0x7E0, RxID: 0x7E8}, isotp.Options{})
//	err = c.Send(ctx, []byte{0x22, 0xF1, 0x90})
//	resp, err := c.Recv(ctx)
//
// It implements single, first, consecutive and flow control frames; block
// size and STmin in both directions (STmin 0xF1-0xF9 as 100-900 µs, reserved
// values as 127 ms); FC WAIT up to WFTmax; FC OVFLW; the N_As, N_Ar, N_Bs
// and N_Cr timeouts; padding; the normal, normal-fixed, extended and mixed
// addressing formats with 11- and 29-bit identifiers; physical and
// functional targets; CAN FD with TX_DL 8 to 64 and the single frame length
// escape; first frames with the 32-bit length escape for messages over
// 4095 bytes; and a receiver that learns the sender's TX_DL from each first
// frame (RX_DL) and holds its consecutive frames to it. Frame for frame it
// follows what the Linux kernel's CAN_ISOTP sockets put on the bus, so the
// two interoperate.
//
// # Design
//
// The protocol lives in two state machines without I/O and without a clock,
// in the manner of etcd's raft: the sender (sender.go) and the receiver
// (receiver.go) take inputs (a received frame, "the bus took the frame",
// "your deadline has passed") with the current time as an argument, and
// answer with the frames to transmit, the deadline to watch, the completed
// message or the error. pdu.go encodes and decodes the N_PCI; address.go
// maps addresses to identifiers and address bytes. Tests drive the state
// machines step by step, frame by frame.
//
// conn.go is the I/O edge. A Conn has one goroutine that reads the bus
// (subscribed to the receive identifier only), drives the receiver, sends
// its flow controls and hands flow controls for us to the Send in
// progress; Send drives the sender in the caller's goroutine. With STmin 0
// the sender hands the next frame to the bus as soon as the bus has queued
// the previous one, so the transmit queue stays full; with STmin above 0 it
// waits for the bus to loop each frame back (its transmission
// confirmation, read from a second subscription, to the transmit
// identifier, made the first time an STmin needs it), and the separation
// time counts from there. Every wait
// uses the standard time package, so testing/synctest runs Conns and the
// timed mem bus in virtual time.
//
// # Errors
//
// Errors have the type *Error; its Kind tells the class, and each Kind is
// an error value itself, so errors.Is(err, ErrTimeout) works. Send returns
// the errors that end a transmission; Recv returns the errors that lose a
// message being received (N_Cr timeout, wrong sequence number, a reception
// interrupted by a new message, a first frame too large for MaxRecvLen).
// Frames that are ignored without losing anything (unexpected or malformed
// ones) go to Options.OnError.
//
// # What it must never do
//
// Nothing received from the bus may make it panic, block its sender or
// allocate more than the message a first frame announces (itself at most
// Options.MaxRecvLen): a message's buffer grows with the data that
// actually arrives. It never retains a message passed to Send, never sends
// on any identifier but its own, and never closes the bus it was given.
package isotp
