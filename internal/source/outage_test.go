package source

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/route"
	"github.com/modgate/modgate/internal/storage"
)

// unreachableRegistry is the registry with PostgreSQL gone: every read fails
// as publish.Registry's do when no connection can be made.
type unreachableRegistry struct{ store storage.Store }

func (r unreachableRegistry) err() error {
	return derrors.WithCause(derrors.Unavailable, io.ErrUnexpectedEOF, "modgate's database is unreachable; try again when it is back")
}
func (r unreachableRegistry) Get(context.Context, string, string) (publish.Version, error) {
	return publish.Version{}, r.err()
}
func (r unreachableRegistry) List(context.Context, string) ([]publish.Version, error) {
	return nil, r.err()
}
func (r unreachableRegistry) Store() storage.Store { return r.store }

type fakeCopy struct {
	pins    map[string]bool // "module@version/file"
	records []publish.Version
}

func (c fakeCopy) Pinned(module, version, file string) bool {
	if file == "" {
		return c.pins[module+"@"+version+"/mod"] || c.pins[module+"@"+version+"/zip"]
	}
	return c.pins[module+"@"+version+"/"+file]
}

func (c fakeCopy) Published(module, version string) (publish.Version, bool) {
	for _, v := range c.records {
		if v.Module == module && v.Version == version {
			return v, true
		}
	}
	return publish.Version{}, false
}

func (c fakeCopy) PublishedList(module string) []publish.Version { return c.records }

type acceptingLedger struct{}

func (acceptingLedger) Pin(context.Context, string, string, string, string, string) error { return nil }
func (acceptingLedger) Recorded(context.Context, string, string) ([]Pinned, error)        { return nil, nil }

// While the registry cannot be asked, a canonical private version is routed by
// the outage copy: published versions from the store by their recorded keys,
// deleted ones 410, never-served ones 503 with the reason; the list is the
// copy's live records.
func TestPrivateVersionsDuringOutage(t *testing.T) {
	t.Parallel()
	const mod = "corp.example/lib"
	ctx := context.Background()
	store, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	modKey := "published/corp.example/lib/@v/v1.4.0/abc.mod"
	f, err := os.Create(filepath.Join(store.ScratchDir(), "mod"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "module corp.example/lib\n")
	if err := store.Put(ctx, modKey, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	oc := fakeCopy{
		pins: map[string]bool{mod + "@v1.4.0/mod": true, mod + "@v1.4.0/zip": true},
		records: []publish.Version{
			{Module: mod, Version: "v1.4.0", ModKey: modKey, PublishedAt: at},
			{Module: mod, Version: "v1.5.0", PublishedAt: at, DeletedAt: at.Add(time.Hour), DeletedBy: "ann", DeleteReason: "leaked key"},
		},
	}
	c := cache.New(store, cache.Config{}, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	s := New(c, nil, nil, NewPublished(unreachableRegistry{store}), acceptingLedger{}, Config{Outage: oc}, nil)

	for _, tt := range []struct {
		name, version string
		kind          goproxy.Kind
		wantKind      error
		wantBody      string
	}{
		{name: "ok/published-mod", version: "v1.4.0", kind: goproxy.KindMod, wantBody: "module corp.example/lib\n"},
		{name: "ok/published-info", version: "v1.4.0", kind: goproxy.KindInfo, wantBody: `"Version":"v1.4.0"`},
		{name: "fail/deleted", version: "v1.5.0", kind: goproxy.KindInfo, wantKind: derrors.Gone, wantBody: "leaked key"},
		{name: "fail/never-served", version: "v1.6.0", kind: goproxy.KindMod, wantKind: derrors.Unavailable,
			wantBody: "cannot serve corp.example/lib@v1.6.0 now: it was never served before and modgate's database is unreachable to pin it; try again when it is back"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := goproxy.Request{Kind: tt.kind, Module: mod, EscapedModule: mod, Version: tt.version, EscapedVersion: tt.version}
			e, err := s.Get(ctx, route.Published, req)
			if tt.wantKind != nil {
				if !errors.Is(err, tt.wantKind) || !strings.Contains(derrors.PublicMessage(err), tt.wantBody) {
					t.Fatalf("Get = %v, want %v saying %q", err, tt.wantKind, tt.wantBody)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			body, _ := io.ReadAll(entryReader(e))
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
		})
	}
	versions, err := s.Versions(ctx, route.Published, mod, mod)
	if err != nil || !slices.Equal(versions, []string{"v1.4.0"}) {
		t.Errorf("Versions = %q, %v; want the live published version alone", versions, err)
	}
}
