package ledger

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

const (
	hashA = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	hashB = "h1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="
)

var quiet = slog.New(slog.DiscardHandler)

func newLedger(t *testing.T, opts ...Option) (*Ledger, *pgxpool.Pool) {
	t.Helper()
	pool, _ := pgtest.NewPool(t)
	return New(pool, append([]Option{WithLogger(quiet)}, opts...)...), pool
}

func TestPin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var mismatches []*Mismatch
	l, _ := newLedger(t, WithClock(func() time.Time { return at }), WithOnMismatch(func(m *Mismatch) { mismatches = append(mismatches, m) }))

	e, err := l.Pin(ctx, "corp.example/x", "v1.0.0", Zip, hashA, "git")
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Module: "corp.example/x", Version: "v1.0.0", File: Zip, Hash: hashA, Source: "git", FirstServed: at, Seq: 1}
	if e != want {
		t.Fatalf("Pin = %+v, want %+v", e, want)
	}

	t.Run("ok/idempotent", func(t *testing.T) {
		// Also from another source and another replica (a fresh Ledger: no cache).
		for _, l := range []*Ledger{l, New(l.pool, WithLogger(quiet))} {
			e, err := l.Pin(ctx, "corp.example/x", "v1.0.0", Zip, hashA, "published")
			if err != nil || e != want {
				t.Fatalf("Pin again = %+v, %v; want %+v", e, err, want)
			}
		}
	})

	t.Run("fail/changed-bytes", func(t *testing.T) {
		for _, l := range []*Ledger{l, New(l.pool, WithLogger(quiet))} {
			e, err := l.Pin(ctx, "corp.example/x", "v1.0.0", Zip, hashB, "git")
			if !errors.Is(err, derrors.Integrity) || derrors.Status(err) != 502 {
				t.Fatalf("Pin of other bytes: err = %v (status %d), want Integrity/502", err, derrors.Status(err))
			}
			if e != want {
				t.Errorf("Pin of other bytes returned %+v, want the pinned %+v", e, want)
			}
			msg := derrors.PublicMessage(err)
			wantMsg := "corp.example/x@v1.0.0: zip " + hashB + " from git differs from " + hashA + " pinned from git at 2026-03-01T12:00:00Z: refusing the changed bytes"
			if msg != wantMsg {
				t.Errorf("public message\n got %q\nwant %q", msg, wantMsg)
			}
			m, ok := AsMismatch(err)
			if !ok || m.Pinned != want || m.Hash != hashB {
				t.Errorf("AsMismatch = %+v, %v", m, ok)
			}
			c := m.Conflict()
			if derrors.Status(c) != 409 || !strings.Contains(derrors.PublicMessage(c), "first served from git") {
				t.Errorf("Conflict = %d %q", derrors.Status(c), derrors.PublicMessage(c))
			}
		}
		if len(mismatches) != 1 { // the second Ledger has no callback
			t.Errorf("OnMismatch called %d times, want 1", len(mismatches))
		}
	})

	t.Run("ok/other-file-and-version", func(t *testing.T) {
		if _, err := l.Pin(ctx, "corp.example/x", "v1.0.0", Mod, hashB, "git"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Pin(ctx, "corp.example/x", "v1.1.0", Zip, hashB, "published"); err != nil {
			t.Fatal(err)
		}
		// Module paths are case-sensitive: a case variant is another module.
		if _, err := l.Pin(ctx, "corp.example/X", "v1.0.0", Zip, hashB, "git"); err != nil {
			t.Fatal(err)
		}
		es, err := l.Lookup(ctx, "corp.example/x", "v1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 2 || es[0].File != Mod || es[1].File != Zip || es[0].Hash != hashB || es[1].Hash != hashA {
			t.Errorf("Lookup = %+v", es)
		}
		if es, err := l.Lookup(ctx, "corp.example/x", "v9.0.0"); err != nil || len(es) != 0 {
			t.Errorf("Lookup of an unpinned version = %+v, %v", es, err)
		}
	})

	t.Run("fail/bad-arguments", func(t *testing.T) {
		for name, args := range map[string][5]string{
			"file":   {"m", "v1.0.0", "info", hashA, "git"},
			"hash":   {"m", "v1.0.0", Zip, "deadbeef", "git"},
			"module": {"", "v1.0.0", Zip, hashA, "git"},
			"source": {"m", "v1.0.0", Zip, hashA, ""},
		} {
			if _, err := l.Pin(ctx, args[0], args[1], args[2], args[3], args[4]); err == nil {
				t.Errorf("%s: Pin accepted %q", name, args)
			}
		}
	})

	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK() || rep.Rows != 4 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// TestPinCachedCostsNoQuery: a pin already read is checked from memory, so a
// repeated Pin answers even with the pool closed (PostgreSQL down).
func TestPinCachedCostsNoQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, pool := newLedger(t, WithCacheSize(2))
	for _, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		if _, err := l.Pin(ctx, "corp.example/x", v, Zip, hashA, "git"); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.cache.len(); n != 2 {
		t.Errorf("cache holds %d pins, want the bound 2", n)
	}
	pool.Close()
	if _, err := l.Pin(ctx, "corp.example/x", "v1.2.0", Zip, hashA, "git"); err != nil {
		t.Errorf("cached identical pin with the database down: %v", err)
	}
	if _, err := l.Pin(ctx, "corp.example/x", "v1.2.0", Zip, hashB, "git"); !errors.Is(err, derrors.Integrity) {
		t.Errorf("cached different pin with the database down: %v, want Integrity", err)
	}
	if _, ok := l.Cached("corp.example/x", "v1.1.0", Zip); !ok {
		t.Error("Cached lost a recent pin")
	}
	// The oldest was evicted: answering it needs the database, which is down.
	if _, err := l.Pin(ctx, "corp.example/x", "v1.0.0", Zip, hashA, "git"); !errors.Is(err, derrors.Unavailable) {
		t.Errorf("evicted pin with the database down: %v, want Unavailable", err)
	}
}

// TestPinConcurrent: replicas (separate Ledgers and pools) pin different bytes
// for one file at once; exactly one wins and every other gets Integrity naming
// the winner's hash, and the chain stays whole.
func TestPinConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, url := pgtest.NewPool(t)
	const replicas = 6
	var ledgers []*Ledger
	for range replicas {
		ledgers = append(ledgers, New(pgtest.Pool(t, url), WithLogger(quiet)))
	}
	for round := range 5 {
		version := fmt.Sprintf("v1.%d.0", round)
		var wg sync.WaitGroup
		errs := make([]error, replicas)
		entries := make([]Entry, replicas)
		start := make(chan struct{})
		for i, l := range ledgers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				h := fmt.Sprintf("h1:replica%d=", i)
				if i%2 == 0 {
					h = hashA // half of them agree, which is idempotent if A wins
				}
				entries[i], errs[i] = l.Pin(ctx, "corp.example/race", version, Zip, h, fmt.Sprintf("replica%d", i))
			}()
		}
		close(start)
		wg.Wait()
		winner := entries[0].Hash
		won := 0
		for i := range replicas {
			if entries[i].Hash != winner || entries[i].Seq != entries[0].Seq {
				t.Fatalf("%s: replica %d sees pin %+v, replica 0 sees %+v", version, i, entries[i], entries[0])
			}
			h := fmt.Sprintf("h1:replica%d=", i)
			if i%2 == 0 {
				h = hashA
			}
			switch {
			case errs[i] == nil && h == winner:
				won++
			case errors.Is(errs[i], derrors.Integrity) && h != winner:
			default:
				t.Errorf("%s: replica %d offering %s (winner %s): err = %v", version, i, h, winner, errs[i])
			}
		}
		if won == 0 {
			t.Errorf("%s: nobody won", version)
		}
	}
	rep, err := ledgers[0].Verify(ctx)
	if err != nil || !rep.OK() || rep.Rows != 5 || rep.LastSeq != 5 {
		t.Fatalf("Verify after races = %+v, %v", rep, err)
	}
}

// TestVerifyTampering alters the table as someone with database access might,
// and checks Verify names the row.
func TestVerifyTampering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name   string
		sql    string
		kind   string
		seq    int64
		detail string
	}{
		{"update-hash", `UPDATE private_ledger SET hash = 'h1:BBBB' WHERE seq = 2`, ProblemModified, 2, "v1.1.0"},
		{"update-source", `UPDATE private_ledger SET source = 'published' WHERE seq = 3`, ProblemModified, 3, "v1.2.0"},
		{"delete-row", `DELETE FROM private_ledger WHERE seq = 2`, ProblemMissing, 2, "seq 2..2 were deleted"},
		{"delete-last", `DELETE FROM private_ledger WHERE seq = 4`, ProblemMissing, 4, "deleted from the end"},
		{"delete-all", `DELETE FROM private_ledger`, ProblemMissing, 1, "seq 1..4 were deleted from the end"},
		{"rehash-row", "", ProblemLink, 3, "seq 2"},
		{"delete-head", `DELETE FROM private_ledger_head`, ProblemHead, 0, "head row was deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, pool := newLedger(t)
			for i := range 4 {
				if _, err := l.Pin(ctx, "corp.example/x", fmt.Sprintf("v1.%d.0", i), Zip, hashA, "git"); err != nil {
					t.Fatal(err)
				}
			}
			if rep, err := l.Verify(ctx); err != nil || !rep.OK() {
				t.Fatalf("Verify before tampering = %+v, %v", rep, err)
			}
			sql := tt.sql
			if tt.name == "rehash-row" {
				// A careful tamperer changes seq 2 and recomputes its own hash: the
				// next row's link gives it away.
				e := Entry{Module: "corp.example/x", Version: "v1.1.0", File: Zip, Hash: hashB, Source: "git", Seq: 2}
				var prev []byte
				if err := pool.QueryRow(ctx, `SELECT prev_hash, first_served FROM private_ledger WHERE seq = 2`).Scan(&prev, &e.FirstServed); err != nil {
					t.Fatal(err)
				}
				if _, err := pool.Exec(ctx, `UPDATE private_ledger SET hash = $1, row_hash = $2 WHERE seq = 2`, hashB, rowHash(prev, &e)); err != nil {
					t.Fatal(err)
				}
			} else if _, err := pool.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
			rep, err := l.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != 1 {
				t.Fatalf("Verify found %d problems, want 1: %v", len(rep.Problems), rep.Problems)
			}
			p := rep.Problems[0]
			if p.Kind != tt.kind || p.Seq != tt.seq || !strings.Contains(p.String(), tt.detail) {
				t.Errorf("problem = %s (kind %s, seq %d); want kind %s, seq %d, mentioning %q", p, p.Kind, p.Seq, tt.kind, tt.seq, tt.detail)
			}
		})
	}
}

func TestHashes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{"corp.example/x@v1.0.0/go.mod", "module corp.example/x\n"},
		{"corp.example/x@v1.0.0/x.go", "package x\n"},
	} {
		w, _ := zw.Create(f.name)
		w.Write([]byte(f.body))
	}
	zw.Close()
	zipPath := filepath.Join(dir, "x.zip")
	os.WriteFile(zipPath, buf.Bytes(), 0o644)
	want, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := HashFile(Zip, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil || got != want {
		t.Errorf("HashFile(zip) = %s, %v; want dirhash.HashZip's %s", got, err, want)
	}
	// go.mod: as the go command hashes it, a directory holding only go.mod.
	modDir := filepath.Join(dir, "mod")
	os.Mkdir(modDir, 0o755)
	gomod := []byte("module corp.example/x\n\ngo 1.22\n")
	os.WriteFile(filepath.Join(modDir, "go.mod"), gomod, 0o644)
	wantMod, err := dirhash.HashDir(modDir, "", dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := HashFile(Mod, bytes.NewReader(gomod), int64(len(gomod))); err != nil || got != wantMod {
		t.Errorf("HashFile(mod) = %s, %v; want %s", got, err, wantMod)
	}
	if _, err := HashFile(Zip, bytes.NewReader([]byte("not a zip")), 9); err == nil {
		t.Error("HashFile accepted a non-zip")
	}
}

func TestCheckStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newLedger(t)
	store, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		f, _ := os.CreateTemp(store.ScratchDir(), "put-*")
		f.Write(data)
		if err := store.Put(ctx, key, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	good := []byte("module corp.example/x\n")
	h, _ := HashModBytes(good)
	for _, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		if _, err := l.Pin(ctx, "corp.example/x", v, Mod, h, "git"); err != nil {
			t.Fatal(err)
		}
	}
	put("private/corp.example/x/@v/v1.0.0.mod", good)
	put("private/corp.example/x/@v/v1.1.0.mod", []byte("module corp.example/evil\n"))
	// v1.2.0 is not stored: not a problem.
	checked, problems, err := l.CheckStored(ctx, store, func(_ context.Context, e Entry) ([]string, error) {
		return []string{"private/" + e.Module + "/@v/" + e.Version + "." + e.File}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked != 2 || len(problems) != 1 || problems[0].Entry.Version != "v1.1.0" || problems[0].Kind != ProblemObject {
		t.Fatalf("CheckStored = %d, %v", checked, problems)
	}
	if s := problems[0].String(); !strings.Contains(s, "private/corp.example/x/@v/v1.1.0.mod hashes to") || !strings.Contains(s, h) {
		t.Errorf("problem = %s", s)
	}
}

// While PostgreSQL cannot be asked, Pin checks bytes against the outage copy:
// equal hashes pass, different ones are the usual integrity failure, and a file
// the copy lacks is refused with 503 rather than served unpinned. Since reads
// what a copy has not seen yet.
func TestPinDuringOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	l := New(pool, WithLogger(quiet))
	pinned, err := l.Pin(ctx, "corp.example/x", "v1.0.0", Zip, hashA, "git")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Pin(ctx, "corp.example/x", "v1.1.0", Mod, hashB, "git"); err != nil {
		t.Fatal(err)
	}
	since, err := l.Since(ctx, 1, 10)
	if err != nil || len(since) != 1 || since[0].Version != "v1.1.0" || since[0].Seq != 2 {
		t.Fatalf("Since(1) = %+v, %v; want the v1.1.0 pin alone", since, err)
	}

	copyOf := map[string]Entry{"corp.example/x@v1.0.0/zip": pinned}
	var mismatches int
	down := pgtest.Pool(t, url)
	down.Close() // every query now fails as with PostgreSQL gone
	other := New(down, WithLogger(quiet), WithOnMismatch(func(*Mismatch) { mismatches++ }),
		WithOutageCopy(func(m, v, f string) (Entry, bool) { e, ok := copyOf[m+"@"+v+"/"+f]; return e, ok }))

	tests := []struct {
		name, version, file, hash string
		wantKind                  error
		wantMsg                   string
	}{
		{name: "ok/pinned", version: "v1.0.0", file: Zip, hash: hashA},
		{name: "fail/changed-bytes", version: "v1.0.0", file: Zip, hash: hashB, wantKind: derrors.Integrity, wantMsg: hashA},
		{name: "fail/never-served", version: "v1.2.0", file: Zip, hash: hashA, wantKind: derrors.Unavailable,
			wantMsg: "cannot serve corp.example/x@v1.2.0 now: it was never served before and modgate's database is unreachable to pin it; try again when it is back"},
		{name: "fail/file-never-served", version: "v1.0.0", file: Mod, hash: hashA, wantKind: derrors.Unavailable, wantMsg: "never served before"},
	}
	for _, tt := range tests {
		_, err := other.Pin(ctx, "corp.example/x", tt.version, tt.file, tt.hash, "git")
		switch {
		case tt.wantKind == nil && err != nil:
			t.Errorf("%s: Pin = %v, want nil", tt.name, err)
		case tt.wantKind != nil && (!errors.Is(err, tt.wantKind) || !strings.Contains(derrors.PublicMessage(err), tt.wantMsg)):
			t.Errorf("%s: Pin = %v, want %v saying %q", tt.name, err, tt.wantKind, tt.wantMsg)
		}
	}
	if mismatches != 1 {
		t.Errorf("%d mismatches reported, want 1", mismatches)
	}
	// Nothing was pinned during the outage.
	all, err := l.All(ctx)
	if err != nil || len(all) != 2 {
		t.Errorf("ledger after the outage: %d pins (%v), want 2", len(all), err)
	}
}
