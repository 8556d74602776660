package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/testing/pgtest"
)

// Every command that needs PostgreSQL finds it the way `modgate serve` does: from
// --config or $MODGATE_CONFIG (database.url, database.url_file), else
// --database-url, else $MODGATE_DATABASE_URL.
func TestDatabaseFromConfig(t *testing.T) {
	url := pgtest.NewDatabase(t)
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "db-url")
	os.WriteFile(urlFile, []byte(url+"\n"), 0o600)
	withURLFile := filepath.Join(dir, "modgate.yaml")
	os.WriteFile(withURLFile, []byte("database:\n  url_file: "+urlFile+"\n"), 0o600)
	noDB := filepath.Join(dir, "nodb.yaml")
	os.WriteFile(noDB, []byte("log:\n  level: info\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("database:\n  urls: x\n"), 0o600)

	t.Setenv("MODGATE_DATABASE_URL", "")
	t.Setenv("MODGATE_CONFIG", "")
	tests := []struct {
		name    string
		env     map[string]string
		run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
		args    []string
		wantOut string
		wantErr string
	}{
		{name: "ok/migrate-config", run: runMigrate, args: []string{"status", "--config", withURLFile}, wantOut: "0001_audit.sql"},
		{name: "ok/audit-config", run: runAudit, args: []string{"verify", "--config", withURLFile}, wantOut: "verified 0 rows"},
		{name: "ok/token-config", run: runToken, args: []string{"list", "--config", withURLFile}, wantOut: "ID"},
		{name: "ok/audit-env-config", env: map[string]string{"MODGATE_CONFIG": withURLFile}, run: runAudit, args: []string{"query"}, wantOut: "TIME"},
		{name: "ok/config-falls-back-to-env-url", env: map[string]string{"MODGATE_DATABASE_URL": url}, run: runAudit, args: []string{"verify", "--config", noDB}, wantOut: "verified"},
		{name: "ok/url-flag-wins", env: map[string]string{"MODGATE_CONFIG": noDB}, run: runMigrate, args: []string{"status", "--database-url", url}, wantOut: "0001_audit.sql"},
		{name: "fail/config-without-database", run: runAudit, args: []string{"verify", "--config", noDB}, wantErr: "configures no database"},
		{name: "fail/bad-config", run: runMigrate, args: []string{"up", "--config", bad}, wantErr: "unknown key database.urls"},
		{name: "fail/nothing", run: runToken, args: []string{"list"}, wantErr: "pass --config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			err := tt.run(context.Background(), tt.args, &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v; stderr %s", err, errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout = %q, want %q", out.String(), tt.wantOut)
			}
		})
	}
}
