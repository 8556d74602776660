package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func newTestRegistry(t *testing.T) (*Registry, string) {
	t.Helper()
	pool, _ := pgtest.NewPool(t)
	dir := t.TempDir()
	store, err := storage.NewDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	return NewRegistry(pool, store, nil), dir
}

// checkedUpload builds and checks a zip of mod@ver whose content depends on
// variant, copied into the store's scratch dir as the server receives uploads.
func checkedUpload(t *testing.T, r *Registry, mod, ver, variant string) (Checked, *os.File) {
	t.Helper()
	pfx := mod + "@" + ver + "/"
	src := buildZip(t, zipEntry{name: pfx + "go.mod", body: "module " + mod + "\n"}, zipEntry{name: pfx + "a.go", body: "package a // " + variant + "\n"})
	f, err := os.CreateTemp(r.store.ScratchDir(), "upload-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	c, err := checkFile(f, mod, ver)
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

// publishedObjects lists the stored objects under published/.
func publishedObjects(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(dir, "published"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

// Twenty concurrent publishers of one version with different bytes: exactly one
// wins, every other gets Conflict, the stored objects are the winner's alone.
func TestConcurrentPublishOneWinner(t *testing.T) {
	t.Parallel()
	r, dir := newTestRegistry(t)
	ctx := context.Background()
	const n = 20
	uploads := make([]Checked, n)
	files := make([]*os.File, n)
	for i := range n {
		uploads[i], files[i] = checkedUpload(t, r, "corp.test/race", "v1.0.0", fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	outcomes := make([]Outcome, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, outcomes[i], errs[i] = r.Publish(ctx, uploads[i], files[i], fmt.Sprintf("publisher-%d", i))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		switch {
		case errs[i] == nil && outcomes[i] == Created:
			if winner >= 0 {
				t.Fatalf("two winners: %d and %d", winner, i)
			}
			winner = i
		case errors.Is(errs[i], derrors.Conflict):
		default:
			t.Errorf("publisher %d: outcome %v, err %v", i, outcomes[i], errs[i])
		}
	}
	if winner < 0 {
		t.Fatal("no publisher won")
	}
	v, err := r.Get(ctx, "corp.test/race", "v1.0.0")
	if err != nil || v.ZipHash != uploads[winner].ZipHash || v.Publisher != fmt.Sprintf("publisher-%d", winner) {
		t.Fatalf("row = %+v, %v; want the winner %d's", v, err, winner)
	}
	objs := publishedObjects(t, dir)
	if want := []string{v.ModKey, v.ZipKey}; !slices.Equal(objs, want) { // WalkDir order: lexical
		t.Errorf("stored objects %q, want only the winner's %s and %s", objs, v.ZipKey, v.ModKey)
	}
	got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(v.ZipKey)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := hashBytes(t, got)
	if err != nil || h != uploads[winner].ZipHash {
		t.Errorf("stored zip hashes to %s, want the winner's %s", h, uploads[winner].ZipHash)
	}
}

func hashBytes(t *testing.T, data []byte) (string, error) {
	f := tempFile(t, data)
	c, err := checkFile(f, "corp.test/race", "v1.0.0")
	return c.ZipHash, err
}

// The life of a version: created, identical re-publish, conflicting re-publish,
// deleted (objects gone, 410 with the reason), never publishable again.
func TestPublishLifecycle(t *testing.T) {
	t.Parallel()
	r, dir := newTestRegistry(t)
	ctx := context.Background()
	const mod, ver = "corp.test/life", "v1.2.3"

	c, f := checkedUpload(t, r, mod, ver, "one")
	v, out, err := r.Publish(ctx, c, f, "alice")
	if err != nil || out != Created {
		t.Fatalf("first publish: %v %v", out, err)
	}
	again, f2 := checkedUpload(t, r, mod, ver, "one")
	if _, out, err := r.Publish(ctx, again, f2, "bob"); err != nil || out != Identical {
		t.Fatalf("identical re-publish: %v %v, want Identical", out, err)
	}
	other, f3 := checkedUpload(t, r, mod, ver, "two")
	_, _, err = r.Publish(ctx, other, f3, "bob")
	if !errors.Is(err, derrors.Conflict) || !strings.Contains(derrors.PublicMessage(err), "already published with different content ("+v.ZipHash) {
		t.Fatalf("different re-publish: %v, want Conflict naming the published hash", err)
	}
	if got := publishedObjects(t, dir); len(got) != 2 {
		t.Errorf("objects after re-publishes: %q, want the first publish's two", got)
	}

	if _, err := r.Delete(ctx, mod, "v9.9.9", "root", "typo"); !errors.Is(err, derrors.NotFound) {
		t.Errorf("deleting an unpublished version: %v, want NotFound", err)
	}
	d, err := r.Delete(ctx, mod, ver, "root", "leaked a credential")
	if err != nil {
		t.Fatal(err)
	}
	if got := publishedObjects(t, dir); len(got) != 0 {
		t.Errorf("objects after delete: %q, want none", got)
	}
	gone := d.GoneError()
	if !errors.Is(gone, derrors.Gone) || !strings.Contains(derrors.PublicMessage(gone), "was deleted by root at ") || !strings.HasSuffix(derrors.PublicMessage(gone), ": leaked a credential") {
		t.Errorf("GoneError = %q", derrors.PublicMessage(gone))
	}
	if _, err := r.Delete(ctx, mod, ver, "root", "again"); !errors.Is(err, derrors.Gone) {
		t.Errorf("second delete: %v, want Gone", err)
	}
	for name, up := range map[string]string{"same-content": "one", "new-content": "three"} {
		c, f := checkedUpload(t, r, mod, ver, up)
		_, _, err := r.Publish(ctx, c, f, "alice")
		if !errors.Is(err, derrors.Gone) || !strings.Contains(derrors.PublicMessage(err), "can never be published again: leaked a credential") {
			t.Errorf("%s: re-publish after delete: %v, want Gone with the reason", name, err)
		}
	}
	if got := publishedObjects(t, dir); len(got) != 0 {
		t.Errorf("objects after refused re-publishes: %q, want none", got)
	}
	list, err := r.List(ctx, mod)
	if err != nil || len(list) != 1 || !list[0].Deleted() {
		t.Errorf("List = %+v, %v; want the tombstone", list, err)
	}
	// All, which a replica's outage copy is refreshed from, has the tombstone too.
	all, err := r.All(ctx)
	if err != nil || len(all) != 1 || all[0].Module != mod || !all[0].Deleted() || all[0].DeleteReason != "leaked a credential" {
		t.Errorf("All = %+v, %v; want the tombstone", all, err)
	}
}
