package delta

// heatshrinkEncode compresses data with heatshrink (an LZSS bit stream:
// tag 1 and a literal byte, or tag 0, window bits of distance-1 and
// lookahead bits of length-1, most significant bit first, zero-padded to a
// byte), preceded by detools' header byte carrying both sizes.
//
// The parse is optimal for heatshrink's fixed costs: a literal costs 9
// bits and a back-reference 1+window+lookahead bits whatever its distance
// and length, so the cheapest encoding from every position is found by
// dynamic programming from the end. heatshrink's own encoder is greedy.
func heatshrinkEncode(data []byte, p HeatshrinkParams) ([]byte, error) {
	// heatshrinkMaxChain bounds the earlier positions tried for a match:
	// it covers every position of a window up to 2^10 bytes, so the parse
	// stays optimal there, and keeps larger windows from costing a walk of
	// the whole window at every byte.
	const heatshrinkMaxChain = 1 << 10
	param, err := p.Byte()
	if err != nil {
		return nil, err
	}
	window, lookahead := int(p.WindowBits), int(p.LookaheadBits)
	n := len(data)
	maxDist, maxLen := 1<<window, 1<<lookahead
	const literalBits = 9
	refBits := 1 + window + lookahead

	// Longest back-reference at each position and its distance. Candidates
	// come from chains of earlier positions with the same two bytes.
	refLen := make([]int32, n)
	refDist := make([]int32, n)
	var head [1 << 16]int32
	for i := range head {
		head[i] = -1
	}
	prev := make([]int32, n)
	for i := 0; i+1 < n; i++ {
		h := int(data[i])<<8 | int(data[i+1])
		limit := min(maxLen, n-i)
		for j, depth := head[h], 0; j >= 0 && i-int(j) <= maxDist && depth < heatshrinkMaxChain; j, depth = prev[j], depth+1 {
			if l := int(refLen[i]); data[int(j)+l] != data[i+l] {
				continue // cannot be longer than the best so far
			}
			l := commonPrefix(data[j:int(j)+limit], data[i:i+limit])
			if l > int(refLen[i]) {
				refLen[i], refDist[i] = int32(l), int32(i-int(j))
				if l == limit {
					break
				}
			}
		}
		prev[i] = head[h]
		head[h] = int32(i)
	}

	// cost[i] is the fewest bits that encode data[i:]; useRef[i] says
	// whether that starts with a back-reference, and of what length.
	cost := make([]int64, n+1)
	useRef := make([]int32, n)
	for i := n - 1; i >= 0; i-- {
		cost[i] = literalBits + cost[i+1]
		for l := 2; l <= int(refLen[i]); l++ {
			if c := int64(refBits) + cost[i+l]; c < cost[i] {
				cost[i], useRef[i] = c, int32(l)
			}
		}
	}

	out := make([]byte, 1, 1+(cost[0]+7)/8)
	out[0] = param
	var bw bitWriter
	bw.out = out
	for i := 0; i < n; {
		if l := int(useRef[i]); l > 0 {
			bw.write(0, 1)
			bw.write(uint32(refDist[i]-1), window)
			bw.write(uint32(l-1), lookahead)
			i += l
			continue
		}
		bw.write(1, 1)
		bw.write(uint32(data[i]), 8)
		i++
	}
	return bw.flush(), nil
}

// bitWriter appends bits to a byte slice, most significant first.
type bitWriter struct {
	out   []byte
	acc   uint32
	nbits int
}

func (w *bitWriter) write(v uint32, bits int) {
	for bits > 0 {
		take := min(bits, 8-w.nbits)
		bits -= take
		w.acc = w.acc<<take | (v>>bits)&(1<<take-1)
		w.nbits += take
		if w.nbits == 8 {
			w.out = append(w.out, byte(w.acc))
			w.acc, w.nbits = 0, 0
		}
	}
}

// flush pads the last byte with zeros and returns the bytes written.
func (w *bitWriter) flush() []byte {
	if w.nbits > 0 {
		w.out = append(w.out, byte(w.acc<<(8-w.nbits)))
		w.acc, w.nbits = 0, 0
	}
	return w.out
}
