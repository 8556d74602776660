package proxytest

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/dirhash"
)

// get fetches path from s with a fresh connection and returns status, headers and
// body; a transport error is returned with whatever body arrived.
func get(t *testing.T, s *Server, path string) (*http.Response, []byte, error) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := client.Get(s.URL + path)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func mustGet(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, body, err := get(t, s, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func findModule(t *testing.T, path, version string) Module {
	t.Helper()
	for _, m := range StandardModules() {
		if m.Path == path && m.Version == version {
			return m
		}
	}
	t.Fatalf("no standard module %s@%s", path, version)
	return Module{}
}

// blobModule is a module holding size incompressible bytes: big enough to stream
// in many reads, small enough to zip quickly under -race.
func blobModule(size int) Module {
	return Module{Path: "mod.test/blob", Version: "v1.0.0", Files: map[string]string{
		"go.mod":   "module mod.test/blob\n",
		"blob.bin": string(incompressible(size)),
	}}
}

func TestProtocol(t *testing.T) {
	t.Parallel()
	s := NewServer(t, StandardModules()...)
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantBody   string
		wantType   string
	}{
		{"list/retract", "/mod.test/retract/@v/list", 200, "v1.0.0\nv1.1.0\nv1.2.0\n", "text/plain; charset=utf-8"},
		{"list/omits-pseudo", "/mod.test/hello/@v/list", 200, "v1.0.0\nv1.1.0\n", "text/plain; charset=utf-8"},
		{"list/v2", "/mod.test/hello/v2/@v/list", 200, "v2.0.0\nv2.1.0\n", ""},
		{"list/incompatible", "/mod.test/legacy/@v/list", 200, "v1.0.0\nv3.0.0+incompatible\n", ""},
		{"list/upper-escaped", "/mod.test/!upper/!case/@v/list", 200, "v1.0.0\n", ""},
		{"list/upper-unescaped-is-bad", "/mod.test/Upper/Case/@v/list", 400, "", ""},
		{"info", "/mod.test/hello/@v/v1.0.0.info", 200, `{"Version":"v1.0.0","Time":"2024-03-05T12:00:00Z"}`, "application/json"},
		{"info/pseudo-time", "/mod.test/hello/@v/" + HelloPseudo + ".info", 200, `{"Version":"` + HelloPseudo + `","Time":"2023-01-02T03:04:05Z"}`, ""},
		{"latest/release", "/mod.test/retract/@latest", 200, `{"Version":"v1.2.0","Time":"2024-03-03T12:00:00Z"}`, "application/json"},
		{"latest/incompatible", "/mod.test/legacy/@latest", 200, `{"Version":"v3.0.0+incompatible","Time":"2024-03-10T12:00:00Z"}`, ""},
		{"mod/retract", "/mod.test/retract/@v/v1.2.0.mod", 200, "module mod.test/retract\n\ngo 1.21\n\nretract v1.1.0 // v1.1.0 corrupts data\n", "text/plain; charset=utf-8"},
		{"mod/synthesized", "/mod.test/legacy/@v/v3.0.0+incompatible.mod", 200, "module mod.test/legacy\n", ""},
		{"mod/upper", "/mod.test/!upper/!case/@v/v1.0.0.mod", 200, "module mod.test/Upper/Case\n\ngo 1.21\n", ""},
		{"missing/module", "/mod.test/nope/@v/list", 404, "", ""},
		{"missing/version", "/mod.test/hello/@v/v9.9.9.info", 404, "", ""},
		{"missing/ext", "/mod.test/hello/@v/v1.0.0.tar", 404, "", ""},
		{"missing/not-protocol", "/robots.txt", 404, "", ""},
		{"sumdb/unmounted", "/sumdb/sum.mod.test/supported", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body, err := get(t, s, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if tt.wantType != "" && resp.Header.Get("Content-Type") != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", resp.Header.Get("Content-Type"), tt.wantType)
			}
		})
	}
}

func TestMissingStatusGone(t *testing.T) {
	t.Parallel()
	s := NewServer(t, findModule(t, HelloPath, "v1.0.0"))
	s.SetMissingStatus(http.StatusGone)
	if code, _ := mustGet(t, s, "/mod.test/nope/@v/list"); code != http.StatusGone {
		t.Errorf("unknown module: status %d, want 410", code)
	}
	if code, _ := mustGet(t, s, ListPath(HelloPath)); code != http.StatusOK {
		t.Errorf("known module: status %d, want 200", code)
	}
}

// TestZipsAndHashes checks every standard zip against the x/mod/zip rules the go
// command applies, and DirHash/GoModHash against hashes of the served bytes.
func TestZipsAndHashes(t *testing.T) {
	t.Parallel()
	s := NewServer(t, StandardModules()...)
	dir := t.TempDir()
	for _, m := range StandardModules() {
		t.Run(m.String(), func(t *testing.T) {
			code, body := mustGet(t, s, ZipPath(m.Path, m.Version))
			if code != http.StatusOK {
				t.Fatalf("zip status %d", code)
			}
			zr, err := zip.NewReader(strings.NewReader(body), int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range zr.File {
				names = append(names, f.Name)
			}
			var want []string
			for name := range m.Files {
				want = append(want, m.String()+"/"+name)
			}
			slices.Sort(names)
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("zip files = %q, want %q", names, want)
			}

			file := filepath.Join(dir, strings.NewReplacer("/", "_", "+", "_").Replace(m.String())+".zip")
			if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			served, err := dirhash.HashZip(file, dirhash.Hash1)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := DirHash(m)
			if err != nil {
				t.Fatal(err)
			}
			if sum != served {
				t.Errorf("DirHash = %s, hash of served zip = %s", sum, served)
			}
			_, gomod := mustGet(t, s, ModPath(m.Path, m.Version))
			servedMod, _ := goModHash([]byte(gomod))
			gsum, err := GoModHash(m)
			if err != nil {
				t.Fatal(err)
			}
			if gsum != servedMod {
				t.Errorf("GoModHash = %s, hash of served .mod = %s", gsum, servedMod)
			}
			zsum, zgsum := s.Sums(t, m.Path, m.Version)
			if zsum != sum || zgsum != gsum {
				t.Errorf("Sums = %s %s, want %s %s", zsum, zgsum, sum, gsum)
			}
		})
	}
}

func TestStandardModulesDeterministic(t *testing.T) {
	t.Parallel()
	a, b := StandardModules(), StandardModules()
	for i := range a {
		if a[i].Path == LargePath { // zipping it costs seconds under -race; compare its files
			if a[i].Files["blob.bin"] != b[i].Files["blob.bin"] {
				t.Errorf("%s: blob differs between calls", a[i])
			}
			continue
		}
		za, err := Zip(a[i])
		if err != nil {
			t.Fatal(err)
		}
		zb, err := Zip(b[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(za, zb) {
			t.Errorf("%s: zips differ between calls", a[i])
		}
	}
	large := findModule(t, LargePath, "v1.0.0")
	z, err := Zip(large)
	if err != nil {
		t.Fatal(err)
	}
	if len(z) < LargeSize {
		t.Errorf("large zip is %d bytes, want at least %d (data must not compress)", len(z), LargeSize)
	}
}

func TestRecording(t *testing.T) {
	t.Parallel()
	s := NewServer(t, StandardModules()...)
	req, _ := http.NewRequest(http.MethodGet, s.URL+ListPath(UpperPath), nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustGet(t, s, ListPath(UpperPath))
	mustGet(t, s, "/private.corp/x/@v/list")

	if got := s.Hits("/mod.test/!upper/!case/@v/list"); got != 2 {
		t.Errorf("Hits(list) = %d, want 2", got)
	}
	want := []string{"/mod.test/!upper/!case/@v/list", "/mod.test/!upper/!case/@v/list", "/private.corp/x/@v/list"}
	if got := s.Paths(); !slices.Equal(got, want) {
		t.Errorf("Paths = %q, want %q", got, want)
	}
	if got := s.Requests()[0].Header.Get("Authorization"); got != "Bearer secret" {
		t.Errorf("recorded Authorization = %q", got)
	}
	s.ResetRequests()
	if len(s.Paths()) != 0 || s.Hits(ListPath(UpperPath)) != 0 {
		t.Error("ResetRequests kept requests")
	}
}

func TestAddModules(t *testing.T) {
	t.Parallel()
	s := NewServer(t, findModule(t, HelloPath, "v1.0.0"))
	if _, body := mustGet(t, s, ListPath(HelloPath)); body != "v1.0.0\n" {
		t.Fatalf("list = %q", body)
	}
	if err := s.AddModules(findModule(t, HelloPath, "v1.1.0")); err != nil {
		t.Fatal(err)
	}
	if _, body := mustGet(t, s, ListPath(HelloPath)); body != "v1.0.0\nv1.1.0\n" {
		t.Errorf("list after AddModules = %q", body)
	}
	if err := s.AddModules(Module{Path: "Bad Path", Version: "v1.0.0"}); err == nil {
		t.Error("AddModules accepted an invalid module path")
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	large := blobModule(256 << 10)
	hello := findModule(t, HelloPath, "v1.0.0")
	zipPath := ZipPath(large.Path, "v1.0.0")
	infoPath := InfoPath(HelloPath, "v1.0.0")
	full, err := Zip(large)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		path  string
		fault Fault
		check func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration)
	}{
		{"status/500", zipPath, Fault{Status: 500}, wantStatus(500)},
		{"status/429", zipPath, Fault{Status: 429}, wantStatus(429)},
		{"status/410", zipPath, Fault{Status: 410}, wantStatus(410)},
		{"delay", infoPath, Fault{Delay: 300 * time.Millisecond}, func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration) {
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("err %v", err)
			}
			if elapsed < 300*time.Millisecond {
				t.Errorf("answered after %v, want >= 300ms", elapsed)
			}
		}},
		{"drip", infoPath, Fault{DripBytes: 10, DripInterval: 20 * time.Millisecond}, func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration) {
			if err != nil {
				t.Fatal(err)
			}
			// 10 bytes per write, 20ms between writes.
			pauses := (len(body)+9)/10 - 1
			if want := time.Duration(pauses) * 20 * time.Millisecond; pauses < 3 || elapsed < want {
				t.Errorf("%d bytes answered after %v, want >= %v", len(body), elapsed, want)
			}
			if !strings.Contains(string(body), `"Version":"v1.0.0"`) {
				t.Errorf("body = %q", body)
			}
		}},
		{"truncate/keep-length", zipPath, Fault{Truncate: true, TruncateAfter: 1000, KeepLength: true}, func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration) {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("err = %v, want unexpected EOF", err)
			}
			if len(body) != 1000 {
				t.Errorf("got %d bytes, want 1000", len(body))
			}
		}},
		{"truncate/no-length", zipPath, Fault{Truncate: true, TruncateAfter: 1000}, func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration) {
			if err != nil {
				t.Errorf("err = %v, want a clean short body", err)
			}
			if len(body) != 1000 || !bytes.Equal(body, full[:1000]) {
				t.Errorf("got %d bytes, want the first 1000", len(body))
			}
		}},
		{"reset", zipPath, Fault{Reset: true, ResetAfter: 5000}, func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration) {
			if err == nil || errors.Is(err, io.ErrUnexpectedEOF) && len(body) == len(full) {
				t.Fatalf("err = %v after %d bytes, want a connection error", err, len(body))
			}
			if resp == nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(full)) {
				t.Errorf("headers: %+v, want 200 with full Content-Length", resp)
			}
			if len(body) > 5000 {
				t.Errorf("got %d bytes, want at most 5000", len(body))
			}
		}},
		{"corrupt", zipPath, Fault{Corrupt: true, CorruptOffset: 100}, func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration) {
			if err != nil || len(body) != len(full) {
				t.Fatalf("err %v, %d bytes", err, len(body))
			}
			if body[100] != full[100]^0xff || !bytes.Equal(body[:100], full[:100]) || !bytes.Equal(body[101:], full[101:]) {
				t.Error("body is not the zip with byte 100 flipped")
			}
		}},
		{"info-version", infoPath, Fault{InfoVersion: "v9.9.9"}, func(t *testing.T, resp *http.Response, body []byte, err error, elapsed time.Duration) {
			var info Info
			if err := json.Unmarshal(body, &info); err != nil || info.Version != "v9.9.9" {
				t.Errorf("info = %s (%v), want Version v9.9.9", body, err)
			}
			if !info.Time.Equal(hello.InfoTime()) {
				t.Errorf("Time = %v, want %v", info.Time, hello.InfoTime())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(t, large, hello)
			s.SetFault(tt.path, tt.fault)
			start := time.Now()
			resp, body, err := get(t, s, tt.path)
			tt.check(t, resp, body, err, time.Since(start))
			if resp != nil {
				resp.Body.Close()
			}
		})
	}
}

func wantStatus(code int) func(*testing.T, *http.Response, []byte, error, time.Duration) {
	return func(t *testing.T, resp *http.Response, body []byte, err error, _ time.Duration) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != code {
			t.Errorf("status = %d, want %d", resp.StatusCode, code)
		}
	}
}

func TestFaultScope(t *testing.T) {
	t.Parallel()
	s := NewServer(t, findModule(t, HelloPath, "v1.0.0"))
	list, info := ListPath(HelloPath), InfoPath(HelloPath, "v1.0.0")

	s.SetGlobalFault(Fault{Status: 503})
	s.SetFault(info, Fault{Status: 500, Times: 2})
	for i, want := range []struct {
		path string
		code int
	}{{list, 503}, {info, 500}, {info, 500}, {info, 503}} {
		if code, _ := mustGet(t, s, want.path); code != want.code {
			t.Errorf("request %d %s: status %d, want %d", i, want.path, code, want.code)
		}
	}
	s.ClearFaults()
	if code, _ := mustGet(t, s, info); code != 200 {
		t.Errorf("after ClearFaults: status %d, want 200", code)
	}
	if got := s.Hits(info); got != 4 {
		t.Errorf("Hits(info) = %d, want 4 (faulted requests count)", got)
	}
}

func TestGate(t *testing.T) {
	t.Parallel()
	large := blobModule(256 << 10)
	s := NewServer(t, large)
	path := ZipPath(large.Path, "v1.0.0")
	g := s.Gate(path, 4096)

	const n = 5
	type result struct {
		body []byte
		err  error
	}
	results := make(chan result, n)
	firstBytes := make(chan int, n)
	for range n {
		go func() {
			resp, err := http.Get(s.URL + path)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 4096)
			k, err := io.ReadFull(resp.Body, buf)
			firstBytes <- k
			if err != nil {
				results <- result{err: err}
				return
			}
			rest, err := io.ReadAll(resp.Body)
			results <- result{body: append(buf, rest...), err: err}
		}()
	}
	select {
	case <-g.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("no response reached the gate")
	}
	for range n {
		select {
		case k := <-firstBytes:
			if k != 4096 {
				t.Errorf("read %d bytes before the gate, want 4096", k)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("headers and first bytes did not arrive before Release")
		}
	}
	select {
	case r := <-results:
		t.Fatalf("a response completed before Release: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	if got := g.Count(); got != n {
		t.Errorf("Count = %d, want %d", got, n)
	}
	g.Release()
	full, _ := Zip(large)
	for range n {
		r := <-results
		if r.err != nil || !bytes.Equal(r.body, full) {
			t.Errorf("after Release: err %v, %d bytes, want the full %d", r.err, len(r.body), len(full))
		}
	}
}

// TestGateHeldAtCleanup proves a test that never releases its gate still ends:
// cleanup unblocks held responses before closing the server.
func TestGateHeldAtCleanup(t *testing.T) {
	t.Parallel()
	done := make(chan error, 1)
	t.Run("inner", func(t *testing.T) {
		s := NewServer(t, findModule(t, HelloPath, "v1.0.0"))
		g := s.Gate(InfoPath(HelloPath, "v1.0.0"), 0)
		go func() {
			resp, err := http.Get(s.URL + InfoPath(HelloPath, "v1.0.0"))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
		<-g.Held()
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("held response not ended by cleanup")
	}
}
