package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/storage/storagetest"
)

func TestDiskConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		d, err := storage.NewDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// A process killed mid-write leaves its temporary file in .tmp; it must never be
// reachable as an object and must be cleared at the next start.
func TestDiskClearsLeftoverScratch(t *testing.T) {
	dir := t.TempDir()
	d, err := storage.NewDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(d.ScratchDir(), "fill-123")
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(context.Background(), ".tmp/fill-123"); err == nil {
		t.Fatal("scratch file reachable as an object")
	}
	if _, err := storage.NewDisk(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover scratch file survived restart: %v", err)
	}
}

// Put of a file outside the scratch directory copies it in and still installs it
// atomically.
func TestDiskPutForeignFile(t *testing.T) {
	d, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "foreign-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("hello")
	if err := d.Put(context.Background(), "a/b", f); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.Get(t, d, "a/b"); got != "hello" {
		t.Errorf("got %q", got)
	}
	if _, err := os.Stat(f.Name()); err != nil {
		t.Errorf("foreign file was moved: %v", err)
	}
}
