package server

import (
	"net"
	"net/http"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/gate"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/route"
)

// Policy decides who may do what; *policy.Engine implements it. The gate
// (internal/gate) is its only caller.
type Policy = gate.Policy

// gateRequest starts the gate's question for a request by r's caller.
func (s *Server) gateRequest(r *http.Request, action policy.Action, modulePath, version string) gate.Request {
	return gate.Request{
		Identity:   callerOf(r),
		ClientAddr: clientIP(r),
		Action:     action,
		Module:     modulePath,
		Version:    version,
	}
}

// authorize asks the gate about req, records its decision for the log and the
// audit row, and on a refusal writes the error and reports false. Every
// handler that touches a source or the database calls it first, exactly once.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, req gate.Request) (route.Route, bool) {
	rt, d, err := s.gate.Authorize(r.Context(), req)
	if rec := recorderOf(w); rec != nil {
		recordDecision(rec, d)
	}
	if err != nil {
		s.writeError(w, r, err)
		return rt, false
	}
	return rt, true
}

// recordDecision notes the decision that determined the answer.
func recordDecision(rec *recorder, d policy.Decision) {
	if d.ID == "" && d.Revision == "" {
		return // no policy was asked (refused by the route, or not decided)
	}
	rec.decisionID, rec.policyRevision, rec.denied = d.ID, d.Revision, !d.Allow
}

func escapeVersion(v string) string {
	esc, err := module.EscapeVersion(v)
	if err != nil {
		return v // canonical versions always escape; ParseRequest rejects anything else
	}
	return esc
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
