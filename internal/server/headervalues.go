package server

import (
	"net/http"
	"strconv"
)

// Header values every response (or every cache answer) carries, each a shared
// one-element slice: assigning one costs nothing, where http.Header.Set
// allocates a slice per call — a dozen allocations per warm request. Sharing is
// safe because nothing writes into a header's value slice in place: Set and Del
// replace it, and Add appends to a full slice, which copies it.
var (
	hvNosniff     = []string{"nosniff"}
	hvDeny        = []string{"DENY"}
	hvNoReferrer  = []string{"no-referrer"}
	hvHSTS        = []string{"max-age=31536000"}
	hvImmutable   = []string{"private, max-age=31536000, immutable"}
	hvShortLived  = []string{"private, max-age=60"}
	hvBytes       = []string{"bytes"}
	hvContentType = map[string][]string{
		"application/json":          {"application/json"},
		"application/zip":           {"application/zip"},
		"text/plain; charset=utf-8": {"text/plain; charset=utf-8"},
	}
)

// setShared sets the canonical header key to a shared value (see above). key
// must already be in canonical form.
func setShared(h http.Header, key string, v []string) { h[key] = v }

// setContentType sets Content-Type, from a shared value when it is a common one.
func setContentType(h http.Header, ct string) {
	if v, ok := hvContentType[ct]; ok {
		h["Content-Type"] = v
		return
	}
	h.Set("Content-Type", ct)
}

// etag is the entity tag of a stored object: its size and modification time
// in hex, quoted, as fmt.Sprintf(`"%x-%x"`, size, mtime) would write it.
func etag(size, mtimeNanos int64) string {
	b := make([]byte, 0, 40)
	b = append(b, '"')
	b = strconv.AppendInt(b, size, 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, mtimeNanos, 16)
	b = append(b, '"')
	return string(b)
}
