// Package license finds the licenses a module zip carries, as pkgsite does:
// files with the conventional license names, classified with
// github.com/google/licensecheck, a file counting only when known licenses cover
// most of its text.
package license

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/google/licensecheck"
	"golang.org/x/sync/singleflight"

	"github.com/modgate/modgate/internal/derrors"
)

// fileNames are the license file names pkgsite recognises, lower-cased.
var fileNames = func() map[string]bool {
	names := map[string]bool{}
	for _, base := range []string{"copying", "licence", "license", "license-2.0", "licence-2.0", "license-apache", "licence-apache", "license-apache-2.0", "licence-apache-2.0", "license-mit", "licence-mit", "mit-license", "mit-licence", "mit_license", "mit_licence", "unlicense"} {
		for _, ext := range []string{"", ".md", ".markdown", ".txt"} {
			names[base+ext] = true
		}
	}
	return names
}()

// coverageThreshold is the share of a license file (percent) that known
// licenses must cover for it to count, pkgsite's value: a file that is mostly
// something else (a custom preamble, a modified license) is not one of them.
const coverageThreshold = 75

// maxFile bounds a license file read from a zip.
const maxFile = 1 << 20

// IsLicenseFile reports whether name (a path inside a module) is a license file.
func IsLicenseFile(name string) bool { return fileNames[strings.ToLower(path.Base(name))] }

// Detect returns the SPDX ids of the licenses found in the license files of a
// module zip, sorted and without duplicates; empty when it has none that
// licensecheck recognises.
func Detect(r io.ReaderAt, size int64) ([]string, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("license: reading zip: %w", err)
	}
	seen := map[string]bool{}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || !IsLicenseFile(f.Name) || f.UncompressedSize64 > maxFile {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("license: %s: %w", f.Name, err)
		}
		text, err := io.ReadAll(io.LimitReader(rc, maxFile))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("license: %s: %w", f.Name, err)
		}
		for _, id := range Classify(text) {
			seen[id] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// Classify returns the SPDX ids licensecheck finds in one license file's text,
// or none when they cover less than the threshold.
func Classify(text []byte) []string {
	cov := licensecheck.Scan(text)
	if cov.Percent < coverageThreshold {
		return nil
	}
	var ids []string
	for _, m := range cov.Match {
		if !slices.Contains(ids, m.ID) {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Opener opens the zip of module@version for reading: the composition root
// reads it through modgate's own cache, so a version is fetched (and verified)
// once whoever asks. close releases it.
type Opener func(ctx context.Context, module, version string) (r io.ReaderAt, size int64, close func(), err error)

// Detector computes the licenses of module versions once each and remembers
// them (a version's zip never changes).
type Detector struct {
	open Opener
	max  int

	flight singleflight.Group
	mu     sync.Mutex
	young  map[string][]string
	old    map[string][]string
}

// NewDetector returns a Detector remembering up to max versions (0: 100,000).
func NewDetector(open Opener, max int) *Detector {
	if max <= 0 {
		max = 100_000
	}
	return &Detector{open: open, max: max, young: map[string][]string{}}
}

// Licenses returns the SPDX ids found in module@version's zip. A version with
// no zip (an unknown version) has no licenses: the request's own answer says it
// does not exist.
func (d *Detector) Licenses(ctx context.Context, module, version string) ([]string, error) {
	key := module + "@" + version
	if ids, ok := d.get(key); ok {
		return ids, nil
	}
	v, err, _ := d.flight.Do(key, func() (any, error) {
		r, size, closeZip, err := d.open(ctx, module, version)
		if err != nil {
			return nil, err
		}
		defer closeZip()
		ids, err := Detect(r, size)
		if err != nil {
			return nil, err
		}
		d.put(key, ids)
		return ids, nil
	})
	if err != nil {
		if errors.Is(err, derrors.NotFound) || errors.Is(err, derrors.Gone) {
			return []string{}, nil
		}
		return nil, fmt.Errorf("license: %s: %w", key, err)
	}
	return v.([]string), nil
}

func (d *Detector) get(key string) ([]string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ids, ok := d.young[key]; ok {
		return ids, true
	}
	ids, ok := d.old[key]
	return ids, ok
}

// put remembers ids in two generations, like the policy's decision cache: a
// bounded map without per-entry bookkeeping.
func (d *Detector) put(key string, ids []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.young) >= max(d.max/2, 1) {
		d.old, d.young = d.young, make(map[string][]string)
	}
	d.young[key] = ids
}
