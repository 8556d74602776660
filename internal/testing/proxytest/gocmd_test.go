package proxytest_test

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// downloaded is the part of `go mod download -json` output the tests read.
type downloaded struct {
	Path, Version, Sum, GoModSum, Zip, Error string
}

// decodeDownloads parses the stream of JSON objects `go mod download -json`
// prints, keyed by path@version.
func decodeDownloads(t *testing.T, stdout string) map[string]downloaded {
	t.Helper()
	got := make(map[string]downloaded)
	dec := json.NewDecoder(strings.NewReader(stdout))
	for {
		var d downloaded
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("decoding go mod download -json output: %v", err)
		}
		got[d.Path+"@"+d.Version] = d
	}
}

// TestGoCommandDownload runs the real go command straight against the fixture
// upstream (no checksum database: sumdbtest's tests cover verification) and
// checks it accepts every standard module with the hashes DirHash and GoModHash
// predict.
func TestGoCommandDownload(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	g := gotest.New(t, "GOPROXY="+upstream.URL, "GOSUMDB=off")

	args := []string{"mod", "download", "-json"}
	for _, m := range proxytest.StandardModules() {
		args = append(args, m.String())
	}
	stdout, _, err := g.Run("", args...)
	if err != nil {
		t.Fatalf("go mod download: %v", err)
	}
	got := decodeDownloads(t, stdout)
	for _, m := range proxytest.StandardModules() {
		t.Run(m.String(), func(t *testing.T) {
			d, ok := got[m.String()]
			if !ok {
				t.Fatalf("go mod download did not report %s", m)
			}
			if d.Error != "" {
				t.Fatalf("go mod download: %s", d.Error)
			}
			sum, err := proxytest.DirHash(m)
			if err != nil {
				t.Fatal(err)
			}
			gsum, err := proxytest.GoModHash(m)
			if err != nil {
				t.Fatal(err)
			}
			if d.Sum != sum {
				t.Errorf("go command Sum = %s, DirHash = %s", d.Sum, sum)
			}
			if d.GoModSum != gsum {
				t.Errorf("go command GoModSum = %s, GoModHash = %s", d.GoModSum, gsum)
			}
			if n := upstream.Hits(proxytest.ZipPath(m.Path, m.Version)); n != 1 {
				t.Errorf("zip fetched %d times, want 1", n)
			}
		})
	}
}

// TestGoCommandVersions checks how the go command reads the fixture's version
// lists and retractions: `go list -m -versions` hides retracted versions unless
// -retracted is given, and `go get m@latest` skips retracted versions.
func TestGoCommandVersions(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	g := gotest.New(t, "GOPROXY="+upstream.URL, "GOSUMDB=off")
	dir := g.MainModule("example.com/main")

	t.Run("list", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			want string
		}{
			{"retract", []string{proxytest.RetractPath}, proxytest.RetractPath + " v1.0.0 v1.2.0"},
			{"retract/with-retracted", []string{"-retracted", proxytest.RetractPath}, proxytest.RetractPath + " v1.0.0 v1.1.0 v1.2.0"},
			{"selfretract", []string{proxytest.SelfRetractPath}, proxytest.SelfRetractPath + " v1.0.0"},
			{"hello/omits-pseudo", []string{proxytest.HelloPath}, proxytest.HelloPath + " v1.0.0 v1.1.0"},
			{"v2", []string{proxytest.HelloV2Path}, proxytest.HelloV2Path + " v2.0.0 v2.1.0"},
			{"incompatible", []string{proxytest.LegacyPath}, proxytest.LegacyPath + " v1.0.0 v3.0.0+incompatible"},
			{"upper", []string{proxytest.UpperPath}, proxytest.UpperPath + " v1.0.0"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args := append([]string{"list", "-m", "-versions"}, tt.args...)
				args[len(args)-1] += "@latest"
				stdout, _, err := g.Run(dir, args...)
				if err != nil {
					t.Fatalf("go list: %v", err)
				}
				// go list -m m@latest prints "<path> <versions...>"; the
				// resolved version is not repeated.
				if got := strings.TrimSpace(stdout); got != tt.want {
					t.Errorf("go list -m -versions = %q, want %q", got, tt.want)
				}
			})
		}
	})

	t.Run("get", func(t *testing.T) {
		tests := []struct {
			name, query, want string
		}{
			{"latest/retract", proxytest.RetractPath + "@latest", "v1.2.0"},
			{"latest/selfretract-skips-retracted", proxytest.SelfRetractPath + "@latest", "v1.0.0"},
			{"latest/hello", proxytest.HelloPath + "@latest", "v1.1.0"},
			{"latest/v2", proxytest.HelloV2Path + "@latest", "v2.1.0"},
			{"latest/incompatible", proxytest.LegacyPath + "@latest", "v3.0.0+incompatible"},
			{"latest/upper", proxytest.UpperPath + "@latest", "v1.0.0"},
			{"version/hello", proxytest.HelloPath + "@v1.0.0", "v1.0.0"},
			{"version/pseudo", proxytest.HelloPath + "@" + proxytest.HelloPseudo, proxytest.HelloPseudo},
			{"version/retracted-allowed-explicitly", proxytest.RetractPath + "@v1.1.0", "v1.1.0"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				path, _, _ := strings.Cut(tt.query, "@")
				_, stderr, err := g.Run(dir, "get", tt.query)
				if err != nil {
					t.Fatalf("go get %s: %v", tt.query, err)
				}
				if tt.query == proxytest.RetractPath+"@v1.1.0" && !strings.Contains(stderr, "retracted by module author: v1.1.0 corrupts data") {
					t.Errorf("go get of a retracted version did not warn with the rationale; stderr:\n%s", stderr)
				}
				stdout, _, err := g.Run(dir, "list", "-m", "-f", "{{.Version}}", path)
				if err != nil {
					t.Fatalf("go list: %v", err)
				}
				if got := strings.TrimSpace(stdout); got != tt.want {
					t.Errorf("go get %s selected %s, want %s", tt.query, got, tt.want)
				}
			})
		}
	})
}
