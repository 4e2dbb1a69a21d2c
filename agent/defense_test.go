package agent

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/warden-sidecar/warden/agent/ratelimit"
)

// from makes c dial from the loopback address src (all of 127/8 is local).
func from(c *http.Client, src string) *http.Client {
	tr := c.Transport.(*http.Transport).Clone()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr, Timeout: c.Timeout}
}

// A blocklist at its bound refuses the next block: the decoy still answers
// 404, blocklist_full is the event, /ratelimit counts the overflow; the
// block in force stays.
func TestFullBlocklistIsAnEvent(t *testing.T) {
	r, c := startLimitedAgent(t, map[string]string{
		"WARDEN_HONEYPOT_PATHS": "/.env", "WARDEN_HONEYPOT_BLOCK_FOR": "1m", "WARDEN_BPF_MAX_SOURCES": "1",
	})
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		resp, err := from(c, src).Get("https://" + r.inbound(t) + "/.env")
		if err != nil {
			t.Fatalf("decoy from %s: %v", src, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("decoy from %s: %d", src, resp.StatusCode)
		}
	}
	line := r.logLine(t, "blocklist_full")
	if line["source_ip"] != "127.0.0.3" || line["severity"] != "high" || line["reason"] != "honeypot" || line["event_type"] != "security" {
		t.Fatalf("blocklist_full %v", line)
	}
	var v ratelimit.Status
	getJSON(t, r.admin(t)+"/ratelimit", &v)
	if v.BlockOverflows != 1 || len(v.Blocklist) != 1 || v.Blocklist[0].IP != "127.0.0.2" || v.Blocklist[0].Cause != ratelimit.CauseHoneypot {
		t.Fatalf("/ratelimit: overflows %d, blocklist %+v", v.BlockOverflows, v.Blocklist)
	}
	if _, err := from(c, "127.0.0.3").Get("https://" + r.inbound(t) + "/"); err != nil {
		t.Fatalf("the source that could not be blocked: %v", err)
	}
}
