package cache

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

// fill is one in-flight fetch. The fetching goroutine appends to file; readers
// read behind it with ReadAt and wait on the progress channel for more.
//
// Until the fetch has succeeded, readers are held one byte behind the writer. A
// client therefore never receives a complete object that later fails its length or
// integrity check: a failed fetch ends every stream with an error instead.
type fill struct {
	key string

	mu      sync.Mutex
	refs    int
	file    *os.File
	written int64
	size    int64
	source  string
	started time.Time
	isStart bool
	done    bool
	err     error
	notify  chan struct{} // closed and replaced on every change
}

func newFill(key string) *fill {
	return &fill{key: key, size: -1, notify: make(chan struct{})}
}

func (f *fill) acquire() {
	f.mu.Lock()
	f.refs++
	f.mu.Unlock()
}

// release drops a reference; the last one closes and removes the scratch file (a
// store that renamed it into place has already moved it away from that name).
func (f *fill) release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	file := f.file
	f.mu.Unlock()
	if last && file != nil {
		file.Close()
		os.Remove(file.Name())
	}
}

func (f *fill) broadcastLocked() {
	close(f.notify)
	f.notify = make(chan struct{})
}

func (f *fill) setFile(file *os.File) {
	f.mu.Lock()
	f.file = file
	f.mu.Unlock()
}

func (f *fill) start(size int64, source string) {
	f.mu.Lock()
	f.size, f.source, f.started, f.isStart = size, source, time.Now(), true
	f.broadcastLocked()
	f.mu.Unlock()
}

func (f *fill) progress(n int64) {
	f.mu.Lock()
	f.written = n
	f.broadcastLocked()
	f.mu.Unlock()
}

func (f *fill) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	f.broadcastLocked()
	f.mu.Unlock()
}

// wait blocks until the fetch has finished, returning its error.
func (f *fill) wait(ctx context.Context) error {
	for {
		f.mu.Lock()
		done, err, ch := f.done, f.err, f.notify
		f.mu.Unlock()
		if done {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitStarted blocks until the source has answered (so size and source are known)
// or the fetch has failed.
func (f *fill) waitStarted(ctx context.Context) error {
	for {
		f.mu.Lock()
		started, done, err, ch := f.isStart, f.done, f.err, f.notify
		f.mu.Unlock()
		if done && err != nil {
			return err
		}
		if started || done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fillReader streams a fill to one client.
type fillReader struct {
	f      *fill
	ctx    context.Context
	off    int64
	closed bool
}

func (r *fillReader) Read(p []byte) (int, error) {
	f := r.f
	for {
		f.mu.Lock()
		avail, done, err, ch, file := f.written, f.done, f.err, f.notify, f.file
		f.mu.Unlock()
		if done && err != nil {
			return 0, err
		}
		if !done {
			avail-- // hold back the last byte until the fetch has succeeded
		}
		if r.off < avail {
			n := int64(len(p))
			if rest := avail - r.off; rest < n {
				n = rest
			}
			k, rerr := file.ReadAt(p[:n], r.off)
			r.off += int64(k)
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				return k, rerr
			}
			if k > 0 {
				return k, nil
			}
			return 0, derrors.New(derrors.Unavailable, "cache: short read")
		}
		if done {
			return 0, io.EOF
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *fillReader) Close() error {
	if !r.closed {
		r.closed = true
		r.f.release()
	}
	return nil
}

// waitBytes blocks until n bytes have arrived (true) or the fetch has finished
// (false; its error, if any, is for wait to report).
func (f *fill) waitBytes(ctx context.Context, n int64) (bool, error) {
	for {
		f.mu.Lock()
		written, done, ch := f.written, f.done, f.notify
		f.mu.Unlock()
		if done {
			return false, nil
		}
		if written >= n {
			return true, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}
