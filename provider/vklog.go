package provider

import (
	"context"
	"fmt"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	"go.uber.org/zap"
)

// withVKLogger makes virtual-kubelet's controllers log to l through ctx
// (virtual-kubelet takes its logger from the context before its global).
// Their levels are lowered one step: with 25 to 70 nodes per process,
// every controller's routine Info line would drown the provider's own,
// and their errors (a failed status update while the API server is away)
// are retried, so they are warnings here. Fatal never exits the process.
func withVKLogger(ctx context.Context, l *zap.Logger) context.Context {
	return vklog.WithLogger(ctx, vkLogger{l.WithOptions(zap.AddCallerSkip(1)).Sugar()})
}

type vkLogger struct{ s *zap.SugaredLogger }

func (l vkLogger) Debug(a ...any)                   { l.s.Debug(a...) }
func (l vkLogger) Debugf(f string, a ...any)        { l.s.Debugf(f, a...) }
func (l vkLogger) Info(a ...any)                    { l.s.Debug(a...) }
func (l vkLogger) Infof(f string, a ...any)         { l.s.Debugf(f, a...) }
func (l vkLogger) Warn(a ...any)                    { l.s.Info(a...) }
func (l vkLogger) Warnf(f string, a ...any)         { l.s.Infof(f, a...) }
func (l vkLogger) Error(a ...any)                   { l.s.Warn(a...) }
func (l vkLogger) Errorf(f string, a ...any)        { l.s.Warnf(f, a...) }
func (l vkLogger) Fatal(a ...any)                   { l.s.Error(a...) }
func (l vkLogger) Fatalf(f string, a ...any)        { l.s.Errorf(f, a...) }
func (l vkLogger) WithError(err error) vklog.Logger { return vkLogger{l.s.With(zap.Error(err))} }
func (l vkLogger) WithField(k string, v any) vklog.Logger {
	return vkLogger{l.s.With(k, fmt.Sprint(v))}
}
func (l vkLogger) WithFields(fs vklog.Fields) vklog.Logger {
	kv := make([]any, 0, 2*len(fs))
	for k, v := range fs {
		kv = append(kv, k, fmt.Sprint(v))
	}
	return vkLogger{l.s.With(kv...)}
}
