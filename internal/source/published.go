package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/storage"
)

// Registry is the record of versions published into modgate;
// *publish.Registry implements it.
type Registry interface {
	Get(ctx context.Context, modulePath, version string) (publish.Version, error)
	List(ctx context.Context, modulePath string) ([]publish.Version, error)
	Store() storage.Store
}

// Published is the versions published into modgate as a Repo. A deleted version
// is derrors.Gone, whatever any other source has.
type Published struct {
	reg Registry
}

// NewPublished returns the published source; nil when reg is nil (no database).
func NewPublished(reg Registry) *Published {
	if reg == nil {
		return nil
	}
	return &Published{reg: reg}
}

// live returns the module's versions that are not deleted, and every record.
func (p *Published) records(ctx context.Context, modulePath string) ([]publish.Version, error) {
	if p == nil {
		return nil, nil
	}
	return p.reg.List(ctx, modulePath)
}

// version returns modulePath@version's record: NotFound when it was never
// published, Gone when it was deleted.
func (p *Published) version(ctx context.Context, modulePath, version string) (publish.Version, error) {
	if p == nil {
		return publish.Version{}, derrors.New(derrors.NotFound, "%s@%s is not published in modgate", modulePath, version)
	}
	v, err := p.reg.Get(ctx, modulePath, version)
	if err != nil {
		return v, err
	}
	if v.Deleted() {
		return v, v.GoneError()
	}
	return v, nil
}

func (p *Published) List(ctx context.Context, modulePath string) (*Object, error) {
	all, err := p.records(ctx, modulePath)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, v := range all {
		if !v.Deleted() {
			b.WriteString(v.Version + "\n")
		}
	}
	return publishedObject([]byte(b.String())), nil
}

func (p *Published) Latest(ctx context.Context, modulePath string) (*Object, error) {
	all, err := p.records(ctx, modulePath)
	if err != nil {
		return nil, err
	}
	var live []string
	byVersion := make(map[string]publish.Version)
	for _, v := range all {
		if !v.Deleted() {
			live = append(live, v.Version)
			byVersion[v.Version] = v
		}
	}
	best := Newest(live)
	if best == "" {
		return nil, derrors.New(derrors.NotFound, "no published version of %s", modulePath)
	}
	return publishedInfo(byVersion[best])
}

// Info answers canonical versions only: a query is git's to resolve.
func (p *Published) Info(ctx context.Context, modulePath, rev string) (*Object, error) {
	if !goproxy.IsCanonical(rev) {
		return nil, derrors.New(derrors.NotFound, "%s@%s is not published in modgate", modulePath, rev)
	}
	return p.get(ctx, modulePath, rev, goproxy.KindInfo)
}

func (p *Published) GoMod(ctx context.Context, modulePath, version string) (*Object, error) {
	return p.get(ctx, modulePath, version, goproxy.KindMod)
}

func (p *Published) Zip(ctx context.Context, modulePath, version string) (*Object, error) {
	return p.get(ctx, modulePath, version, goproxy.KindZip)
}

func (p *Published) get(ctx context.Context, modulePath, version string, kind goproxy.Kind) (*Object, error) {
	v, err := p.version(ctx, modulePath, version)
	if err != nil {
		return nil, err
	}
	return p.object(ctx, v, kind)
}

// object is the .info, .mod or .zip of the live version v.
func (p *Published) object(ctx context.Context, v publish.Version, kind goproxy.Kind) (*Object, error) {
	switch kind {
	case goproxy.KindInfo:
		return publishedInfo(v)
	case goproxy.KindMod:
		return p.open(ctx, v, v.ModKey)
	case goproxy.KindZip:
		return p.open(ctx, v, v.ZipKey)
	}
	return nil, fmt.Errorf("source: unexpected request kind %v for a published version", kind)
}

func (p *Published) open(ctx context.Context, v publish.Version, key string) (*Object, error) {
	obj, err := p.reg.Store().Open(ctx, key)
	if err != nil {
		// The row names an object that must exist: it was stored durably before
		// the row committed. Missing means lost storage, not a missing version.
		// The cause keeps its text but not its kind: derrors.Status would
		// find the NotFound inside and answer 404, which tells the go command
		// the version does not exist.
		if errors.Is(err, derrors.NotFound) {
			err = derrors.WithCause(derrors.Unavailable, errors.New(err.Error()), "the stored copy of %s@%s is missing; tell the platform team", v.Module, v.Version)
		}
		return nil, err
	}
	return &Object{Body: obj, Size: obj.Info().Size, Source: "published"}, nil
}

// publishedInfo is the .info of a published version: its Time is when it was
// published.
func publishedInfo(v publish.Version) (*Object, error) {
	data, err := json.Marshal(goproxy.Info{Version: v.Version, Time: v.PublishedAt.UTC()})
	if err != nil {
		return nil, err
	}
	return publishedObject(append(data, '\n')), nil
}

func publishedObject(data []byte) *Object {
	return &Object{Body: io.NopCloser(bytes.NewReader(data)), Size: int64(len(data)), Source: "published"}
}
