package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

const busURLHelp = "bus URL: mem://NAME, socketcan://IFACE or socketcand://HOST:PORT/BUS"

func newBusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bus",
		Short: "Watch, record and drive CAN buses",
	}
	cmd.AddCommand(newBusDumpCmd(g), newBusSendCmd(g))
	return cmd
}

func newBusDumpCmd(g *globals) *cobra.Command {
	var busURL, pcapPath, logPath, filterList, iface string
	cmd := &cobra.Command{
		Use:   "dump --bus URL [-w FILE.pcap] [--log FILE.log] [--filter 7E0,7E8|ID:MASK]",
		Short: "Print a bus's frames live, candump style, and record them",
		Long: `Print every frame of a bus as a candump log line until interrupted:

    (1436509052.249713) body 7E8#0250030000000000

-w also records the frames as pcap (LINKTYPE_CAN_SOCKETCAN, for Wireshark:
tshark -r FILE -d 'can.subdissector,iso15765' -d 'iso15765.subdissector,uds'),
--log as a candump log file (canplayer, log2asc). --filter keeps only the
frames whose identifier matches one of a comma-separated list of ID (exact)
or ID:MASK; eight hex digits or a value above 7FF mean a 29-bit identifier.
SocketCAN and mem buses carry CAN FD frames only when the URL says so:
socketcan://vcan0?fd=true.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			filters, err := parseFilters(filterList)
			if err != nil {
				return err
			}
			if iface == "" {
				iface = busName(busURL)
			}
			stdout, err := canbus.NewLogWriter(cmd.OutOrStdout(), iface)
			if err != nil {
				return fmt.Errorf("%w; name the log's interface with --iface", err)
			}
			bus, err := canbus.Open(busURL, canbus.Config{})
			if err != nil {
				return err
			}
			defer bus.Close()
			writers := []canbus.FrameWriter{stdout}
			var files []*recordFile
			defer func() {
				for _, f := range files {
					f.close()
				}
			}()
			if pcapPath != "" {
				f, err := createRecordFile(pcapPath)
				if err != nil {
					return err
				}
				files = append(files, f)
				w, err := canbus.NewPcapWriter(f.w)
				if err != nil {
					return fmt.Errorf("%s: %w", pcapPath, err)
				}
				writers = append(writers, w)
			}
			if logPath != "" {
				f, err := createRecordFile(logPath)
				if err != nil {
					return err
				}
				files = append(files, f)
				w, err := canbus.NewLogWriter(f.w, iface)
				if err != nil {
					return err
				}
				writers = append(writers, w)
			}
			sub := bus.Subscribe(filters...)
			defer sub.Close()
			// Said on stderr once the subscription exists, so that a
			// reader of stdout (or a test) knows no frame is missed from
			// here on.
			fmt.Fprintf(cmd.ErrOrStderr(), "dumping %s; interrupt to stop\n", busURL)
			err = canbus.Record(cmd.Context(), sub, writers...)
			if n := sub.Dropped(); n > 0 {
				log.Warn("frames dropped: the output is slower than the bus", zap.Uint64("dropped", n))
			}
			for _, f := range files {
				if cerr := f.close(); cerr != nil && err == nil {
					err = cerr
				}
			}
			switch {
			case errors.Is(err, context.Canceled):
				return nil
			case err != nil:
				return err
			case cmd.Context().Err() == nil:
				return fmt.Errorf("bus %s went away while dumping (the connection was lost or the bus closed)", busURL)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&busURL, "bus", "", busURLHelp)
	f.StringVarP(&pcapPath, "write", "w", "", "also record the frames to this pcap file")
	f.StringVar(&logPath, "log", "", "also record the frames to this candump log file")
	f.StringVar(&filterList, "filter", "", "keep only these identifiers: ID or ID:MASK in hex, comma-separated")
	f.StringVar(&iface, "iface", "", "interface name in the log lines (default: the bus name from the URL)")
	cmd.MarkFlagRequired("bus")
	return cmd
}

func newBusSendCmd(g *globals) *cobra.Command {
	var busURL string
	cmd := &cobra.Command{
		Use:   "send --bus URL FRAME",
		Short: "Send one frame, written in candump notation (123#DEADBEEF, 18DAF110##1AABB, 7E0#R8)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			f, err := canbus.ParseFrame(args[0])
			if err != nil {
				return err
			}
			bus, err := canbus.Open(busURL, canbus.Config{FD: f.FD})
			if err != nil {
				return err
			}
			defer bus.Close()
			if err := bus.Send(cmd.Context(), f); err != nil {
				return fmt.Errorf("sending %v on %s: %w", f, busURL, err)
			}
			log.Debug("frame sent", zap.String("bus", busURL), zap.Stringer("frame", f))
			return nil
		},
	}
	cmd.Flags().StringVar(&busURL, "bus", "", busURLHelp)
	cmd.MarkFlagRequired("bus")
	return cmd
}

// recordFile is an output file written through a buffer.
type recordFile struct {
	f      *os.File
	w      *bufio.Writer
	closed bool
}

func createRecordFile(path string) (*recordFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &recordFile{f: f, w: bufio.NewWriter(f)}, nil
}

// close flushes and closes the file; later calls do nothing.
func (r *recordFile) close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", r.f.Name(), err)
	}
	return nil
}

// busName returns the bus's own name from its URL, for log lines: the
// interface of socketcan://, the bus of socketcand:// and mem://.
func busName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	if u.Scheme == "socketcand" {
		return strings.TrimPrefix(u.Path, "/")
	}
	return u.Host
}

// parseFilters parses a comma-separated list of ID or ID:MASK in hex, as
// candump takes them. An identifier of eight digits, or above 7FF, is a
// 29-bit one.
func parseFilters(list string) ([]canbus.Filter, error) {
	if list == "" {
		return nil, nil
	}
	var filters []canbus.Filter
	for _, item := range strings.Split(list, ",") {
		idText, maskText, hasMask := strings.Cut(item, ":")
		id, err := strconv.ParseUint(idText, 16, 32)
		if err != nil || len(idText) > 8 || id > canbus.MaxExtID {
			return nil, fmt.Errorf("--filter %q: identifier %q is not 1 to 8 hex digits up to 1FFFFFFF", item, idText)
		}
		extended := len(idText) == 8 || id > canbus.MaxStdID
		f := canbus.ExactFilter(uint32(id), extended)
		if hasMask {
			mask, err := strconv.ParseUint(maskText, 16, 32)
			if err != nil || mask > uint64(f.Mask) {
				return nil, fmt.Errorf("--filter %q: mask %q is not hex up to %X", item, maskText, f.Mask)
			}
			f.Mask = uint32(mask)
		}
		filters = append(filters, f)
	}
	return filters, nil
}
