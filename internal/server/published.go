package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/storage"
)

// Published is the registry of versions published into modgate;
// *publish.Registry implements it.
type Published interface {
	Get(ctx context.Context, modulePath, version string) (publish.Version, error)
	List(ctx context.Context, modulePath string) ([]publish.Version, error)
	Publish(ctx context.Context, c publish.Checked, zipFile *os.File, publisher string) (publish.Version, publish.Outcome, error)
	Delete(ctx context.Context, modulePath, version, by, reason string) (publish.Version, error)
	Store() storage.Store
}

// maxDeleteBody bounds a DELETE request's JSON body (the reason).
const (
	maxDeleteBody   = 8 << 10
	maxReasonLength = 500
)

// handlePublishAPI serves PUT and DELETE /api/v1/modules/{module}/@v/{version}.
// Order matters: the caller is authenticated (withIdentity) and authorized before
// a byte of the body is read, and the upload is validated completely before
// anything is stored.
func (s *Server) handlePublishAPI(w http.ResponseWriter, r *http.Request) {
	rec := recorderOf(w)
	if rec == nil {
		rec = &recorder{} // direct use without withLogging (never in production)
	}
	var action policy.Action
	switch r.Method {
	case http.MethodPut:
		action = policy.ActionPublish
	case http.MethodDelete:
		action = policy.ActionDelete
	default:
		w.Header().Set("Allow", "PUT, DELETE")
		s.writeError(w, r, derrors.New(derrors.MethodNotAllowed, "method %s not allowed: PUT publishes a version, DELETE deletes one", r.Method))
		return
	}
	rec.endpoint, rec.action = string(action), string(action)
	if s.published == nil {
		s.writeError(w, r, derrors.New(derrors.Unavailable, "publishing is not enabled on this modgate: it needs the database"))
		return
	}
	modPath, version, err := parseAPIPath(r.URL.EscapedPath())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec.module, rec.version = modPath, version
	id := identity.FromContext(r.Context())
	if id == nil || id.Method == identity.MethodAnonymous {
		s.writeError(w, r, derrors.New(derrors.Unauthenticated, "%s requires an authenticated caller", action))
		return
	}
	if !s.isPrivate(modPath) {
		s.writeError(w, r, derrors.New(derrors.PermissionDenied, "%s is not a private module path (private.patterns): only private modules are published to modgate", modPath))
		return
	}
	d, err := s.decide(w, r, s.input(r, action, modPath, version))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !d.Allow {
		s.writeError(w, r, d.Err())
		return
	}
	if action == policy.ActionPublish {
		s.handlePublish(w, r, rec, id, modPath, version)
	} else {
		s.handleDelete(w, r, rec, id, modPath, version)
	}
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request, rec *recorder, id *identity.Identity, modPath, version string) {
	limit := s.cfg.Publish.MaxZipSize
	if limit <= 0 {
		limit = modzip.MaxZipFile
	}
	if r.ContentLength > limit {
		s.writeError(w, r, derrors.New(derrors.TooLarge, "module zip is %d bytes; this modgate accepts at most %d", r.ContentLength, limit))
		return
	}
	store := s.published.Store()
	f, err := os.CreateTemp(store.ScratchDir(), "upload-*")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer os.Remove(f.Name()) // fails harmlessly once the store has renamed it
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), http.MaxBytesReader(w, r.Body, limit))
	rec.uploadBytes, rec.uploadSHA256 = n, hex.EncodeToString(h.Sum(nil))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.writeError(w, r, derrors.New(derrors.TooLarge, "module zip is larger than %d bytes, the most this modgate accepts", limit))
			return
		}
		s.writeError(w, r, derrors.WithCause(derrors.InvalidArgument, err, "upload interrupted after %d bytes", n))
		return
	}
	checked, err := publish.Check(modPath, version, f, n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec.zipHash = checked.ZipHash
	// Detached from the client: once validated, a hang-up must not leave the
	// version half-recorded (the registry's steps are ordered to survive that
	// anyway, but finishing is cheaper than cleaning up).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	v, outcome, err := s.published.Publish(ctx, checked, f, id.Subject)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if outcome == publish.Created {
		status = http.StatusCreated
		rec.outcome = "created"
		if loc, err := protocolPath(modPath, version, ".info"); err == nil {
			w.Header().Set("Location", loc)
		}
	} else {
		rec.outcome = "identical"
	}
	writeJSON(w, status, publish.Result{
		Module: v.Module, Version: v.Version, Hash: v.ZipHash, ModHash: v.ModHash, Size: v.Size,
		Publisher: v.Publisher, PublishedAt: v.PublishedAt.UTC(), Created: outcome == publish.Created,
	})
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, rec *recorder, id *identity.Identity, modPath, version string) {
	var req publish.DeleteRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDeleteBody))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		s.writeError(w, r, derrors.WithCause(derrors.InvalidArgument, err, `delete needs a JSON body {"reason": "..."} of at most %d bytes`, maxDeleteBody))
		return
	}
	reason := strings.Join(strings.Fields(req.Reason), " ")
	if reason == "" || len(reason) > maxReasonLength {
		s.writeError(w, r, derrors.New(derrors.InvalidArgument, "delete needs a reason of 1 to %d characters: it is shown to everyone who asks for the version", maxReasonLength))
		return
	}
	rec.reason = reason
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	v, err := s.published.Delete(ctx, modPath, version, id.Subject, reason)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec.zipHash, rec.outcome = v.ZipHash, "deleted"
	// Whatever another private source (git) may have cached under the protocol
	// keys goes too: the tombstone shadows it, and the bytes should not linger.
	for _, ext := range []string{".info", ".mod", ".zip"} {
		if p, err := protocolPath(modPath, version, ext); err == nil {
			key := "mod" + p
			if err := s.cache.Store().Delete(ctx, key); err != nil {
				s.log.Warn("publish: removing cached object of a deleted version", "key", key, "error", err)
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"module": v.Module, "version": v.Version, "hash": v.ZipHash,
		"deleted_by": v.DeletedBy, "deleted_at": v.DeletedAt.UTC(), "reason": v.DeleteReason,
	})
}

// parseAPIPath extracts the module path and version from
// /api/v1/modules/{escaped module}/@v/{escaped version}.
func parseAPIPath(escaped string) (modPath, version string, err error) {
	rest, ok := strings.CutPrefix(escaped, publish.APIPrefix)
	if !ok || len(rest) > 1024 {
		return "", "", derrors.New(derrors.NotFound, "not a publish API path")
	}
	rest, err = url.PathUnescape(rest)
	if err != nil || strings.ContainsAny(rest, "\x00\\") {
		return "", "", derrors.New(derrors.InvalidArgument, "malformed path")
	}
	escMod, escVer, ok := strings.Cut(rest, "/@v/")
	if !ok || escVer == "" || strings.Contains(escVer, "/") {
		return "", "", derrors.New(derrors.NotFound, "not a publish API path: want /api/v1/modules/{module}/@v/{version}")
	}
	if modPath, err = module.UnescapePath(escMod); err != nil {
		return "", "", derrors.WithCause(derrors.InvalidArgument, err, "invalid module path %q", truncate(escMod))
	}
	if version, err = module.UnescapeVersion(escVer); err != nil {
		return "", "", derrors.WithCause(derrors.InvalidArgument, err, "invalid version %q", truncate(escVer))
	}
	if err := publish.CheckVersion(modPath, version); err != nil {
		return "", "", err
	}
	return modPath, version, nil
}

// protocolPath is the GOPROXY path of modPath@version's object with extension
// ext, with a leading slash.
func protocolPath(modPath, version, ext string) (string, error) {
	escMod, err := module.EscapePath(modPath)
	if err != nil {
		return "", err
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return "", err
	}
	return "/" + escMod + "/@v/" + escVer + ext, nil
}

func truncate(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// servePublished answers a GOPROXY request for a private module from the
// versions published into modgate, and reports whether it did. It does not
// answer (false) when the module has no published version, or the request names
// a version modgate has no record of, so the next private source may.
//
// Precedence: a version published in modgate shadows a git tag of the same
// version (and a deleted one stays 410 Gone whatever git has).
// TODO(lead): when the git source lands, @v/list and @latest should answer the
// union of publishedVersions and the git tags; today they answer the published
// versions alone.
func (s *Server) servePublished(w http.ResponseWriter, r *http.Request, req goproxy.Request) bool {
	if s.published == nil {
		return false
	}
	ctx := r.Context()
	switch req.Kind {
	case goproxy.KindInfo, goproxy.KindMod, goproxy.KindZip:
		if req.IsQuery() {
			return false
		}
		v, err := s.published.Get(ctx, req.Module, req.Version)
		if errors.Is(err, derrors.NotFound) {
			return false
		}
		if rec := recorderOf(w); rec != nil {
			rec.module, rec.version = req.Module, req.Version
		}
		if err != nil {
			s.writeError(w, r, err)
			return true
		}
		in := s.input(r, policy.Action(req.Kind.String()), req.Module, req.Version)
		in.VersionTime = v.PublishedAt.UTC().Format(time.RFC3339)
		d, err := s.decide(w, r, in)
		if err != nil {
			s.writeError(w, r, err)
			return true
		}
		if !d.Allow {
			s.writeError(w, r, d.Err())
			return true
		}
		if v.Deleted() {
			s.writeError(w, r, v.GoneError())
			return true
		}
		s.servePublishedObject(w, r, req, v)
		return true
	case goproxy.KindList, goproxy.KindLatest:
		all, err := s.published.List(ctx, req.Module)
		if err != nil {
			s.writeError(w, r, err)
			return true
		}
		if len(all) == 0 {
			return false
		}
		if rec := recorderOf(w); rec != nil {
			rec.module = req.Module
		}
		in := s.input(r, policy.Action(req.Kind.String()), req.Module, "")
		d, err := s.decide(w, r, in)
		if err != nil {
			s.writeError(w, r, err)
			return true
		}
		if !d.Allow {
			s.writeError(w, r, d.Err())
			return true
		}
		live := make(map[string]publish.Version)
		var versions []string
		for _, v := range all {
			if !v.Deleted() {
				live[v.Version] = v
				versions = append(versions, v.Version)
			}
		}
		allowed, err := s.policy.FilterVersions(ctx, s.input(r, policy.ActionList, req.Module, ""), versions, func(ver string) string {
			return live[ver].PublishedAt.UTC().Format(time.RFC3339)
		})
		if err != nil {
			s.writeError(w, r, err)
			return true
		}
		if req.Kind == goproxy.KindList {
			writeVersionList(w, r, allowed)
			return true
		}
		best := newest(allowed)
		if best == "" {
			s.writeError(w, r, derrors.New(derrors.NotFound, "no published version of %s that you may pull", req.Module))
			return true
		}
		s.writeInfo(w, r, live[best], false)
		return true
	}
	return false
}

func (s *Server) servePublishedObject(w http.ResponseWriter, r *http.Request, req goproxy.Request, v publish.Version) {
	if req.Kind == goproxy.KindInfo {
		s.writeInfo(w, r, v, true)
		return
	}
	key := v.ZipKey
	if req.Kind == goproxy.KindMod {
		key = v.ModKey
	}
	obj, err := s.published.Store().Open(r.Context(), key)
	if err != nil {
		// The row names an object that must exist: it was stored durably before
		// the row committed. Missing means lost storage, not a missing version.
		if errors.Is(err, derrors.NotFound) {
			err = derrors.WithCause(derrors.Unavailable, err, "the stored copy of %s@%s is missing; tell the platform team", v.Module, v.Version)
		}
		s.writeError(w, r, err)
		return
	}
	e := &cache.Entry{Object: obj, Size: obj.Info().Size, ModTime: v.PublishedAt, Result: "hit", Source: "published"}
	defer e.Close()
	s.serveEntry(w, r, e, req.Kind.ContentType(), true)
}

// writeInfo writes the .info document of a published version: its Time is when
// it was published.
func (s *Server) writeInfo(w http.ResponseWriter, r *http.Request, v publish.Version, immutable bool) {
	data, err := json.Marshal(goproxy.Info{Version: v.Version, Time: v.PublishedAt.UTC()})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	data = append(data, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if immutable {
		h.Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "private, max-age=60")
	}
	if rec := recorderOf(w); rec != nil {
		rec.cache, rec.source = "hit", "published"
	}
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}
