package policy

import "sync"

// verdict is what the cache remembers of a decision: everything but the
// per-request decision id.
type verdict struct {
	allow   bool
	reasons []string // shared; copied before it leaves the package
}

// decisionCache is a bounded map from cache key to verdict with two
// generations: entries go into the young map; when it is full the old map is
// dropped and the young one becomes old. A hit in the old map is promoted.
// Recently used entries survive, memory stays under max entries, and every
// operation is O(1) with no per-entry bookkeeping — an LRU's recency at a
// fraction of its cost. One cache belongs to one loaded policy, so a reload
// starts empty.
type decisionCache struct {
	max int // total entries across both generations

	mu    sync.RWMutex
	young map[string]verdict
	old   map[string]verdict
}

func newDecisionCache(max int) *decisionCache {
	if max <= 0 {
		return nil
	}
	return &decisionCache{max: max, young: map[string]verdict{}}
}

// get looks key up; it takes the key's bytes so that a hit allocates nothing.
func (c *decisionCache) get(key []byte) (verdict, bool) {
	if c == nil {
		return verdict{}, false
	}
	c.mu.RLock()
	v, ok := c.young[string(key)]
	if !ok {
		v, ok = c.old[string(key)]
		c.mu.RUnlock()
		if ok {
			c.put(string(key), v)
		}
		return v, ok
	}
	c.mu.RUnlock()
	return v, true
}

func (c *decisionCache) put(key string, v verdict) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.young) >= max(c.max/2, 1) {
		c.old = c.young
		c.young = make(map[string]verdict, len(c.old))
	}
	c.young[key] = v
}

func (c *decisionCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.young) + len(c.old)
}
