package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/storage/s3store"
	"github.com/modgate/modgate/internal/storage/storagetest"
	"github.com/modgate/modgate/internal/testing/s3test"
)

func newStore(t *testing.T, srv *s3test.Server, bucket, prefix string) *s3store.Store {
	t.Helper()
	s, err := s3store.New(s3store.Config{
		Endpoint:   srv.Endpoint,
		Bucket:     bucket,
		Prefix:     prefix,
		AccessKey:  srv.AccessKey,
		SecretKey:  srv.SecretKey,
		PathStyle:  true,
		Insecure:   true,
		ScratchDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	for _, prefix := range []string{"", "modgate/prod"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Store {
				return newStore(t, srv, srv.NewBucket(t), prefix)
			})
		})
	}
}

// Two installations sharing a bucket under different prefixes do not see each
// other's objects, and the prefix is really where objects land.
func TestPrefixIsolation(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	a := newStore(t, srv, bucket, "a")
	b := newStore(t, srv, bucket, "/b/")
	storagetest.Put(t, a, "mod/x.zip", []byte("from a"))
	if _, err := b.Stat(context.Background(), "mod/x.zip"); !errors.Is(err, derrors.NotFound) {
		t.Errorf("store b sees store a's object: %v", err)
	}
	obj, err := srv.Client.GetObject(context.Background(), bucket, "a/mod/x.zip", minioGetOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || string(got) != "from a" {
		t.Errorf("object under a/mod/x.zip = %q, %v", got, err)
	}
	if err := a.CheckBucket(context.Background()); err != nil {
		t.Errorf("CheckBucket: %v", err)
	}
	missing := newStore(t, srv, "no-such-bucket", "")
	if err := missing.CheckBucket(context.Background()); err == nil {
		t.Error("CheckBucket on a missing bucket succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := s3store.Config{Endpoint: "s3.example:9000", Bucket: "b", ScratchDir: "/tmp/x"}
	tests := []struct {
		name    string
		mutate  func(*s3store.Config)
		wantErr bool
	}{
		{"ok/minimal", func(*s3store.Config) {}, false},
		{"ok/keys", func(c *s3store.Config) { c.AccessKey, c.SecretKey = "a", "s" }, false},
		{"fail/no-endpoint", func(c *s3store.Config) { c.Endpoint = "" }, true},
		{"fail/scheme", func(c *s3store.Config) { c.Endpoint = "https://s3.example" }, true},
		{"fail/no-bucket", func(c *s3store.Config) { c.Bucket = "" }, true},
		{"fail/half-credentials", func(c *s3store.Config) { c.AccessKey = "a" }, true},
		{"fail/insecure-and-ca", func(c *s3store.Config) { c.Insecure, c.CAFile = true, "ca.pem" }, true},
		{"fail/no-scratch", func(c *s3store.Config) { c.ScratchDir = "" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			if err := c.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func minioGetOptions() minio.GetObjectOptions { return minio.GetObjectOptions{} }

// An open object keeps reading the version it opened; a seek after the object was
// replaced fails instead of splicing the new version's bytes into the old.
func TestReplacedWhileOpen(t *testing.T) {
	srv := s3test.Start(t)
	s := newStore(t, srv, srv.NewBucket(t), "")
	ctx := context.Background()
	old := bytes.Repeat([]byte("o"), 1<<20)
	storagetest.Put(t, s, "k/obj", old)

	streaming, err := s.Open(ctx, "k/obj")
	if err != nil {
		t.Fatal(err)
	}
	defer streaming.Close()
	seeking, err := s.Open(ctx, "k/obj")
	if err != nil {
		t.Fatal(err)
	}
	defer seeking.Close()
	storagetest.Put(t, s, "k/obj", bytes.Repeat([]byte("n"), 1<<20))

	if got, err := io.ReadAll(streaming); err != nil || !bytes.Equal(got, old) {
		t.Errorf("unseeked reader: %d bytes, err %v; want the old version whole", len(got), err)
	}
	if _, err := seeking.Seek(10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(seeking); err == nil {
		t.Errorf("ranged read of a replaced object returned %d bytes (starting %q), want an error", len(got), got[:1])
	}
}

// Over HTTPS the endpoint's certificate is verified against ca_file, and refused
// without it.
func TestTLSWithCAFile(t *testing.T) {
	srv := s3test.StartTLS(t)
	bucket := srv.NewBucket(t)
	cfg := s3store.Config{
		Endpoint:   srv.Endpoint,
		Bucket:     bucket,
		AccessKey:  srv.AccessKey,
		SecretKey:  srv.SecretKey,
		PathStyle:  true,
		CAFile:     srv.CAFile,
		ScratchDir: t.TempDir(),
	}
	s, err := s3store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Put(t, s, "mod/x.zip", []byte("over tls"))
	if got := storagetest.Get(t, s, "mod/x.zip"); got != "over tls" {
		t.Errorf("got %q", got)
	}

	cfg.CAFile = ""
	cfg.ScratchDir = t.TempDir()
	untrusting, err := s3store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.Stat(context.Background(), "mod/x.zip"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Stat without the CA = %v, want a certificate error", err)
	}
}
