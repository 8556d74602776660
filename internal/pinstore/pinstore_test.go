package pinstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/publish"
)

type fakeSource struct {
	pins      []ledger.Entry
	published []publish.Version
	err       error
	calls     int
}

func (f *fakeSource) PinsSince(_ context.Context, seq int64, limit int) ([]ledger.Entry, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	var out []ledger.Entry
	for _, e := range f.pins {
		if e.Seq > seq && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeSource) PublishedAll(context.Context) ([]publish.Version, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.published, nil
}

func pin(seq int64, version, file string) ledger.Entry {
	return ledger.Entry{Module: "corp.example/x", Version: version, File: file, Hash: "h1:" + version + file, Source: "git",
		FirstServed: time.Date(2026, 12, 1, 0, 0, int(seq), 0, time.UTC), Seq: seq}
}

// A refreshed copy is written atomically (0600) and loaded again as it was; a
// failed refresh keeps it; a refresh reads only pins it has not seen.
func TestCopyRefreshSaveLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pins.json")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	published := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{
		pins: []ledger.Entry{pin(1, "v1.0.0", ledger.Mod), pin(2, "v1.0.0", ledger.Zip), pin(3, "v1.1.0", ledger.Mod)},
		published: []publish.Version{
			{Module: "corp.example/x", Version: "v1.3.0", ZipKey: "published/z", ModKey: "published/m", PublishedAt: published.Add(time.Hour)},
			{Module: "corp.example/x", Version: "v1.2.0", PublishedAt: published, DeletedAt: published.Add(2 * time.Hour), DeletedBy: "ann", DeleteReason: "leaked key"},
		},
	}
	if err := c.Refresh(ctx, src); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("copy mode %v, want 0600", fi.Mode().Perm())
	}
	src.err = errors.New("connection refused")
	if err := c.Refresh(ctx, src); err == nil {
		t.Error("a failed refresh reported no error")
	}

	loaded, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, version, file string
		want                bool
	}{
		{"ok/mod", "v1.0.0", ledger.Mod, true},
		{"ok/zip", "v1.0.0", ledger.Zip, true},
		{"ok/any", "v1.1.0", "", true},
		{"fail/zip-never-served", "v1.1.0", ledger.Zip, false},
		{"fail/never-served", "v1.9.0", "", false},
	} {
		if got := loaded.Pinned("corp.example/x", tc.version, tc.file); got != tc.want {
			t.Errorf("%s: Pinned(%s, %q) = %v, want %v", tc.name, tc.version, tc.file, got, tc.want)
		}
	}
	if e, ok := loaded.Pin("corp.example/x", "v1.0.0", ledger.Zip); !ok || e != pin(2, "v1.0.0", ledger.Zip) {
		t.Errorf("Pin after load = %+v, %v", e, ok)
	}
	if v, ok := loaded.Published("corp.example/x", "v1.2.0"); !ok || !v.Deleted() || v.DeleteReason != "leaked key" {
		t.Errorf("tombstone after load = %+v, %v", v, ok)
	}
	list := loaded.PublishedList("corp.example/x")
	if len(list) != 2 || list[0].Version != "v1.2.0" || list[1].Version != "v1.3.0" || list[1].Deleted() {
		t.Errorf("PublishedList after load = %+v, want v1.2.0 (deleted) then v1.3.0, oldest first", list)
	}

	// Only pins after the last seen seq are asked for.
	src.err = nil
	src.pins = append(src.pins, pin(4, "v1.1.0", ledger.Zip))
	if err := loaded.Refresh(ctx, &fakeSource{pins: src.pins[3:], published: src.published}); err != nil {
		t.Fatal(err)
	}
	if !loaded.Pinned("corp.example/x", "v1.1.0", ledger.Zip) || loaded.ledgerSeq != 4 {
		t.Errorf("after a refresh: zip pinned %v, seq %d; want true, 4", loaded.Pinned("corp.example/x", "v1.1.0", ledger.Zip), loaded.ledgerSeq)
	}
	if n, p := loaded.Len(); n != 4 || p != 2 {
		t.Errorf("Len = %d pins, %d published; want 4, 2", n, p)
	}
}

// A file that is not a copy is reported, and the copy starts empty.
func TestOpenCorrupt(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "pins.json")
	if err := os.WriteFile(path, []byte(`{"format":1,"pins":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path)
	if err == nil {
		t.Error("Open of a torn file reported no error")
	}
	if n, p := c.Len(); n != 0 || p != 0 {
		t.Errorf("copy from a torn file holds %d pins, %d published", n, p)
	}
}

// Run refreshes at start and soon after a Kick, long before the next tick,
// and keeps the last copy while its source fails.
func TestRunKick(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "pins.json")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	src := &lockedSource{src: &fakeSource{pins: []ledger.Entry{pin(1, "v1.0.0", ledger.Mod)}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, src, time.Hour, nil); close(done) }()
	defer func() { cancel(); <-done }()

	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil("the first refresh", func() bool { return c.Pinned("corp.example/x", "v1.0.0", ledger.Mod) })
	src.set(func(f *fakeSource) { f.pins = append(f.pins, pin(2, "v1.0.0", ledger.Zip)) })
	c.Kick()
	waitUntil("the kicked refresh to reach the file", func() bool {
		loaded, err := Open(path)
		return err == nil && loaded.Pinned("corp.example/x", "v1.0.0", ledger.Zip)
	})
	src.set(func(f *fakeSource) { f.err = errors.New("connection refused") })
	c.Kick()
	time.Sleep(1500 * time.Millisecond)
	if n, _ := c.Len(); n != 2 {
		t.Errorf("after a failed refresh the copy holds %d pins, want 2", n)
	}
}

type lockedSource struct {
	mu  sync.Mutex
	src *fakeSource
}

func (l *lockedSource) set(f func(*fakeSource)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l.src)
}

func (l *lockedSource) PinsSince(ctx context.Context, seq int64, limit int) ([]ledger.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.src.PinsSince(ctx, seq, limit)
}

func (l *lockedSource) PublishedAll(ctx context.Context) ([]publish.Version, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.src.PublishedAll(ctx)
}
