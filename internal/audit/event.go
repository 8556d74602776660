// Package audit records every pull, publish, delete and denial in PostgreSQL, without
// losing any when PostgreSQL is down and without making requests wait on it.
//
// The path of an event: Record appends it to a local spool (group-committed, fsync'd)
// and returns once it is on disk; a shipper streams the spool into PostgreSQL in
// batches and deletes spool segments once their rows are committed. Each writer chains
// its rows with SHA-256 so Verify can find a changed, deleted or reordered row. Query
// serves the auditor's questions with keyset pagination.
package audit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// Action is what the caller asked for.
type Action string

const (
	ActionList      Action = "list"   // @v/list
	ActionInfo      Action = "info"   // @v/V.info
	ActionMod       Action = "mod"    // @v/V.mod
	ActionZip       Action = "zip"    // @v/V.zip
	ActionLatest    Action = "latest" // @latest
	ActionSumDB     Action = "sumdb"  // checksum database proxy
	ActionPublish   Action = "publish"
	ActionDelete    Action = "delete"
	ActionAuditRead Action = "audit-read"
	ActionAdmin     Action = "admin"
)

// Actions lists every action the audit trail records, for validating queries:
// the constants above, the request kinds the server names after its routes
// ("invalid-request" for a malformed module request) and the CLI's bundle
// operations. An action added anywhere is added here.
var Actions = []Action{
	ActionList, ActionInfo, ActionMod, ActionZip, ActionLatest, ActionSumDB,
	ActionPublish, ActionDelete, ActionAuditRead, ActionAdmin,
	"invalid-request", "bundle-export", "bundle-import", "vulndb",
}

// PullActions are the actions that fetch a module version's content or metadata.
var PullActions = []Action{ActionInfo, ActionMod, ActionZip}

// Outcome is how the request ended.
type Outcome string

const (
	OutcomeServed          Outcome = "served"
	OutcomeDenied          Outcome = "denied"          // policy said no
	OutcomeUnauthenticated Outcome = "unauthenticated" // no valid credentials
	OutcomeNotFound        Outcome = "not_found"
	OutcomeGone            Outcome = "gone" // deleted version
	OutcomeInvalid         Outcome = "invalid"
	OutcomeError           Outcome = "error"
	// OutcomeIntegrityFailure: an upstream object did not match the checksum
	// database and was refused (never cached nor delivered whole).
	OutcomeIntegrityFailure Outcome = "integrity_failure"
	// OutcomeRateLimitedSummary: one row counting a source's requests without
	// valid credentials refused beyond its burst in one window (count in Bytes).
	OutcomeRateLimitedSummary Outcome = "rate_limited_summary"
)

// Outcomes lists every outcome, for validating queries.
var Outcomes = []Outcome{
	OutcomeServed, OutcomeDenied, OutcomeUnauthenticated, OutcomeNotFound,
	OutcomeGone, OutcomeInvalid, OutcomeError, OutcomeIntegrityFailure, OutcomeRateLimitedSummary,
}

// Event is one audited request. Record fills EventID and Time when they are empty.
type Event struct {
	// EventID is the idempotency key (a UUID). Leave empty to get a fresh UUIDv7.
	EventID string `json:"event_id"`
	// Time is when the request was handled; stored with microsecond precision, UTC.
	Time time.Time `json:"time"`

	RequestID  string `json:"request_id,omitempty"`
	DecisionID string `json:"decision_id,omitempty"` // the policy decision that allowed or denied it

	Subject         string   `json:"subject,omitempty"`
	Teams           []string `json:"teams,omitempty"`
	AuthMethod      string   `json:"auth_method,omitempty"` // identity.Method
	ClientAddr      string   `json:"client_addr,omitempty"`
	CertFingerprint string   `json:"cert_fingerprint,omitempty"`

	Action  Action  `json:"action"`
	Module  string  `json:"module,omitempty"`
	Version string  `json:"version,omitempty"`
	Outcome Outcome `json:"outcome"`
	Status  int     `json:"status,omitempty"` // HTTP status sent
	Reason  string  `json:"reason,omitempty"` // deny reason or error, as told to the client
	// Source is where the content came from: "cache", an upstream URL, "git", "published".
	Source     string  `json:"source,omitempty"`
	Bytes      int64   `json:"bytes,omitempty"`
	DurationMS float64 `json:"duration_ms,omitempty"`
	UserAgent  string  `json:"user_agent,omitempty"`
	// ContentHash is the h1: hash of the module zip a publish or delete concerned.
	ContentHash string `json:"content_hash,omitempty"`

	// Replica names the server that handled the request; the writer sets it.
	Replica string `json:"replica,omitempty"`
}

// SetIdentity copies the caller's identity into e.
func (e *Event) SetIdentity(id *identity.Identity) {
	if id == nil {
		return
	}
	e.Subject = id.Subject
	e.Teams = append([]string(nil), id.Teams...)
	e.AuthMethod = string(id.Method)
	e.CertFingerprint = id.CertFingerprint
}

// SetDuration stores d in DurationMS.
func (e *Event) SetDuration(d time.Duration) { e.DurationMS = float64(d.Microseconds()) / 1000 }

// Row is an event as stored: the event plus its place in its writer's hash chain.
type Row struct {
	ID int64 `json:"id,omitempty"` // assigned by PostgreSQL
	Event
	ChainID  string `json:"chain_id"`
	Seq      int64  `json:"seq"`
	PrevHash []byte `json:"prev_hash"`
	Hash     []byte `json:"hash"`
}

// normalize validates ev and puts it in the exact form PostgreSQL will store and hand
// back, so that the hash computed now is the hash Verify recomputes from the table.
func normalize(ev Event, replica string, now time.Time) (Event, error) {
	if ev.EventID == "" {
		ev.EventID = newUUIDv7(now)
	} else {
		id, ok := canonicalUUID(ev.EventID)
		if !ok {
			return ev, derrors.New(derrors.InvalidArgument, "audit: event id %q is not a UUID", ev.EventID)
		}
		ev.EventID = id
	}
	if ev.Action == "" || ev.Outcome == "" {
		return ev, derrors.New(derrors.InvalidArgument, "audit: event needs an action and an outcome")
	}
	if ev.Status < -1<<31 || ev.Status > 1<<31-1 {
		return ev, derrors.New(derrors.InvalidArgument, "audit: status %d out of range", ev.Status)
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = time.UnixMicro(ev.Time.UnixMicro()).UTC()
	if ev.Replica == "" {
		ev.Replica = replica
	}
	for _, p := range []*string{&ev.RequestID, &ev.DecisionID, &ev.Subject, &ev.AuthMethod, &ev.ClientAddr,
		&ev.CertFingerprint, &ev.Module, &ev.Version, &ev.Reason, &ev.Source, &ev.UserAgent, &ev.Replica, &ev.ContentHash} {
		*p = cleanText(*p)
	}
	ev.Action = Action(cleanText(string(ev.Action)))
	ev.Outcome = Outcome(cleanText(string(ev.Outcome)))
	teams := make([]string, len(ev.Teams))
	for i, t := range ev.Teams {
		teams[i] = cleanText(t)
	}
	ev.Teams = teams
	return ev, nil
}

// cleanText makes s storable in a PostgreSQL text column: valid UTF-8, no NUL. A
// value PostgreSQL rejects would block the spool behind it forever.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

// newUUIDv7 returns a time-ordered UUID (RFC 9562), which keeps the unique index's
// inserts local.
func newUUIDv7(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("audit: crypto/rand failed: %v", err)) // never happens on Linux
	}
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// canonicalUUID accepts the hyphenated form in any case and returns it in the form
// PostgreSQL prints.
func canonicalUUID(s string) (string, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return "", false
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(s[0:8]+s[9:13]+s[14:18]+s[19:23]+s[24:])); err != nil {
		return "", false
	}
	return formatUUID(b), true
}
