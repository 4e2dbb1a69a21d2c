package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Run drives the target described by c until the measured duration ends,
// c.MaxRequests measured requests were sent, or ctx is cancelled, and
// returns the summary. It returns an error only for a configuration it
// cannot run; failed requests are counted in the Result, never returned.
// A request in flight when ctx is cancelled finishes (bounded by c.Timeout)
// and is counted.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	t, _ := parseTarget(c.URL)
	g := &generator{
		timeout: c.Timeout,
		warmup:  c.Warmup,
		end:     c.Warmup + c.Duration,
		maxReq:  c.MaxRequests,
		expect:  c.ExpectStatus,
		done:    ctx.Done(),

		statusPrefix: "status_",
	}
	if t.https {
		cfg, err := c.clientTLS(t)
		if err != nil {
			return nil, err
		}
		g.tls = cfg
	}
	if c.Rate > 0 {
		g.period = 1e9 / c.Rate
		g.firstMeasured = g.slotsBefore(g.warmup)
	}
	workers := make([]*worker, c.Connections)
	for i := range workers {
		workers[i] = &worker{g: g, hist: newHistogram()}
	}
	if c.GRPCMethod != "" {
		g.grpc, g.expect, g.statusPrefix = true, c.ExpectGRPCCode, "grpc_status_"
		calls, closeAll, err := g.newGRPCCalls(c, t, len(workers))
		if err != nil {
			return nil, err
		}
		defer closeAll()
		for i, w := range workers {
			w.rpc = calls[i]
		}
	} else {
		g.prepareHTTP(c, t, workers)
		defer g.hc.CloseIdleConnections()
	}

	// watch records when ctx was cancelled, to count the open-loop requests
	// scheduled before that moment and not sent.
	var interruptedAt atomic.Int64
	interruptedAt.Store(-1)
	finished, watched := make(chan struct{}), make(chan struct{})
	g.base = time.Now()
	go func() {
		defer close(watched)
		select {
		case <-g.done:
			interruptedAt.Store(int64(time.Since(g.base)))
		case <-finished:
		}
	}()
	var wg sync.WaitGroup
	for _, w := range workers {
		if c.Rate > 0 {
			wg.Go(w.openLoop)
		} else {
			wg.Go(w.closedLoop)
		}
	}
	wg.Wait()
	elapsed := time.Since(g.base)
	close(finished)
	<-watched

	r := &Result{
		ErrorsByKind: make(map[string]int64),
		ErrorSamples: make(map[string]string),
		ConnsOpened:  g.conns.Load(),
	}
	hist := newHistogram()
	for _, w := range workers {
		r.Requests += w.sent
		r.Sent += w.total
		r.Errors += w.errs
		for k, n := range w.kinds {
			if n > 0 {
				r.ErrorsByKind[kindNames[k]] += n
			}
		}
		for code, n := range w.status {
			r.ErrorsByKind[g.statusPrefix+strconv.Itoa(code)] += n
		}
		for k, s := range w.samples {
			if _, ok := r.ErrorSamples[k]; !ok {
				r.ErrorSamples[k] = s
			}
		}
		hist.Merge(w.hist)
	}
	r.fillLatency(hist)
	if d := elapsed - g.warmup; d > 0 {
		r.DurationS = d.Seconds()
		r.RPS = float64(r.Requests) / r.DurationS
	}
	stopAt := g.end
	if at := time.Duration(interruptedAt.Load()); at >= 0 {
		r.Interrupted = true
		stopAt = min(stopAt, at)
	}
	if c.Rate > 0 {
		scheduled := max(0, g.slotsBefore(stopAt)-g.firstMeasured)
		if g.maxReq > 0 {
			scheduled = min(scheduled, g.maxReq)
		}
		r.Dropped = max(0, scheduled-r.Requests)
	}
	return r, nil
}

// prepareHTTP sets up the fasthttp client and gives each worker its copy of
// the request.
func (g *generator) prepareHTTP(c Config, t target, workers []*worker) {
	g.hc = &fasthttp.HostClient{
		Addr:      t.addr,
		IsTLS:     t.https,
		TLSConfig: g.tls,
		// The dial is ours so that only loopback is dialed, connections are
		// counted, and a handshake failure is told apart from a refused or
		// reset connection. fasthttp starts no handshake of its own on a
		// connection that has a Handshake method (see watchedConn).
		DialTimeout: g.dial,
		MaxConns:    c.Connections,
		// Each worker holds at most one connection, so a free one always
		// exists; waiting instead of failing with ErrNoFreeConns is a guard.
		MaxConnWaitTimeout: c.Timeout,
		// A retry would hide an error and send the server an extra request.
		MaxIdemponentCallAttempts: 1,
		Name:                      "warden-loadgen",
		DisablePathNormalizing:    true,
	}

	var proto fasthttp.Request
	proto.SetRequestURI(t.url)
	proto.Header.SetMethod(c.Method)
	if c.BodySize > 0 {
		proto.SetBodyRaw(bytes.Repeat([]byte{'x'}, c.BodySize))
	}
	for _, h := range c.Headers {
		name, value, _ := splitHeader(h)
		if strings.EqualFold(name, "Host") {
			proto.UseHostHeader = true
			proto.Header.SetHost(value)
			continue
		}
		proto.Header.Add(name, value)
	}
	if c.NewConn {
		// The client closes the connection after the response, and the next
		// request dials (and handshakes) again: TestNewConnDialsPerRequest
		// counts the accepted connections.
		proto.SetConnectionClose()
	}
	for _, w := range workers {
		proto.CopyTo(&w.req)
	}
}

// generator is the state the workers share. It is read-only during the run
// except for the atomic counters.
type generator struct {
	hc      *fasthttp.HostClient // HTTP mode
	grpc    bool                 // gRPC mode: each worker has its grpcCall
	tls     *tls.Config
	timeout time.Duration
	expect  int // the HTTP status (0: any 2xx) or gRPC status code counted as success
	done    <-chan struct{}

	statusPrefix string // names an unexpected status in Result.ErrorsByKind: "status_" or "grpc_status_"

	// Offsets from base, on the monotonic clock.
	base   time.Time
	warmup time.Duration // requests starting (closed) or scheduled (open) before it are not recorded
	end    time.Duration // warmup + duration
	maxReq int64         // measured requests, 0 for no limit

	claimed atomic.Int64 // closed loop: measured requests claimed, for -n

	// Open loop: slot i is intended to be sent at base + i*period.
	period        float64 // nanoseconds
	next          atomic.Int64
	firstMeasured int64

	conns atomic.Int64 // connections dialed
}

// slot returns the intended send offset of the i-th open-loop request.
func (g *generator) slot(i int64) time.Duration { return time.Duration(float64(i) * g.period) }

// slotsBefore returns the number of slots intended before off.
func (g *generator) slotsBefore(off time.Duration) int64 {
	i := max(0, int64(math.Ceil(float64(off)/g.period)))
	for i > 0 && g.slot(i-1) >= off {
		i--
	}
	for g.slot(i) < off {
		i++
	}
	return i
}

func (g *generator) stopped() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// worker owns one request, one response (or, in gRPC mode, one call) and one
// histogram; nothing in it is shared until the run is over.
type worker struct {
	g    *generator
	req  fasthttp.Request
	resp fasthttp.Response
	rpc  *grpcCall
	hist *hdrhistogram.Histogram

	sent, errs int64 // measured
	total      int64 // sent, warmup included
	kinds      [numKinds]int64
	status     map[int]int64     // unexpected status codes
	samples    map[string]string // first error message per kind
}

// closedLoop sends requests back to back, latency from the actual send time.
func (w *worker) closedLoop() {
	g := w.g
	for !g.stopped() {
		start := time.Now()
		off := start.Sub(g.base)
		if off >= g.end {
			return
		}
		measured := off >= g.warmup
		if measured && g.maxReq > 0 && g.claimed.Add(1) > g.maxReq {
			return
		}
		w.total++
		code, err := w.do()
		if measured {
			w.record(code, err, time.Since(start))
		}
	}
}

// openLoop takes the next slot of the shared schedule, waits for its
// intended time if it is early, and measures latency from that intended
// time when it is late: when the workers fall behind, the queueing shows as
// latency instead of silently stretching the schedule (coordinated
// omission). A worker that had to wait measures from the moment its timer
// woke it instead: Go timers in a mostly idle process fire 0.2-1ms late
// (the runtime's poller sleeps in whole milliseconds), and counting that
// lateness would add the generator's own delay to every request at a
// moderate rate. A slot whose worker only gets to it after the end of the
// run is not sent, and is counted as dropped by Run.
func (w *worker) openLoop() {
	g := w.g
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		i := g.next.Add(1) - 1
		if g.maxReq > 0 && i >= g.firstMeasured+g.maxReq {
			return
		}
		intended := g.slot(i)
		if intended >= g.end {
			return
		}
		from := intended
		if now := time.Since(g.base); now < intended {
			// Early: wait for the intended time. Once waited for, the slot
			// is sent even if the timer fires a little after the end.
			timer.Reset(intended - now)
			select {
			case <-timer.C:
			case <-g.done:
				timer.Stop()
				return
			}
			from = max(intended, time.Since(g.base))
		} else if now >= g.end || g.stopped() {
			// Late, and the run is over.
			return
		}
		w.total++
		code, err := w.do()
		if intended >= g.warmup {
			w.record(code, err, time.Since(g.base)-from)
		}
	}
}

// noStatus is the code do returns with an error that prevented a response.
const noStatus = -1

// do sends one request and returns the response's status: the HTTP status,
// or in gRPC mode the gRPC status code, with the status error (and its
// message) when it is not OK. It returns noStatus and the error when there
// was no response.
func (w *worker) do() (int, error) {
	if w.rpc != nil {
		return w.rpc.call(w.g.timeout)
	}
	if err := w.g.hc.DoTimeout(&w.req, &w.resp, w.g.timeout); err != nil {
		if errors.Is(err, fasthttp.ErrConnectionClosed) {
			if re := readError(&w.resp); re != nil && !errors.Is(re, io.EOF) {
				err = fmt.Errorf("%w: read: %w", err, re)
			}
		}
		return noStatus, err
	}
	return w.resp.StatusCode(), nil
}

func (w *worker) record(code int, err error, latency time.Duration) {
	w.sent++
	if code == noStatus {
		w.errs++
		k := classify(err)
		w.kinds[k]++
		w.sample(kindNames[k], err)
		return
	}
	if !w.g.success(code) {
		w.errs++
		if w.status == nil {
			w.status = make(map[int]int64)
		}
		if w.status[code] == 0 && err != nil {
			w.sample(w.g.statusPrefix+strconv.Itoa(code), err)
		}
		w.status[code]++
		return
	}
	us := min(max(latency.Microseconds(), histMin), histMax)
	_ = w.hist.RecordValue(us) // in range by construction
}

// success reports whether a response's status counts as a success.
func (g *generator) success(code int) bool {
	switch {
	case g.grpc, g.expect != 0:
		return code == g.expect
	default:
		return 200 <= code && code <= 299
	}
}

func (w *worker) sample(name string, err error) {
	if w.samples == nil {
		w.samples = make(map[string]string)
	}
	if _, ok := w.samples[name]; !ok {
		w.samples[name] = err.Error()
	}
}
