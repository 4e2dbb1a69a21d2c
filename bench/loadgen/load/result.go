package load

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds, in microseconds: 1µs..60s, 3 significant digits.
const (
	histMin     = 1
	histMax     = int64(MaxTimeout / time.Microsecond)
	histSigFigs = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigFigs) }

// Result summarizes the measured part of a run (after the warmup).
//
// Requests counts every measured request that was sent, successful or not;
// Errors is the part of it that failed. Latency percentiles cover the
// successful requests only (a refused connection answers in microseconds and
// would flatter them); errors are counted, never folded into latency.
type Result struct {
	Requests     int64            `json:"requests"`
	DurationS    float64          `json:"duration_s"`
	RPS          float64          `json:"rps"`
	Errors       int64            `json:"errors"`
	ErrorsByKind map[string]int64 `json:"errors_by_kind"`
	Dropped      int64            `json:"dropped"`
	P50Ms        float64          `json:"p50_ms"`
	P90Ms        float64          `json:"p90_ms"`
	P99Ms        float64          `json:"p99_ms"`
	P999Ms       float64          `json:"p999_ms"`
	MaxMs        float64          `json:"max_ms"`
	MeanMs       float64          `json:"mean_ms"`
	// ConnsOpened counts TCP connections dialed during the whole run,
	// warmup included: c with keep-alive, one per request with -newconn.
	ConnsOpened int64 `json:"conns_opened"`
	// Sent counts the requests sent during the whole run, warmup
	// included, answered or not: what the server saw, for checks such as
	// one decision log line per request.
	Sent int64 `json:"sent"`

	// Interrupted is set when the context was cancelled (SIGINT) before
	// the run ended by itself.
	Interrupted bool `json:"-"`
	// ErrorSamples holds the first error message seen for each kind.
	ErrorSamples map[string]string `json:"-"`
	// Histogram holds the successful requests' latencies in microseconds.
	Histogram *hdrhistogram.Histogram `json:"-"`
}

func (r *Result) fillLatency(h *hdrhistogram.Histogram) {
	r.Histogram = h
	if h.TotalCount() == 0 {
		return
	}
	ms := func(us int64) float64 { return float64(us) / 1e3 }
	r.P50Ms = ms(h.ValueAtQuantile(50))
	r.P90Ms = ms(h.ValueAtQuantile(90))
	r.P99Ms = ms(h.ValueAtQuantile(99))
	r.P999Ms = ms(h.ValueAtQuantile(99.9))
	r.MaxMs = ms(h.Max())
	r.MeanMs = math.Round(h.Mean()) / 1e3
}

// WriteText writes the human-readable summary.
func (r *Result) WriteText(w io.Writer, c Config) error {
	var b strings.Builder
	mode := "closed loop"
	if c.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g req/s", c.Rate)
	}
	conn := "keep-alive"
	if c.NewConn {
		conn = "new connection per request"
	}
	if c.GRPCMethod != "" {
		conn = "gRPC unary, one call at a time on each"
		fmt.Fprintf(&b, "target       gRPC %s at %s\n", c.GRPCMethod, c.URL)
	} else {
		fmt.Fprintf(&b, "target       %s %s\n", c.Method, c.URL)
	}
	fmt.Fprintf(&b, "mode         %s, %d connections, %s\n", mode, c.Connections, conn)
	fmt.Fprintf(&b, "measured     %.2fs after %s warmup", r.DurationS, c.Warmup)
	if r.Interrupted {
		b.WriteString(" (interrupted)")
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "requests     %d (%.1f/s), %d errors, %d dropped, %d connections opened\n",
		r.Requests, r.RPS, r.Errors, r.Dropped, r.ConnsOpened)
	if r.Requests > r.Errors {
		fmt.Fprintf(&b, "latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f",
			r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs, r.MeanMs)
		if c.Rate > 0 {
			b.WriteString("  (from intended send times)")
		}
		b.WriteByte('\n')
	} else {
		b.WriteString("latency ms   none: no successful request\n")
	}
	kinds := make([]string, 0, len(r.ErrorsByKind))
	for k := range r.ErrorsByKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for i, k := range kinds {
		label := ""
		if i == 0 {
			label = "errors"
		}
		fmt.Fprintf(&b, "%-12s %s %d", label, k, r.ErrorsByKind[k])
		if s := r.ErrorSamples[k]; s != "" {
			fmt.Fprintf(&b, " (first: %s)", s)
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
