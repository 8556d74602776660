// Package cache is modgate's read-through object cache. It decides when a stored
// object may be served (immutable objects forever, lists and queries for a TTL, stale
// copies when every upstream fails), remembers recent not-founds, and makes sure that
// any number of concurrent requests for one missing object cause exactly one fetch,
// whose bytes stream to every waiting client while they are being written to storage.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/storage"
)

// Fetched is an object's bytes as a source delivers them.
type Fetched struct {
	Body   io.ReadCloser
	Size   int64  // -1 when unknown
	Source string // where the bytes came from, for logs and audit
}

// Spec says what to get and how it may be cached.
type Spec struct {
	Key       string
	Immutable bool
	// TTL is how long a mutable object is served without asking the source again.
	TTL time.Duration
	// Stream lets clients read the object while it is being fetched. Worth it for
	// large immutable objects (zips); small ones are served only once complete and
	// checked, so a bad upstream answer becomes a clean error status.
	Stream bool
	// BufferBelow, with Stream, still holds back objects whose announced size is
	// below it until they are complete and checked, so a failed Check becomes a
	// clean error status instead of a broken transfer. Streaming only pays off for
	// large objects; most module zips are small.
	BufferBelow int64
	// MaxSize bounds the object; a source sending more is an error.
	MaxSize int64
	// Memory, for an immutable object, keeps its bytes in memory once read from
	// the store when it is at most MaxMemoryObject long, and serves later hits
	// from there. Only for objects nothing deletes: another replica's delete
	// reaches the shared store, not this process's memory.
	Memory bool
	// Fetch gets the object from its source. It runs on a context detached from the
	// requesting client, so a client hanging up does not abort a fetch others share.
	Fetch func(ctx context.Context) (*Fetched, error)
	// Check validates the complete object before it is stored or its last byte is
	// released to any client. It reads f with ReadAt; f holds exactly size bytes.
	Check func(f *os.File, size int64) error
}

// fresh reports whether a copy of the object stored at modTime may be served
// without asking the source.
func (s Spec) fresh(modTime time.Time) bool {
	return s.Immutable || time.Since(modTime) < s.TTL
}

// Entry is a servable object. Exactly one of Object and Stream is set.
type Entry struct {
	// Object is a stored object; it supports Seek, so byte ranges can be served.
	Object storage.Object
	// Stream is an object still being fetched; it ends with an error rather than a
	// clean EOF if the fetch fails, so a truncated object is never served as whole.
	Stream  io.ReadCloser
	Size    int64 // -1 when unknown
	ModTime time.Time
	// Result is "hit", "miss" or "stale"; Source names where the bytes came from.
	Result string
	Source string
}

// Close releases the entry's reader.
func (e *Entry) Close() error {
	if e.Object != nil {
		return e.Object.Close()
	}
	return e.Stream.Close()
}

// Config tunes the cache.
type Config struct {
	NegativeTTL time.Duration // how long a not-found answer is remembered
	// Lock, when set, serializes fills of one key across every process sharing the
	// store (replicas over one bucket). The fetching goroutine takes it before
	// asking the source and holds it until the object is stored; having waited for
	// it, it looks in the store again and serves what another process stored
	// rather than fetching a second time. Within one process the in-flight map
	// already allows one fill per key, so each process takes the lock at most once
	// per key at a time. Nil: no cross-process coordination.
	Lock func(ctx context.Context, key string) (unlock func(), err error)
	// MemoryBytes bounds the bytes of small objects kept in memory (Spec.Memory);
	// 0 keeps none.
	MemoryBytes int64
}

// Cache is safe for concurrent use.
type Cache struct {
	store storage.Store
	cfg   Config
	log   *slog.Logger
	m     *metrics.Metrics
	neg   *negativeCache
	mem   *memory // nil: none

	mu       sync.Mutex
	inflight map[string]*fill
}

// New returns a cache over store.
func New(store storage.Store, cfg Config, log *slog.Logger, m *metrics.Metrics) *Cache {
	return &Cache{
		store:    store,
		cfg:      cfg,
		log:      log,
		m:        m,
		neg:      newNegativeCache(100_000),
		mem:      newMemory(cfg.MemoryBytes),
		inflight: make(map[string]*fill),
	}
}

// Forget drops what the cache remembers about key beside the store: a
// not-found answer, for an object that has just come into existence, and the
// bytes kept in memory, for one that has just been deleted.
func (c *Cache) Forget(key string) {
	c.neg.forget(key)
	if c.mem != nil {
		c.mem.forget(key)
	}
}

// Store returns the underlying store.
func (c *Cache) Store() storage.Store { return c.store }

// Get returns the object named by spec, from storage or from its source.
func (c *Cache) Get(ctx context.Context, spec Spec) (*Entry, error) {
	inMemory := spec.Memory && spec.Immutable && c.mem != nil
	if inMemory {
		if it, ok := c.mem.get(spec.Key); ok {
			c.m.Cache.WithLabelValues("hit").Inc()
			return &Entry{Object: newMemObject(it), Size: int64(len(it.data)), ModTime: it.modTime, Result: "hit", Source: "cache"}, nil
		}
	}
	if err := c.neg.get(spec.Key); err != nil {
		c.m.Cache.WithLabelValues("negative").Inc()
		return nil, err
	}
	// Open first and judge freshness from the open object: a hit, the hot path,
	// then costs one path lookup (open + fstat) rather than two (stat, then open),
	// and a miss learns it from the same failed open.
	obj, err := c.store.Open(ctx, spec.Key)
	switch {
	case err == nil:
		info := obj.Info()
		if spec.fresh(info.ModTime) {
			c.m.Cache.WithLabelValues("hit").Inc()
			if inMemory {
				obj = c.remember(spec.Key, obj, info)
			}
			return &Entry{Object: obj, Size: info.Size, ModTime: info.ModTime, Result: "hit", Source: "cache"}, nil
		}
		obj.Close()
		return c.refresh(ctx, spec)
	case !errors.Is(err, derrors.NotFound):
		return nil, err
	}

	c.m.Cache.WithLabelValues("miss").Inc()
	f := c.join(spec)
	if spec.Stream {
		if err := f.waitStarted(ctx); err != nil {
			f.release()
			return nil, err
		}
		stream := f.size < 0 || f.size >= spec.BufferBelow
		if f.size < 0 && spec.BufferBelow > 0 {
			// Size unannounced: hold the client until the object proves large
			// (BufferBelow bytes arrived) or is complete, whichever comes first.
			large, err := f.waitBytes(ctx, spec.BufferBelow)
			if err != nil {
				f.release()
				return nil, err
			}
			stream = large
		}
		if stream {
			return &Entry{Stream: &fillReader{f: f, ctx: ctx}, Size: f.size, ModTime: f.started, Result: "miss", Source: f.source}, nil
		}
	}
	defer f.release()
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	e, err := c.open(ctx, spec.Key, "miss", f.source)
	if err == nil && inMemory {
		e.Object = c.remember(spec.Key, e.Object, e.Object.Info())
	}
	if errors.Is(err, derrors.NotFound) {
		// Fetched and checked but not stored (the store failed): serve the fetched
		// bytes to this client anyway.
		f.acquire()
		return &Entry{Stream: &fillReader{f: f, ctx: ctx}, Size: f.written, ModTime: f.started, Result: "miss", Source: f.source}, nil
	}
	return e, err
}

// Fill makes sure spec's object is stored, for a request expected soon: it
// fetches the object when it is neither stored nor remembered as missing
// (joining a fill a client has started) and waits for that fill. It serves
// nothing. stored reports that the object was there already.
func (c *Cache) Fill(ctx context.Context, spec Spec) (stored bool, err error) {
	if err := c.neg.get(spec.Key); err != nil {
		return false, err
	}
	if info, err := c.store.Stat(ctx, spec.Key); err == nil && spec.fresh(info.ModTime) {
		return true, nil
	}
	f := c.join(spec)
	defer f.release()
	return false, f.wait(ctx)
}

// refresh revalidates a stale mutable object, serving the stale copy when the source
// fails with anything but a definite not-found.
func (c *Cache) refresh(ctx context.Context, spec Spec) (*Entry, error) {
	f := c.join(spec)
	defer f.release()
	err := f.wait(ctx)
	if err == nil {
		c.m.Cache.WithLabelValues("miss").Inc()
		return c.open(ctx, spec.Key, "miss", f.source)
	}
	if (errors.Is(err, derrors.NotFound) || errors.Is(err, derrors.Gone)) && !sourceUnavailable(err) || ctx.Err() != nil {
		return nil, err
	}
	if sourceUnavailable(err) {
		c.log.DebugContext(ctx, "serving stored object: offline", "key", spec.Key)
	} else {
		c.log.WarnContext(ctx, "serving stale object: every source failed", "key", spec.Key, "err", err)
	}
	c.m.Cache.WithLabelValues("stale").Inc()
	return c.open(ctx, spec.Key, "stale", "cache")
}

func (c *Cache) open(ctx context.Context, key, result, source string) (*Entry, error) {
	obj, err := c.store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	if result == "hit" {
		c.m.Cache.WithLabelValues("hit").Inc()
	}
	info := obj.Info()
	return &Entry{Object: obj, Size: info.Size, ModTime: info.ModTime, Result: result, Source: source}, nil
}

// remember keeps a small object's bytes in memory and returns an object that
// serves them; obj is then closed. A larger object, or one that cannot be read,
// is returned as it is, to be served (or fail) from the store.
func (c *Cache) remember(key string, obj storage.Object, info storage.ObjectInfo) storage.Object {
	if info.Size > MaxMemoryObject {
		return obj
	}
	data := make([]byte, info.Size)
	if _, err := io.ReadFull(obj, data); err != nil {
		obj.Seek(0, io.SeekStart)
		return obj
	}
	obj.Close()
	it := &memItem{key: key, data: data, modTime: info.ModTime}
	c.mem.put(it)
	return newMemObject(it)
}

// join returns the in-flight fill for spec.Key, starting one if there is none. The
// caller holds a reference and must release it.
func (c *Cache) join(spec Spec) *fill {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.inflight[spec.Key]; ok {
		f.acquire()
		return f
	}
	f := newFill(spec.Key)
	f.acquire() // the caller's
	f.acquire() // the fetching goroutine's
	c.inflight[spec.Key] = f
	go c.run(f, spec)
	return f
}

func (c *Cache) forget(f *fill) {
	c.mu.Lock()
	if c.inflight[f.key] == f {
		delete(c.inflight, f.key)
	}
	c.mu.Unlock()
}

// fetchTimeout bounds a whole fetch as a last resort; stalls are caught sooner by
// the upstream's idle timeout.
const fetchTimeout = 30 * time.Minute

func (c *Cache) run(f *fill, spec Spec) {
	defer f.release()
	c.m.InflightFetches.Inc()
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()

	err := c.fetchInto(ctx, f, spec)
	if err != nil && (errors.Is(err, derrors.NotFound) || errors.Is(err, derrors.Gone)) && !sourceUnavailable(err) {
		c.neg.put(spec.Key, err, c.cfg.NegativeTTL)
	}
	// Forget before finishing: a request arriving after this point must find the
	// stored object (or start a new fetch), not a finished fill.
	c.forget(f)
	// Before waking the waiters: a client that has its answer must not see the
	// fetch still counted in flight.
	c.m.InflightFetches.Dec()
	f.finish(err)
	if err != nil {
		c.log.Debug("fetch failed", "key", spec.Key, "err", err)
	}
}

// storedByPeer returns the object as another process stored it while this one
// waited for the fill lock, or nil when the store has no servable copy.
func (c *Cache) storedByPeer(ctx context.Context, spec Spec) *Fetched {
	info, err := c.store.Stat(ctx, spec.Key)
	if err != nil || !spec.fresh(info.ModTime) {
		return nil
	}
	obj, err := c.store.Open(ctx, spec.Key)
	if err != nil {
		return nil
	}
	c.m.Cache.WithLabelValues("peer").Inc()
	return &Fetched{Body: obj, Size: obj.Info().Size, Source: "cache"}
}

func (c *Cache) fetchInto(ctx context.Context, f *fill, spec Spec) (err error) {
	tmp, err := os.CreateTemp(c.store.ScratchDir(), "fill-*")
	if err != nil {
		return storageError(fmt.Errorf("cache: creating temporary file: %w", err))
	}
	f.setFile(tmp)

	var src *Fetched
	stored := false
	if c.cfg.Lock != nil {
		unlock, err := c.cfg.Lock(ctx, spec.Key)
		if err != nil {
			// Coordination saves upstream traffic; it is not needed for correctness
			// (Put is atomic and the bytes are checked), so a database hiccup must
			// not stop modgate from serving.
			c.log.Warn("cache: fill lock unavailable, fetching without it", "key", spec.Key, "err", err)
		} else {
			defer unlock()
			src = c.storedByPeer(ctx, spec)
			stored = src != nil
		}
	}
	if src == nil {
		src, err = spec.Fetch(ctx)
		if err != nil {
			return err
		}
	}
	defer src.Body.Close()
	if spec.MaxSize > 0 && src.Size > spec.MaxSize {
		return derrors.New(derrors.BadUpstream, "upstream object is %d bytes, over the %d-byte limit", src.Size, spec.MaxSize)
	}
	f.start(src.Size, src.Source)

	buf := make([]byte, 128<<10)
	var n int64
	for {
		k, rerr := src.Body.Read(buf)
		if k > 0 {
			if spec.MaxSize > 0 && n+int64(k) > spec.MaxSize {
				return derrors.New(derrors.BadUpstream, "upstream object exceeds the %d-byte limit", spec.MaxSize)
			}
			if _, werr := tmp.Write(buf[:k]); werr != nil {
				return storageError(fmt.Errorf("cache: writing %s: %w", spec.Key, werr))
			}
			n += int64(k)
			f.progress(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if src.Size >= 0 && n != src.Size {
		return derrors.New(derrors.BadUpstream, "upstream sent %d of %d bytes", n, src.Size)
	}
	if spec.Check != nil {
		if err := spec.Check(tmp, n); err != nil {
			return err
		}
	}
	if stored {
		return nil
	}
	if err := c.store.Put(ctx, spec.Key, tmp); err != nil {
		// The bytes are complete and checked, so the clients already waiting are
		// served; the next request fetches again.
		c.log.Error("cache: storing object failed", "key", spec.Key, "err", err)
	}
	return nil
}
