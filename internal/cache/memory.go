package cache

import (
	"bytes"
	"container/list"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/storage"
)

// MaxMemoryObject is the largest object kept in memory: a .info is about a
// hundred bytes and nearly every go.mod a few kilobytes.
const MaxMemoryObject = 16 << 10

// memory keeps the bytes of small immutable objects that have been served from
// the store, least recently used first out, so a warm .info or .mod costs a map
// lookup instead of four system calls (open, fstat, read, close) and the
// poller registration os.Open attempts on every file. Only specs that ask for it
// (Spec.Memory) use it: objects that are never deleted behind this process's
// back, since another replica's delete cannot reach this memory.
type memory struct {
	mu    sync.Mutex
	max   int64
	size  int64
	items map[string]*list.Element // of *memItem
	lru   list.List                // front: most recently used
}

type memItem struct {
	key     string
	data    []byte
	modTime time.Time
}

func newMemory(max int64) *memory {
	if max <= 0 {
		return nil
	}
	return &memory{max: max, items: make(map[string]*list.Element)}
}

func (m *memory) get(key string) (*memItem, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, false
	}
	m.lru.MoveToFront(el)
	return el.Value.(*memItem), true
}

func (m *memory) put(it *memItem) {
	cost := int64(len(it.key) + len(it.data))
	if cost > m.max {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.items[it.key]; ok {
		return // immutable: the copy there is the same
	}
	m.items[it.key] = m.lru.PushFront(it)
	m.size += cost
	for m.size > m.max {
		old := m.lru.Remove(m.lru.Back()).(*memItem)
		delete(m.items, old.key)
		m.size -= int64(len(old.key) + len(old.data))
	}
}

func (m *memory) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		it := m.lru.Remove(el).(*memItem)
		delete(m.items, key)
		m.size -= int64(len(it.key) + len(it.data))
	}
}

// memObject serves an object's bytes from memory.
type memObject struct {
	bytes.Reader
	data []byte
	info storage.ObjectInfo
}

func newMemObject(it *memItem) *memObject {
	o := &memObject{data: it.data, info: storage.ObjectInfo{Size: int64(len(it.data)), ModTime: it.modTime}}
	o.Reset(it.data)
	return o
}

func (o *memObject) Info() storage.ObjectInfo { return o.info }
func (o *memObject) Close() error             { return nil }

// Bytes returns the whole object, for a server that writes it in one call.
// The slice is shared: callers must not modify it.
func (o *memObject) Bytes() []byte { return o.data }
