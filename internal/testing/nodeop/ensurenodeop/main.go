// Command ensurenodeop installs the npm oidc-provider the tests run as a
// second OpenID Provider (package nodeop), once per machine, before the tests
// start, so that no test spends its timeout in npm. It prints one line when it
// installs and the install directory when done.
package main

import (
	"fmt"
	"os"

	"github.com/modgate/modgate/internal/testing/nodeop"
)

func main() {
	dir, err := nodeop.Ensure(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
