package audit

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestFrameReaderStopsAtTornTail(t *testing.T) {
	t.Parallel()
	var buf []byte
	for i := range 3 {
		r := Row{Event: testEvent(i), Seq: int64(i + 1)}
		var err error
		if buf, err = appendFrame(buf, &spoolEntry{Row: &r}); err != nil {
			t.Fatal(err)
		}
	}
	whole := len(buf)
	extra, _ := appendFrame(nil, &spoolEntry{Row: &Row{Event: testEvent(9), Seq: 4}})
	tests := []struct {
		name     string
		data     []byte
		wantRows int
		wantErr  error
	}{
		{"ok/clean", buf, 3, io.EOF},
		{"torn/half-header", append(append([]byte{}, buf...), extra[:5]...), 3, errTorn},
		{"torn/half-payload", append(append([]byte{}, buf...), extra[:len(extra)-3]...), 3, errTorn},
		{"torn/bad-checksum", func() []byte {
			b := append(append([]byte{}, buf...), extra...)
			b[len(b)-2] ^= 0xff
			return b
		}(), 3, errTorn},
		// A preallocated segment's unwritten zeros end the data cleanly.
		{"ok/preallocated-zeros", append(append([]byte{}, buf...), make([]byte, 64)...), 3, io.EOF},
		{"torn/zeros-after-half-header", append(append(append([]byte{}, buf...), extra[:5]...), make([]byte, 64)...), 3, errTorn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "1.seg")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			fr, err := openFrameReader(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fr.Close()
			n := 0
			for {
				e, err := fr.next()
				if err != nil {
					if err != tt.wantErr {
						t.Errorf("stopped with %v, want %v", err, tt.wantErr)
					}
					break
				}
				if e.Row.Seq != int64(n+1) {
					t.Errorf("row %d has seq %d", n, e.Row.Seq)
				}
				n++
			}
			if n != tt.wantRows || fr.off != int64(whole) {
				t.Errorf("read %d rows to offset %d, want %d rows to %d", n, fr.off, tt.wantRows, whole)
			}
		})
	}
}

// The shipper tails a segment the committer is still writing. Its read-ahead
// buffer can hold the zeros (or half a frame) that were there before the
// committer's write; once the committer says the frames are durable, the reader
// must return them, not end the segment at the stale bytes — ending it there
// deleted the segment with those rows never shipped.
func TestFrameReaderRereadsWhatBecameDurable(t *testing.T) {
	t.Parallel()
	frame := func(seq int) []byte {
		b, err := appendFrame(nil, &spoolEntry{Row: &Row{Event: testEvent(seq), Seq: int64(seq)}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tt := range []struct {
		name   string
		before []byte // what the second frame's place held when the buffer filled
	}{
		{"ok/zeros-then-frame", nil},
		{"ok/half-written-then-frame", frame(2)[:20]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "1.seg")
			first, second := frame(1), frame(2)
			data := make([]byte, 64<<10) // preallocated
			copy(data, first)
			copy(data[len(first):], tt.before)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			fr, err := openFrameReader(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fr.Close()
			fr.limit = int64(len(first))
			if e, err := fr.next(); err != nil || e.Row.Seq != 1 {
				t.Fatalf("first frame: %v, %v", e, err)
			}
			// The committer writes and syncs the second frame, then moves the limit.
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(second, int64(len(first))); err != nil {
				t.Fatal(err)
			}
			f.Close()
			fr.limit = int64(len(first) + len(second))
			e, err := fr.next()
			if err != nil || e.Row.Seq != 2 {
				t.Fatalf("second frame after it became durable: %v, %v", e, err)
			}
			if _, err := fr.next(); err != io.EOF {
				t.Errorf("after the durable frames: %v, want EOF", err)
			}
		})
	}
}

// A torn tail left by a crash is ignored on restart and the chain continues from the
// last whole row.
func TestWriterIgnoresTornTailOnRestart(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	spool := t.TempDir()
	w := startWriter(t, pool, WriterConfig{SpoolDir: spool})
	for i := range 10 {
		if err := w.Record(testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Simulate kill -9 before shipping: stop the goroutines without draining.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Close(ctx) // leaves the spool as is
	segs, _ := listSegments(spool)
	last := segmentName(spool, segs[len(segs)-1])
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 9, 9}) // half a frame header and a bit
	f.Close()

	w2 := startWriter(t, pool, WriterConfig{SpoolDir: spool})
	if err := w2.Record(testEvent(99)); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rows, distinct := rowCounts(t, pool); rows != 11 || distinct != 11 {
		t.Errorf("%d rows (%d distinct), want 11", rows, distinct)
	}
	assertVerifies(t, pool)
}

// BenchmarkWriterThroughput measures events per second from Record until the rows are
// committed in PostgreSQL, with many concurrent recorders as a busy server has.
// Run: go test -run '^$' -bench WriterThroughput -benchtime 100000x ./internal/audit/
func BenchmarkWriterThroughput(b *testing.B) {
	pool, _ := pgtest.NewPool(b)
	w := startWriter(b, pool, WriterConfig{})
	const goroutines = 256
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N / goroutines
	lat := make([][]time.Duration, goroutines)
	for g := range goroutines {
		n := per
		if g == 0 {
			n += b.N % goroutines
		}
		wg.Go(func() {
			for i := range n {
				t0 := time.Now()
				if err := w.Record(testEvent(i)); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	recorded := time.Since(start)
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	total := time.Since(start)
	b.StopTimer()
	if rows, _ := rowCounts(b, pool); rows != b.N {
		b.Fatalf("%d rows, want %d", rows, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-record-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-record-ms")
	b.ReportMetric(float64(b.N)/recorded.Seconds(), "recorded/s")
	b.ReportMetric(float64(b.N)/total.Seconds(), "in-postgres/s")
}

// The shipper takes committed rows from memory instead of decoding them back
// from the spool, and reads the spool when the memory queue has overflowed.
// Whatever the mix (tiny queue, several segments, concurrent recorders), every
// event arrives exactly once and the chain verifies.
func TestShipperHandoffAndSpoolMix(t *testing.T) {
	for _, tc := range []struct {
		name string
		cap  int
	}{
		{"ok/all-from-memory", maxHandoffRows},
		{"ok/queue-overflows", 3},
		{"ok/no-queue", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, _ := pgtest.NewPool(t)
			w := startWriter(t, pool, WriterConfig{SegmentBytes: 4 << 10, BatchSize: 7})
			w.handoffCap = tc.cap // before the first Record, which the committer waits for
			const goroutines, per = 16, 40
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range per {
						if err := w.Record(testEvent(g*per + i)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if rows, distinct := rowCounts(t, pool); rows != goroutines*per || distinct != goroutines*per {
				t.Errorf("%d rows (%d distinct), want %d", rows, distinct, goroutines*per)
			}
			assertVerifies(t, pool)
		})
	}
}
