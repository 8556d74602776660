package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/source"
)

// Auditor records audit events; *audit.Writer implements it.
type Auditor interface {
	// Record returns once the event is durable (or an error saying it is not).
	Record(ev audit.Event) error
	// Healthy reports whether events can be recorded at all.
	Healthy() error
}

// audited reports whether a request belongs in the audit trail: every module
// protocol request, publish and delete, audit reads, and of the checksum database
// the lookups (they name a module) plus anything refused or failed. Tiles and tree
// heads name no module and would only bury the auditor's questions in noise.
func audited(rec *recorder) bool {
	if rec.rateLimited {
		// A flood refused before any work must not cost an fsync'd event per
		// request; modgate_rate_limited_total and the access log count them.
		return false
	}
	switch rec.endpoint {
	case "list", "info", "mod", "zip", "latest", "module", "publish", "delete", "audit-read", "vulndb":
		return true
	case "sumdb":
		return rec.module != "" || rec.status >= 400
	}
	return false
}

// withAuditGate refuses audited requests with 503 when audit.require is set and
// nothing can record them: as Vault does, modgate would rather not serve than serve
// unrecorded.
func (s *Server) withAuditGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.audit != nil && s.set.AuditRequire {
			if err := s.audit.Healthy(); err != nil {
				s.writeError(w, r, derrors.WithCause(derrors.Unavailable, err, "audit trail unavailable: modgate does not serve requests it cannot record"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// recordAudit writes the request's audit event, on no client context: a client
// hanging up cannot cancel its record. It runs inside the handler on purpose: over
// TLS, net/http flushes the response's final buffered bytes only after the handler
// returns, so no client ever holds a complete response whose record is not yet
// durable (Record returns once the event is fsync'd to the spool).
func (s *Server) recordAudit(r *http.Request, rec *recorder, d time.Duration, aborted bool) {
	if s.audit == nil || !audited(rec) {
		return
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	ev := audit.Event{
		RequestID:  rec.requestID,
		DecisionID: rec.decisionID,
		ClientAddr: clientIP(r),
		Action:     auditAction(rec.endpoint),
		Module:     rec.module,
		Version:    rec.version,
		Status:     status,
		Outcome:    outcome(status, aborted),
		Source:     rec.source,
		Bytes:      rec.bytes,
		UserAgent:  r.UserAgent(),
		Replica:    s.set.Replica,
	}
	if rec.action != "" { // publish and delete
		ev.Action = audit.Action(rec.action)
		ev.Bytes = rec.uploadBytes
		ev.ContentHash = rec.zipHash
		ev.Source = "published"
	}
	ev.SetIdentity(rec.identity)
	ev.SetDuration(d)
	if source.IsIntegrityFailure(rec.err) {
		ev.Outcome = audit.OutcomeIntegrityFailure
	}
	if rec.err != nil {
		ev.Reason = derrors.PublicMessage(rec.err)
	} else if rec.reason != "" {
		ev.Reason = rec.reason // a delete's stated reason
	}
	if aborted && ev.Reason == "" {
		ev.Reason = "transfer aborted"
	}
	if err := s.audit.Record(ev); err != nil {
		s.m.AuditFailures.Inc()
		s.log.Error("audit: event not recorded", "request_id", ev.RequestID, "action", ev.Action, "module", ev.Module, "err", err)
	}
}

func auditAction(endpoint string) audit.Action {
	if endpoint == "module" {
		return "invalid-request"
	}
	return audit.Action(strings.ReplaceAll(endpoint, ".", "-"))
}

func outcome(status int, aborted bool) audit.Outcome {
	switch {
	case aborted:
		return audit.OutcomeError
	case status < 400:
		return audit.OutcomeServed
	case status == http.StatusUnauthorized, status == http.StatusTooManyRequests:
		return audit.OutcomeUnauthenticated
	case status == http.StatusForbidden:
		return audit.OutcomeDenied
	case status == http.StatusNotFound:
		return audit.OutcomeNotFound
	case status == http.StatusGone:
		return audit.OutcomeGone
	case status == http.StatusBadRequest, status == http.StatusMethodNotAllowed:
		return audit.OutcomeInvalid
	}
	return audit.OutcomeError
}
