package tokens

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

// fakeClock is a settable Store.now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// While the database cannot be asked, a token it confirmed within the
// stale-if-error window keeps its identity; anything else is 503, and expiry
// still holds.
func TestStaleIfError(t *testing.T) {
	t.Parallel()
	const window = 30 * time.Minute
	tests := []struct {
		name       string
		stale      time.Duration
		ttl        time.Duration // of the token; 0: never expires
		verify     bool          // verified before the outage
		catchingUp bool
		after      time.Duration // into the outage
		wantErr    error         // nil: accepted
		wantReason string
	}{
		{"ok/within-window", window, 0, true, false, 10 * time.Minute, nil, ""},
		{"ok/just-before-window-ends", window, 0, true, false, window - time.Second, nil, ""},
		{"fail/window-over", window, 0, true, false, window, derrors.Unavailable, auth.ReasonAPITokenStoreUnavailable},
		{"fail/never-verified", window, 0, false, false, time.Second, derrors.Unavailable, auth.ReasonAPITokenStoreUnavailable},
		{"fail/stale-if-error-off", 0, 0, true, false, time.Minute, derrors.Unavailable, auth.ReasonAPITokenStoreUnavailable},
		{"fail/expired-during-outage", window, 5 * time.Minute, true, false, 6 * time.Minute, derrors.Unauthenticated, auth.ReasonAPITokenExpired},
		{"fail/catching-up", window, 0, true, true, time.Minute, derrors.Unavailable, auth.ReasonAPITokenStoreUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, url := pgtest.NewPool(t)
			admin := newStore(t, pool, Config{})
			secret, tok := create(t, admin, CreateRequest{Subject: "ci", Teams: []string{"payments"}, Scopes: []string{ScopePull}, TTL: tt.ttl})

			// The replica's own pool, closed to make the database unreachable.
			down := pgtest.Pool(t, url)
			s := newStore(t, down, Config{StaleIfError: tt.stale})
			clock := &fakeClock{t: time.Now()}
			s.now = clock.now
			ctx := context.Background()
			if tt.verify {
				if _, err := s.VerifyToken(ctx, secret); err != nil {
					t.Fatal(err)
				}
			}
			down.Close()
			s.catchingUp.Store(tt.catchingUp)
			clock.advance(tt.after)

			for range 2 { // the second answer comes from the re-stored entry
				got, err := s.VerifyToken(ctx, secret)
				if tt.wantErr == nil {
					if err != nil {
						t.Fatalf("VerifyToken during the outage: %v", err)
					}
					if got.Subject != "ci" || got.TokenID != tok.ID || !slices.Equal(got.Teams, []string{"payments"}) || !slices.Equal(got.Scopes, []string{ScopePull}) {
						t.Errorf("identity = %+v, want the cached subject, teams and scopes", got)
					}
					continue
				}
				if !errors.Is(err, tt.wantErr) || derrors.PublicMessage(err) != tt.wantReason {
					t.Fatalf("err = %v (%q), want %v %q", err, derrors.PublicMessage(err), tt.wantErr, tt.wantReason)
				}
			}
		})
	}
}

// A revocation NOTIFY never delivered (the listener was away) still reaches a
// reconnecting replica: it reads the change log before trusting its cache, and
// evicts exactly the changed tokens.
func TestCatchUpAfterReconnect(t *testing.T) {
	t.Parallel()
	poolA, url := pgtest.NewPool(t)
	replicaA := newStore(t, poolA, Config{})
	replicaB := newStore(t, pgtest.Pool(t, url), Config{CacheTTL: time.Hour, StaleIfError: time.Hour})
	ctx := context.Background()
	revoked, revokedTok := create(t, replicaA, CreateRequest{Subject: "ci-revoked"})
	kept, _ := create(t, replicaA, CreateRequest{Subject: "ci-kept"})
	narrowed, narrowedTok := create(t, replicaA, CreateRequest{Subject: "ci-narrowed"})

	listen := func() (stop func()) {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { replicaB.Listen(lctx); close(done) }()
		waitFor(t, 10*time.Second, "listener to connect", replicaB.Listening)
		return func() { cancel(); <-done }
	}
	stop := listen()
	for _, s := range []string{revoked, kept, narrowed} {
		if _, err := replicaB.VerifyToken(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	stop()

	// Nobody listens on replica B: these announcements are lost.
	if _, err := replicaA.Revoke(ctx, revokedTok.ID, "security"); err != nil {
		t.Fatal(err)
	}
	if _, err := poolA.Exec(ctx, "UPDATE api_tokens SET scopes = '{pull}' WHERE id = $1", narrowedTok.ID); err != nil {
		t.Fatal(err)
	}
	if replicaB.cache.len() != 3 {
		t.Fatalf("replica B holds %d tokens before reconnecting, want 3", replicaB.cache.len())
	}

	stop = listen()
	defer stop()
	if replicaB.cache.len() != 1 {
		t.Errorf("after catching up replica B holds %d tokens, want 1 (the unchanged one)", replicaB.cache.len())
	}
	_, err := replicaB.VerifyToken(ctx, revoked)
	wantRefused(t, err, auth.ReasonAPITokenRevoked, revoked)
	if id, err := replicaB.VerifyToken(ctx, narrowed); err != nil || !slices.Equal(id.Scopes, []string{ScopePull}) {
		t.Errorf("narrowed token: %+v, %v; want scopes [pull]", id, err)
	}
	if _, err := replicaB.VerifyToken(ctx, kept); err != nil {
		t.Errorf("unchanged token: %v", err)
	}
}

// Token administration without the database is a 503 naming the operation.
func TestAdministrationUnavailable(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{})
	_, tok := create(t, s, CreateRequest{Subject: "ci"})
	pool.Close()
	ctx := context.Background()
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"fail/create", func() error { _, _, err := s.Create(ctx, CreateRequest{Subject: "x"}); return err }, "cannot create an API token now"},
		{"fail/list", func() error { _, err := s.List(ctx, ListFilter{}); return err }, "cannot list API tokens now"},
		{"fail/revoke", func() error { _, err := s.Revoke(ctx, tok.ID, "sec"); return err }, "cannot revoke API token " + tok.ID + " now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			want := tt.want + ": modgate's database is unreachable; try again when it is back"
			if !errors.Is(err, derrors.Unavailable) || derrors.PublicMessage(err) != want {
				t.Errorf("err = %v (%q), want Unavailable %q", err, derrors.PublicMessage(err), want)
			}
		})
	}
}
