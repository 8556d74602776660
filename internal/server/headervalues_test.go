package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/storage"
)

func TestETagMatchesItsFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		size, mtime int64
	}{
		{"ok/zero", 0, 0},
		{"ok/small", 194, 1_733_300_000_123_456_789},
		{"ok/large", 50 << 20, 1<<62 + 12345},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := etag(tc.size, tc.mtime), fmt.Sprintf(`"%x-%x"`, tc.size, tc.mtime); got != want {
				t.Errorf("etag(%d, %d) = %s, want %s", tc.size, tc.mtime, got, want)
			}
		})
	}
}

// A shared header value must survive what handlers and net/http do to a
// response's headers afterwards.
func TestSharedHeaderValuesAreNotWrittenThrough(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	setShared(h, "Cache-Control", hvShortLived)
	setContentType(h, "application/json")
	h.Add("Cache-Control", "no-transform")
	h.Set("Content-Type", "text/html")
	h2 := http.Header{}
	setShared(h2, "Cache-Control", hvShortLived)
	setContentType(h2, "application/json")
	if got := h2.Values("Cache-Control"); len(got) != 1 || got[0] != "private, max-age=60" {
		t.Errorf("shared Cache-Control became %q", got)
	}
	if got := h2.Get("Content-Type"); got != "application/json" {
		t.Errorf("shared Content-Type became %q", got)
	}
	if got := h.Values("Cache-Control"); len(got) != 2 {
		t.Errorf("Add on a shared value: %q", got)
	}
	setContentType(h, "application/x-unusual")
	if got := h.Get("Content-Type"); got != "application/x-unusual" {
		t.Errorf("uncommon Content-Type = %q", got)
	}
}

// memObject is a stored object in memory.
type memObject struct {
	*strings.Reader
	info storage.ObjectInfo
}

func (memObject) Close() error               { return nil }
func (o memObject) Info() storage.ObjectInfo { return o.info }

// TestServeWholeMatchesServeContent: the fast path for a plain GET or HEAD of a
// stored object writes the status, headers and body http.ServeContent writes.
func TestServeWholeMatchesServeContent(t *testing.T) {
	t.Parallel()
	const body = "module example.com/hello\n\ngo 1.21\n"
	for _, tc := range []struct {
		name    string
		method  string
		modTime time.Time
	}{
		{"ok/get", http.MethodGet, time.Date(2026, 12, 5, 8, 30, 1, 123456789, time.FixedZone("x", 3600))},
		{"ok/head", http.MethodHead, time.Date(2026, 12, 5, 8, 30, 1, 0, time.UTC)},
		{"ok/zero-time", http.MethodGet, time.Time{}},
		{"ok/epoch", http.MethodGet, time.Unix(0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entry := func() *cache.Entry {
				return &cache.Entry{Object: memObject{strings.NewReader(body), storage.ObjectInfo{Size: int64(len(body)), ModTime: tc.modTime}}, Size: int64(len(body)), ModTime: tc.modTime}
			}
			r := httptest.NewRequest(tc.method, "/example.com/hello/@v/v1.0.0.mod", nil)
			// serveEntry sets the Content-Type before either.
			fast := httptest.NewRecorder()
			fast.Header().Set("Content-Type", "text/plain; charset=utf-8")
			serveWhole(&recorder{ResponseWriter: fast}, r, entry())
			want := httptest.NewRecorder()
			want.Header().Set("Content-Type", "text/plain; charset=utf-8")
			e := entry()
			want.Header().Set("ETag", etag(e.Size, e.ModTime.UnixNano()))
			http.ServeContent(want, r, "", e.ModTime, e.Object)
			if fast.Code != want.Code || fast.Body.String() != want.Body.String() {
				t.Errorf("serveWhole: %d %q, ServeContent: %d %q", fast.Code, fast.Body, want.Code, want.Body)
			}
			if !reflect.DeepEqual(fast.Header(), want.Header()) {
				t.Errorf("serveWhole headers %v, ServeContent's %v", fast.Header(), want.Header())
			}
		})
	}
}

func TestConditionalOrRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header, value string
		want          bool
	}{
		{"Accept", "*/*", false},
		{"Range", "bytes=0-1", true},
		{"If-Match", `"x"`, true},
		{"If-None-Match", `"x"`, true},
		{"If-Modified-Since", "Sat, 05 Dec 2026 08:30:01 GMT", true},
		{"If-Unmodified-Since", "Sat, 05 Dec 2026 08:30:01 GMT", true},
	} {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.Header.Set(tc.header, tc.value)
		if got := conditionalOrRange(r); got != tc.want {
			t.Errorf("%s: conditionalOrRange = %v, want %v", tc.header, got, tc.want)
		}
	}
}
