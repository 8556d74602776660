package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/tokens"
)

// runTokenCmd runs `modgate token args...` and returns stdout and stderr.
func runTokenCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runToken(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// The operator's session: create a token for CI, see it listed, use it,
// revoke it, see it refused.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// The store stands for a running modgate replica, listening for revocations.
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan error, 1)
	go func() { listening <- store.Listen(ctx) }()
	t.Cleanup(func() { cancel(); <-listening })
	secretRE := regexp.MustCompile(tokens.SecretPattern)

	out, stderr, err := runTokenCmd(t, "create", "--subject", "ci-payments", "--team", "payments", "--team", "platform,sre",
		"--scope", "pull", "--ttl", "24h", "--description", "CI for payments-api",
		"--proxy-url", "https://modgate.corp.example:8443", "--database-url", url)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, stderr)
	}
	secret := secretRE.FindString(out)
	if secret == "" {
		t.Fatalf("create printed no secret:\n%s", out)
	}
	for _, want := range []string{
		"machine modgate.corp.example:8443 login token password " + secret,
		"go env -w GOPROXY=https://modgate.corp.example:8443",
		"payments, platform, sre",
		"scopes:   pull",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	id, err := store.VerifyToken(ctx, secret)
	if err != nil {
		t.Fatalf("created token does not verify: %v", err)
	}
	if id.Subject != "ci-payments" || strings.Join(id.Teams, ",") != "payments,platform,sre" || strings.Join(id.Scopes, ",") != "pull" {
		t.Errorf("identity = %+v", *id)
	}

	// --secret-only prints the secret alone, for $(...) in scripts.
	out2, _, err := runTokenCmd(t, "create", "--secret-only", "--subject", "dev-alice", "--ttl", "0", "--database-url", url)
	if err != nil {
		t.Fatal(err)
	}
	secret2 := strings.TrimSpace(out2)
	if !regexp.MustCompile(`^` + tokens.SecretPattern + `$`).MatchString(secret2) {
		t.Fatalf("--secret-only printed %q", out2)
	}

	list, _, err := runTokenCmd(t, "list", "--database-url", url)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID", "LAST USED", id.TokenID, "ci-payments", "payments,platform,sre", "dev-alice", "never", "active", "CI for payments-api"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	if secretRE.MatchString(list) || strings.Contains(list, secret[len(secret)-20:]) {
		t.Errorf("list shows a secret:\n%s", list)
	}
	only, _, err := runTokenCmd(t, "list", "--subject", "dev-alice", "--database-url", url)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(only, "ci-payments") || !strings.Contains(only, "dev-alice") {
		t.Errorf("list --subject dev-alice:\n%s", only)
	}

	// Flags after the id are accepted.
	out, _, err = runTokenCmd(t, "revoke", id.TokenID, "--by", "security", "--database-url", url)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if !strings.Contains(out, "Revoked API token "+id.TokenID) {
		t.Errorf("revoke printed %q", out)
	}
	revoked := time.Now()
	for {
		_, err := store.VerifyToken(ctx, secret)
		if derrors.PublicMessage(err) == auth.ReasonAPITokenRevoked {
			break
		}
		if time.Since(revoked) > 5*time.Second {
			t.Fatalf("5s after revoke, VerifyToken err = %v, want %q", err, auth.ReasonAPITokenRevoked)
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, _, err = runTokenCmd(t, "revoke", "--database-url", url, id.TokenID)
	if err != nil || !strings.Contains(out, "already revoked") || !strings.Contains(out, "by security") {
		t.Errorf("second revoke: %q, %v", out, err)
	}

	active, _, _ := runTokenCmd(t, "list", "--database-url", url)
	all, _, _ := runTokenCmd(t, "list", "--all", "--database-url", url)
	if strings.Contains(active, id.TokenID) || !strings.Contains(all, id.TokenID) || !strings.Contains(all, "revoked") {
		t.Errorf("revoked token listed without --all or missing with it:\n%s\n%s", active, all)
	}
}

func TestTokenCommandErrors(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	leaked := "mgt_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52) // well formed, never created
	tests := []struct {
		name       string
		args       []string
		wantErr    string // substring; "" means success
		wantStderr string
	}{
		{"ok/help", []string{"--help"}, "", "usage: modgate token"},
		{"ok/create-help", []string{"create", "--help"}, "", "-subject"},
		{"fail/no-subcommand", nil, "missing subcommand", "usage: modgate token"},
		{"fail/unknown-subcommand", []string{"mint"}, "unknown subcommand", ""},
		{"fail/no-subject", []string{"create", "--database-url", url}, "subject is required", ""},
		{"fail/unknown-scope", []string{"create", "--subject", "ci", "--scope", "root", "--database-url", url}, "unknown scope", ""},
		{"fail/no-database", []string{"list", "--database-url", ""}, "no database", ""},
		{"fail/bad-database-url", []string{"list", "--database-url", "postgres://%zz"}, "invalid database URL", ""},
		{"fail/database-unreachable", []string{"list", "--database-url", "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"}, "cannot administer API tokens now: modgate's database is unreachable", ""},
		{"fail/revoke-no-id", []string{"revoke", "--database-url", url}, "exactly one", ""},
		{"fail/revoke-unknown", []string{"revoke", "aaaaaaaaaaaaaaaa", "--database-url", url}, "no API token", ""},
		{"fail/revoke-unknown-secret", []string{"revoke", leaked, "--database-url", url}, "no API token", ""},
		{"fail/revoke-garbage", []string{"revoke", "mgt_short", "--database-url", url}, "not an API token id", ""},
		{"fail/bad-proxy-url", []string{"create", "--subject", "ci", "--proxy-url", "modgate", "--database-url", url}, "no host", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, err := runTokenCmd(t, tt.args...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
			if err != nil && strings.Contains(err.Error(), strings.Repeat("b", 52)) {
				t.Errorf("error echoes a secret: %v", err)
			}
		})
	}
}
