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
	return bsdiffChunksW(m, new, slack, 2, 1)
}

func bsdiffChunksW(m *matcher, new []byte, slack int, wa, wb int) []chunk {
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
			if s*wa-i*wb > best*wa-lenf*wb {
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
				if s*wa-i*wb > best*wa-lenb*wb {
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

// costModel prices the parts of a sequential patch, in 1/16 bit of
// compressed output, for the chunk selection.
type costModel struct {
	zero, nonzero, extra, chunk int64
	// minMatch is the shortest exact match that proposes its offset.
	minMatch int
	// idle drops an offset that has not agreed with new for this long.
	idle int
	// maxOffsets bounds the offsets followed at once.
	maxOffsets int
}

var defaultCosts = costModel{zero: 1, nonzero: 120, extra: 90, chunk: 800, minMatch: 12, idle: 256, maxOffsets: 48}

// pathNode is a segment of the selected parse: from start on, new is
// either diffed against old at offset off, or carried as extra data.
type pathNode struct {
	start int32
	off   int32
	prev  int32
	extra bool
}

// offsetState is an offset the selection follows: the cheapest parse of
// new up to the current position that ends diffing at that offset.
type offsetState struct {
	off       int
	cost      int64
	node      int32
	lastAgree int
}

// selectChunks splits new into chunks by finding the cheapest parse under
// the cost model with a Viterbi search: at every position of new each
// followed offset (proposed by exact matches from the suffix array) and
// the extra state carry the cost of the best parse ending there; moving
// into an offset costs a new chunk. Unlike bsdiff's greedy scan it keeps
// an offset through mismatches when that is cheaper than switching, and
// leaves it when a short excursion elsewhere would cost more than it saves.
func selectChunks(m *matcher, new []byte, cm costModel) []chunk {
	old := m.old
	if len(new) == 0 {
		return nil
	}
	nodes := []pathNode{}
	newNode := func(start, off int, prev int32, extra bool) int32 {
		nodes = append(nodes, pathNode{start: int32(start), off: int32(off), prev: prev, extra: extra})
		return int32(len(nodes) - 1)
	}
	const inf = int64(1) << 60
	var offs []offsetState
	// The extra state; at position 0 it starts the first chunk.
	extraCost, extraNode := inf, int32(-1)
	bestCost, bestNode := int64(0), int32(-1)
	bestOff := 0
	var next []offsetState
	for i := range new {
		if _, n := m.longest(new[i:]); n >= cm.minMatch {
			pos, _ := m.longest(new[i:])
			off := pos - i
			found := false
			for _, s := range offs {
				if s.off == off {
					found = true
					break
				}
			}
			if !found {
				offs = append(offs, offsetState{off: off, cost: inf, node: -1, lastAgree: i})
				if len(offs) > cm.maxOffsets {
					// Drop the offset idle longest.
					worst := 0
					for k, s := range offs {
						if s.lastAgree < offs[worst].lastAgree {
							worst = k
						}
					}
					offs = append(offs[:worst], offs[worst+1:]...)
				}
			}
		}
		// The cheapest diff state before i, for the extra state.
		diffCost, diffNode := inf, int32(-1)
		for _, s := range offs {
			if s.cost < diffCost {
				diffCost, diffNode = s.cost, s.node
			}
		}
		enter := bestCost + cm.chunk
		next = next[:0]
		for _, s := range offs {
			o := i + s.off
			if o < 0 || o >= len(old) || i-s.lastAgree > cm.idle {
				continue
			}
			if enter < s.cost {
				s.cost, s.node = enter, newNode(i, s.off, bestNode, false)
			}
			if old[o] == new[i] {
				s.cost += cm.zero
				s.lastAgree = i
			} else {
				s.cost += cm.nonzero
			}
			next = append(next, s)
		}
		offs, next = next, offs
		if diffCost < extraCost {
			extraCost, extraNode = diffCost, newNode(i, 0, diffNode, true)
		}
		if i == 0 {
			extraCost, extraNode = cm.chunk, newNode(0, 0, -1, true)
		}
		extraCost += cm.extra

		bestCost, bestNode = extraCost, extraNode
		for _, s := range offs {
			if s.cost < bestCost {
				bestCost, bestNode, bestOff = s.cost, s.node, s.off
			}
		}
		_ = bestOff
		if len(nodes) > 1<<20 && len(nodes) > 8*(len(offs)+1)*1024 {
			nodes = compactPath(nodes, offs, &extraNode, &bestNode)
		}
	}

	// Walk the path back and turn its segments into chunks.
	var segs []pathNode
	for n := bestNode; n >= 0; n = nodes[n].prev {
		segs = append(segs, nodes[n])
	}
	var chunks []chunk
	for k := len(segs) - 1; k >= 0; k-- {
		s := segs[k]
		end := len(new)
		if k > 0 {
			end = int(segs[k-1].start)
		}
		n := end - int(s.start)
		if s.extra {
			if len(chunks) == 0 || chunks[len(chunks)-1].extraLen > 0 {
				oldPos := 0
				if len(chunks) > 0 {
					c := chunks[len(chunks)-1]
					oldPos = c.oldPos + c.diffLen
				}
				chunks = append(chunks, chunk{oldPos: oldPos})
			}
			chunks[len(chunks)-1].extraLen += n
			continue
		}
		chunks = append(chunks, chunk{oldPos: int(s.start) + int(s.off), diffLen: n})
	}
	return chunks
}

// compactPath drops the path nodes no live state refers to and renumbers
// the rest, keeping the search's memory proportional to the live paths.
func compactPath(nodes []pathNode, offs []offsetState, refs ...*int32) []pathNode {
	keep := make([]bool, len(nodes))
	mark := func(n int32) {
		for ; n >= 0 && !keep[n]; n = nodes[n].prev {
			keep[n] = true
		}
	}
	for _, s := range offs {
		mark(s.node)
	}
	for _, r := range refs {
		mark(*r)
	}
	renum := make([]int32, len(nodes))
	out := nodes[:0]
	for i, n := range nodes {
		if !keep[i] {
			continue
		}
		renum[i] = int32(len(out))
		if n.prev >= 0 {
			n.prev = renum[n.prev]
		}
		out = append(out, n)
	}
	for k := range offs {
		if offs[k].node >= 0 {
			offs[k].node = renum[offs[k].node]
		}
	}
	for _, r := range refs {
		if *r >= 0 {
			*r = renum[*r]
		}
	}
	return out
}
