package goproxy

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/derrors"
)

func TestParseRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		path      string
		want      Request
		immutable bool
		wantErr   error
	}{
		{name: "ok/list", path: "/github.com/x/y/@v/list",
			want: Request{Kind: KindList, Module: "github.com/x/y", EscapedModule: "github.com/x/y"}},
		{name: "ok/latest", path: "/github.com/x/y/@latest",
			want: Request{Kind: KindLatest, Module: "github.com/x/y", EscapedModule: "github.com/x/y"}},
		{name: "ok/info", path: "/github.com/x/y/@v/v1.2.3.info", immutable: true,
			want: Request{Kind: KindInfo, Module: "github.com/x/y", EscapedModule: "github.com/x/y", Version: "v1.2.3", EscapedVersion: "v1.2.3"}},
		{name: "ok/case-encoded", path: "/github.com/!azure/!s!d!k/@v/v1.0.0.zip", immutable: true,
			want: Request{Kind: KindZip, Module: "github.com/Azure/SDK", EscapedModule: "github.com/!azure/!s!d!k", Version: "v1.0.0", EscapedVersion: "v1.0.0"}},
		{name: "ok/incompatible", path: "/example.com/m/@v/v3.0.0+incompatible.mod", immutable: true,
			want: Request{Kind: KindMod, Module: "example.com/m", EscapedModule: "example.com/m", Version: "v3.0.0+incompatible", EscapedVersion: "v3.0.0+incompatible"}},
		{name: "ok/v2", path: "/example.com/m/v2/@v/v2.1.0.zip", immutable: true,
			want: Request{Kind: KindZip, Module: "example.com/m/v2", EscapedModule: "example.com/m/v2", Version: "v2.1.0", EscapedVersion: "v2.1.0"}},
		{name: "ok/pseudo-version", path: "/example.com/m/@v/v0.0.0-20240101000000-abcdefabcdef.info", immutable: true,
			want: Request{Kind: KindInfo, Module: "example.com/m", EscapedModule: "example.com/m", Version: "v0.0.0-20240101000000-abcdefabcdef", EscapedVersion: "v0.0.0-20240101000000-abcdefabcdef"}},
		{name: "ok/branch-query", path: "/example.com/m/@v/main.info",
			want: Request{Kind: KindInfo, Module: "example.com/m", EscapedModule: "example.com/m", Version: "main", EscapedVersion: "main"}},
		{name: "ok/short-version-query", path: "/example.com/m/@v/v1.2.info",
			want: Request{Kind: KindInfo, Module: "example.com/m", EscapedModule: "example.com/m", Version: "v1.2", EscapedVersion: "v1.2"}},

		{name: "fail/dotdot", path: "/example.com/../etc/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/encoded-dotdot", path: "/example.com/%2e%2e/etc/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/encoded-slash-in-version", path: "/example.com/m/@v/..%2f..%2fx.info", wantErr: derrors.InvalidArgument},
		{name: "fail/dotdot-version", path: "/example.com/m/@v/...zip", wantErr: derrors.InvalidArgument},
		{name: "fail/nul", path: "/example.com/m%00/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/bad-percent", path: "/example.com/m%zz/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/upper-case-unescaped", path: "/github.com/Azure/x/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/bad-bang-escape", path: "/github.com/!!azure/x/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/bang-digit", path: "/github.com/!1/x/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/non-canonical-zip", path: "/example.com/m/@v/v1.2.zip", wantErr: derrors.InvalidArgument},
		{name: "fail/build-metadata-mod", path: "/example.com/m/@v/v1.2.3+meta.mod", wantErr: derrors.InvalidArgument},
		{name: "fail/branch-zip", path: "/example.com/m/@v/main.zip", wantErr: derrors.InvalidArgument},
		{name: "fail/major-mismatch", path: "/example.com/m/@v/v2.0.0.zip", wantErr: derrors.InvalidArgument},
		{name: "fail/major-suffix-mismatch", path: "/example.com/m/v2/@v/v1.0.0.mod", wantErr: derrors.InvalidArgument},
		{name: "fail/empty-version", path: "/example.com/m/@v/.info", wantErr: derrors.InvalidArgument},
		{name: "fail/no-dot-in-first-element", path: "/localhost/m/@v/list", wantErr: derrors.InvalidArgument},
		{name: "fail/overlong", path: "/example.com/" + string(make([]byte, 2000)) + "/@v/list", wantErr: derrors.InvalidArgument},
		{name: "notfound/root", path: "/", wantErr: derrors.NotFound},
		{name: "notfound/unknown-file", path: "/example.com/m/@v/v1.0.0.tar", wantErr: derrors.NotFound},
		{name: "notfound/favicon", path: "/favicon.ico", wantErr: derrors.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseRequest(%q) error = %v, want kind %v", tt.path, err, tt.wantErr)
				}
				if msg := derrors.PublicMessage(err); msg == "" || len(msg) > 300 {
					t.Errorf("public message %q: want one short line", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest(%q): %v", tt.path, err)
			}
			if got != tt.want {
				t.Errorf("ParseRequest(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
			if got.Immutable() != tt.immutable {
				t.Errorf("Immutable() = %v, want %v", got.Immutable(), tt.immutable)
			}
			if "/"+got.Path() != tt.path {
				t.Errorf("Path() = %q, want %q", got.Path(), tt.path[1:])
			}
		})
	}
}

func TestIsCanonical(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{
		"v1.2.3": true, "v1.2.3-pre.1": true, "v3.0.0+incompatible": true,
		"v0.0.0-20240101000000-abcdefabcdef": true,
		"v1.2":                               false, "v1": false, "1.2.3": false, "v1.2.3+meta": false, "main": false, "": false,
	} {
		if got := IsCanonical(v); got != want {
			t.Errorf("IsCanonical(%q) = %v, want %v", v, got, want)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"/github.com/x/y/@v/list", "/github.com/!x/y/@v/v1.0.0.zip", "/a.b/@latest", "/a.b/%2e%2e/@v/list", "/a.b/@v/main.info"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		req, err := ParseRequest(p)
		if err != nil {
			return
		}
		// Anything accepted must be a safe storage key: no traversal, no NUL.
		key := req.Path()
		if strings.ContainsAny(key, "\x00\\") || strings.HasPrefix(key, "/") {
			t.Fatalf("ParseRequest(%q) accepted key %q", p, key)
		}
		for _, elem := range strings.Split(key, "/") {
			if elem == "" || elem == "." || elem == ".." {
				t.Fatalf("ParseRequest(%q) accepted key %q with element %q", p, key, elem)
			}
		}
	})
}

// FuzzUnescape: the copy-free unescaping answers exactly what x/mod does, for
// module paths and versions alike.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{"github.com/pkg/errors", "github.com/!azure/go", "github.com/Azure/go", "v1.0.0", "v1.0.0-!r!c1", "v1.0.0-RC1", "..", ".", "a/b", "con", "x.", "é", "a!", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p1, e1 := unescapePath(s)
		p2, e2 := module.UnescapePath(s)
		if p1 != p2 || (e1 == nil) != (e2 == nil) || e1 != nil && e1.Error() != e2.Error() {
			t.Errorf("unescapePath(%q) = %q, %v; x/mod: %q, %v", s, p1, e1, p2, e2)
		}
		v1, e1 := unescapeVersion(s)
		v2, e2 := module.UnescapeVersion(s)
		if v1 != v2 || (e1 == nil) != (e2 == nil) || e1 != nil && e1.Error() != e2.Error() {
			t.Errorf("unescapeVersion(%q) = %q, %v; x/mod: %q, %v", s, v1, e1, v2, e2)
		}
	})
}
