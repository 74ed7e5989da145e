package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/internal/pluginpb"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"go.uber.org/zap"
)

// Defaults of Host.
const (
	DefaultCallTimeout  = 10 * time.Second
	DefaultStartTimeout = 10 * time.Second
	// exitGrace is how long a call whose connection broke waits for the
	// process to end, to report its exit status rather than the broken
	// connection.
	exitGrace = 2 * time.Second
)

// Host runs adapter plugins: one process per plugin binary and checksum,
// started when a job first needs it and started again for the next job
// after it crashed or hung. Its zero value is ready to use; Close stops
// its plugins.
type Host struct {
	// Log receives the plugins' standard error and their lives; nil logs
	// nothing.
	Log *zap.Logger
	// CallTimeout bounds every call to a plugin (DefaultCallTimeout); a
	// plugin that does not answer in time is stopped.
	CallTimeout time.Duration
	// StartTimeout bounds a plugin's start and handshake
	// (DefaultStartTimeout).
	StartTimeout time.Duration

	mu     sync.Mutex
	procs  map[string]*proc // by path and checksum
	closed bool
}

// New returns the adapter of ecu, as flash.Engine's NewAdapter: Generic
// for "generic", else a client of the plugin the ECU's oem section names,
// whose process it starts unless one runs.
func (h *Host) New(ecu vehicle.ECU) (oem.Adapter, error) {
	if ecu.OEM.Adapter == "" || ecu.OEM.Adapter == "generic" {
		return oem.New(ecu)
	}
	msg, err := pluginpb.FromECU(ecu)
	if err != nil {
		return nil, fmt.Errorf("oem: %w", err)
	}
	p, err := h.proc(ecu)
	if err != nil {
		return nil, err
	}
	return &adapter{h: h, p: p, ecu: msg}, nil
}

// Close stops every plugin; adapters of this host fail from then on.
func (h *Host) Close() error {
	h.mu.Lock()
	procs := h.procs
	h.procs, h.closed = nil, true
	h.mu.Unlock()
	for _, p := range procs {
		p.fail(&oem.PluginError{Plugin: p.name, Path: p.path, Call: "Close", Failure: oem.PluginRefused, Err: errors.New("the plugin host closed; no more jobs run through it")})
		p.client.Kill()
	}
	return nil
}

func (h *Host) log() *zap.Logger {
	if h.Log == nil {
		return zap.NewNop()
	}
	return h.Log
}

// proc returns the running process of ecu's plugin, starting one if none
// runs or the last one failed.
func (h *Host) proc(ecu vehicle.ECU) (*proc, error) {
	o := ecu.OEM
	key := o.Plugin + "\x00" + o.SHA256
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("oem plugin %s (%s): the plugin host is closed", o.Adapter, o.Plugin)
	}
	if p := h.procs[key]; p != nil && p.failure() == nil {
		return p, nil
	}
	// Starting under the lock keeps two jobs from starting two processes
	// of one plugin; a start is bounded by StartTimeout.
	p, err := h.start(ecu)
	if err != nil {
		return nil, err
	}
	if h.procs == nil {
		h.procs = map[string]*proc{}
	}
	if old := h.procs[key]; old != nil {
		go old.client.Kill() // a hung process may still run
	}
	h.procs[key] = p
	return p, nil
}

// start checks the plugin binary's checksum and starts it.
func (h *Host) start(ecu vehicle.ECU) (*proc, error) {
	o := ecu.OEM
	notStarted := func(err error) error {
		return &oem.PluginError{Plugin: o.Adapter, Path: o.Plugin, Call: "start", Failure: oem.PluginNotStarted, Err: err}
	}
	want, err := hex.DecodeString(o.SHA256)
	if err != nil || len(want) != sha256.Size {
		return nil, notStarted(fmt.Errorf("%s.oem.sha256 %q is not a hex SHA-256", ecu.Path(), o.SHA256))
	}
	// The check here names both digests; go-plugin's SecureConfig checks
	// again right before it runs the file.
	got, err := fileSHA256(o.Plugin)
	if err != nil {
		return nil, notStarted(err)
	}
	if !bytes.Equal(got, want) {
		return nil, notStarted(fmt.Errorf("checksum mismatch: the file's sha256 is %x, %s.oem.sha256 says %s; install the plugin build the vehicle file names, or put the new build's sha256 there", got, ecu.Path(), o.SHA256))
	}
	p := &proc{name: o.Adapter, path: o.Plugin, exited: make(chan struct{})}
	logger := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "oem-plugin", Output: io.Discard, Level: hclog.Trace})
	logger.RegisterSink(&sink{p: p, log: h.log().With(zap.String("plugin", o.Adapter), zap.String("path", o.Plugin))})
	p.client = goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  pluginpb.Handshake,
		Plugins:          goplugin.PluginSet{pluginpb.PluginName: &pluginpb.GRPCPlugin{}},
		Cmd:              exec.Command(o.Plugin),
		SecureConfig:     &goplugin.SecureConfig{Checksum: want, Hash: sha256.New()},
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		// The plugin sees none of the host's environment (tokens,
		// kubeconfig paths): only what go-plugin passes it.
		SkipHostEnv:  true,
		StartTimeout: orDefault(h.StartTimeout, DefaultStartTimeout),
		Logger:       logger,
	})
	rpc, err := p.client.Client()
	if err == nil {
		var raw any
		raw, err = rpc.Dispense(pluginpb.PluginName)
		if err == nil {
			ac, ok := raw.(pluginpb.AdapterClient)
			if !ok {
				err = fmt.Errorf("dispensed a %T", raw)
			}
			p.rpc = ac
		}
	}
	if err != nil {
		p.client.Kill()
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			err = errors.New("checksum mismatch: the file changed after it was checked; check who writes it")
		}
		return nil, notStarted(fmt.Errorf("%w; run it by hand to see whether it starts, and check that it was built with this ecu-kubelet's SDK (protocol version %d)", err, pluginpb.ProtocolVersion))
	}
	h.log().Info("oem plugin started", zap.String("plugin", o.Adapter), zap.String("path", o.Plugin))
	return p, nil
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// proc is one plugin process.
type proc struct {
	name, path string
	client     *goplugin.Client
	rpc        pluginpb.AdapterClient
	exited     chan struct{} // closed when the process ended

	mu      sync.Mutex
	exitErr string           // how the process ended, once exited is closed
	failed  *oem.PluginError // why the process is unusable, once it is
}

// failure returns why the process is unusable, or nil while it runs.
func (p *proc) failure() *oem.PluginError {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed == nil {
		if err := p.exitReason(); err != nil {
			// It ended while no call was waiting for it.
			p.failed = &oem.PluginError{Plugin: p.name, Path: p.path, Failure: oem.PluginCrashed, Err: err}
		}
	}
	return p.failed
}

// fail marks the process unusable for e's reason, unless it already is,
// and returns the reason that stands.
func (p *proc) fail(e *oem.PluginError) *oem.PluginError {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed == nil {
		p.failed = e
	}
	return p.failed
}

// exitReason is how the process ended, or nil while it runs; call it
// with mu held.
func (p *proc) exitReason() error {
	select {
	case <-p.exited:
	default:
		return nil
	}
	if p.exitErr == "" {
		return errors.New("exited with status 0")
	}
	return errors.New(p.exitErr)
}

// sink watches a plugin's log: it forwards the plugin's standard error to
// the host's log and learns how the process ended (go-plugin reports it
// only there).
type sink struct {
	p    *proc
	log  *zap.Logger
	once sync.Once
}

func (s *sink) Accept(name string, level hclog.Level, msg string, args ...any) {
	fields := []zap.Field{zap.String("logger", name)}
	for i := 0; i+1 < len(args); i += 2 {
		k := fmt.Sprint(args[i])
		fields = append(fields, zap.Any(k, args[i+1]))
		if msg == "plugin process exited" && k == "error" {
			s.p.mu.Lock()
			s.p.exitErr = fmt.Sprint(args[i+1])
			s.p.mu.Unlock()
		}
	}
	if msg == "plugin process exited" {
		s.once.Do(func() { close(s.p.exited) })
	}
	switch {
	case level >= hclog.Error:
		s.log.Error(msg, fields...)
	case level >= hclog.Info:
		s.log.Info(msg, fields...)
	default:
		s.log.Debug(msg, fields...)
	}
}
