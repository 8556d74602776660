package console

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/derrors"
)

type affectedData struct {
	ID        string
	Exposures []audit.Exposure
	Exposed   int // not yet remediated
	CSV       string
	Error     string
}

// handleAffected shows the blast radius of an advisory: who pulled the versions
// it affects, when, and who has not pulled a fixed version since.
func (c *Console) handleAffected(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	d := affectedData{ID: id, CSV: Prefix + "/affected.csv?id=" + id}
	if id == "" {
		c.render(w, r, http.StatusOK, "affected", "Advisory blast radius", d)
		return
	}
	ex, err := c.affected(r.Context(), id)
	if err != nil {
		d.Error = affectedMessage(err)
		c.render(w, r, http.StatusOK, "affected", id, d)
		return
	}
	c.recordRead(r)
	d.Exposures = ex
	for _, e := range ex {
		if !e.Remediated() {
			d.Exposed++
		}
	}
	c.render(w, r, http.StatusOK, "affected", id, d)
}

// handleAffectedExport is the page's CSV, the same as
// `modgate audit affected ID --format csv`.
func (c *Console) handleAffectedExport(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	ex, err := c.affected(r.Context(), id)
	if err != nil {
		c.renderError(w, r, http.StatusBadRequest, "Export failed", affectedMessage(err), nil)
		return
	}
	c.recordRead(r)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="modgate-affected-`+safeFileName(id)+`.csv"`)
	audit.WriteExposures(w, audit.FormatCSV, ex)
}

func (c *Console) affected(ctx context.Context, id string) ([]audit.Exposure, error) {
	if c.opts.Affected == nil {
		return nil, derrors.New(derrors.NotFound, "this needs the audit trail and the vulnerability database (vulndb.enabled)")
	}
	if id == "" {
		return nil, derrors.New(derrors.InvalidArgument, "name an advisory, e.g. GO-2024-1234")
	}
	return c.opts.Affected(ctx, id)
}

func affectedMessage(err error) string {
	if errors.Is(err, derrors.NotFound) || errors.Is(err, derrors.InvalidArgument) || errors.Is(err, derrors.Unavailable) {
		return derrors.PublicMessage(err)
	}
	return publicMessage(err)
}

func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}
