package netinit

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/warden-sidecar/warden/agent/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what DryRun prints now")

// The dry-run output is what a reviewer reads to see every change to the
// rules: each case is a golden file, built from the environment the way
// `warden init` builds it.
func TestDryRunGolden(t *testing.T) {
	tests := []struct {
		golden string
		env    map[string]string
	}{
		{"default", nil},
		{"several-ports", map[string]string{"WARDEN_REDIRECT_PORTS": "8080, 9090,3000"}},
		{"all-ports", map[string]string{"WARDEN_REDIRECT_PORTS": "*"}},
		{"custom-uid-and-ports", map[string]string{
			"WARDEN_PROXY_UID":      "2102",
			"WARDEN_INBOUND_ADDR":   "[::]:8443",
			"WARDEN_ADMIN_ADDR":     "0.0.0.0:9901",
			"WARDEN_UPSTREAM_ADDR":  "127.0.0.1:5000",
			"WARDEN_REDIRECT_PORTS": "",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			c, err := config.InitFromEnv(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := DryRun(&got, c); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.golden+".golden")
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./deploy/netinit -update writes it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("DryRun differs from %s (go test ./deploy/netinit -update rewrites it):\n%s", path, got.String())
			}
		})
	}
}
