package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/warden-sidecar/warden/agent/config"
	"github.com/warden-sidecar/warden/internal/secevent"
)

// securityLog is the component of the security events' destination
// (WARDEN_SECURITY_LOG). It starts first and stops last, so that every
// other part has a.events while it runs, and the events of the drain are
// flushed before the destination closes.
type securityLog struct {
	a     *Agent
	close func()
}

func (c *securityLog) name() string { return "security log" }
func (c *securityLog) ready() error { return nil }

func (c *securityLog) start(context.Context, func(func() error)) error {
	l, closeLog, dropped, err := c.a.openSecurityLog()
	if err != nil {
		return err
	}
	c.a.events, c.close = l, closeLog
	c.a.securityDropped.Store(&dropped)
	return nil
}

func (c *securityLog) shutdown(context.Context) error {
	if c.close != nil {
		c.close()
	}
	return nil
}

// openSecurityLog builds the one secevent.Log every part emits through,
// with warden's own SPIFFE ID in every event. On stderr the events share
// the root logger's batched writer, so that their lines and the log's never
// interleave; elsewhere they get a batched writer of their own (the
// decision log's code path), and a collector gets RFC 5424 messages
// (secevent.Syslog) from that writer's goroutine, never from a request's.
// dropped counts the events lost to a full batch or an unreachable
// collector.
func (a *Agent) openSecurityLog() (l *secevent.Log, closeLog func(), dropped func() uint64, err error) {
	ownID := func() string {
		if !a.identityLoaded.Load() {
			return ""
		}
		return a.ownID().String()
	}
	dest := a.cfg.SecurityLog
	switch {
	case dest == "" || dest == "stderr":
		if a.logOut != nil {
			// Its drops are the log's (warden_log_lines_dropped_total{sink="log"}).
			return secevent.New(a.logOut, ownID), func() {}, func() uint64 { return 0 }, nil
		}
		w := NewBatchWriter(os.Stderr, 0)
		return secevent.New(w, ownID), func() { _ = w.Close() }, w.Dropped, nil
	case strings.HasPrefix(dest, config.SyslogUDPScheme), strings.HasPrefix(dest, config.SyslogTCPScheme):
		network, addr := "udp", strings.TrimPrefix(dest, config.SyslogUDPScheme)
		if strings.HasPrefix(dest, config.SyslogTCPScheme) {
			network, addr = "tcp", strings.TrimPrefix(dest, config.SyslogTCPScheme)
		}
		s := secevent.NewSyslog(network, addr)
		w := NewBatchWriter(s, 0)
		closeLog := func() { _ = w.Close(); _ = s.Close() }
		return secevent.New(w, ownID), closeLog, func() uint64 { return w.Dropped() + s.Dropped() }, nil
	}
	w, closeSink, err := openSink("WARDEN_SECURITY_LOG", dest)
	if err != nil {
		return nil, nil, nil, err
	}
	return secevent.New(w, ownID), closeSink, w.Dropped, nil
}

// openSink opens a log destination of its own, stdout or a file (appended,
// created 0640), behind a BatchWriter; closeSink flushes and closes it.
// variable names the setting in the error.
func openSink(variable, dest string) (w *BatchWriter, closeSink func(), err error) {
	if dest == "stdout" {
		w = NewBatchWriter(os.Stdout, 0)
		return w, func() { _ = w.Close() }, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %s: %w", variable, err)
	}
	w = NewBatchWriter(f, 0)
	return w, func() { _ = w.Close(); _ = f.Close() }, nil
}

// securityDroppedTotal is what /metrics reads: 0 before the log opens.
func securityDroppedTotal(p *atomic.Pointer[func() uint64]) uint64 {
	if f := p.Load(); f != nil {
		return (*f)()
	}
	return 0
}
