package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
)

// newDeltaCreateCmd is the hook through which delta_create.go adds
// `delta create`: it sets this variable in an init function. The delta
// command works without it.
var newDeltaCreateCmd func(g *globals) *cobra.Command

func newDeltaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delta",
		Short: "Create, apply and inspect delta images (detools-compatible patches)",
	}
	cmd.AddCommand(newDeltaApplyCmd(), newDeltaInspectCmd())
	if newDeltaCreateCmd != nil {
		cmd.AddCommand(newDeltaCreateCmd(g))
	}
	return cmd
}

func newDeltaApplyCmd() *cobra.Command {
	var out string
	var maxMemory int64
	cmd := &cobra.Command{
		Use:   "apply OLD PATCH -o NEW",
		Short: "Apply a patch to an old image, writing the new image",
		Long: `Apply a detools sequential or in-place patch, or a patch envelope (which
first checks OLD's SHA-256 and afterwards the new image's), to OLD and write
the new image to NEW. NEW is written to a temporary file beside it and renamed only when the
patch applied completely and, for an envelope, verified.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("-o NEW is required: where to write the new image")
			}
			n, err := applyFiles(args[0], args[1], out, &delta.Options{MaxMemory: maxMemory})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d bytes to %s\n", n, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the new image to")
	cmd.Flags().Int64Var(&maxMemory, "max-memory", 0, "largest decompressor window in bytes (0: the package default, 8 MiB)")
	return cmd
}

// applyFiles applies the patch file to the old file and renames the result
// to out only when everything succeeded.
func applyFiles(oldPath, patchPath, out string, opts *delta.Options) (n int64, err error) {
	old, err := os.Open(oldPath)
	if err != nil {
		return 0, err
	}
	defer old.Close()
	st, err := old.Stat()
	if err != nil {
		return 0, err
	}
	pf, err := os.Open(patchPath)
	if err != nil {
		return 0, err
	}
	defer pf.Close()
	patch := bufio.NewReader(pf)
	magic, _ := patch.Peek(len(delta.EnvelopeMagic))

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriter(tmp)
	switch {
	case string(magic) == delta.EnvelopeMagic:
		var env delta.Envelope
		env, err = delta.ApplyEnvelope(old, st.Size(), patch, w, opts)
		n = env.TargetSize
	case len(magic) > 0 && delta.PatchType(magic[0]>>4&0x7) == delta.InPlace:
		n, err = applyInPlaceFile(old, tmp, patch, opts)
	default:
		n, err = delta.Apply(old, patch, w, opts)
	}
	if err != nil {
		return n, fmt.Errorf("applying %s to %s: %w", patchPath, oldPath, err)
	}
	if err = w.Flush(); err != nil {
		return n, err
	}
	if err = tmp.Close(); err != nil {
		return n, err
	}
	return n, os.Rename(tmp.Name(), out)
}

// applyInPlaceFile applies an in-place patch the way a single-bank ECU
// does: the old image is copied into mem, a file standing for the flash
// region, which the patch then rewrites and which is cut to the new size.
func applyInPlaceFile(old *os.File, mem *os.File, patch *bufio.Reader, opts *delta.Options) (int64, error) {
	hdr, _ := patch.Peek(51)
	h, err := delta.ReadHeader(bytes.NewReader(hdr))
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(mem, old); err != nil {
		return 0, err
	}
	st, err := mem.Stat()
	if err != nil {
		return 0, err
	}
	size := max(st.Size(), h.MemorySize)
	if err := mem.Truncate(size); err != nil {
		return 0, err
	}
	n, err := delta.ApplyInPlace(mem, size, patch, opts)
	if err != nil {
		return n, err
	}
	return n, mem.Truncate(n)
}

func newDeltaInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect PATCH",
		Short: "Show a patch's type, compression, sizes and ratio",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			return inspectPatch(cmd.OutOrStdout(), bufio.NewReader(f), st.Size())
		},
	}
}

// inspectPatch describes the patch of size bytes read from r.
func inspectPatch(out io.Writer, r *bufio.Reader, size int64) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, k+":\t"+format+"\n", args...) }
	patchSize := size
	if magic, _ := r.Peek(len(delta.EnvelopeMagic)); string(magic) == delta.EnvelopeMagic {
		env, err := delta.ReadEnvelope(r)
		if err != nil {
			return err
		}
		patchSize -= int64(delta.EnvelopeSize)
		row("envelope", "%d bytes", delta.EnvelopeSize)
		row("base sha256", "%s", hex.EncodeToString(env.BaseSHA256[:]))
		row("target sha256", "%s", hex.EncodeToString(env.TargetSHA256[:]))
	}
	h, err := delta.ReadHeader(r)
	if err != nil {
		return fmt.Errorf("not a detools patch: %w", err)
	}
	row("type", "%v", h.Type)
	row("compression", "%v%s", h.Compression, compressionDetail(h, r))
	row("patch size", "%d bytes", patchSize)
	if h.Type == delta.InPlace {
		row("memory size", "%d bytes", h.MemorySize)
		row("segment size", "%d bytes", h.SegmentSize)
		row("shift size", "%d bytes", h.ShiftSize)
		row("old size", "%d bytes", h.FromSize)
	}
	row("new size", "%d bytes", h.ToSize)
	if h.ToSize > 0 {
		row("ratio", "%.1f%% of the new image", float64(patchSize)*100/float64(h.ToSize))
	}
	return nil
}

// compressionDetail peeks at the compressed stream's own header for the
// window it needs, which decides whether an ECU can apply the patch.
func compressionDetail(h delta.Header, r *bufio.Reader) string {
	if h.ToSize == 0 {
		return ""
	}
	switch h.Compression {
	case delta.CompressionHeatshrink:
		b, err := r.Peek(1)
		if err != nil {
			return ""
		}
		p, err := delta.ParseHeatshrinkParams(b[0])
		if err != nil {
			return " (bad parameter byte)"
		}
		return fmt.Sprintf(" (window %d bits, lookahead %d bits)", p.WindowBits, p.LookaheadBits)
	case delta.CompressionLZMA:
		b, err := r.Peek(5)
		if err != nil {
			return ""
		}
		return fmt.Sprintf(" (dictionary %d bytes)", binary.LittleEndian.Uint32(b[1:5]))
	}
	return ""
}
