package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// fileUpstream serves a GOPROXY tree (a module cache's download directory) over
// HTTP on loopback: modgate's upstream in the benchmarks. It counts what it is
// asked, so a scenario can check how many requests reached the upstream.
type fileUpstream struct {
	URL string

	root *os.Root
	// latency is slept before each response's headers, standing in for a remote
	// mirror's round trip.
	latency  time.Duration
	requests atomic.Int64
	notFound atomic.Int64
	// sumdb, when set, answers /sumdb/<name>/... as a mirror does for the go
	// command and for modgate's verification (see serveSumDB).
	sumdb atomic.Pointer[mountedSumDB]
	srv   *http.Server
	done  chan struct{}
}

// startFileUpstream serves dir on a loopback port until Close.
func startFileUpstream(dir string, latency time.Duration) (*fileUpstream, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("bench: upstream: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("bench: upstream: %w", err)
	}
	u := &fileUpstream{URL: "http://" + ln.Addr().String(), root: root, latency: latency, done: make(chan struct{})}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(u.done)
		u.srv.Serve(ln)
	}()
	return u, nil
}

// ServeHTTP answers GET and HEAD for regular files under the root and 404 for
// everything else, directories included: a GOPROXY never lists directories, and
// the go command treats 404 as "not here, try the next proxy".
func (u *fileUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	if u.latency > 0 {
		select {
		case <-time.After(u.latency):
		case <-r.Context().Done():
			return
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if db := u.sumdb.Load(); db != nil {
		if rest, ok := strings.CutPrefix(r.URL.Path, db.prefix); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + rest
			db.handler.ServeHTTP(w, r2)
			return
		}
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	f, err := u.root.Open(name) // os.Root refuses paths that escape the tree
	if err != nil {
		u.notFound.Add(1)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		u.notFound.Add(1)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	http.ServeContent(w, r, "", info.ModTime(), f)
}

type mountedSumDB struct {
	prefix  string // "/sumdb/<name>/"
	handler http.Handler
}

// mountSumDB serves a checksum database's protocol (paths relative to its root)
// under /sumdb/<name>/, behind the same latency as every other answer.
func (u *fileUpstream) mountSumDB(name string, h http.Handler) {
	u.sumdb.Store(&mountedSumDB{prefix: "/sumdb/" + name + "/", handler: h})
}

// Requests returns how many requests the upstream has received.
func (u *fileUpstream) Requests() int64 { return u.requests.Load() }

// NotFound returns how many of them were answered 404.
func (u *fileUpstream) NotFound() int64 { return u.notFound.Load() }

// Close stops the server and waits for it.
func (u *fileUpstream) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := u.srv.Shutdown(ctx)
	<-u.done
	u.root.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
