package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
)

// StoreState keeps tree heads in an object store under "sumdb-state/<name>/latest",
// next to the cache they protect. The compare-and-swap is atomic within one
// process; replicas sharing a bucket may race, which only costs a re-merge (the
// sumdb client re-reads and re-checks on conflict) because every note written
// has been verified.
type StoreState struct {
	Store storage.Store
	mu    sync.Mutex
}

func stateKey(name string) string { return "sumdb-state/" + name + "/latest" }

// ReadLatest implements State.
func (s *StoreState) ReadLatest(ctx context.Context, name string) ([]byte, error) {
	obj, err := s.Store.Open(ctx, stateKey(name))
	if errors.Is(err, derrors.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("verify: reading tree head: %w", err)
	}
	defer obj.Close()
	return io.ReadAll(io.LimitReader(obj, 64<<10))
}

// WriteLatest implements State.
func (s *StoreState) WriteLatest(ctx context.Context, name string, old, new []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.ReadLatest(ctx, name)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, old) {
		return ErrConflict
	}
	f, err := os.CreateTemp(s.Store.ScratchDir(), "sumdb-state-*")
	if err != nil {
		return fmt.Errorf("verify: writing tree head: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(new); err != nil {
		return fmt.Errorf("verify: writing tree head: %w", err)
	}
	if err := s.Store.Put(ctx, stateKey(name), f); err != nil {
		return fmt.Errorf("verify: storing tree head: %w", err)
	}
	return nil
}
