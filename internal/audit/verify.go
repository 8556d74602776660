package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DB is what the read side needs: *pgxpool.Pool, *pgx.Conn and pgx.Tx all satisfy it.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Problem kinds reported by Verify.
const (
	ProblemModified  = "modified"  // the row's content no longer matches its hash
	ProblemMissing   = "missing"   // rows before this one were deleted (gap in seq)
	ProblemReordered = "reordered" // the row was moved: its hash fits another position
	ProblemDuplicate = "duplicate" // two rows claim the same seq
	ProblemLink      = "broken-link"
)

// Problem names the first row of a chain that does not check out.
type Problem struct {
	ChainID string `json:"chain_id"`
	Kind    string `json:"kind"`
	Seq     int64  `json:"seq"`      // the row's seq as stored
	ID      int64  `json:"id"`       // the row's id
	EventID string `json:"event_id"` // the row's event id
	Detail  string `json:"detail"`
}

func (p Problem) String() string {
	return fmt.Sprintf("chain %s: row id=%d seq=%d event=%s: %s: %s", p.ChainID, p.ID, p.Seq, p.EventID, p.Kind, p.Detail)
}

// ChainReport is the verification of one writer's chain.
type ChainReport struct {
	ChainID  string   `json:"chain_id"`
	Rows     int64    `json:"rows"`
	FirstSeq int64    `json:"first_seq"`
	LastSeq  int64    `json:"last_seq"`
	Anchored bool     `json:"anchored"` // starts after rows dropped by retention
	Problem  *Problem `json:"problem,omitempty"`
}

// Report is the result of Verify.
type Report struct {
	Chains []ChainReport `json:"chains"`
	Rows   int64         `json:"rows"`
}

// OK reports whether every chain verified.
func (r Report) OK() bool {
	for _, c := range r.Chains {
		if c.Problem != nil {
			return false
		}
	}
	return true
}

// Problems lists the first problem of each chain that has one.
func (r Report) Problems() []Problem {
	var ps []Problem
	for _, c := range r.Chains {
		if c.Problem != nil {
			ps = append(ps, *c.Problem)
		}
	}
	return ps
}

// Verify walks every chain in audit_events in seq order and recomputes each row's
// hash and its link to the row before. For each chain it names the first row that
// was changed, that follows deleted rows, or that sits where it was not written.
//
// What it cannot see: rows deleted from the end of a chain (compare with the chain
// heads the writers log), or a chain rewritten wholesale by someone who recomputed
// every hash from the altered row on.
func Verify(ctx context.Context, db DB) (rep Report, err error) {
	chains, err := chainIDs(ctx, db)
	if err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	for _, id := range chains {
		cr, err := verifyChain(ctx, db, id)
		if err != nil {
			return rep, fmt.Errorf("audit: verify chain %s: %w", id, err)
		}
		rep.Rows += cr.Rows
		rep.Chains = append(rep.Chains, cr)
	}
	return rep, nil
}

func chainIDs(ctx context.Context, db DB) ([]string, error) {
	// A loose index scan: one probe of audit_events_chain_idx per chain, not a scan of
	// the table.
	rows, err := db.Query(ctx, `
		WITH RECURSIVE c AS (
			(SELECT chain_id FROM audit_events ORDER BY chain_id LIMIT 1)
			UNION ALL
			SELECT (SELECT chain_id FROM audit_events WHERE chain_id > c.chain_id ORDER BY chain_id LIMIT 1)
			FROM c WHERE c.chain_id IS NOT NULL
		)
		SELECT chain_id FROM c WHERE chain_id IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func verifyChain(ctx context.Context, db DB, chain string) (ChainReport, error) {
	cr := ChainReport{ChainID: chain}
	prevSeq, prevHash := int64(0), genesisHash
	anchor, err := db.Query(ctx, `SELECT seq, hash FROM audit_chain_anchors WHERE chain_id = $1`, chain)
	if err != nil {
		return cr, err
	}
	if a, err := pgx.CollectOneRow(anchor, pgx.RowToStructByPos[struct {
		Seq  int64
		Hash []byte
	}]); err == nil {
		prevSeq, prevHash, cr.Anchored = a.Seq, a.Hash, true
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return cr, err
	}

	rows, err := db.Query(ctx, `SELECT `+selectColumns+` FROM audit_events WHERE chain_id = $1 ORDER BY seq, id`, chain)
	if err != nil {
		return cr, err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return cr, err
		}
		if cr.Rows == 0 {
			cr.FirstSeq = r.Seq
		}
		cr.Rows++
		cr.LastSeq = r.Seq
		if cr.Problem != nil {
			continue // count the rest, report only the first problem
		}
		cr.Problem = checkRow(&r, prevSeq, prevHash)
		prevSeq, prevHash = r.Seq, r.Hash
	}
	return cr, rows.Err()
}

// checkRow checks r against the row before it in the chain.
func checkRow(r *Row, prevSeq int64, prevHash []byte) *Problem {
	p := &Problem{ChainID: r.ChainID, Seq: r.Seq, ID: r.ID, EventID: r.EventID}
	switch {
	case r.Seq == prevSeq:
		p.Kind, p.Detail = ProblemDuplicate, "another row has the same seq"
		return p
	case !bytes.Equal(rowHash(r), r.Hash):
		// Was the row written at another position? Its hash covers its seq.
		for d := int64(-8); d <= 8; d++ {
			if d == 0 {
				continue
			}
			moved := *r
			moved.Seq = r.Seq + d
			if bytes.Equal(rowHash(&moved), r.Hash) {
				p.Kind, p.Detail = ProblemReordered, fmt.Sprintf("row was written as seq %d", moved.Seq)
				return p
			}
		}
		p.Kind, p.Detail = ProblemModified, "content does not match its hash"
		return p
	case r.Seq > prevSeq+1:
		p.Kind, p.Detail = ProblemMissing, fmt.Sprintf("rows with seq %d..%d are missing", prevSeq+1, r.Seq-1)
		return p
	case r.Seq < prevSeq+1:
		p.Kind, p.Detail = ProblemReordered, fmt.Sprintf("seq %d after seq %d", r.Seq, prevSeq)
		return p
	case !bytes.Equal(r.PrevHash, prevHash):
		p.Kind, p.Detail = ProblemLink, "prev_hash does not match the previous row's hash"
		return p
	}
	return nil
}
