package source

import (
	"context"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/route"
)

// OutageCopy is the replica's own durable copy of the ledger's pins and of the
// published registry (internal/pinstore), read only while PostgreSQL is
// unreachable; *pinstore.Copy implements it.
type OutageCopy interface {
	// Pinned reports whether module@version's file ("mod", "zip") is pinned;
	// file "" asks whether any of its files is.
	Pinned(module, version, file string) bool
	// Published returns module@version's registry record, deleted or not.
	Published(module, version string) (publish.Version, bool)
	// PublishedList returns every registry record of module, as
	// publish.Registry.List does.
	PublishedList(module string) []publish.Version
}

// dbDown reports whether err says PostgreSQL could not be asked and there is an
// outage copy to answer from instead. Other database errors stay errors.
func (s *Sources) dbDown(err error) bool {
	return err != nil && s.cfg.Outage != nil && database.Unreachable(err)
}

// duringOutage serves a canonical private version's object while PostgreSQL is
// unreachable, from what the outage copy holds: a deleted version stays 410; a
// published one is read from storage by its recorded keys (shared storage has
// it; a replica's own disk may not); a version pinned from git is fetched from
// git, and its .mod and .zip are served only if they hash to the copy's pins
// (ledger.WithOutageCopy, the same integrity failure as with the database). A
// version no replica served before is refused: nothing can pin it now.
func (s *Sources) duringOutage(ctx context.Context, rt route.Route, req goproxy.Request, dbErr error) (*Object, error) {
	oc := s.cfg.Outage
	if v, ok := oc.Published(req.Module, req.Version); ok {
		if v.Deleted() {
			return nil, v.GoneError()
		}
		return s.published.object(ctx, v, req.Kind)
	}
	file := "" // .info: any pin shows the version was served
	switch req.Kind {
	case goproxy.KindMod:
		file = ledger.Mod
	case goproxy.KindZip:
		file = ledger.Zip
	}
	if !oc.Pinned(req.Module, req.Version, file) {
		return nil, ledger.NeverServed(req.Module, req.Version, dbErr)
	}
	return s.fromGit(ctx, rt, req)
}

// publishedRecords is the registry's records of modulePath, from the outage
// copy while PostgreSQL is unreachable.
func (s *Sources) publishedRecords(ctx context.Context, modulePath string) ([]publish.Version, error) {
	records, err := s.published.records(ctx, modulePath)
	if s.dbDown(err) {
		return s.cfg.Outage.PublishedList(modulePath), nil
	}
	return records, err
}
