// Command controlplane builds the test control plane's programs into the
// cache, or runs a control plane until interrupted, for the demo and for
// trying things by hand.
//
// Usage:
//
//	go run ./provider/internal/controlplane/cmd/controlplane build
//	go run ./provider/internal/controlplane/cmd/controlplane run [-dir DIR]
//
// build prints each program's name and path, one per line. run starts etcd,
// kube-apiserver and kube-controller-manager with Kubernetes' default
// timings, so that the demo's nodes and pods behave as in a cluster, writes
// the administrator's kubeconfig to DIR/kubeconfig (DIR is a new temporary
// directory by default), prints it, and stops them all on SIGINT or
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
)

func main() {
	log.SetFlags(log.Ltime)
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "build":
		err = build(ctx)
	case "run":
		err = run(ctx, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		log.Fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: controlplane build | controlplane run [-dir DIR]")
	os.Exit(2)
}

func build(ctx context.Context) error {
	start := time.Now()
	bins, err := controlplane.EnsureBinaries(ctx, log.Printf)
	if err != nil {
		return err
	}
	log.Printf("programs ready in %s", time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("etcd %s\nkube-apiserver %s\nkube-controller-manager %s\nkubectl %s\n", bins.Etcd, bins.KubeAPIServer, bins.KubeControllerManager, bins.Kubectl)
	return nil
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	dir := fs.String("dir", "", "directory for the control plane's files and logs (default: a new temporary directory)")
	fs.Parse(args)
	if *dir == "" {
		d, err := os.MkdirTemp("", "ecu-kubelet-controlplane-")
		if err != nil {
			return err
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	bins, err := controlplane.EnsureBinaries(ctx, log.Printf)
	if err != nil {
		return err
	}
	cp, err := controlplane.Run(*dir, bins, log.Printf, controlplane.WithControllerManager(controlplane.ControllerManager{}))
	if err != nil {
		return err
	}
	log.Printf("logs in %s; stop with Ctrl-C", *dir)
	fmt.Printf("export KUBECONFIG=%s\nalias kubectl=%s\n", cp.Kubeconfig(), bins.Kubectl)
	<-ctx.Done()
	return cp.Stop()
}
