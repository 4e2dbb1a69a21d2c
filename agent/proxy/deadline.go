package proxy

import "time"

// Deadlines set request after request, coalesced. fasthttp sets a
// connection's deadlines around every request (the idle wait, the request,
// the response; the app's write and read), and each setting costs a timer
// update in the runtime's poller, about 0.3 µs on the project's VMs: five a
// request, more than a tenth of what warden spends on a cached request.
// Only the deadline of the next read or write matters, and a request
// usually needs one read and one write each way, so a deadline is armed
// when the next I/O needs it, and only when the one armed is too early or
// more than a slack too late. A timeout therefore fires no earlier than
// asked and at most the slack later; the slack is a sixteenth of the
// shortest timeout the connection takes, and at most maxDeadlineSlack.
//
// Lazy arming holds only while the goroutine that sets a deadline is the
// one that does the I/O, as fasthttp's serving loop and the upstream
// client do. Code that wakes a blocked read from elsewhere (CloseSource, a
// tunnel's close) sets the underlying connection's deadline itself.

// maxDeadlineSlack bounds how late a coalesced deadline fires.
const maxDeadlineSlack = time.Second

// deadlineSlack is the slack for a connection whose timeouts are ts (zero
// ones ignored).
func deadlineSlack(ts ...time.Duration) time.Duration {
	slack := maxDeadlineSlack
	for _, t := range ts {
		if t > 0 {
			slack = min(slack, t/16)
		}
	}
	return slack
}

// lazyDeadline is one direction's deadline of a connection.
type lazyDeadline struct {
	want, armed time.Time
	pending     bool
}

// set records the deadline asked for; arm applies it.
func (d *lazyDeadline) set(t time.Time) { d.want, d.pending = t, true }

// arm returns the deadline to set on the connection before the next I/O,
// and whether one must be set at all.
func (d *lazyDeadline) arm(slack time.Duration) (time.Time, bool) {
	if !d.pending {
		return time.Time{}, false
	}
	d.pending = false
	w := d.want
	switch {
	case w.IsZero():
		if d.armed.IsZero() {
			return time.Time{}, false
		}
		d.armed = time.Time{}
		return d.armed, true
	case !d.armed.IsZero() && !w.After(d.armed) && d.armed.Sub(w) <= slack:
		return time.Time{}, false // the armed one fires in time, and not too late
	}
	d.armed = w.Add(slack)
	return d.armed, true
}

// armed records a deadline set on the connection directly.
func (d *lazyDeadline) setArmed(t time.Time) { d.want, d.armed, d.pending = t, t, false }
