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
// Of the old positions sharing that longest prefix it returns the one
// nearest to near (among the closest few in suffix order), so that a match
// continues the previous one where it can: that keeps the diff bytes
// aligned and the patch's adjustments small.
func (m *matcher) longest(pattern []byte, near int) (pos, n int) {
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
	first := -1
	for _, i := range [2]int{lo - 1, lo} {
		if i < 0 || i >= len(sa) {
			continue
		}
		if l := commonPrefix(m.old[sa[i]:], pattern); l > n {
			pos, n, first = int(sa[i]), l, i
		}
	}
	if n == 0 || n > nearMaxLen {
		return pos, n
	}
	// The suffixes sharing n bytes with pattern are contiguous around it.
	dist := func(p int) int {
		if p < near {
			return near - p
		}
		return p - near
	}
	prefix := pattern[:n]
	for i, steps := first-1, 0; i >= 0 && steps < nearSteps && bytes.HasPrefix(m.old[sa[i]:], prefix); i, steps = i-1, steps+1 {
		if p := int(sa[i]); dist(p) < dist(pos) || dist(p) == dist(pos) && p < pos {
			pos = p
		}
	}
	for i, steps := first+1, 0; i < len(sa) && steps < nearSteps && bytes.HasPrefix(m.old[sa[i]:], prefix); i, steps = i+1, steps+1 {
		if p := int(sa[i]); dist(p) < dist(pos) || dist(p) == dist(pos) && p < pos {
			pos = p
		}
	}
	return pos, n
}

// nearSteps bounds the equally long matches longest compares, and
// nearMaxLen the length up to which it looks for them: two old positions
// sharing a longer prefix are rare, and comparing it would cost more than
// the choice gains.
const (
	nearSteps  = 64
	nearMaxLen = 4096
)

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

// Chunk selection settings, tuned on the MicroPython pair (see
// docs/benchmarks-delta-draft.md): a new exact match is taken when it is
// longer than the approximate match at the current offset by more than
// matchSlack bytes (bsdiff: 8) plus a byte for every byte the jump adds to
// the adjustment, and a match is extended approximately while more than
// 1/extendRatio of the bytes agree (bsdiff: half).
const (
	matchSlack  = 5
	extendRatio = 5
)

// selectChunks splits new into chunks the way bsdiff does (Colin Percival,
// "Naive differences of executable code", 2003), retuned: it scans new for
// exact matches in old that are longer than the approximate match at the
// current offset by more than matchSlack bytes (more for far jumps, whose
// adjustments cost more), then extends each match
// forwards and backwards approximately, so that pointer shifts and small
// edits stay in the diff, which compresses well, instead of the extra data.
// Of equally long matches it takes the one nearest the current offset.
//
// A Viterbi search over candidate offsets with a per-byte cost model was
// tried instead and gave patches no smaller (within 0.1%), so the simpler
// scan stays.
func selectChunks(m *matcher, new []byte) []chunk {
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
			pos, n = m.longest(new[scan:], scan+lastOffset)
			for ; scsc < scan+n; scsc++ {
				if agrees(scsc, lastOffset) {
					oldScore++
				}
			}
			// A far jump costs longer adjustments, there and back.
			jump := len(AppendSize(nil, int64(pos-scan-lastOffset))) - 1
			if (n == oldScore && n != 0) || n > oldScore+matchSlack+jump {
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
			if s*extendRatio-i > best*extendRatio-lenf {
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
				if s*extendRatio-i > best*extendRatio-lenb {
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
