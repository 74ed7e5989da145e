package kubeletapi

import (
	"context"
	"crypto/tls"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/client-go/util/certificate"
)

// lateManager tells the store of its certificate before it caches it, as
// client-go's certificate manager does.
type lateManager struct {
	certificate.Manager
	updated chan struct{}
	cert    atomic.Pointer[tls.Certificate]
}

func (m *lateManager) Start() {
	go func() {
		m.updated <- struct{}{}
		time.Sleep(time.Millisecond)
		m.cert.Store(&tls.Certificate{})
	}()
}

func (m *lateManager) Current() *tls.Certificate { return m.cert.Load() }

// TestCSRWaitSeesACertificateCachedAfterItsNotice: the server starts even
// when the certificate is cached only after the store was told of it.
func TestCSRWaitSeesACertificateCachedAfterItsNotice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		updated := make(chan struct{}, 1)
		c := &csrCert{Manager: &lateManager{updated: updated}, updated: updated}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if !c.wait(ctx) {
			t.Fatal("wait gave up although a certificate was issued")
		}
	})
}
