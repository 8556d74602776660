package server

import "net/http"

// withSecureHeaders sets the response headers every modgate answer carries,
// whatever handler (or error path) writes it: no MIME sniffing (a module zip or
// an error line must never be rendered as HTML), no framing (clickjacking of the
// API and any page), no Referer leaking module paths or tokens in URLs to other
// sites, and HSTS when serving TLS. A handler may still override them.
func (s *Server) withSecureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		setShared(h, "X-Content-Type-Options", hvNosniff)
		setShared(h, "X-Frame-Options", hvDeny)
		setShared(h, "Referrer-Policy", hvNoReferrer)
		if r.TLS != nil {
			setShared(h, "Strict-Transport-Security", hvHSTS)
		}
		next.ServeHTTP(w, r)
	})
}
