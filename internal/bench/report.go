package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is the outcome of one benchmark run, written as JSON and markdown.
type Report struct {
	Started   time.Time        `json:"started"`
	Command   string           `json:"command"`
	Machine   Machine          `json:"machine"`
	Scenarios []ScenarioReport `json:"scenarios"`
}

// ScenarioReport is one scenario's figures, or the error that stopped it.
type ScenarioReport struct {
	Name    string   `json:"name"`
	Summary string   `json:"summary"`
	Seconds float64  `json:"seconds"`
	Results []Result `json:"results"`
	Error   string   `json:"error,omitempty"`
}

// Result is one figure. When Baseline is set, Ratio is Value/Baseline and the
// target applies to the ratio; otherwise it applies to Value.
type Result struct {
	Figure       string  `json:"figure"`
	Unit         string  `json:"unit"`
	Value        float64 `json:"value"`
	BaselineName string  `json:"baseline_name,omitempty"`
	Baseline     float64 `json:"baseline,omitempty"`
	Ratio        float64 `json:"ratio,omitempty"`
	Target       *Target `json:"target,omitempty"`
	// CILow and CIHigh bound the 95% bootstrap interval of the judged quantity
	// (Ratio when there is a baseline, else Value); both zero when not computed.
	CILow  float64 `json:"ci_low,omitempty"`
	CIHigh float64 `json:"ci_high,omitempty"`
	// Pass is nil when the figure has no target, or when it is inconclusive.
	Pass *bool `json:"pass,omitempty"`
	// Inconclusive says why a figure with a target was not judged: its 95%
	// interval straddles the bound, so pass or fail would be chance.
	Inconclusive string `json:"inconclusive,omitempty"`
	// Samples are the raw measurements behind Value and Baseline, by series name.
	Samples map[string][]float64 `json:"samples,omitempty"`
	// Notes are observations that explain the figure (request counts, CPU time).
	Notes []string `json:"notes,omitempty"`
}

// Target is a bound a figure must meet.
type Target struct {
	Op    string  `json:"op"` // "<=" or ">="
	Bound float64 `json:"bound"`
}

func (t Target) String() string {
	op := map[string]string{"<=": "≤", ">=": "≥"}[t.Op]
	return op + " " + formatNumber(t.Bound)
}

func (t Target) met(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	if t.Op == ">=" {
		return v >= t.Bound
	}
	return v <= t.Bound
}

// compared returns a result whose figure is value relative to baseline, judged
// against target.
func compared(figure, unit string, value float64, baselineName string, baseline float64, target Target) Result {
	r := Result{Figure: figure, Unit: unit, Value: value, BaselineName: baselineName, Baseline: baseline, Target: &target}
	r.Ratio = math.NaN()
	if baseline != 0 {
		r.Ratio = value / baseline
	}
	r.Pass = boolPtr(target.met(r.Ratio))
	return r
}

// MarshalJSON writes a number JSON cannot hold (NaN from a zero baseline or an
// empty series) as absent rather than failing the whole report.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	p := plain(r)
	for _, f := range []*float64{&p.Value, &p.Baseline, &p.Ratio, &p.CILow, &p.CIHigh} {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
	return json.Marshal(p)
}

// hasCI reports whether r carries a usable interval.
func (r Result) hasCI() bool {
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	return finite(r.CILow) && finite(r.CIHigh) && (r.CILow != 0 || r.CIHigh != 0)
}

// Failed reports whether any figure missed its target.
func (r *Report) Failed() bool {
	for _, s := range r.Scenarios {
		for _, res := range s.Results {
			if res.Pass != nil && !*res.Pass {
				return true
			}
		}
	}
	return false
}

// WriteFiles writes the report as bench-<time>.json and .md into dir, and copies
// them to latest.json and latest.md. It returns the markdown file's path.
func (r *Report) WriteFiles(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("bench: encoding report: %w", err)
	}
	var md strings.Builder
	r.WriteMarkdown(&md)
	stamp := r.Started.Format("20060102T150405Z")
	var mdPath string
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"bench-" + stamp + ".json", append(js, '\n')},
		{"bench-" + stamp + ".md", []byte(md.String())},
		{"latest.json", append(js, '\n')},
		{"latest.md", []byte(md.String())},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return "", fmt.Errorf("bench: %w", err)
		}
		if mdPath == "" && strings.HasSuffix(p, ".md") {
			mdPath = p
		}
	}
	return mdPath, nil
}

// WriteMarkdown writes the summary table and each figure's raw samples.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# modgate benchmark, %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- machine: %s\n", r.Machine)
	if r.Command != "" {
		fmt.Fprintf(w, "- command: `%s`\n", r.Command)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | figure | value | baseline | ratio | target | result |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, s := range r.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(w, "| %s | — | — | — | — | — | ERROR: %s |\n", s.Name, oneLine(s.Error))
		}
		for _, res := range s.Results {
			baseline, ratio, target, result := "—", "—", "—", "—"
			if res.BaselineName != "" {
				baseline = fmt.Sprintf("%s %s (%s)", formatNumber(res.Baseline), res.Unit, res.BaselineName)
				if !math.IsNaN(res.Ratio) {
					ratio = fmt.Sprintf("%.3f", res.Ratio)
					if res.hasCI() {
						ratio += fmt.Sprintf(" (95%%: %.3f to %.3f)", res.CILow, res.CIHigh)
					}
				}
			}
			if res.Target != nil {
				target = res.Target.String()
			}
			if res.Pass != nil {
				result = "FAIL"
				if *res.Pass {
					result = "pass"
				}
			}
			if res.Inconclusive != "" {
				result = "inconclusive"
			}
			value := formatNumber(res.Value) + " " + res.Unit
			if res.BaselineName == "" && res.hasCI() {
				value += fmt.Sprintf(" (95%%: %s to %s)", formatNumber(res.CILow), formatNumber(res.CIHigh))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n",
				s.Name, res.Figure, value, baseline, ratio, target, result)
		}
	}
	for _, s := range r.Scenarios {
		for _, res := range s.Results {
			if len(res.Samples) == 0 && len(res.Notes) == 0 && res.Inconclusive == "" {
				continue
			}
			fmt.Fprintf(w, "\n## %s: %s\n\n", s.Name, res.Figure)
			if res.Inconclusive != "" {
				fmt.Fprintf(w, "- **inconclusive**: %s\n", res.Inconclusive)
			}
			names := make([]string, 0, len(res.Samples))
			for n := range res.Samples {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				vs := make([]string, len(res.Samples[n]))
				for i, v := range res.Samples[n] {
					vs[i] = formatNumber(v)
				}
				fmt.Fprintf(w, "- %s: %s\n", n, strings.Join(vs, ", "))
			}
			for _, n := range res.Notes {
				fmt.Fprintf(w, "- %s\n", n)
			}
		}
	}
}

func formatNumber(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", "\\|")
}
