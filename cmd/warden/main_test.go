package main

// End-to-end tests: they build the real binary, start it with environment
// variables as a user would, and talk to it over real sockets with the
// certificates `warden dev issue` writes, the way curl would use them.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

var wardenBin string

func TestMain(m *testing.M) {
	// The app of the fast path tests, run as a child in their cgroup.
	if addr := os.Getenv(fastPathAppEnv); addr != "" {
		os.Exit(fastPathApp(addr))
	}
	dir, err := os.MkdirTemp("", "warden-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wardenBin = filepath.Join(dir, "warden")
	// As released (deploy/image, make build): without cgo, which lets warden
	// raise its file capabilities on every thread (bpf.RaiseCapabilities).
	build := exec.Command("go", "build", "-o", wardenBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building warden: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	// The suite-wide leak check: every warden log, against every secret any
	// test registered, including those registered after the process ended.
	for _, leak := range sweepLeaks() {
		fmt.Fprintln(os.Stderr, "FAIL: secret leak:", leak)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running warden with its JSON log lines collected: those
// of stderr in logs and raw, everything it writes to stdout in stdout.
type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   []map[string]any
	raw    bytes.Buffer
	stdout bytes.Buffer
	done   chan error

	owner string // the test that started it, for the leak check
	// The log files it writes: WARDEN_DECISION_LOG and WARDEN_SECURITY_LOG
	// when they are files.
	logFiles []string
	leaked   map[string]bool
}

func startWarden(t *testing.T, env ...string) *process {
	t.Helper()
	return startWardenBin(t, wardenBin, env...)
}

// startWardenBin is startWarden for a warden binary at another path (a
// second workload identity for SPIRE's path selector).
func startWardenBin(t *testing.T, bin string, env ...string) *process {
	t.Helper()
	return startWardenCmd(t, exec.Command(bin), env...)
}

// startWardenCmd runs warden as cmd (e.g. inside a network namespace with
// `ip netns exec`) with env, and collects its log.
func startWardenCmd(t testing.TB, cmd *exec.Cmd, env ...string) *process {
	t.Helper()
	bin := cmd.Args[len(cmd.Args)-1]
	// The userspace limiter unless a test asks for eBPF: tests run side by
	// side on loopback, where only one XDP program fits.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "WARDEN_RATE_LIMIT_MODE=userspace"}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), owner: t.Name(), leaked: map[string]bool{}}
	for _, kv := range env {
		for _, name := range []string{"WARDEN_DECISION_LOG=", "WARDEN_SECURITY_LOG="} {
			if v, ok := strings.CutPrefix(kv, name); ok && v != "stderr" && v != "stdout" && !strings.Contains(v, "://") {
				p.logFiles = append(p.logFiles, v)
			}
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{}, 2)
	go func() {
		defer func() { scanned <- struct{}{} }()
		b := make([]byte, 32<<10)
		for {
			n, err := stdout.Read(b)
			p.mu.Lock()
			p.stdout.Write(b[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer func() { scanned <- struct{}{} }()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line map[string]any
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.logs = append(p.logs, line)
			}
			p.mu.Unlock()
		}
	}()
	go func() { <-scanned; <-scanned; p.done <- cmd.Wait() }()
	processes.Lock()
	processes.all = append(processes.all, p)
	processes.Unlock()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second): // the test consumed it
		}
		for _, leak := range p.leaks() {
			t.Errorf("secret leak: %s", leak)
		}
		if t.Failed() {
			log := redactSecrets(p.rawLog())
			if len(log) > 200<<10 {
				log = "...\n" + log[len(log)-200<<10:]
			}
			t.Logf("%s log:\n%s", filepath.Base(bin), log)
		}
	})
	return p
}

// decision returns warden's fields of a decision log line (its "warden"
// object), nil for another line.
func decision(line map[string]any) map[string]any {
	w, _ := line["warden"].(map[string]any)
	return w
}

func (p *process) rawLog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// find returns the first log line for which match is true, polling until
// the deadline.
func (p *process) find(t testing.TB, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.logs {
			if match(l) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no such log line; log:\n%s", redactSecrets(p.rawLog()))
	return nil
}

// The log sink: tests register the secrets they send (tokens, cookies,
// passwords, signatures) with secret, and every warden process's log, and
// its decision log file, is searched for all of them when the process is
// stopped, and once more when the suite ends. A hit fails the test that
// started the process; reports name the kind of secret and the event of the
// line, never the secret.
var (
	secrets struct {
		sync.Mutex
		all []registeredSecret
	}
	processes struct {
		sync.Mutex
		all []*process
	}
)

type registeredSecret struct{ kind, value string }

// secret registers value as a secret of the given kind ("bearer token")
// that no log may hold, and returns it.
func secret(t testing.TB, kind, value string) string {
	t.Helper()
	if len(value) < 8 {
		// A shorter value would match ordinary log text.
		t.Fatalf("secret %s of %d bytes: register 8 bytes or more", kind, len(value))
	}
	secrets.Lock()
	secrets.all = append(secrets.all, registeredSecret{kind, value})
	secrets.Unlock()
	return value
}

func registeredSecrets() []registeredSecret {
	secrets.Lock()
	defer secrets.Unlock()
	return append([]registeredSecret(nil), secrets.all...)
}

// stdoutText is everything p wrote to stdout so far.
func (p *process) stdoutText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// leaks describes each registered secret in what p wrote (stderr, stdout,
// its log files) not reported before.
func (p *process) leaks() []string {
	logs := []struct{ name, text string }{{"log", p.rawLog()}, {"stdout", p.stdoutText()}}
	for _, f := range p.logFiles {
		if b, err := os.ReadFile(f); err == nil {
			logs = append(logs, struct{ name, text string }{"log file " + filepath.Base(f), string(b)})
		}
	}
	var out []string
	for _, s := range registeredSecrets() {
		for _, l := range logs {
			if !strings.Contains(l.text, s.value) {
				continue
			}
			var events []string
			for _, line := range strings.Split(l.text, "\n") {
				if !strings.Contains(line, s.value) {
					continue
				}
				event := "(not JSON)"
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil {
					event = fmt.Sprint(m["event"])
				}
				if !slices.Contains(events, event) {
					events = append(events, event)
				}
			}
			key := l.name + "\x00" + s.kind + "\x00" + s.value + "\x00" + strings.Join(events, ",")
			p.mu.Lock()
			seen := p.leaked[key]
			p.leaked[key] = true
			p.mu.Unlock()
			if !seen {
				out = append(out, fmt.Sprintf("%s of %s holds a %s (%s) in lines with event %q",
					l.name, p.owner, s.kind, hint(s.value), events))
			}
		}
	}
	return out
}

// hint names a secret without revealing it: its first bytes and length.
func hint(v string) string {
	return fmt.Sprintf("%.3s..., %d bytes", v, len(v))
}

// redactSecrets replaces the registered secrets in a log before it is
// printed.
func redactSecrets(log string) string {
	for _, s := range registeredSecrets() {
		log = strings.ReplaceAll(log, s.value, "[REDACTED "+s.kind+"]")
	}
	return log
}

func sweepLeaks() []string {
	processes.Lock()
	all := append([]*process(nil), processes.all...)
	processes.Unlock()
	var out []string
	for _, p := range all {
		out = append(out, p.leaks()...)
	}
	return out
}

func (p *process) listenAddr(t testing.TB, listener string) string {
	l := p.find(t, func(l map[string]any) bool { return l["event"] == "listening" && l["listener"] == listener })
	return l["addr"].(string)
}

// slowApp is a fasthttp upstream; /slow answers after a second.
func slowApp(t *testing.T) (addr string, slowStarted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			started <- struct{}{}
			time.Sleep(time.Second)
		}
		fmt.Fprintf(ctx, "app saw %s with XFCC %s", ctx.Path(), ctx.Request.Header.Peek("X-Forwarded-Client-Cert"))
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String(), started
}

// curlLikeClient uses the files `warden dev issue` wrote exactly as curl's
// --cert, --key and --cacert would, hostname verification included.
func curlLikeClient(t testing.TB, dir string) *http.Client {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(t, dir)}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func devIssueCmd(t testing.TB, devDir, id, out string) (string, error) {
	cmd := exec.Command(wardenBin, "dev", "issue", "--id", id, "--out", out)
	cmd.Env = []string{"WARDEN_DEV_DIR=" + devDir}
	b, err := cmd.CombinedOutput()
	if err == nil {
		// The keys it wrote (the client's and, created on first use, the
		// development CA's) are secrets no log may hold.
		secretPEM(t, "client SVID private key", filepath.Join(out, "svid_key.pem"))
		secretPEM(t, "development CA private key", filepath.Join(devDir, "ca_key.pem"))
	}
	return string(b), err
}

// secretPEM registers the private key in the PEM file path with the log
// sink: a line of its base64 body past the first, whose bytes are the key's
// own (the first starts with the algorithm's fixed PKCS #8 header, the same
// for every key of a kind).
func secretPEM(t testing.TB, kind, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	var body []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "-----") {
			body = append(body, line)
		}
	}
	switch {
	case len(body) >= 2:
		secret(t, kind, body[1])
	case len(body) == 1 && len(body[0]) > 48:
		secret(t, kind, body[0][40:])
	default:
		t.Fatalf("%s: %s holds no PEM body", kind, path)
	}
}

// devSidecar is warden on the development identity in front of a fresh
// slowApp, with a client that holds an SVID from `warden dev issue`.
type devSidecar struct {
	*process
	admin, inbound string
	client         *http.Client
	slowStarted    <-chan struct{}
}

func startDevSidecar(t *testing.T, env ...string) *devSidecar {
	t.Helper()
	devDir := t.TempDir()
	clientDir := filepath.Join(t.TempDir(), "client")
	if out, err := devIssueCmd(t, devDir, "spiffe://warden.local/ns/default/sa/client", clientDir); err != nil {
		t.Fatalf("dev issue: %v\n%s", err, out)
	}
	appAddr, slowStarted := slowApp(t)
	p := startWarden(t, append([]string{
		"WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR=" + devDir,
		"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0", "WARDEN_UPSTREAM_ADDR=" + appAddr,
	}, env...)...)
	return &devSidecar{
		process:     p,
		admin:       "http://" + p.listenAddr(t, "admin"),
		inbound:     "https://" + p.listenAddr(t, "inbound"),
		client:      curlLikeClient(t, clientDir),
		slowStarted: slowStarted,
	}
}

func TestSidecarServesDrainsAndStops(t *testing.T) {
	w := startDevSidecar(t, "WARDEN_DRAIN_TIMEOUT=5s")
	p, admin, inbound, slowStarted := w.process, w.admin, w.inbound, w.slowStarted

	if code, _ := get(t, admin+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := get(t, admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s once listening", code, body)
	}
	code, body := get(t, admin+"/identity")
	if code != 200 || !strings.Contains(body, `"spiffe_id": "spiffe://warden.local/ns/default/sa/app"`) || !strings.Contains(body, `"svid_expiry"`) {
		t.Errorf("/identity %d %s", code, body)
	}

	client := w.client
	resp, err := client.Get(inbound + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "app saw /hello with XFCC By=spiffe://warden.local/ns/default/sa/app;URI=spiffe://warden.local/ns/default/sa/client"
	if resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, b, want)
	}
	p.find(t, func(l map[string]any) bool {
		r := requestLine(l)
		return r != nil && r["path"] == "/hello" && r["status"] == float64(200)
	})

	// SIGTERM while a slow request is in flight: readiness turns 503, the
	// request still completes, and warden exits 0.
	var slowStatus atomic.Int32
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		resp, err := client.Get(inbound + "/slow")
		if err != nil {
			t.Errorf("in-flight request failed during drain: %v", err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slowStatus.Store(int32(resp.StatusCode))
	}()
	select {
	case <-slowStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("slow request never reached the app")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.find(t, func(l map[string]any) bool { return l["event"] == "draining" })
	if code, body := get(t, admin+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz during drain: %d %s, want 503 draining", code, body)
	}
	<-slowDone
	if slowStatus.Load() != 200 {
		t.Errorf("in-flight request got %d, want 200", slowStatus.Load())
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("warden exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("warden did not exit after draining")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartupRefusesBadConfigurationInOneLine(t *testing.T) {
	// An OpenAPI spec whose template names a parameter it never declares.
	spec := filepath.Join(t.TempDir(), "broken.yaml")
	writeFile(t, spec, "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a/{id}:\n    get:\n      responses: {'200': {description: ok}}\n")
	tests := []struct {
		env  []string
		want []string
	}{
		{nil, []string{"WARDEN_IDENTITY", "SPIFFE_ENDPOINT_SOCKET"}},
		{[]string{"WARDEN_IDENTITY=dev", "WARDEN_INBOUND_ADDR=nowhere"}, []string{`WARDEN_INBOUND_ADDR="nowhere"`, "expected host:port"}},
		{[]string{"WARDEN_IDENTITY=dev", "WARDEN_SPIFFE_ID=spiffe://x/../y"}, []string{`WARDEN_SPIFFE_ID="spiffe://x/../y"`}},
		{[]string{"WARDEN_IDENTITY=dev", "WARDEN_DEV_DIR=" + t.TempDir(), "WARDEN_OPENAPI_SPEC=" + spec,
			"WARDEN_INBOUND_ADDR=127.0.0.1:0", "WARDEN_ADMIN_ADDR=127.0.0.1:0"}, []string{"WARDEN_OPENAPI_SPEC", spec, "id"}},
	}
	for _, tt := range tests {
		cmd := exec.Command(wardenBin)
		cmd.Env = tt.env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%v: exit %v, want status 1", tt.env, err)
		}
		out := strings.TrimSpace(stderr.String())
		if strings.Count(out, "\n") != 0 {
			t.Errorf("%v: want one line, got:\n%s", tt.env, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: %q does not mention %q", tt.env, out, w)
			}
		}
	}
}

func TestDevIssueRefusesForeignTrustDomain(t *testing.T) {
	out, err := devIssueCmd(t, t.TempDir(), "spiffe://other.test/sa/x", t.TempDir())
	if err == nil || !strings.Contains(out, "outside its trust domain") {
		t.Errorf("dev issue for a foreign trust domain: %v %s", err, out)
	}
}
