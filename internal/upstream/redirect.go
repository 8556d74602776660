package upstream

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// errInsecureRedirect refuses a redirect from https to plain http: whatever the
// mirror sends next (and the request's own headers) would cross the network in
// clear text, and a module zip read over http could be altered on the way.
var errInsecureRedirect = errors.New("upstream: refusing a redirect from https to http")

// checkRedirect is every upstream client's redirect policy. At most 10 redirects;
// https→http is refused; and a redirect that changes the origin (scheme, host or
// port) of the first request loses the mirror's Basic credentials. (The client
// certificate is dropped the same way by originTransport.) Go's own policy keeps
// the Authorization header for a redirect to the same host on another scheme or
// port — an https→http hop to the same host would send the password in clear.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("upstream: stopped after 10 redirects")
	}
	prev := via[len(via)-1]
	if strings.EqualFold(prev.URL.Scheme, "https") && !strings.EqualFold(req.URL.Scheme, "https") {
		return errInsecureRedirect
	}
	if !sameOrigin(req.URL, via[0].URL) {
		req.Header.Del("Authorization")
		req.Header.Del("Proxy-Authorization")
	}
	return nil
}

// sameOrigin reports whether a and b have the same scheme, host and port (with
// the scheme's default port filled in).
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// originTransport sends requests for the mirror's own origin through the
// transport that presents its client certificate, and everything else — where a
// redirect led — through one that presents none, so a mirror's TLS client
// identity is never offered to another server.
type originTransport struct {
	origin *url.URL
	own    http.RoundTripper
	other  http.RoundTripper
}

func (t *originTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if sameOrigin(req.URL, t.origin) {
		return t.own.RoundTrip(req)
	}
	return t.other.RoundTrip(req)
}
