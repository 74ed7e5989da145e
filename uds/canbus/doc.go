// Package canbus carries CAN and CAN FD frames: the Frame value with its
// validation, the Bus interface every transport implements, and the
// transports themselves, chosen by URL (see Open): SocketCAN raw sockets,
// socketcand over TCP, and an in-process bus that models bit timing and
// arbitration. It also records any bus as pcap or candump log.
//
// Every transport delivers received frames through a Hub, so each
// subscription sees every frame its filters select and no reader can steal
// another's frames.
//
// canbus knows nothing of ISO-TP or UDS, and never blocks a sender on a slow
// reader: a full receive queue drops and counts, as a socket buffer would.
package canbus
