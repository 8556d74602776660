// Package publish owns module versions published into modgate: validating an
// uploaded module zip by the go command's own rules, recording each version once
// and forever in PostgreSQL (immutable, tombstoned on delete), and the client side
// that builds a zip from a directory and uploads it (`modgate publish`).
//
// It knows nothing of HTTP routing or policy: internal/server authenticates,
// authorizes and streams the upload to a file, then calls Check and
// Registry.Publish.
package publish

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"github.com/modgate/modgate/internal/derrors"
)

// Checked is an upload that passed every check: what is stored and served.
type Checked struct {
	Module, Version string
	// GoMod is the .mod file served for the version: the zip's go.mod, or the
	// "module <path>" line the go command synthesizes for a module without one.
	GoMod []byte
	// ZipHash and ModHash are the h1: hashes go.sum records for the zip and go.mod.
	ZipHash, ModHash string
	Size             int64
	// SHA256 is the hex SHA-256 of the zip's bytes; storage keys derive from it.
	SHA256 string
}

// CheckVersion validates a module path and version as the go command would
// accept them from a proxy: canonical version, valid path, and a major-version
// suffix that agrees with the version. Errors are derrors.InvalidArgument.
func CheckVersion(modulePath, version string) error {
	if err := module.CheckPath(modulePath); err != nil {
		return derrors.WithCause(derrors.InvalidArgument, err, "invalid module path %q: %s", short(modulePath), oneLine(err.Error()))
	}
	base := strings.TrimSuffix(version, "+incompatible")
	if !semver.IsValid(base) || semver.Canonical(base) != base {
		want := semver.Canonical(base)
		if want == "" {
			want = "v1.2.3"
		}
		return derrors.New(derrors.InvalidArgument, "version %q is not a canonical semantic version (such as %q)", short(version), want)
	}
	if err := module.Check(modulePath, version); err != nil {
		return derrors.WithCause(derrors.InvalidArgument, err, "%s", oneLine(err.Error()))
	}
	return nil
}

// Check validates the module zip in f (size bytes) for modulePath@version with
// golang.org/x/mod/zip's rules — the rules the go command applies when it
// extracts a download — plus the ones CheckZip leaves to extraction: no symbolic
// links or other irregular files, and a go.mod declaring exactly modulePath.
// Errors are derrors.InvalidArgument (or TooLarge) with a one-line reason.
func Check(modulePath, version string, f *os.File, size int64) (Checked, error) {
	if err := CheckVersion(modulePath, version); err != nil {
		return Checked{}, err
	}
	if size > modzip.MaxZipFile {
		return Checked{}, derrors.New(derrors.TooLarge, "module zip is %d bytes; the limit is %d", size, modzip.MaxZipFile)
	}
	mv := module.Version{Path: modulePath, Version: version}
	cf, err := modzip.CheckZip(mv, f.Name())
	if err == nil {
		err = cf.Err()
	}
	if err != nil {
		if cf.SizeError != nil {
			return Checked{}, derrors.WithCause(derrors.TooLarge, err, "invalid module zip: %s", oneLine(cf.SizeError.Error()))
		}
		return Checked{}, derrors.WithCause(derrors.InvalidArgument, err, "invalid module zip: %s", firstProblem(cf, err))
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return Checked{}, derrors.WithCause(derrors.InvalidArgument, err, "invalid module zip: not a zip file")
	}
	prefix := modulePath + "@" + version + "/"
	var goMod *zip.File
	files := 0
	for _, zf := range zr.File {
		if strings.HasSuffix(zf.Name, "/") {
			continue
		}
		files++
		if !zf.Mode().IsRegular() {
			// The go command's zip.Create drops symlinks; one here was made by hand
			// and would be extracted as a plain file holding the link target.
			return Checked{}, derrors.New(derrors.InvalidArgument, "invalid module zip: %s is not a regular file (%s)", short(zf.Name), zf.Mode().Type())
		}
		if zf.Name == prefix+"go.mod" {
			goMod = zf
		}
	}
	if files == 0 {
		return Checked{}, derrors.New(derrors.InvalidArgument, "invalid module zip: it contains no files")
	}
	c := Checked{Module: modulePath, Version: version, Size: size}
	if goMod != nil {
		if strings.HasSuffix(version, "+incompatible") {
			return Checked{}, derrors.New(derrors.InvalidArgument, "version %s is +incompatible but the zip has a go.mod: +incompatible is only for modules without one", version)
		}
		c.GoMod, err = readZipFile(goMod, modzip.MaxGoMod)
		if err != nil {
			return Checked{}, derrors.WithCause(derrors.InvalidArgument, err, "invalid module zip: cannot read go.mod")
		}
		declared := modfile.ModulePath(c.GoMod)
		if declared == "" {
			return Checked{}, derrors.New(derrors.InvalidArgument, "go.mod has no module directive")
		}
		if declared != modulePath {
			return Checked{}, derrors.New(derrors.InvalidArgument, "go.mod declares module %q, not %q", short(declared), modulePath)
		}
		if _, err := modfile.ParseLax("go.mod", c.GoMod, nil); err != nil {
			return Checked{}, derrors.WithCause(derrors.InvalidArgument, err, "go.mod does not parse: %s", oneLine(err.Error()))
		}
	} else {
		// What the go command serves for a module without go.mod
		// (cmd/go/internal/modfetch: "module " + AutoQuote(path)).
		c.GoMod = []byte("module " + modfile.AutoQuote(modulePath) + "\n")
	}
	if c.ZipHash, err = dirhash.HashZip(f.Name(), dirhash.Hash1); err != nil {
		return Checked{}, derrors.WithCause(derrors.InvalidArgument, err, "invalid module zip: cannot hash its files")
	}
	if c.ModHash, err = HashGoMod(c.GoMod); err != nil {
		return Checked{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return Checked{}, fmt.Errorf("publish: hashing upload: %w", err)
	}
	c.SHA256 = hex.EncodeToString(h.Sum(nil))
	return c, nil
}

// HashGoMod returns the h1: hash go.sum records for a version's go.mod.
func HashGoMod(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

func readZipFile(zf *zip.File, limit int64) ([]byte, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// firstProblem names the first file CheckZip rejected and why, in one line.
func firstProblem(cf modzip.CheckedFiles, err error) string {
	if len(cf.Invalid) > 0 {
		fe := cf.Invalid[0]
		msg := fmt.Sprintf("%s: %s", short(fe.Path), oneLine(fe.Err.Error()))
		if n := len(cf.Invalid) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more)", n)
		}
		return msg
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "cannot read the upload"
	}
	if errors.Is(err, zip.ErrFormat) {
		return "not a zip file"
	}
	return oneLine(err.Error())
}

// short bounds client-supplied text in an error line.
func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
