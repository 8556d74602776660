package tokens

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/identity"
)

// cache holds recently verified tokens, keyed by the SHA-256 of the secret, so
// only a secret that was verified in full can hit it. Failed verifications are
// never cached: guessing is the failure limiter's business, and caching refusals
// would let an attacker grow the map at will.
type cache struct {
	ttl time.Duration
	// stale is how long after its last verification an entry may still be
	// used while the database cannot be asked (see Config.StaleIfError); entries
	// are kept that long.
	stale time.Duration

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]*entry
	byID    map[string][sha256.Size]byte // evictions arrive by token id
	// epoch counts evictions and flushes. A verification notes it before reading
	// the database and stores its result only if it has not moved, so a
	// revocation that lands between the read and the store is not undone by a
	// stale entry.
	epoch     uint64
	lastSweep time.Time
}

type entry struct {
	id        identity.Identity // template; callers get copies
	expiresAt time.Time         // the token's expiry; zero: never
	// cachedAt starts the TTL: when the database was last asked about the
	// token, successfully or not (a stale entry served through an outage is
	// re-stored so that the database is asked once per TTL, not per request).
	cachedAt time.Time
	// verifiedAt is when the database last confirmed the token.
	verifiedAt time.Time
}

func newCache(ttl, stale time.Duration) *cache {
	return &cache{
		ttl:     ttl,
		stale:   stale,
		entries: make(map[[sha256.Size]byte]*entry),
		byID:    make(map[string][sha256.Size]byte),
	}
}

// get returns the entry for hash if it is younger than the TTL.
func (c *cache) get(hash [sha256.Size]byte, now time.Time) *entry {
	c.mu.RLock()
	e := c.entries[hash]
	c.mu.RUnlock()
	if e == nil || now.Sub(e.cachedAt) >= c.ttl || now.Before(e.cachedAt) {
		return nil
	}
	return e
}

// getStale returns the entry for hash if the database confirmed it less than
// the stale-if-error window ago, however old its TTL.
func (c *cache) getStale(hash [sha256.Size]byte, now time.Time) *entry {
	c.mu.RLock()
	e := c.entries[hash]
	c.mu.RUnlock()
	if e == nil || now.Sub(e.verifiedAt) >= c.stale || now.Before(e.verifiedAt) {
		return nil
	}
	return e
}

// currentEpoch returns the epoch to pass to put.
func (c *cache) currentEpoch() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// put stores e unless an eviction or flush happened since epoch was read.
func (c *cache) put(hash [sha256.Size]byte, e *entry, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	c.entries[hash] = e
	c.byID[e.id.TokenID] = hash
	c.sweepLocked(e.cachedAt)
}

// evict forgets the token id.
func (c *cache) evict(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if h, ok := c.byID[id]; ok {
		delete(c.entries, h)
		delete(c.byID, id)
	}
}

// flush forgets everything: when the notification listener first connects (or
// cannot read the change log), any token may have been revoked while nobody was
// listening.
func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	clear(c.entries)
	clear(c.byID)
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// sweepLocked drops the entries of tokens no longer presented, at most once per
// TTL, so the map stays as small as the set of tokens in recent use: an entry
// goes once both its TTL and its stale-if-error window have passed.
func (c *cache) sweepLocked(now time.Time) {
	if now.Sub(c.lastSweep) < c.ttl {
		return
	}
	c.lastSweep = now
	for h, e := range c.entries {
		if now.Sub(e.cachedAt) >= c.ttl && now.Sub(e.verifiedAt) >= c.stale {
			delete(c.entries, h)
			delete(c.byID, e.id.TokenID)
		}
	}
}
