package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5/pgconn"
)

// The shipper streams rows to PostgreSQL in COPY's binary format, encoded here
// straight from the Row (one buffer per batch) rather than through pgx's
// CopyFrom, which boxes each of the 25 values into an interface and looks up an
// encoder for each: per event that was 40 of the writer's allocations and a
// quarter of its CPU. The format is PostgreSQL's ("COPY ... FORMAT binary"):
// a signature and header, then per row a field count and each field as a
// 32-bit length and its binary send form, then a -1 trailer.

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// pgEpochMicros is 2000-01-01 00:00:00 UTC in Unix microseconds: the zero of a
// binary timestamptz.
const pgEpochMicros = 946_684_800_000_000

// textOID is the element type of a text[] column.
const textOID = 25

// encodeCopy returns the COPY binary stream of rows, in columns' order.
func encodeCopy(rows []*Row) ([]byte, error) {
	b := make([]byte, 0, 19+len(rows)*400)
	b = append(b, copySignature...)
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	b = binary.BigEndian.AppendUint32(b, 0) // header extension length
	for _, r := range rows {
		var err error
		if b, err = appendCopyRow(b, r); err != nil {
			return nil, err
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff), nil // trailer: -1
}

func appendCopyRow(b []byte, r *Row) ([]byte, error) {
	id, err := uuidBytes(r.EventID)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(columns)))
	b = copyBytes(b, id[:])                                       // event_id uuid
	b = copyInt64(b, r.Time.UnixMicro()-pgEpochMicros)            // time timestamptz
	b = copyText(b, r.RequestID)                                  // request_id
	b = copyText(b, r.DecisionID)                                 // decision_id
	b = copyText(b, r.Subject)                                    // subject
	b = copyTextArray(b, r.Teams)                                 // teams text[]
	b = copyText(b, r.AuthMethod)                                 // auth_method
	b = copyText(b, r.ClientAddr)                                 // client_addr
	b = copyText(b, r.CertFingerprint)                            // cert_fingerprint
	b = copyText(b, string(r.Action))                             // action
	b = copyText(b, r.Module)                                     // module
	b = copyText(b, r.Version)                                    // version
	b = copyText(b, string(r.Outcome))                            // outcome
	b = binary.BigEndian.AppendUint32(b, 4)                       // status integer
	b = binary.BigEndian.AppendUint32(b, uint32(int32(r.Status))) //
	b = copyText(b, r.Reason)                                     // reason
	b = copyText(b, r.Source)                                     // source
	b = copyInt64(b, r.Bytes)                                     // bytes bigint
	b = copyInt64(b, int64(math.Float64bits(r.DurationMS)))       // duration_ms double precision
	b = copyText(b, r.UserAgent)                                  // user_agent
	b = copyText(b, r.Replica)                                    // replica
	b = copyText(b, r.ContentHash)                                // content_hash
	b = copyText(b, r.ChainID)                                    // chain_id
	b = copyInt64(b, r.Seq)                                       // seq bigint
	b = copyBytes(b, r.PrevHash)                                  // prev_hash bytea
	b = copyBytes(b, r.Hash)                                      // hash bytea
	return b, nil
}

func copyText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func copyBytes(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func copyInt64(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// copyTextArray encodes a one-dimensional text[] without NULLs (an empty one
// has no dimensions, as PostgreSQL sends '{}').
func copyTextArray(b []byte, ss []string) []byte {
	size := 12
	if len(ss) > 0 {
		size += 8
		for _, s := range ss {
			size += 4 + len(s)
		}
	}
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	ndim := uint32(0)
	if len(ss) > 0 {
		ndim = 1
	}
	b = binary.BigEndian.AppendUint32(b, ndim)
	b = binary.BigEndian.AppendUint32(b, 0) // no NULLs
	b = binary.BigEndian.AppendUint32(b, textOID)
	if len(ss) > 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(len(ss))) // dimension length
		b = binary.BigEndian.AppendUint32(b, 1)               // lower bound
		for _, s := range ss {
			b = copyText(b, s)
		}
	}
	return b
}

// uuidBytes parses the canonical form normalize gave the event id.
func uuidBytes(s string) ([16]byte, error) {
	var id [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("audit: event id %q is not a UUID", s)
	}
	for i, part := range [5][2]int{{0, 8}, {9, 13}, {14, 18}, {19, 23}, {24, 36}} {
		dst := id[[5]int{0, 4, 6, 8, 10}[i]:]
		if _, err := hex.Decode(dst, []byte(s[part[0]:part[1]])); err != nil {
			return id, fmt.Errorf("audit: event id %q is not a UUID", s)
		}
	}
	return id, nil
}

// copyRows streams rows into table over conn and returns how many PostgreSQL
// took.
func copyRows(ctx context.Context, conn *pgconn.PgConn, table string, rows []*Row) (int64, error) {
	data, err := encodeCopy(rows)
	if err != nil {
		return 0, err
	}
	tag, err := conn.CopyFrom(ctx, bytes.NewReader(data), "COPY "+table+" ("+columnList+") FROM STDIN (FORMAT binary)")
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
