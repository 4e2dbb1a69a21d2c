package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// The demo app is the cluster tests' app (deploy/cluster): on SIGTERM it
// must finish the requests it has, or a pod's drain would fail for the
// app's sake rather than warden's. That serveDemoOn returns only once they
// are done (the process exits when it returns) is what
// TestClusterJobCompletesAndDrain proves: a process is needed for that.
func TestDemoAppFinishesInFlightRequestsOnShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serveDemoOn(ctx, ln, io.Discard) }()
	base := "http://" + ln.Addr().String()

	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(base + "/x?delay=forever")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `{"error":"bad_delay"}`) {
		t.Errorf("a bad delay: %d %s", resp.StatusCode, b)
	}

	// A slow request on a fresh connection (a reused one could have been
	// closed after the 400, and the retry would find the listener
	// closed); the app is told to stop once it is sent.
	client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, base+"/slow?delay=500ms", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { cancel() },
	}))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatalf("the request in flight at shutdown: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"path": "/slow"`) {
		t.Errorf("the request in flight at shutdown: %d %s", resp.StatusCode, b)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serveDemoOn: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveDemoOn did not return after the shutdown")
	}
	if _, err := client.Get(base + "/"); err == nil {
		t.Error("the app still answers after the shutdown")
	}
}
