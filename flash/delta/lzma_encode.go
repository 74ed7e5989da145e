package delta

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
)

// This is an LZMA encoder written for patch data. github.com/ulikunitz/xz's
// encoder parses greedily and does not look for repeated distances; on the
// MicroPython pair's patch data it gave 107,501 bytes where `xz
// --format=lzma -9e` gives 70,542, and took minutes with its binary-tree
// matcher. Patch data is mostly runs of zero diff bytes broken by a few
// changed ones, where the choice between a literal, a short repeat of the
// last distance and a new match decides the size, so this encoder prices
// every choice with the coder's current probabilities and finds the
// cheapest parse of each stretch by dynamic programming, as LZMA's
// reference encoder does, with matches found through a suffix array.

// LZMA model constants (see the LZMA specification in the LZMA SDK).
const (
	lzmaStates        = 12
	lzmaPosBitsMax    = 4
	lzmaMinMatch      = 2
	lzmaMaxMatch      = 273
	lzmaEndPosModel   = 14
	lzmaFullDistances = 128
	lzmaAlignBits     = 4
	lzmaProbInit      = 1024
	lzmaProbBits      = 11
	lzmaMoveBits      = 5
	lzmaTop           = 1 << 24
	lzmaMinDict       = 4096
)

// The literal context and position bits the encoder writes in its header.
// Measured on the MicroPython pair's patch data: lc=2 lp=0 pb=0 gives
// 68,536 bytes, lc=0 68,706 and the usual lc=3 pb=2 more; the diff bytes
// gain nothing from alignment and little from the previous byte.
const (
	lzmaLC = 2
	lzmaLP = 0
	lzmaPB = 0
)

// Parser settings: the longest stretch the parser optimises at once, and
// the match length it accepts without looking further.
const (
	lzmaBlock     = 4096
	lzmaNiceLen   = 273
	lzmaInfPrice  = math.MaxUint32 / 2
	lzmaPriceBits = 4 // prices are in 1/16 bit
)

// lzmaProbPrices[p>>4] is the price of a bit whose probability is p/2048.
var lzmaProbPrices = func() (t [1 << (lzmaProbBits - 4)]uint32) {
	for i := range t {
		t[i] = uint32(-math.Log2((float64(i)+0.5)/float64(len(t)))*(1<<lzmaPriceBits) + 0.5)
	}
	return t
}()

type prob = uint16

func bitPrice(p prob, bit uint32) uint32 {
	if bit == 0 {
		return lzmaProbPrices[p>>4]
	}
	return lzmaProbPrices[(1<<lzmaProbBits-p)>>4]
}

// rangeEncoder is LZMA's binary arithmetic coder.
type rangeEncoder struct {
	out       []byte
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int64
}

func (e *rangeEncoder) init() {
	e.rng, e.cacheSize = 0xFFFFFFFF, 1
}

func (e *rangeEncoder) shiftLow() {
	if uint32(e.low) < 0xFF000000 || e.low>>32 != 0 {
		carry := byte(e.low >> 32)
		b := e.cache
		for ; e.cacheSize > 0; e.cacheSize-- {
			e.out = append(e.out, b+carry)
			b = 0xFF
		}
		e.cache = byte(e.low >> 24)
	}
	e.cacheSize++
	e.low = (e.low & 0x00FFFFFF) << 8
}

func (e *rangeEncoder) bit(p *prob, bit uint32) {
	bound := (e.rng >> lzmaProbBits) * uint32(*p)
	if bit == 0 {
		e.rng = bound
		*p += (1<<lzmaProbBits - *p) >> lzmaMoveBits
	} else {
		e.low += uint64(bound)
		e.rng -= bound
		*p -= *p >> lzmaMoveBits
	}
	for e.rng < lzmaTop {
		e.rng <<= 8
		e.shiftLow()
	}
}

func (e *rangeEncoder) direct(v uint32, bits int) {
	for bits > 0 {
		bits--
		e.rng >>= 1
		if (v>>bits)&1 != 0 {
			e.low += uint64(e.rng)
		}
		for e.rng < lzmaTop {
			e.rng <<= 8
			e.shiftLow()
		}
	}
}

func (e *rangeEncoder) flush() {
	for range 5 {
		e.shiftLow()
	}
}

// bitTree codes bits-wide symbols most significant bit first; probs has
// 1<<bits entries, the first unused.
func bitTree(e *rangeEncoder, probs []prob, bits int, v uint32) {
	m := uint32(1)
	for i := bits - 1; i >= 0; i-- {
		b := (v >> i) & 1
		e.bit(&probs[m], b)
		m = m<<1 | b
	}
}

func bitTreePrice(probs []prob, bits int, v uint32) uint32 {
	var price uint32
	m := uint32(1)
	for i := bits - 1; i >= 0; i-- {
		b := (v >> i) & 1
		price += bitPrice(probs[m], b)
		m = m<<1 | b
	}
	return price
}

// reverseTree codes bits-wide symbols least significant bit first.
func reverseTree(e *rangeEncoder, probs []prob, bits int, v uint32) {
	m := uint32(1)
	for range bits {
		b := v & 1
		v >>= 1
		e.bit(&probs[m], b)
		m = m<<1 | b
	}
}

func reverseTreePrice(probs []prob, bits int, v uint32) uint32 {
	var price uint32
	m := uint32(1)
	for range bits {
		b := v & 1
		v >>= 1
		price += bitPrice(probs[m], b)
		m = m<<1 | b
	}
	return price
}

// lenCoder codes match lengths 2 to 273.
type lenCoder struct {
	choice, choice2 prob
	low, mid        [1 << lzmaPosBitsMax][8]prob
	high            [256]prob
}

func (c *lenCoder) init() {
	c.choice, c.choice2 = lzmaProbInit, lzmaProbInit
	for i := range c.low {
		fill(c.low[i][:])
		fill(c.mid[i][:])
	}
	fill(c.high[:])
}

func (c *lenCoder) encode(e *rangeEncoder, n int, posState int) {
	l := uint32(n - lzmaMinMatch)
	switch {
	case l < 8:
		e.bit(&c.choice, 0)
		bitTree(e, c.low[posState][:], 3, l)
	case l < 16:
		e.bit(&c.choice, 1)
		e.bit(&c.choice2, 0)
		bitTree(e, c.mid[posState][:], 3, l-8)
	default:
		e.bit(&c.choice, 1)
		e.bit(&c.choice2, 1)
		bitTree(e, c.high[:], 8, l-16)
	}
}

func (c *lenCoder) price(n int, posState int) uint32 {
	l := uint32(n - lzmaMinMatch)
	switch {
	case l < 8:
		return bitPrice(c.choice, 0) + bitTreePrice(c.low[posState][:], 3, l)
	case l < 16:
		return bitPrice(c.choice, 1) + bitPrice(c.choice2, 0) + bitTreePrice(c.mid[posState][:], 3, l-8)
	}
	return bitPrice(c.choice, 1) + bitPrice(c.choice2, 1) + bitTreePrice(c.high[:], 8, l-16)
}

func fill(p []prob) {
	for i := range p {
		p[i] = lzmaProbInit
	}
}

// lzmaEncoder holds the adaptive model.
type lzmaEncoder struct {
	rc         rangeEncoder
	data       []byte
	state      int
	reps       [4]uint32 // distances minus one
	isMatch    [lzmaStates][1 << lzmaPosBitsMax]prob
	isRep      [lzmaStates]prob
	isRepG0    [lzmaStates]prob
	isRepG1    [lzmaStates]prob
	isRepG2    [lzmaStates]prob
	isRep0Long [lzmaStates][1 << lzmaPosBitsMax]prob
	literal    [][0x300]prob
	posSlot    [4][64]prob
	posSpecial [1 + lzmaFullDistances - lzmaEndPosModel]prob
	align      [1 << lzmaAlignBits]prob
	matchLen   lenCoder
	repLen     lenCoder
}

func newLZMAEncoder(data []byte) *lzmaEncoder {
	e := &lzmaEncoder{data: data, literal: make([][0x300]prob, 1<<(lzmaLC+lzmaLP))}
	e.rc.init()
	for s := range lzmaStates {
		fill(e.isMatch[s][:])
		fill(e.isRep0Long[s][:])
	}
	fill(e.isRep[:])
	fill(e.isRepG0[:])
	fill(e.isRepG1[:])
	fill(e.isRepG2[:])
	for i := range e.literal {
		fill(e.literal[i][:])
	}
	for i := range e.posSlot {
		fill(e.posSlot[i][:])
	}
	fill(e.posSpecial[:])
	fill(e.align[:])
	e.matchLen.init()
	e.repLen.init()
	return e
}

func stateAfterLiteral(s int) int {
	switch {
	case s < 4:
		return 0
	case s < 10:
		return s - 3
	}
	return s - 6
}

func stateAfterMatch(s int) int {
	if s < 7 {
		return 7
	}
	return 10
}

func stateAfterRep(s int) int {
	if s < 7 {
		return 8
	}
	return 11
}

func stateAfterShortRep(s int) int {
	if s < 7 {
		return 9
	}
	return 11
}

// literalProbs returns the literal coder for position p.
func (e *lzmaEncoder) literalProbs(p int) []prob {
	var prev byte
	if p > 0 {
		prev = e.data[p-1]
	}
	i := (p&(1<<lzmaLP-1))<<lzmaLC | int(prev)>>(8-lzmaLC)
	return e.literal[i][:]
}

// literalPrice prices data[p] as a literal in state s with rep0 distance
// rep0; after a match the literal is coded against the byte at rep0.
func (e *lzmaEncoder) literalPrice(p, s int, rep0 uint32) uint32 {
	probs := e.literalProbs(p)
	sym := uint32(e.data[p]) | 0x100
	var price uint32
	if s >= 7 && p > int(rep0) {
		match := uint32(e.data[p-int(rep0)-1])
		m := uint32(1)
		for i := 7; i >= 0; i-- {
			mb := (match >> i) & 1
			b := (sym >> i) & 1
			price += bitPrice(probs[(1+mb)<<8+m], b)
			m = m<<1 | b
			if mb != b {
				for i--; i >= 0; i-- {
					b := (sym >> i) & 1
					price += bitPrice(probs[m], b)
					m = m<<1 | b
				}
				break
			}
		}
		return price
	}
	return bitTreePrice(probs, 8, sym&0xff)
}

func (e *lzmaEncoder) encodeLiteral(p int) {
	posState := p & (1<<lzmaPB - 1)
	e.rc.bit(&e.isMatch[e.state][posState], 0)
	probs := e.literalProbs(p)
	sym := uint32(e.data[p])
	if e.state >= 7 && p > int(e.reps[0]) {
		match := uint32(e.data[p-int(e.reps[0])-1])
		m := uint32(1)
		i := 7
		for ; i >= 0; i-- {
			mb := (match >> i) & 1
			b := (sym >> i) & 1
			e.rc.bit(&probs[(1+mb)<<8+m], b)
			m = m<<1 | b
			if mb != b {
				i--
				break
			}
		}
		for ; i >= 0; i-- {
			b := (sym >> i) & 1
			e.rc.bit(&probs[m], b)
			m = m<<1 | b
		}
	} else {
		bitTree(&e.rc, probs, 8, sym)
	}
	e.state = stateAfterLiteral(e.state)
}

// posSlot returns the slot of distance-1 d.
func posSlot(d uint32) uint32 {
	if d < 4 {
		return d
	}
	n := uint32(31)
	for d>>n == 0 {
		n--
	}
	return n<<1 | (d>>(n-1))&1
}

func lenState(n int) int { return min(n-lzmaMinMatch, 3) }

func (e *lzmaEncoder) distPrice(d uint32, n int) uint32 {
	slot := posSlot(d)
	price := bitTreePrice(e.posSlot[lenState(n)][:], 6, slot)
	if slot < 4 {
		return price
	}
	footer := int(slot>>1) - 1
	base := (2 | slot&1) << footer
	if slot < lzmaEndPosModel {
		return price + reverseTreePrice(e.posSpecial[base-slot:], footer, d-base)
	}
	return price + uint32(footer-lzmaAlignBits)<<lzmaPriceBits +
		reverseTreePrice(e.align[:], lzmaAlignBits, (d-base)&(1<<lzmaAlignBits-1))
}

func (e *lzmaEncoder) encodeDist(d uint32, n int) {
	slot := posSlot(d)
	bitTree(&e.rc, e.posSlot[lenState(n)][:], 6, slot)
	if slot < 4 {
		return
	}
	footer := int(slot>>1) - 1
	base := (2 | slot&1) << footer
	if slot < lzmaEndPosModel {
		reverseTree(&e.rc, e.posSpecial[base-slot:], footer, d-base)
		return
	}
	e.rc.direct((d-base)>>lzmaAlignBits, footer-lzmaAlignBits)
	reverseTree(&e.rc, e.align[:], lzmaAlignBits, (d-base)&(1<<lzmaAlignBits-1))
}

func (e *lzmaEncoder) encodeMatch(p int, d uint32, n int) {
	posState := p & (1<<lzmaPB - 1)
	e.rc.bit(&e.isMatch[e.state][posState], 1)
	e.rc.bit(&e.isRep[e.state], 0)
	e.matchLen.encode(&e.rc, n, posState)
	e.encodeDist(d, n)
	e.reps = [4]uint32{d, e.reps[0], e.reps[1], e.reps[2]}
	e.state = stateAfterMatch(e.state)
}

// repPrice prices the choice of repeated distance k (not its length).
func (e *lzmaEncoder) repPrice(k, s, posState int) uint32 {
	price := bitPrice(e.isMatch[s][posState], 1) + bitPrice(e.isRep[s], 1)
	switch k {
	case 0:
		return price + bitPrice(e.isRepG0[s], 0) + bitPrice(e.isRep0Long[s][posState], 1)
	case 1:
		return price + bitPrice(e.isRepG0[s], 1) + bitPrice(e.isRepG1[s], 0)
	case 2:
		return price + bitPrice(e.isRepG0[s], 1) + bitPrice(e.isRepG1[s], 1) + bitPrice(e.isRepG2[s], 0)
	}
	return price + bitPrice(e.isRepG0[s], 1) + bitPrice(e.isRepG1[s], 1) + bitPrice(e.isRepG2[s], 1)
}

func (e *lzmaEncoder) encodeRep(p, k, n int) {
	posState := p & (1<<lzmaPB - 1)
	s := e.state
	e.rc.bit(&e.isMatch[s][posState], 1)
	e.rc.bit(&e.isRep[s], 1)
	if k == 0 {
		e.rc.bit(&e.isRepG0[s], 0)
		if n == 1 {
			e.rc.bit(&e.isRep0Long[s][posState], 0)
			e.state = stateAfterShortRep(s)
			return
		}
		e.rc.bit(&e.isRep0Long[s][posState], 1)
	} else {
		e.rc.bit(&e.isRepG0[s], 1)
		if k == 1 {
			e.rc.bit(&e.isRepG1[s], 0)
		} else {
			e.rc.bit(&e.isRepG1[s], 1)
			e.rc.bit(&e.isRepG2[s], uint32(k-2))
		}
		d := e.reps[k]
		copy(e.reps[1:k+1], e.reps[:k])
		e.reps[0] = d
	}
	e.repLen.encode(&e.rc, n, posState)
	e.state = stateAfterRep(s)
}

func (e *lzmaEncoder) encodeEnd(p int) {
	posState := p & (1<<lzmaPB - 1)
	e.rc.bit(&e.isMatch[e.state][posState], 1)
	e.rc.bit(&e.isRep[e.state], 0)
	e.matchLen.encode(&e.rc, lzmaMinMatch, posState)
	e.encodeDist(0xFFFFFFFF, lzmaMinMatch)
}

// lzmaMatch is a match at distance-1 dist of length n.
type lzmaMatch struct {
	dist uint32
	n    int
}

// lzmaNode is a position in the parse of a block: the cheapest way found
// to reach it, and the coder's state and repeated distances after it.
type lzmaNode struct {
	price uint32
	from  int32 // previous node
	// op is -1 for a literal, 0..3 for repeated distance k (shortrep when
	// n is 1), 4 for a match at dist.
	op    int8
	n     int32
	dist  uint32
	state int
	reps  [4]uint32
}

// lzmaCompress returns data as an LZMA-alone stream (13-byte header with
// unknown size, then the range-coded data and an end marker).
func lzmaCompress(data []byte, dict int) []byte {
	e := newLZMAEncoder(data)
	e.rc.out = make([]byte, 13, 13+len(data)/4)
	e.rc.out[0] = byte((lzmaPB*5+lzmaLP)*9 + lzmaLC)
	binary.LittleEndian.PutUint32(e.rc.out[1:], uint32(dict))
	binary.LittleEndian.PutUint64(e.rc.out[5:], math.MaxUint64)

	mf := newSAMatches(data, dict)
	nodes := make([]lzmaNode, lzmaBlock+lzmaMaxMatch+1)
	var ms []lzmaMatch
	var path []int
	for pos := 0; pos < len(data); {
		blockLen := min(lzmaBlock, len(data)-pos)
		for i := range blockLen + 1 {
			nodes[i].price = lzmaInfPrice
		}
		nodes[0] = lzmaNode{state: e.state, reps: e.reps, from: -1}
		end := blockLen
		reach := 0
		for cur := 0; cur < blockLen; cur++ {
			if cur > 0 && reach <= cur {
				// Every parse passes through cur: encode up to it now,
				// so that later choices are priced with fresher
				// probabilities.
				end = cur
				break
			}
			p := pos + cur
			ms = mf.find(p, ms[:0])
			cut, far := e.relax(nodes, cur, p, blockLen, ms)
			reach = max(reach, far)
			if cut > 0 {
				end = cut
				break
			}
		}
		// Walk back from the end and encode the ops in order.
		path = path[:0]
		for i := end; i > 0; i = int(nodes[i].from) {
			path = append(path, i)
		}
		at := pos
		for k := len(path) - 1; k >= 0; k-- {
			nd := &nodes[path[k]]
			switch {
			case nd.op < 0:
				e.encodeLiteral(at)
			case nd.op < 4:
				e.encodeRep(at, int(nd.op), int(nd.n))
			default:
				e.encodeMatch(at, nd.dist, int(nd.n))
			}
			at += int(max(nd.n, 1))
		}
		pos += end
	}
	e.encodeEnd(len(data))
	e.rc.flush()
	return e.rc.out
}

// relax offers every way to continue from nodes[cur] (position p) to the
// nodes it reaches. If one match is at least lzmaNiceLen long it is taken
// at once: relax makes it the only way to its end and returns that end as
// cut. far is the furthest node reached.
func (e *lzmaEncoder) relax(nodes []lzmaNode, cur, p, blockLen int, ms []lzmaMatch) (cut, far int) {
	d := e.data
	from := &nodes[cur]
	s, reps := from.state, from.reps
	posState := p & (1<<lzmaPB - 1)
	assign := func(to int, price uint32, op int8, n int, dist uint32) {
		t := &nodes[to]
		t.price, t.from, t.op, t.n, t.dist = price, int32(cur), op, int32(n), dist
		t.reps = reps
		switch {
		case op < 0:
			t.state = stateAfterLiteral(s)
		case op == 0 && n == 1:
			t.state = stateAfterShortRep(s)
		case op < 4:
			t.state = stateAfterRep(s)
			r := reps[op]
			copy(t.reps[1:op+1], reps[:op])
			t.reps[0] = r
		default:
			t.state = stateAfterMatch(s)
			t.reps = [4]uint32{dist, reps[0], reps[1], reps[2]}
		}
	}
	set := func(to int, price uint32, op int8, n int, dist uint32) {
		far = max(far, to)
		if price < nodes[to].price {
			assign(to, price, op, n, dist)
		}
	}
	base := from.price
	limit := min(lzmaMaxMatch, len(d)-p)

	// Take a long repeat or match at once.
	bestRep, bestRepLen := -1, 0
	for k := range 4 {
		r := int(reps[k]) + 1
		if r > p {
			continue
		}
		if n := commonPrefix(d[p-r:p-r+limit], d[p:p+limit]); n > bestRepLen {
			bestRep, bestRepLen = k, n
		}
	}
	if bestRepLen >= lzmaNiceLen {
		assign(cur+bestRepLen, 0, int8(bestRep), bestRepLen, 0)
		return cur + bestRepLen, cur + bestRepLen
	}
	if len(ms) > 0 && ms[len(ms)-1].n >= lzmaNiceLen {
		m := ms[len(ms)-1]
		assign(cur+m.n, 0, 4, m.n, m.dist)
		return cur + m.n, cur + m.n
	}

	matchPrice := bitPrice(e.isMatch[s][posState], 1)
	set(cur+1, base+bitPrice(e.isMatch[s][posState], 0)+e.literalPrice(p, s, reps[0]), -1, 1, 0)
	if r := int(reps[0]) + 1; r <= p && d[p-r] == d[p] {
		price := matchPrice + bitPrice(e.isRep[s], 1) + bitPrice(e.isRepG0[s], 0) + bitPrice(e.isRep0Long[s][posState], 0)
		set(cur+1, base+price, 0, 1, 0)
	}
	for k := range 4 {
		r := int(reps[k]) + 1
		if r > p {
			continue
		}
		n := min(commonPrefix(d[p-r:p-r+limit], d[p:p+limit]), blockLen-cur)
		if n < lzmaMinMatch {
			continue
		}
		price := base + e.repPrice(k, s, posState)
		for l := lzmaMinMatch; l <= n; l++ {
			set(cur+l, price+e.repLen.price(l, posState), int8(k), l, 0)
		}
	}
	if len(ms) > 0 {
		price := base + matchPrice + bitPrice(e.isRep[s], 0)
		l := lzmaMinMatch
		for _, m := range ms {
			var dp [4]uint32
			for ls := range dp {
				dp[ls] = e.distPrice(m.dist, ls+lzmaMinMatch)
			}
			for ; l <= min(m.n, blockLen-cur); l++ {
				set(cur+l, price+e.matchLen.price(l, posState)+dp[lenState(l)], 4, l, m.dist)
			}
		}
	}
	return 0, far
}

// saMatches finds LZMA matches through the suffix array of the whole data:
// the earlier positions sharing the longest prefixes with p are its
// neighbours in suffix order, so a short walk up and down the array from
// p's rank finds, for every length, about the nearest earlier match. On
// patch data, where a few byte values repeat everywhere, this finds the
// matches that hash chains bury under thousands of zero runs.
type saMatches struct {
	data []byte
	sa   []int32
	rank []int32
	lcp  []int32 // lcp[i]: common prefix of suffixes sa[i-1] and sa[i]
	dict int
	cand []lzmaMatch
}

func newSAMatches(data []byte, dict int) *saMatches {
	sa := suffixArray(data)
	n := len(data)
	rank := make([]int32, n)
	for i, p := range sa {
		rank[p] = int32(i)
	}
	// Kasai's algorithm.
	lcp := make([]int32, n)
	h := 0
	for p := range n {
		r := rank[p]
		if r == 0 {
			h = 0
			continue
		}
		q := int(sa[r-1])
		for p+h < n && q+h < n && data[p+h] == data[q+h] {
			h++
		}
		lcp[r] = int32(h)
		if h > 0 {
			h--
		}
	}
	return &saMatches{data: data, sa: sa, rank: rank, lcp: lcp, dict: dict}
}

// lzmaWalk is how many suffixes saMatches looks at on each side of p.
const lzmaWalk = 48

// find appends to ms the matches at p, each longer than the one before and
// each the nearest found for its length.
func (f *saMatches) find(p int, ms []lzmaMatch) []lzmaMatch {
	limit := min(lzmaMaxMatch, len(f.data)-p)
	if limit < lzmaMinMatch {
		return ms
	}
	cand := f.cand[:0]
	if p > 0 {
		if n := commonPrefix(f.data[p-1:p-1+limit], f.data[p:p+limit]); n >= lzmaMinMatch {
			cand = append(cand, lzmaMatch{dist: 0, n: n})
		}
	}
	r := int(f.rank[p])
	n := limit
	for i, steps := r-1, 0; i >= 0 && steps < lzmaWalk; i, steps = i-1, steps+1 {
		n = min(n, int(f.lcp[i+1]))
		if n < lzmaMinMatch {
			break
		}
		if q := int(f.sa[i]); q < p && p-q <= f.dict {
			cand = append(cand, lzmaMatch{dist: uint32(p - q - 1), n: n})
		}
	}
	n = limit
	for i, steps := r+1, 0; i < len(f.sa) && steps < lzmaWalk; i, steps = i+1, steps+1 {
		n = min(n, int(f.lcp[i]))
		if n < lzmaMinMatch {
			break
		}
		if q := int(f.sa[i]); q < p && p-q <= f.dict {
			cand = append(cand, lzmaMatch{dist: uint32(p - q - 1), n: n})
		}
	}
	f.cand = cand
	// Keep, for each length, the nearest; then drop any match that a
	// longer one at no greater distance makes useless.
	slices.SortFunc(cand, func(a, b lzmaMatch) int {
		if a.n != b.n {
			return cmp.Compare(b.n, a.n)
		}
		return cmp.Compare(a.dist, b.dist)
	})
	start := len(ms)
	bestDist := uint32(math.MaxUint32)
	for _, c := range cand {
		if c.dist < bestDist {
			bestDist = c.dist
			ms = append(ms, c)
		}
	}
	slices.Reverse(ms[start:])
	return ms
}
