package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// monitoredMetrics returns every modgate_* metric family the alert rules and the
// Grafana dashboard in deploy/monitoring read (histogram series named by family).
func monitoredMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{} // family → files
	name := regexp.MustCompile(`\bmodgate_[a-z0-9_]+`)
	for _, f := range []string{"alerts.yaml", "grafana-dashboard.json"} {
		data, err := os.ReadFile(filepath.Join("../../deploy/monitoring", f))
		if err != nil {
			t.Fatal(err)
		}
		var exprs []string
		if strings.HasSuffix(f, ".json") {
			var d struct {
				Panels []struct {
					Targets []struct{ Expr string } `json:"targets"`
				} `json:"panels"`
			}
			if err := json.Unmarshal(data, &d); err != nil {
				t.Fatal(err)
			}
			for _, p := range d.Panels {
				for _, tg := range p.Targets {
					exprs = append(exprs, tg.Expr)
				}
			}
		} else {
			for _, line := range strings.Split(string(data), "\n") {
				if !strings.HasPrefix(strings.TrimSpace(line), "#") && !strings.Contains(line, "description:") && !strings.Contains(line, "summary:") {
					exprs = append(exprs, line)
				}
			}
		}
		for _, e := range exprs {
			for _, m := range name.FindAllString(e, -1) {
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if strings.HasSuffix(m, "_seconds"+suf) || strings.HasSuffix(m, "_bytes"+suf) {
						m = strings.TrimSuffix(m, suf)
					}
				}
				used[m] = append(used[m], f)
			}
		}
	}
	if len(used) < 20 {
		t.Fatalf("found only %d metrics in deploy/monitoring: %v", len(used), used)
	}
	return used
}

// Every metric a dashboard panel or an alert rule reads exists in a running
// modgate's /metrics once it has served the requests that create its series: a
// renamed metric would otherwise leave an empty panel or an alert that never fires.
func TestMonitoringMetricsExist(t *testing.T) {
	used := monitoredMetrics(t)
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	dbURL := pgtest.NewDatabase(t)
	dir := t.TempDir()
	bin := modgateBinary(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("modgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	certs := filepath.Join(dir, "certs")
	run("certs", "init", "--dir", certs, "--team", "platform")
	secret := run("token", "create", "--secret-only", "--database-url", dbURL, "--subject", "dev", "--team", "platform", "--ttl", "1h")

	// A dead mirror first ("|": any error moves on), so per-mirror errors exist.
	cfgFile := filepath.Join(dir, "modgate.yaml")
	writeFile(t, cfgFile, []byte(fmt.Sprintf(`cache:
  dir: %s
upstream:
  proxies: "http://%s|%s"
  retries: 0
sumdb:
  verify: false
tls:
  cert_file: %s/server.pem
  key_file: %s/server.key
  client_ca_file: %s/ca.pem
  client_auth: optional
database:
  url: %q
server:
  rate_limit: {requests_per_second: 1, burst: 20}
`, filepath.Join(dir, "cache"), deadAddr(t), upstream.URL, certs, certs, certs, dbURL)))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logs := &safeBuffer{}
	cmd := exec.Command(bin, "serve", "--config", cfgFile, "--listen", addr)
	cmd.Dir = "../.."
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("modgate logs:\n%s", logs.String())
		}
	})
	caPEM, err := os.ReadFile(filepath.Join(certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	base := "https://" + addr
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(60 * time.Second)
	for get("/healthz", "") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("modgate did not become healthy:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The requests that create the series: pulls (cache miss, then hit), a policy
	// denial, a refused token, a module no mirror has.
	for _, p := range []string{"/@v/list", "/@v/v1.0.0.info", "/@v/v1.0.0.mod", "/@v/v1.0.0.zip", "/@v/v1.0.0.info", "/@latest"} {
		if code := get("/"+proxytest.HelloPath+p, secret); code != 200 {
			t.Errorf("GET %s%s = %d, want 200", proxytest.HelloPath, p, code)
		}
	}
	get("/github.com/example/leftpad/@v/v1.3.1.info", secret) // deny-listed
	if code := get("/"+proxytest.HelloPath+"/@v/list", "mgt_notatoken"); code != 401 {
		t.Errorf("unknown token: %d, want 401", code)
	}
	get("/mod.test/nowhere/@v/list", secret)
	// Last, past the identity's burst: 429s.
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		limited = get("/"+proxytest.HelloPath+"/@v/list", secret) == http.StatusTooManyRequests
	}
	if !limited {
		t.Error("40 requests past a burst of 20 were never rate-limited")
	}

	// Families are scraped until the audit writer has shipped (its lag gauge moves).
	var have map[string]bool
	for {
		have = scrapeFamilies(t, client, base)
		if have["modgate_audit_events_written_total"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var missing []string
	for m, files := range used {
		if !have[m] {
			missing = append(missing, fmt.Sprintf("%s (used by %s)", m, strings.Join(dedupe(files), ", ")))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("deploy/monitoring reads %s, which modgate's /metrics does not serve", m)
	}
}

// scrapeFamilies returns the metric families /metrics serves.
func scrapeFamilies(t *testing.T, client *http.Client, base string) map[string]bool {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	have := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			have[f[2]] = true
		}
	}
	return have
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
