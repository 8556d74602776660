// Package logwriter batches log output: modgate writes one JSON access-log line
// per request, and one write(2) per line was a measurable share of a warm request
// (docs/benchmarks.md). Lines are held for at most the flush interval, so a crash
// loses at most that much log; the audit trail, not the log, is the durable record.
package logwriter

import (
	"io"
	"sync"
	"time"
)

// Writer buffers writes to an underlying writer and flushes them when the buffer
// is full, every interval, and on Close. It is safe for concurrent use; each Write
// is kept whole (a log line is never split across flushes unless it is larger
// than the buffer).
type Writer struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	size int
	err  error

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a Writer over w holding up to size bytes for at most interval.
func New(w io.Writer, interval time.Duration, size int) *Writer {
	if size <= 0 {
		size = 64 << 10
	}
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	lw := &Writer{w: w, buf: make([]byte, 0, size), size: size, stop: make(chan struct{}), done: make(chan struct{})}
	go lw.loop(interval)
	return lw
}

func (lw *Writer) loop(interval time.Duration) {
	defer close(lw.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			lw.Flush()
		case <-lw.stop:
			return
		}
	}
}

// Write appends p, flushing first when p would not fit. It reports the first
// error the underlying writer returned, as a log handler would want to know.
func (lw *Writer) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.buf)+len(p) > lw.size {
		lw.flushLocked()
	}
	if len(p) > lw.size {
		_, err := lw.w.Write(p)
		if err != nil && lw.err == nil {
			lw.err = err
		}
		return len(p), err
	}
	lw.buf = append(lw.buf, p...)
	return len(p), lw.err
}

// Flush writes out what is buffered.
func (lw *Writer) Flush() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.flushLocked()
}

func (lw *Writer) flushLocked() error {
	if len(lw.buf) == 0 {
		return lw.err
	}
	_, err := lw.w.Write(lw.buf)
	lw.buf = lw.buf[:0]
	if err != nil && lw.err == nil {
		lw.err = err
	}
	return err
}

// Close stops the background flushes and flushes what is left. Writes after
// Close go straight through.
func (lw *Writer) Close() error {
	lw.once.Do(func() {
		close(lw.stop)
		<-lw.done
	})
	lw.mu.Lock()
	defer lw.mu.Unlock()
	err := lw.flushLocked()
	lw.size = 0 // every later write is larger than the buffer: written through
	return err
}
