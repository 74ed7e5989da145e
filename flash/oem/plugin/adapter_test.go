package plugin

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/internal/pluginpb"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const testCallTimeout = 2 * time.Second

// testAdapter is an adapter of a process that was never started: call
// runs against it with the f a test gives, and stopping it does nothing.
func testAdapter() *adapter {
	client := goplugin.NewClient(&goplugin.ClientConfig{HandshakeConfig: pluginpb.Handshake, Logger: hclog.NewNullLogger()})
	return &adapter{
		h: &Host{CallTimeout: testCallTimeout},
		p: &proc{name: "acme", path: "/plugins/acme", client: client, exited: make(chan struct{})},
	}
}

// exit makes p's process end with status as go-plugin reports it.
func exit(p *proc, status string) {
	p.mu.Lock()
	p.exitErr = status
	p.mu.Unlock()
	close(p.exited)
}

// TestCallClassifiesTheOutcome: a call's error says whether the adapter
// refused, the process crashed or it hung; a call that had not answered
// by its deadline hung, whichever error the stream reports then, among
// them the reset the plugin's gRPC server sends when the deadline it was
// given passes, which may reach the host before its own timer fires.
func TestCallClassifiesTheOutcome(t *testing.T) {
	reset := status.Error(codes.Canceled, "stream terminated by RST_STREAM with error code: CANCEL")
	eof := status.Error(codes.Unavailable, "error reading from server: EOF")
	for _, tc := range []struct {
		name    string
		f       func(context.Context, *proc) error
		want    oem.PluginFailure // 0: no error
		wantErr string
		stopped bool // the process may not serve the next job
	}{
		{
			name: "answer",
			f:    func(context.Context, *proc) error { return nil },
		},
		{
			name: "answer just in time",
			f: func(context.Context, *proc) error {
				time.Sleep(testCallTimeout - time.Nanosecond)
				return nil
			},
		},
		{
			name:    "adapter's own error",
			f:       func(context.Context, *proc) error { return status.Error(codes.Unknown, "no key for level 0x13") },
			want:    oem.PluginRefused,
			wantErr: "no key for level 0x13",
		},
		{
			name: "no answer until the host's timeout",
			f: func(ctx context.Context, _ *proc) error {
				<-ctx.Done()
				return status.FromContextError(ctx.Err()).Err()
			},
			want:    oem.PluginHung,
			wantErr: "the call timeout of 2s passed",
			stopped: true,
		},
		{
			name: "the plugin resets the stream at the deadline",
			f: func(context.Context, *proc) error {
				time.Sleep(testCallTimeout)
				return reset
			},
			want:    oem.PluginHung,
			wantErr: "the call timeout of 2s passed",
			stopped: true,
		},
		{
			name: "the connection breaks after the deadline",
			f: func(_ context.Context, p *proc) error {
				time.Sleep(testCallTimeout + time.Second)
				exit(p, "signal: killed")
				return eof
			},
			want:    oem.PluginHung,
			wantErr: "the call timeout of 2s passed",
			stopped: true,
		},
		{
			name: "the process exits in time",
			f: func(_ context.Context, p *proc) error {
				time.Sleep(testCallTimeout / 2)
				exit(p, "exit status 2")
				return eof
			},
			want:    oem.PluginCrashed,
			wantErr: "exit status 2",
			stopped: true,
		},
		{
			name:    "the connection breaks, the process runs on",
			f:       func(context.Context, *proc) error { return reset },
			want:    oem.PluginCrashed,
			wantErr: "the connection failed: stream terminated by RST_STREAM with error code: CANCEL",
			stopped: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := testAdapter()
				err := a.call(t.Context(), "Key", func(ctx context.Context) error { return tc.f(ctx, a.p) })
				if tc.want == 0 {
					if err != nil {
						t.Fatalf("error %v, want none", err)
					}
				} else {
					var pe *oem.PluginError
					if !errors.As(err, &pe) || pe.Failure != tc.want || pe.Call != "Key" {
						t.Fatalf("error %v; want a plugin failure %d in Key", err, tc.want)
					}
					if pe.Err.Error() != tc.wantErr {
						t.Errorf("reason %q, want %q", pe.Err, tc.wantErr)
					}
				}
				if stopped := a.p.failure() != nil; stopped != tc.stopped {
					t.Errorf("process stopped: %v, want %v", stopped, tc.stopped)
				}
			})
		})
	}
}

// TestCallTimesOutAfterTheCallerGaveUp: a caller whose context ends gets
// its error at once; a plugin that then does not answer by the deadline
// is stopped as hung all the same.
func TestCallTimesOutAfterTheCallerGaveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := testAdapter()
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		err := a.call(ctx, "Key", func(ctx context.Context) error {
			<-ctx.Done()
			return status.FromContextError(ctx.Err()).Err()
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want the caller's context.Canceled", err)
		}
		if pe := a.p.failure(); pe != nil {
			t.Fatalf("stopped before the deadline: %v", pe)
		}
		time.Sleep(testCallTimeout)
		synctest.Wait()
		if pe := a.p.failure(); pe == nil || pe.Failure != oem.PluginHung {
			t.Errorf("after the deadline: %v, want a hung plugin", pe)
		}
	})
}
