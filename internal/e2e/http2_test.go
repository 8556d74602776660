package e2e

import (
	"net/http"
	"testing"

	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// server.http2 decides what ALPN offers: a client that offers h2 and HTTP/1.1, as
// the go command does, gets HTTP/2 by default and HTTP/1.1 with the setting off,
// and the go command downloads either way.
func TestHTTP2Setting(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	p := newPKI(t)
	for _, tc := range []struct {
		name      string
		http2     bool
		wantProto string
	}{
		{"default", true, "HTTP/2.0"},
		{"off", false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tlsConfigFor(p, upstream.URL)
			cfg.Auth.Anonymous = true
			cfg.Server.HTTP2 = tc.http2
			url := startApp(t, cfg)

			c := clientTrusting(t, p.CAFile)
			c.Transport.(*http.Transport).ForceAttemptHTTP2 = true // offer h2, as the go command's client does
			resp, err := c.Get(url + "/" + proxytest.HelloPath + "/@v/list")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != tc.wantProto {
				t.Errorf("GET list: %s over %s, want 200 over %s", resp.Status, resp.Proto, tc.wantProto)
			}

			g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
			if _, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0"); err != nil {
				t.Fatalf("go mod download: %v\n%s", err, stderr)
			}
		})
	}
}
