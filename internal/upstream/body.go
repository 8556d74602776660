package upstream

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

// idleTimeoutBody cancels the request when no body bytes arrive for the timeout. A
// total deadline would cut off a large zip on a slow but steady link; what must end
// is a transfer that has stalled.
type idleTimeoutBody struct {
	rc      io.ReadCloser
	timeout time.Duration
	timer   *time.Timer
	cancel  context.CancelFunc
	fired   chan struct{}
}

func newIdleTimeoutBody(rc io.ReadCloser, timeout time.Duration, cancel context.CancelFunc) io.ReadCloser {
	if timeout <= 0 {
		return &cancelOnClose{rc, cancel}
	}
	b := &idleTimeoutBody{rc: rc, timeout: timeout, cancel: cancel, fired: make(chan struct{})}
	b.timer = time.AfterFunc(timeout, func() {
		close(b.fired)
		cancel()
	})
	return b
}

func (b *idleTimeoutBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		select {
		case <-b.fired:
			return n, derrors.WithCause(derrors.UpstreamTimeout, err, "upstream mirror stalled mid-transfer")
		default:
		}
		return n, derrors.WithCause(derrors.BadUpstream, err, "upstream mirror transfer failed")
	}
	if n > 0 {
		b.timer.Reset(b.timeout)
	}
	return n, err
}

func (b *idleTimeoutBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
