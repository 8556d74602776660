// Package goproxy implements the GOPROXY protocol's request grammar: which object a
// URL path names, whether the module path and version in it are valid, and how the
// object is cached. It knows nothing of HTTP wiring or storage.
//
// The protocol is specified at https://go.dev/ref/mod#goproxy-protocol.
package goproxy

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/internal/derrors"
)

// Kind is the kind of object a request names.
type Kind int

const (
	KindList   Kind = iota + 1 // $module/@v/list
	KindInfo                   // $module/@v/$version.info
	KindMod                    // $module/@v/$version.mod
	KindZip                    // $module/@v/$version.zip
	KindLatest                 // $module/@latest
)

// String returns the action name used in logs, metrics, policy and audit.
func (k Kind) String() string {
	switch k {
	case KindList:
		return "list"
	case KindInfo:
		return "info"
	case KindMod:
		return "mod"
	case KindZip:
		return "zip"
	case KindLatest:
		return "latest"
	}
	return "unknown"
}

// ContentType is the media type served for objects of kind k.
func (k Kind) ContentType() string {
	switch k {
	case KindInfo, KindLatest:
		return "application/json"
	case KindZip:
		return "application/zip"
	}
	return "text/plain; charset=utf-8"
}

// maxPathLen bounds the request path. Module paths in practice stay far below it;
// the bound keeps hostile input away from the decoders and the file system.
const maxPathLen = 1024

// Request is one parsed GOPROXY request.
type Request struct {
	Kind Kind
	// Module is the decoded module path ("github.com/Azure/x"); EscapedModule its
	// case-encoded form ("github.com/!azure/x") used on the wire and in storage keys.
	Module        string
	EscapedModule string
	// Version is the decoded version for info/mod/zip; EscapedVersion its encoding.
	Version        string
	EscapedVersion string
}

// IsQuery reports whether the request is a version query (`@v/main.info`,
// `@v/v1.2.info`) rather than a canonical version: its answer can change over time.
func (r Request) IsQuery() bool {
	return r.Kind == KindInfo && !IsCanonical(r.Version)
}

// Immutable reports whether the object can never change once fetched: canonical
// .info, .mod and .zip. Lists, @latest and queries are revalidated.
func (r Request) Immutable() bool {
	switch r.Kind {
	case KindMod, KindZip:
		return true
	case KindInfo:
		return !r.IsQuery()
	}
	return false
}

// Path is the request's escaped protocol path without a leading slash; it is both
// what is asked of an upstream mirror (appended to its base URL) and the storage key.
func (r Request) Path() string {
	switch r.Kind {
	case KindList:
		return r.EscapedModule + "/@v/list"
	case KindLatest:
		return r.EscapedModule + "/@latest"
	case KindInfo:
		return r.EscapedModule + "/@v/" + r.EscapedVersion + ".info"
	case KindMod:
		return r.EscapedModule + "/@v/" + r.EscapedVersion + ".mod"
	case KindZip:
		return r.EscapedModule + "/@v/" + r.EscapedVersion + ".zip"
	}
	return ""
}

// IsCanonical reports whether v is a canonical semantic version as the go command
// uses it in .mod and .zip requests: "v1.2.3", "v1.2.3-pre", pseudo-versions, and
// "+incompatible" (the only build metadata the go command allows).
func IsCanonical(v string) bool {
	base := strings.TrimSuffix(v, "+incompatible")
	return semver.IsValid(base) && semver.Canonical(base) == base
}

// ParseRequest parses the escaped URL path of a GOPROXY request (for example
// "/github.com/!azure/x/@v/v1.0.0.zip"). Errors are derrors.InvalidArgument for
// malformed input and derrors.NotFound for paths that are not protocol objects.
func ParseRequest(rawPath string) (Request, error) {
	if len(rawPath) > maxPathLen {
		return Request{}, derrors.New(derrors.InvalidArgument, "request path longer than %d bytes", maxPathLen)
	}
	// The go command never percent-encodes module paths (module.EscapePath yields only
	// characters legal in a URL path), so an escape is either a different client or an
	// attempt to smuggle "/", ".." or NUL past the checks below. Decode, then validate
	// the decoded form; the validators reject what decoding can reveal.
	p, err := url.PathUnescape(rawPath)
	if err != nil {
		return Request{}, derrors.New(derrors.InvalidArgument, "malformed percent-encoding in path")
	}
	if strings.ContainsAny(p, "\x00\\") {
		return Request{}, derrors.New(derrors.InvalidArgument, "invalid character in path")
	}
	p = strings.TrimPrefix(p, "/")

	var req Request
	var escVersion string
	if mod, ok := strings.CutSuffix(p, "/@latest"); ok {
		req.Kind, req.EscapedModule = KindLatest, mod
	} else {
		mod, file, ok := strings.Cut(p, "/@v/")
		if !ok {
			return Request{}, derrors.New(derrors.NotFound, "not a module proxy path")
		}
		req.EscapedModule = mod
		switch {
		case file == "list":
			req.Kind = KindList
		case strings.HasSuffix(file, ".info"):
			req.Kind, escVersion = KindInfo, strings.TrimSuffix(file, ".info")
		case strings.HasSuffix(file, ".mod"):
			req.Kind, escVersion = KindMod, strings.TrimSuffix(file, ".mod")
		case strings.HasSuffix(file, ".zip"):
			req.Kind, escVersion = KindZip, strings.TrimSuffix(file, ".zip")
		default:
			return Request{}, derrors.New(derrors.NotFound, "unknown module proxy object %q", file)
		}
	}

	mod, err := unescapePath(req.EscapedModule)
	if err != nil {
		return Request{}, derrors.WithCause(derrors.InvalidArgument, err, "invalid module path %q", printable(req.EscapedModule))
	}
	req.Module = mod
	if req.Kind == KindList || req.Kind == KindLatest {
		return req, nil
	}

	if escVersion == "" || strings.Contains(escVersion, "/") {
		return Request{}, derrors.New(derrors.InvalidArgument, "invalid version %q", printable(escVersion))
	}
	v, err := unescapeVersion(escVersion)
	if err != nil {
		return Request{}, derrors.WithCause(derrors.InvalidArgument, err, "invalid version %q", printable(escVersion))
	}
	req.Version, req.EscapedVersion = v, escVersion
	if req.Kind == KindInfo && !IsCanonical(v) {
		// A query such as "main" or "v1.2": the upstream resolves it. It must still be
		// a single safe path element, which UnescapeVersion checked.
		return req, nil
	}
	if !IsCanonical(v) {
		return Request{}, derrors.New(derrors.InvalidArgument, "version %q is not canonical: .mod and .zip need a canonical version such as %q", v, canonicalHint(v))
	}
	if err := module.Check(mod, v); err != nil {
		return Request{}, derrors.WithCause(derrors.InvalidArgument, err, "%s", oneLine(err.Error()))
	}
	return req, nil
}

func canonicalHint(v string) string {
	if c := semver.Canonical(v); c != "" {
		return c
	}
	return "v1.2.3"
}

// printable quotes at most 128 bytes of s so an error line stays short.
func printable(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// unescapePath and unescapeVersion are module.UnescapePath and
// module.UnescapeVersion without their copy of the string in the common case of
// nothing escaped: an escaped form with no '!', no upper-case letter and only
// ASCII unescapes to itself, so only the validity check remains. Anything else,
// and every error, goes through x/mod.
func unescapePath(escaped string) (string, error) {
	if plainEscaped(escaped) && module.CheckPath(escaped) == nil {
		return escaped, nil
	}
	return module.UnescapePath(escaped)
}

func unescapeVersion(escaped string) (string, error) {
	// For a single path element CheckFilePath is UnescapeVersion's own check
	// (x/mod's checkElem for file paths).
	if plainEscaped(escaped) && !strings.Contains(escaped, "/") && module.CheckFilePath(escaped) == nil {
		return escaped, nil
	}
	return module.UnescapeVersion(escaped)
}

func plainEscaped(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || c == '!' || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}
