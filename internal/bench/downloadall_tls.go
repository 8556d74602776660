package bench

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// runDownloadAllTLS is download-all with modgate as deployed: the go command
// reaches it over TLS (SSL_CERT_FILE trusts the bench CA) with an API token from a
// .netrc file (NETRC), and every request is authenticated, decided by the policy
// and audited into PostgreSQL. The baseline is the same command on a file://
// GOPROXY with the same environment; runs alternate as in download-all.
func runDownloadAllTLS(ctx context.Context, env *Env) ([]Result, error) {
	tree, zips, err := populate(ctx, env)
	if err != nil {
		return nil, err
	}
	client, err := newGoClient(env.Go, env.Graph, env.Dir)
	if err != nil {
		return nil, err
	}
	up, err := startFileUpstream(tree, 0)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	certs, err := writeBenchCerts(env.Dir)
	if err != nil {
		return nil, err
	}
	db, err := startBenchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	mg, err := startSecureModgate(ctx, env, "modgate", up.URL, filepath.Join(env.Dir, "modgate-cache"), certs, secureOptions{Database: db})
	if err != nil {
		return nil, err
	}
	defer mg.Stop()
	u, err := url.Parse(mg.URL)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	netrc := filepath.Join(env.Dir, "netrc")
	if err := os.WriteFile(netrc, []byte(fmt.Sprintf("machine %s login token password %s\n", u.Host, mg.Token)), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	modcacheRoot := env.ModCacheDir
	if modcacheRoot == "" {
		modcacheRoot = filepath.Join(env.Dir, "gomodcache")
	}
	if err := mkdir(modcacheRoot); err != nil {
		return nil, err
	}
	measure := func(proxy string) (goRun, error) {
		mc, err := os.MkdirTemp(modcacheRoot, "gomodcache-")
		if err != nil {
			return goRun{}, fmt.Errorf("bench: %w", err)
		}
		defer removeAll(mc)
		e := append(client.offlineEnv(proxy, mc), "NETRC="+netrc, "SSL_CERT_FILE="+certs.CAFile)
		return client.downloadAll(ctx, e, mc, zips)
	}
	cold, err := measure(mg.URL)
	if err != nil {
		return nil, fmt.Errorf("cold run: %w", err)
	}
	env.Log.Info("cold run done", "seconds", seconds(cold.Wall))
	sides := []struct{ name, proxy string }{{"modgate", mg.URL}, {"file://", "file://" + filepath.ToSlash(tree)}}
	wall := map[string][]float64{}
	runs := env.LoadRuns
	for i := range env.Warmup + runs {
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, j := range order {
			s := sides[j]
			run, err := measure(s.proxy)
			if err != nil {
				return nil, fmt.Errorf("warm run %d via %s: %w", i+1, s.name, err)
			}
			timed := i >= env.Warmup
			env.Log.Info("warm run", "side", s.name, "run", i+1, "timed", timed, "seconds", seconds(run.Wall))
			if timed {
				wall[s.name] = append(wall[s.name], seconds(run.Wall))
			}
		}
	}
	warm := ratioResult(fmt.Sprintf("warm go mod download all via modgate over TLS, token in .netrc, policy + audit on, median of %d", runs),
		"s", wall, "modgate", "file://", &warmTarget)
	warm.Notes = append(warm.Notes, fmt.Sprintf("%d modules; cold run through the same modgate: %.3f s", zips, seconds(cold.Wall)))
	return []Result{warm}, nil
}
