// Package transcript keeps the UDS transcript of a pod's flash, which
// `kubectl logs` shows: one file per flash, under a directory the provider
// chooses, so that it outlives the provider process.
//
// A Writer appends one line per record, each starting with its time in
// RFC 3339 with nanoseconds:
//
//	2026-11-21T14:03:07.123456789Z -- transfer 4096/65536 bytes (6%), 41.2 KiB/s, ETA 2s
//	2026-11-21T14:03:07.130001Z -> TransferData 36 02 5A 17 ... (4093 bytes)
//	2026-11-21T14:03:07.154Z <- TransferData 76 02 (+24ms)
//	2026-11-21T14:03:09.2Z <- RoutineControl requestOutOfRange 7F 31 31 (+1.1ms)
//
// UDS messages (flash.TranscriptEntry) are "->" for sent and "<-" for
// received, with the service, the NRC's name for a negative response, and
// the bytes in hex, long messages cut after their first bytes; the
// provider's own lines (phases, progress, outcome) start with "--". Close
// appends an end marker, so a reader knows the flash is over even when
// another process wrote the file.
//
// Open reads a transcript with the semantics of the kubelet's log
// endpoint: the last Tail lines, those since SinceTime, at most LimitBytes,
// with or without the timestamps, and with Follow the lines still to come
// until the writer closes the transcript. A follower in the writer's
// process is woken by each line; one reading a file that another process
// writes polls it (PollInterval). FromLogOpts translates virtual-kubelet's
// api.ContainerLogOpts.
//
// # What it must never do
//
// Nothing in a transcript file may make the reader panic or hang: a
// damaged or foreign file reads as lines of text. A record never spans two
// lines, whatever the text the provider gives, and no transcript line is
// mistaken for the end marker. It never blocks the flash it records for
// longer than one write to a local file, and it never spins: a follower
// waits for a line, its context, or the next poll.
package transcript
