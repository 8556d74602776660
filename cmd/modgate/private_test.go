package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestPrivateVerifyCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	cacheDir := t.TempDir()
	l := ledger.New(pool)
	goodMod := []byte("module corp.example/Payments/x\n")
	h, err := ledger.HashModBytes(goodMod)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1.0.0", "v1.1.0"} {
		if _, err := l.Pin(ctx, "corp.example/Payments/x", v, ledger.Mod, h, "git"); err != nil {
			t.Fatal(err)
		}
	}
	write := func(key string, data []byte) {
		p := filepath.Join(cacheDir, filepath.FromSlash(key))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("private/corp.example/!payments/x/@v/v1.0.0.mod", goodMod)
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runPrivate(ctx, args, &out, &errOut)
		return out.String() + errOut.String(), err
	}

	if out, err := run("verify", "--database-url", url, "--cache-dir", cacheDir); err != nil || !strings.Contains(out, "ok: 2 pins, chain intact to seq 2, 1 stored copies match") {
		t.Fatalf("clean ledger: %v\n%s", err, out)
	}

	// A cached copy that no longer matches its pin.
	write("private/corp.example/!payments/x/@v/v1.1.0.mod", []byte("module corp.example/evil\n"))
	out, err := run("verify", "--database-url", url, "--cache-dir", cacheDir)
	if err == nil || !strings.Contains(out, "seq 2 corp.example/Payments/x@v1.1.0 mod: object: stored copy private/corp.example/!payments/x/@v/v1.1.0.mod hashes to h1:") {
		t.Fatalf("altered object: err = %v\n%s", err, out)
	}
	if _, err := run("verify", "--database-url", url, "--cache-dir", cacheDir, "--no-objects"); err != nil {
		t.Errorf("--no-objects still looked at objects: %v", err)
	}

	// A pin altered in the database.
	if _, err := pool.Exec(ctx, `UPDATE private_ledger SET hash = 'h1:forged=' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	out, err = run("verify", "--database-url", url, "--no-objects")
	if err == nil || !strings.Contains(out, "seq 1 corp.example/Payments/x@v1.0.0 mod: modified") {
		t.Fatalf("altered pin: err = %v\n%s", err, out)
	}
	if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines != 1 {
		t.Errorf("want one problem line, got %d:\n%s", lines, out)
	}

	if out, err := run("--help"); err != nil || !strings.Contains(out, "usage: modgate private verify") {
		t.Errorf("--help: %v %q", err, out)
	}
	if _, err := run("verify", "--database-url", ""); err == nil && os.Getenv("MODGATE_DATABASE_URL") == "" {
		t.Error("verify without a database succeeded")
	}
}
