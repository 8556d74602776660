// Command gitserve serves the git repositories under a directory over git's
// smart-HTTP protocol (`git http-backend` as CGI), without authentication, on a
// loopback address. `make run` (.ci/dev-run) uses it for the demo private
// module; it is a development fixture, never a production git server.
//
//	gitserve -root DIR -listen 127.0.0.1:8444
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
)

func main() {
	root := flag.String("root", "", "directory holding the repositories (GIT_PROJECT_ROOT)")
	listen := flag.String("listen", "127.0.0.1:8444", "loopback address to serve on")
	flag.Parse()
	if *root == "" {
		log.Fatal("gitserve: -root is required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("gitserve: -listen %s: a loopback address only (no authentication)", *listen)
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	git, err := exec.LookPath("git")
	if err != nil {
		log.Fatalf("gitserve: %v", err)
	}
	h := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + abs,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + abs,
		},
		Stderr: os.Stderr,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("gitserve: %v", err)
	}
	fmt.Printf("gitserve: serving %s on http://%s\n", abs, ln.Addr())
	log.Fatal(http.Serve(ln, h))
}
