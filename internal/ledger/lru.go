package ledger

import (
	"container/list"
	"sync"
)

type key struct{ module, version, file string }

// lru is a bounded cache of pins read. Pins never change, so an entry is never
// stale; the bound only keeps memory flat on a proxy serving many versions.
type lru struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front: most recently used
	items map[key]*list.Element
}

type lruItem struct {
	k key
	e Entry
}

func newLRU(max int) *lru {
	return &lru{max: max, ll: list.New(), items: make(map[key]*list.Element)}
}

func (c *lru) get(k key) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return Entry{}, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*lruItem).e, true
}

func (c *lru) put(k key, e Entry) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value.(*lruItem).e = e
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(&lruItem{k, e})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*lruItem).k)
	}
}

func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
