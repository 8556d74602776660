package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/identity"
)

// Authenticator establishes an identity from a request's credentials (Bearer or
// Basic); *auth.Authenticator implements it.
type Authenticator interface {
	Authenticate(r *http.Request) (*identity.Identity, error)
}

var anonymous = &identity.Identity{Subject: "anonymous", Method: identity.MethodAnonymous}

// identify establishes who is calling: a verified client certificate first, then
// a token, then (loopback development only) anonymous. A presented but invalid
// credential is always refused, even where anonymous access is allowed: a broken
// certificate or token must be noticed, not silently downgraded.
func (s *Server) identify(r *http.Request) (*identity.Identity, error) {
	if s.tls != nil {
		id, err := s.tls.IdentityFromTLS(r.TLS)
		if err != nil || id != nil {
			return id, err
		}
	}
	hasCreds := r.Header.Get("Authorization") != ""
	if s.authn != nil && (hasCreds || !s.set.Anonymous) {
		return s.authn.Authenticate(r)
	}
	if s.set.Anonymous && !hasCreds {
		return anonymous, nil
	}
	if hasCreds {
		return nil, derrors.New(derrors.Unauthenticated, "%s", auth.ReasonAPITokensDisabled)
	}
	return nil, derrors.New(derrors.Unauthenticated, "%s", auth.ReasonNoCredentials)
}

// withIdentity refuses requests without a verified identity and notes the
// identity in the request's state (the recorder) for policy, logs and audit.
func (s *Server) withIdentity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.identify(r)
		if err != nil {
			s.describeRefused(w, r)
			if s.refuseUnauthenticated(w, r) { // unauthlimit.go
				return
			}
			if errors.Is(err, derrors.Unauthenticated) {
				// RFC 9110 §11.6.1: a 401 carries the schemes the server accepts.
				w.Header().Add("WWW-Authenticate", `Bearer realm="modgate"`)
				w.Header().Add("WWW-Authenticate", `Basic realm="modgate"`)
			}
			s.writeError(w, r, err)
			return
		}
		if rec := recorderOf(w); rec != nil {
			rec.identity = id
		}
		if s.rateLimited(w, r, id) { // ratelimit.go
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleLoginInfo publishes what `modgate login https://proxy` needs to start a
// device flow, so developers pass no IdP flags.
func (s *Server) handleLoginInfo(w http.ResponseWriter, r *http.Request) {
	if s.set.Login == nil {
		s.writeError(w, r, derrors.New(derrors.NotFound, "this modgate has no OIDC login configured"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(s.set.Login)
}

// describeRefused fills in what a request refused before its handler ran was about,
// so the audit trail's unauthenticated rows name the module and version.
func (s *Server) describeRefused(w http.ResponseWriter, r *http.Request) {
	rec := recorderOf(w)
	if rec == nil || rec.endpoint != "other" {
		return
	}
	if req, err := goproxy.ParseRequest(r.URL.EscapedPath()); err == nil {
		rec.endpoint, rec.module = req.Kind.String(), req.Module
		if req.Kind == goproxy.KindInfo || req.Kind == goproxy.KindMod || req.Kind == goproxy.KindZip {
			rec.version = req.Version
		}
	} else {
		rec.endpoint = "module"
	}
}
