package tokens

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/identity"
)

func TestCache(t *testing.T) {
	t.Parallel()
	now := time.Now()
	h1, h2 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	e1 := &entry{id: identity.Identity{TokenID: "one"}, cachedAt: now, verifiedAt: now}
	e2 := &entry{id: identity.Identity{TokenID: "two"}, cachedAt: now, verifiedAt: now}

	tests := []struct {
		name string
		run  func(c *cache) // ends in the state to check
		want map[[sha256.Size]byte]bool
	}{
		{"ok/put-get", func(c *cache) { c.put(h1, e1, c.currentEpoch()) }, map[[32]byte]bool{h1: true}},
		{"ok/evict-by-id", func(c *cache) {
			c.put(h1, e1, c.currentEpoch())
			c.put(h2, e2, c.currentEpoch())
			c.evict("one")
		}, map[[32]byte]bool{h2: true}},
		{"ok/flush", func(c *cache) {
			c.put(h1, e1, c.currentEpoch())
			c.flush()
		}, map[[32]byte]bool{}},
		// A load that read the database before a revocation was announced must
		// not cache what it read.
		{"ok/put-after-evict-dropped", func(c *cache) {
			epoch := c.currentEpoch()
			c.evict("one")
			c.put(h1, e1, epoch)
		}, map[[32]byte]bool{}},
		{"ok/put-after-flush-dropped", func(c *cache) {
			epoch := c.currentEpoch()
			c.flush()
			c.put(h1, e1, epoch)
		}, map[[32]byte]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(time.Minute, 0)
			tt.run(c)
			for _, h := range [][32]byte{h1, h2} {
				if got := c.get(h, now) != nil; got != tt.want[h] {
					t.Errorf("entry %x present = %v, want %v", h[:4], got, tt.want[h])
				}
			}
		})
	}

	t.Run("ok/ttl", func(t *testing.T) {
		t.Parallel()
		c := newCache(time.Second, 0)
		c.put(h1, e1, c.currentEpoch())
		if c.get(h1, now.Add(999*time.Millisecond)) == nil {
			t.Error("entry gone before its TTL")
		}
		if c.get(h1, now.Add(time.Second)) != nil {
			t.Error("entry served at its TTL")
		}
		if c.get(h1, now.Add(-time.Second)) != nil {
			t.Error("entry served when the clock went backwards")
		}
		// A later put sweeps the stale entry out.
		late := &entry{id: identity.Identity{TokenID: "two"}, cachedAt: now.Add(2 * time.Second), verifiedAt: now.Add(2 * time.Second)}
		c.put(h2, late, c.currentEpoch())
		if c.len() != 1 {
			t.Errorf("after sweep, %d entries, want 1", c.len())
		}
	})

	// Past its TTL an entry is kept, and served by getStale, for the
	// stale-if-error window after its last verification; then a sweep drops it.
	t.Run("ok/stale-window", func(t *testing.T) {
		t.Parallel()
		c := newCache(time.Second, time.Minute)
		c.put(h1, e1, c.currentEpoch())
		if c.get(h1, now.Add(2*time.Second)) != nil {
			t.Error("entry fresh past its TTL")
		}
		if c.getStale(h1, now.Add(59*time.Second)) == nil {
			t.Error("entry not served within the stale-if-error window")
		}
		if c.getStale(h1, now.Add(time.Minute)) != nil {
			t.Error("entry served at the end of the stale-if-error window")
		}
		late := &entry{id: identity.Identity{TokenID: "two"}, cachedAt: now.Add(30 * time.Second), verifiedAt: now.Add(30 * time.Second)}
		c.put(h2, late, c.currentEpoch())
		if c.len() != 2 {
			t.Errorf("sweep within the window left %d entries, want 2", c.len())
		}
		later := &entry{id: identity.Identity{TokenID: "two"}, cachedAt: now.Add(2 * time.Minute), verifiedAt: now.Add(2 * time.Minute)}
		c.put(h2, later, c.currentEpoch())
		if c.len() != 1 {
			t.Errorf("sweep after the window left %d entries, want 1", c.len())
		}
	})
}
