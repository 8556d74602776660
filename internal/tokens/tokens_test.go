package tokens

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

// newStore returns a Store over pool, with cfg's zero fields defaulted.
func newStore(t testing.TB, pool *pgxpool.Pool, cfg Config) *Store {
	t.Helper()
	s, err := NewStore(pool, cfg)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s
}

// startListener runs s.Listen until the test ends and waits until it listens.
func startListener(t testing.TB, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen returned %v", err)
		}
	})
	waitFor(t, 10*time.Second, "listener to connect", s.Listening)
}

func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func create(t testing.TB, s *Store, req CreateRequest) (string, Token) {
	t.Helper()
	secret, tok, err := s.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("Create(%+v): %v", req, err)
	}
	return secret, tok
}

// wantRefused checks err is an Unauthenticated refusal with the given public
// reason that does not carry secret.
func wantRefused(t testing.TB, err error, reason, secret string) {
	t.Helper()
	if err == nil {
		t.Fatalf("verification succeeded, want refusal %q", reason)
	}
	if !errors.Is(err, derrors.Unauthenticated) {
		t.Errorf("err = %v, want derrors.Unauthenticated", err)
	}
	if got := derrors.PublicMessage(err); got != reason {
		t.Errorf("public message = %q, want %q", got, reason)
	}
	if tail := secret[max(0, len(secret)-randomLen):]; len(tail) >= 8 && strings.Contains(err.Error(), tail) {
		t.Errorf("error %q contains the secret", err)
	}
}

func TestCreateAndVerify(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{})
	ctx := context.Background()

	secret, tok, err := s.Create(ctx, CreateRequest{
		Subject:     "ci-payments",
		Teams:       []string{"payments", "platform", "payments"},
		Scopes:      []string{ScopePublish, ScopePull},
		TTL:         720 * time.Hour,
		Description: "CI for payments-api",
		CreatedBy:   "alice",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^` + SecretPattern + `$`).MatchString(secret) {
		t.Errorf("secret %q does not match SecretPattern", secret)
	}
	if !strings.HasPrefix(secret, auth.APITokenPrefix+tok.ID+"_") {
		t.Errorf("secret does not start with mgt_<id>_ (id %q)", tok.ID)
	}
	if got, want := tok.Teams, []string{"payments", "platform"}; !slices.Equal(got, want) {
		t.Errorf("Teams = %q, want %q (sorted, deduplicated)", got, want)
	}
	if tok.ExpiresAt == nil || tok.ExpiresAt.Sub(tok.CreatedAt) != 720*time.Hour {
		t.Errorf("ExpiresAt = %v, CreatedAt %v: want 720h apart", tok.ExpiresAt, tok.CreatedAt)
	}
	if tok.Description != "CI for payments-api" || tok.CreatedBy != "alice" || tok.RevokedAt != nil || tok.LastUsedAt != nil {
		t.Errorf("token = %+v", tok)
	}

	want := identity.Identity{
		Subject: "ci-payments",
		Teams:   []string{"payments", "platform"},
		Method:  identity.MethodToken,
		TokenID: tok.ID,
		Scopes:  []string{ScopePublish, ScopePull},
	}
	for i, path := range []string{"database", "cache"} {
		id, err := s.VerifyToken(ctx, secret)
		if err != nil {
			t.Fatalf("VerifyToken (%s): %v", path, err)
		}
		if id.Subject != want.Subject || !slices.Equal(id.Teams, want.Teams) || id.Method != want.Method ||
			id.TokenID != want.TokenID || !slices.Equal(id.Scopes, want.Scopes) || id.CertFingerprint != "" {
			t.Errorf("VerifyToken (%s) = %+v, want %+v", path, *id, want)
		}
		if n := s.cache.len(); n != 1 {
			t.Errorf("after verification %d, cache holds %d entries, want 1", i+1, n)
		}
		// Callers own what they get: changing it must not change the cache.
		id.Teams[0] = "mallory"
	}

	got, err := s.Get(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUsedAt == nil {
		t.Error("last_used_at not recorded")
	}
}

func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{})
	ctx := context.Background()

	good, tok := create(t, s, CreateRequest{Subject: "ci", Teams: []string{"payments"}})
	expired, expTok := create(t, s, CreateRequest{Subject: "ci", TTL: time.Hour})
	if _, err := pool.Exec(ctx, "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", expTok.ID); err != nil {
		t.Fatal(err)
	}
	revoked, revTok := create(t, s, CreateRequest{Subject: "ci"})
	if _, err := s.Revoke(ctx, revTok.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	// The same id with another random part: what an attacker who read the id in
	// a listing or the audit trail would try.
	_, fresh, err := newSecret()
	if err != nil {
		t.Fatal(err)
	}
	wrongRandom := auth.APITokenPrefix + tok.ID + fresh[len(auth.APITokenPrefix)+idLen:]
	unknownID := fresh

	tests := []struct {
		name, secret, reason string
	}{
		{"fail/wrong-random-same-id", wrongRandom, auth.ReasonAPITokenUnknown},
		{"fail/unknown-id", unknownID, auth.ReasonAPITokenUnknown},
		{"fail/expired", expired, auth.ReasonAPITokenExpired},
		{"fail/revoked", revoked, auth.ReasonAPITokenRevoked},
		{"fail/truncated", good[:len(good)-1], auth.ReasonAPITokenMalformed},
		{"fail/uppercase", strings.ToUpper(good[:4]) + good[4:], auth.ReasonAPITokenMalformed},
		{"fail/no-separator", strings.Replace(good, "_", "x", 2), auth.ReasonAPITokenMalformed},
		{"fail/bad-alphabet", good[:len(good)-1] + "1", auth.ReasonAPITokenMalformed},
		{"fail/prefix-only", auth.APITokenPrefix, auth.ReasonAPITokenMalformed},
		{"fail/empty", "", auth.ReasonAPITokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := s.VerifyToken(ctx, tt.secret)
			if id != nil {
				t.Errorf("identity %+v returned with a refusal", *id)
			}
			wantRefused(t, err, tt.reason, tt.secret)
		})
	}
	t.Run("ok/good-still-works", func(t *testing.T) {
		t.Parallel()
		if _, err := s.VerifyToken(ctx, good); err != nil {
			t.Fatal(err)
		}
	})
}

// A token that expires while cached stops working at its expiry, not a cache
// TTL later.
func TestExpiryWhileCached(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	secret, tok := create(t, s, CreateRequest{Subject: "ci", TTL: time.Hour})
	if _, err := s.VerifyToken(ctx, secret); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return tok.ExpiresAt.Add(time.Millisecond) }
	_, err := s.VerifyToken(ctx, secret)
	wantRefused(t, err, auth.ReasonAPITokenExpired, secret)
}

// Two Stores over two pools on one database are two replicas. A revocation
// through one, or by SQL, must be refused by the other within 5 s.
func TestRevocationReachesOtherReplica(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cacheTTL time.Duration
		listen   bool
		bySQL    bool
		within   time.Duration
	}{
		// The listener alone: a cache TTL of an hour shows eviction came from NOTIFY.
		{"ok/notify", time.Hour, true, false, time.Second},
		{"ok/notify-revoked-by-sql", time.Hour, true, true, time.Second},
		// No listener: the default TTL is the fallback.
		{"ok/ttl-fallback", DefaultCacheTTL, false, false, DefaultCacheTTL + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			poolA, url := pgtest.NewPool(t)
			replicaA := newStore(t, poolA, Config{})
			replicaB := newStore(t, pgtest.Pool(t, url), Config{CacheTTL: tt.cacheTTL})
			if tt.listen {
				startListener(t, replicaB)
			}
			ctx := context.Background()
			secret, tok := create(t, replicaA, CreateRequest{Subject: "ci", Teams: []string{"payments"}})
			if _, err := replicaB.VerifyToken(ctx, secret); err != nil {
				t.Fatal(err)
			}
			if replicaB.cache.len() != 1 {
				t.Fatal("replica B did not cache the token")
			}

			start := time.Now()
			if tt.bySQL {
				if _, err := poolA.Exec(ctx, "UPDATE api_tokens SET revoked_at = now(), revoked_by = 'dba' WHERE id = $1", tok.ID); err != nil {
					t.Fatal(err)
				}
			} else if _, err := replicaA.Revoke(ctx, tok.ID, "security"); err != nil {
				t.Fatal(err)
			}
			var err error
			for {
				_, err = replicaB.VerifyToken(ctx, secret)
				if err != nil || time.Since(start) > 10*time.Second {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			elapsed := time.Since(start)
			wantRefused(t, err, auth.ReasonAPITokenRevoked, secret)
			t.Logf("revocation effective on replica B after %v", elapsed)
			if elapsed > tt.within {
				t.Errorf("revocation took %v to reach replica B, want at most %v", elapsed, tt.within)
			}
		})
	}
}

// The listener survives losing its connection: it reconnects, and revocations
// made around the outage still reach the cache.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	poolA, url := pgtest.NewPool(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	replicaA := newStore(t, poolA, Config{})
	replicaB := newStore(t, pgtest.Pool(t, url), Config{
		CacheTTL: time.Hour,
		Logger:   slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil)),
	})
	startListener(t, replicaB)
	ctx := context.Background()

	for round := range 2 {
		secret, tok := create(t, replicaA, CreateRequest{Subject: fmt.Sprintf("ci-%d", round)})
		if _, err := replicaB.VerifyToken(ctx, secret); err != nil {
			t.Fatal(err)
		}
		// Kill the listener's backend, as a PostgreSQL restart or failover would.
		var killed int
		err := poolA.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, ListenerApplicationName).Scan(&killed)
		if err != nil || killed != 1 {
			t.Fatalf("terminating listener: killed %d, err %v", killed, err)
		}
		// Revoke at once, most likely before the listener is back: the catch-up
		// on reconnection must cover it.
		start := time.Now()
		if _, err := replicaA.Revoke(ctx, tok.ID, "security"); err != nil {
			t.Fatal(err)
		}
		for {
			_, err = replicaB.VerifyToken(ctx, secret)
			if err != nil || time.Since(start) > 10*time.Second {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		wantRefused(t, err, auth.ReasonAPITokenRevoked, secret)
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("round %d: revocation took %v across a listener reconnection", round, elapsed)
		}
		waitFor(t, 15*time.Second, "listener to reconnect", replicaB.Listening)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "revocation listener disconnected") {
		t.Errorf("disconnection not logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestList(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{})
	ctx := context.Background()

	s1, alice1 := create(t, s, CreateRequest{Subject: "alice", Scopes: []string{ScopePull}})
	s2, alice2 := create(t, s, CreateRequest{Subject: "alice"})
	s3, bob := create(t, s, CreateRequest{Subject: "bob", TTL: time.Hour})
	if _, err := s.Revoke(ctx, alice2.ID, "alice"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		filter ListFilter
		want   []string
	}{
		{"ok/active", ListFilter{}, []string{alice1.ID, bob.ID}},
		{"ok/all", ListFilter{IncludeInactive: true}, []string{alice1.ID, alice2.ID, bob.ID}},
		{"ok/subject", ListFilter{Subject: "alice"}, []string{alice1.ID}},
		{"ok/subject-all", ListFilter{Subject: "alice", IncludeInactive: true}, []string{alice1.ID, alice2.ID}},
		{"ok/nobody", ListFilter{Subject: "carol", IncludeInactive: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			toks, err := s.List(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, tok := range toks {
				ids = append(ids, tok.ID)
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("ids = %q, want %q", ids, tt.want)
			}
			dump := fmt.Sprintf("%+v %#v", toks, toks)
			for _, secret := range []string{s1, s2, s3} {
				random := secret[len(secret)-randomLen:]
				if strings.Contains(dump, random) || strings.Contains(dump, base64.StdEncoding.EncodeToString([]byte(secret))) {
					t.Errorf("listing contains a secret: %s", dump)
				}
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{})
	ctx := context.Background()
	secret, tok := create(t, s, CreateRequest{Subject: "ci"})
	_, other := create(t, s, CreateRequest{Subject: "ci"})
	_, unknown, _ := newSecret()

	tests := []struct {
		name     string
		arg      string
		wantKind error
	}{
		{"ok/by-id", other.ID, nil},
		{"ok/by-leaked-secret", secret, nil},
		{"fail/already-revoked", tok.ID, derrors.Conflict},
		{"fail/unknown", unknown[len(auth.APITokenPrefix) : len(auth.APITokenPrefix)+idLen], derrors.NotFound},
		{"fail/not-an-id", "payments-ci", derrors.InvalidArgument},
	}
	// Sequential: already-revoked depends on by-leaked-secret.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Revoke(ctx, tt.arg, "security")
			if tt.wantKind == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got.RevokedAt == nil || got.RevokedBy != "security" {
					t.Errorf("revoked token = %+v", got)
				}
				return
			}
			if !errors.Is(err, tt.wantKind) {
				t.Fatalf("err = %v, want %v", err, tt.wantKind)
			}
			if strings.Contains(err.Error(), secret[len(secret)-randomLen:]) {
				t.Errorf("error %q contains a secret", err)
			}
		})
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{})
	tests := []struct {
		name string
		req  CreateRequest
		ok   bool
	}{
		{"ok/minimal", CreateRequest{Subject: "ci"}, true},
		{"ok/every-scope", CreateRequest{Subject: "ci", Scopes: KnownScopes()}, true},
		{"fail/no-subject", CreateRequest{Teams: []string{"payments"}}, false},
		{"fail/blank-subject", CreateRequest{Subject: "  "}, false},
		{"fail/unknown-scope", CreateRequest{Subject: "ci", Scopes: []string{"root"}}, false},
		{"fail/negative-ttl", CreateRequest{Subject: "ci", TTL: -time.Hour}, false},
		{"fail/empty-team", CreateRequest{Subject: "ci", Teams: []string{""}}, false},
		{"fail/team-with-comma", CreateRequest{Subject: "ci", Teams: []string{"a,b"}}, false},
		{"fail/newline-in-description", CreateRequest{Subject: "ci", Description: "a\nb"}, false},
		{"fail/long-description", CreateRequest{Subject: "ci", Description: strings.Repeat("x", 501)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secret, _, err := s.Create(context.Background(), tt.req)
			if tt.ok != (err == nil) {
				t.Fatalf("Create: err = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok && (!errors.Is(err, derrors.InvalidArgument) || secret != "") {
				t.Errorf("err = %v, secret %q: want InvalidArgument and no secret", err, secret)
			}
		})
	}
}

// last_used_at is written at most once a minute, however often the token is
// verified from the database.
func TestLastUsedThrottled(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	s := newStore(t, pool, Config{CacheTTL: time.Millisecond})
	ctx := context.Background()
	secret, tok := create(t, s, CreateRequest{Subject: "ci"})
	var first time.Time
	for i := range 5 {
		if _, err := s.VerifyToken(ctx, secret); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.LastUsedAt == nil {
			t.Fatal("last_used_at not set")
		}
		if i == 0 {
			first = *got.LastUsedAt
		} else if !got.LastUsedAt.Equal(first) {
			t.Errorf("verification %d rewrote last_used_at (%v, first %v)", i+1, got.LastUsedAt, first)
		}
		time.Sleep(3 * time.Millisecond) // past the cache TTL: the next one asks the database
	}
	// A minute later it is written again.
	s.now = func() time.Time { return time.Now().Add(2 * lastUsedInterval) }
	if _, err := pool.Exec(ctx, "UPDATE api_tokens SET last_used_at = last_used_at - interval '2 minutes' WHERE id = $1", tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyToken(ctx, secret); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, tok.ID)
	if got.LastUsedAt == nil || !got.LastUsedAt.After(first) {
		t.Errorf("last_used_at = %v after a minute, want later than %v", got.LastUsedAt, first)
	}
}

// Nothing the store or the Authenticator logs, at any level, contains a secret.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	poolA, url := pgtest.NewPool(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newStore(t, poolA, Config{Logger: logger})
	replicaB := newStore(t, pgtest.Pool(t, url), Config{Logger: logger, CacheTTL: time.Hour})
	startListener(t, replicaB)
	a, err := auth.NewAuthenticator(auth.AuthenticatorConfig{Tokens: replicaB, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	secret, tok := create(t, s, CreateRequest{Subject: "ci", Teams: []string{"payments"}})
	_, fresh, _ := newSecret()
	wrong := auth.APITokenPrefix + tok.ID + fresh[len(auth.APITokenPrefix)+idLen:]
	authenticate := func(secret string, basic bool) (*identity.Identity, error) {
		r := httptest.NewRequest("GET", "https://modgate.test/github.com/x/y/@v/list", nil)
		if basic {
			r.SetBasicAuth("token", secret)
		} else {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
		return a.Authenticate(r)
	}
	for _, basic := range []bool{false, true} {
		id, err := authenticate(secret, basic)
		if err != nil || id.TokenID != tok.ID || id.Method != identity.MethodToken {
			t.Fatalf("Authenticate (basic %v) = %+v, %v", basic, id, err)
		}
		_, err = authenticate(wrong, basic)
		wantRefused(t, err, auth.ReasonAPITokenUnknown, wrong)
	}
	if _, err := s.Revoke(ctx, secret, "security"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "revocation", func() bool {
		_, err := authenticate(secret, false)
		return err != nil
	})
	// Kill the listener so its error path is logged too.
	if _, err := poolA.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, ListenerApplicationName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "listener to reconnect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(buf.String(), "revocation listener connected") == 2
	})

	mu.Lock()
	defer mu.Unlock()
	logs := buf.String()
	for _, want := range []string{"authentication failed", tok.ID} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q; the test would not see secrets in them:\n%s", want, logs)
		}
	}
	for _, s := range []string{secret, wrong} {
		random := s[len(s)-randomLen:]
		if strings.Contains(logs, random) || strings.Contains(logs, base64.StdEncoding.EncodeToString([]byte("token:"+s))) {
			t.Errorf("logs contain a secret:\n%s", logs)
		}
	}
}

// Many goroutines verifying, creating and revoking at once, across two replicas
// (run with -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	poolA, url := pgtest.NewPool(t)
	replicaA := newStore(t, poolA, Config{CacheTTL: 20 * time.Millisecond})
	replicaB := newStore(t, pgtest.Pool(t, url), Config{CacheTTL: 20 * time.Millisecond})
	startListener(t, replicaA)
	startListener(t, replicaB)
	ctx := context.Background()

	const n = 6
	secrets := make([]string, n)
	toks := make([]Token, n)
	for i := range n {
		secrets[i], toks[i] = create(t, replicaA, CreateRequest{Subject: fmt.Sprintf("ci-%d", i), Teams: []string{"t"}})
	}
	// Tokens 0..2 stay valid throughout; 3..5 are revoked during the run.
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := range 16 {
		wg.Go(func() {
			store := replicaA
			if g%2 == 1 {
				store = replicaB
			}
			for i := range 60 {
				k := (g + i) % n
				id, err := store.VerifyToken(ctx, secrets[k])
				switch {
				case k < 3 && err != nil:
					errs <- fmt.Errorf("valid token %d refused: %v", k, err)
				case err == nil && (id.TokenID != toks[k].ID || id.Subject != toks[k].Subject):
					errs <- fmt.Errorf("token %d verified as %+v", k, *id)
				case err != nil && !errors.Is(err, derrors.Unauthenticated):
					errs <- fmt.Errorf("token %d: %v", k, err)
				}
			}
		})
	}
	wg.Go(func() {
		for k := 3; k < n; k++ {
			if _, err := replicaB.Revoke(ctx, toks[k].ID, "security"); err != nil {
				errs <- err
			}
			if _, _, err := replicaA.Create(ctx, CreateRequest{Subject: "extra"}); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for k := 3; k < n; k++ {
		for _, store := range []*Store{replicaA, replicaB} {
			_, err := store.VerifyToken(ctx, secrets[k])
			wantRefused(t, err, auth.ReasonAPITokenRevoked, secrets[k])
		}
	}
}

// The database being unreachable is an outage (503), not a refusal (401).
func TestVerifyStoreUnavailable(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	s := newStore(t, pool, Config{})
	secret, _ := create(t, s, CreateRequest{Subject: "ci"})
	closed := pgtest.Pool(t, url)
	closed.Close()
	down := newStore(t, closed, Config{})
	_, err := down.VerifyToken(context.Background(), secret)
	if !errors.Is(err, derrors.Unavailable) || derrors.PublicMessage(err) != auth.ReasonAPITokenStoreUnavailable {
		t.Fatalf("err = %v, want Unavailable %q", err, auth.ReasonAPITokenStoreUnavailable)
	}
	if strings.Contains(err.Error(), secret[len(secret)-randomLen:]) {
		t.Errorf("error contains the secret: %v", err)
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	id, secret, err := newSecret()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"ok/id", id, id, true},
		{"ok/secret", secret, id, true},
		{"fail/short-id", id[1:], "", false},
		{"fail/uppercase-id", strings.ToUpper(id), "", false},
		{"fail/secret-with-space", secret + " ", "", false},
		{"fail/empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseID(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseID(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func BenchmarkVerifyTokenCacheHit(b *testing.B) {
	pool, _ := pgtest.NewPool(b)
	s := newStore(b, pool, Config{CacheTTL: time.Hour})
	secret, _ := create(b, s, CreateRequest{Subject: "ci", Teams: []string{"payments", "platform"}, Scopes: []string{ScopePull}})
	ctx := context.Background()
	if _, err := s.VerifyToken(ctx, secret); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.VerifyToken(ctx, secret); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerifyTokenCacheMiss(b *testing.B) {
	pool, _ := pgtest.NewPool(b)
	s := newStore(b, pool, Config{CacheTTL: time.Nanosecond})
	secret, _ := create(b, s, CreateRequest{Subject: "ci"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.VerifyToken(ctx, secret); err != nil {
			b.Fatal(err)
		}
	}
}
