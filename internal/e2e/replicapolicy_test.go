package e2e

import (
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

var revisionRE = regexp.MustCompile(`policy: ok \(revision (\S+?)[;)]`)

func policyRevision(t *testing.T, url string) string {
	t.Helper()
	res := httpGet(url+"/readyz", "")
	m := revisionRE.FindStringSubmatch(string(res.body))
	if m == nil {
		t.Fatalf("/readyz shows no policy revision: %d %s", res.status, res.body)
	}
	return m[1]
}

// Replicas each watch their own copy of the policy (a ConfigMap mounted in every
// pod). The same edit applied to every copy reaches every replica within seconds,
// and they converge on the same revision, since a revision is a hash of the files.
func TestPolicyEditReachesEveryReplica(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	const settings = "settings:\n  anonymous: public\n  cooldown:\n    enabled: false\n    hours: 72\n"
	var urls, dirs []string
	for range 3 {
		dir := copyPolicy(t, map[string]string{"data.yaml": settings + "denylist: {}\n"})
		cfg := config.Defaults()
		cfg.Cache.Dir = t.TempDir()
		cfg.Upstream.Proxies = upstream.URL
		cfg.Auth.Anonymous = true
		cfg.Policy.Dir = dir
		cfg.Policy.WatchInterval = config.Duration(200 * time.Millisecond)
		urls = append(urls, startApp(t, cfg))
		dirs = append(dirs, dir)
	}
	listPath := proxytest.ListPath(proxytest.LegacyPath)
	before := policyRevision(t, urls[0])
	for i, u := range urls {
		if rev := policyRevision(t, u); rev != before {
			t.Fatalf("replica %d starts at revision %s, replica 0 at %s", i, rev, before)
		}
		if res := httpGet(u+listPath, ""); res.status != 200 {
			t.Fatalf("replica %d before the edit: %d %s", i, res.status, res.body)
		}
	}

	edit := settings + "denylist:\n  " + proxytest.LegacyPath + ":\n    reason: abandoned fork, see SEC-7\n"
	for _, d := range dirs {
		writeFile(t, filepath.Join(d, "data.yaml"), []byte(edit))
	}
	edited := time.Now()
	var after string
	for i, u := range urls {
		for {
			res := httpGet(u+listPath, "")
			if res.status == http.StatusForbidden {
				t.Logf("replica %d enforces the edit after %v", i, time.Since(edited).Round(time.Millisecond))
				break
			}
			if time.Since(edited) > 5*time.Second {
				t.Fatalf("replica %d still answers %d 5s after the policy edit", i, res.status)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rev := policyRevision(t, u)
		if rev == before {
			t.Errorf("replica %d denies but still reports revision %s", i, rev)
		}
		if after == "" {
			after = rev
		} else if rev != after {
			t.Errorf("replica %d is at revision %s, replica 0 at %s: same files, different revisions", i, rev, after)
		}
	}
}
