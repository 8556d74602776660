package proxytest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// A Server is a GOPROXY upstream on loopback (plain HTTP) serving a fixed set of
// modules. All methods are safe for concurrent use, including while requests are
// in flight.
type Server struct {
	*httptest.Server

	closing   chan struct{} // closed by Close: unblocks gates, delays and drips
	closeOnce sync.Once

	mu            sync.Mutex
	modules       map[string]map[string]*built // module path → version → served bytes
	missingStatus int
	requests      []Request
	hits          map[string]int
	faults        map[string]*Fault // by request path; "" holds the global fault
	gates         map[string]*Gate
	sumdbs        map[string]*sumdbMount
}

// A Request is one request the Server received, recorded before any fault applies.
type Request struct {
	Method string
	Path   string // r.URL.Path: the case-encoded protocol path, e.g. /mod.test/!upper/!case/@v/list
	Header http.Header
}

// A SumDB is a checksum database the Server serves under /sumdb/<Name()>/.
// Handler receives requests with that prefix stripped ("/latest",
// "/lookup/<mod>@<ver>", "/tile/..."). sumdbtest.DB implements it.
type SumDB interface {
	Name() string
	Handler() http.Handler
}

type sumdbMount struct {
	handler   http.Handler
	supported bool
}

// NewServer starts a Server serving modules; it is closed when the test ends.
// Module zips, hashes and .info files are built once, here.
func NewServer(t testing.TB, modules ...Module) *Server {
	t.Helper()
	s := &Server{
		closing:       make(chan struct{}),
		modules:       make(map[string]map[string]*built),
		missingStatus: http.StatusNotFound,
		hits:          make(map[string]int),
		faults:        make(map[string]*Fault),
		gates:         make(map[string]*Gate),
		sumdbs:        make(map[string]*sumdbMount),
	}
	if err := s.AddModules(modules...); err != nil {
		t.Fatal(err)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.Close)
	return s
}

// Close ends held, delayed and dripping responses, then shuts the server down
// (a test may call it to take the upstream away; cleanup calls it too).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		// httptest.Server.Close waits for every handler: unblock them first.
		close(s.closing)
		s.Server.Close()
	})
}

// AddModules adds (or replaces) module versions while the Server runs; a test
// uses it to publish a new version upstream, or to change an existing one.
func (s *Server) AddModules(modules ...Module) error {
	bs := make([]*built, 0, len(modules))
	for _, m := range modules {
		b, err := build(m)
		if err != nil {
			return err
		}
		bs = append(bs, b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range bs {
		vs := s.modules[b.mod.Path]
		if vs == nil {
			vs = make(map[string]*built)
			s.modules[b.mod.Path] = vs
		}
		vs[b.mod.Version] = b
	}
	return nil
}

// Modules returns every module version the Server serves, sorted by path and
// version. Pass it to sumdbtest.New.
func (s *Server) Modules() []Module {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []Module
	for _, vs := range s.modules {
		for _, b := range vs {
			ms = append(ms, b.mod)
		}
	}
	slices.SortFunc(ms, func(a, b Module) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return semver.Compare(a.Version, b.Version)
	})
	return ms
}

// Sums returns the go.sum hashes of a served module version: the h1: of its zip
// and of its .mod file. It fails the test if the Server lacks the version.
func (s *Server) Sums(t testing.TB, path, version string) (zipSum, goModSum string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.modules[path][version]
	if b == nil {
		t.Fatalf("proxytest: server has no module %s@%s", path, version)
	}
	return b.sum, b.goModSum
}

// SetMissingStatus sets the status for unknown modules and versions: 404 (the
// default) or 410, both of which tell the go command to try the next proxy.
func (s *Server) SetMissingStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.missingStatus = code
}

// MountSumDB serves db under /sumdb/<name>/ (latest, lookup, tile). The
// /sumdb/<name>/supported endpoint stays 404 — modgate answers it itself — until
// AnswerSumDBSupported turns it on, as a test without modgate needs.
func (s *Server) MountSumDB(db SumDB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sumdbs[db.Name()] = &sumdbMount{handler: db.Handler()}
}

// AnswerSumDBSupported makes /sumdb/<name>/supported answer 200 (answer true) or
// 404 (false). The go command fetches it from each GOPROXY entry to decide
// whether to reach the checksum database through that proxy.
func (s *Server) AnswerSumDBSupported(name string, answer bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.sumdbs[name]; m != nil {
		m.supported = answer
	}
}

// Hits returns how many requests the Server received for the exact request path
// (case-encoded, as in InfoPath), whether or not a fault answered them.
func (s *Server) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// Paths returns the path of every request received, in arrival order, repeats
// included.
func (s *Server) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	paths := make([]string, len(s.requests))
	for i, r := range s.requests {
		paths[i] = r.Path
	}
	return paths
}

// Requests returns every request received, in arrival order, with its headers
// (to check, for example, that client credentials are not forwarded upstream).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ResetRequests forgets the recorded requests and hit counts.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	clear(s.hits)
}

// Protocol paths of the Server, case-encoded as the go command requests them.
// The path and version must be valid (they are escaped without error checking).

// ListPath returns "/<module>/@v/list".
func ListPath(modPath string) string { return "/" + escapePath(modPath) + "/@v/list" }

// LatestPath returns "/<module>/@latest".
func LatestPath(modPath string) string { return "/" + escapePath(modPath) + "/@latest" }

// InfoPath returns "/<module>/@v/<version>.info".
func InfoPath(modPath, version string) string { return versionPath(modPath, version, ".info") }

// ModPath returns "/<module>/@v/<version>.mod".
func ModPath(modPath, version string) string { return versionPath(modPath, version, ".mod") }

// ZipPath returns "/<module>/@v/<version>.zip".
func ZipPath(modPath, version string) string { return versionPath(modPath, version, ".zip") }

func versionPath(modPath, version, ext string) string {
	v, err := module.EscapeVersion(version)
	if err != nil {
		v = version
	}
	return "/" + escapePath(modPath) + "/@v/" + v + ext
}

func escapePath(modPath string) string {
	p, err := module.EscapePath(modPath)
	if err != nil {
		return modPath
	}
	return p
}

// A response is the unfaulted answer to a request.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	f, gate, missing := s.begin(r)
	if f.Delay > 0 && !s.sleep(r, f.Delay) {
		return
	}
	if f.Status != 0 {
		http.Error(w, fmt.Sprintf("proxytest: injected status %d for %s", f.Status, path), f.Status)
		return
	}
	var resp response
	if strings.HasPrefix(path, "/sumdb/") {
		resp = s.serveSumDB(r)
	} else {
		resp = s.serveProtocol(path, missing)
	}
	if resp.status == http.StatusOK {
		resp.body = f.alter(path, resp.body)
	}
	s.deliver(w, r, resp, f, gate)
}

// begin records the request and picks the fault and gate that apply to it.
func (s *Server) begin(r *http.Request) (Fault, *Gate, int) {
	path := r.URL.Path
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: path, Header: r.Header.Clone()})
	s.hits[path]++
	var f Fault
	for _, key := range []string{path, ""} {
		p := s.faults[key]
		if p == nil {
			continue
		}
		f = *p
		if p.Times > 0 {
			if p.Times--; p.Times == 0 {
				delete(s.faults, key)
			}
		}
		break
	}
	return f, s.gates[path], s.missingStatus
}

func (s *Server) serveSumDB(r *http.Request) response {
	rest := strings.TrimPrefix(r.URL.Path, "/sumdb/")
	name, sub, _ := strings.Cut(rest, "/")
	s.mu.Lock()
	m := s.sumdbs[name]
	var supported bool
	if m != nil {
		supported = m.supported
	}
	s.mu.Unlock()
	if m == nil {
		return textResponse(http.StatusNotFound, "not found: unknown checksum database "+name)
	}
	if sub == "supported" {
		if !supported {
			return textResponse(http.StatusNotFound, "not found: supported is answered by the proxy under test")
		}
		return response{status: http.StatusOK, header: http.Header{}}
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + sub
	r2.URL.RawPath = ""
	rec := httptest.NewRecorder()
	m.handler.ServeHTTP(rec, r2)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func (s *Server) serveProtocol(path string, missing int) response {
	var escMod, file string
	if i := strings.Index(path, "/@v/"); i >= 0 {
		escMod, file = path[1:i], path[i+len("/@v/"):]
	} else if mod, ok := strings.CutSuffix(path, "/@latest"); ok {
		escMod, file = mod[1:], "@latest"
	} else {
		return textResponse(missing, "not found: "+path)
	}
	modPath, err := module.UnescapePath(escMod)
	if err != nil {
		return textResponse(http.StatusBadRequest, "bad request: invalid escaped module path")
	}
	s.mu.Lock()
	vs := s.modules[modPath]
	var list []*built
	for _, b := range vs {
		list = append(list, b)
	}
	s.mu.Unlock()
	if len(list) == 0 {
		return textResponse(missing, "not found: module "+modPath)
	}
	slices.SortFunc(list, func(a, b *built) int { return semver.Compare(a.mod.Version, b.mod.Version) })

	switch file {
	case "list":
		var buf bytes.Buffer
		for _, b := range list {
			// The list omits pseudo-versions, as proxy.golang.org's does.
			if !module.IsPseudoVersion(b.mod.Version) {
				buf.WriteString(b.mod.Version + "\n")
			}
		}
		return response{status: http.StatusOK, header: contentType("text/plain; charset=utf-8"), body: buf.Bytes()}
	case "@latest":
		return response{status: http.StatusOK, header: contentType("application/json"), body: latest(list).info}
	}
	var ext string
	for _, e := range []string{".info", ".mod", ".zip"} {
		if strings.HasSuffix(file, e) {
			ext = e
		}
	}
	if ext == "" {
		return textResponse(missing, "not found: "+path)
	}
	version, err := module.UnescapeVersion(strings.TrimSuffix(file, ext))
	if err != nil {
		return textResponse(http.StatusBadRequest, "bad request: invalid escaped version")
	}
	var b *built
	for _, c := range list {
		if c.mod.Version == version {
			b = c
		}
	}
	if b == nil {
		return textResponse(missing, "not found: "+modPath+"@"+version)
	}
	switch ext {
	case ".info":
		return response{status: http.StatusOK, header: contentType("application/json"), body: b.info}
	case ".mod":
		return response{status: http.StatusOK, header: contentType("text/plain; charset=utf-8"), body: b.gomod}
	default:
		z, err := b.zipBytes()
		if err != nil {
			return textResponse(http.StatusInternalServerError, err.Error())
		}
		return response{status: http.StatusOK, header: contentType("application/zip"), body: z}
	}
}

// latest picks the @latest answer from versions sorted ascending: the highest
// release, else the highest pre-release, else the highest pseudo-version. The go
// command applies retractions itself, from the latest version's go.mod.
func latest(sorted []*built) *built {
	var release, pre, pseudo *built
	for _, b := range sorted {
		switch v := b.mod.Version; {
		case module.IsPseudoVersion(v):
			pseudo = b
		case semver.Prerelease(v) != "":
			pre = b
		default:
			release = b
		}
	}
	switch {
	case release != nil:
		return release
	case pre != nil:
		return pre
	}
	return pseudo
}

func contentType(ct string) http.Header { return http.Header{"Content-Type": {ct}} }

func textResponse(status int, msg string) response {
	return response{status: status, header: contentType("text/plain; charset=utf-8"), body: []byte(msg + "\n")}
}
