package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/policy"
)

// AuditQuerier answers audit trail queries.
type AuditQuerier func(ctx context.Context, f audit.Filter) ([]audit.Row, string, error)

// handleAuditEvents serves GET /api/v1/audit/events: the audit trail filtered by
// module (glob), version, subject, team, action, outcome, since, until; newest
// first; keyset-paginated by the opaque cursor in next_cursor. format=csv returns
// CSV (header on the first page only), otherwise JSON. Only callers the policy
// allows audit.read may query, and every query is itself audited.
func (s *Server) handleAuditEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		s.writeError(w, r, derrors.New(derrors.MethodNotAllowed, "method %s not allowed", r.Method))
		return
	}
	if s.auditQuery == nil {
		s.writeError(w, r, derrors.New(derrors.NotFound, "the audit trail is not enabled on this modgate (no database)"))
		return
	}
	if _, ok := s.authorize(w, r, s.gateRequest(r, policy.ActionAuditRead, "", "")); !ok {
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	q.Del("format")
	f, err := audit.ParseFilter(q, time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, next, err := s.auditQuery(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if next != "" {
		w.Header().Set("X-Next-Cursor", next)
	}
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		audit.Write(w, "csv", rows, f.Cursor == "")
	case "", "json":
		w.Header().Set("Content-Type", "application/json")
		events := make([]audit.Row, len(rows))
		copy(events, rows)
		json.NewEncoder(w).Encode(struct {
			Events     []audit.Row `json:"events"`
			NextCursor string      `json:"next_cursor,omitempty"`
		}{events, next})
	default:
		s.writeError(w, r, derrors.New(derrors.InvalidArgument, "format %q: want json or csv", format))
	}
}
