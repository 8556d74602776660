package verify

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"testing"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// remoteFor reads the database's protocol paths straight from its handler.
func remoteFor(db *sumdbtest.DB) Remote {
	return func(ctx context.Context, path string) ([]byte, error) {
		rec := httptest.NewRecorder()
		db.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", path, nil))
		if rec.Code == 404 {
			return nil, derrors.New(derrors.NotFound, "not found")
		}
		if rec.Code != 200 {
			return nil, errors.New(rec.Body.String())
		}
		return io.ReadAll(rec.Body)
	}
}

func newVerifier(t *testing.T, db *sumdbtest.DB, state State) *Verifier {
	t.Helper()
	v, err := New(Config{Key: db.Key(), Remote: remoteFor(db), State: state})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCheckMod(t *testing.T) {
	t.Parallel()
	mods := proxytest.StandardModules()
	db := sumdbtest.New(t, "sum.verify.test", mods)
	store, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, db, &StoreState{Store: store})
	m := mods[0]
	mv := module.Version{Path: m.Path, Version: m.Version}
	tests := []struct {
		name    string
		mod     module.Version
		data    []byte
		wantErr bool
		badByte bool
	}{
		{name: "ok/genuine", mod: mv, data: m.GoMod()},
		{name: "fail/altered", mod: mv, data: append(m.GoMod(), "// x\n"...), wantErr: true, badByte: true},
		{name: "fail/unknown-version", mod: module.Version{Path: m.Path, Version: "v9.9.9"}, data: m.GoMod(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.CheckMod(tt.mod, tt.data)
			if (err != nil) != tt.wantErr || IsBadBytes(err) != tt.badByte {
				t.Fatalf("CheckMod = %v, want error %v (bad bytes %v)", err, tt.wantErr, tt.badByte)
			}
			if err != nil && !errors.Is(err, derrors.BadUpstream) {
				t.Errorf("error %v is not BadUpstream", err)
			}
		})
	}
	want, _ := proxytest.GoModHash(m)
	if got, _ := GoModHash(m.GoMod()); got != want {
		t.Errorf("GoModHash = %s, want the go.sum hash %s", got, want)
	}
}

func TestStoreStateCompareAndSwap(t *testing.T) {
	t.Parallel()
	store, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &StoreState{Store: store}
	ctx := context.Background()
	if got, err := s.ReadLatest(ctx, "db"); err != nil || got != nil {
		t.Fatalf("empty state: %q %v", got, err)
	}
	if err := s.WriteLatest(ctx, "db", nil, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteLatest(ctx, "db", nil, []byte("two")); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale write: %v, want ErrConflict", err)
	}
	if err := s.WriteLatest(ctx, "db", []byte("one"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ReadLatest(ctx, "db"); string(got) != "two" {
		t.Errorf("state %q, want two", got)
	}
	// A restart reads what was written (a new StoreState over the same store).
	if got, _ := (&StoreState{Store: store}).ReadLatest(ctx, "db"); string(got) != "two" {
		t.Errorf("after restart %q, want two", got)
	}
}
