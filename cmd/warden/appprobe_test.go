package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/warden-sidecar/warden/internal/appprobe"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// The real binary serves the app's probes from WARDEN_APP_PROBES on its
// admin address: a probe reaches the app with its path and headers, a
// failing one is 503 and logged, an unknown one 404, and the probe's
// credential appears in no log line (the startup line shows the variable
// redacted).
func TestAppProbesThroughTheBinary(t *testing.T) {
	token := secret(t, "probe header", "Bearer probe-"+strconv.Itoa(testenv.FreePort(t))+"-s3cret")
	appAddr, _ := slowApp(t)
	_, appPort, _ := net.SplitHostPort(appAddr)
	port, _ := strconv.Atoi(appPort)
	closedPort := testenv.FreePort(t)
	probes, err := appprobe.Set{
		"app/readiness": {HTTPGet: &appprobe.HTTPGet{Path: "/healthz?access_token=abc", Port: port,
			HTTPHeaders: []appprobe.Header{{Name: "Authorization", Value: token}}}, TimeoutSeconds: 2},
		"app/liveness": {HTTPGet: &appprobe.HTTPGet{Path: "/live", Port: closedPort}},
	}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	w := startDevSidecar(t, "WARDEN_APP_PROBES="+probes)

	code, body := get(t, w.admin+"/app-health/app/readiness")
	if code != http.StatusOK || !strings.HasPrefix(body, "app saw /healthz") {
		t.Errorf("readiness: %d %q", code, body)
	}
	code, body = get(t, w.admin+"/app-health/app/liveness")
	var e struct{ Error string }
	_ = json.Unmarshal([]byte(body), &e)
	if code != http.StatusServiceUnavailable || e.Error != "app_unreachable" {
		t.Errorf("liveness of a closed port: %d %q", code, body)
	}
	line := w.find(t, func(l map[string]any) bool { return l["event"] == "app_probe_failed" })
	if line["container"] != "app" || line["probe"] != "liveness" || line["outcome"] != "app_unreachable" {
		t.Errorf("log line %v", line)
	}
	if code, _ := get(t, w.admin+"/app-health/app/startup"); code != http.StatusNotFound {
		t.Errorf("a probe not configured: %d", code)
	}
	start := w.find(t, func(l map[string]any) bool { _, ok := l["settings"]; return ok })
	shown, _ := start["settings"].(map[string]any)["WARDEN_APP_PROBES"].(string)
	if !strings.Contains(shown, `"Authorization","value":"REDACTED"`) || strings.Contains(shown, "access_token=abc") {
		t.Errorf("startup line shows WARDEN_APP_PROBES as %q", shown)
	}
}
