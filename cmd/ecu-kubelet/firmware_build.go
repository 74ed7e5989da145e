package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// newFirmwareBuildCmd wraps a raw firmware binary in the image format the
// ECUs' bootloaders and `firmware pack` read (flash/image).
func newFirmwareBuildCmd() *cobra.Command {
	var hdr image.Header
	var out string
	cmd := &cobra.Command{
		Use:   "build --hardware-id H --version V --release-counter N PAYLOAD -o IMAGE",
		Short: "Wrap a raw firmware binary in an ecu-kubelet firmware image (header with version, hardware id, release counter, SHA-256)",
		Long: `Write IMAGE: the raw firmware binary PAYLOAD behind the 128-byte header that
ECUs report and verify (docs/simulator.md, flash/image): the version, the
hardware id, the anti-rollback release counter, the payload's length and
SHA-256. The result is what 'firmware pack' takes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o IMAGE is required: where to write the firmware image")
			}
			payload, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			img, err := image.Build(hdr, payload)
			if err != nil {
				return fmt.Errorf("building the image of %s: %w", args[0], err)
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), ".firmware-build-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name()) // a no-op once renamed
			if _, err := tmp.Write(img); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s %s release %d, %d bytes, sha256:%x\n",
				out, hdr.HardwareID, hdr.Version, hdr.ReleaseCounter, len(img), image.Digest(img))
			return nil
		},
	}
	cmd.Flags().StringVar(&hdr.HardwareID, "hardware-id", "", "hardware the image runs on")
	cmd.Flags().StringVar(&hdr.Version, "version", "", "software version, such as 1.4.2")
	cmd.Flags().Uint32Var(&hdr.ReleaseCounter, "release-counter", 0, "anti-rollback counter; ECUs refuse images below the running one's")
	cmd.Flags().StringVarP(&out, "output", "o", "", "the firmware image to write")
	for _, f := range []string{"hardware-id", "version"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}
