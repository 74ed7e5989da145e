package delta

import "bytes"

// A chunk is one step of a sequential patch: diffLen bytes of the new image
// made by adding diff bytes to the old image from oldPos on, then extraLen
// bytes of the new image carried literally. The applier's old position
// after a chunk is oldPos+diffLen; the patch's adjustment moves it to the
// next chunk's oldPos.
type chunk struct {
	oldPos  int
	diffLen int
	// extraLen bytes follow the diff in the new image.
	extraLen int
}

// matcher finds the longest exact matches of new data in the old image
// through the old image's suffix array.
type matcher struct {
	old []byte
	sa  []int32
}

func newMatcher(old []byte) *matcher {
	return &matcher{old: old, sa: suffixArray(old)}
}

// longest returns the old position and length of the longest prefix of
// pattern found in the old image; n is 0 when not even the first byte is.
// Of the suffixes sharing the longest prefix it returns one of the two
// nearest the pattern in suffix order, so the answer is deterministic.
func (m *matcher) longest(pattern []byte) (pos, n int) {
	sa := m.sa
	lo, hi := 0, len(sa)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		s := m.old[sa[mid]:]
		if len(s) > len(pattern) {
			s = s[:len(pattern)]
		}
		if bytes.Compare(s, pattern) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// The longest common prefix is with a neighbour of the insertion point.
	for _, i := range [2]int{lo - 1, lo} {
		if i < 0 || i >= len(sa) {
			continue
		}
		if l := commonPrefix(m.old[sa[i]:], pattern); l > n {
			pos, n = int(sa[i]), l
		}
	}
	return pos, n
}

// commonPrefix returns the length of the common prefix of a and b.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	// Compare eight bytes at a time while they agree.
	for i+8 <= n && string(a[i:i+8]) == string(b[i:i+8]) {
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// bsdiffChunks splits new into chunks the way bsdiff does (Colin Percival,
// "Naive differences of executable code", 2003): it scans new for exact
// matches in old that are longer than the approximate match at the current
// offset by more than slack bytes, then extends each match forwards and
// backwards approximately, as long as more than half the bytes agree, so
// that pointer shifts and small edits stay in the diff, which compresses
// well, instead of the extra data.
func bsdiffChunks(m *matcher, new []byte, slack int) []chunk {
	old := m.old
	var chunks []chunk
	var scan, n, pos, lastScan, lastPos, lastOffset int
	agrees := func(newPos, off int) bool {
		o := newPos + off
		return o >= 0 && o < len(old) && old[o] == new[newPos]
	}
	for scan < len(new) {
		oldScore := 0
		scan += n
		for scsc := scan; scan < len(new); scan++ {
			pos, n = m.longest(new[scan:])
			for ; scsc < scan+n; scsc++ {
				if agrees(scsc, lastOffset) {
					oldScore++
				}
			}
			if (n == oldScore && n != 0) || n > oldScore+slack {
				break
			}
			if agrees(scan, lastOffset) {
				oldScore--
			}
		}
		if n == oldScore && scan != len(new) {
			continue
		}

		// Extend the previous match forwards while it pays.
		lenf := 0
		for i, s, best := 0, 0, 0; lastScan+i < scan && lastPos+i < len(old); {
			if old[lastPos+i] == new[lastScan+i] {
				s++
			}
			i++
			if s*2-i > best*2-lenf {
				best, lenf = s, i
			}
		}
		// Extend the new match backwards while it pays.
		lenb := 0
		if scan < len(new) {
			for i, s, best := 1, 0, 0; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == new[scan-i] {
					s++
				}
				if s*2-i > best*2-lenb {
					best, lenb = s, i
				}
			}
		}
		// Where the two extensions overlap, split them where the forward
		// one agrees best relative to the backward one.
		if overlap := lastScan + lenf - (scan - lenb); overlap > 0 {
			s, best, lens := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if new[lastScan+lenf-overlap+i] == old[lastPos+lenf-overlap+i] {
					s++
				}
				if new[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > best {
					best, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		chunks = append(chunks, chunk{
			oldPos:   lastPos,
			diffLen:  lenf,
			extraLen: scan - lenb - (lastScan + lenf),
		})
		lastScan, lastPos, lastOffset = scan-lenb, pos-lenb, pos-scan
	}
	return chunks
}
