package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
)

// ensureTool returns the path of binary, installing the Debian package pkg with
// apt-get when it is missing: the baselines (nginx) and the load generator (wrk)
// are what users would pick, and `make bench` must run on a fresh machine. The
// package lists are refreshed (apt-get update) only when the install fails, so a
// machine with current lists installs in seconds.
func ensureTool(ctx context.Context, log *slog.Logger, binary, pkg string) (string, error) {
	if p, err := exec.LookPath(binary); err == nil {
		return p, nil
	}
	// nginx lives in /usr/sbin, which a non-login root shell may lack in PATH.
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := dir + "/" + binary
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		return "", fmt.Errorf("bench: %s is not installed and cannot be installed here (needs root and apt-get): install the %s package", binary, pkg)
	}
	log.Info("installing a benchmark tool", "package", pkg)
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		log.Info("apt-get install failed; refreshing the package lists", "package", pkg, "err", err)
		if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
			return "", fmt.Errorf("bench: apt-get update: %w\n%s", err, tail(out, 2000))
		}
		if out, err := install(); err != nil {
			return "", fmt.Errorf("bench: apt-get install %s: %w\n%s", pkg, err, tail(out, 2000))
		}
	}
	return ensureToolInstalled(binary)
}

func ensureToolInstalled(binary string) (string, error) {
	if p, err := exec.LookPath(binary); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if _, err := os.Stat(dir + "/" + binary); err == nil {
			return dir + "/" + binary, nil
		}
	}
	return "", fmt.Errorf("bench: %s is still missing after installing its package", binary)
}
