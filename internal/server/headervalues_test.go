package server

import (
	"fmt"
	"net/http"
	"testing"
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
