package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/policy"
)

// VulnDB is the copy of the Go vulnerability database served at /vulndb/
// (*vulndb.Service implements it).
type VulnDB interface {
	// Open returns the file at name ("index/modules.json.gz", "ID/GO-2024-1234.json").
	Open(name string) ([]byte, time.Time, error)
}

// VulnDBPrefix is where the vulnerability database is served: a developer runs
// `govulncheck -db https://modgate.example/vulndb ./...`. No module path starts
// with "vulndb/": a module path's first element has a dot.
const VulnDBPrefix = "/vulndb/"

// handleVulnDB serves the database in the layout golang.org/x/vuln's client
// reads (https://go.dev/security/vuln/database#api). Every request is decided
// by the policy (action "vulndb") and audited, like the checksum database.
func (s *Server) handleVulnDB(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.writeError(w, r, derrors.New(derrors.MethodNotAllowed, "method %s not allowed", r.Method))
		return
	}
	if _, ok := s.authorize(w, r, s.gateRequest(r, policy.ActionVulnDB, "", "")); !ok {
		return
	}
	if s.vulndb == nil {
		s.writeError(w, r, derrors.New(derrors.NotFound, "no vulnerability database is served here (vulndb.enabled is off)"))
		return
	}
	name := strings.TrimPrefix(r.URL.EscapedPath(), VulnDBPrefix)
	if !validVulnDBName(name) {
		s.writeError(w, r, derrors.New(derrors.NotFound, "no %s in the vulnerability database", printable(name)))
		return
	}
	b, modified, err := s.vulndb.Open(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	if strings.HasSuffix(name, ".gz") {
		// The client unzips the body itself: no Content-Encoding, or a
		// transport would unzip it first.
		h.Set("Content-Type", "application/gzip")
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Cache-Control", "private, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", modified, bytes.NewReader(b))
}

// validVulnDBName accepts the layout's file names only.
func validVulnDBName(name string) bool {
	base := strings.TrimSuffix(name, ".gz")
	switch base {
	case "index/db.json", "index/modules.json", "index/vulns.json":
		return true
	}
	id, ok := strings.CutPrefix(base, "ID/")
	if !ok {
		return false
	}
	id, ok = strings.CutSuffix(id, ".json")
	if !ok || id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// SetVulnDB serves v at /vulndb/. The composition root calls it before serving.
func (s *Server) SetVulnDB(v VulnDB) { s.vulndb = v }

// AuditAffected answers "who pulled the versions advisory id affects".
type AuditAffected func(ctx context.Context, id string) ([]audit.Exposure, error)

// handleAuditAffected serves GET /api/v1/audit/affected?id=GO-2024-1234: one
// row per subject and module that pulled an affected version, those who have
// not pulled a fixed version since first; format=csv for CSV, else JSON. Only
// callers the policy allows audit.read may ask, and the question is audited.
func (s *Server) handleAuditAffected(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		s.writeError(w, r, derrors.New(derrors.MethodNotAllowed, "method %s not allowed", r.Method))
		return
	}
	if _, ok := s.authorize(w, r, s.gateRequest(r, policy.ActionAuditRead, "", "")); !ok {
		return
	}
	if s.affected == nil {
		s.writeError(w, r, derrors.New(derrors.NotFound, "needs the audit trail and vulndb.enabled"))
		return
	}
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" {
		s.writeError(w, r, derrors.New(derrors.InvalidArgument, "name an advisory: ?id=GO-2024-1234"))
		return
	}
	exposures, err := s.affected(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch format := q.Get("format"); format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		audit.WriteExposures(w, audit.FormatCSV, exposures)
	case "", "json":
		w.Header().Set("Content-Type", "application/json")
		if exposures == nil {
			exposures = []audit.Exposure{}
		}
		json.NewEncoder(w).Encode(struct {
			Advisory  string           `json:"advisory"`
			Exposures []audit.Exposure `json:"exposures"`
		}{id, exposures})
	default:
		s.writeError(w, r, derrors.New(derrors.InvalidArgument, "format %q: want json or csv", format))
	}
}
