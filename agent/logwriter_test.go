package agent

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) snapshot() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestBatchWriterBatchesAndFlushesOnClose(t *testing.T) {
	out := &lockedBuffer{}
	w := NewBatchWriter(out, 1<<20)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				w.Write([]byte("{\"line\":1}\n"))
			}
		}()
	}
	wg.Wait()
	w.Close()
	s, writes := out.snapshot()
	if n := strings.Count(s, "{\"line\":1}\n"); n != 1000 {
		t.Fatalf("%d whole lines written, want 1000", n)
	}
	if writes >= 1000 {
		t.Errorf("%d writes for 1000 lines: not batched", writes)
	}
}

func TestBatchWriterFlushesWithoutClose(t *testing.T) {
	out := &lockedBuffer{}
	w := NewBatchWriter(out, 1<<20)
	defer w.Close()
	w.Write([]byte("hello\n"))
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if s, _ := out.snapshot(); s == "hello\n" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("a queued line was not written within the flush interval")
}

// A stuck log sink must not stall requests: lines beyond the limit are
// dropped and counted.
func TestBatchWriterDropsWhenFullInsteadOfBlocking(t *testing.T) {
	block := make(chan struct{})
	w := NewBatchWriter(writerFunc(func(p []byte) (int, error) { <-block; return len(p), nil }), 100)
	line := []byte(strings.Repeat("x", 30) + "\n")
	for i := 0; i < 50; i++ {
		w.Write(line)
	}
	if w.Dropped() == 0 {
		t.Fatal("nothing dropped although the sink is stuck and the batch full")
	}
	close(block)
	w.Close()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func BenchmarkBatchWriter(b *testing.B) {
	w := NewBatchWriter(writerFunc(func(p []byte) (int, error) { return len(p), nil }), 0)
	defer w.Close()
	line := []byte(`{"level":"info","event":"access","method":"GET","path":"/api/v1/items","status":200}` + "\n")
	b.ReportAllocs()
	for b.Loop() {
		w.Write(line)
	}
}
