package controlplane

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCacheKeyChangesWithEveryInput(t *testing.T) {
	base := cacheKey([]byte("module m"), []byte("sum"), "linux", "amd64", []string{"-trimpath"})
	if again := cacheKey([]byte("module m"), []byte("sum"), "linux", "amd64", []string{"-trimpath"}); again != base {
		t.Fatalf("cacheKey is not stable: %s, then %s", base, again)
	}
	for _, tc := range []struct {
		name         string
		goMod, goSum string
		goos, goarch string
		flags        []string
	}{
		{"go.mod", "module n", "sum", "linux", "amd64", []string{"-trimpath"}},
		{"go.sum", "module m", "sum2", "linux", "amd64", []string{"-trimpath"}},
		{"GOOS", "module m", "sum", "darwin", "amd64", []string{"-trimpath"}},
		{"GOARCH", "module m", "sum", "linux", "arm64", []string{"-trimpath"}},
		{"flags", "module m", "sum", "linux", "amd64", []string{"-trimpath", "-race"}},
		// Parts are length-prefixed, so moving bytes between them is a change.
		{"boundary", "module ms", "um", "linux", "amd64", []string{"-trimpath"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cacheKey([]byte(tc.goMod), []byte(tc.goSum), tc.goos, tc.goarch, tc.flags); got == base {
				t.Errorf("changing %s keeps the key %s", tc.name, got)
			}
		})
	}
}

func TestKubeVersionFlagsStampBothVersionPackages(t *testing.T) {
	got := kubeVersionFlags("v1.35.4")
	for _, want := range []string{
		"k8s.io/component-base/version.gitVersion=v1.35.4",
		"k8s.io/component-base/version.gitMajor=1",
		"k8s.io/component-base/version.gitMinor=35",
		"k8s.io/client-go/pkg/version.gitVersion=v1.35.4",
		"k8s.io/client-go/pkg/version.gitMinor=35",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("kubeVersionFlags(v1.35.4) = %q, lacks %q", got, want)
		}
	}
}

func TestIsMainModuleReadsTheModuleLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, goMod string
		want        bool
	}{
		{"main", "// comment\nmodule github.com/ecu-kubelet/ecu-kubelet\n\ngo 1.26\n", true},
		{"quoted", "module \"github.com/ecu-kubelet/ecu-kubelet\"\n", true},
		{"tools module", "module github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane/tools/kube\n", false},
		{"other", "module example.com/other\n", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".mod")
			if err := os.WriteFile(path, []byte(tc.goMod), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := isMainModule(path); got != tc.want {
				t.Errorf("isMainModule(%q) = %v, want %v", tc.goMod, got, tc.want)
			}
		})
	}
	if isMainModule(filepath.Join(dir, "missing")) {
		t.Errorf("isMainModule of a missing file is true")
	}
}

func TestFindToolsDirFindsEveryToolsModule(t *testing.T) {
	dir, err := findToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range toolsModules {
		for _, f := range []string{"go.mod", "go.sum"} {
			if _, err := os.Stat(filepath.Join(dir, m.name, f)); err != nil {
				t.Errorf("tools module %s: %v", m.name, err)
			}
		}
	}
}

// TestEnsureBinariesReportsUnavailable runs EnsureBinaries against an
// empty cache where the programs cannot be built, and wants ErrUnavailable,
// which makes Start skip rather than fail outside CI.
func TestEnsureBinariesReportsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"no go command", map[string]string{"PATH": t.TempDir()}},
		{"no module proxy", map[string]string{"GOPROXY": "off", "GOMODCACHE": t.TempDir(), "GOFLAGS": "-modcacherw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
			t.Setenv("GOCACHE", t.TempDir())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := EnsureBinaries(context.Background(), t.Logf)
			t.Log(err)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("EnsureBinaries: err = %v, want ErrUnavailable", err)
			}
		})
	}
}
