package provider

import (
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider/kubeletapi"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// Defaults of Config.
const (
	DefaultPollInterval  = 5 * time.Second
	DefaultLeaseDuration = 40 * time.Second
	DefaultKubeletPort   = 10250
)

// Config is what a Provider serves and how.
type Config struct {
	// Vehicle is the vehicle description; every ECU becomes a node named
	// "<vehicle>-<ecu>".
	Vehicle *vehicle.Vehicle
	// Buses are the vehicle's open buses by name; they stay the caller's.
	Buses map[string]canbus.Bus
	// Client talks to the API server.
	Client kubernetes.Interface
	// StateDir keeps the flash journals, the pods the provider holds and
	// their transcripts across restarts. Required.
	StateDir string
	// Log receives the provider's structured log; nil discards it.
	Log *zap.Logger

	// PollInterval is how often every ECU is asked whether it is alive and
	// which image it runs (DefaultPollInterval).
	PollInterval time.Duration
	// LeaseDuration is the nodes' lease duration (DefaultLeaseDuration).
	LeaseDuration time.Duration

	// NodeAddress is the InternalIP the nodes advertise, where the API
	// server reaches the kubelet API; KubeletPort its port
	// (DefaultKubeletPort). Every ECU node of the process shares them.
	NodeAddress string
	KubeletPort int32
	// API configures the kubelet API server; its Backend and Metrics are
	// filled in by the provider. An empty API.Addr serves no kubelet API.
	API kubeletapi.Config

	// Artifacts say how to reach registries; a pod's imagePullSecrets are
	// added per pod.
	Artifacts artifact.Options
	// ConfirmTimeout and UpTimeout tune the flash engine (its defaults
	// when zero).
	ConfirmTimeout, UpTimeout time.Duration
}
