package policy

import (
	"context"
	"strings"
	"testing"
)

// TestPolicyWorkspaceTests runs the Rego unit tests in policy/ the way
// `modgate policy test` does, so CI fails when a rule or its data breaks.
func TestPolicyWorkspaceTests(t *testing.T) {
	t.Parallel()
	rep, err := RunTests(context.Background(), defaultDir)
	if err != nil {
		t.Fatalf("RunTests(%s): %v", defaultDir, err)
	}
	var out strings.Builder
	rep.Write(&out, true)
	t.Log("\n" + out.String())
	if !rep.OK() {
		t.Fatalf("Rego tests failed: %s", rep.summary())
	}
	if rep.Passed < 10 {
		t.Errorf("only %d Rego tests ran; is authz_test.rego missing?", rep.Passed)
	}
}
