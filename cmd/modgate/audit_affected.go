package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/vulndb"
)

// auditAffected implements `modgate audit affected ID`: who pulled the versions
// an advisory affects, and who has not pulled a fixed version since.
func auditAffected(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit affected", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbf := addDatabaseFlags(fs)
	db := fs.String("vulndb", os.Getenv("MODGATE_VULNDB"), "the vulnerability database to read the advisory from: modgate's https://HOST/vulndb\n(credentials as https://user:token@HOST/vulndb), another database in the same layout, or a directory (default $MODGATE_VULNDB)")
	format := fs.String("format", "table", "table, json or csv")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: modgate audit affected ID [--vulndb URL] [--format table|json|csv] [--config FILE | --database-url URL]

Lists who pulled versions that advisory ID (GO-2024-1234) affects: one row per
subject and module, with teams, the affected versions, first and last pull, and
the fixed version pulled since; those who have not pulled a fix come first.

flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("audit affected: want one advisory ID")
	}
	if *db == "" {
		return errors.New("audit affected: no vulnerability database: pass --vulndb or set MODGATE_VULNDB")
	}
	id := pos[0]
	report, err := readReport(ctx, *db, id)
	if err != nil {
		return fmt.Errorf("audit affected: %w", err)
	}
	vdb, err := vulndb.Build([][]byte{report}, *db)
	if err != nil {
		return fmt.Errorf("audit affected: %w", err)
	}
	mods, ok := vdb.Modules(id)
	if !ok {
		return fmt.Errorf("audit affected: the report read for %s has another id", id)
	}
	pool, err := openAuditDB(ctx, dbf)
	if err != nil {
		return err
	}
	defer pool.Close()
	ex, err := audit.Affected(ctx, pool, app.AffectedModules(mods))
	if err != nil {
		return err
	}
	return audit.WriteExposures(stdout, *format, ex)
}

// readReport reads ID/<id>.json from a database URL or directory.
func readReport(ctx context.Context, db, id string) ([]byte, error) {
	if strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		return nil, fmt.Errorf("%q is not an advisory id", id)
	}
	if !strings.HasPrefix(db, "http://") && !strings.HasPrefix(db, "https://") {
		return os.ReadFile(filepath.Join(strings.TrimPrefix(db, "file://"), "ID", id+".json"))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(db, "/")+"/ID/"+id+".json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("reading %s: %s: %s", id, resp.Status, strings.TrimSpace(string(msg)))
	}
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
}
