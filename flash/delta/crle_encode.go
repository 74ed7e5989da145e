package delta

import "encoding/binary"

// crleEncode compresses data with detools' conditional run-length
// encoding: a sequence of segments, each a kind byte, then for kind 0
// (scattered) an unsigned LEB128 length and that many bytes, or for kind 1
// (repeated) an unsigned LEB128 count and the one byte repeated. Empty data
// is one empty scattered segment.
func crleEncode(data []byte) []byte {
	out := make([]byte, 0, len(data)+len(data)/64+8)
	if len(data) == 0 {
		return append(out, crleScattered, 0)
	}
	start := 0 // first byte not yet written
	for i := 0; i < len(data); {
		run := 1
		for i+run < len(data) && data[i+run] == data[i] {
			run++
		}
		if run < crleMinRepeatLen {
			i += run
			continue
		}
		if start < i {
			out = append(out, crleScattered)
			out = binary.AppendUvarint(out, uint64(i-start))
			out = append(out, data[start:i]...)
		}
		out = append(out, crleRepeated)
		out = binary.AppendUvarint(out, uint64(run))
		out = append(out, data[i])
		i += run
		start = i
	}
	if start < len(data) {
		out = append(out, crleScattered)
		out = binary.AppendUvarint(out, uint64(len(data)-start))
		out = append(out, data[start:]...)
	}
	return out
}
