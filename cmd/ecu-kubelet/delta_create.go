package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
)

func init() { newDeltaCreateCmd = deltaCreateCmd }

func deltaCreateCmd(*globals) *cobra.Command {
	var (
		out         string
		compression string
		envelope    bool
		window      uint8
		lookahead   uint8
		dictCap     int
	)
	cmd := &cobra.Command{
		Use:   "create OLD NEW -o PATCH",
		Short: "Create a detools sequential patch that turns OLD into NEW",
		Long: `Create a detools sequential patch from OLD to NEW, which detools' C library
and 'ecu-kubelet delta apply' apply. With --envelope the patch is preceded by
an envelope carrying OLD's and NEW's SHA-256 and NEW's size, so that it is never
applied to the wrong base and its result is verified.

--compression lzma (the default) gives the smallest patches; heatshrink needs
only a 2^window-byte buffer on the ECU (256 bytes by default); crle and none
need none. PATCH is written to a temporary file beside it and renamed when
complete.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("-o PATCH is required: where to write the patch")
			}
			c, err := delta.ParseCompression(compression)
			if err != nil {
				return err
			}
			opts := &delta.CreateOptions{
				Compression: c,
				Heatshrink:  delta.HeatshrinkParams{WindowBits: window, LookaheadBits: lookahead},
				LZMADictCap: dictCap,
			}
			n, newSize, err := createFile(args[0], args[1], out, envelope, opts)
			if err != nil {
				return err
			}
			ratio := 0.0
			if newSize > 0 {
				ratio = 100 * float64(n) / float64(newSize)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d bytes to %s (%.1f%% of the new image)\n", n, out, ratio)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the patch to")
	cmd.Flags().StringVar(&compression, "compression", "lzma", "patch compression: lzma, heatshrink, crle or none")
	cmd.Flags().BoolVar(&envelope, "envelope", false, "precede the patch with an envelope (base and target SHA-256, target size)")
	cmd.Flags().Uint8Var(&window, "heatshrink-window", delta.DefaultHeatshrinkParams.WindowBits, "heatshrink window size as a power of two (4 to 15)")
	cmd.Flags().Uint8Var(&lookahead, "heatshrink-lookahead", delta.DefaultHeatshrinkParams.LookaheadBits, "heatshrink lookahead size as a power of two (3 to window-1)")
	cmd.Flags().IntVar(&dictCap, "lzma-dict", delta.DefaultLZMADictCap, "largest LZMA dictionary in bytes, which the ECU must hold in RAM while applying (-1: as large as the patch data needs)")
	return cmd
}

// createFile writes the patch from oldPath to newPath to out and returns
// its size and the new image's.
func createFile(oldPath, newPath, out string, envelope bool, opts *delta.CreateOptions) (n, newSize int64, err error) {
	old, err := os.ReadFile(oldPath)
	if err != nil {
		return 0, 0, err
	}
	new, err := os.ReadFile(newPath)
	if err != nil {
		return 0, 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriter(tmp)
	if envelope {
		env, err := delta.NewEnvelope(old, new, opts.Compression).AppendBinary(nil)
		if err != nil {
			return 0, 0, err
		}
		w.Write(env)
	}
	if err = delta.Create(w, old, new, opts); err != nil {
		return 0, 0, fmt.Errorf("creating a patch from %s to %s: %w", oldPath, newPath, err)
	}
	if err = w.Flush(); err != nil {
		return 0, 0, err
	}
	st, err := tmp.Stat()
	if err != nil {
		return 0, 0, err
	}
	if err = tmp.Close(); err != nil {
		return 0, 0, err
	}
	return st.Size(), int64(len(new)), os.Rename(tmp.Name(), out)
}
