package policy

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
)

// testTimeout bounds one Rego test, so a runaway rule cannot stall a reload.
const testTimeout = 10 * time.Second

// TestResult is the outcome of one Rego unit test.
type TestResult struct {
	Name     string // package.rule, e.g. modgate.authz_test.test_owner_pulls_private
	Location string // file:line
	Pass     bool
	Skip     bool
	Error    string // evaluation error, if any
	Output   string // print() output
	Duration time.Duration
}

// TestReport is the outcome of a policy directory's Rego unit tests.
type TestReport struct {
	Results                 []TestResult // sorted by name
	Passed, Failed, Skipped int
}

// OK reports whether no test failed.
func (r TestReport) OK() bool { return r.Failed == 0 }

func (r TestReport) summary() string {
	if r.OK() {
		return fmt.Sprintf("%d tests passed, %d skipped", r.Passed, r.Skipped)
	}
	var failed []string
	for _, t := range r.Results {
		if !t.Pass && !t.Skip {
			failed = append(failed, t.Name)
		}
	}
	return fmt.Sprintf("%d of %d tests failed: %s", r.Failed, r.Passed+r.Failed, strings.Join(failed, ", "))
}

// Write prints the report like `opa test`: failures always, every test with
// verbose, then a summary line.
func (r TestReport) Write(w io.Writer, verbose bool) {
	for _, t := range r.Results {
		switch {
		case t.Skip:
			if verbose {
				fmt.Fprintf(w, "%s: SKIPPED\n", t.Name)
			}
		case t.Pass:
			if verbose {
				fmt.Fprintf(w, "%s: PASS (%s)\n", t.Name, t.Duration.Round(time.Microsecond))
			}
		case t.Error != "":
			fmt.Fprintf(w, "%s: ERROR (%s)\n  %s\n", t.Name, t.Location, t.Error)
		default:
			fmt.Fprintf(w, "%s: FAIL (%s)\n", t.Name, t.Location)
		}
		if t.Output != "" && (verbose || !t.Pass) {
			for line := range strings.Lines(t.Output) {
				fmt.Fprintf(w, "  | %s", line)
			}
			if !strings.HasSuffix(t.Output, "\n") {
				fmt.Fprintln(w)
			}
		}
	}
	fmt.Fprintf(w, "PASS: %d/%d", r.Passed, r.Passed+r.Failed)
	if r.Skipped > 0 {
		fmt.Fprintf(w, " (%d skipped)", r.Skipped)
	}
	fmt.Fprintln(w)
	if r.Failed > 0 {
		fmt.Fprintf(w, "FAIL: %d/%d\n", r.Failed, r.Passed+r.Failed)
	}
}

// RunTests runs the *_test.rego tests of the policy in dir against its data,
// exactly as a reload does. The error is for a policy that cannot be loaded at
// all; failing tests are in the report.
func RunTests(ctx context.Context, dir string) (TestReport, error) {
	ws, err := readWorkspace(dir)
	if err != nil {
		return TestReport{}, err
	}
	store, err := ws.store()
	if err != nil {
		return TestReport{}, err
	}
	if _, _, _, err := prepare(ctx, ws, store); err != nil {
		return TestReport{}, err
	}
	return runTests(ctx, ws, store)
}

func runTests(ctx context.Context, ws *workspace, store storage.Store) (TestReport, error) {
	ch, err := tester.NewRunner().
		SetStore(store).
		SetModules(ws.modules).
		SetTimeout(testTimeout).
		CapturePrintOutput(true).
		RunTests(ctx, nil)
	if err != nil {
		return TestReport{}, fmt.Errorf("policy: running tests: %w", err)
	}
	var rep TestReport
	for r := range ch {
		t := TestResult{
			Name:     r.Package + "." + r.Name,
			Pass:     r.Pass(),
			Skip:     r.Skip,
			Output:   string(r.Output),
			Duration: r.Duration,
		}
		t.Name = strings.TrimPrefix(t.Name, "data.")
		if r.Location != nil {
			t.Location = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		}
		if r.Error != nil {
			t.Error = r.Error.Error()
		}
		switch {
		case t.Skip:
			rep.Skipped++
		case t.Pass:
			rep.Passed++
		default:
			rep.Failed++
		}
		rep.Results = append(rep.Results, t)
	}
	if err := ctx.Err(); err != nil {
		return TestReport{}, fmt.Errorf("policy: running tests: %w", err)
	}
	slices.SortFunc(rep.Results, func(a, b TestResult) int { return strings.Compare(a.Name, b.Name) })
	return rep, nil
}

// Summary describes a policy directory that passed Check.
type Summary struct {
	Dir      string
	Revision string
	Files    []string // relative paths, sorted
	Modules  int      // Rego modules, tests excluded
	Tests    int      // *_test.rego files
	Owners   int      // owned prefixes
	Denylist int      // deny-list entries
	Members  int      // subjects with extra teams
	Settings Settings
}

// Check parses, schema-checks and compiles the policy in dir without running
// its tests (`modgate policy check`).
func Check(ctx context.Context, dir string) (Summary, error) {
	ws, err := readWorkspace(dir)
	if err != nil {
		return Summary{}, err
	}
	store, err := ws.store()
	if err != nil {
		return Summary{}, err
	}
	if _, _, _, err := prepare(ctx, ws, store); err != nil {
		return Summary{}, err
	}
	return Summary{
		Dir:      dir,
		Revision: ws.revision,
		Files:    ws.files,
		Modules:  len(ws.modules) - len(ws.tests),
		Tests:    len(ws.tests),
		Owners:   len(ws.data.Owners),
		Denylist: len(ws.data.Denylist),
		Members:  len(ws.data.Members),
		Settings: *ws.data.Settings,
	}, nil
}
