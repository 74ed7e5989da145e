package delta

// The matcher needs the suffix array of the old image itself: it binary
// searches it for the longest match of every new position. The standard
// library's index/suffixarray builds one with SA-IS but exposes only
// Lookup (unordered offsets of an exact pattern) and a serialised form,
// neither of which gives longest-prefix search, so the array is built here.

// suffixArray returns the suffix array of data: the start offsets of all
// suffixes of data in lexicographic order, built in linear time with SA-IS
// (Nong, Zhang and Chan, "Two Efficient Algorithms for Linear Time Suffix
// Array Construction", 2011). data must be shorter than 2^31 bytes.
func suffixArray(data []byte) []int32 {
	text := make([]int32, len(data))
	for i, b := range data {
		text[i] = int32(b)
	}
	sa := make([]int32, len(data))
	sais(text, sa, 256)
	return sa
}

// sais writes the suffix array of text, whose symbols lie in [0, k), to sa
// (len(sa) == len(text)). The end of text acts as a unique sentinel smaller
// than every symbol, so a suffix that is a prefix of another sorts first.
func sais(text, sa []int32, k int) {
	n := len(text)
	switch n {
	case 0:
		return
	case 1:
		sa[0] = 0
		return
	}

	// sType[i] says whether suffix i is S-type (smaller than suffix i+1).
	// The last suffix is L-type: it is larger than the empty sentinel suffix.
	sType := make([]bool, n)
	for i := n - 2; i >= 0; i-- {
		sType[i] = text[i] < text[i+1] || (text[i] == text[i+1] && sType[i+1])
	}
	isLMS := func(i int) bool { return i > 0 && sType[i] && !sType[i-1] }

	counts := make([]int32, k)
	for _, c := range text {
		counts[c]++
	}
	bucket := make([]int32, k)
	heads := func() {
		var sum int32
		for c, n := range counts {
			bucket[c] = sum
			sum += n
		}
	}
	tails := func() {
		var sum int32
		for c, n := range counts {
			sum += n
			bucket[c] = sum
		}
	}
	induce := func() {
		// L-type suffixes from left to right; the suffix n-1 comes first
		// in its bucket because it precedes the sentinel.
		heads()
		c := text[n-1]
		sa[bucket[c]] = int32(n - 1)
		bucket[c]++
		for i := 0; i < n; i++ {
			j := sa[i] - 1
			if j >= 0 && !sType[j] {
				c := text[j]
				sa[bucket[c]] = j
				bucket[c]++
			}
		}
		// S-type suffixes from right to left.
		tails()
		for i := n - 1; i >= 0; i-- {
			j := sa[i] - 1
			if j >= 0 && sType[j] {
				c := text[j]
				bucket[c]--
				sa[bucket[c]] = j
			}
		}
	}

	// Step 1: sort the LMS substrings by placing the LMS suffixes at the
	// ends of their buckets and inducing.
	for i := range sa {
		sa[i] = -1
	}
	tails()
	for i := n - 1; i > 0; i-- {
		if isLMS(i) {
			c := text[i]
			bucket[c]--
			sa[bucket[c]] = int32(i)
		}
	}
	induce()

	// Step 2: name the LMS substrings in sorted order; equal substrings
	// get equal names.
	var lms []int32
	for _, p := range sa {
		if isLMS(int(p)) {
			lms = append(lms, p)
		}
	}
	names := make([]int32, n)
	for i := range names {
		names[i] = -1
	}
	name := int32(-1)
	prev := -1
	for _, p := range lms {
		if prev < 0 || !equalLMS(text, sType, isLMS, prev, int(p)) {
			name++
		}
		names[p] = name
		prev = int(p)
	}
	reduced := make([]int32, 0, len(lms))
	positions := make([]int32, 0, len(lms))
	for i := 1; i < n; i++ {
		if names[i] >= 0 {
			reduced = append(reduced, names[i])
			positions = append(positions, int32(i))
		}
	}
	names = nil

	// Step 3: sort the LMS suffixes, recursively if names repeat.
	order := make([]int32, len(reduced))
	if int(name)+1 < len(reduced) {
		sais(reduced, order, int(name)+1)
	} else {
		for i, c := range reduced {
			order[c] = int32(i)
		}
	}

	// Step 4: place the sorted LMS suffixes at the ends of their buckets,
	// last first so that their order is kept, and induce the rest.
	for i := range sa {
		sa[i] = -1
	}
	tails()
	for i := len(order) - 1; i >= 0; i-- {
		p := positions[order[i]]
		c := text[p]
		bucket[c]--
		sa[bucket[c]] = p
	}
	induce()
}

// equalLMS reports whether the LMS substrings starting at a and b are equal:
// the same symbols and types up to and including the next LMS position.
// A substring that runs into the sentinel equals no other.
func equalLMS(text []int32, sType []bool, isLMS func(int) bool, a, b int) bool {
	n := len(text)
	for i := 0; ; i++ {
		if a+i == n || b+i == n {
			return false
		}
		if text[a+i] != text[b+i] || sType[a+i] != sType[b+i] {
			return false
		}
		if i > 0 && (isLMS(a+i) || isLMS(b+i)) {
			return isLMS(a+i) && isLMS(b+i)
		}
	}
}
