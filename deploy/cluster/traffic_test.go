package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/deploy/inject"
)

// mtlsClient is an HTTPS client with this process's SVID (from the node's
// SPIRE agent: uid 0 is clientID) that accepts only an injected warden.
func (e *env) mtlsClient(t *testing.T) *http.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(e.spire.AgentAddr())))
	if err != nil {
		t.Fatalf("the client's SVID from %s: %v", e.spire.AgentAddr(), err)
	}
	t.Cleanup(func() { src.Close() })
	svid, err := src.GetX509SVID()
	if err != nil || svid.ID.String() != e.clientID {
		t.Fatalf("the client's SVID: %v %v", svid, err)
	}
	conf := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(e.wardenID)))
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func requestID(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "cluster-" + hex.EncodeToString(b)
}

// demoAnswer is the demo app's echo.
type demoAnswer struct {
	App     string            `json:"app"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
}

// 2. Through the pod IP and the app's port: a client with an SVID reaches
// the app through warden (the app sees XFCC, warden logs the decision); a
// client without a certificate is refused; plaintext to the app's port
// never reaches the app.
func TestClusterMTLSThroughPodIP(t *testing.T) {
	e := cluster(t)
	p := e.demo(t)
	client := e.mtlsClient(t)
	appURL := "https://" + net.JoinHostPort(p.Status.PodIP, "8080")

	id := requestID(t)
	req, _ := http.NewRequest(http.MethodGet, appURL+"/orders/7", nil)
	req.Header.Set("X-Request-Id", id)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("mTLS to the pod's app port: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got demoAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.App != "warden demo-app" || got.Path != "/orders/7" {
		t.Fatalf("answer %d %s", resp.StatusCode, body)
	}
	// The TLS handshake on port 8080 was warden's (the client checked
	// its SVID), and the app learnt the caller from warden's XFCC.
	xfcc := got.Headers["X-Forwarded-Client-Cert"]
	if !strings.Contains(xfcc, "By="+e.wardenID) || !strings.Contains(xfcc, "URI="+e.clientID) {
		t.Errorf("XFCC %q", xfcc)
	}
	line := e.findLog(t, p, inject.ContainerName, "the decision on "+id, func(m map[string]any) bool {
		w, _ := m["warden"].(map[string]any)
		return w != nil && w["event"] == "decision" && w["request_id"] == id
	})
	if w := line["warden"].(map[string]any); w["allow"] != true {
		t.Errorf("decision %v", line)
	}
	if in, _ := line["input"].(map[string]any); in == nil || fmt.Sprint(in["peer"]) == "" || !strings.Contains(fmt.Sprint(in["peer"]), e.clientID) {
		t.Errorf("the decision's peer: %v", line["input"])
	}

	// Without a client certificate: the handshake is refused.
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the refusal is the point, not the server's name
	}}}
	defer noCert.CloseIdleConnections()
	if resp, err := noCert.Get(appURL + "/orders/7"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Errorf("a client without a certificate got %d %s", resp.StatusCode, b)
	} else if !strings.Contains(err.Error(), "tls: ") {
		t.Errorf("a client without a certificate: %v, want a TLS alert", err)
	}

	// Plaintext to the app's port lands on warden's TLS listener: no
	// answer from the app.
	plain := &http.Client{Timeout: 10 * time.Second}
	defer plain.CloseIdleConnections()
	if resp, err := plain.Get("http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/orders/7"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "warden demo-app") {
			t.Errorf("plaintext reached the app around warden: %d %s", resp.StatusCode, b)
		}
	}
	// Nor does any other port of the pod but warden's two reach it: the
	// app listens on 0.0.0.0:8080 only, and 8080 is warden's.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(p.Status.PodIP, "8081"), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("port 8081 of the pod accepted a connection")
	}
}

// 5. An injected Job completes when its app exits (the sidecar does not
// hold it), and a slow request in flight when its pod is deleted gets its
// whole answer.
func TestClusterJobCompletesAndDrain(t *testing.T) {
	e := cluster(t)
	e.namespace(t, "batch", true)
	e.apply(t, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: batch}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {app: once}
      annotations: {warden.io/spiffe-socket-source: hostpath}
    spec:
      restartPolicy: Never
      containers:
        - name: app
          image: %s
          imagePullPolicy: Never
          args: [version]
          securityContext: {runAsUser: 1000}
`, WardenImage))
	done := e.waitPod(t, "batch", "app=once", "Succeeded", 3*time.Minute, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if done.Status.Phase != corev1.PodSucceeded || len(done.Spec.InitContainers) != 2 {
		t.Fatalf("the Job's pod: phase %s, init containers %d", done.Status.Phase, len(done.Spec.InitContainers))
	}
	if s := containerStatus(done, inject.ContainerName); s == nil || s.State.Terminated == nil {
		t.Errorf("warden of the completed Job: %+v", s)
	}
	var job struct {
		Status struct {
			Succeeded  int `json:"succeeded"`
			Conditions []struct{ Type, Status string }
		} `json:"status"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if err := e.node.Do(context.Background(), "GET", "/apis/batch/v1/namespaces/batch/jobs/once", nil, &job); err != nil {
			t.Fatal(err)
		}
		if job.Status.Succeeded == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Job did not complete: %+v", job.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The drain: a request the app answers after 4s, in flight when the
	// pod is deleted.
	e.apply(t, demoDeployment("batch", "slow", nil))
	p := e.waitPod(t, "batch", "app=slow", "Ready", 3*time.Minute, ready)
	client := e.mtlsClient(t)
	wrote := make(chan struct{})
	type result struct {
		code int
		body []byte
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "https://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/slow?delay=4s", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) },
		}))
		resp, err := client.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{code: resp.StatusCode, body: b, err: err}
	}()
	select {
	case <-wrote:
	case r := <-res:
		t.Fatalf("the slow request ended before it was sent: %+v", r)
	case <-time.After(30 * time.Second):
		t.Fatal("the slow request was not sent in 30s")
	}
	deleted := time.Now()
	if err := e.node.Do(context.Background(), "DELETE", "/api/v1/namespaces/batch/pods/"+p.Name, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The kubelet has begun stopping the pod (a deletion timestamp is
	// set at once; the app's SIGTERM follows) while the request waits.
	var r result
	select {
	case r = <-res:
	case <-time.After(60 * time.Second):
		t.Fatal("no answer to the slow request in 60s")
	}
	var got demoAnswer
	if r.err != nil || r.code != http.StatusOK || json.Unmarshal(r.body, &got) != nil || got.Path != "/slow" {
		t.Fatalf("the in-flight request: %d %s %v", r.code, r.body, r.err)
	}
	if time.Since(deleted) > 30*time.Second {
		t.Errorf("the answer came %s after the deletion", time.Since(deleted))
	}
	// warden drained: its log says so, in the deleted pod's log file.
	e.findLog(t, p, inject.ContainerName, "draining", func(m map[string]any) bool { return m["event"] == "draining" })
}
