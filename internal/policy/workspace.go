package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A workspace is one consistent read of the policy directory: its Rego modules
// (policies and tests), its merged and validated data, and the revision that
// names exactly those bytes.
type workspace struct {
	dir      string
	revision string
	modules  map[string]*ast.Module // by path relative to dir
	tests    map[string]bool        // relative paths of *_test.rego files
	data     *Data
	files    []string // relative paths of every file read, sorted
}

// isPolicyFile reports whether a file in the policy directory is part of the
// policy. Hidden files (editor swap files, .git) are not.
func isPolicyFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch filepath.Ext(name) {
	case ".rego", ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// listFiles returns the policy files under dir (relative, slash-separated,
// sorted) and skips hidden directories.
func listFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() && d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		if isPolicyFile(d.Name()) {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	return files, nil
}

// readWorkspace reads, parses and schema-checks the policy directory. It does
// not compile the modules together or run the tests; see build.
func readWorkspace(dir string) (*workspace, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("policy: reading %s: %w", dir, err)
	}
	ws := &workspace{
		dir:     dir,
		modules: map[string]*ast.Module{},
		tests:   map[string]bool{},
		files:   files,
	}
	h := sha256.New()
	var (
		dataFiles []string
		dataDocs  []*Data
		errs      []error
		nRego     int
	)
	for _, rel := range files {
		content, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		// Name and length delimit each file so no two workspaces hash alike.
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(content))
		h.Write(content)

		if strings.HasSuffix(rel, ".rego") {
			nRego++
			m, err := ast.ParseModuleWithOpts(rel, string(content), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ws.modules[rel] = m
			if strings.HasSuffix(rel, "_test.rego") {
				ws.tests[rel] = true
			}
			continue
		}
		d, err := decodeDataFile(rel, content)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dataFiles = append(dataFiles, rel)
		dataDocs = append(dataDocs, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if nRego == 0 {
		return nil, fmt.Errorf("policy: no .rego files in %s", dir)
	}
	data, err := mergeData(dataFiles, dataDocs)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if err := data.normalize(); err != nil {
		return nil, fmt.Errorf("policy: invalid data: %w", err)
	}
	ws.data = data
	ws.revision = hex.EncodeToString(h.Sum(nil))[:16]
	return ws, nil
}

// fingerprint summarises the policy files' names, sizes and modification
// times: cheap to compute every second, and it changes whenever an edit,
// rename or deletion could have changed the policy.
func fingerprint(dir string) (string, error) {
	files, err := listFiles(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, rel := range files {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", rel, fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
