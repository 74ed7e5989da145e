// Command ecu-kubelet makes the microcontroller ECUs of a vehicle Kubernetes
// nodes and flashes firmware pods onto them over UDS, ISO-TP and CAN.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ecu-kubelet:", err)
		os.Exit(1)
	}
}

// globals are the flags every command shares.
type globals struct {
	logLevel  string
	logFormat string
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "ecu-kubelet",
		Short:         "Microcontroller ECUs as Kubernetes nodes; firmware pods flashed over UDS/ISO-TP/CAN",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "console", "log format: console or json")
	root.AddCommand(newBusCmd(g))
	root.AddCommand(newDeltaCmd(g))
	root.AddCommand(newUDSCmd(g))
	root.AddCommand(newSimCmd(g))
	root.AddCommand(newFlashCmd(g))
	root.AddCommand(newFirmwareCmd(g))
	root.AddCommand(newRunCmd(g))
	return root
}

// logger builds the one zap logger a command passes down; logs go to stderr
// so that a command's output on stdout stays machine-readable.
func (g *globals) logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	var cfg zap.Config
	switch g.logFormat {
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	case "json":
		cfg = zap.NewProductionConfig()
	default:
		return nil, fmt.Errorf("--log-format %q: want console or json", g.logFormat)
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.OutputPaths = []string{"stderr"}
	return cfg.Build()
}
