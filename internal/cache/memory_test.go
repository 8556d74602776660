package cache

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/storage"
)

func newMemoryCache(t *testing.T, memBytes int64) (*Cache, storage.Store) {
	t.Helper()
	store, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return New(store, Config{NegativeTTL: time.Minute, MemoryBytes: memBytes}, slog.New(slog.DiscardHandler), metrics.Discard()), store
}

func mustRead(t *testing.T, e *Entry) []byte {
	t.Helper()
	b, err := readEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A small immutable object asked for with Spec.Memory is served from memory
// from its first hit on: the store is not read again (its copy can even go),
// the bytes, size and time are the store's, and Forget drops it.
func TestMemoryServesSmallImmutableObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, store := newMemoryCache(t, 1<<20)
	src := &source{data: []byte(`{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`)}
	spec := Spec{Key: "mod/x.example/@v/v1.0.0.info", Immutable: true, Memory: true, MaxSize: 1 << 10, Fetch: src.fetch}

	e, err := c.Get(ctx, spec) // miss: fetched, stored, kept
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, e); !bytes.Equal(got, src.data) {
		t.Fatalf("miss served %q", got)
	}
	stored, err := store.Stat(ctx, spec.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, spec.Key); err != nil {
		t.Fatal(err)
	}
	e, err = c.Get(ctx, spec)
	if err != nil {
		t.Fatalf("hit after the store's copy went: %v", err)
	}
	if e.Result != "hit" || e.Size != int64(len(src.data)) || !e.ModTime.Equal(stored.ModTime) {
		t.Errorf("hit: result %q size %d time %v, want hit %d %v", e.Result, e.Size, e.ModTime, len(src.data), stored.ModTime)
	}
	if b, ok := e.Object.(interface{ Bytes() []byte }); !ok || !bytes.Equal(b.Bytes(), src.data) {
		t.Errorf("hit not served from memory")
	}
	if got := mustRead(t, e); !bytes.Equal(got, src.data) {
		t.Errorf("hit served %q", got)
	}
	if n := src.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}

	c.Forget(spec.Key)
	if e, err = c.Get(ctx, spec); err != nil {
		t.Fatal(err)
	}
	mustRead(t, e)
	if n := src.fetches.Load(); n != 2 {
		t.Errorf("after Forget: %d fetches, want 2 (fetched again)", n)
	}
}

// Objects not asked for with Spec.Memory, mutable ones and ones over
// MaxMemoryObject are read from the store every time; memory stays within
// its bound, least recently used out.
func TestMemoryKeepsOnlyWhatItMay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		spec Spec
		size int
	}{
		{"not-asked", Spec{Immutable: true}, 100},
		{"mutable", Spec{Memory: true, TTL: time.Hour}, 100},
		{"too-large", Spec{Immutable: true, Memory: true}, MaxMemoryObject + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, store := newMemoryCache(t, 1<<20)
			src := &source{data: randomBytes(tt.size)}
			spec := tt.spec
			spec.Key, spec.MaxSize, spec.Fetch = "mod/k", 1<<20, src.fetch
			for range 2 {
				e, err := c.Get(ctx, spec)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := e.Object.(*memObject); ok {
					t.Errorf("served from memory")
				}
				mustRead(t, e)
			}
			if err := store.Delete(ctx, spec.Key); err != nil {
				t.Fatal(err)
			}
			e, err := c.Get(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			mustRead(t, e)
			if n := src.fetches.Load(); n != 2 {
				t.Errorf("%d fetches, want 2 (the store's copy went, so fetched again)", n)
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		const each = 1000
		c, _ := newMemoryCache(t, int64(3*each+3*len("mod/0")))
		for i := range 5 {
			src := &source{data: randomBytes(each)}
			e, err := c.Get(ctx, Spec{Key: "mod/" + string(rune('0'+i)), Immutable: true, Memory: true, MaxSize: 1 << 20, Fetch: src.fetch})
			if err != nil {
				t.Fatal(err)
			}
			mustRead(t, e)
			if i == 2 {
				c.mem.get("mod/0") // used: mod/1 is now the oldest
			}
		}
		if c.mem.size > c.mem.max || len(c.mem.items) != 3 {
			t.Errorf("%d bytes in %d objects, bound %d", c.mem.size, len(c.mem.items), c.mem.max)
		}
		for _, k := range []string{"mod/0", "mod/3", "mod/4"} {
			if _, ok := c.mem.items[k]; !ok {
				t.Errorf("%s evicted; want the least recently used (mod/1, mod/2) out", k)
			}
		}
	})
}
