package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-sidecar/warden/agent/ratelimit"
	"github.com/warden-sidecar/warden/internal/testenv"
)

// nsConn is one mTLS connection from the client namespace, from src.
type nsConn struct {
	*tls.Conn
	br *bufio.Reader
}

func (s *nsSidecar) open(t testing.TB, src netip.Addr) *nsConn {
	t.Helper()
	dst := s.link.A4
	if src.Is6() {
		dst = s.link.A6
	}
	c, err := s.dial(src, dst, nsInboundPort)
	if err != nil {
		t.Fatalf("connect from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	tc := tls.Client(c, s.tls)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake from %s: %v", src, err)
	}
	return &nsConn{Conn: tc, br: bufio.NewReader(tc)}
}

// get sends GET path on the connection (kept alive) and reads the answer.
func (c *nsConn) get(path string) (status int, body string, err error) {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

// closedByPeer reads until warden ends the connection, or reports that it
// is still open after wait.
func (c *nsConn) closedByPeer(wait time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.br.ReadByte()
	switch {
	case err == nil:
		return errors.New("warden sent bytes on it")
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("still open after %s", wait)
	}
	return nil
}

// TestBPFHoneypotBlocksTheSource attacks the real binary across a veth pair
// with each limiter: a decoy request from one source gets the 404 of an
// unknown route and never reaches the app; the source's open keep-alive
// connection is closed by warden; its next connection is dropped (in the
// kernel: the SYN never answered, dropped.blocked counts it; in userspace:
// reset at accept); another source is unaffected; an exempt source is
// never blocked; and the block ends on time, with the events that say so.
func TestBPFHoneypotBlocksTheSource(t *testing.T) {
	const blockFor = 2 * time.Second
	for _, tc := range []struct{ name, mode, attach string }{
		{"ebpf xdp", "ebpf", "xdp"}, {"ebpf tc", "ebpf", "tc"}, {"userspace", "userspace", "xdp"},
	} {
		mode := tc.mode
		t.Run(tc.name, func(t *testing.T) {
			// The IPv6 client is the exempt one (the link's IPv4 subnet
			// is only known once it exists).
			s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE="+mode, "WARDEN_BPF_ATTACH="+tc.attach,
				"WARDEN_HONEYPOT_PATHS=/.env,/actuator/*", fmt.Sprintf("WARDEN_HONEYPOT_BLOCK_FOR=%s", blockFor),
				"WARDEN_BLOCK_EXEMPT=fd00::/8")
			l := s.link
			attacker, other, exempt := l.B4, l.AddAddrB(t, 7), l.B6

			keep := s.open(t, attacker)
			if code, body, err := keep.get("/"); err != nil || code != 200 || body != "app" {
				t.Fatalf("before the decoy: %d %q %v", code, body, err)
			}
			before := s.rateLimitView(t).Counters.Dropped.Blocked

			hit := s.open(t, attacker)
			code, body, err := hit.get("/actuator/env")
			blockedAt := time.Now()
			if err != nil || code != 404 || !strings.HasPrefix(body, `{"error":"not_found","request_id":"`) {
				t.Fatalf("decoy: %d %q %v; want the 404 of an unknown route", code, body, err)
			}
			if err := keep.closedByPeer(time.Second); err != nil {
				t.Errorf("the blocked source's keep-alive connection: %v", err)
			}
			if err := s.request(attacker, l.A4); err == nil {
				t.Fatal("a new connection from the blocked source was served")
			}
			if err := s.request(other, l.A4); err != nil {
				t.Fatalf("another source: %v", err)
			}

			v := s.rateLimitView(t)
			if v.Counters.Dropped.Blocked <= before {
				t.Errorf("dropped.blocked %d, was %d: the blocked source's connection was not dropped as blocked", v.Counters.Dropped.Blocked, before)
			}
			if len(v.Blocklist) != 1 || v.Blocklist[0].IP != attacker.String() || v.Blocklist[0].Cause != ratelimit.CauseHoneypot ||
				v.Blocklist[0].RemainingSeconds <= 0 || v.Blocklist[0].RemainingSeconds > blockFor.Seconds() {
				t.Fatalf("blocklist %+v, want %s (honeypot) for at most %s", v.Blocklist, attacker, blockFor)
			}
			if mode == "ebpf" && (v.Mode != "ebpf" || !strings.HasPrefix(v.Attach, tc.attach)) {
				t.Fatalf("mode %q attach %q, want %s", v.Mode, v.Attach, tc.name)
			}

			// The exempt source gets its 404, and stays served.
			ex := s.open(t, exempt)
			if code, _, err := ex.get("/.env"); err != nil || code != 404 {
				t.Fatalf("exempt source's decoy: %d %v", code, err)
			}
			if err := s.request(exempt, l.A6); err != nil {
				t.Fatalf("the exempt source was blocked: %v", err)
			}
			if got := s.rateLimitView(t).Blocklist; len(got) != 1 {
				t.Fatalf("blocklist %+v, want only %s", got, attacker)
			}
			for _, p := range s.app.seen() {
				if p != "/" {
					t.Errorf("the app saw %s", p)
				}
			}

			// The block ends on time: not before blockFor, and soon after
			// (a refused attempt costs up to the dial's 600 ms).
			testenv.Poll(t, "the block to end", blockFor+3*time.Second, func() bool { return s.request(attacker, l.A4) == nil })
			if d := time.Since(blockedAt); d < blockFor-100*time.Millisecond || d > blockFor+1500*time.Millisecond {
				t.Errorf("served again %s after the decoy, want %s", d.Round(time.Millisecond), blockFor)
			}

			s.find(t, func(m map[string]any) bool {
				return m["event"] == "honeypot_hit" && m["source_ip"] == attacker.String() && m["path"] == "/actuator/env" &&
					m["severity"] == "high" && m["event_type"] == "security"
			})
			s.find(t, func(m map[string]any) bool {
				return m["event"] == "source_blocked" && m["source_ip"] == attacker.String() && m["reason"] == "honeypot" &&
					m["duration_s"] == blockFor.Seconds() && m["request_id"] != nil
			})
			s.find(t, func(m map[string]any) bool {
				return m["event"] == "source_unblocked" && m["source_ip"] == attacker.String() && m["reason"] == "expired" && m["cause"] == "honeypot"
			})
			s.find(t, func(m map[string]any) bool {
				return m["event"] == "honeypot_hit" && m["source_ip"] == exempt.String()
			})
			// Each event once for its trigger: two decoy requests, one
			// block, which ended once.
			for event, want := range map[string]int{"honeypot_hit": 2, "source_blocked": 1, "source_unblocked": 1} {
				if n := countEvents(s.process, event); n != want {
					t.Errorf("%d %s events, want %d", n, event, want)
				}
			}
		})
	}
}

// TestBPFHoneypotBlocksTheIPv6Prefix: an IPv6 decoy hit blocks the
// source's /64 in the kernel, so the host cannot walk its addresses; the
// block is listed with its prefix.
func TestBPFHoneypotBlocksTheIPv6Prefix(t *testing.T) {
	s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE=ebpf", "WARDEN_HONEYPOT_PATHS=/.env")
	l := s.link
	sibling := netip.MustParseAddr(strings.TrimSuffix(l.B6.String(), "2") + "77") // fd00:200:N::77, the same /64
	l.B.IP(t, "addr", "add", sibling.String()+"/64", "dev", l.IfB, "nodad")
	// The sibling address is new: its first connection may wait for
	// neighbour discovery longer than dial's one-SYN timeout on a busy
	// machine, so the connection expected to work is polled for.
	var err error
	testenv.Poll(t, "a connection from the sibling address before the decoy", 10*time.Second, func() bool {
		err = s.request(sibling, l.A6)
		return err == nil
	})
	c := s.open(t, l.B6)
	if code, _, err := c.get("/.env"); err != nil || code != 404 {
		t.Fatalf("decoy: %d %v", code, err)
	}
	if err := s.request(sibling, l.A6); err == nil {
		t.Fatal("another address of the blocked /64 was served")
	}
	if err := s.request(l.B4, l.A4); err != nil {
		t.Fatalf("the same host over IPv4 (not blocked): %v", err)
	}
	v := s.rateLimitView(t)
	want := netip.PrefixFrom(l.B6, 64).Masked()
	if len(v.Blocklist) != 1 || v.Blocklist[0].Prefix != want.String() || v.Blocklist[0].IP != want.Addr().String() {
		t.Fatalf("blocklist %+v, want %s", v.Blocklist, want)
	}
	s.find(t, func(m map[string]any) bool {
		return m["event"] == "source_blocked" && m["source_ip"] == l.B6.String() && m["prefix"] == want.String()
	})
}

func countEvents(p *process, event string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if l["event"] == event {
			n++
		}
	}
	return n
}

// blockPolicy blocks whoever asks for /scrape, for longer than
// WARDEN_MAX_BLOCK_FOR allows.
const blockPolicy = `package warden.authz
default allow := true
allow := {"allow": false, "status": 403, "reason": "scraper", "block_for_seconds": 86400} if input.path == "/scrape"
`

// TestBPFPolicyBlocksTheSource: a decision with block_for_seconds blocks
// the source in the kernel, for no longer than WARDEN_MAX_BLOCK_FOR; the
// same decision served from the cache blocks again.
func TestBPFPolicyBlocksTheSource(t *testing.T) {
	const maxBlock = 2 * time.Second
	s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE=ebpf", "WARDEN_POLICY_BUNDLE="+policyDir(t, blockPolicy),
		fmt.Sprintf("WARDEN_MAX_BLOCK_FOR=%s", maxBlock))
	l := s.link
	scraper, other := l.B4, l.AddAddrB(t, 7)
	for round := range 2 {
		c := s.open(t, scraper)
		if code, body, err := c.get("/scrape"); err != nil || code != 403 || !strings.Contains(body, `"forbidden"`) {
			t.Fatalf("round %d: /scrape: %d %q %v", round, code, body, err)
		}
		blockedAt := time.Now()
		if err := s.request(scraper, l.A4); err == nil {
			t.Fatalf("round %d: the scraper's next connection was served", round)
		}
		if err := s.request(other, l.A4); err != nil {
			t.Fatalf("round %d: another source: %v", round, err)
		}
		v := s.rateLimitView(t)
		if len(v.Blocklist) != 1 || v.Blocklist[0].Cause != ratelimit.CausePolicy || v.Blocklist[0].RemainingSeconds > maxBlock.Seconds() {
			t.Fatalf("round %d: blocklist %+v, want the scraper (policy) for at most %s", round, v.Blocklist, maxBlock)
		}
		testenv.Poll(t, "the block to end", maxBlock+3*time.Second, func() bool { return s.request(scraper, l.A4) == nil })
		if d := time.Since(blockedAt); d > maxBlock+1500*time.Millisecond {
			t.Fatalf("round %d: blocked for %s, over WARDEN_MAX_BLOCK_FOR=%s", round, d, maxBlock)
		}
	}
	// The second round's decision came from the decision cache.
	s.find(t, func(m map[string]any) bool {
		w := decision(m)
		return w != nil && m["path"] == "warden/authz/allow" && w["cached"] == true
	})
	if n := countEvents(s.process, "source_blocked"); n != 2 {
		t.Errorf("%d source_blocked events, want 2", n)
	}
}

// TestBPFHoneypotTimeToFirstDrop measures (and reports, without asserting
// a speed), with eBPF loaded by auto mode for the decoys alone, how soon after a decoy request the source's packets are dropped
// in the kernel. The block is written into the kernel's map before the
// 404 is sent, so the time from writing the request to reading the 404 is
// an upper bound of it; the first SYN sent after the 404 must be dropped.
func TestBPFHoneypotTimeToFirstDrop(t *testing.T) {
	// Auto mode without a rate limit: decoys that block are reason
	// enough to load the program.
	s := startNsSidecar(t, "WARDEN_RATE_LIMIT_MODE=auto", "WARDEN_HONEYPOT_PATHS=/.env", "WARDEN_HONEYPOT_BLOCK_FOR=1m")
	if v := s.rateLimitView(t); v.Mode != "ebpf" || !slices.Equal(v.KernelFeatures, []ratelimit.Feature{ratelimit.FeatureBlocklist}) {
		t.Fatalf("auto mode with decoys: mode %q, kernel features %v (fallback %q)", v.Mode, v.KernelFeatures, v.FallbackReason)
	}
	const sources = 20
	var took []time.Duration
	for i := range sources {
		src := s.link.AddAddrB(t, byte(10+i))
		c := s.open(t, src)
		before := s.rateLimitView(t).Counters.Dropped.Blocked
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		if _, err := io.WriteString(c, "GET /.env HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
		if err != nil || resp.StatusCode != 404 {
			t.Fatalf("decoy: %v %v", resp, err)
		}
		took = append(took, time.Since(start))
		var dropped bool
		_ = s.cli.Do(func() error {
			d := net.Dialer{Timeout: 200 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
			conn, err := d.Dial("tcp", netip.AddrPortFrom(s.link.A4, nsInboundPort).String())
			if err == nil {
				conn.Close()
			}
			dropped = err != nil
			return nil
		})
		if !dropped {
			t.Fatalf("source %d: the first SYN after the decoy's 404 was answered", i)
		}
		if after := s.rateLimitView(t).Counters.Dropped.Blocked; after <= before {
			t.Fatalf("source %d: dropped.blocked %d, was %d", i, after, before)
		}
	}
	slices.Sort(took)
	t.Logf("decoy request written -> 404 read (the block is in the kernel before the 404 leaves), %d sources: min %s, median %s, max %s",
		sources, took[0], took[len(took)/2], took[len(took)-1])
}

// dateOrID matches what differs between two answers of warden by design:
// the Date header and the request id (header and body).
var dateOrID = regexp.MustCompile(`(?m)^Date: .*\r$|[0-9a-f]{16}-[0-9]+`)

// rawAnswer writes raw on a connection of its own and returns the answer's
// bytes as they came.
func rawAnswer(t *testing.T, s *sidecar, raw string) string {
	t.Helper()
	c := s.dial(t)
	defer c.Close()
	var got strings.Builder
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(io.TeeReader(c, &got))
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return got.String()[:got.Len()-br.Buffered()]
}

// TestHoneypotLooksLikeAnUnknownRoute: with an OpenAPI spec, a decoy's
// answer is byte for byte the answer to a route the API does not have (but
// the date and the request id), it never reaches the app, and the
// credentials it carries reach no log.
func TestHoneypotLooksLikeAnUnknownRoute(t *testing.T) {
	app := startApp(t, appOptions{})
	s := startSidecar(t, app, "WARDEN_OPENAPI_SPEC="+paymentsSpec, "WARDEN_HONEYPOT_PATHS=/.env,/actuator/*")
	token := secret(t, "token", "decoy-bearer-token-0123456789")
	cookie := secret(t, "cookie", "decoy-session-cookie-0123456789")
	req := func(path string) string {
		return rawGET(path, "Authorization: Bearer "+token, "Cookie: sid="+cookie, "Accept: */*")
	}
	unknown := rawAnswer(t, s, req("/actuator-like/unknown"))
	decoy := rawAnswer(t, s, req("/actuator/env"))
	if !strings.HasPrefix(decoy, "HTTP/1.1 404 ") {
		t.Fatalf("decoy answer:\n%s", decoy)
	}
	if a, b := dateOrID.ReplaceAllString(unknown, "…"), dateOrID.ReplaceAllString(decoy, "…"); a != b {
		t.Fatalf("a decoy's answer differs from an unknown route's:\nunknown route:\n%s\ndecoy:\n%s", a, b)
	}
	for _, r := range app.requests() {
		if strings.Contains(r.target, "actuator") {
			t.Errorf("the app saw %s", r.target)
		}
	}
	s.find(t, func(m map[string]any) bool { return m["event"] == "honeypot_hit" && m["path"] == "/actuator/env" })
	s.find(t, func(m map[string]any) bool { return m["event"] == "source_blocked" && m["reason"] == "honeypot" })
}
