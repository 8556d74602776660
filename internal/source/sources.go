package source

import (
	"context"
	"errors"
	"github.com/modgate/modgate/internal/verify"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/route"
)

// Config tunes how long mutable answers are cached.
type Config struct {
	// ListTTL is how long a public list, @latest or query answer is served
	// without asking the mirrors again.
	ListTTL time.Duration
	// PrivateRefresh is the same for private modules: a pushed tag shows up
	// that soon.
	PrivateRefresh time.Duration
	// SumDBLatestTTL is how long the checksum database's tree head and partial
	// tiles are cached.
	SumDBLatestTTL time.Duration
	// SumDBAnswers, when set, checks the answers of that checksum database
	// before they are cached (sumdbcheck.go).
	SumDBAnswers *verify.Answers
	// OnIntegrityFailure, when set, is called for every private object refused
	// because the ledger recorded other bytes for its version (for metrics).
	OnIntegrityFailure func()
	// Outage, when set, is read while PostgreSQL is unreachable to route and
	// check private versions (outage.go).
	Outage OutageCopy
	// PrefetchZips is how many public zips are fetched at once ahead of their
	// request (prefetch.go); 0 turns prefetching off.
	PrefetchZips int
	// OnPrefetch, when set, is called with each prefetch's result (for metrics).
	OnPrefetch func(result string)
}

// Sources answers GOPROXY requests for every route through the cache: public
// modules from the mirror chain, private ones from the union of git and the
// versions published into modgate.
type Sources struct {
	cache     *cache.Cache
	public    *Public
	git       *Git       // nil: no git route
	published *Published // nil: no database
	ledger    Ledger     // nil: no database
	cfg       Config
	log       *slog.Logger
	prefetch  *prefetcher // nil: off
}

// New returns Sources. git, published and ledger may be nil.
func New(c *cache.Cache, public *Public, git *Git, published *Published, ledger Ledger, cfg Config, log *slog.Logger) *Sources {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sources{cache: c, public: public, git: git, published: published, ledger: ledger, cfg: cfg, log: log}
	if cfg.PrefetchZips > 0 {
		count := cfg.OnPrefetch
		if count == nil {
			count = func(string) {}
		}
		s.prefetch = &prefetcher{cache: c, workers: cfg.PrefetchZips, count: count, log: log}
	}
	return s
}

// Cache returns the object cache.
func (s *Sources) Cache() *cache.Cache { return s.cache }

// Get returns the object req names from rt's sources, through the cache.
// Lists and @latest of private modules are unions (Versions, Latest); Get
// answers them from git alone.
func (s *Sources) Get(ctx context.Context, rt route.Route, req goproxy.Request) (*cache.Entry, error) {
	return s.cache.Get(ctx, s.spec(rt, req))
}

// spec says how the object a request names is fetched, checked and cached.
// Private objects live under their own key prefix, so a path that turns private
// never serves what a public mirror once said about it.
func (s *Sources) spec(rt route.Route, req goproxy.Request) cache.Spec {
	spec := cache.Spec{Key: "mod/" + req.Path(), Immutable: req.Immutable(), TTL: s.cfg.ListTTL}
	switch req.Kind {
	case goproxy.KindList:
		spec.MaxSize = MaxListSize
	case goproxy.KindLatest:
		spec.MaxSize = MaxInfoSize
		spec.Check = checkInfo("")
	case goproxy.KindInfo:
		spec.MaxSize = MaxInfoSize
		if req.IsQuery() {
			spec.Check = checkInfo("")
		} else {
			spec.Check = checkInfo(req.Version)
		}
	case goproxy.KindMod:
		spec.MaxSize = MaxModSize
	case goproxy.KindZip:
		spec.MaxSize = MaxZipSize
		spec.Stream = true
		spec.Check = checkZip
	}
	if !rt.Private() {
		// A public version's .info and .mod are small, asked for on every build
		// and never deleted: kept in memory once served. Private objects are not,
		// as a delete through another replica must reach them.
		spec.Memory = req.Immutable() && (req.Kind == goproxy.KindInfo || req.Kind == goproxy.KindMod)
		spec.Fetch = func(ctx context.Context) (*cache.Fetched, error) { return fetch(ctx, s.public, req) }
		return s.public.verified(req, spec)
	}
	spec.Key = privateKey(req.Path())
	if !spec.Immutable {
		spec.TTL = s.cfg.PrivateRefresh
	}
	return s.privateSpec(rt, req, spec)
}

func privateKey(path string) string { return "private/" + path }

// privateSpec serves a private version from the versions published into
// modgate first (a deleted one stays 410 Gone whatever git has), then from git.
// Every .mod and .zip is pinned in the ledger before it is cached or its last
// byte released, so a moved git tag can never replace bytes once served.
func (s *Sources) privateSpec(rt route.Route, req goproxy.Request, spec cache.Spec) cache.Spec {
	var from string // set by Fetch, read by Check: they run in sequence
	spec.Fetch = func(ctx context.Context) (*cache.Fetched, error) {
		var o *Object
		var err error
		if req.Kind == goproxy.KindList || req.Kind == goproxy.KindLatest || req.IsQuery() {
			o, err = fetch(ctx, s.git, req)
		} else {
			o, err = s.privateVersion(ctx, rt, req)
		}
		if o != nil {
			from = o.Source
		}
		return o, err
	}
	if s.ledger != nil && (req.Kind == goproxy.KindMod || req.Kind == goproxy.KindZip) {
		file := "mod"
		if req.Kind == goproxy.KindZip {
			file = "zip"
			// Held until pinned, so a mismatch is a clean 502, not a broken
			// transfer.
			spec.BufferBelow = verifyBufferBelow
		}
		spec.Check = both(spec.Check, func(f *os.File, size int64) error {
			return s.pin(req.Module, req.Version, file, from, f, size)
		})
	}
	return spec
}

// privateVersion fetches a canonical version's object: published, else git.
func (s *Sources) privateVersion(ctx context.Context, rt route.Route, req goproxy.Request) (*Object, error) {
	if s.published != nil {
		o, err := fetch(ctx, s.published, req)
		if s.dbDown(err) {
			return s.duringOutage(ctx, rt, req, err)
		}
		if err == nil || !errors.Is(err, derrors.NotFound) {
			return o, err // served, gone (deleted), or the database is failing
		}
	}
	return s.fromGit(ctx, rt, req)
}

// fromGit fetches a canonical private version's object from git.
func (s *Sources) fromGit(ctx context.Context, rt route.Route, req goproxy.Request) (*Object, error) {
	if rt != route.Git || s.git == nil {
		return nil, derrors.New(derrors.NotFound, "not found: %s is a private module path and no private source serves it", req.Module)
	}
	return fetch(ctx, s.git, req)
}

// pin records the object's h1: hash in the ledger, or refuses it when
// different bytes were recorded for the version before.
func (s *Sources) pin(mod, version, file, from string, f *os.File, size int64) error {
	var h1 string
	var err error
	if file == "zip" {
		h1, err = HashZip(f, size)
	} else {
		h1, err = HashMod(io.NewSectionReader(f, 0, size))
	}
	if err != nil {
		return derrors.WithCause(derrors.BadUpstream, err, "%s@%s: the %s cannot be hashed", mod, version, file)
	}
	// The cache's fill runs detached from any one client; the ledger is asked
	// once per fill, never on a cache hit.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = s.ledger.Pin(ctx, mod, version, file, h1, from)
	if err != nil && errors.Is(err, derrors.Integrity) {
		s.log.Warn("source: refusing changed bytes of a private version", "module", mod, "version", version, "file", file, "source", from, "error", err)
		if s.cfg.OnIntegrityFailure != nil {
			s.cfg.OnIntegrityFailure()
		}
	}
	return err
}

// Versions returns the module's versions on route rt: for a public module the
// mirror chain's list; for a private one the union of git's tags and the
// versions published into modgate, less the deleted ones.
func (s *Sources) Versions(ctx context.Context, rt route.Route, modulePath, escModule string) ([]string, error) {
	if !rt.Private() {
		return s.readList(ctx, rt, modulePath, escModule)
	}
	var versions []string
	var gitErr error
	if rt == route.Git && s.git != nil {
		versions, gitErr = s.readList(ctx, rt, modulePath, escModule)
	}
	records, err := s.publishedRecords(ctx, modulePath)
	if err != nil {
		return nil, err
	}
	if gitErr != nil && (!errors.Is(gitErr, derrors.NotFound) || len(records) == 0) {
		return nil, gitErr
	}
	if rt == route.Published && len(records) == 0 {
		return nil, derrors.New(derrors.NotFound, "not found: %s is a private module path and no private source serves it", modulePath)
	}
	for _, r := range records {
		if r.Deleted() {
			versions = slices.DeleteFunc(versions, func(v string) bool { return v == r.Version })
		} else if !slices.Contains(versions, r.Version) {
			versions = append(versions, r.Version)
		}
	}
	semver.Sort(versions)
	return versions, nil
}

func (s *Sources) readList(ctx context.Context, rt route.Route, modulePath, escModule string) ([]string, error) {
	req := goproxy.Request{Kind: goproxy.KindList, Module: modulePath, EscapedModule: escModule}
	data, err := s.readSmall(ctx, s.spec(rt, req))
	if err != nil {
		return nil, err
	}
	var versions []string
	for _, line := range strings.Split(string(data), "\n") {
		if v := strings.TrimSpace(line); v != "" && goproxy.IsCanonical(v) {
			versions = append(versions, v)
		}
	}
	return versions, nil
}

// Latest answers @latest on route rt: the mirrors' answer for a public module;
// for a private one git's answer when nothing is published, else the newest of
// the union of versions.
func (s *Sources) Latest(ctx context.Context, rt route.Route, modulePath, escModule string) (goproxy.Info, error) {
	req := goproxy.Request{Kind: goproxy.KindLatest, Module: modulePath, EscapedModule: escModule}
	if rt.Private() {
		records, err := s.publishedRecords(ctx, modulePath)
		if err != nil {
			return goproxy.Info{}, err
		}
		if len(records) > 0 || rt == route.Published {
			versions, err := s.Versions(ctx, rt, modulePath, escModule)
			if err != nil {
				return goproxy.Info{}, err
			}
			best := Newest(versions)
			if best == "" {
				return goproxy.Info{}, derrors.New(derrors.NotFound, "no version of %s is available", modulePath)
			}
			return s.Info(ctx, rt, modulePath, escModule, best)
		}
	}
	data, err := s.readSmall(ctx, s.spec(rt, req))
	if err != nil {
		return goproxy.Info{}, err
	}
	return goproxy.ParseInfo(data)
}

// Info returns the .info of a canonical version.
func (s *Sources) Info(ctx context.Context, rt route.Route, modulePath, escModule, version string) (goproxy.Info, error) {
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return goproxy.Info{}, derrors.WithCause(derrors.InvalidArgument, err, "invalid version %q", version)
	}
	req := goproxy.Request{Kind: goproxy.KindInfo, Module: modulePath, EscapedModule: escModule, Version: version, EscapedVersion: escVer}
	data, err := s.readSmall(ctx, s.spec(rt, req))
	if err != nil {
		return goproxy.Info{}, err
	}
	return goproxy.ParseInfo(data)
}

// Exists reports, with the source's NotFound or Gone error, when no source on rt
// knows the module at all. It says nothing about any one version: the gate asks
// it only to tell a module path from a path that is no module (the go command's
// prefix probing), never to tell an existing version from a missing one. A
// failing source is not a missing module (nil).
func (s *Sources) Exists(ctx context.Context, rt route.Route, modulePath, escModule string) error {
	_, err := s.Versions(ctx, rt, modulePath, escModule)
	if err != nil && (errors.Is(err, derrors.NotFound) || errors.Is(err, derrors.Gone)) {
		return err
	}
	return nil
}

// readSmall reads a whole small object through the cache.
func (s *Sources) readSmall(ctx context.Context, spec cache.Spec) ([]byte, error) {
	e, err := s.cache.Get(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	return io.ReadAll(io.LimitReader(entryReader(e), spec.MaxSize+1))
}

// Forget removes every cached copy of modulePath@version, whichever source it
// came from (published or git, and what a public mirror once said about the
// path), for a deleted version: the registry's tombstone answers 410 from then
// on, and the bytes must not linger.
func (s *Sources) Forget(ctx context.Context, modulePath, version string) error {
	escMod, err := module.EscapePath(modulePath)
	if err != nil {
		return err
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return err
	}
	var errs []error
	for _, ext := range []string{".info", ".mod", ".zip"} {
		path := escMod + "/@v/" + escVer + ext
		for _, key := range []string{privateKey(path), "mod/" + path} {
			if err := s.cache.Store().Delete(ctx, key); err != nil && !errors.Is(err, derrors.NotFound) {
				errs = append(errs, err)
			}
			s.cache.Forget(key)
		}
	}
	return errors.Join(errs...)
}

// Newest returns the highest release in versions, else the highest pre-release.
func Newest(versions []string) string {
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
