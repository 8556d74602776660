// Package sumdbtest is a test helper: a real, signed Go checksum database
// (golang.org/x/mod/sumdb) over a set of proxytest modules, kept in memory.
//
// It is served under a proxytest.Server at /sumdb/<name>/ — the layout the go
// command uses to reach a checksum database through a GOPROXY — so that in
// end-to-end tests the database is reachable only through modgate's upstream:
//
//	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
//	db := sumdbtest.Mount(t, upstream, "sum.mod.test")
//	// GOSUMDB=db.Key(), GOPROXY=<modgate>
package sumdbtest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/testing/proxytest"
)

// A DB is a signed checksum database. Its methods are safe for concurrent use.
type DB struct {
	name    string
	signer  note.Signer
	key     string // verifier key, "<name>+<hash>+<key>"
	handler http.Handler

	mu      sync.Mutex
	records [][]byte
	hashes  []tlog.Hash      // the tlog's stored hashes, in storage order
	ids     map[string]int64 // "path@version" → id of the record served for it
	sums    map[string][2]string
	lookups []string // "path@version" of every lookup, found or not
}

// New builds a database named name (for example "sum.mod.test") holding, for
// each module, the record the real checksum database would hold:
//
//	<path> <version> h1:<zip hash>
//	<path> <version>/go.mod h1:<.mod hash>
//
// The signing key is derived from name, so a given name always has the same Key.
func New(t testing.TB, name string, modules []proxytest.Module) *DB {
	t.Helper()
	db, err := FromRecords(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Add(modules...); err != nil {
		t.Fatal(err)
	}
	return db
}

// A Record is what the database vouches for about one module version: the h1:
// hashes of its zip and of its go.mod, as a go.sum file holds them.
type Record struct {
	Path, Version string
	Sum, GoModSum string
}

// FromRecords builds a database named name holding records, in the order given;
// it is New for callers that have hashes (a go.sum file) rather than modules.
func FromRecords(name string, records []Record) (*DB, error) {
	var seed [32]byte
	copy(seed[:], "modgate sumdbtest "+name)
	skey, vkey, err := note.GenerateKey(rand.NewChaCha8(seed), name)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: generate key: %w", err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: signer: %w", err)
	}
	db := &DB{name: name, signer: signer, key: vkey, ids: make(map[string]int64), sums: make(map[string][2]string)}
	db.handler = sumdb.NewServer(ops{db})
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, r := range records {
		key := r.Path + "@" + r.Version
		if _, ok := db.ids[key]; ok {
			continue
		}
		if err := db.appendLocked(key, r.Sum, r.GoModSum); err != nil {
			return nil, err
		}
		db.sums[key] = [2]string{r.Sum, r.GoModSum}
	}
	return db, nil
}

// Mount builds a database over every module upstream serves (New) and mounts
// it under upstream at /sumdb/<name>/, leaving /supported unanswered.
func Mount(t testing.TB, upstream *proxytest.Server, name string) *DB {
	t.Helper()
	db := New(t, name, upstream.Modules())
	upstream.MountSumDB(db)
	return db
}

// Name returns the database name, the first element of Key.
func (db *DB) Name() string { return db.name }

// Key returns the verifier key in note format, "<name>+<hash>+<key>": the value
// of GOSUMDB for a go command that should trust this database.
func (db *DB) Key() string { return db.key }

// Handler serves the checksum database protocol with paths relative to the
// database root: /latest, /lookup/<mod>@<ver>, /tile/... It does not answer
// /supported (see proxytest.Server.AnswerSumDBSupported).
func (db *DB) Handler() http.Handler { return db.handler }

// Add appends records for modules not yet in the database (the tree grows, as
// when a new version is published upstream). Modules already present are left
// alone: a checksum database never changes a record.
func (db *DB) Add(modules ...proxytest.Module) error {
	type rec struct {
		key       string
		sum, gsum string
	}
	var recs []rec
	for _, m := range modules {
		sum, err := proxytest.DirHash(m)
		if err != nil {
			return fmt.Errorf("sumdbtest: %w", err)
		}
		gsum, err := proxytest.GoModHash(m)
		if err != nil {
			return fmt.Errorf("sumdbtest: %w", err)
		}
		recs = append(recs, rec{key: m.String(), sum: sum, gsum: gsum})
	}
	slices.SortFunc(recs, func(a, b rec) int { return strings.Compare(a.key, b.key) })
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, r := range recs {
		if _, ok := db.ids[r.key]; ok {
			continue
		}
		if err := db.appendLocked(r.key, r.sum, r.gsum); err != nil {
			return err
		}
		db.sums[r.key] = [2]string{r.sum, r.gsum}
	}
	return nil
}

// TamperHash makes the database vouch for a wrong zip hash of path@version: it
// appends a record whose h1: differs from the module's real one (the go.mod hash
// stays right) and serves that record from then on. The log stays consistent —
// this is a lying database, not a forked one — so a go command that downloads
// the real zip must fail with "checksum mismatch ... SECURITY ERROR".
func (db *DB) TamperHash(path, version string) error {
	key := path + "@" + version
	db.mu.Lock()
	defer db.mu.Unlock()
	sums, ok := db.sums[key]
	if !ok {
		return fmt.Errorf("sumdbtest: TamperHash: no record for %s", key)
	}
	wrong := sha256.Sum256([]byte("sumdbtest tampered " + sums[0]))
	return db.appendLocked(key, "h1:"+base64.StdEncoding.EncodeToString(wrong[:]), sums[1])
}

// appendLocked adds the record for key ("path@version") to the log and points
// lookups of key at it. db.mu must be held.
func (db *DB) appendLocked(key, sum, goModSum string) error {
	path, version, _ := strings.Cut(key, "@")
	data := []byte(fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", path, version, sum, path, version, goModSum))
	id := int64(len(db.records))
	hashes, err := tlog.StoredHashesForRecordHash(id, tlog.RecordHash(data), tlog.HashReaderFunc(db.readHashesLocked))
	if err != nil {
		return fmt.Errorf("sumdbtest: append %s: %w", key, err)
	}
	db.records = append(db.records, data)
	db.hashes = append(db.hashes, hashes...)
	db.ids[key] = id
	return nil
}

func (db *DB) readHashesLocked(indexes []int64) ([]tlog.Hash, error) {
	list := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(db.hashes)) {
			return nil, fmt.Errorf("sumdbtest: no stored hash %d", x)
		}
		list[i] = db.hashes[x]
	}
	return list, nil
}

// Lookups returns how many lookups asked about module path (any version),
// whether or not the database knew it.
func (db *DB) Lookups(path string) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	for _, l := range db.lookups {
		if p, _, _ := strings.Cut(l, "@"); p == path {
			n++
		}
	}
	return n
}

// LookedUp returns "path@version" of every lookup, in order, repeats included.
func (db *DB) LookedUp() []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.lookups)
}

// Size returns the number of records in the log.
func (db *DB) Size() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return len(db.records)
}

// ops implements sumdb.ServerOps over the DB, keeping those methods off the
// DB's API.
type ops struct{ db *DB }

func (o ops) Signed(ctx context.Context) ([]byte, error) {
	db := o.db
	db.mu.Lock()
	size := int64(len(db.records))
	h, err := tlog.TreeHash(size, tlog.HashReaderFunc(db.readHashesLocked))
	db.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: tree hash: %w", err)
	}
	return note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: size, Hash: h}))}, db.signer)
}

func (o ops) ReadRecords(ctx context.Context, id, n int64) ([][]byte, error) {
	db := o.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if id < 0 || n < 0 || id+n > int64(len(db.records)) {
		return nil, &fs.PathError{Op: "read records", Path: fmt.Sprintf("[%d, %d)", id, id+n), Err: fs.ErrNotExist}
	}
	return slices.Clone(db.records[id : id+n]), nil
}

func (o ops) Lookup(ctx context.Context, m module.Version) (int64, error) {
	db := o.db
	key := m.Path + "@" + m.Version
	db.mu.Lock()
	defer db.mu.Unlock()
	db.lookups = append(db.lookups, key)
	id, ok := db.ids[key]
	if !ok {
		// sumdb.Server answers 404 only for errors os.IsNotExist recognizes,
		// which does not unwrap %w.
		return 0, &fs.PathError{Op: "lookup", Path: key, Err: fs.ErrNotExist}
	}
	return id, nil
}

func (o ops) ReadTileData(ctx context.Context, t tlog.Tile) ([]byte, error) {
	db := o.db
	db.mu.Lock()
	defer db.mu.Unlock()
	return tlog.ReadTileData(t, tlog.HashReaderFunc(db.readHashesLocked))
}
