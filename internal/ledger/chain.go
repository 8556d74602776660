package ledger

import (
	"crypto/sha256"
	"encoding/binary"
)

// genesisHash is the prev_hash of the first row (and the head of an empty ledger).
var genesisHash = make([]byte, sha256.Size)

// link is one row of the chain as stored.
type link struct {
	Entry
	PrevHash []byte
	RowHash  []byte
}

// rowHash is SHA-256 over the previous row's hash and a canonical encoding of
// every stored field: strings length-prefixed, integers as 8-byte big-endian, the
// time as Unix microseconds (PostgreSQL's timestamptz precision). The order is
// fixed by this function; changing it is a new format version.
func rowHash(prev []byte, e *Entry) []byte {
	b := make([]byte, 0, 256)
	b = appendString(b, "modgate-ledger-v1")
	b = appendString(b, string(prev))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = appendString(b, e.Module)
	b = appendString(b, e.Version)
	b = appendString(b, e.File)
	b = appendString(b, e.Hash)
	b = appendString(b, e.Source)
	b = binary.BigEndian.AppendUint64(b, uint64(e.FirstServed.UnixMicro()))
	sum := sha256.Sum256(b)
	return sum[:]
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}
