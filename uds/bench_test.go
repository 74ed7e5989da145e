package uds

import (
	"context"
	"testing"
)

// BenchmarkServerHandle measures the server core alone: a TransferData
// request of 127 bytes through dispatch and the download bookkeeping.
func BenchmarkServerHandle(b *testing.B) {
	ctx := context.Background()
	var s *Server
	start := func() {
		s, _ = newTestServer(h("3657"))
		s.Handle(ctx, h("10 02"), false)
		s.Handle(ctx, h("27 01"), false)
		s.Handle(ctx, h("27 02 C9A9"), false)
		s.Handle(ctx, h("34 00 44 00602000 000FFFFF"), false)
	}
	start()
	data := make([]byte, 127)
	blocks := 0
	b.ReportAllocs()
	for b.Loop() {
		if blocks == 8000 { // the 1 MiB region is nearly full: start over
			b.StopTimer()
			start()
			blocks = 0
			b.StartTimer()
		}
		blocks++
		if resp := s.Handle(ctx, block(byte(blocks), data), false); resp[0] != 0x76 {
			b.Fatalf("block %d: % X", blocks, resp)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

// BenchmarkClientRoundTrip measures a client request answered by Serve
// through an in-memory pipe: the cost of the UDS layers without a bus.
func BenchmarkClientRoundTrip(b *testing.B) {
	s, _ := newTestServer(nil)
	tester, ecu := newPipe()
	ecu.sent = nil
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, ecu, nil)
	c := NewClient(tester, ClientOptions{})
	for b.Loop() {
		if err := c.TesterPresent(ctx, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}
