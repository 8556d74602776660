package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t) // already migrated from the template
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr bool
	}{
		{"ok/up-is-noop", []string{"up", "--database-url", url}, "schema is up to date", false},
		{"ok/status", []string{"status", "--database-url", url}, "0001_audit.sql", false},
		{"ok/help", []string{"--help"}, "", false},
		{"fail/no-subcommand", nil, "", true},
		{"fail/unknown", []string{"sideways", "--database-url", url}, "", true},
		{"fail/no-url", []string{"up", "--database-url", ""}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runMigrate(context.Background(), tt.args, &out, &errOut)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v (stderr %q)", err, tt.wantErr, errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout = %q, want it to contain %q", out.String(), tt.wantOut)
			}
			if tt.name == "ok/help" && !strings.Contains(errOut.String(), "usage: modgate migrate") {
				t.Errorf("help printed %q", errOut.String())
			}
		})
	}
}
