package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
)

// Problem kinds reported by Verify and CheckStored.
const (
	ProblemModified = "modified"    // the row's content no longer matches its hash
	ProblemMissing  = "missing"     // rows were deleted (a gap in seq, or rows after the last one)
	ProblemLink     = "broken-link" // prev_hash is not the previous row's hash
	ProblemHead     = "head"        // the chain head does not match the last row
	ProblemObject   = "object"      // a stored copy does not hash to its pin
)

// Problem is one thing that does not check out.
type Problem struct {
	Kind   string
	Seq    int64  // the row concerned (0 for the head)
	Entry  Entry  // the row as stored, when there is one
	Key    string // the storage key, for ProblemObject
	Detail string
}

func (p Problem) String() string {
	switch {
	case p.Entry.Module != "":
		return fmt.Sprintf("seq %d %s@%s %s: %s: %s", p.Seq, p.Entry.Module, p.Entry.Version, p.Entry.File, p.Kind, p.Detail)
	case p.Seq != 0:
		return fmt.Sprintf("seq %d: %s: %s", p.Seq, p.Kind, p.Detail)
	}
	return fmt.Sprintf("%s: %s", p.Kind, p.Detail)
}

// Report is the result of Verify.
type Report struct {
	Rows     int64
	LastSeq  int64
	Problems []Problem
}

// OK reports whether the chain verified.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verify walks the chain in seq order, recomputes every row's hash and its link to
// the row before, and compares the last row with the recorded head. It names every
// row whose content was changed (an UPDATE of a hash, a source, a time), every gap
// left by deleted rows, and rows deleted from the end.
//
// What it cannot see: the whole chain rewritten, head included, by someone who
// recomputed every hash from the altered row on. Compare the head it prints with
// one kept elsewhere for that.
func (l *Ledger) Verify(ctx context.Context) (rep Report, err error) {
	defer derrors.Wrap(&err, "ledger.Verify")
	rows, err := l.pool.Query(ctx, `SELECT `+entryColumns+`, prev_hash, row_hash FROM private_ledger ORDER BY seq`)
	if err != nil {
		return rep, unavailable(err)
	}
	links, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (link, error) {
		var k link
		err := r.Scan(&k.Module, &k.Version, &k.File, &k.Hash, &k.Source, &k.FirstServed, &k.Seq, &k.PrevHash, &k.RowHash)
		return k, err
	})
	if err != nil {
		return rep, unavailable(err)
	}
	prevSeq, prevHash := int64(0), genesisHash
	for _, k := range links {
		rep.Rows++
		e := k.Entry
		if k.Seq > prevSeq+1 {
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemMissing, Seq: prevSeq + 1,
				Detail: fmt.Sprintf("rows with seq %d..%d were deleted", prevSeq+1, k.Seq-1)})
		}
		switch {
		case !bytes.Equal(rowHash(k.PrevHash, &e), k.RowHash):
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemModified, Seq: k.Seq, Entry: e,
				Detail: "content does not match its hash (pinned " + e.Hash + ")"})
		case k.Seq == prevSeq+1 && !bytes.Equal(k.PrevHash, prevHash):
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemLink, Seq: k.Seq, Entry: e,
				Detail: fmt.Sprintf("prev_hash is not the hash of seq %d: that row was rewritten", prevSeq)})
		}
		prevSeq, prevHash = k.Seq, k.RowHash
	}
	rep.LastSeq = prevSeq

	var headSeq int64
	var headHash []byte
	err = l.pool.QueryRow(ctx, `SELECT seq, hash FROM private_ledger_head`).Scan(&headSeq, &headHash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		rep.Problems = append(rep.Problems, Problem{Kind: ProblemHead, Detail: "the chain head row was deleted"})
	case err != nil:
		return rep, unavailable(err)
	case headSeq > prevSeq:
		rep.Problems = append(rep.Problems, Problem{Kind: ProblemMissing, Seq: prevSeq + 1,
			Detail: fmt.Sprintf("rows with seq %d..%d were deleted from the end (the head records seq %d)", prevSeq+1, headSeq, headSeq)})
	case headSeq != prevSeq || !bytes.Equal(headHash, prevHash):
		rep.Problems = append(rep.Problems, Problem{Kind: ProblemHead,
			Detail: fmt.Sprintf("the head records seq %d, which does not match the last row (seq %d)", headSeq, prevSeq)})
	}
	return rep, nil
}

// Locate names the storage keys at which copies of a pinned file may be stored;
// the application supplies it, since it owns the cache layout.
type Locate func(ctx context.Context, e Entry) ([]string, error)

// CheckStored hashes every stored copy of every pinned file and reports each one
// that does not match its pin. A copy that is not stored (evicted, never cached
// on this store) is not a problem: the next request fetches and checks it.
func (l *Ledger) CheckStored(ctx context.Context, store storage.Store, locate Locate) (checked int, problems []Problem, err error) {
	defer derrors.Wrap(&err, "ledger.CheckStored")
	entries, err := l.All(ctx)
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		keys, err := locate(ctx, e)
		if err != nil {
			return checked, problems, err
		}
		for _, k := range keys {
			h, err := hashStored(ctx, store, k, e.File)
			if errors.Is(err, derrors.NotFound) {
				continue
			}
			checked++
			switch {
			case err != nil:
				problems = append(problems, Problem{Kind: ProblemObject, Seq: e.Seq, Entry: e, Key: k,
					Detail: fmt.Sprintf("stored copy %s cannot be hashed: %v", k, err)})
			case h != e.Hash:
				problems = append(problems, Problem{Kind: ProblemObject, Seq: e.Seq, Entry: e, Key: k,
					Detail: fmt.Sprintf("stored copy %s hashes to %s, pinned %s from %s", k, h, e.Hash, e.Source)})
			}
		}
	}
	return checked, problems, nil
}

// hashStored hashes the object at key. A zip needs random access: an object that
// is not an io.ReaderAt (S3) is copied to a scratch file first.
func hashStored(ctx context.Context, store storage.Store, key, file string) (string, error) {
	obj, err := store.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer obj.Close()
	size := obj.Info().Size
	if ra, ok := obj.(io.ReaderAt); ok {
		return HashFile(file, ra, size)
	}
	tmp, err := os.CreateTemp(store.ScratchDir(), "ledger-verify-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, obj)
	if err != nil {
		return "", err
	}
	return HashFile(file, tmp, n)
}

// ObjectKey is the storage key of a pinned file under prefix in the protocol
// layout the cache uses: prefix + escaped module + "/@v/" + escaped version +
// ".mod" or ".zip" (for example "private/corp.example/!payments/ledger/@v/v1.0.0.zip").
func ObjectKey(prefix string, e Entry) (string, error) {
	mod, err := module.EscapePath(e.Module)
	if err != nil {
		return "", err
	}
	ver, err := module.EscapeVersion(e.Version)
	if err != nil {
		return "", err
	}
	return prefix + mod + "/@v/" + ver + "." + e.File, nil
}
