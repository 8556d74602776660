package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/license"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/upstream"
	"github.com/modgate/modgate/internal/version"
	"github.com/modgate/modgate/internal/vulndb"
)

// vulnDBIdentity is who fetches the golang.org/x/vulndb module through modgate's
// own module route: policy decides it and the audit trail records it like any
// pull.
var vulnDBIdentity = &identity.Identity{Subject: "modgate-vulndb", Method: identity.MethodInternal}

// newVulnDB builds the vulnerability database service from vulndb.*; nil when
// it is off. The module source reads through a.server, which exists by the time
// Run first refreshes.
func (a *App) newVulnDB(reg prometheus.Registerer) (*vulndb.Service, error) {
	vc := a.cfg.VulnDB
	if !vc.Enabled {
		return nil, nil
	}
	var src vulndb.Source
	switch vc.Source {
	case "url":
		ucfg := upstream.Config{
			ConnectTimeout:  a.cfg.Upstream.ConnectTimeout.D(),
			HeaderTimeout:   a.cfg.Upstream.HeaderTimeout.D(),
			BodyIdleTimeout: a.cfg.Upstream.BodyIdleTimeout.D(),
			Retries:         a.cfg.Upstream.Retries,
			RetryBackoff:    a.cfg.Upstream.RetryBackoff.D(),
			UserAgent:       "modgate/" + version.Version,
		}
		e, err := upstream.NewMirror(mirrorConfig(vc.Upstream), ucfg)
		if err != nil {
			return nil, fmt.Errorf("app: vulndb.upstream: %w", err)
		}
		// Its own metrics registry: the module chain's upstream metrics are
		// about modules, and this one is not a module mirror.
		chain := upstream.NewChain([]upstream.Entry{e}, ucfg, nil, a.log, metrics.New(prometheus.NewRegistry()))
		src = &vulndb.URLSource{Origin: e.Name(), Get: func(ctx context.Context, p string) (io.ReadCloser, error) {
			resp, err := chain.Fetch(ctx, p, 64<<20)
			if err != nil {
				return nil, err
			}
			return resp.Body, nil
		}}
	default:
		client := &http.Client{Transport: inProcess(func() http.RoundTripper { return a.server.InProcessTransport(vulnDBIdentity) })}
		src = &vulndb.ModuleSource{
			Get:        vulndb.HTTPGetter(client, "http://modgate.in-process"),
			Module:     vc.Module,
			Version:    vc.Version,
			ScratchDir: filepath.Join(a.cfg.Cache.Dir),
		}
	}
	return vulndb.New(vulndb.Config{
		Source:       src,
		Refresh:      vc.Refresh.D(),
		StaleIfError: vc.StaleIfError.D(),
		Dir:          filepath.Join(a.cfg.Cache.Dir, "vulndb"),
		Logger:       a.log,
		Registerer:   reg,
	}), nil
}

// inProcess defers building the in-process transport until the first request:
// the server does not exist yet when the source is built.
type inProcess func() http.RoundTripper

func (f inProcess) RoundTrip(r *http.Request) (*http.Response, error) { return f().RoundTrip(r) }

// policyFacts gives the policy engine the advisories and licenses of a version.
func (a *App) policyFacts(opts *policy.Options, vdb *vulndb.Service) {
	if vdb != nil {
		opts.Advisories = func(_ context.Context, mod, ver string) ([]policy.Advisory, error) {
			advs := vdb.Affecting(mod, ver)
			out := make([]policy.Advisory, len(advs))
			for i, adv := range advs {
				out[i] = policy.Advisory{ID: adv.ID, Aliases: adv.Aliases, Summary: adv.Summary, Fixed: adv.Fixed}
			}
			return out, nil
		}
	}
	det := license.NewDetector(func(ctx context.Context, mod, ver string) (io.ReaderAt, int64, func(), error) {
		return a.moduleZip(ctx, mod, ver)
	}, 0)
	opts.Licenses = det.Licenses
}

// affected answers "who pulled the versions advisory id affects" from the
// audit trail and the vulnerability database in force.
func (a *App) affected(vdb *vulndb.Service) func(ctx context.Context, id string) ([]audit.Exposure, error) {
	if vdb == nil || a.pool == nil {
		return nil
	}
	return func(ctx context.Context, id string) ([]audit.Exposure, error) {
		db := vdb.DB()
		if db == nil {
			return nil, derrors.New(derrors.Unavailable, "the vulnerability database is not loaded yet")
		}
		id = strings.TrimSpace(id)
		mods, ok := db.Modules(id)
		if !ok {
			return nil, derrors.New(derrors.NotFound, "no advisory %s in the vulnerability database (%s)", id, db.Origin)
		}
		return audit.Affected(ctx, a.pool, AffectedModules(mods))
	}
}

// AffectedModules converts the modules of an advisory for the audit query.
func AffectedModules(mods []vulndb.AffectedModule) []audit.AffectedModule {
	out := make([]audit.AffectedModule, len(mods))
	for i, m := range mods {
		out[i] = audit.AffectedModule{Path: m.Path, Affects: m.Affects}
	}
	return out
}

// moduleZip reads the zip of a module version through the sources and their
// cache (fetching and verifying it if it is not there yet) into a temporary
// file, for license detection. It bypasses the gate: it serves no caller, and
// the caller's own request is being decided when it runs.
func (a *App) moduleZip(ctx context.Context, modPath, version string) (io.ReaderAt, int64, func(), error) {
	if a.core == nil {
		return nil, 0, nil, derrors.New(derrors.Unavailable, "app: the request path is not built yet")
	}
	escMod, err := module.EscapePath(modPath)
	if err != nil {
		return nil, 0, nil, derrors.WithCause(derrors.InvalidArgument, err, "invalid module path")
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return nil, 0, nil, derrors.WithCause(derrors.InvalidArgument, err, "invalid version")
	}
	req, err := goproxy.ParseRequest("/" + escMod + "/@v/" + escVer + ".zip")
	if err != nil {
		return nil, 0, nil, err
	}
	e, err := a.core.Sources.Get(ctx, a.core.Gate.Route(modPath), req)
	if err != nil {
		return nil, 0, nil, err
	}
	defer e.Close()
	var rd io.Reader = e.Stream
	if e.Object != nil {
		rd = e.Object
	}
	f, err := os.CreateTemp(a.core.Sources.Cache().Store().ScratchDir(), "license-*.zip")
	if err != nil {
		return nil, 0, nil, err
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	n, err := io.Copy(f, rd)
	if err != nil {
		cleanup()
		return nil, 0, nil, err
	}
	return f, n, cleanup, nil
}
