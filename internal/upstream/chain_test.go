package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/metrics"
)

func TestParseList(t *testing.T) {
	t.Parallel()
	entries, err := ParseList("https://a.example, direct,https://b.example/sub/|https://c.example|off")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		any  bool
	}{{"https://a.example", false}, {"https://b.example/sub", true}, {"https://c.example", true}}
	if len(entries) != len(want) {
		t.Fatalf("got %d entries, want %d", len(entries), len(want))
	}
	for i, w := range want {
		if entries[i].Name() != w.name || entries[i].FallThroughAnyError != w.any {
			t.Errorf("entry %d = %s any=%v, want %s any=%v", i, entries[i].Name(), entries[i].FallThroughAnyError, w.name, w.any)
		}
	}
	for _, bad := range []string{"ftp://x", "https://", "not a url"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) succeeded, want error", bad)
		}
	}
	e, _ := ParseList("https://user:secret@mirror.example")
	if e[0].Name() != "https://mirror.example" {
		t.Errorf("Name() leaks credentials: %s", e[0].Name())
	}
}

// mirror is a test upstream answering with a fixed status and counting requests.
type mirror struct {
	*httptest.Server
	hits atomic.Int32
}

func newMirror(t *testing.T, status int, body string) *mirror {
	m := &mirror{}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(m.Close)
	return m
}

func newTestChain(t *testing.T, list string) *Chain {
	entries, err := ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	return NewChain(entries, Config{
		ConnectTimeout: time.Second, HeaderTimeout: time.Second, BodyIdleTimeout: time.Second,
		Retries: 2, RetryBackoff: 5 * time.Millisecond,
	}, nil, slog.New(slog.DiscardHandler), metrics.Discard())
}

func TestFallbackRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		first      int
		sep        string
		wantBody   string
		wantErr    error
		wantFirst  int32 // requests the first mirror saw (retries included)
		wantSecond int32
	}{
		{name: "ok/comma-404-falls-through", first: 404, sep: ",", wantBody: "second", wantFirst: 1, wantSecond: 1},
		{name: "ok/comma-410-falls-through", first: 410, sep: ",", wantBody: "second", wantFirst: 1, wantSecond: 1},
		{name: "fail/comma-500-stops", first: 500, sep: ",", wantErr: derrors.BadUpstream, wantFirst: 3, wantSecond: 0},
		{name: "fail/comma-403-stops", first: 403, sep: ",", wantErr: derrors.BadUpstream, wantFirst: 1, wantSecond: 0},
		{name: "ok/pipe-500-falls-through", first: 500, sep: "|", wantBody: "second", wantFirst: 3, wantSecond: 1},
		{name: "ok/pipe-429-falls-through", first: 429, sep: "|", wantBody: "second", wantFirst: 3, wantSecond: 1},
		{name: "ok/first-serves", first: 200, sep: ",", wantBody: "first", wantFirst: 1, wantSecond: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newMirror(t, tt.first, "first")
			b := newMirror(t, 200, "second")
			c := newTestChain(t, a.URL+tt.sep+b.URL)
			resp, err := c.Fetch(context.Background(), "example.com/m/@v/list", 0)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch error = %v, want %v", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
			}
			if a.hits.Load() != tt.wantFirst || b.hits.Load() != tt.wantSecond {
				t.Errorf("hits = %d, %d; want %d, %d", a.hits.Load(), b.hits.Load(), tt.wantFirst, tt.wantSecond)
			}
		})
	}
}

func TestAllNotFound(t *testing.T) {
	t.Parallel()
	a := newMirror(t, 404, "not found: example.com/m@v9.9.9: invalid version\nsecond line")
	b := newMirror(t, 410, "")
	_, err := newTestChain(t, a.URL+","+b.URL).Fetch(context.Background(), "example.com/m/@v/v9.9.9.info", 0)
	if !errors.Is(err, derrors.Gone) {
		t.Fatalf("err = %v, want Gone (the last mirror's answer)", err)
	}
	_, err = newTestChain(t, a.URL).Fetch(context.Background(), "example.com/m/@v/v9.9.9.info", 0)
	if !errors.Is(err, derrors.NotFound) {
		t.Fatalf("err = %v, want NotFound", err)
	}
	if got := derrors.PublicMessage(err); got != "not found: example.com/m@v9.9.9: invalid version" {
		t.Errorf("public message = %q: want the upstream's first line only", got)
	}
}

func TestUnreachableAndStalled(t *testing.T) {
	t.Parallel()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	_, err := newTestChain(t, down.URL).Fetch(context.Background(), "example.com/m/@v/list", 0)
	if !errors.Is(err, derrors.BadUpstream) {
		t.Errorf("unreachable: err = %v, want BadUpstream", err)
	}
	if msg := derrors.PublicMessage(err); msg != "upstream mirror unreachable" {
		t.Errorf("public message %q leaks detail", msg)
	}

	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stall.Close()
	defer close(release)
	resp, err := newTestChain(t, stall.URL).Fetch(context.Background(), "example.com/m/@v/v1.0.0.zip", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, derrors.UpstreamTimeout) {
		t.Errorf("stalled body: err = %v, want UpstreamTimeout", err)
	}
}

// A small object whose transfer breaks mid-body is that mirror's failure: after
// "|" the next mirror serves it.
func TestBufferedBodyFailureFallsThrough(t *testing.T) {
	t.Parallel()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("partial"))
	}))
	defer broken.Close()
	good := newMirror(t, 200, "v1.0.0\n")
	resp, err := newTestChain(t, broken.URL+"|"+good.URL).Fetch(context.Background(), "example.com/m/@v/list", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "v1.0.0\n" {
		t.Errorf("body %q", body)
	}
	if _, err := newTestChain(t, broken.URL+","+good.URL).Fetch(context.Background(), "example.com/m/@v/list", 1<<20); !errors.Is(err, derrors.BadUpstream) {
		t.Errorf("after ',': err = %v, want BadUpstream", err)
	}
}
