package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/storage/storagetest"
)

func newTestCache(t *testing.T) (*Cache, storage.Store) {
	t.Helper()
	store, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return New(store, Config{NegativeTTL: time.Minute}, slog.New(slog.DiscardHandler), metrics.Discard()), store
}

// source is a fake origin that counts fetches; its bodies can be gated and broken.
type source struct {
	data    []byte
	fetches atomic.Int32
	gate    chan struct{} // when set, the body stalls after half until closed
	failAt  int           // when > 0, the body fails after this many bytes
	err     error         // when set, Fetch fails with it
}

func (s *source) fetch(ctx context.Context) (*Fetched, error) {
	s.fetches.Add(1)
	if s.err != nil {
		return nil, s.err
	}
	return &Fetched{Body: io.NopCloser(&body{s: s}), Size: int64(len(s.data)), Source: "test"}, nil
}

type body struct {
	s   *source
	off int
}

func (b *body) Read(p []byte) (int, error) {
	s := b.s
	if b.off >= len(s.data) {
		return 0, io.EOF
	}
	if s.failAt > 0 && b.off >= s.failAt {
		return 0, derrors.New(derrors.BadUpstream, "connection reset")
	}
	if s.gate != nil && b.off >= len(s.data)/2 {
		<-s.gate
	}
	end := min(b.off+len(p), b.off+4096, len(s.data))
	if s.failAt > 0 {
		end = min(end, s.failAt)
	}
	if s.gate != nil && b.off < len(s.data)/2 {
		end = min(end, len(s.data)/2)
	}
	n := copy(p, s.data[b.off:end])
	b.off += n
	return n, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func readEntry(e *Entry) ([]byte, error) {
	defer e.Close()
	if e.Object != nil {
		return io.ReadAll(e.Object)
	}
	return io.ReadAll(e.Stream)
}

func TestOneFetchForConcurrentRequests(t *testing.T) {
	c, store := newTestCache(t)
	src := &source{data: randomBytes(1 << 20), gate: make(chan struct{})}
	spec := Spec{Key: "mod/example.com/m/@v/v1.0.0.zip", Immutable: true, Stream: true, Fetch: src.fetch}

	const n = 100
	var wg sync.WaitGroup
	results := make([][]byte, n)
	errs := make([]error, n)
	started := make(chan struct{}, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := c.Get(context.Background(), spec)
			started <- struct{}{}
			if err != nil {
				errs[i] = err
				return
			}
			results[i], errs[i] = readEntry(e)
		}()
	}
	for range n {
		<-started // every request has joined before the transfer completes
	}
	close(src.gate)
	wg.Wait()
	if got := src.fetches.Load(); got != 1 {
		t.Errorf("upstream fetches = %d, want 1", got)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if !bytes.Equal(results[i], src.data) {
			t.Fatalf("request %d got %d bytes differing from the source", i, len(results[i]))
		}
	}
	if got := storagetest.Get(t, store, spec.Key); got != string(src.data) {
		t.Error("stored object differs from source")
	}
	// And now it is a hit: no more fetches.
	e, err := c.Get(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if e.Result != "hit" || e.Object == nil {
		t.Errorf("second Get: result %q, want a stored hit", e.Result)
	}
	e.Close()
	if src.fetches.Load() != 1 {
		t.Error("hit caused a fetch")
	}
	assertScratchEmpty(t, store)
}

func TestFailedTransferNeverServedWhole(t *testing.T) {
	tests := []struct {
		name  string
		src   *source
		check func(*os.File, int64) error
	}{
		{name: "reset-mid-body", src: &source{data: randomBytes(300_000), failAt: 150_000}},
		{name: "check-rejects-complete-body", src: &source{data: randomBytes(10_000)},
			check: func(*os.File, int64) error { return derrors.New(derrors.BadUpstream, "checksum mismatch") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, store := newTestCache(t)
			spec := Spec{Key: "k/v1.0.0.zip", Immutable: true, Stream: true, Fetch: tt.src.fetch, Check: tt.check}
			e, err := c.Get(context.Background(), spec)
			if err == nil {
				var got []byte
				got, err = readEntry(e)
				if len(got) >= len(tt.src.data) {
					t.Fatalf("client received all %d bytes of a failed transfer", len(got))
				}
			}
			if !errors.Is(err, derrors.BadUpstream) {
				t.Fatalf("err = %v, want BadUpstream", err)
			}
			if _, err := store.Stat(context.Background(), spec.Key); !errors.Is(err, derrors.NotFound) {
				t.Errorf("failed object was stored: %v", err)
			}
			// Not negatively cached: the next request tries again.
			tt.src.failAt, spec.Check = 0, nil
			e, err = c.Get(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readEntry(e)
			if err != nil || !bytes.Equal(got, tt.src.data) {
				t.Fatalf("retry: %d bytes, %v", len(got), err)
			}
			assertScratchEmpty(t, store)
		})
	}
}

func TestShortBodyRejected(t *testing.T) {
	c, store := newTestCache(t)
	data := randomBytes(1000)
	fetch := func(context.Context) (*Fetched, error) {
		return &Fetched{Body: io.NopCloser(bytes.NewReader(data[:900])), Size: 1000}, nil
	}
	e, err := c.Get(context.Background(), Spec{Key: "k/short", Immutable: true, Stream: true, Fetch: fetch})
	if err == nil {
		_, err = readEntry(e)
	}
	if !errors.Is(err, derrors.BadUpstream) {
		t.Fatalf("err = %v, want BadUpstream for a truncated body", err)
	}
	if _, err := store.Stat(context.Background(), "k/short"); err == nil {
		t.Error("truncated object stored")
	}
}

func TestStaleIfError(t *testing.T) {
	c, store := newTestCache(t)
	storagetest.Put(t, store, "k/list", []byte("v1.0.0\n"))
	old := time.Now().Add(-time.Hour)
	os.Chtimes(store.(*storage.Disk).ScratchDir()+"/../k/list", old, old)

	down := &source{err: derrors.New(derrors.BadUpstream, "upstream mirror unreachable")}
	e, err := c.Get(context.Background(), Spec{Key: "k/list", TTL: time.Minute, Fetch: down.fetch})
	if err != nil {
		t.Fatalf("stale list not served: %v", err)
	}
	got, _ := readEntry(e)
	if e.Result != "stale" || string(got) != "v1.0.0\n" {
		t.Errorf("got %q result %q, want the stale list", got, e.Result)
	}

	fresh := &source{data: []byte("v1.0.0\nv1.1.0\n")}
	e, err = c.Get(context.Background(), Spec{Key: "k/list", TTL: time.Minute, Fetch: fresh.fetch})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = readEntry(e)
	if string(got) != "v1.0.0\nv1.1.0\n" {
		t.Errorf("after revalidation got %q", got)
	}
	// Within the TTL, no fetch.
	e, _ = c.Get(context.Background(), Spec{Key: "k/list", TTL: time.Minute, Fetch: fresh.fetch})
	e.Close()
	if fresh.fetches.Load() != 1 {
		t.Errorf("fetches within TTL = %d, want 1", fresh.fetches.Load())
	}

	gone := &source{err: derrors.New(derrors.NotFound, "not found")}
	os.Chtimes(store.(*storage.Disk).ScratchDir()+"/../k/list", old, old)
	if _, err := c.Get(context.Background(), Spec{Key: "k/list", TTL: time.Minute, Fetch: gone.fetch}); !errors.Is(err, derrors.NotFound) {
		t.Errorf("definite not-found: err = %v, want NotFound (not stale)", err)
	}
}

func TestNegativeCache(t *testing.T) {
	c, _ := newTestCache(t)
	src := &source{err: derrors.New(derrors.NotFound, "not found: no such module")}
	spec := Spec{Key: "k/missing", Fetch: src.fetch}
	for range 3 {
		if _, err := c.Get(context.Background(), spec); !errors.Is(err, derrors.NotFound) {
			t.Fatalf("err = %v, want NotFound", err)
		}
	}
	if src.fetches.Load() != 1 {
		t.Errorf("fetches = %d, want 1 (the rest from the negative cache)", src.fetches.Load())
	}
	c.Forget("k/missing")
	c.Get(context.Background(), spec)
	if src.fetches.Load() != 2 {
		t.Errorf("after Forget fetches = %d, want 2", src.fetches.Load())
	}
}

// A client hanging up must not abort the fetch other clients and the cache share.
func TestClientCancelDoesNotAbortFetch(t *testing.T) {
	c, store := newTestCache(t)
	src := &source{data: randomBytes(200_000), gate: make(chan struct{})}
	spec := Spec{Key: "k/v1.0.0.zip", Immutable: true, Stream: true, Fetch: src.fetch}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := c.Get(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(e.Stream); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled reader: err = %v", err)
	}
	e.Close()
	close(src.gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := store.Stat(context.Background(), spec.Key); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("object never stored after the client hung up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func assertScratchEmpty(t *testing.T, store storage.Store) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		ents, _ := os.ReadDir(store.ScratchDir())
		if len(ents) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("scratch dir not cleaned: %d files left", len(ents))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Until a fetch has succeeded, readers are held one byte short, so a client that
// has received everything the upstream sent still cannot mistake it for the whole
// object when the final check fails.
func TestLastByteHeldUntilChecked(t *testing.T) {
	c, _ := newTestCache(t)
	data := randomBytes(50_000)
	eofGate := make(chan struct{})
	fetch := func(context.Context) (*Fetched, error) {
		r := io.MultiReader(bytes.NewReader(data), readerFunc(func([]byte) (int, error) {
			<-eofGate
			return 0, io.EOF
		}))
		return &Fetched{Body: io.NopCloser(r), Size: -1}, nil
	}
	check := func(*os.File, int64) error { return derrors.New(derrors.BadUpstream, "checksum mismatch") }
	e, err := c.Get(context.Background(), Spec{Key: "k/v1.0.0.zip", Immutable: true, Stream: true, Fetch: fetch, Check: check})
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan error)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := e.Stream.Read(buf)
			got.Add(int64(n))
			if err != nil {
				done <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < int64(len(data)-1) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := got.Load(); n != int64(len(data)-1) {
		t.Fatalf("reader got %d bytes before the fetch finished, want %d", n, len(data)-1)
	}
	close(eofGate)
	if err := <-done; !errors.Is(err, derrors.BadUpstream) {
		t.Errorf("reader error = %v, want the check's BadUpstream", err)
	}
	e.Close()
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// keyLocks stands in for a cross-process lock (PostgreSQL advisory locks in
// production): one mutex per key, counting acquisitions.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	taken atomic.Int32
	fail  error
}

func (k *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	if k.fail != nil {
		return nil, k.fail
	}
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*sync.Mutex)
	}
	m, ok := k.locks[key]
	if !ok {
		m = &sync.Mutex{}
		k.locks[key] = m
	}
	k.mu.Unlock()
	m.Lock()
	k.taken.Add(1)
	return m.Unlock, nil
}

// Caches in several processes sharing one store (replicas over one bucket) fetch an
// object once between them when a fill lock is configured; and when the lock is
// unavailable they still serve, each fetching for itself.
func TestFillLockAcrossProcesses(t *testing.T) {
	tests := []struct {
		name        string
		lockErr     error
		wantFetches int32
	}{
		{"ok/one-fetch-across-caches", nil, 1},
		{"ok/lock-down-each-fetches", errors.New("database unreachable"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, err := storage.NewDisk(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			locks := &keyLocks{fail: tt.lockErr}
			var caches []*Cache
			for range 3 {
				caches = append(caches, New(store, Config{NegativeTTL: time.Minute, Lock: locks.lock}, slog.New(slog.DiscardHandler), metrics.Discard()))
			}
			src := &source{data: randomBytes(1 << 20), gate: make(chan struct{})}
			spec := Spec{Key: "mod/example.com/m/@v/v1.0.0.zip", Immutable: true, Stream: true, Fetch: src.fetch}

			const perCache = 20
			var wg sync.WaitGroup
			errc := make(chan error, 3*perCache)
			joined := make(chan struct{}, 3*perCache)
			for _, c := range caches {
				for range perCache {
					wg.Add(1)
					go func() {
						defer wg.Done()
						e, err := c.Get(context.Background(), spec)
						joined <- struct{}{}
						if err != nil {
							errc <- err
							return
						}
						got, err := readEntry(e)
						if err != nil {
							errc <- err
						} else if !bytes.Equal(got, src.data) {
							errc <- errors.New("served bytes differ from the source")
						}
					}()
				}
			}
			if tt.lockErr != nil {
				// Each cache fills on its own: hold the source until every request
				// has joined its cache's fill, as TestOneFetchForConcurrentRequests
				// does, so the count measures coordination and not timing.
				for range 3 * perCache {
					<-joined
				}
			} else {
				// Requests on the caches waiting for the lock cannot join until the
				// leader finishes; a late one finds the object stored (or takes the
				// lock and finds it then), so no timing can add a fetch.
				time.Sleep(50 * time.Millisecond)
			}
			close(src.gate)
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Error(err)
			}
			if got := src.fetches.Load(); got != tt.wantFetches {
				t.Errorf("upstream fetches = %d, want %d", got, tt.wantFetches)
			}
			assertScratchEmpty(t, store)
		})
	}
}

// A small object whose size the source does not announce is held until it is
// complete and checked, so a failed check is a clean error, not a broken stream.
func TestUnannouncedSmallObjectBuffered(t *testing.T) {
	c, _ := newTestCache(t)
	data := randomBytes(5000)
	fetch := func(context.Context) (*Fetched, error) {
		return &Fetched{Body: io.NopCloser(bytes.NewReader(data)), Size: -1}, nil
	}
	check := func(*os.File, int64) error { return derrors.New(derrors.BadUpstream, "corrupt module zip") }
	_, err := c.Get(context.Background(), Spec{Key: "k/v1.0.0.zip", Immutable: true, Stream: true, BufferBelow: 1 << 20, Fetch: fetch, Check: check})
	if !errors.Is(err, derrors.BadUpstream) {
		t.Fatalf("Get = %v, want the check's error before any byte is served", err)
	}
	ok := func(*os.File, int64) error { return nil }
	e, err := c.Get(context.Background(), Spec{Key: "k/v1.0.0.zip", Immutable: true, Stream: true, BufferBelow: 1 << 20, Fetch: fetch, Check: ok})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readEntry(e)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
}

// Fill stores an object for a request expected later: one fetch shared with a
// client that asks meanwhile, none when the object is stored or known missing,
// and a failed check stores nothing.
func TestFill(t *testing.T) {
	ctx := context.Background()
	c, store := newTestCache(t)
	src := &source{data: randomBytes(1 << 20), gate: make(chan struct{})}
	spec := Spec{Key: "mod/example.com/m/@v/v1.0.0.zip", Immutable: true, Stream: true, Fetch: src.fetch}

	filled := make(chan error, 1)
	go func() {
		stored, err := c.Fill(ctx, spec)
		if stored {
			err = errors.New("Fill reported the object stored before it was fetched")
		}
		filled <- err
	}()
	for src.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// A client asking while the fill runs joins it.
	got := make(chan []byte, 1)
	go func() {
		e, err := c.Get(ctx, spec)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		b, _ := readEntry(e)
		got <- b
	}()
	time.Sleep(20 * time.Millisecond)
	close(src.gate)
	if err := <-filled; err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, src.data) {
		t.Errorf("the client joining the fill got %d bytes differing from the source", len(b))
	}
	if storagetest.Get(t, store, spec.Key) != string(src.data) {
		t.Error("stored object differs from the source")
	}
	if stored, err := c.Fill(ctx, spec); !stored || err != nil {
		t.Errorf("second Fill = %v, %v; want stored", stored, err)
	}
	if n := src.fetches.Load(); n != 1 {
		t.Errorf("upstream fetches = %d, want 1", n)
	}

	missing := &source{err: derrors.New(derrors.NotFound, "not found")}
	mspec := Spec{Key: "k/missing", Fetch: missing.fetch}
	for range 2 {
		if _, err := c.Fill(ctx, mspec); !errors.Is(err, derrors.NotFound) {
			t.Fatalf("Fill of a missing object = %v, want NotFound", err)
		}
	}
	if n := missing.fetches.Load(); n != 1 {
		t.Errorf("fetches of the missing object = %d, want 1 (then the negative cache)", n)
	}

	bad := &source{data: randomBytes(1000)}
	bspec := Spec{Key: "k/bad", Immutable: true, Fetch: bad.fetch, Check: func(*os.File, int64) error {
		return derrors.New(derrors.BadUpstream, "checksum mismatch")
	}}
	if _, err := c.Fill(ctx, bspec); !errors.Is(err, derrors.BadUpstream) {
		t.Fatalf("Fill of an object failing its check = %v, want BadUpstream", err)
	}
	if _, err := store.Stat(ctx, "k/bad"); !errors.Is(err, derrors.NotFound) {
		t.Errorf("an object failing its check was stored (Stat: %v)", err)
	}
	assertScratchEmpty(t, store)
}
