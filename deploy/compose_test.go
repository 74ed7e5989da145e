package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

// composeSetups are the compose setups of deploy/docker (docs/docker.md)
// and the facts each must keep.
var composeSetups = []struct {
	name    string
	file    string // compose file, relative to this directory
	vehicle string // the vehicle file the simulator, provider and test load
	vcan    bool   // the buses are vcan interfaces that netns creates
}{
	{name: "vcan", file: "docker/compose.yaml", vehicle: "docker/vehicle-vcan.yaml", vcan: true},
	{name: "socketcand", file: "docker/compose.socketcand.yaml", vehicle: "docker/vehicle-socketcand.yaml"},
}

// Names and paths the compose files, the scripts and the Dockerfile agree
// on.
const (
	composeNetns         = "netns"   // holds the network namespace the services share
	composeSimService    = "sim"     // the name socketcand:// URLs reach the simulator by
	composeSharedVolume  = "shared"  // the control plane's files and the firmware
	composeSharedTarget  = "/shared" // where every service mounts it
	composeVehicleTarget = "/config/vehicle.yaml"
	composeSourceDir     = "/src/" // the repository in the tools image
)

// composeConfig is the part of `docker-compose config` output the tests
// read; docker-compose has resolved paths and merged the YAML anchors.
type composeConfig struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
		Target     string `yaml:"target"`
	} `yaml:"build"`
	Image       string                       `yaml:"image"`
	Command     []string                     `yaml:"command"`
	Entrypoint  any                          `yaml:"entrypoint"`
	User        string                       `yaml:"user"`
	Privileged  bool                         `yaml:"privileged"`
	CapAdd      []string                     `yaml:"cap_add"`
	Devices     []any                        `yaml:"devices"`
	NetworkMode string                       `yaml:"network_mode"`
	Environment map[string]string            `yaml:"environment"`
	Volumes     []composeMount               `yaml:"volumes"`
	Tmpfs       []string                     `yaml:"tmpfs"`
	DependsOn   map[string]composeDependency `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Restart string `yaml:"restart"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

// composeMount is a service's volume in either form docker-compose prints:
// "SOURCE:TARGET[:MODE]" (version 1) or a mapping (version 2).
type composeMount struct {
	Source, Target string
	ReadOnly       bool
}

// UnmarshalYAML reads either form.
func (m *composeMount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return fmt.Errorf("volume %q: want SOURCE:TARGET[:MODE]", n.Value)
		}
		m.Source, m.Target = parts[0], parts[1]
		m.ReadOnly = len(parts) == 3 && slices.Contains(strings.Split(parts[2], ","), "ro")
		return nil
	}
	var long struct {
		Source   string `yaml:"source"`
		Target   string `yaml:"target"`
		ReadOnly bool   `yaml:"read_only"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	*m = composeMount{Source: long.Source, Target: long.Target, ReadOnly: long.ReadOnly}
	return nil
}

// mount returns the service's mount at target.
func (s composeService) mount(target string) (composeMount, bool) {
	for _, m := range s.Volumes {
		if m.Target == target {
			return m, true
		}
	}
	return composeMount{}, false
}

// dockerCompose returns the docker-compose program; without it the test
// is skipped, or fails where CI=true.
func dockerCompose(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("docker-compose")
	if err != nil {
		msg := "docker-compose is not installed; install it (Debian: apt-get install docker-compose) to validate the compose files: `docker-compose config` needs no Docker daemon"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// loadComposeConfig runs `docker-compose -f file config`, which fails on
// any error in the file (schema, references, interpolation), and decodes
// its output.
func loadComposeConfig(t *testing.T, program, file string) composeConfig {
	t.Helper()
	cmd := exec.Command(program, "-f", file, "config")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No .env or COMPOSE_* of the caller's may change what is checked.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "COMPOSE_") })
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker-compose -f %s config: %v\n%s", file, err, stderr.Bytes())
	}
	var c composeConfig
	if err := yaml.Unmarshal(stdout.Bytes(), &c); err != nil {
		t.Fatalf("docker-compose -f %s config printed what does not decode: %v\n%s", file, err, stdout.Bytes())
	}
	return c
}

// TestComposeFilesAreValid runs docker-compose config on each setup and
// checks the structure the scenario depends on: who holds which
// capability, who shares which network namespace and volume, which image
// and vehicle file each service runs, and that the test's exit status can
// be the setup's.
func TestComposeFilesAreValid(t *testing.T) {
	program := dockerCompose(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	providerUID := imageUser(t)
	checkDockerfiles(t)
	ecuKubelet := goBuild(t, t.TempDir(), "./cmd/ecu-kubelet")
	for _, setup := range composeSetups {
		t.Run(setup.name, func(t *testing.T) {
			c := loadComposeConfig(t, program, setup.file)
			svc := func(name string) composeService {
				s, ok := c.Services[name]
				if !ok {
					t.Fatalf("%s has no service %s", setup.file, name)
				}
				return s
			}
			want := []string{"controlplane", composeNetns, "provider", composeSimService, "test"}
			if got := slices.Sorted(maps.Keys(c.Services)); !slices.Equal(got, want) {
				t.Errorf("services %v, want %v", got, want)
			}
			v, err := vehicle.Load(setup.vehicle)
			if err != nil {
				t.Fatalf("the setup's vehicle: %v", err)
			}
			vehicleAbs := filepath.Join(root, "deploy", setup.vehicle)

			for name, s := range c.Services {
				// Capabilities: only netns, only NET_ADMIN, only to create vcan.
				wantCaps := []string(nil)
				if name == composeNetns && setup.vcan {
					wantCaps = []string{"NET_ADMIN"}
				}
				if !slices.Equal(s.CapAdd, wantCaps) || s.Privileged || len(s.Devices) > 0 {
					t.Errorf("%s: cap_add %v, privileged %v, devices %v; want cap_add %v and nothing else", name, s.CapAdd, s.Privileged, s.Devices, wantCaps)
				}
				// The test's exit status ends the setup only if nothing
				// restarts; the scripts the services run exist.
				if s.Restart != "" && s.Restart != "no" {
					t.Errorf("%s: restart %q; with a restart policy, --abort-on-container-exit does not end the setup when it fails", name, s.Restart)
				}
				for _, arg := range append(slices.Clone(s.Command), healthcheckArgs(s)...) {
					if script, ok := strings.CutPrefix(arg, composeSourceDir); ok {
						checkExecutable(t, name, filepath.Join(root, script))
					}
				}
				if s.Entrypoint != nil || s.User != "" {
					t.Errorf("%s: entrypoint %v, user %q; the services run as their image says", name, s.Entrypoint, s.User)
				}
				// Nothing of the host but the vehicle file: no /dev, no
				// Docker socket.
				for _, m := range s.Volumes {
					if m.Source != composeSharedVolume && m.Source != vehicleAbs {
						t.Errorf("%s: mounts %s at %s; the services get the %s volume and %s only", name, m.Source, m.Target, composeSharedVolume, vehicleAbs)
					}
				}
				// ecu-kubelet takes the arguments the image runs it with
				// (with --help it parses them, then only prints its usage).
				var args [][]string
				if s.Build != nil && s.Build.Dockerfile == "deploy/Dockerfile" {
					args = append(args, s.Command)
				}
				if hc := healthcheckArgs(s); len(hc) > 0 && hc[0] == "/usr/local/bin/ecu-kubelet" {
					args = append(args, hc[1:])
				}
				for _, a := range args {
					if out, err := exec.Command(ecuKubelet, append(slices.Clone(a), "--help")...).CombinedOutput(); err != nil {
						t.Errorf("%s: ecu-kubelet %s: %v\n%s", name, strings.Join(a, " "), err, out)
					}
				}
				// Healthchecks exist where a dependency waits for them.
				for dep, d := range s.DependsOn {
					if d.Condition == "service_healthy" && c.Services[dep].Healthcheck == nil {
						t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
					}
				}
				// Images: the simulator and the provider run the release
				// image users deploy; the rest the tools image.
				wantDockerfile, wantTarget := "deploy/docker/tools.Dockerfile", ""
				if name == composeSimService || name == "provider" {
					wantDockerfile, wantTarget = "deploy/Dockerfile", "release"
				}
				if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != wantDockerfile || s.Build.Target != wantTarget {
					t.Errorf("%s: build %+v; want context %s, dockerfile %s, target %q", name, s.Build, root, wantDockerfile, wantTarget)
				}
			}

			// One network namespace: the control plane listens on
			// loopback only (its kubeconfig says 127.0.0.1), and the API
			// server reaches the kubelet API at the nodes' 127.0.0.1.
			netns := svc(composeNetns)
			if netns.NetworkMode != "" {
				t.Errorf("netns: network_mode %q; it holds the namespace the others join", netns.NetworkMode)
			}
			shared := []string{"controlplane", "provider", "test"}
			if setup.vcan {
				shared = append(shared, composeSimService) // it sits on the vcan interfaces
			} else if m := svc(composeSimService).NetworkMode; m != "" {
				t.Errorf("sim: network_mode %q; over socketcand it serves on the compose network, as %s", m, composeSimService)
			}
			for _, name := range shared {
				s := svc(name)
				if s.NetworkMode != "service:"+composeNetns {
					t.Errorf("%s: network_mode %q, want service:%s", name, s.NetworkMode, composeNetns)
				}
				if d, ok := s.DependsOn[composeNetns]; name != "test" && (!ok || d.Condition != "service_healthy") {
					t.Errorf("%s: depends_on %v; want %s healthy first (its vcan interfaces exist then)", name, s.DependsOn, composeNetns)
				}
			}

			// The buses: vcan interfaces netns creates, or socketcand at the
			// simulator's service name and --listen port.
			var ifaces []string
			for _, b := range v.Buses {
				u, err := url.Parse(b.URL)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case setup.vcan && u.Scheme == "socketcan" && strings.HasPrefix(u.Host, "vcan"):
					arg := u.Host
					if b.FD {
						arg += ":72"
					}
					ifaces = append(ifaces, arg)
				case !setup.vcan && u.Scheme == "socketcand" && u.Hostname() == composeSimService:
					if listen := "0.0.0.0:" + u.Port(); !containsSeq(svc(composeSimService).Command, "--listen", listen) {
						t.Errorf("bus %s is at %s, but sim's command %v does not serve --listen %s", b.Name, b.URL, svc(composeSimService).Command, listen)
					}
				default:
					t.Errorf("bus %s: URL %s, want socketcan://vcanN (vcan) or socketcand://%s:PORT/%s", b.Name, b.URL, composeSimService, b.Name)
				}
			}
			if len(netns.Command) == 0 {
				t.Fatal("netns: no command")
			}
			if got := netns.Command[1:]; !slices.Equal(got, ifaces) {
				t.Errorf("netns creates %v; the vehicle's buses want %v", got, ifaces)
			}

			// The vehicle file: the same one for all three, at the path
			// their commands name.
			for name, arg := range map[string][]string{
				composeSimService: {"--vehicle", composeVehicleTarget},
				"provider":        {"--config=" + composeVehicleTarget},
				"test":            {composeVehicleTarget},
			} {
				s := svc(name)
				m, ok := s.mount(composeVehicleTarget)
				if !ok || m.Source != vehicleAbs || !m.ReadOnly {
					t.Errorf("%s: mount at %s is %+v; want %s read-only", name, composeVehicleTarget, m, vehicleAbs)
				}
				if !containsSeq(s.Command, arg...) {
					t.Errorf("%s: command %v does not name %v", name, s.Command, arg)
				}
			}

			// The kubeconfig and the CA travel on the shared volume: the
			// control plane writes it, the provider only reads it.
			if _, ok := c.Volumes[composeSharedVolume]; !ok {
				t.Errorf("no named volume %s", composeSharedVolume)
			}
			for name, readOnly := range map[string]bool{"controlplane": false, "provider": true, "test": false} {
				m, ok := svc(name).mount(composeSharedTarget)
				if !ok || m.Source != composeSharedVolume || m.ReadOnly != readOnly {
					t.Errorf("%s: mount at %s is %+v; want volume %s, read-only %v", name, composeSharedTarget, m, composeSharedVolume, readOnly)
				}
			}
			provider := svc("provider")
			for _, arg := range []string{"--kubeconfig=/shared/provider/kubeconfig", "--client-ca-file=/shared/provider/ca.crt", "--node-address=127.0.0.1", "--listen=127.0.0.1:10250"} {
				if !slices.Contains(provider.Command, arg) {
					t.Errorf("provider: command %v lacks %s", provider.Command, arg)
				}
			}
			if got := svc("test").Environment["KUBECONFIG"]; got != "/shared/controlplane/kubeconfig" {
				t.Errorf("test: KUBECONFIG %q, want the control plane's /shared/controlplane/kubeconfig", got)
			}
			for _, dep := range []string{"controlplane", composeSimService} {
				if d := provider.DependsOn[dep]; d.Condition != "service_healthy" {
					t.Errorf("provider: depends on %s %q; want service_healthy (its kubeconfig, its buses)", dep, d.Condition)
				}
			}

			// The provider's user owns what controlplane.sh copies and the
			// state directory: the Dockerfile's USER.
			if got := svc("controlplane").Environment["PROVIDER_UID"]; got != providerUID {
				t.Errorf("controlplane: PROVIDER_UID %q; deploy/Dockerfile runs as %s", got, providerUID)
			}
			wantTmpfs := fmt.Sprintf("/var/lib/ecu-kubelet:uid=%s,gid=", providerUID)
			if len(provider.Tmpfs) != 1 || !strings.HasPrefix(provider.Tmpfs[0], wantTmpfs) || !slices.Contains(provider.Command, "--state-dir=/var/lib/ecu-kubelet/state") {
				t.Errorf("provider: tmpfs %v, command %v; want its state directory in a tmpfs %s... the user owns", provider.Tmpfs, provider.Command, wantTmpfs)
			}

			// The test is the scenario, and the provider's address on the
			// nodes is where the test's kubectl exec goes.
			if cmd := svc("test").Command; len(cmd) == 0 || cmd[0] != composeSourceDir+"deploy/docker/test.sh" {
				t.Errorf("test: command %v, want deploy/docker/test.sh", cmd)
			}
		})
	}
}

// TestComposeVehiclesAreAlike checks that the two setups' vehicles differ
// only in their buses' URLs, so that both run the same scenario.
func TestComposeVehiclesAreAlike(t *testing.T) {
	var first *vehicle.Vehicle
	for _, setup := range composeSetups {
		v, err := vehicle.Load(setup.vehicle)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(v.ECUs, func(e vehicle.ECU) bool { return e.Name == "brake" && e.HardwareID == "BRK-HW-01" }) {
			t.Errorf("%s: no ECU brake of hardware BRK-HW-01, which test.sh flashes", setup.vehicle)
		}
		for i := range v.Buses {
			v.Buses[i].URL = ""
		}
		if first == nil {
			first = v
		} else if !reflect.DeepEqual(v, first) {
			t.Errorf("%s differs from %s in more than the bus URLs", setup.vehicle, composeSetups[0].vehicle)
		}
	}
}

// TestComposeScriptsParse checks every script the setups run with bash -n,
// and with shellcheck where it is installed (CI has none).
func TestComposeScriptsParse(t *testing.T) {
	scripts, err := filepath.Glob("docker/*.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts in docker/: %v", err)
	}
	shellcheck, _ := exec.LookPath("shellcheck")
	for _, script := range scripts {
		t.Run(filepath.Base(script), func(t *testing.T) {
			if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n %s: %v\n%s", script, err, out)
			}
			if shellcheck == "" {
				t.Log("shellcheck is not installed; bash -n only")
				return
			}
			if out, err := exec.Command(shellcheck, script).CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s: %v\n%s", script, err, out)
			}
		})
	}
}

// TestComposeScenarioWithoutDocker runs the socketcand setup's scripts and
// commands as processes (deploy/docker/rehearse.sh) in a network namespace
// of their own: the only run of controlplane.sh and test.sh that CI, with no
// Docker daemon, can do. It needs root for the namespace (unshare --net),
// and runs the provider as the image's user when it has root.
func TestComposeScenarioWithoutDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, a simulator and a provider; not with -short")
	}
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("unshare --net: %v %s; the scenario runs in a network namespace of its own, where its fixed ports are free: run as root (util-linux's unshare)", err, bytes.TrimSpace(out))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// The programs the tools image holds, built the same way.
	bin := t.TempDir()
	goBuild(t, bin, "./cmd/ecu-kubelet")
	goBuild(t, bin, "./provider/internal/controlplane/cmd/controlplane")
	cmd := exec.Command(filepath.Join(bin, "controlplane"), "build")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("controlplane build (make controlplane builds the programs ahead): %v", err)
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "kubectl" {
			if err := os.Symlink(f[1], filepath.Join(bin, "kubectl")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The provider runs as another user: it must reach its files.
	work := filepath.Join(t.TempDir(), "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Dir(filepath.Dir(work)), filepath.Dir(work)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd = exec.Command("unshare", "--net", "bash", "deploy/docker/rehearse.sh", work)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unshare --net bash deploy/docker/rehearse.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// imageUser returns the numeric user of deploy/Dockerfile's final stages.
func imageUser(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, m := range regexp.MustCompile(`(?m)^USER\s+(\d+)(?::\d+)?\s*$`).FindAllSubmatch(data, -1) {
		users = append(users, string(m[1]))
	}
	if users = slices.Compact(users); len(users) != 1 {
		t.Fatalf("deploy/Dockerfile: USER lines name users %v; want one numeric user in every final stage", users)
	}
	return users[0]
}

// checkDockerfiles checks what the compose files take from the two
// Dockerfiles: deploy/Dockerfile has the release stage the simulator and
// the provider run, and the tools image is built with the same Go.
func checkDockerfiles(t *testing.T) {
	t.Helper()
	goVersion := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`)
	var versions []string
	for _, file := range []string{"Dockerfile", "docker/tools.Dockerfile"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := goVersion.FindSubmatch(data)
		if m == nil {
			t.Fatalf("%s: no ARG GO_VERSION=...", file)
		}
		versions = append(versions, string(m[1]))
		if file == "Dockerfile" && !regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+release\s*$`).Match(data) {
			t.Errorf("deploy/Dockerfile has no stage named release, which the compose files build")
		}
	}
	if versions[0] != versions[1] {
		t.Errorf("GO_VERSION %s in deploy/Dockerfile, %s in docker/tools.Dockerfile; keep them one", versions[0], versions[1])
	}
}

// goBuild builds the main package pkg of the repository into dir and
// returns the program's path.
func goBuild(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// checkExecutable fails unless path is an executable file.
func checkExecutable(t *testing.T, service, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.Errorf("%s runs %s, which does not exist", service, path)
	case err != nil:
		t.Error(err)
	case fi.Mode()&0o111 == 0:
		t.Errorf("%s runs %s, which is not executable (chmod +x, and commit the mode)", service, path)
	}
}

// healthcheckArgs returns the arguments of a CMD healthcheck.
func healthcheckArgs(s composeService) []string {
	if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 || s.Healthcheck.Test[0] != "CMD" {
		return nil
	}
	return s.Healthcheck.Test[1:]
}

// containsSeq reports whether seq occurs in args, in order and adjacent.
func containsSeq(args []string, seq ...string) bool {
	for i := 0; i+len(seq) <= len(args); i++ {
		if slices.Equal(args[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}
