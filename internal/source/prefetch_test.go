package source

import (
	"testing"

	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/route"
)

// Only a public canonical version's .info queues its zip: never a private
// route's (a private zip is built from git and pinned only for a client that
// asks), a query, or another kind of object.
func TestPrefetchZipPublicOnly(t *testing.T) {
	t.Parallel()
	s := New(nil, NewPublic(nil, nil, "", nil), nil, nil, nil, Config{PrefetchZips: 1}, nil)
	s.prefetch.workers = 0 // queue without fetching, to look at the queue
	info := goproxy.Request{Kind: goproxy.KindInfo, Module: "corp.example/lib", EscapedModule: "corp.example/lib", Version: "v1.0.0", EscapedVersion: "v1.0.0"}
	for _, rt := range []route.Route{route.Git, route.Published} {
		s.PrefetchZip(rt, info)
	}
	query := info
	query.Version, query.EscapedVersion = "main", "main"
	s.PrefetchZip(route.Public, query)
	mod := info
	mod.Kind = goproxy.KindMod
	s.PrefetchZip(route.Public, mod)
	if n := len(s.prefetch.queue); n != 0 {
		t.Fatalf("%d zips queued for private routes, a query or a .mod", n)
	}
	s.PrefetchZip(route.Public, info)
	if n := len(s.prefetch.queue); n != 1 || s.prefetch.queue[0].Key != "mod/corp.example/lib/@v/v1.0.0.zip" {
		t.Fatalf("queue after a public .info = %d entries %+v, want its zip", n, s.prefetch.queue)
	}
}
