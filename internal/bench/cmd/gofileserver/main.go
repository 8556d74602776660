// Command gofileserver is the benchmarks' floor for a Go server: net/http's
// FileServer over TLS and nothing else (no authentication, policy, audit, log or
// metrics), serving a GOPROXY tree. It speaks HTTP/1.1 and HTTP/2, as
// http.Server.ServeTLS does by default. modgate-bench builds and starts it
// beside nginx; see docs/benchmarks.md.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	root := flag.String("root", "", "the directory to serve")
	listen := flag.String("listen", "127.0.0.1:0", "the address to listen on")
	cert := flag.String("cert", "", "the TLS certificate (PEM)")
	key := flag.String("key", "", "the TLS key (PEM)")
	flag.Parse()
	if *root == "" || *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "gofileserver: -root, -cert and -key are required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gofileserver:", err)
		os.Exit(1)
	}
	// The address is the first line on stdout: the caller reads it to connect.
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: http.FileServer(http.Dir(*root)), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ServeTLS(ln, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "gofileserver:", err)
		os.Exit(1)
	}
}
