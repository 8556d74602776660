package server

import (
	"log/slog"
	"net/http"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/upstream"
	"github.com/modgate/modgate/internal/version"
)

// newChain builds the upstream chain: upstream.mirrors when set (each with its own
// TLS, credentials, timeouts and concurrency limit), else the upstream.proxies
// GOPROXY-style list sharing one transport (Options.UpstreamTransport, when set,
// applies to that list only: a mirror with its own settings has its own client).
// In offline mode the chain contacts no mirror at all.
func newChain(cfg config.Config, transport http.RoundTripper, log *slog.Logger, m *metrics.Metrics) (*upstream.Chain, error) {
	ucfg := upstream.Config{
		ConnectTimeout:  cfg.Upstream.ConnectTimeout.D(),
		HeaderTimeout:   cfg.Upstream.HeaderTimeout.D(),
		BodyIdleTimeout: cfg.Upstream.BodyIdleTimeout.D(),
		Retries:         cfg.Upstream.Retries,
		RetryBackoff:    cfg.Upstream.RetryBackoff.D(),
		UserAgent:       "modgate/" + version.Version,
		Offline:         cfg.Upstream.Offline,
	}
	var entries []upstream.Entry
	if len(cfg.Upstream.Mirrors) > 0 {
		for _, mc := range cfg.Upstream.Mirrors {
			e, err := upstream.NewMirror(upstream.MirrorConfig{
				URL:                 mc.URL,
				FallThroughAnyError: mc.OnError == "next",
				CAFile:              mc.CAFile,
				ClientCertFile:      mc.ClientCertFile,
				ClientKeyFile:       mc.ClientKeyFile,
				Username:            mc.Username,
				PasswordFile:        mc.PasswordFile,
				ConnectTimeout:      mc.ConnectTimeout.D(),
				HeaderTimeout:       mc.HeaderTimeout.D(),
				BodyIdleTimeout:     mc.BodyIdleTimeout.D(),
				MaxConcurrency:      mc.MaxConcurrency,
			}, ucfg)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
		}
	} else {
		var err error
		if entries, err = upstream.ParseList(cfg.UpstreamList()); err != nil {
			return nil, err
		}
	}
	return upstream.NewChain(entries, ucfg, transport, log, m), nil
}
