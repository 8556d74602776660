package source

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/gitsource"
	"github.com/modgate/modgate/internal/goproxy"
)

// Git is the company's git (internal/gitsource) as a Repo.
type Git struct {
	src *gitsource.Source
}

// NewGit returns the git source; nil when src is nil (no route configured).
func NewGit(src *gitsource.Source) *Git {
	if src == nil {
		return nil
	}
	return &Git{src: src}
}

// Serves reports whether a git route serves modulePath.
func (g *Git) Serves(modulePath string) bool { return g != nil && g.src.Serves(modulePath) }

func (g *Git) module(modulePath string) (*gitsource.Module, error) {
	if !g.Serves(modulePath) {
		return nil, derrors.New(derrors.NotFound, "not found: %s is a private module path and no private source serves it", modulePath)
	}
	return g.src.Module(modulePath)
}

// Versions returns the module's tagged versions.
func (g *Git) Versions(ctx context.Context, modulePath string) ([]string, error) {
	mod, err := g.module(modulePath)
	if err != nil {
		return nil, err
	}
	return mod.Versions(ctx)
}

func (g *Git) List(ctx context.Context, modulePath string) (*Object, error) {
	versions, err := g.Versions(ctx, modulePath)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, v := range versions {
		b.WriteString(v + "\n")
	}
	return gitObject([]byte(b.String())), nil
}

func (g *Git) Latest(ctx context.Context, modulePath string) (*Object, error) {
	mod, err := g.module(modulePath)
	if err != nil {
		return nil, err
	}
	return infoObject(mod.Latest(ctx))
}

func (g *Git) Info(ctx context.Context, modulePath, rev string) (*Object, error) {
	mod, err := g.module(modulePath)
	if err != nil {
		return nil, err
	}
	return infoObject(mod.Stat(ctx, rev))
}

func (g *Git) GoMod(ctx context.Context, modulePath, version string) (*Object, error) {
	mod, err := g.module(modulePath)
	if err != nil {
		return nil, err
	}
	data, err := mod.GoMod(ctx, version)
	if err != nil {
		return nil, err
	}
	return gitObject(data), nil
}

// Zip first checks the version (findDir, pseudo-version rules), then streams;
// errors before the first byte surface as errors here.
func (g *Git) Zip(ctx context.Context, modulePath, version string) (*Object, error) {
	mod, err := g.module(modulePath)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	started := make(chan error, 1)
	go func() {
		w := &firstWrite{w: pw, started: started}
		err := mod.Zip(ctx, w, version)
		if !w.wrote {
			started <- err
		}
		pw.CloseWithError(err)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return &Object{Body: pr, Size: -1, Source: "git"}, nil
}

// firstWrite reports on started when the first byte is written.
type firstWrite struct {
	w       io.Writer
	started chan<- error
	wrote   bool
}

func (f *firstWrite) Write(p []byte) (int, error) {
	if !f.wrote {
		f.wrote = true
		f.started <- nil
	}
	return f.w.Write(p)
}

func gitObject(data []byte) *Object {
	return &Object{Body: io.NopCloser(bytes.NewReader(data)), Size: int64(len(data)), Source: "git"}
}

func infoObject(info *gitsource.Info, err error) (*Object, error) {
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(goproxy.Info{Version: info.Version, Time: info.Time})
	if err != nil {
		return nil, err
	}
	return gitObject(data), nil
}
