// Command ensuregovulncheck installs the govulncheck the tests run, if this
// machine has none yet, and prints one line saying what it installed. .ci/test
// runs it before `go test` so the build is done once, outside any test's timeout.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/modgate/modgate/internal/testing/vulntest"
)

func main() {
	bin, err := vulntest.EnsureGovulncheck(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("govulncheck %s (golang.org/x/vuln, for the vulnerability-database tests): %s\n", vulntest.GovulncheckVersion, bin)
}
