package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/derrors"
)

// TileReader reads one tile of the checksum database's tree (through modgate's
// cache, where each tile was itself checked before it was stored).
type TileReader func(ctx context.Context, t tlog.Tile) ([]byte, error)

// Answers checks the checksum database's answers that modgate proxies to the go
// command — signed tree heads, lookups and tiles — before they are cached, so a
// forged or garbled answer from a mirror is never stored (a lookup and a full
// tile are stored for ever). It checks what the go command itself would: the
// tree head's signature with the database's key, a lookup's record against the
// tree it carries (an inclusion proof built from tiles), and a tile against a
// signed tree head that covers it.
//
// What it cannot catch is the same as for the go command: a database that signs
// a forked log with its real key; Verifier's persisted tree head catches that
// for the objects modgate verifies itself.
type Answers struct {
	name      string
	verifiers note.Verifiers

	mu    sync.Mutex
	trees []tlog.Tree // recently verified tree heads, newest last
}

// keptTrees bounds the remembered tree heads: partial tiles are checked against
// the tree whose size they belong to, and clients ask for the few newest ones.
const keptTrees = 64

// tileHeight is the tile height the go command and sum.golang.org use.
const tileHeight = 8

// NewAnswers returns an Answers for the database that key ("<name>+<hash>+<key>")
// names.
func NewAnswers(key string) (*Answers, error) {
	v, err := note.NewVerifier(strings.TrimSpace(key))
	if err != nil {
		return nil, fmt.Errorf("verify: checksum database key: %w", err)
	}
	return &Answers{name: v.Name(), verifiers: note.VerifierList(v)}, nil
}

// Name is the database's name.
func (a *Answers) Name() string { return a.name }

func (a *Answers) bad(err error, format string, args ...any) error {
	return &Error{err: derrors.WithCause(derrors.BadUpstream, err, "upstream sent a checksum database answer that does not verify ("+format+")", args...)}
}

// CheckLatest checks a signed tree head ("latest") and remembers its tree.
func (a *Answers) CheckLatest(data []byte) error {
	tree, err := a.openTree(data)
	if err != nil {
		return a.bad(err, "%s/latest", a.name)
	}
	a.remember(tree)
	return nil
}

func (a *Answers) openTree(msg []byte) (tlog.Tree, error) {
	n, err := note.Open(msg, a.verifiers)
	if err != nil {
		return tlog.Tree{}, err
	}
	return tlog.ParseTree([]byte(n.Text))
}

func (a *Answers) remember(tree tlog.Tree) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.trees {
		if t == tree {
			return
		}
	}
	a.trees = append(a.trees, tree)
	if len(a.trees) > keptTrees {
		a.trees = a.trees[len(a.trees)-keptTrees:]
	}
}

// CheckLookup checks a lookup answer for path@version: the record it carries is
// for that module and version, the tree head it carries is signed by the
// database, and the record is in that tree (inclusion proof from tiles).
func (a *Answers) CheckLookup(ctx context.Context, path, version string, data []byte, read TileReader) error {
	id, text, treeMsg, err := tlog.ParseRecord(data)
	if err != nil {
		return a.bad(err, "lookup of %s@%s", path, version)
	}
	tree, err := a.openTree(treeMsg)
	if err != nil {
		return a.bad(err, "lookup of %s@%s: tree head", path, version)
	}
	if id >= tree.N {
		return a.bad(errors.New("record id beyond the tree"), "lookup of %s@%s", path, version)
	}
	if !strings.HasPrefix(string(text), path+" "+version+" ") {
		return a.bad(errors.New("record is for another module or version"), "lookup of %s@%s", path, version)
	}
	hr := tlog.TileHashReader(tree, &tileSource{ctx: ctx, read: read, h: tileHeight})
	proof, err := tlog.ProveRecord(tree.N, id, hr)
	if err == nil {
		err = tlog.CheckRecord(proof, tree.N, tree.Hash, id, tlog.RecordHash(text))
	}
	if err != nil {
		return a.bad(err, "lookup of %s@%s: record not in the signed tree", path, version)
	}
	a.remember(tree)
	return nil
}

// CheckTile checks a hash tile against a remembered signed tree head that covers
// it (for a partial tile: the tree of exactly its width). When none does,
// refresh is asked for the current tree head (which it passes to CheckLatest)
// and the search is repeated once. Data tiles (level -1) are not checked here.
func (a *Answers) CheckTile(ctx context.Context, t tlog.Tile, data []byte, read TileReader, refresh func(context.Context) error) error {
	if t.L < 0 {
		return errors.New("verify: data tiles are not checked")
	}
	tree, ok := a.treeFor(t)
	if !ok && refresh != nil {
		if err := refresh(ctx); err != nil {
			return err
		}
		tree, ok = a.treeFor(t)
	}
	if !ok {
		return a.bad(errors.New("no signed tree head covers it"), "tile %s", t.Path())
	}
	hr := tlog.TileHashReader(tree, &tileSource{ctx: ctx, read: read, h: t.H, tile: t, data: data})
	if _, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(t.L*t.H, t.N<<uint(t.H))}); err != nil {
		return a.bad(err, "tile %s", t.Path())
	}
	return nil
}

// treeFor finds a remembered tree in which t is exactly the tile the tree's
// hashes are stored in: full tiles need a tree that covers them, partial tiles
// one whose size ends inside them at their width.
func (a *Answers) treeFor(t tlog.Tile) (tlog.Tree, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.trees) - 1; i >= 0; i-- {
		tree := a.trees[i]
		n := tree.N >> uint(t.L*t.H) // hashes at the tile's level
		start := t.N << uint(t.H)
		if t.W == 1<<uint(t.H) && n >= start+int64(t.W) || n == start+int64(t.W) {
			return tree, true
		}
	}
	return tlog.Tree{}, false
}

// tileSource adapts a TileReader to tlog.TileReader, answering the tile under
// check from its bytes.
type tileSource struct {
	ctx  context.Context
	read TileReader
	h    int
	tile tlog.Tile
	data []byte
}

func (s *tileSource) Height() int { return s.h }

func (s *tileSource) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if s.data != nil && t == s.tile {
			out[i] = s.data
			continue
		}
		b, err := s.read(s.ctx, t)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (s *tileSource) SaveTiles([]tlog.Tile, [][]byte) {}
