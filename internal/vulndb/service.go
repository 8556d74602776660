package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

// Config configures a Service.
type Config struct {
	Source Source
	// Refresh is how long a copy is used before the source is asked again (the
	// TTL); default one hour.
	Refresh time.Duration
	// StaleIfError is how long past its TTL a copy is still served while the
	// source fails; 0 serves it for as long as the source fails.
	StaleIfError time.Duration
	// Dir keeps the last good copy across restarts (snapshot.zip); "" keeps none.
	Dir    string
	Logger *slog.Logger
	Now    func() time.Time
}

// Service keeps a current copy of the database: it loads it from the source,
// refreshes it every Refresh, keeps the last good copy when a refresh fails, and
// serves it over HTTP in the layout govulncheck reads.
type Service struct {
	cfg Config
	log *slog.Logger

	cur     atomic.Pointer[loaded]
	refresh sync.Mutex // one load at a time

	statusMu sync.Mutex
	lastErr  error
	lastErrT time.Time
}

type loaded struct {
	db       *DB
	loadedAt time.Time // when the source last confirmed it
}

// New returns a Service; it holds no copy until Refresh or Run loads one (or a
// snapshot from Dir is found).
func New(cfg Config) *Service {
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, log: cfg.Logger}
	if cfg.Dir != "" {
		if db, at, err := readSnapshot(filepath.Join(cfg.Dir, "snapshot.zip")); err == nil {
			s.cur.Store(&loaded{db: db, loadedAt: at})
			s.log.Info("vulndb: serving the last good copy until the source answers", "origin", db.Origin, "reports", db.Len())
		} else if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("vulndb: ignoring an unreadable snapshot", "err", err)
		}
	}
	return s
}

// DB returns the copy in force, or nil when none was ever loaded.
func (s *Service) DB() *DB {
	if l := s.cur.Load(); l != nil {
		return l.db
	}
	return nil
}

// Affecting returns the advisories affecting module at version in the copy in
// force (none before the first load).
func (s *Service) Affecting(module, version string) []Advisory {
	db := s.DB()
	if db == nil {
		return nil
	}
	return db.Affecting(module, version)
}

// Refresh loads the database from the source now. On failure the copy in force
// stays.
func (s *Service) Refresh(ctx context.Context) error {
	s.refresh.Lock()
	defer s.refresh.Unlock()
	var prev *DB
	if l := s.cur.Load(); l != nil {
		prev = l.db
	}
	db, unchanged, err := s.cfg.Source.Load(ctx, prev)
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if err != nil {
		s.lastErr, s.lastErrT = err, s.cfg.Now()
		return err
	}
	s.lastErr = nil
	s.cur.Store(&loaded{db: db, loadedAt: s.cfg.Now()})
	if unchanged {
		if s.cfg.Dir != "" {
			now := s.cfg.Now()
			_ = os.Chtimes(filepath.Join(s.cfg.Dir, "snapshot.zip"), now, now)
		}
		return nil
	}
	s.log.Info("vulndb: loaded", "origin", db.Origin, "reports", db.Len(), "modified", db.Modified())
	if s.cfg.Dir != "" {
		if err := writeSnapshot(s.cfg.Dir, db); err != nil {
			s.log.Warn("vulndb: could not keep a snapshot", "err", err)
		}
	}
	return nil
}

// Run refreshes until ctx ends: now, then every Refresh; after a failure it
// tries again sooner (a tenth of Refresh, at least ten seconds).
func (s *Service) Run(ctx context.Context) {
	for {
		wait := s.cfg.Refresh
		if l := s.cur.Load(); l == nil || s.cfg.Now().Sub(l.loadedAt) >= s.cfg.Refresh {
			if err := s.Refresh(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("vulndb: refresh failed; serving the last good copy", "err", err)
				wait = max(s.cfg.Refresh/10, 10*time.Second)
			}
		} else {
			wait = s.cfg.Refresh - s.cfg.Now().Sub(l.loadedAt)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Status describes the copy in force for /readyz and the console.
func (s *Service) Status() (detail string, err error) {
	l := s.cur.Load()
	s.statusMu.Lock()
	lastErr := s.lastErr
	s.statusMu.Unlock()
	if l == nil {
		if lastErr != nil {
			return "", fmt.Errorf("vulndb: not loaded: %w", lastErr)
		}
		return "not loaded yet", nil
	}
	detail = fmt.Sprintf("%s, %d reports, checked %s", l.db.Origin, l.db.Len(), l.loadedAt.UTC().Format(time.RFC3339))
	if lastErr != nil {
		detail += "; last refresh failed: " + lastErr.Error()
	}
	return detail, nil
}

// usable returns the copy to serve, or an error when there is none or it is
// stale beyond StaleIfError.
func (s *Service) usable() (*DB, error) {
	l := s.cur.Load()
	if l == nil {
		return nil, derrors.New(derrors.Unavailable, "the vulnerability database is not loaded yet")
	}
	if s.cfg.StaleIfError > 0 && s.cfg.Now().Sub(l.loadedAt) > s.cfg.Refresh+s.cfg.StaleIfError {
		return nil, derrors.New(derrors.Unavailable, "the vulnerability database copy is stale (last refreshed %s) and its source is failing", l.loadedAt.UTC().Format(time.RFC3339))
	}
	return l.db, nil
}

// Open returns the file at name in the copy in force: derrors.NotFound when
// there is no such file, derrors.Unavailable when no usable copy exists.
func (s *Service) Open(name string) ([]byte, time.Time, error) {
	db, err := s.usable()
	if err != nil {
		return nil, time.Time{}, err
	}
	b, ok := db.File(name)
	if !ok {
		return nil, time.Time{}, derrors.New(derrors.NotFound, "no %s in the vulnerability database", name)
	}
	return b, db.Modified(), nil
}

// ServeFile writes the file at name (relative to the database root) as the
// layout's HTTP API does: .json.gz as application/gzip without
// Content-Encoding, because the client unzips the body itself and a transport
// that saw Content-Encoding would unzip it first.
func ServeFile(w http.ResponseWriter, r *http.Request, b []byte, modified time.Time, name string) {
	h := w.Header()
	switch {
	case strings.HasSuffix(name, ".json.gz"):
		h.Set("Content-Type", "application/gzip")
	default:
		h.Set("Content-Type", "application/json")
	}
	h.Set("Cache-Control", "private, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", modified, bytes.NewReader(b))
}

// snapshot files: the reports as a zip whose comment is the origin.
func writeSnapshot(dir string, db *DB) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "snapshot-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	zw := zip.NewWriter(f)
	if err := zw.SetComment(db.Origin); err != nil {
		f.Close()
		return err
	}
	for id := range db.entries {
		w, err := zw.Create(id + ".json")
		if err != nil {
			f.Close()
			return err
		}
		if _, err := w.Write(db.files["ID/"+id+".json"]); err != nil {
			f.Close()
			return err
		}
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, "snapshot.zip"))
}

func readSnapshot(path string) (*DB, time.Time, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer zr.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	reports := make([][]byte, 0, len(zr.File))
	for _, zf := range zr.File {
		b, err := readZipFile(zf, 4<<20)
		if err != nil {
			return nil, time.Time{}, err
		}
		reports = append(reports, b)
	}
	db, err := Build(reports, zr.Comment)
	if err != nil {
		return nil, time.Time{}, err
	}
	// The snapshot's time is when the source last confirmed it (Refresh touches it).
	return db, fi.ModTime(), nil
}
