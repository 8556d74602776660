package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/server"
	"github.com/modgate/modgate/internal/tokens"
)

// watchDatabase starts the database monitor (modgate_database_up, log lines on
// losing and regaining PostgreSQL) until Close.
func (a *App) watchDatabase(reg prometheus.Registerer) {
	if a.pool == nil {
		return
	}
	a.dbMonitor = database.NewMonitor(a.pool, database.MonitorConfig{Logger: a.log, Registerer: reg})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.dbMonitor.Run(ctx); close(done) }()
	a.closers = append(a.closers, func() { stop(); <-done })
}

// addDegradableReadyChecks registers the readiness checks of the parts that may
// be down while the replica still serves. /readyz fails only where serving is
// impossible: audit.require with nowhere to record. An unreachable database
// is reported as degraded (requests still authenticate by certificate, OIDC or
// a recently confirmed API token, and are recorded in the spool), as are a
// revocation listener that is reconnecting and, without audit.require, an audit
// trail that cannot record.
func (a *App) addDegradableReadyChecks() {
	if a.audit != nil {
		require := a.cfg.Audit.Require
		a.server.AddReadyCheck("audit", func(context.Context) (string, error) {
			err := a.audit.Healthy()
			if err != nil && !require {
				return "", server.Degraded("not recording: %v (audit.require is off, so requests are still served)", err)
			}
			return "", err
		})
	}
	if a.dbMonitor != nil {
		a.server.AddReadyCheck("database", func(context.Context) (string, error) {
			// The monitor's last answer (at most a few seconds old): asking here
			// could spend the whole probe's deadline on a blackholed address.
			h := a.dbMonitor.Health()
			if h.Up {
				return "", nil
			}
			return "", server.Degraded("PostgreSQL unreachable for %s; serving with cached API tokens, the audit spool and this replica's copy of the private version ledger; publish, delete, token administration and audit queries answer 503",
				time.Since(h.Since).Round(time.Second))
		})
	}
	if a.tokens != nil {
		a.server.AddReadyCheck("tokens", func(context.Context) (string, error) {
			if a.tokens.Listening() {
				return "revocation listener connected", nil
			}
			return "", server.Degraded("revocation listener reconnecting; API tokens confirmed within %s are accepted while PostgreSQL is unreachable", a.cfg.Auth.APITokenStaleIfError.D())
		})
	}
}

// tokenStoreConfig is the API token store's configuration.
func (a *App) tokenStoreConfig() tokens.Config {
	return tokens.Config{Logger: a.log, StaleIfError: a.cfg.Auth.APITokenStaleIfError.D()}
}

// newFillLocker returns the cross-replica fill lock over dbURL.
func (a *App) newFillLocker(dbURL string) (*database.Locker, error) {
	l, err := database.NewLocker(dbURL, fillLockConns, database.WithLockerLogger(a.log))
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	return l, nil
}
