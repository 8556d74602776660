package logwriter

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that counts Write calls, safe for concurrent use.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.buf.Write(p)
}

func (b *syncBuffer) snapshot() (string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.writes
}

func TestWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		size       int
		lines      []string
		close      bool
		wantOut    string
		wantWrites int
	}{
		{name: "held until close", size: 1024, lines: []string{"a\n", "b\n"}, close: true, wantOut: "a\nb\n", wantWrites: 1},
		{name: "held while it fits", size: 1024, lines: []string{"a\n", "b\n"}, wantOut: "", wantWrites: 0},
		{name: "full buffer flushes before the line that does not fit", size: 4, lines: []string{"aa\n", "bb\n"}, wantOut: "aa\n", wantWrites: 1},
		{name: "a line larger than the buffer goes straight through", size: 4, lines: []string{"a\n", "long line\n"}, wantOut: "a\nlong line\n", wantWrites: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out syncBuffer
			w := New(&out, time.Hour, tt.size)
			t.Cleanup(func() { w.Close() })
			for _, l := range tt.lines {
				if n, err := w.Write([]byte(l)); n != len(l) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", l, n, err)
				}
			}
			if tt.close {
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if got, writes := out.snapshot(); got != tt.wantOut || writes != tt.wantWrites {
				t.Errorf("output %q in %d writes, want %q in %d", got, writes, tt.wantOut, tt.wantWrites)
			}
		})
	}
}

func TestWriterFlushesOnInterval(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	w := New(&out, 10*time.Millisecond, 1024)
	t.Cleanup(func() { w.Close() })
	w.Write([]byte("line\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _ := out.snapshot(); got == "line\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the buffered line was not flushed within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWriterConcurrentLinesStayWhole(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	w := New(&out, time.Millisecond, 256)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				fmt.Fprintf(w, "goroutine %d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := out.snapshot()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, l := range lines {
		var g, i int
		if _, err := fmt.Sscanf(l, "goroutine %d line %d", &g, &i); err != nil {
			t.Fatalf("torn line %q", l)
		}
	}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterReportsErrors(t *testing.T) {
	t.Parallel()
	w := New(failWriter{}, time.Hour, 4)
	w.Write([]byte("abc"))
	if _, err := w.Write([]byte("def")); err == nil { // flushes "abc" first, which fails
		t.Error("Write after a failed flush returned no error")
	}
	if err := w.Close(); err == nil {
		t.Error("Close returned no error after the writer failed")
	}
}
