package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/gitsource"
	"github.com/modgate/modgate/internal/goproxy"
)

// newGitSource builds the private git source from private.routes; nil when no
// route is configured.
func newGitSource(cfg config.Config, s *Server) (*gitsource.Source, error) {
	if len(cfg.Private.Routes) == 0 {
		return nil, nil
	}
	dir := cfg.Private.MirrorDir
	if dir == "" {
		dir = filepath.Join(cfg.Cache.Dir, ".git-mirrors")
	}
	var routes []gitsource.Route
	for _, r := range cfg.Private.Routes {
		password, err := r.Credentials.Password()
		if err != nil {
			return nil, err
		}
		routes = append(routes, gitsource.Route{
			Pattern:   r.Pattern,
			Repo:      r.Repo,
			RootDepth: r.RootDepth,
			Auth: gitsource.Auth{
				Username:       r.Credentials.Username,
				Password:       password,
				SSHKeyFile:     r.Credentials.SSHKeyFile,
				KnownHostsFile: r.Credentials.KnownHostsFile,
			},
		})
	}
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modgate_git_fetches_total",
		Help: "git fetches of private repositories, by result (ok, not_found, rejected_or_unreachable, timeout).",
	}, []string{"result"})
	fetchSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "modgate_git_fetch_seconds",
		Help:    "Duration of git fetches of private repositories.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
	})
	s.reg.MustRegister(fetches, fetchSeconds)
	return gitsource.New(gitsource.Options{
		Dir:     dir,
		Refresh: cfg.Private.Refresh.D(),
		Timeout: cfg.Private.GitTimeout.D(),
		Routes:  routes,
		Logger:  s.log,
		OnFetch: func(elapsed time.Duration, err error) {
			fetchSeconds.Observe(elapsed.Seconds())
			fetches.WithLabelValues(fetchResult(err)).Inc()
		},
	})
}

func fetchResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, derrors.NotFound):
		return "not_found"
	case errors.Is(err, derrors.UpstreamTimeout):
		return "timeout"
	}
	return "rejected_or_unreachable"
}

// GitSource returns the private git source, nil when no route is configured.
func (s *Server) GitSource() *gitsource.Source { return s.git }

// isPrivate reports whether a module path matches private.patterns or a route.
func (s *Server) isPrivate(modulePath string) bool {
	return s.privatePatterns != "" && module.MatchPrefixPatterns(s.privatePatterns, modulePath)
}

// servesPrivate reports whether a private route serves modulePath.
func (s *Server) servesPrivate(modulePath string) bool {
	return s.git != nil && s.git.Serves(modulePath)
}

// privateSpec turns spec, built for the public chain, into one served from git.
// Private objects live under their own key prefix, so a path that turns private
// never serves what a public mirror once said about it. Lists, @latest and
// queries are cached for private.refresh only: a pushed tag shows up that soon.
func (s *Server) privateSpec(req goproxy.Request, spec cache.Spec) cache.Spec {
	spec.Key = "private/" + req.Path()
	if !spec.Immutable {
		spec.TTL = s.cfg.Private.Refresh.D()
	}
	spec.Fetch = func(ctx context.Context) (*cache.Fetched, error) {
		if !s.servesPrivate(req.Module) {
			return nil, derrors.New(derrors.NotFound, "not found: %s is a private module path and no private source serves it", req.Module)
		}
		mod, err := s.git.Module(req.Module)
		if err != nil {
			return nil, err
		}
		switch req.Kind {
		case goproxy.KindList:
			versions, err := mod.Versions(ctx)
			if err != nil {
				return nil, err
			}
			var b strings.Builder
			for _, v := range versions {
				b.WriteString(v + "\n")
			}
			return fetched(b.String()), nil
		case goproxy.KindLatest:
			return infoFetched(mod.Latest(ctx))
		case goproxy.KindInfo:
			return infoFetched(mod.Stat(ctx, req.Version))
		case goproxy.KindMod:
			data, err := mod.GoMod(ctx, req.Version)
			if err != nil {
				return nil, err
			}
			return fetched(string(data)), nil
		case goproxy.KindZip:
			// Zip first checks the version (findDir, pseudo-version rules), then
			// streams; errors before the first byte surface as errors here.
			pr, pw := io.Pipe()
			started := make(chan error, 1)
			go func() {
				w := &firstWrite{w: pw, started: started}
				err := mod.Zip(ctx, w, req.Version)
				if !w.wrote {
					started <- err
				}
				pw.CloseWithError(err)
			}()
			if err := <-started; err != nil {
				return nil, err
			}
			return &cache.Fetched{Body: pr, Size: -1, Source: "git"}, nil
		}
		return nil, fmt.Errorf("server: private source: unexpected request kind %v", req.Kind)
	}
	return spec
}

// firstWrite reports on started when the first byte is written.
type firstWrite struct {
	w       io.Writer
	started chan<- error
	wrote   bool
}

func (f *firstWrite) Write(p []byte) (int, error) {
	if !f.wrote {
		f.wrote = true
		f.started <- nil
	}
	return f.w.Write(p)
}

func fetched(body string) *cache.Fetched {
	return &cache.Fetched{Body: io.NopCloser(strings.NewReader(body)), Size: int64(len(body)), Source: "git"}
}

func infoFetched(info *gitsource.Info, err error) (*cache.Fetched, error) {
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(goproxy.Info{Version: info.Version, Time: info.Time})
	if err != nil {
		return nil, err
	}
	return &cache.Fetched{Body: io.NopCloser(bytes.NewReader(data)), Size: int64(len(data)), Source: "git"}, nil
}
