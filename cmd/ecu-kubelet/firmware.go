package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
)

func newFirmwareCmd(*globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Build images; pack, inspect and pull firmware artifacts (OCI registry or OCI image layout)",
		Long: `Firmware artifacts are OCI artifacts holding a firmware image, its config
(hardware ids, version, release counter, size, SHA-256) and delta patches from
earlier images; docs/firmware-artifacts.md describes them. REF is a registry
reference (HOST[:PORT]/REPO:TAG or @sha256:...) or an OCI image layout
(oci-layout:DIR:TAG or oci-layout:DIR@sha256:...).`,
	}
	var reg registryFlags
	reg.add(cmd)
	cmd.AddCommand(newFirmwareBuildCmd(), newFirmwarePackCmd(&reg), newFirmwareInspectCmd(&reg), newFirmwarePullCmd(&reg))
	return cmd
}

// registryFlags say how to reach a registry; every firmware command takes
// them.
type registryFlags struct {
	dockerConfig string
	pullSecret   string
	plainHTTP    bool
}

func (f *registryFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.dockerConfig, "docker-config", "", "docker config.json with registry credentials")
	cmd.PersistentFlags().StringVar(&f.pullSecret, "pull-secret", "", "file with a Kubernetes pull secret's .dockerconfigjson (the decoded value)")
	cmd.PersistentFlags().BoolVar(&f.plainHTTP, "plain-http", false, "talk HTTP, not HTTPS, to the registry (loopback registries only)")
}

func (f *registryFlags) options() (*artifact.Options, error) {
	opts := &artifact.Options{DockerConfig: f.dockerConfig, PlainHTTP: f.plainHTTP}
	if f.pullSecret != "" {
		b, err := os.ReadFile(f.pullSecret)
		if err != nil {
			return nil, fmt.Errorf("--pull-secret: %w", err)
		}
		opts.PullSecret = b
	}
	return opts, nil
}

func newFirmwarePackCmd(reg *registryFlags) *cobra.Command {
	var (
		hardwareIDs []string
		version     string
		counter     uint32
		deltaFrom   []string
		out, push   string
	)
	cmd := &cobra.Command{
		Use:   "pack --hardware-id H --version V --release-counter N IMAGE [--delta-from OLD_IMAGE]... -o oci-layout:DIR:TAG [--push REF]",
		Short: "Build a firmware artifact from an image and delta patches from earlier images",
		Long: `Build a firmware artifact from IMAGE (an ecu-kubelet firmware image) with a
delta patch from each --delta-from OLD_IMAGE, and write it to an OCI image
layout (-o oci-layout:DIR:TAG) and/or push it to a registry (--push
HOST[:PORT]/REPO:TAG). The config is taken from IMAGE's header: --version and
--release-counter, if given, must agree with it, and --hardware-id (repeat it
for hardware the image also runs on) must include its hardware id, so that a
typo never mislabels firmware.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" && push == "" {
				return errors.New("say where the artifact goes: -o oci-layout:DIR:TAG and/or --push REF")
			}
			opts := &artifact.PackOptions{HardwareIDs: hardwareIDs, Version: version}
			if cmd.Flags().Changed("release-counter") {
				opts.ReleaseCounter = &counter
			}
			img, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var bases [][]byte
			for _, p := range deltaFrom {
				b, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("--delta-from: %w", err)
				}
				bases = append(bases, b)
			}
			p, err := artifact.Pack(cmd.Context(), img, bases, opts)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "packed %s %s (release counter %d) for %q: %d delta(s), manifest %s\n",
				args[0], p.Config.Version, p.Config.ReleaseCounter, p.Config.HardwareIDs, len(bases), p.Manifest.Digest)
			if out != "" {
				ref, err := p.Push(cmd.Context(), out, nil)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "wrote %s (%s)\n", out, ref)
			}
			if push != "" {
				ropts, err := reg.options()
				if err != nil {
					return err
				}
				ref, err := p.Push(cmd.Context(), push, ropts)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "pushed %s (%s)\n", push, ref)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&hardwareIDs, "hardware-id", nil, "hardware the image runs on (repeatable; default: the image header's)")
	cmd.Flags().StringVar(&version, "version", "", "the image's version (checked against its header)")
	cmd.Flags().Uint32Var(&counter, "release-counter", 0, "the image's release counter (checked against its header)")
	cmd.Flags().StringArrayVar(&deltaFrom, "delta-from", nil, "an earlier image to add a delta patch from (repeatable)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "OCI image layout to write: oci-layout:DIR:TAG")
	cmd.Flags().StringVar(&push, "push", "", "registry reference to push to: HOST[:PORT]/REPO:TAG")
	return cmd
}

func newFirmwareInspectCmd(reg *registryFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF",
		Short: "Check a firmware artifact and show its config, image and deltas",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := reg.options()
			if err != nil {
				return err
			}
			fw, err := artifact.Resolve(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			printFirmware(cmd.OutOrStdout(), fw)
			return nil
		},
	}
}

func printFirmware(w io.Writer, fw *artifact.Firmware) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	c := fw.Config
	fmt.Fprintf(tw, "reference\t%s\n", fw.Ref)
	fmt.Fprintf(tw, "manifest\t%s\n", fw.Digest)
	fmt.Fprintf(tw, "hardware ids\t%q\n", c.HardwareIDs)
	fmt.Fprintf(tw, "version\t%s\n", c.Version)
	fmt.Fprintf(tw, "release counter\t%d\n", c.ReleaseCounter)
	fmt.Fprintf(tw, "image\t%s\t%d bytes\n", c.SHA256, c.Size)
	for _, d := range fw.Deltas {
		fmt.Fprintf(tw, "delta from\t%s\t%d bytes\t%s\n", d.BaseDigest, d.Size, d.Compression)
	}
	tw.Flush()
}

func newFirmwarePullCmd(reg *registryFlags) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "pull REF -o DIR",
		Short: "Copy a firmware artifact from a registry into an OCI image layout (the offline cache)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("-o DIR is required: the OCI image layout directory to copy into")
			}
			opts, err := reg.options()
			if err != nil {
				return err
			}
			ref, err := artifact.Copy(cmd.Context(), args[0], dir, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied %s to %s\n", args[0], ref)
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "output", "o", "", "OCI image layout directory to copy into (created if need be)")
	return cmd
}
