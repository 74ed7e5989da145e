package vehicle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
	"gopkg.in/yaml.v3"
)

// Vehicle is a vehicle description.
type Vehicle struct {
	Name  string `yaml:"name"`
	Buses []Bus  `yaml:"buses"`
	ECUs  []ECU  `yaml:"ecus"`
}

// Bus is one CAN bus of a vehicle.
type Bus struct {
	Name        string `yaml:"name"`
	URL         string `yaml:"url"`         // mem://NAME, socketcan://IFACE, socketcand://HOST:PORT/BUS
	Bitrate     int    `yaml:"bitrate"`     // nominal, bit/s
	DataBitrate int    `yaml:"dataBitrate"` // CAN FD data phase, bit/s (0: the nominal rate)
	FD          bool   `yaml:"fd"`
}

// Config returns the canbus.Config to open the bus with.
func (b Bus) Config() canbus.Config {
	return canbus.Config{Bitrate: b.Bitrate, DataBitrate: b.DataBitrate, FD: b.FD}
}

// Addressing modes of an ECU.
const (
	Normal      = "normal"       // 11-bit request and response identifiers
	NormalFixed = "normal-fixed" // 29-bit 0x18DA<target><source> from the addresses
)

// Addressing says how the tester reaches an ECU.
type Addressing struct {
	// Mode is Normal (the default) or NormalFixed.
	Mode string `yaml:"mode"`
	// RequestID is the identifier the tester sends on and the ECU receives
	// on; ResponseID the one the ECU answers on; FunctionalID the
	// identifier of functional requests (0x7DF by default). Normal only.
	RequestID    uint32 `yaml:"requestId"`
	ResponseID   uint32 `yaml:"responseId"`
	FunctionalID uint32 `yaml:"functionalId"`
	// ECUAddress and TesterAddress are the normal-fixed network addresses
	// (N_TA of requests and N_SA; the tester's defaults to 0xF1);
	// FunctionalAddress is the functional target (0x33 by default).
	ECUAddress        *uint8 `yaml:"ecuAddress"`
	TesterAddress     *uint8 `yaml:"testerAddress"`
	FunctionalAddress *uint8 `yaml:"functionalAddress"`
}

// OEM names the OEM adapter that programs an ECU and its settings, which
// only that adapter (and the simulator, for the ECU's side) interprets.
// Any adapter but "generic" is a plugin (docs/oem-adapters.md): Plugin is
// the absolute path of its binary and SHA256 the hex SHA-256 the binary
// must have to be run.
type OEM struct {
	Adapter  string         `yaml:"adapter"`
	Plugin   string         `yaml:"plugin"`
	SHA256   string         `yaml:"sha256"`
	Settings map[string]any `yaml:"settings"`
}

// Flash is an ECU's flash geometry: two slots of SlotSize bytes at SlotA
// and SlotB, erased in sectors.
type Flash struct {
	SlotSize           uint64        `yaml:"slotSize"`
	SectorSize         uint64        `yaml:"sectorSize"`
	EraseTimePerSector time.Duration `yaml:"eraseTimePerSector"`
	WriteTimePerKiB    time.Duration `yaml:"writeTimePerKiB"`
	SlotA              uint64        `yaml:"slotA"` // base address of slot A
	SlotB              uint64        `yaml:"slotB"` // base address of slot B
}

// ECU is one ECU of a vehicle.
type ECU struct {
	Name       string     `yaml:"name"` // DNS-1123 label
	Bus        string     `yaml:"bus"`  // a Bus's name
	Addressing Addressing `yaml:"addressing"`
	HardwareID string     `yaml:"hardwareId"`
	PartNumber string     `yaml:"partNumber"`
	Serial     string     `yaml:"serial"`
	OEM        OEM        `yaml:"oem"`
	Flash      Flash      `yaml:"flash"`
	// Simulation is read by package sim only.
	Simulation RawSection `yaml:"simulation"`

	// path is the field path of this ECU in its file, for the errors of
	// RawSection.Decode.
	path string
}

// Path returns the ECU's field path in its vehicle file, "ecus[3]".
func (e ECU) Path() string { return e.path }

// RawSection is a YAML section kept undecoded, for one consumer to decode
// strictly into its own types.
type RawSection struct {
	node *yaml.Node
}

// UnmarshalYAML keeps the section's node.
func (r *RawSection) UnmarshalYAML(n *yaml.Node) error {
	r.node = n
	return nil
}

// IsZero reports whether the section is absent.
func (r RawSection) IsZero() bool { return r.node == nil }

// Line returns the section's line in its file, 0 if absent.
func (r RawSection) Line() int {
	if r.node == nil {
		return 0
	}
	return r.node.Line
}

// MarshalYAML writes the section back as it was.
func (r RawSection) MarshalYAML() (any, error) { return r.node, nil }

// RawYAML returns a section as given in YAML text, for building ECUs in
// code and tests.
func RawYAML(text string) (RawSection, error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		return RawSection{}, err
	}
	if len(n.Content) == 0 {
		return RawSection{}, nil
	}
	return RawSection{node: n.Content[0]}, nil
}

// Decode decodes the section into v, rejecting keys v has no field for.
// An absent section leaves v as it is. Line numbers in its errors count
// from the section's first line.
func (r RawSection) Decode(v any) error {
	if r.node == nil {
		return nil
	}
	b, err := yaml.Marshal(r.node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Load reads and checks the vehicle description at path.
func Load(path string) (*Vehicle, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vehicle: %w", err)
	}
	v, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Parse decodes and checks a vehicle description. Its errors name the
// offending field, as *FieldError for impossible values.
func Parse(b []byte) (*Vehicle, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var v Vehicle
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("vehicle: the description is empty; it needs name, buses and ecus")
		}
		return nil, fmt.Errorf("vehicle: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("vehicle: more than one YAML document; give one vehicle per file")
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// FieldError is an impossible value in a vehicle description.
type FieldError struct {
	Path   string // "ecus[3].flash.sectorSize"
	Reason string
}

func (e *FieldError) Error() string { return "vehicle: " + e.Path + ": " + e.Reason }

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func checkName(path, name string) error {
	if len(name) == 0 || len(name) > 63 || !dns1123.MatchString(name) {
		return &FieldError{path, fmt.Sprintf("%q is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)", name)}
	}
	return nil
}

// Validate checks the description as Parse does, and fills in defaults
// (addressing mode, functional identifiers, the tester's address).
func (v *Vehicle) Validate() error {
	if err := checkName("name", v.Name); err != nil {
		return err
	}
	if len(v.Buses) == 0 {
		return &FieldError{"buses", "a vehicle needs at least one bus"}
	}
	buses := map[string]int{}
	for i, b := range v.Buses {
		p := fmt.Sprintf("buses[%d]", i)
		if err := checkName(p+".name", b.Name); err != nil {
			return err
		}
		if j, dup := buses[b.Name]; dup {
			return &FieldError{p + ".name", fmt.Sprintf("%q is also buses[%d]'s name", b.Name, j)}
		}
		buses[b.Name] = i
		if err := checkBusURL(b.URL); err != nil {
			return &FieldError{p + ".url", err.Error()}
		}
		if b.Bitrate < 0 || b.Bitrate > 1_000_000 {
			return &FieldError{p + ".bitrate", fmt.Sprintf("%d: must be 0 (untimed mem bus) to 1000000 bit/s", b.Bitrate)}
		}
		if b.DataBitrate < 0 || b.DataBitrate > 8_000_000 {
			return &FieldError{p + ".dataBitrate", fmt.Sprintf("%d: must be 0 to 8000000 bit/s", b.DataBitrate)}
		}
		if b.DataBitrate != 0 && !b.FD {
			return &FieldError{p + ".dataBitrate", "set only on a CAN FD bus (fd: true)"}
		}
		if b.DataBitrate != 0 && b.Bitrate == 0 {
			return &FieldError{p + ".dataBitrate", "needs a nominal bitrate too"}
		}
	}
	if len(v.ECUs) == 0 {
		return &FieldError{"ecus", "a vehicle needs at least one ECU"}
	}
	names := map[string]int{}
	ids := map[string]string{} // bus/identifier -> the field that uses it
	for i := range v.ECUs {
		e := &v.ECUs[i]
		p := fmt.Sprintf("ecus[%d]", i)
		e.path = p
		if err := checkName(p+".name", e.Name); err != nil {
			return err
		}
		if j, dup := names[e.Name]; dup {
			return &FieldError{p + ".name", fmt.Sprintf("%q is also ecus[%d]'s name", e.Name, j)}
		}
		names[e.Name] = i
		if _, ok := buses[e.Bus]; !ok {
			return &FieldError{p + ".bus", fmt.Sprintf("%q is not one of the vehicle's buses", e.Bus)}
		}
		if err := e.checkAddressing(p+".addressing", ids); err != nil {
			return err
		}
		if e.HardwareID == "" {
			return &FieldError{p + ".hardwareId", "must be set: flashing checks images against it"}
		}
		if err := e.OEM.check(p + ".oem"); err != nil {
			return err
		}
		if err := e.Flash.check(p + ".flash"); err != nil {
			return err
		}
	}
	return nil
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// check fills in the generic adapter and checks a plugin's path and
// checksum.
func (o *OEM) check(p string) error {
	if o.Adapter == "" {
		o.Adapter = "generic"
	}
	if o.Adapter == "generic" {
		if o.Plugin != "" || o.SHA256 != "" {
			return &FieldError{p + ".plugin", "plugin and sha256 are for plugin adapters; the generic adapter is built in"}
		}
		return nil
	}
	if err := checkName(p+".adapter", o.Adapter); err != nil {
		return err
	}
	switch {
	case o.Plugin == "":
		return &FieldError{p + ".plugin", fmt.Sprintf("adapter %q is a plugin: give the absolute path of its binary", o.Adapter)}
	case !filepath.IsAbs(o.Plugin):
		return &FieldError{p + ".plugin", fmt.Sprintf("%q: must be absolute (a relative path would depend on the directory ecu-kubelet runs in)", o.Plugin)}
	case !sha256Hex.MatchString(o.SHA256):
		return &FieldError{p + ".sha256", fmt.Sprintf("%q: want the plugin binary's SHA-256 as 64 lower-case hex digits (sha256sum prints it)", o.SHA256)}
	}
	return nil
}

func checkBusURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	switch {
	case u.Scheme == "mem" || u.Scheme == "socketcan":
		if u.Host == "" {
			return fmt.Errorf("%q names no bus; want %s://NAME", raw, u.Scheme)
		}
	case u.Scheme == "socketcand":
		if u.Host == "" || len(u.Path) < 2 {
			return fmt.Errorf("%q needs a server and a bus; want socketcand://HOST:PORT/BUS", raw)
		}
	default:
		return fmt.Errorf("%q: want mem://NAME, socketcan://IFACE or socketcand://HOST:PORT/BUS", raw)
	}
	if u.RawQuery != "" {
		return fmt.Errorf("%q: give bitrate, dataBitrate and fd as fields, not in the URL", raw)
	}
	return nil
}

func (e *ECU) checkAddressing(p string, ids map[string]string) error {
	a := &e.Addressing
	claim := func(field string, id uint32, ext bool) error {
		key := fmt.Sprintf("%s/%t/%x", e.Bus, ext, id)
		if other, used := ids[key]; used {
			return &FieldError{p + "." + field, fmt.Sprintf("identifier %#x is already %s on bus %q", id, other, e.Bus)}
		}
		ids[key] = e.path + ".addressing." + field
		return nil
	}
	switch a.Mode {
	case "", Normal:
		a.Mode = Normal
		if a.ECUAddress != nil || a.TesterAddress != nil || a.FunctionalAddress != nil {
			return &FieldError{p, "ecuAddress, testerAddress and functionalAddress are for mode normal-fixed"}
		}
		if a.FunctionalID == 0 {
			a.FunctionalID = 0x7DF
		}
		for _, f := range []struct {
			name string
			id   uint32
		}{{"requestId", a.RequestID}, {"responseId", a.ResponseID}, {"functionalId", a.FunctionalID}} {
			if f.id == 0 || f.id >= testerFunctionalRx {
				return &FieldError{p + "." + f.name, fmt.Sprintf("%#x: must be an 11-bit identifier 0x001-0x7FE (0x7FF is the tester's functional receive identifier)", f.id)}
			}
		}
		if a.RequestID == a.ResponseID || a.FunctionalID == a.RequestID || a.FunctionalID == a.ResponseID {
			return &FieldError{p, "requestId, responseId and functionalId must differ"}
		}
		if err := claim("requestId", a.RequestID, false); err != nil {
			return err
		}
		if err := claim("responseId", a.ResponseID, false); err != nil {
			return err
		}
		// ECUs share a functional identifier, but no ECU may use it
		// physically.
		key := fmt.Sprintf("%s/false/%x", e.Bus, a.FunctionalID)
		if other, used := ids[key]; used && !strings.HasSuffix(other, ".functionalId") {
			return &FieldError{p + ".functionalId", fmt.Sprintf("identifier %#x is already %s on bus %q", a.FunctionalID, other, e.Bus)}
		} else if !used {
			ids[key] = e.path + ".addressing.functionalId"
		}
	case NormalFixed:
		if a.RequestID != 0 || a.ResponseID != 0 || a.FunctionalID != 0 {
			return &FieldError{p, "requestId, responseId and functionalId are for mode normal; normal-fixed builds them from ecuAddress and testerAddress"}
		}
		if a.ECUAddress == nil {
			return &FieldError{p + ".ecuAddress", "must be set for normal-fixed addressing"}
		}
		if a.TesterAddress == nil {
			a.TesterAddress = ptr(uint8(0xF1))
		}
		if a.FunctionalAddress == nil {
			a.FunctionalAddress = ptr(uint8(0x33))
		}
		if *a.ECUAddress == *a.TesterAddress || *a.ECUAddress == *a.FunctionalAddress {
			return &FieldError{p + ".ecuAddress", fmt.Sprintf("%#x is the tester's or the functional address", *a.ECUAddress)}
		}
		req, resp := e.fixedIDs()
		if err := claim("ecuAddress", req, true); err != nil {
			return err
		}
		if err := claim("ecuAddress", resp, true); err != nil {
			return err
		}
	default:
		return &FieldError{p + ".mode", fmt.Sprintf("%q: want normal or normal-fixed", a.Mode)}
	}
	return nil
}

func (e *ECU) fixedIDs() (request, response uint32) {
	a := e.Addressing
	return 0x18DA<<16 | uint32(*a.ECUAddress)<<8 | uint32(*a.TesterAddress),
		0x18DA<<16 | uint32(*a.TesterAddress)<<8 | uint32(*a.ECUAddress)
}

// testerFunctionalRx is the receive identifier of the tester's functional
// Conn in normal addressing.
const testerFunctionalRx = canbus.MaxStdID

func ptr[T any](v T) *T { return &v }

func (f Flash) check(p string) error {
	switch {
	case f.SectorSize == 0:
		return &FieldError{p + ".sectorSize", "must be > 0"}
	case f.SlotSize == 0:
		return &FieldError{p + ".slotSize", "must be > 0"}
	case f.SlotSize%f.SectorSize != 0:
		return &FieldError{p + ".slotSize", fmt.Sprintf("%d is not a whole number of %d-byte sectors", f.SlotSize, f.SectorSize)}
	case f.SlotSize < 2*f.SectorSize:
		return &FieldError{p + ".slotSize", "must hold at least two sectors: one for the image, one for the boot trailer"}
	case f.SlotSize > 1<<30:
		return &FieldError{p + ".slotSize", fmt.Sprintf("%d: at most 1 GiB", f.SlotSize)}
	case f.EraseTimePerSector < 0:
		return &FieldError{p + ".eraseTimePerSector", "must not be negative"}
	case f.WriteTimePerKiB < 0:
		return &FieldError{p + ".writeTimePerKiB", "must not be negative"}
	case f.SlotA%f.SectorSize != 0:
		return &FieldError{p + ".slotA", fmt.Sprintf("%#x is not sector-aligned", f.SlotA)}
	case f.SlotB%f.SectorSize != 0:
		return &FieldError{p + ".slotB", fmt.Sprintf("%#x is not sector-aligned", f.SlotB)}
	case f.SlotA+f.SlotSize < f.SlotA || f.SlotB+f.SlotSize < f.SlotB:
		return &FieldError{p + ".slotSize", "a slot runs past the end of the address space"}
	case f.SlotA < f.SlotB+f.SlotSize && f.SlotB < f.SlotA+f.SlotSize:
		return &FieldError{p + ".slotB", fmt.Sprintf("slots overlap: A %#x-%#x, B %#x-%#x",
			f.SlotA, f.SlotA+f.SlotSize-1, f.SlotB, f.SlotB+f.SlotSize-1)}
	}
	return nil
}

// ImageCapacity returns the largest image a slot holds: the slot less its
// last sector, which holds the boot trailer.
func (f Flash) ImageCapacity() uint64 { return f.SlotSize - f.SectorSize }

// CheckImage returns a *FieldError naming the ECU's slot size if an image
// of size bytes does not fit a slot.
func (e ECU) CheckImage(field string, size int) error {
	if uint64(size) > e.Flash.ImageCapacity() {
		return &FieldError{e.path + "." + field, fmt.Sprintf("image of %d bytes does not fit the slot (flash.slotSize %d less a %d-byte trailer sector)",
			size, e.Flash.SlotSize, e.Flash.SectorSize)}
	}
	return nil
}

// Addresses returns the ISO-TP addresses of the tester's and of the ECU's
// side of the ECU's physical link.
func (e ECU) Addresses() (tester, ecu isotp.Address) {
	a := e.Addressing
	if a.Mode == NormalFixed {
		return isotp.Address{Mode: isotp.NormalFixed, Source: *a.TesterAddress, Target: *a.ECUAddress},
			isotp.Address{Mode: isotp.NormalFixed, Source: *a.ECUAddress, Target: *a.TesterAddress}
	}
	return isotp.Address{TxID: a.RequestID, RxID: a.ResponseID},
		isotp.Address{TxID: a.ResponseID, RxID: a.RequestID}
}

// FunctionalAddresses returns the ISO-TP addresses of functional requests:
// the tester sends on tester (whose receive identifier no ECU sends on),
// and the ECU receives on ecu.
func (e ECU) FunctionalAddresses() (tester, ecu isotp.Address) {
	a := e.Addressing
	if a.Mode == NormalFixed {
		f := *a.FunctionalAddress
		return isotp.Address{Mode: isotp.NormalFixed, Source: *a.TesterAddress, Target: f, Functional: true},
			isotp.Address{Extended29: true, Functional: true,
				RxID: 0x18DB<<16 | uint32(f)<<8 | uint32(*a.TesterAddress),
				TxID: 0x18DA<<16 | uint32(*a.TesterAddress)<<8 | uint32(*a.ECUAddress)}
	}
	// The tester's functional Conn receives on 0x7FF, which Validate keeps
	// free, so that it never answers anyone's frames.
	return isotp.Address{TxID: a.FunctionalID, RxID: testerFunctionalRx, Functional: true},
		isotp.Address{TxID: a.ResponseID, RxID: a.FunctionalID, Functional: true}
}

// Bus returns the named bus of the vehicle.
func (v *Vehicle) Bus(name string) (Bus, bool) {
	for _, b := range v.Buses {
		if b.Name == name {
			return b, true
		}
	}
	return Bus{}, false
}

// ECU returns the named ECU of the vehicle.
func (v *Vehicle) ECU(name string) (ECU, bool) {
	for _, e := range v.ECUs {
		if e.Name == name {
			return e, true
		}
	}
	return ECU{}, false
}
