// Package storagetest is the conformance suite every storage backend must pass.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
)

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	ctx := context.Background()

	t.Run("missing", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Open(ctx, "a/b/c"); !errors.Is(err, derrors.NotFound) {
			t.Errorf("Open(missing) = %v, want NotFound", err)
		}
		if _, err := s.Stat(ctx, "a/b/c"); !errors.Is(err, derrors.NotFound) {
			t.Errorf("Stat(missing) = %v, want NotFound", err)
		}
		if err := s.Delete(ctx, "a/b/c"); err != nil {
			t.Errorf("Delete(missing) = %v, want nil", err)
		}
	})

	t.Run("put-open-seek", func(t *testing.T) {
		s := newStore(t)
		data := bytes.Repeat([]byte("0123456789"), 10000)
		Put(t, s, "mod/example.com/m/@v/v1.0.0.zip", data)
		obj, err := s.Open(ctx, "mod/example.com/m/@v/v1.0.0.zip")
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		if obj.Info().Size != int64(len(data)) {
			t.Errorf("size = %d, want %d", obj.Info().Size, len(data))
		}
		if _, err := obj.Seek(5, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[5:]) {
			t.Errorf("read after seek: got %d bytes, want %d", len(got), len(data)-5)
		}
		st, err := s.Stat(ctx, "mod/example.com/m/@v/v1.0.0.zip")
		if err != nil || st.Size != int64(len(data)) {
			t.Errorf("Stat = %+v, %v", st, err)
		}
	})

	t.Run("replace", func(t *testing.T) {
		s := newStore(t)
		Put(t, s, "k/list", []byte("v1.0.0\n"))
		Put(t, s, "k/list", []byte("v1.0.0\nv1.1.0\n"))
		if got := Get(t, s, "k/list"); got != "v1.0.0\nv1.1.0\n" {
			t.Errorf("after replace: %q", got)
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := newStore(t)
		Put(t, s, "k/x", []byte("x"))
		if err := s.Delete(ctx, "k/x"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(ctx, "k/x"); !errors.Is(err, derrors.NotFound) {
			t.Errorf("Open after delete = %v, want NotFound", err)
		}
	})

	t.Run("invalid-keys", func(t *testing.T) {
		s := newStore(t)
		for _, key := range []string{"", "/abs", "a/../b", "a//b", "a/./b", "..", "a\x00b", `a\b`} {
			if _, err := s.Open(ctx, key); !errors.Is(err, derrors.InvalidArgument) {
				t.Errorf("Open(%q) = %v, want InvalidArgument", key, err)
			}
			f := scratch(t, s, []byte("x"))
			if err := s.Put(ctx, key, f); !errors.Is(err, derrors.InvalidArgument) {
				t.Errorf("Put(%q) = %v, want InvalidArgument", key, err)
			}
		}
	})

	t.Run("concurrent-readers-never-see-partial", func(t *testing.T) {
		s := newStore(t)
		a := bytes.Repeat([]byte("a"), 1<<20)
		b := bytes.Repeat([]byte("b"), 1<<19)
		Put(t, s, "k/obj", a)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		errc := make(chan error, 1)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					obj, err := s.Open(ctx, "k/obj")
					if err != nil {
						continue
					}
					got, _ := io.ReadAll(obj)
					obj.Close()
					if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
						select {
						case errc <- fmt.Errorf("read a torn object of %d bytes", len(got)):
						default:
						}
						return
					}
				}
			}()
		}
		for i := range 20 {
			if i%2 == 0 {
				Put(t, s, "k/obj", b)
			} else {
				Put(t, s, "k/obj", a)
			}
		}
		close(stop)
		wg.Wait()
		select {
		case err := <-errc:
			t.Fatal(err)
		default:
		}
	})
}

// Put stores data under key through a scratch file, as the cache does.
func Put(t testing.TB, s storage.Store, key string, data []byte) {
	t.Helper()
	f := scratch(t, s, data)
	defer f.Close()
	if err := s.Put(context.Background(), key, f); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// Get reads the object at key.
func Get(t testing.TB, s storage.Store, key string) string {
	t.Helper()
	obj, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func scratch(t testing.TB, s storage.Store, data []byte) *os.File {
	t.Helper()
	f, err := os.CreateTemp(s.ScratchDir(), "test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f
}
