package audit

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
)

// Filter selects audit rows. Zero fields match everything.
type Filter struct {
	// Module is a module path, or a glob where * matches any run of characters
	// ("github.com/acme/*").
	Module   string
	Version  string
	Subject  string
	Team     string    // rows whose teams include Team
	Actions  []Action  // any of these
	Outcomes []Outcome // any of these
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	// Limit is the page size; default 100, at most MaxLimit.
	Limit int
	// Cursor continues from a previous page (the cursor Query returned).
	Cursor string
}

// MaxLimit caps one page.
const MaxLimit = 10000

// WhoPulled answers "who pulled module@version": every served pull of its
// .info, .mod or .zip. version may be empty for all versions.
func WhoPulled(module, version string) Filter {
	return Filter{Module: module, Version: version, Actions: PullActions, Outcomes: []Outcome{OutcomeServed}}
}

// TeamPulls answers "what did team pull since": every served pull by a member.
func TeamPulls(team string, since time.Time) Filter {
	return Filter{Team: team, Since: since, Actions: PullActions, Outcomes: []Outcome{OutcomeServed}}
}

var selectColumns = "id, " + columnList

// scanRow reads a row selected with selectColumns.
func scanRow(rows pgx.Rows) (Row, error) {
	var r Row
	var action, outcome string
	var status int32
	err := rows.Scan(&r.ID, &r.EventID, &r.Time, &r.RequestID, &r.DecisionID, &r.Subject, &r.Teams, &r.AuthMethod,
		&r.ClientAddr, &r.CertFingerprint, &action, &r.Module, &r.Version, &outcome, &status,
		&r.Reason, &r.Source, &r.Bytes, &r.DurationMS, &r.UserAgent, &r.Replica, &r.ContentHash,
		&r.ChainID, &r.Seq, &r.PrevHash, &r.Hash)
	r.Action, r.Outcome, r.Status = Action(action), Outcome(outcome), int(status)
	r.Time = r.Time.UTC()
	if r.Teams == nil {
		r.Teams = []string{}
	}
	return r, err
}

// Query returns one page of rows matching f, newest first, and the cursor for the
// next page ("" when this is the last). Paging is by (time, id), so rows arriving
// meanwhile never shift a page.
func Query(ctx context.Context, db DB, f Filter) (_ []Row, next string, err error) {
	defer derrors.Wrap(&err, "audit.Query")
	// Events recorded meanwhile wait in the spool; only reading them needs the
	// database.
	defer database.MarkUnavailable(&err, "cannot query the audit trail now (events are still being recorded)")
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > MaxLimit {
		return nil, "", derrors.New(derrors.InvalidArgument, "limit %d exceeds %d", f.Limit, MaxLimit)
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Module != "" {
		if strings.Contains(f.Module, "*") {
			where = append(where, `module LIKE `+arg(globToLike(f.Module))+` ESCAPE '\'`)
		} else {
			where = append(where, "module = "+arg(f.Module))
		}
	}
	if f.Version != "" {
		where = append(where, "version = "+arg(f.Version))
	}
	if f.Subject != "" {
		where = append(where, "subject = "+arg(f.Subject))
	}
	if f.Team != "" {
		where = append(where, "teams @> "+arg([]string{f.Team}))
	}
	if len(f.Actions) > 0 {
		where = append(where, "action = ANY("+arg(toStrings(f.Actions))+")")
	}
	if len(f.Outcomes) > 0 {
		where = append(where, "outcome = ANY("+arg(toStrings(f.Outcomes))+")")
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "time < "+arg(f.Until))
	}
	if f.Cursor != "" {
		t, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, fmt.Sprintf("(time, id) < (%s, %s)", arg(t), arg(id)))
	}
	sql := "SELECT " + selectColumns + " FROM audit_events"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY time DESC, id DESC LIMIT " + arg(f.Limit+1)
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) > f.Limit {
		out = out[:f.Limit]
		last := out[len(out)-1]
		next = encodeCursor(last.Time, last.ID)
	}
	return out, next, nil
}

// globToLike turns a glob with * into a LIKE pattern, escaping LIKE's own wildcards.
func globToLike(glob string) string {
	var b strings.Builder
	for _, c := range glob {
		switch c {
		case '\\', '%', '_':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '*':
			b.WriteByte('%')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func toStrings[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

func encodeCursor(t time.Time, id int64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d", t.UnixMicro(), id))
}

func decodeCursor(s string) (time.Time, int64, error) {
	bad := derrors.New(derrors.InvalidArgument, "invalid cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, 0, bad
	}
	ts, ids, ok := strings.Cut(string(b), ".")
	if !ok {
		return time.Time{}, 0, bad
	}
	us, err1 := strconv.ParseInt(ts, 10, 64)
	id, err2 := strconv.ParseInt(ids, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, bad
	}
	return time.UnixMicro(us).UTC(), id, nil
}
