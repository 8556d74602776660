package source

import (
	"context"
	"log/slog"
	"sync"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/route"
)

// Zip prefetching. The go command asks for a version's .info before its .zip,
// and `go mod download` (the usual first step of a CI job or a container build)
// asks for the .info of the whole build list before the first zip: seconds
// apart on a cold cache. A public zip's fetch and its verification against the
// checksum database (unzipping and hashing every file, 13 ms for the average
// zip of the benchmark graph on the 2-core VM) then run in series with the
// client. Started when the .info is first fetched, they are done, or under way,
// by the time the zip is asked for.

// prefetchQueue bounds the zips waiting to be prefetched; more are dropped
// (the client then fetches them itself, as without prefetching).
const prefetchQueue = 1024

type prefetcher struct {
	cache   *cache.Cache
	workers int
	count   func(result string)
	log     *slog.Logger

	mu      sync.Mutex
	queue   []cache.Spec
	running int
}

// add queues spec's fill and starts a worker when fewer than p.workers run.
// Workers exit when the queue is empty, so an idle modgate runs none.
func (p *prefetcher) add(spec cache.Spec) {
	p.mu.Lock()
	if len(p.queue) >= prefetchQueue {
		p.mu.Unlock()
		p.count("dropped")
		return
	}
	p.queue = append(p.queue, spec)
	start := p.running < p.workers
	if start {
		p.running++
	}
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

func (p *prefetcher) work() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		spec := p.queue[0]
		p.queue[0] = cache.Spec{}
		p.queue = p.queue[1:]
		p.mu.Unlock()

		// The fill runs on the cache's own detached context and bounds itself.
		stored, err := p.cache.Fill(context.Background(), spec)
		switch {
		case err != nil:
			p.count("failed")
			p.log.Debug("zip prefetch failed", "key", spec.Key, "err", err)
		case stored:
			p.count("cached")
		default:
			p.count("fetched")
		}
	}
}

// PrefetchesZip reports whether PrefetchZip would queue req's zip: prefetching
// is on, and req is the .info of a public canonical version. Only public
// versions are prefetched: a private zip is built from git and pinned in the
// ledger, work done only for a client that asks.
func (s *Sources) PrefetchesZip(rt route.Route, req goproxy.Request) bool {
	return s.prefetch != nil && !rt.Private() && req.Kind == goproxy.KindInfo && !req.IsQuery()
}

// PrefetchZip fetches req's zip into the cache in the background, req being a
// canonical version's .info just fetched for a caller the gate allows to pull
// the zip too.
func (s *Sources) PrefetchZip(rt route.Route, req goproxy.Request) {
	if !s.PrefetchesZip(rt, req) {
		return
	}
	req.Kind = goproxy.KindZip
	s.prefetch.add(s.spec(rt, req))
}
