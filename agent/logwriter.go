package agent

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// BatchWriter is the log sink of the request path: Write appends the line to
// an in-memory batch and returns at once; a background goroutine writes the
// batch every FlushInterval (or when it is half full) in one system call.
// Per-request log lines (access, decision) would otherwise cost a write(2)
// each, and system calls are where a proxy's time goes. When the batch is
// full, lines are dropped and counted instead of blocking the request;
// Dropped reports how many.
//
// zerolog's diode writer was the obvious choice; it allocates per line and
// writes each line with its own system call, so warden has this one.
type BatchWriter struct {
	w     io.Writer
	limit int

	mu    sync.Mutex
	batch []byte
	spare []byte

	dropped atomic.Uint64
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// Flush policy: at most this long between a line and its write, and at most
// limit bytes held.
const (
	FlushInterval   = 100 * time.Millisecond
	defaultBatchMax = 4 << 20
)

// NewBatchWriter starts the writer; Close flushes and stops it.
func NewBatchWriter(w io.Writer, limit int) *BatchWriter {
	if limit <= 0 {
		limit = defaultBatchMax
	}
	b := &BatchWriter{
		w:     w,
		limit: limit,
		batch: make([]byte, 0, 64<<10),
		spare: make([]byte, 0, 64<<10),
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go b.run()
	return b
}

// Write queues p, a whole log line. It never blocks on I/O.
func (b *BatchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	if len(b.batch)+len(p) > b.limit {
		b.mu.Unlock()
		b.dropped.Add(1)
		return len(p), nil
	}
	b.batch = append(b.batch, p...)
	half := len(b.batch) > b.limit/2
	b.mu.Unlock()
	if half {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Dropped is the number of lines lost because the batch was full.
func (b *BatchWriter) Dropped() uint64 { return b.dropped.Load() }

func (b *BatchWriter) run() {
	defer close(b.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.kick:
		case <-b.stop:
			b.flush()
			return
		}
		b.flush()
	}
}

func (b *BatchWriter) flush() {
	b.mu.Lock()
	out := b.batch
	b.batch = b.spare[:0]
	b.mu.Unlock()
	if len(out) > 0 {
		_, _ = b.w.Write(out) // nowhere to report a failing log sink
	}
	b.mu.Lock()
	b.spare = out[:0]
	b.mu.Unlock()
}

// Close writes what is queued and stops the background goroutine.
func (b *BatchWriter) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return nil
}
