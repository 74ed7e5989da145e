package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// writeImage writes a firmware image and returns its path and digest.
func writeImage(t *testing.T, dir, version string, counter uint32, payload []byte) (string, string) {
	t.Helper()
	img, err := image.Build(image.Header{Version: version, HardwareID: "BRAKE-HW-2", ReleaseCounter: counter}, payload)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, version+".img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	d := image.Digest(img)
	return p, fmt.Sprintf("sha256:%x", d)
}

// authRegistry is go-containerregistry's registry on loopback behind basic
// authentication as ci:pw.
func authRegistry(t *testing.T) string {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="fw"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestFirmwarePackInspectPull(t *testing.T) {
	dir := t.TempDir()
	payload := bytes.Repeat([]byte("firmware"), 1024)
	oldPath, oldDigest := writeImage(t, dir, "1.0.0", 1, payload)
	payload[100] ^= 0xff
	newPath, newDigest := writeImage(t, dir, "1.1.0", 2, payload)
	host := authRegistry(t)
	secret := filepath.Join(dir, "secret.json")
	auth := base64.StdEncoding.EncodeToString([]byte("ci:pw"))
	if err := os.WriteFile(secret, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, host, auth), 0o600); err != nil {
		t.Fatal(err)
	}
	layout := "oci-layout:" + filepath.Join(dir, "layout") + ":1.1.0"
	remote := host + "/fw/brake:1.1.0"

	var stdout, stderr bytes.Buffer
	err := run(t.Context(), &stdout, &stderr, "firmware", "pack", "--hardware-id", "BRAKE-HW-2", "--version", "1.1.0",
		"--release-counter", "2", newPath, "--delta-from", oldPath, "-o", layout, "--push", remote,
		"--plain-http", "--pull-secret", secret)
	if err != nil {
		t.Fatalf("pack: %v (%s)", err, stderr.String())
	}
	cache := filepath.Join(dir, "cache")
	if err := run(t.Context(), &stdout, &stderr, "firmware", "pull", remote, "-o", cache, "--plain-http", "--pull-secret", secret); err != nil {
		t.Fatalf("pull: %v", err)
	}
	for _, ref := range []string{layout, remote, "oci-layout:" + cache + ":1.1.0"} {
		stdout.Reset()
		if err := run(t.Context(), &stdout, &stderr, "firmware", "inspect", ref, "--plain-http", "--pull-secret", secret); err != nil {
			t.Fatalf("inspect %s: %v", ref, err)
		}
		got := strings.Join(strings.Fields(stdout.String()), " ")
		for _, want := range []string{"version 1.1.0", "image " + newDigest, "delta from " + oldDigest, "release counter 2"} {
			if !strings.Contains(got, want) {
				t.Errorf("inspect %s: output lacks %q:\n%s", ref, want, stdout.String())
			}
		}
	}
	if err := run(t.Context(), &stdout, &stderr, "firmware", "inspect", remote, "--plain-http"); err == nil {
		t.Error("inspect without credentials succeeded")
	}
}

func TestFirmwarePackRefusesContradictingFlags(t *testing.T) {
	dir := t.TempDir()
	img, _ := writeImage(t, dir, "1.1.0", 2, []byte("payload"))
	out := "oci-layout:" + filepath.Join(dir, "layout") + ":x"
	for _, args := range [][]string{
		{img, "--version", "1.2.0", "-o", out},
		{img, "--release-counter", "3", "-o", out},
		{img, "--hardware-id", "WIPER", "-o", out},
		{img},
		{img, "-o", filepath.Join(dir, "plain-dir")},
		{img, "--push", "registry.example.com/fw:1", "--plain-http"},
	} {
		if err := run(t.Context(), io.Discard, io.Discard, append([]string{"firmware", "pack"}, args...)...); err == nil {
			t.Errorf("firmware pack %q succeeded, want an error", args)
		}
	}
}
