package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"github.com/modgate/modgate/internal/app"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

// bearerSubject authenticates "Bearer <subject>" as that subject in team
// platform: this test is about what the publish handlers record, identity is
// tested for real in internal/auth and internal/e2e.
type bearerSubject struct{}

func (bearerSubject) Authenticate(r *http.Request) (*identity.Identity, error) {
	sub := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	return &identity.Identity{Subject: sub, Teams: []string{"platform"}, Method: identity.MethodToken}, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Every publish and delete, refused or not, leaves an access-log record with
// what audit needs: who, what, the bytes received, their SHA-256 and the zip's
// h1 hash, the outcome or the error.
func TestPublishRecordsAuditFields(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Private.Patterns = "corp.test"
	store, err := storage.NewDisk(cfg.Cache.Dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	s, err := app.NewServer(app.ServerOptions{
		Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Store: store,
		Authenticator: bearerSubject{}, Published: publish.NewRegistry(pool, store, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)

	send := func(method, subject, path, body string) int {
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+subject)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sha := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	const api = "/api/v1/modules/corp.test/m/@v/v1.0.0"
	good := makeZip(t, "corp.test/m@v1.0.0/m.go", "package m\n")
	other := makeZip(t, "corp.test/m@v1.0.0/m.go", "package m // changed\n")

	steps := []struct {
		method, subject, body string
		status                int
		want                  map[string]any // fields of the log line
	}{
		{"PUT", "alice", good, 201, map[string]any{"action": "publish", "outcome": "created", "subject": "alice", "upload_bytes": float64(len(good)), "upload_sha256": sha(good)}},
		{"PUT", "bob", good, 200, map[string]any{"action": "publish", "outcome": "identical", "subject": "bob"}},
		{"PUT", "carol", other, 409, map[string]any{"action": "publish", "subject": "carol", "upload_sha256": sha(other)}},
		{"PUT", "dave", "not a zip", 400, map[string]any{"action": "publish", "subject": "dave", "upload_bytes": float64(9), "upload_sha256": sha("not a zip"), "error": "invalid module zip: not a zip file: zip: not a valid zip file"}},
		{"DELETE", "root", `{"reason":"bad build"}`, 200, map[string]any{"action": "delete", "outcome": "deleted", "subject": "root", "reason": "bad build"}},
	}
	for i, st := range steps {
		if got := send(st.method, st.subject, api, st.body); got != st.status {
			t.Fatalf("step %d %s by %s: %d, want %d", i, st.method, st.subject, got, st.status)
		}
	}
	var recs []map[string]any
	for _, l := range logs.lines() {
		if l["msg"] == "request" && l["endpoint"] != "module" {
			recs = append(recs, l)
		}
	}
	if len(recs) != len(steps) {
		t.Fatalf("%d publish log records, want %d: %v", len(recs), len(steps), recs)
	}
	var h1 string
	for i, st := range steps {
		rec := recs[i]
		if rec["status"] != float64(st.status) || rec["module"] != "corp.test/m" || rec["version"] != "v1.0.0" {
			t.Errorf("record %d: %v", i, rec)
		}
		for k, v := range st.want {
			if rec[k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, rec[k], v)
			}
		}
		zh, _ := rec["zip_hash"].(string)
		switch i {
		case 0:
			h1 = zh
			if !strings.HasPrefix(h1, "h1:") {
				t.Errorf("created record has zip_hash %q", zh)
			}
		case 1, 4:
			if zh != h1 {
				t.Errorf("record %d zip_hash %q, want the published %q", i, zh, h1)
			}
		case 2:
			if zh == "" || zh == h1 {
				t.Errorf("conflicting record zip_hash %q, want the rejected upload's own", zh)
			}
		}
	}
}
