package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/certgen"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

func TestClientCertificates(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	otherCA, err := certgen.NewCA("someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *certgen.CA, cn string, opts ...certgen.Option) *certgen.Leaf {
		t.Helper()
		leaf, err := ca.IssueClient(cn, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}

	payments := issue(pki.ca, "ci-payments", certgen.WithOU("payments"))
	twoTeams := issue(pki.ca, "ci-shared", certgen.WithOU("payments", "platform", "payments"))
	spiffe := issue(pki.ca, "builder",
		certgen.WithURI("spiffe://corp/team/platform/builder", "spiffe://corp/other/x"))
	email := issue(pki.ca, "Ann", certgen.WithEmail("ann@corp.example"), certgen.WithOU("audit"))
	revoked := issue(pki.ca, "stolen-laptop", certgen.WithOU("payments"))
	expired := issue(pki.ca, "old", certgen.WithOU("payments"), certgen.Expired())
	notYet := issue(pki.ca, "future", certgen.WithOU("payments"), certgen.NotYetValid())
	wrongCA := issue(otherCA, "intruder", certgen.WithOU("payments"))
	noEKU := issue(pki.ca, "server-as-client", certgen.WithOU("payments"), certgen.WithoutClientAuth())
	noCN := issue(pki.ca, "", certgen.WithOU("payments"))

	crlFile := filepath.Join(pki.dir, "ca.crl")
	crlPEM, err := pki.ca.CRLPEM(1, time.Now().Add(24*time.Hour), revoked.Cert.SerialNumber, big.NewInt(12345))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, crlFile, crlPEM)

	spiffeIdentity := CertIdentityConfig{From: SubjectFromSANURI, TeamsFrom: TeamsFromSANURIPattern, TeamPattern: "spiffe://corp/team/{team}/*"}

	tests := []struct {
		name     string
		mode     ClientAuthMode
		identity CertIdentityConfig
		crl      bool
		client   *certgen.Leaf
		want     *identity.Identity // nil with wantReason "" means no identity, no error
		reason   string
	}{
		{name: "ok/ou-team", mode: ClientAuthRequire, client: payments,
			want: &identity.Identity{Subject: "ci-payments", Teams: []string{"payments"}}},
		{name: "ok/ou-several-teams-deduplicated", mode: ClientAuthRequire, client: twoTeams,
			want: &identity.Identity{Subject: "ci-shared", Teams: []string{"payments", "platform"}}},
		{name: "ok/san-uri-pattern-team", mode: ClientAuthRequire, identity: spiffeIdentity, client: spiffe,
			want: &identity.Identity{Subject: "spiffe://corp/team/platform/builder", Teams: []string{"platform"}}},
		{name: "ok/san-email-subject", mode: ClientAuthOptional, identity: CertIdentityConfig{From: SubjectFromSANEmail}, client: email,
			want: &identity.Identity{Subject: "ann@corp.example", Teams: []string{"audit"}}},
		{name: "ok/crl-lists-others", mode: ClientAuthRequire, crl: true, client: payments,
			want: &identity.Identity{Subject: "ci-payments", Teams: []string{"payments"}}},
		{name: "ok/optional-without-certificate", mode: ClientAuthOptional},
		{name: "ok/off-ignores-certificate", mode: ClientAuthOff, client: wrongCA},

		{name: "fail/require-without-certificate", mode: ClientAuthRequire, reason: ReasonCertRequired},
		{name: "fail/expired", mode: ClientAuthRequire, client: expired, reason: ReasonExpired},
		{name: "fail/not-yet-valid", mode: ClientAuthRequire, client: notYet, reason: ReasonNotYetValid},
		{name: "fail/wrong-ca", mode: ClientAuthRequire, client: wrongCA, reason: ReasonUnknownCA},
		{name: "fail/wrong-ca-optional-mode", mode: ClientAuthOptional, client: wrongCA, reason: ReasonUnknownCA},
		{name: "fail/no-client-auth-eku", mode: ClientAuthRequire, client: noEKU, reason: ReasonNoClientAuth},
		{name: "fail/revoked", mode: ClientAuthRequire, crl: true, client: revoked, reason: ReasonRevoked},
		{name: "fail/no-subject", mode: ClientAuthRequire, client: noCN, reason: ReasonNoCertSubject},
		{name: "fail/san-uri-missing", mode: ClientAuthRequire, identity: spiffeIdentity, client: payments, reason: ReasonNoCertSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := pki.tlsConfig(tt.mode)
			cfg.Identity = tt.identity
			if tt.crl {
				cfg.CRLFile = crlFile
			}
			st, err := NewServerTLS(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			got := get(t, startServer(t, st), pki.roots(), tt.client)

			if got.Proto != "HTTP/2.0" {
				t.Errorf("protocol %s, want HTTP/2.0", got.Proto)
			}
			if tt.reason != "" {
				if got.Status != http.StatusUnauthorized || got.Reason != tt.reason {
					t.Fatalf("got %d %q, want 401 %q", got.Status, got.Reason, tt.reason)
				}
				return
			}
			if got.Status != http.StatusOK {
				t.Fatalf("got %d %q, want 200", got.Status, got.Reason)
			}
			if tt.want == nil {
				if got.Identity != nil {
					t.Fatalf("got identity %+v, want none", got.Identity)
				}
				return
			}
			want := *tt.want
			want.Method = identity.MethodMTLS
			want.CertFingerprint = tt.client.Fingerprint()
			if got.Identity == nil || got.Identity.Subject != want.Subject || !slices.Equal(got.Identity.Teams, want.Teams) ||
				got.Identity.Method != want.Method || got.Identity.CertFingerprint != want.CertFingerprint {
				t.Fatalf("got identity %+v\nwant %+v", got.Identity, want)
			}
		})
	}
}

// TestIdentityFromTLSError checks the error's shape the server relies on: kind
// Unauthenticated (401), the reason as the public message, details in the cause.
func TestIdentityFromTLSError(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	leaf, err := pki.ca.IssueClient("old", certgen.Expired())
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewServerTLS(pki.tlsConfig(ClientAuthOptional), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.IdentityFromTLS(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Cert}})
	if id != nil || !errors.Is(err, derrors.Unauthenticated) {
		t.Fatalf("got %v, %v; want an Unauthenticated error", id, err)
	}
	if got := derrors.PublicMessage(err); got != ReasonExpired {
		t.Errorf("public message %q, want %q", got, ReasonExpired)
	}
	if derrors.Status(err) != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", derrors.Status(err))
	}
	if id, err := st.IdentityFromTLS(nil); id != nil || err != nil {
		t.Errorf("plain HTTP: got %v, %v; want nil, nil", id, err)
	}

	// A cached identity is a copy: changing it does not change the next one.
	good, err := pki.ca.IssueClient("ci", certgen.WithOU("payments"))
	if err != nil {
		t.Fatal(err)
	}
	state := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{good.Cert}}
	first, err := st.IdentityFromTLS(state)
	if err != nil {
		t.Fatal(err)
	}
	first.Teams[0] = "admins"
	second, err := st.IdentityFromTLS(state)
	if err != nil {
		t.Fatal(err)
	}
	if second.Teams[0] != "payments" {
		t.Errorf("cached identity was modified through a returned copy: teams %v", second.Teams)
	}
}
