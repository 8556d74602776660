package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// populate returns a GOPROXY tree holding every module of the benchmark graph: the
// download directory of a module cache filled once, from PopulateProxy, into
// CacheDir. Later runs (and other checkouts on the machine) reuse it; a changed
// go.mod or go.sum gets a tree of its own. The second result is the number of
// module zips in the tree, which is what a complete `go mod download all` fetches.
//
// The tree appears by one rename of a complete download directory, so its
// existence means it is complete; an interrupted or concurrent population works
// in a scratch directory of its own.
func populate(ctx context.Context, env *Env) (string, int, error) {
	key, err := graphKey(env.Graph)
	if err != nil {
		return "", 0, err
	}
	base := filepath.Join(env.CacheDir, "graph-"+key)
	download := filepath.Join(base, "download")
	if _, err := os.Stat(download); err == nil {
		n, err := countFiles(download, ".zip")
		env.Log.Info("module graph already populated", "dir", download, "zips", n)
		return download, n, err
	}

	env.Log.Info("populating the module graph (once per machine)", "from", env.PopulateProxy, "into", download)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
	}
	scratch, err := os.MkdirTemp(base, "populating-")
	if err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
	}
	defer removeAll(scratch) // the extracted sources are of no use to a GOPROXY tree
	client, err := newGoClient(env.Go, env.Graph, scratch)
	if err != nil {
		return "", 0, err
	}
	modcache := filepath.Join(scratch, "modcache")
	start := time.Now()
	if _, err := client.downloadAll(ctx, client.onlineEnv(env.PopulateProxy, env.PopulateSumDB, modcache), modcache, -1); err != nil {
		return "", 0, fmt.Errorf("bench: populating from %s: %w", env.PopulateProxy, err)
	}
	if err := os.Rename(filepath.Join(modcache, "cache", "download"), download); err != nil {
		// A concurrent population may have finished first; its tree is as good.
		if _, serr := os.Stat(download); serr != nil {
			return "", 0, fmt.Errorf("bench: %w", err)
		}
	}
	n, err := countFiles(download, ".zip")
	env.Log.Info("module graph populated", "dir", download, "zips", n, "seconds", time.Since(start).Seconds())
	return download, n, err
}

// graphKey names a graph by the hash of its go.mod and go.sum.
func graphKey(graph string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(graph, name))
		if err != nil {
			return "", fmt.Errorf("bench: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
