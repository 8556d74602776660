package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunCerts(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	var stdout, stderr bytes.Buffer
	err := runCerts(context.Background(), []string{"init", "--dir", dir, "--team", "payments", "--team", "platform", "--subject", "ci"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("certs init: %v\n%s", err, stderr.String())
	}
	for _, name := range []string{"ca.pem", "ca.key", "server.pem", "server.key", "client-payments.pem", "client-platform.key"} {
		if !strings.Contains(stdout.String(), "created "+filepath.Join(dir, name)) {
			t.Errorf("output does not report %s:\n%s", name, stdout.String())
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "client-payments.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("client key mode %v, want 0600", fi.Mode().Perm())
	}

	stdout.Reset()
	if err := runCerts(context.Background(), []string{"init", "--dir", dir, "--team", "payments"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stdout.String(), "created") {
		t.Errorf("second run created files:\n%s", stdout.String())
	}
}

func TestRunCertsHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"init", "--help"}} {
		var stdout, stderr bytes.Buffer
		if err := runCerts(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if out := stdout.String() + stderr.String(); !strings.Contains(out, "Usage: modgate certs init") || !strings.Contains(out, "-team") {
			t.Errorf("%v printed no usage:\n%s", args, out)
		}
	}
	if err := runCerts(context.Background(), []string{"frobnicate"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("unknown subcommand accepted")
	}
}
