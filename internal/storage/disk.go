package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/modgate/modgate/internal/derrors"
)

// Disk stores objects as files under a root directory.
//
// Writes are crash-safe: the bytes go to a temporary file under root/.tmp, which is
// fsync'd, renamed over the final name and followed by an fsync of the directory.
// A crash at any point leaves either the old object or the new one, never a torn
// file under an object's name; leftovers in .tmp are removed at start-up.
type Disk struct {
	root    string
	scratch string
}

// NewDisk opens (creating if needed) a disk store rooted at dir.
func NewDisk(dir string) (*Disk, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	scratch := filepath.Join(root, ".tmp")
	// Anything left in scratch belongs to a process that died mid-write.
	if err := os.RemoveAll(scratch); err != nil {
		return nil, fmt.Errorf("storage: clearing %s: %w", scratch, err)
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &Disk{root: root, scratch: scratch}, nil
}

func (d *Disk) ScratchDir() string { return d.scratch }

func (d *Disk) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if key == ".tmp" || len(key) > 5 && key[:5] == ".tmp/" {
		return "", derrors.New(derrors.InvalidArgument, "invalid storage key")
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

func (d *Disk) Open(_ context.Context, key string) (Object, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, mapErr(err, key)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, derrors.New(derrors.NotFound, "not found")
	}
	return &diskObject{File: f, info: ObjectInfo{Size: st.Size(), ModTime: st.ModTime()}}, nil
}

func (d *Disk) Stat(_ context.Context, key string) (ObjectInfo, error) {
	p, err := d.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, mapErr(err, key)
	}
	if !st.Mode().IsRegular() {
		return ObjectInfo{}, derrors.New(derrors.NotFound, "not found")
	}
	return ObjectInfo{Size: st.Size(), ModTime: st.ModTime()}, nil
}

func (d *Disk) Put(_ context.Context, key string, f *os.File) (err error) {
	defer derrors.Wrap(&err, "storage: put %s", key)
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if filepath.Dir(f.Name()) == d.scratch {
		if err := os.Rename(f.Name(), p); err != nil {
			return err
		}
	} else {
		// Not our scratch file: copy into scratch first so the final step is a rename.
		if err := d.copyIn(f, p); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func (d *Disk) copyIn(src *os.File, final string) error {
	tmp, err := os.CreateTemp(d.scratch, "put-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, io.NewSectionReader(src, 0, 1<<62)); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), final)
}

func (d *Disk) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("storage: delete %s: %w", key, err)
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// mapErr turns file-system errors into error kinds. A path component that is a file
// (ENOTDIR) means the object does not exist, not that the server is broken.
func mapErr(err error, key string) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return derrors.WithCause(derrors.NotFound, err, "not found")
	}
	return fmt.Errorf("storage: %s: %w", key, err)
}

type diskObject struct {
	*os.File
	info ObjectInfo
}

func (o *diskObject) Info() ObjectInfo { return o.info }
