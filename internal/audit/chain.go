package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
)

// chainHead is the last link of a writer's chain: the next row gets Seq+1 and
// PrevHash = Hash.
type chainHead struct {
	ChainID string `json:"chain_id"`
	Seq     int64  `json:"seq"`
	Hash    []byte `json:"hash"`
}

// genesisHash is the prev_hash of a chain's first row.
var genesisHash = make([]byte, sha256.Size)

// rowHash is SHA-256 over prev_hash and a canonical encoding of every stored field
// except the database id: strings and byte strings length-prefixed, integers as
// 8-byte big-endian, the time as Unix microseconds, floats by their IEEE bits. The
// field order is fixed by this function; changing it is a new format version.
func rowHash(r *Row) []byte {
	var buf [1024]byte
	b := buf[:0]
	b = appendString(b, "modgate-audit-v1")
	b = appendBytes(b, r.PrevHash)
	b = appendString(b, r.ChainID)
	b = appendInt(b, r.Seq)
	b = appendString(b, r.EventID)
	b = appendInt(b, r.Time.UnixMicro())
	b = appendString(b, r.RequestID)
	b = appendString(b, r.DecisionID)
	b = appendString(b, r.Subject)
	b = appendInt(b, int64(len(r.Teams)))
	for _, t := range r.Teams {
		b = appendString(b, t)
	}
	b = appendString(b, r.AuthMethod)
	b = appendString(b, r.ClientAddr)
	b = appendString(b, r.CertFingerprint)
	b = appendString(b, string(r.Action))
	b = appendString(b, r.Module)
	b = appendString(b, r.Version)
	b = appendString(b, string(r.Outcome))
	b = appendInt(b, int64(r.Status))
	b = appendString(b, r.Reason)
	b = appendString(b, r.Source)
	b = appendInt(b, r.Bytes)
	b = appendInt(b, int64(math.Float64bits(r.DurationMS)))
	b = appendString(b, r.UserAgent)
	b = appendString(b, r.Replica)
	b = appendString(b, r.ContentHash)
	sum := sha256.Sum256(b)
	return sum[:]
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func appendInt(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

// link assigns r the next place in the chain after h and returns the new head.
func (h chainHead) link(r *Row) chainHead {
	r.ChainID = h.ChainID
	r.Seq = h.Seq + 1
	r.PrevHash = h.Hash
	r.Hash = rowHash(r)
	return chainHead{ChainID: h.ChainID, Seq: r.Seq, Hash: r.Hash}
}
