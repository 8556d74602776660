package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/s3test"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
	"github.com/modgate/modgate/internal/tokens"
)

// s3Settings points cfg at bucket on srv, with the credentials in key files as an
// operator would mount them.
func s3Settings(t *testing.T, srv *s3test.Server, bucket string) config.S3 {
	t.Helper()
	dir := t.TempDir()
	ak, sk := filepath.Join(dir, "access_key"), filepath.Join(dir, "secret_key")
	writeFile(t, ak, []byte(srv.AccessKey+"\n"))
	writeFile(t, sk, []byte(srv.SecretKey+"\n"))
	return config.S3{
		Endpoint:      srv.Endpoint,
		Bucket:        bucket,
		Prefix:        "modgate",
		AccessKeyFile: ak,
		SecretKeyFile: sk,
		PathStyle:     true,
		Insecure:      true,
	}
}

// downloadAllAndCheck runs `go mod download -json` for every module upstream holds
// and compares each hash with the one computed from the fixtures.
func downloadAllAndCheck(t *testing.T, g *gotest.Go, upstream *proxytest.Server) {
	t.Helper()
	var args []string
	for _, m := range upstream.Modules() {
		args = append(args, m.Path+"@"+m.Version)
	}
	stdout, stderr, err := g.Run("", append([]string{"mod", "download", "-json"}, args...)...)
	if err != nil {
		t.Fatalf("go mod download: %v\n%s\n%s", err, stderr, stdout)
	}
	got := parseDownloads(t, stdout)
	if len(got) != len(args) {
		t.Fatalf("downloaded %d modules, want %d", len(got), len(args))
	}
	for _, d := range got {
		zipSum, modSum := upstream.Sums(t, d.Path, d.Version)
		if d.Error != "" || d.Sum != zipSum || d.GoModSum != modSum {
			t.Errorf("%s@%s: error %q, Sum %s GoModSum %s, want %s %s", d.Path, d.Version, d.Error, d.Sum, d.GoModSum, zipSum, modSum)
		}
	}
}

// The go command, with a fresh module cache, downloads every standard fixture
// through a modgate that keeps its objects in S3 (a real MinIO), with the hashes
// the checksum database expects; and the objects really are in the bucket.
func TestGoCommandThroughModgateOnS3(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)

	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = upstream.URL
	cfg.Auth.Anonymous = true
	cfg.Policy.Dir = ""
	cfg.SumDB.Names = []string{testSumDB}
	cfg.SumDB.Verify = false // modgate's own check is tested in verify_test.go
	cfg.Storage.Backend = "s3"
	cfg.Storage.S3 = s3Settings(t, srv, bucket)
	url := startApp(t, cfg)

	g := gotest.New(t, "GOPROXY="+url, "GOSUMDB="+db.Key())
	downloadAllAndCheck(t, g, upstream)

	zipKey := "modgate/mod" + proxytest.ZipPath(proxytest.HelloPath, "v1.0.0")
	if _, err := srv.Client.StatObject(context.Background(), bucket, zipKey, minio.StatObjectOptions{}); err != nil {
		var keys []string
		for o := range srv.Client.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
			keys = append(keys, o.Key)
		}
		t.Errorf("zip not in the bucket at %s (%v); bucket holds:\n%s", zipKey, err, strings.Join(keys, "\n"))
	}

	// A second modgate over the same bucket (a new replica, or this one after its
	// disk was lost) serves from the bucket without asking upstream.
	upstream.ResetRequests()
	cfg.Cache.Dir = t.TempDir()
	url2 := startApp(t, cfg)
	g2 := gotest.New(t, "GOPROXY="+url2, "GOSUMDB="+db.Key())
	if _, stderr, err := g2.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0"); err != nil {
		t.Fatalf("second replica: %v\n%s", err, stderr)
	}
	if n := upstream.Hits(proxytest.ZipPath(proxytest.HelloPath, "v1.0.0")); n != 0 {
		t.Errorf("second replica fetched the zip from upstream %d times, want 0 (it is in the bucket)", n)
	}

	// Readiness follows the bucket: a replica pointed at a missing bucket is unready.
	if res := httpGet(url+"/readyz", ""); res.status != 200 || !strings.Contains(string(res.body), "bucket: ok") {
		t.Errorf("/readyz with the bucket present: %d %s", res.status, res.body)
	}
	cfg.Cache.Dir = t.TempDir()
	cfg.Storage.S3.Bucket = "no-such-bucket"
	missing := startApp(t, cfg)
	if res := httpGet(missing+"/readyz", ""); res.status != http.StatusServiceUnavailable || !strings.Contains(string(res.body), "bucket") {
		t.Errorf("/readyz with the bucket missing: %d %s, want 503 naming the bucket", res.status, res.body)
	}
}

// startReplicas runs n `modgate serve` processes sharing one PostgreSQL database
// and one bucket, as a Deployment with n replicas would.
func startReplicas(t *testing.T, n int, upstreamURL, dbURL string, s3 config.S3) []*process {
	t.Helper()
	var procs []*process
	for i := range n {
		cfgFile := filepath.Join(t.TempDir(), "modgate.yaml")
		writeFile(t, cfgFile, fmt.Appendf(nil, `replica: replica-%d
cache:
  dir: %s
storage:
  backend: s3
  s3:
    endpoint: %q
    bucket: %q
    prefix: %q
    access_key_file: %q
    secret_key_file: %q
    path_style: true
    insecure: true
upstream:
  proxies: %q
  retry_backoff: 1ms
sumdb:
  names: [%s]
  verify: false
auth:
  anonymous: true
  api_tokens: true
database:
  url: %q
  migrate: false
policy:
  dir: ""
`, i, t.TempDir(), s3.Endpoint, s3.Bucket, s3.Prefix, s3.AccessKeyFile, s3.SecretKeyFile, upstreamURL, testSumDB, dbURL))
		procs = append(procs, startModgate(t, "--config", cfgFile))
	}
	return procs
}

type fetchResult struct {
	status int
	body   []byte
	err    error
}

func httpGet(url, bearer string) fetchResult {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return fetchResult{err: err}
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fetchResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return fetchResult{status: resp.StatusCode, body: body, err: err}
}

func fixtureZip(t *testing.T, path, version string) []byte {
	t.Helper()
	for _, m := range proxytest.StandardModules() {
		if m.Path == path && m.Version == version {
			b, err := proxytest.Zip(m)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no fixture %s@%s", path, version)
	return nil
}

// Three modgate processes share one PostgreSQL and one bucket: concurrent requests
// spread over them cause one upstream fetch, a token revoked is refused by every
// replica within seconds, and a replica killed mid-download leaves the others
// serving.
func TestReplicasShareDatabaseAndBucket(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	srv := s3test.Start(t)
	pool, dbURL := pgtest.NewPool(t)
	replicas := startReplicas(t, 3, upstream.URL, dbURL, s3Settings(t, srv, srv.NewBucket(t)))

	t.Run("one-upstream-fetch-for-300-requests", func(t *testing.T) {
		zipPath := proxytest.ZipPath(proxytest.HelloPath, "v1.0.0")
		want := fixtureZip(t, proxytest.HelloPath, "v1.0.0")
		// Hold the upstream response after its first bytes so that every request
		// arrives while the one fetch is in flight.
		gate := upstream.Gate(zipPath, 100)
		const n = 300
		results := make([]fetchResult, n)
		var sent atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent.Add(1)
				results[i] = httpGet(replicas[i%len(replicas)].URL+zipPath, "")
			}()
		}
		select {
		case <-gate.Held():
		case <-time.After(30 * time.Second):
			t.Fatal("no upstream fetch reached the gate")
		}
		for sent.Load() < n {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second) // let the last requests reach their replicas
		gate.Release()
		wg.Wait()
		for i, r := range results {
			if r.err != nil || r.status != 200 || !bytes.Equal(r.body, want) {
				t.Fatalf("request %d (replica %d): status %d, %d bytes (want %d), err %v: %.200s", i, i%len(replicas), r.status, len(r.body), len(want), r.err, r.body)
			}
		}
		if hits := upstream.Hits(zipPath); hits != 1 {
			t.Errorf("upstream fetches of the zip = %d, want exactly 1 across 3 replicas", hits)
		}
	})

	t.Run("token-revocation-reaches-every-replica", func(t *testing.T) {
		store, err := tokens.NewStore(pool, tokens.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		secret, tok, err := store.Create(ctx, tokens.CreateRequest{Subject: "ci-build", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		listPath := proxytest.ListPath(proxytest.HelloPath)
		for i, r := range replicas {
			if res := httpGet(r.URL+listPath, secret); res.status != 200 {
				t.Fatalf("replica %d refused a valid token: %d %s", i, res.status, res.body)
			}
		}
		// Revoke as `modgate token revoke` does on any one replica's host: in the
		// shared database, whose NOTIFY reaches every replica's listener.
		if _, err := store.Revoke(ctx, tok.ID, "leaked"); err != nil {
			t.Fatal(err)
		}
		revoked := time.Now()
		for i, r := range replicas {
			for {
				res := httpGet(r.URL+listPath, secret)
				if res.status == http.StatusUnauthorized && strings.Contains(string(res.body), "revoked") {
					t.Logf("replica %d refuses the revoked token after %v", i, time.Since(revoked).Round(time.Millisecond))
					break
				}
				if time.Since(revoked) > 5*time.Second {
					t.Fatalf("replica %d still answers %d for a token revoked 5s ago: %s", i, res.status, res.body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})

	t.Run("replica-killed-mid-download", func(t *testing.T) {
		zipPath := proxytest.ZipPath(proxytest.LargePath, "v1.0.0")
		want := fixtureZip(t, proxytest.LargePath, "v1.0.0")
		gate := upstream.Gate(zipPath, 64<<10)
		victim, others := replicas[0], replicas[1:]

		g := gotest.New(t, "GOPROXY="+victim.URL, "GOSUMDB="+db.Key())
		firstErr := make(chan error, 1)
		go func() {
			_, _, err := g.Run("", "mod", "download", proxytest.LargePath+"@v1.0.0")
			firstErr <- err
		}()
		select {
		case <-gate.Held():
		case <-time.After(60 * time.Second):
			t.Fatal("the download never reached upstream")
		}
		// Another client asks a surviving replica for the same zip meanwhile: its
		// fill waits on the victim's lock.
		waiting := make(chan fetchResult, 1)
		go func() { waiting <- httpGet(others[0].URL+zipPath, "") }()
		time.Sleep(300 * time.Millisecond)

		victim.Kill()
		if err := <-firstErr; err == nil {
			t.Fatal("go mod download succeeded through a replica killed mid-transfer")
		}
		gate.Release()

		for i, r := range others {
			if res := httpGet(r.URL+"/healthz", ""); res.status != 200 {
				t.Errorf("surviving replica %d unhealthy: %d", i+1, res.status)
			}
		}
		select {
		case res := <-waiting:
			if res.err != nil || res.status != 200 || !bytes.Equal(res.body, want) {
				t.Errorf("request waiting on the killed replica's lock: status %d, %d bytes (want %d), err %v", res.status, len(res.body), len(want), res.err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("a request waiting on the killed replica's fill lock never completed")
		}
		// The go command retries through the load balancer, here a GOPROXY list
		// that moves on after any error ("|").
		retry := victim.URL + "|" + others[0].URL + "|" + others[1].URL
		g.Set("GOPROXY", retry)
		downloadOne(t, g, upstream, proxytest.LargePath, "v1.0.0")
	})
}
