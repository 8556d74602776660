// Package verify checks module objects fetched from upstream mirrors against a Go
// checksum database (https://go.dev/design/25530-sumdb) before modgate caches or
// serves them, so a compromised or corrupting mirror cannot plant bytes in the
// cache that every developer then downloads.
//
// It is a golang.org/x/mod/sumdb client whose remote reads go through modgate's own
// upstream chain (the checksum database is usually reachable only through a
// mirror) and whose verified tree head is persisted, so a database that forks its
// log, or a mirror that serves a forged one, is detected across restarts.
package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/internal/derrors"
)

// DefaultKey is the verifier key of sum.golang.org, the go command's default GOSUMDB.
const DefaultKey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"

// Remote reads path ("/lookup/M@V", "/tile/...", "/latest") from the checksum
// database. A missing object is an error satisfying errors.Is(err, fs.ErrNotExist)
// or errors.Is(err, derrors.NotFound).
type Remote func(ctx context.Context, path string) ([]byte, error)

// State persists the newest verified signed tree head of each database. It is
// what makes a rolled-back or forked log detectable after a restart: every later
// tree must extend the one recorded here.
type State interface {
	// ReadLatest returns the stored note for the database, or nil if none.
	ReadLatest(ctx context.Context, name string) ([]byte, error)
	// WriteLatest replaces old with new only if the stored note is still old,
	// returning ErrConflict otherwise.
	WriteLatest(ctx context.Context, name string, old, new []byte) error
}

// ErrConflict is returned by State.WriteLatest when the stored note changed.
var ErrConflict = errors.New("verify: tree head changed concurrently")

// Config configures a Verifier.
type Config struct {
	// Key is the database's verifier key, "<name>+<hash>+<key>".
	Key    string
	Remote Remote
	State  State
	Logger *slog.Logger
	// OnSecurityError is called when the database misbehaves (an inconsistent or
	// forked log); every lookup fails until it is fixed.
	OnSecurityError func(msg string)
	// Timeout bounds one remote read; default 30s.
	Timeout time.Duration
}

// Verifier is safe for concurrent use.
type Verifier struct {
	cfg  Config
	name string

	mu     sync.Mutex
	client *sumdb.Client
}

// New returns a Verifier for the database cfg.Key names.
func New(cfg Config) (*Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(cfg.Key))
	if err != nil {
		return nil, fmt.Errorf("verify: checksum database key: %w", err)
	}
	if cfg.Remote == nil || cfg.State == nil {
		return nil, errors.New("verify: Remote and State are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Verifier{cfg: cfg, name: v.Name()}, nil
}

// Name returns the checksum database's name (e.g. sum.golang.org).
func (v *Verifier) Name() string { return v.name }

// Error is an integrity failure: the upstream's bytes are not the ones the
// checksum database vouches for. It unwraps to a derrors.BadUpstream error whose
// public message names both hashes.
type Error struct {
	Module, Version string
	Got, Want       string // h1: hashes (empty when the database misbehaved); Want lists every hash the database holds
	// Corrupt: the upstream's zip could not be hashed (its files are damaged).
	Corrupt bool
	err     error
}

// IsBadBytes reports whether err says the upstream's bytes themselves are wrong
// (a hash mismatch or a damaged zip), as opposed to the database misbehaving.
func IsBadBytes(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Got != "" || e.Corrupt)
}

func (e *Error) Error() string { return e.err.Error() }
func (e *Error) Unwrap() error { return e.err }

// evidence is what golang.org/x/mod/sumdb and tlog report, as untyped errors, when
// data does not hash to a signed tree: proof that the database (or a mirror in
// front of it) serves a log other than the one it signed.
var evidence = []string{"downloaded inconsistent tile", "invalid transparency proof", "cannot authenticate record data", "cannot validate record"}

func misbehaving(err error) bool {
	if errors.Is(err, sumdb.ErrSecurity) {
		return true
	}
	msg := err.Error()
	for _, e := range evidence {
		if strings.Contains(msg, e) {
			return true
		}
	}
	return false
}

// IsIntegrityFailure reports whether err is (or wraps) an integrity failure: a
// hash mismatch, a damaged zip, or a misbehaving checksum database.
func IsIntegrityFailure(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// CheckZip verifies the module zip in file against the database record of mod.
func (v *Verifier) CheckZip(mod module.Version, file string) error {
	h, err := dirhash.HashZip(file, dirhash.Hash1)
	if err != nil {
		// Files that do not decompress or fail their CRC: altered bytes, whose
		// hash cannot even be computed.
		v.cfg.Logger.Error("integrity failure: upstream module zip is damaged", "module", mod.Path, "version", mod.Version, "err", err)
		return &Error{Module: mod.Path, Version: mod.Version, Corrupt: true,
			err: derrors.WithCause(derrors.BadUpstream, err, "upstream sent a corrupt module zip for %s@%s (its files do not decompress intact)", mod.Path, mod.Version)}
	}
	return v.check(mod.Path, mod.Version, mod.Version, h)
}

// CheckMod verifies a go.mod file's bytes against the database's /go.mod record.
func (v *Verifier) CheckMod(mod module.Version, data []byte) error {
	h, err := GoModHash(data)
	if err != nil {
		return err
	}
	return v.check(mod.Path, mod.Version, mod.Version+"/go.mod", h)
}

// GoModHash is the go.sum hash of a go.mod file: dirhash.Hash1 over one file
// named "go.mod".
func GoModHash(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

func (v *Verifier) check(path, version, lookupVers, got string) error {
	lines, err := v.lookup(path, lookupVers)
	if err != nil {
		if misbehaving(err) {
			v.cfg.Logger.Error("integrity failure: checksum database log is inconsistent with the verified tree head",
				"module", path, "version", lookupVers, "sumdb", v.name, "err", err)
			return &Error{Module: path, Version: lookupVers, err: derrors.WithCause(derrors.BadUpstream, err,
				"cannot verify %s@%s: checksum database %s is misbehaving (its log is inconsistent with the tree it signed before); refusing to serve", path, version, v.name)}
		}
		if strings.Contains(err.Error(), noRecord) {
			return derrors.WithCause(derrors.BadUpstream, err, "cannot verify %s@%s: checksum database %s has no record of it", path, version, v.name)
		}
		return derrors.WithCause(derrors.BadUpstream, err, "cannot verify %s@%s: checksum database %s unavailable", path, version, v.name)
	}
	prefix := path + " " + lookupVers + " "
	var want []string
	for _, l := range lines {
		if h, ok := strings.CutPrefix(l, prefix); ok {
			if h == got {
				return nil
			}
			want = append(want, h)
		}
	}
	if len(want) == 0 {
		return derrors.New(derrors.BadUpstream, "cannot verify %s@%s: checksum database %s returned no hash for it", path, version, v.name)
	}
	e := &Error{Module: path, Version: lookupVers, Got: got, Want: strings.Join(want, ", ")}
	e.err = derrors.New(derrors.BadUpstream, "checksum mismatch for %s@%s: upstream served %s, checksum database says %s", path, lookupVers, got, e.Want)
	v.cfg.Logger.Error("integrity failure: upstream object does not match the checksum database",
		"module", path, "version", lookupVers, "upstream_hash", got, "sumdb_hash", e.Want, "sumdb", v.name)
	return e
}

// Prefetch starts the database lookup of mod in the background, so that it runs
// while the caller fetches the object itself: the check that follows finds the
// answer in the client's memory (concurrent lookups of one record share one
// request) instead of adding the database's round trips after the transfer. A
// failed prefetch costs nothing but the attempt; the check asks again. wait
// returns once the lookup has ended, so that the caller's work can end only
// after the lookup it started (whose answers are being stored).
func (v *Verifier) Prefetch(mod module.Version) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.lookup(mod.Path, mod.Version)
	}()
	return func() { <-done }
}

// lookup asks the client, replacing it after an initialisation failure (a
// transient remote or storage error would otherwise stick for the process's life).
func (v *Verifier) lookup(path, vers string) ([]string, error) {
	v.mu.Lock()
	c := v.client
	if c == nil {
		c = sumdb.NewClient(ops{v})
		v.client = c
	}
	v.mu.Unlock()
	lines, err := c.Lookup(path, vers)
	// sumdb.Client remembers the result of every lookup, errors included, for its
	// whole life: a lookup that failed once because a mirror was down or served a
	// bad answer would fail for ever after the mirror is repaired. So a client that
	// failed for any reason other than the database's own misbehaviour (which must
	// keep failing) is replaced, as is one whose initialisation failed.
	if err != nil && (!misbehaving(err) || strings.Contains(err.Error(), "initializing sumdb.Client")) {
		v.mu.Lock()
		if v.client == c {
			v.client = nil
		}
		v.mu.Unlock()
	}
	return lines, err
}

// ops implements sumdb.ClientOps, keeping those methods off Verifier's API.
type ops struct{ v *Verifier }

func (o ops) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), o.v.cfg.Timeout)
}

func (o ops) ReadRemote(path string) ([]byte, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	data, err := o.v.cfg.Remote(ctx, path)
	if err != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, derrors.NotFound)) {
		// The sumdb client formats errors with %v, losing the chain; the marker
		// text survives it.
		return nil, fmt.Errorf("%s: %s", noRecord, err)
	}
	return data, err
}

// noRecord marks a remote read that found nothing.
const noRecord = "verify: no such record"

func (o ops) ReadConfig(file string) ([]byte, error) {
	if file == "key" {
		return []byte(o.v.cfg.Key), nil
	}
	name, ok := strings.CutSuffix(file, "/latest")
	if !ok || name != o.v.name {
		return nil, fmt.Errorf("verify: unknown config file %q", file)
	}
	ctx, cancel := o.ctx()
	defer cancel()
	return o.v.cfg.State.ReadLatest(ctx, name)
}

func (o ops) WriteConfig(file string, old, new []byte) error {
	name, ok := strings.CutSuffix(file, "/latest")
	if !ok || name != o.v.name {
		return fmt.Errorf("verify: cannot write config file %q", file)
	}
	ctx, cancel := o.ctx()
	defer cancel()
	err := o.v.cfg.State.WriteLatest(ctx, name, old, new)
	if errors.Is(err, ErrConflict) {
		return sumdb.ErrWriteConflict
	}
	return err
}

// Tiles are cached by the Remote (modgate's object cache); a second copy here
// would only duplicate them.
func (o ops) ReadCache(file string) ([]byte, error) { return nil, fs.ErrNotExist }
func (o ops) WriteCache(file string, data []byte)   {}

func (o ops) Log(msg string) { o.v.cfg.Logger.Info("checksum database: " + msg) }

func (o ops) SecurityError(msg string) {
	o.v.cfg.Logger.Error("checksum database security error: refusing to verify against it", "sumdb", o.v.name, "detail", msg)
	if o.v.cfg.OnSecurityError != nil {
		o.v.cfg.OnSecurityError(msg)
	}
}
