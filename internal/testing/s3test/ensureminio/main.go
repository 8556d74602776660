// Command ensureminio builds the MinIO server the tests use, if this machine has
// none yet, and prints its path. .ci/test runs it before `go test` so the build is
// done once, outside any test's timeout.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/modgate/modgate/internal/testing/s3test"
)

func main() {
	bin, err := s3test.EnsureBinary(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
