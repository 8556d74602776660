package cache

import (
	"sync"
	"time"
)

// negativeCache remembers not-found answers briefly, so a build that probes many
// paths that do not exist (the go command probes every prefix of an import path)
// does not send each probe upstream again.
type negativeCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]negEntry
}

type negEntry struct {
	err     error
	expires time.Time
}

func newNegativeCache(max int) *negativeCache {
	return &negativeCache{max: max, entries: make(map[string]negEntry)}
}

func (n *negativeCache) get(key string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.entries[key]
	if !ok {
		return nil
	}
	if time.Now().After(e.expires) {
		delete(n.entries, key)
		return nil
	}
	return e.err
}

func (n *negativeCache) put(key string, err error, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.entries) >= n.max {
		now := time.Now()
		for k, e := range n.entries {
			if now.After(e.expires) {
				delete(n.entries, k)
			}
		}
		if len(n.entries) >= n.max {
			clear(n.entries) // bounded memory beats a perfect hit ratio under a flood
		}
	}
	n.entries[key] = negEntry{err: err, expires: time.Now().Add(ttl)}
}

// forget drops key, for objects that have just come into existence (a publish).
func (n *negativeCache) forget(key string) {
	n.mu.Lock()
	delete(n.entries, key)
	n.mu.Unlock()
}
