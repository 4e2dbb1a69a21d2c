package authz

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/warden-sidecar/warden/agent/pep"
	"github.com/warden-sidecar/warden/bundle"
	"github.com/warden-sidecar/warden/internal/redact"
)

// The decision log follows OPA's decision log schema, so that OPA's tools
// and the SIEM parsers written for OPA read it, with warden's own fields
// under "warden":
//
//	{"decision_id": "<fresh UUID>", "timestamp": "<RFC 3339, ns, UTC>",
//	 "path": "warden/authz/allow", "bundles": {"warden": {"revision": "..."}},
//	 "input": {...}, "result": {"allow": false, "status": 403, "reason": [...]},
//	 (the result as warden read it, without the headers it adds for the app)
//	 "erased": ["/input/..."], "metrics": {"timer_rego_query_eval_ns": 81234},
//	 "warden": {"event": "decision", "request_id": "...", "allow": false,
//	            "status": 403, "reason": "...", "cached": false, "eval_s": 0.000081234,
//	            "sample_rate": 0.1, "error": "..."}}
//
// decision_id is a fresh id rather than the request id: a client may send
// its own X-Request-Id, so request ids can repeat, and a SIEM that
// deduplicates on decision_id must not drop a denial for it.

// bundleName is the bundle's name in the decision log's "bundles": the name
// bundle.Engine reads every bundle under.
const bundleName = "warden"

// decisionLog is an Authorizer's decision log settings and state.
type decisionLog struct {
	path string // the decision's rule path: "path"

	// Sampling of the allowed, cached decisions: all (rate 1), none (rate
	// 0) or those whose random draw is below below.
	rate     float64
	rateJSON []byte
	below    uint64
	src      rand.Source // nil: math/rand/v2's global generator

	idPrefix [8]byte // random per Authorizer; a counter follows it
	idSeq    atomic.Uint64
	seed     maphash.Seed // for grouping repeated header names
}

func (l *decisionLog) init(path string) {
	l.path = path
	l.setSample(1)
	_, _ = crand.Read(l.idPrefix[:]) // never fails (crypto/rand, Go 1.24+)
	l.seed = maphash.MakeSeed()
}

func (l *decisionLog) setSample(rate float64) {
	l.rate = rate
	l.rateJSON = strconv.AppendFloat(nil, rate, 'g', -1, 64)
	if rate > 0 && rate < 1 {
		l.below = uint64(rate * (1 << 64)) // < 2⁶⁴ for every rate below 1
	}
}

// keep draws whether one line of the sampled class is logged.
func (l *decisionLog) keep() bool {
	switch {
	case l.rate >= 1:
		return true
	case l.rate <= 0:
		return false
	case l.src != nil:
		return l.src.Uint64() < l.below
	}
	return rand.Uint64() < l.below
}

// appendID appends a fresh decision id to dst: a UUID (version 8, custom)
// made of the Authorizer's random prefix and a counter, unique without a
// lock or a random draw per decision.
func (l *decisionLog) appendID(dst []byte) []byte {
	var b [16]byte
	copy(b[:8], l.idPrefix[:])
	binary.BigEndian.PutUint64(b[8:], l.idSeq.Add(1))
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant; the counter stays below 2⁶²
	const digits = "0123456789abcdef"
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, digits[c>>4], digits[c&0x0f])
	}
	return dst
}

// appendDigits appends n, below 10^width, as width decimal digits.
func appendDigits(dst []byte, n int64, width int) []byte {
	var b [20]byte
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10) // by a constant: no division instruction
		n /= 10
	}
	return append(dst, b[:width]...)
}

// logScratch is the decision log's part of the per-request state: buffers
// reused from line to line, so that a line allocates nothing.
type logScratch struct {
	buf []byte // the decision id, the timestamp, a joined header value
	// Header i's first header of the same name, and the next one after
	// it (-1: none), when the request repeats a header name.
	head, next, tail []int32 // tail: the last header of a head's name
	slots            []int32 // an open-addressing table of header names: index+1

	// The timestamp's text up to its second, for the second tsSec; and
	// the "bundles" object for the revision bundlesRev. Each request state
	// keeps its own, so that no lock is taken and a line formats neither
	// again while they hold.
	tsSec      int64
	tsPrefix   []byte
	ts         []byte
	bundlesRev string
	bundles    []byte
}

var (
	allowJSON = []byte(`{"allow":true}`)
	denyJSON  = []byte(`{"allow":false}`)
	noMetrics = []byte(`{}`)
)

// appendTimestamp returns t as a JSON string in RFC 3339 with nanoseconds,
// in UTC, as OPA writes its decision logs' timestamps (but with all nine
// digits of the fraction).
func (st *logScratch) appendTimestamp(t time.Time) []byte {
	t = t.UTC()
	if sec := t.Unix(); sec != st.tsSec || st.tsPrefix == nil {
		st.tsSec = sec
		st.tsPrefix = append(t.AppendFormat(append(st.tsPrefix[:0], '"'), "2006-01-02T15:04:05"), '.')
	}
	st.ts = appendDigits(append(st.ts[:0], st.tsPrefix...), int64(t.Nanosecond()), 9)
	return append(st.ts, 'Z', '"')
}

// appendSeconds appends d in seconds as a decimal number with up to nine
// digits after the point (0.000081234): exact, and without the cost of
// formatting a float.
func appendSeconds(dst []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	dst = strconv.AppendInt(dst, int64(d/time.Second), 10)
	frac := int64(d % time.Second)
	if frac == 0 {
		return dst
	}
	dst = appendDigits(append(dst, '.'), frac, 9)
	for dst[len(dst)-1] == '0' {
		dst = dst[:len(dst)-1]
	}
	return dst
}

// bundlesJSON returns OPA's "bundles" object for revision:
// {"warden": {"revision": ...}}.
func (st *logScratch) bundlesJSON(revision string) []byte {
	if revision != st.bundlesRev || st.bundles == nil {
		quoted, _ := json.Marshal(revision) // a string always marshals
		st.bundles = append(append(append(st.bundles[:0], `{"`+bundleName+`":{"revision":`...), quoted...), "}}"...)
		st.bundlesRev = strings.Clone(revision)
	}
	return st.bundles
}

// reasonOf is the decision's reason for the log: the policy's own
// (fromPolicy), or warden's when the policy gave none for a denial.
func reasonOf(d *bundle.Decision, err error) (reason string, fromPolicy bool) {
	switch {
	case err == nil && d.Reason != "":
		return d.Reason, true
	case err == nil && !d.Allow:
		return pep.ReasonDefaultDeny, false
	case err == nil:
		return "", false
	case errors.Is(err, bundle.ErrNotReady):
		return pep.ReasonPolicyNotReady, false
	case errors.Is(err, bundle.ErrEvalTimeout):
		return pep.ReasonPolicyTimeout, false
	}
	return pep.ReasonPolicyError, false
}

// logDecision writes the decision's line, unless it is an allowed decision
// from the cache that sampling leaves out. start is when the decision was
// asked for, took how long it took.
//
// With WithAccessFields and a line the protocol path gave (req.Line), the
// line is held there rather than written: the protocol path adds the
// response's fields under "warden" and writes it once the response is out.
func (a *Authorizer) logDecision(st *state, line *pep.Line, d *bundle.Decision, err error, start time.Time, took time.Duration) {
	// A request over its rate limit is a refusal, always logged, though the
	// policy allowed it.
	allowed := d.Allow && err == nil && !st.limited
	sampled := allowed && d.Cached
	if sampled && !a.dlog.keep() {
		return
	}
	e := a.log.Log()
	if !e.Enabled() {
		return
	}
	in := &st.in
	m := readLogMask(d.Mask)

	st.buf = a.dlog.appendID(append(st.buf[:0], '"'))
	e.RawJSON("decision_id", append(st.buf, '"'))
	e.RawJSON("timestamp", st.appendTimestamp(start))
	e.Str("path", a.dlog.path)
	if d.Revision != "" {
		e.RawJSON("bundles", st.bundlesJSON(d.Revision))
	}
	input := zerolog.Dict()
	if m == nil || !m.all {
		a.logInput(input, st, m)
	}
	e.Dict("input", input)
	switch {
	case err != nil:
		// No result: the policy gave none that could be read.
	case d.Status == 0 && len(d.Reasons) == 0 && d.BlockFor == 0 || m != nil && m.result:
		// The common result, written without a dict.
		if d.Allow {
			e.RawJSON("result", allowJSON)
		} else {
			e.RawJSON("result", denyJSON)
		}
	default:
		// The decision as warden read it (an undefined one reads as a
		// denial), but for the headers it adds for the app: they are what
		// the input gives (a replay shows them), and logging them would
		// cost every line of an allowed request.
		res := zerolog.Dict().Bool("allow", d.Allow)
		if d.Status != 0 {
			res.Int("status", d.Status)
		}
		if len(d.Reasons) > 0 {
			res.Strs("reason", d.Reasons)
		}
		if d.BlockFor > 0 {
			// As the policy asked, before WARDEN_MAX_BLOCK_FOR's cap.
			res.Int64("block_for_seconds", int64(d.BlockFor/time.Second))
		}
		e.Dict("result", res)
	}
	if len(d.Mask) > 0 || in.ParsedBodyRaw != "" {
		// What is not in the input as logged, for the reader and for replay.
		erased := zerolog.Arr()
		for _, p := range d.Mask {
			erased.Str(p)
		}
		if in.ParsedBodyRaw != "" {
			erased.Str("/input/parsed_body") // never logged
		}
		e.Array("erased", erased)
	}
	if d.Cached || err != nil {
		e.RawJSON("metrics", noMetrics)
	} else {
		st.buf = append(st.buf[:0], `{"timer_rego_query_eval_ns":`...)
		st.buf = strconv.AppendInt(st.buf, took.Nanoseconds(), 10)
		e.RawJSON("metrics", append(st.buf, '}'))
	}

	w := zerolog.Dict().Str("event", "decision").Str("request_id", in.Transaction).Bool("allow", allowed)
	switch {
	case st.limited:
		w.Int("status", http.StatusTooManyRequests).Str("reason", pep.ReasonRateLimited)
	case !allowed:
		w.Int("status", deniedStatus(d.Status))
	}
	if reason, fromPolicy := reasonOf(d, err); !st.limited && reason != "" && !(fromPolicy && m != nil && m.result) {
		w.Str("reason", reason)
	}
	st.buf = appendSeconds(st.buf[:0], took)
	w.Bool("cached", d.Cached).RawJSON("eval_s", st.buf)
	if sampled {
		// This line stands for 1/sample_rate allowed cached decisions.
		w.RawJSON("sample_rate", a.dlog.rateJSON)
	}
	if err != nil {
		w.AnErr("error", err)
	}
	if a.accessFields && line != nil {
		line.Hold(e, w, !allowed)
		return
	}
	e.Dict("warden", w).Send()
}

// logInput writes the policy input to the decision log line: credentials
// never (the token header never reaches the input; query parameters and
// headers whose names say they hold one are replaced), the parsed body
// never, and nothing the bundle's mask erases. The rest is written so that
// the input the policy saw can be rebuilt from it (ReadLoggedInput): the
// query as its raw string, which bundle parses as it parsed the request's,
// and a repeated header once, joined as the policy saw it.
func (a *Authorizer) logInput(d *zerolog.Event, st *state, m *logMask) {
	in := &st.in
	str := func(name, value string) {
		if !m.field(name) {
			d.Str(name, value)
		}
	}
	str("method", in.Method)
	// Path parameters (WARDEN_PATH_SEMICOLON=keep) can be session ids.
	str("path", redact.Path(in.Path))
	str("raw_path", redact.Path(in.RawPath))
	str("query", redact.Query(in.RawQuery))
	if !m.field("headers") {
		hdrs := zerolog.Dict()
		repeated := st.groupHeaders(a.dlog.seed)
		for i, h := range in.Headers {
			switch {
			case repeated && st.head[i] != int32(i):
				// Written with the first of its name.
			case m.child("headers", h.Name):
			case redact.IsCredentialName(h.Name):
				// The policy may read it; the audit log does not keep it.
				hdrs.Str(h.Name, redacted)
			case repeated && st.next[i] >= 0:
				st.buf = append(st.buf[:0], h.Value...)
				for j := st.next[i]; j >= 0; j = st.next[j] {
					st.buf = append(st.buf, ", "...)
					st.buf = append(st.buf, in.Headers[j].Value...)
				}
				hdrs.Bytes(h.Name, st.buf)
			default:
				hdrs.Str(h.Name, h.Value)
			}
		}
		d.Dict("headers", hdrs)
	}
	str("transaction", in.Transaction)
	str("sender", in.Sender)
	if !m.field("peer") {
		peer := zerolog.Dict()
		if !m.child("peer", "spiffe_id") {
			peer.Str("spiffe_id", in.PeerID)
		}
		if !m.child("peer", "trust_domain") {
			peer.Str("trust_domain", in.PeerTrustDomain)
		}
		d.Dict("peer", peer)
	}
	if !m.field("destination") && !m.child("destination", "spiffe_id") {
		d.Dict("destination", zerolog.Dict().Str("spiffe_id", in.DestinationID))
	}
	if op := in.Operation; op != nil && !m.field("operation") {
		od := zerolog.Dict().Str("id", op.ID).Str("path_template", op.PathTemplate)
		// The path parameters are the path's own segments: erased with it.
		// A mask path under /input/operation/path_params erases them all.
		if op.PathParams != nil && !m.field("path") && !m.field("raw_path") && !m.child("operation", "path_params") {
			params := zerolog.Dict()
			for name, v := range op.PathParams {
				logParam(params, name, v)
			}
			od.Dict("path_params", params)
		}
		d.Dict("operation", od)
	}
	if sig := in.Signature; sig != nil && !m.field("signature") {
		d.Dict("signature", zerolog.Dict().Str("key_id", sig.KeyID).Str("alg", sig.Alg).
			Int64("created", sig.Created).Strs("components", sig.Components))
	}
	if g := in.GRPC; g != nil && !m.field("grpc") {
		gd := zerolog.Dict()
		if !m.child("grpc", "service") {
			gd.Str("service", g.Service)
		}
		if !m.child("grpc", "method") {
			gd.Str("method", g.Method)
		}
		d.Dict("grpc", gd)
	}
	if tok := st.token; tok != nil && !m.field("token") {
		// Serialized once per verified token, not per line (unless masked).
		if claims := m.tokenJSON(tok.JSON); claims != nil {
			d.RawJSON("token", claims)
		}
	}
}

// logParam writes a path parameter as openapi typed it: a string, int64,
// float64, bool, or a list of those.
func logParam(d *zerolog.Event, name string, v any) {
	switch v := v.(type) {
	case string:
		d.Str(name, v)
	case int64:
		d.Int64(name, v)
	case float64:
		d.Float64(name, v)
	case bool:
		d.Bool(name, v)
	case []any:
		arr := zerolog.Arr()
		for _, x := range v {
			switch x := x.(type) {
			case string:
				arr.Str(x)
			case int64:
				arr.Int64(x)
			case float64:
				arr.Float64(x)
			case bool:
				arr.Bool(x)
			default:
				arr.Interface(x)
			}
		}
		d.Array(name, arr)
	default:
		d.Interface(name, v)
	}
}

// groupHeaders links the input's headers of one name (head, next) and
// reports whether any name repeats. The policy sees a repeated header
// once, its values joined with ", " (bundle's headersValue); the log must
// too, since a JSON object with a name twice keeps one value in most
// readers, and replaying the line would then decide on another input. An
// open-addressing table keeps it linear in the number of headers, which a
// client chooses (up to WARDEN_MAX_HEADERS).
func (st *state) groupHeaders(seed maphash.Seed) bool {
	hs := st.in.Headers
	n := len(hs)
	if n < 2 {
		return false
	}
	size := 16
	for size < 2*n {
		size <<= 1
	}
	st.slots = resize(st.slots, size)
	clear(st.slots)
	st.head = resize(st.head, n)
	st.next = resize(st.next, n)
	st.tail = resize(st.tail, n)
	repeated := false
	for i, h := range hs {
		st.next[i] = -1
		j := int(maphash.String(seed, h.Name)) & (size - 1)
		for {
			s := st.slots[j]
			if s == 0 {
				st.slots[j] = int32(i + 1)
				st.head[i], st.tail[i] = int32(i), int32(i)
				break
			}
			if f := s - 1; hs[f].Name == h.Name {
				st.next[st.tail[f]], st.tail[f] = int32(i), int32(i)
				st.head[i] = f
				repeated = true
				break
			}
			j = (j + 1) & (size - 1)
		}
	}
	return repeated
}

func resize(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}
