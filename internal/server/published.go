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

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/route"
	"github.com/modgate/modgate/internal/storage"
)

// Publisher records versions published into modgate; *publish.Registry
// implements it.
type Publisher interface {
	Publish(ctx context.Context, c publish.Checked, zipFile *os.File, publisher string) (publish.Version, publish.Outcome, error)
	Delete(ctx context.Context, modulePath, version, by, reason string) (publish.Version, error)
	// Tombstone deletes a version never published into modgate but served
	// from git.
	Tombstone(ctx context.Context, modulePath, version, modHash, zipHash string, size int64, source, by, reason string) (publish.Version, error)
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
	if s.publisher == nil {
		s.writeError(w, r, derrors.New(derrors.Unavailable, "publishing is not enabled on this modgate: it needs the database"))
		return
	}
	modPath, version, err := parseAPIPath(r.URL.EscapedPath())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec.module, rec.version = modPath, version
	gr := s.gateRequest(r, action, modPath, version)
	rt, ok := s.authorize(w, r, gr)
	if !ok {
		return
	}
	id := callerOf(r)
	if action == policy.ActionPublish {
		s.handlePublish(w, r, rec, id, rt, modPath, version)
	} else {
		s.handleDelete(w, r, rec, id, rt, modPath, version)
	}
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request, rec *recorder, id *identity.Identity, rt route.Route, modPath, version string) {
	limit := s.set.PublishMaxZipSize
	if limit <= 0 {
		limit = modzip.MaxZipFile
	}
	if r.ContentLength > limit {
		s.writeError(w, r, derrors.New(derrors.TooLarge, "module zip is %d bytes; this modgate accepts at most %d", r.ContentLength, limit))
		return
	}
	store := s.publisher.Store()
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
	// A released version never changes: not one git already has as a tag, nor
	// one the ledger recorded with other bytes from another source.
	if err := s.src.Publishable(ctx, rt, modPath, version, checked.ModHash, checked.ZipHash); err != nil {
		database.MarkUnavailable(&err, "cannot publish %s@%s now (nothing was stored)", modPath, version)
		s.writeError(w, r, err)
		return
	}
	v, outcome, err := s.publisher.Publish(ctx, checked, f, id.Subject)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.src.PinPublished(ctx, v.Module, v.Version, v.ModHash, v.ZipHash); err != nil {
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

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, rec *recorder, id *identity.Identity, rt route.Route, modPath, version string) {
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
	v, err := s.publisher.Delete(ctx, modPath, version, id.Subject, reason)
	if errors.Is(err, derrors.NotFound) && rt == route.Git {
		// Not published here, but served from git: the tombstone, with the
		// hashes git serves, makes it gone from every source.
		modHash, zipHash, size, herr := s.src.Hashes(ctx, rt, modPath, version)
		if herr != nil {
			err = herr
		} else {
			v, err = s.publisher.Tombstone(ctx, modPath, version, modHash, zipHash, size, "git", id.Subject, reason)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec.zipHash, rec.outcome = v.ZipHash, "deleted"
	// Gone from every source: whatever git or the registry put in the cache
	// goes too, and the registry's tombstone answers 410 from now on, whatever
	// git still has.
	if err := s.src.Forget(ctx, modPath, version); err != nil {
		s.log.Warn("publish: removing cached objects of a deleted version", "module", modPath, "version", version, "error", err)
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
