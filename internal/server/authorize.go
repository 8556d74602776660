package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
)

// Policy decides who may do what; *policy.Engine implements it.
type Policy interface {
	Decide(ctx context.Context, in policy.Input) (policy.Decision, error)
	FilterVersions(ctx context.Context, in policy.Input, versions []string, timeOf func(string) string) ([]string, error)
	NeedsVersionTime() bool
}

// allowAll stands in when no policy directory is configured: every authenticated
// caller may pull everything.
type allowAll struct{}

func (allowAll) Decide(context.Context, policy.Input) (policy.Decision, error) {
	return policy.Decision{Allow: true, Revision: "none"}, nil
}
func (allowAll) FilterVersions(_ context.Context, _ policy.Input, v []string, _ func(string) string) ([]string, error) {
	return v, nil
}
func (allowAll) NeedsVersionTime() bool { return false }

func (s *Server) route(modulePath string) policy.Route {
	if s.isPrivate(modulePath) {
		return policy.RoutePrivate
	}
	return policy.RoutePublic
}

// input builds the policy question for a protocol request.
func (s *Server) input(r *http.Request, action policy.Action, modulePath, version string) policy.Input {
	in := policy.NewInput(identity.FromContext(r.Context()), action)
	in.Module, in.Version = modulePath, version
	in.Route = s.route(modulePath)
	in.ClientAddr = clientIP(r)
	return in
}

// decide asks the policy and records the decision for the log and audit trail.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, in policy.Input) (policy.Decision, error) {
	d, err := s.policy.Decide(r.Context(), in)
	if err != nil {
		return d, fmt.Errorf("server: policy: %w", err)
	}
	if rec := recorderOf(w); rec != nil {
		rec.decisionID, rec.policyRevision = d.ID, d.Revision
		if !d.Allow {
			rec.denied = true
		}
	}
	return d, nil
}

// authorizeModule decides a list/info/mod/zip/latest request. A denial is 403 —
// the go command stops and prints the reason, where a 404 would make it try the
// next proxy and leak the path — but only for paths that exist: `go get` probes
// @v/list of every prefix of an import path, and a prefix that is not a module
// must still answer 404 or the probe would abort the whole `go get`.
func (s *Server) authorizeModule(w http.ResponseWriter, r *http.Request, req goproxy.Request) error {
	version := ""
	if req.Kind == goproxy.KindInfo || req.Kind == goproxy.KindMod || req.Kind == goproxy.KindZip {
		version = req.Version
	}
	in := s.input(r, policy.Action(req.Kind.String()), req.Module, version)
	if version != "" && !req.IsQuery() && s.policy.NeedsVersionTime() {
		in.VersionTime = s.versionTime(r.Context(), req.EscapedModule, req.EscapedVersion)
	}
	d, err := s.decide(w, r, in)
	if err != nil {
		return err
	}
	if d.Allow {
		return nil
	}
	if err := s.exists(r.Context(), req); err != nil {
		return err
	}
	return d.Err()
}

// exists checks that a denied request names something real, answering with the
// source's not-found error when it does not.
func (s *Server) exists(ctx context.Context, req goproxy.Request) error {
	probe := req
	switch req.Kind {
	case goproxy.KindLatest:
		probe.Kind = goproxy.KindList
	case goproxy.KindMod, goproxy.KindZip:
		probe.Kind = goproxy.KindInfo
	}
	e, err := s.cache.Get(ctx, s.moduleSpec(probe))
	if err != nil {
		if errors.Is(err, derrors.NotFound) || errors.Is(err, derrors.Gone) {
			return err
		}
		return nil // the source is failing: the policy's answer stands
	}
	e.Close()
	return nil
}

// versionTime returns the publication time of a canonical version from its .info,
// or "" when it cannot be had.
func (s *Server) versionTime(ctx context.Context, escMod, escVer string) string {
	req, err := goproxy.ParseRequest("/" + escMod + "/@v/" + escVer + ".info")
	if err != nil {
		return ""
	}
	info, err := s.readInfo(ctx, req)
	if err != nil || info.Time.IsZero() {
		return ""
	}
	return info.Time.UTC().Format("2006-01-02T15:04:05Z07:00")
}

func (s *Server) readInfo(ctx context.Context, req goproxy.Request) (goproxy.Info, error) {
	data, err := s.readSmall(ctx, s.moduleSpec(req))
	if err != nil {
		return goproxy.Info{}, err
	}
	return goproxy.ParseInfo(data)
}

// readSmall reads a whole small object through the cache.
func (s *Server) readSmall(ctx context.Context, spec cache.Spec) ([]byte, error) {
	e, err := s.cache.Get(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	var rd io.Reader = e.Stream
	if e.Object != nil {
		rd = e.Object
	}
	return io.ReadAll(io.LimitReader(rd, spec.MaxSize+1))
}

// serveFilteredList answers @v/list with only the versions the caller may pull,
// so `go get m@latest` picks an allowed version instead of failing on a denied one.
func (s *Server) serveFilteredList(w http.ResponseWriter, r *http.Request, req goproxy.Request) {
	allowed, err := s.allowedVersions(r, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeVersionList(w, r, allowed)
}

// writeVersionList answers @v/list with versions, one per line.
func writeVersionList(w http.ResponseWriter, r *http.Request, versions []string) {
	body := strings.Join(versions, "\n")
	if body != "" {
		body += "\n"
	}
	h := w.Header()
	h.Set("Content-Type", goproxy.KindList.ContentType())
	h.Set("Cache-Control", "private, max-age=60")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

func (s *Server) allowedVersions(r *http.Request, req goproxy.Request) ([]string, error) {
	list := req
	list.Kind = goproxy.KindList
	data, err := s.readSmall(r.Context(), s.moduleSpec(list))
	if err != nil {
		return nil, err
	}
	var versions []string
	for _, line := range strings.Split(string(data), "\n") {
		if v := strings.TrimSpace(line); v != "" && goproxy.IsCanonical(v) {
			versions = append(versions, v)
		}
	}
	var timeOf func(string) string
	if s.policy.NeedsVersionTime() {
		timeOf = func(v string) string {
			return s.versionTime(r.Context(), req.EscapedModule, escapeVersion(v))
		}
	}
	return s.policy.FilterVersions(r.Context(), s.input(r, policy.ActionList, req.Module, ""), versions, timeOf)
}

// serveAllowedLatest answers @latest with the newest version the caller may pull:
// the upstream's latest when allowed, else the highest allowed listed version
// (releases before pre-releases, as the go command prefers them).
func (s *Server) serveAllowedLatest(w http.ResponseWriter, r *http.Request, req goproxy.Request) {
	info, err := s.readInfo(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in := s.input(r, policy.ActionZip, req.Module, info.Version)
	if s.policy.NeedsVersionTime() && !info.Time.IsZero() {
		in.VersionTime = info.Time.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	d, err := s.policy.Decide(r.Context(), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	version := info.Version
	if !d.Allow {
		allowed, err := s.allowedVersions(r, req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		version = newest(allowed)
		if version == "" {
			s.writeError(w, r, d.Err())
			return
		}
	}
	infoReq, err := goproxy.ParseRequest("/" + req.EscapedModule + "/@v/" + escapeVersion(version) + ".info")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.cache.Get(r.Context(), s.moduleSpec(infoReq))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer e.Close()
	s.serveEntry(w, r, e, req.Kind.ContentType(), false)
}

// newest returns the highest release in versions, else the highest pre-release.
func newest(versions []string) string {
	best, bestPre := "", ""
	for _, v := range versions {
		if semver.Prerelease(v) == "" {
			if best == "" || semver.Compare(v, best) > 0 {
				best = v
			}
		} else if bestPre == "" || semver.Compare(v, bestPre) > 0 {
			bestPre = v
		}
	}
	if best != "" {
		return best
	}
	return bestPre
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
