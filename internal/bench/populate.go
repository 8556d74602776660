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
func populate(ctx context.Context, env *Env) (string, int, error) {
	key, err := graphKey(env.Graph)
	if err != nil {
		return "", 0, err
	}
	base := filepath.Join(env.CacheDir, "graph-"+key)
	download := filepath.Join(base, "download")
	done := filepath.Join(base, "complete")
	if _, err := os.Stat(done); err == nil {
		n, err := countFiles(download, ".zip")
		env.Log.Info("module graph already populated", "dir", download, "zips", n)
		return download, n, err
	}

	env.Log.Info("populating the module graph (once per machine)", "from", env.PopulateProxy, "into", download)
	// A module cache filled in a scratch directory and moved into place only when
	// complete, so an interrupted population is simply redone.
	scratch := filepath.Join(base, "populating")
	if err := removeAll(scratch); err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
	}
	client, err := newGoClient(env.Go, env.Graph, scratch)
	if err != nil {
		return "", 0, err
	}
	modcache := filepath.Join(scratch, "modcache")
	start := time.Now()
	if _, err := client.downloadAll(ctx, client.onlineEnv(env.PopulateProxy, env.PopulateSumDB, modcache), modcache, -1); err != nil {
		return "", 0, fmt.Errorf("bench: populating from %s: %w", env.PopulateProxy, err)
	}
	if err := removeAll(download); err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
	}
	if err := os.Rename(filepath.Join(modcache, "cache", "download"), download); err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
	}
	// The extracted sources are of no use to a GOPROXY tree.
	if err := removeAll(scratch); err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(done, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
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
