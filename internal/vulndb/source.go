package vulndb

import (
	"archive/zip"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/sync/errgroup"

	"github.com/modgate/modgate/internal/derrors"
)

// Getter reads the object at a path relative to a base URL; a missing object is
// a derrors.NotFound error. The composition root provides it over modgate's own
// module route (for the vulndb module) or over an upstream mirror's connection
// settings (for an upstream database).
type Getter func(ctx context.Context, path string) (io.ReadCloser, error)

// HTTPGetter gets paths below base with client.
func HTTPGetter(client *http.Client, base string) Getter {
	base = strings.TrimRight(base, "/")
	return func(ctx context.Context, p string) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+p, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, derrors.WithCause(derrors.BadUpstream, err, "vulndb: fetching %s", p)
		}
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			kind := derrors.BadUpstream
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
				kind = derrors.NotFound
			}
			return nil, derrors.New(kind, "vulndb: fetching %s: %s: %s", p, resp.Status, strings.TrimSpace(string(msg)))
		}
		return resp.Body, nil
	}
}

// A Source loads the reports of the database. prev is the copy in force (nil
// at first); a source that can tell nothing changed returns unchanged=true.
type Source interface {
	Load(ctx context.Context, prev *DB) (db *DB, unchanged bool, err error)
}

// ModuleSource reads the reports from the golang.org/x/vulndb module, whose
// zip carries every report as data/osv/<id>.json. Get speaks the GOPROXY
// protocol, so the zip is fetched, verified against the checksum database,
// cached and audited like any module a developer pulls.
type ModuleSource struct {
	Get Getter
	// Module is the module path; default golang.org/x/vulndb.
	Module string
	// Version is the version to read, or "latest" (default) for @latest at each
	// refresh.
	Version string
	// ScratchDir holds the zip while it is read; default os.TempDir().
	ScratchDir string
}

// DefaultModule is the module the Go team publishes the database in.
const DefaultModule = "golang.org/x/vulndb"

// maxModuleZip bounds the vulndb zip (the module proxy's own limit).
const maxModuleZip = 500 << 20

func (s *ModuleSource) Load(ctx context.Context, prev *DB) (_ *DB, _ bool, err error) {
	mod := s.Module
	if mod == "" {
		mod = DefaultModule
	}
	defer derrors.Wrap(&err, "vulndb: loading %s", mod)
	esc, err := module.EscapePath(mod)
	if err != nil {
		return nil, false, err
	}
	version := s.Version
	if version == "" || version == "latest" {
		rc, err := s.Get(ctx, esc+"/@latest")
		if err != nil {
			return nil, false, err
		}
		var info struct{ Version string }
		err = json.NewDecoder(io.LimitReader(rc, 1<<16)).Decode(&info)
		rc.Close()
		if err != nil {
			return nil, false, fmt.Errorf("decoding @latest: %w", err)
		}
		version = info.Version
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return nil, false, err
	}
	origin := mod + "@" + version
	if prev != nil && prev.Origin == origin {
		return prev, true, nil
	}
	rc, err := s.Get(ctx, esc+"/@v/"+escVer+".zip")
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.ScratchDir, "vulndb-*.zip")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(rc, maxModuleZip+1))
	if err != nil {
		return nil, false, err
	}
	if n > maxModuleZip {
		return nil, false, fmt.Errorf("zip is larger than %d bytes", maxModuleZip)
	}
	zr, err := zip.NewReader(f, n)
	if err != nil {
		return nil, false, err
	}
	prefix := origin + "/data/osv/"
	var reports [][]byte
	for _, zf := range zr.File {
		if !strings.HasPrefix(zf.Name, prefix) || path.Ext(zf.Name) != ".json" || strings.Contains(zf.Name[len(prefix):], "/") {
			continue
		}
		b, err := readZipFile(zf, 4<<20)
		if err != nil {
			return nil, false, err
		}
		reports = append(reports, b)
	}
	if len(reports) == 0 {
		return nil, false, fmt.Errorf("%s carries no data/osv/*.json", origin)
	}
	db, err := Build(reports, origin)
	return db, false, err
}

func readZipFile(zf *zip.File, limit int64) ([]byte, error) {
	r, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", zf.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", zf.Name, limit)
	}
	return b, nil
}

// URLSource copies an upstream database that serves the standard layout
// (https://vuln.go.dev or a company mirror of it). A refresh reads
// index/db.json; when it changed, index/vulns.json tells which reports changed,
// and only those are fetched again.
type URLSource struct {
	Get Getter
	// Origin names the upstream in logs and status (its URL, without credentials).
	Origin string
	// Concurrency bounds report fetches in flight; default 8.
	Concurrency int
}

func (s *URLSource) Load(ctx context.Context, prev *DB) (_ *DB, _ bool, err error) {
	defer derrors.Wrap(&err, "vulndb: loading %s", s.Origin)
	var meta struct {
		Modified time.Time `json:"modified"`
	}
	if err := s.getJSON(ctx, "index/db.json.gz", &meta); err != nil {
		return nil, false, err
	}
	if prev != nil && prev.Origin == s.Origin && prev.modified.Equal(meta.Modified) {
		return prev, true, nil
	}
	var vulns []vulnMeta
	if err := s.getJSON(ctx, "index/vulns.json.gz", &vulns); err != nil {
		return nil, false, err
	}
	reports := make([][]byte, len(vulns))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(s.Concurrency, 8))
	var mu sync.Mutex
	for i, v := range vulns {
		if !validID(v.ID) {
			return nil, false, fmt.Errorf("index/vulns.json lists an invalid id %q", v.ID)
		}
		if prev != nil && prev.Origin == s.Origin {
			if e := prev.entries[v.ID]; e != nil && e.Modified.Equal(v.Modified) {
				reports[i] = prev.files["ID/"+v.ID+".json"]
				continue
			}
		}
		g.Go(func() error {
			b, err := s.get(gctx, "ID/"+v.ID+".json.gz")
			if err != nil {
				return err
			}
			mu.Lock()
			reports[i] = b
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, err
	}
	db, err := Build(reports, s.Origin)
	return db, false, err
}

// get reads a gzipped file and returns it unzipped.
func (s *URLSource) get(ctx context.Context, p string) ([]byte, error) {
	rc, err := s.Get(ctx, p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	zr, err := gzip.NewReader(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

func (s *URLSource) getJSON(ctx context.Context, p string, v any) error {
	b, err := s.get(ctx, p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
