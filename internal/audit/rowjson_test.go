package audit

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzRowEntryJSON: the hand-written encoder writes exactly json.Marshal's bytes,
// or declines and leaves the value to json.Marshal.
func FuzzRowEntryJSON(f *testing.F) {
	f.Add("req-1", "team-a", "<script>&\"\\\n\t\b\f\x01\x7f", "\xff\xfe\u2028\u2029é", int64(1733400000123456), 1.25, int64(3), true)
	f.Add("", "", "", "", int64(0), 0.0, int64(0), false)
	f.Add("x", "y", "z", "w", int64(-62135596800000000), 1e-7, int64(-5), true)
	f.Add("x", "y", "z", "w", int64(253402300800000000), 1e21, int64(1<<62), false)
	f.Add("x", "y", "z", "w", int64(5), math.Copysign(0, -1), int64(0), true)
	f.Fuzz(func(t *testing.T, s1, s2, s3, s4 string, micros int64, dur float64, n int64, withTeams bool) {
		r := &Row{
			ID: n,
			Event: Event{
				EventID: s1, Time: time.UnixMicro(micros).UTC(), RequestID: s2, DecisionID: s3,
				Subject: s4, AuthMethod: s1, ClientAddr: s2, CertFingerprint: s3,
				Action: Action(s4), Module: s1, Version: s2, Outcome: Outcome(s3),
				Status: int(n), Reason: s4, Source: s1, Bytes: n, DurationMS: dur,
				UserAgent: s2, ContentHash: s3, Replica: s4,
			},
			ChainID: s1, Seq: n, PrevHash: []byte(s2), Hash: []byte(s3),
		}
		if withTeams {
			r.Teams = []string{s1, s4}
		} else if n%2 == 0 {
			r.Teams = []string{}
			r.PrevHash = nil
		}
		want, wantErr := json.Marshal(&spoolEntry{Row: r})
		got, ok := appendRowEntry([]byte("prefix"), r)
		if !ok {
			if wantErr == nil && !math.IsNaN(dur) && !math.IsInf(dur, 0) {
				if y := r.Time.Year(); y >= 0 && y <= 9999 {
					t.Fatalf("declined a row json.Marshal encodes: %s", want)
				}
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("encoded a row json.Marshal refuses (%v): %s", wantErr, got)
		}
		if string(got[:6]) != "prefix" || string(got[6:]) != string(want) {
			t.Fatalf("encoding differs:\n got %s\nwant %s", got[6:], want)
		}
	})
}

// TestAppendFrameUsesRowEncoder: a row frame decodes back to the row it came from.
func TestAppendFrameUsesRowEncoder(t *testing.T) {
	ev, err := normalize(testEvent(3), "replica-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := Row{Event: ev, ChainID: "c", Seq: 9, PrevHash: genesisHash, Hash: []byte{1, 2, 3}}
	b, err := appendFrame(nil, &spoolEntry{Row: &r})
	if err != nil {
		t.Fatal(err)
	}
	var back spoolEntry
	if err := json.Unmarshal(b[frameHeader:], &back); err != nil {
		t.Fatal(err)
	}
	if back.Row == nil || back.Row.EventID != r.EventID || !back.Row.Time.Equal(r.Time) || back.Row.Seq != 9 ||
		string(back.Row.Hash) != string(r.Hash) || len(back.Row.Teams) != len(r.Teams) {
		t.Fatalf("frame decodes to %+v, want %+v", back.Row, r)
	}
}

// BenchmarkRowFrame encodes one typical row's spool frame, by the hand-written
// encoder (the committer's path) and by json.Marshal (what it replaced).
func BenchmarkRowFrame(b *testing.B) {
	ev, err := normalize(testEvent(3), "replica-1", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	r := &Row{Event: ev, ChainID: "replica-1", Seq: 12345, PrevHash: genesisHash, Hash: genesisHash}
	buf := make([]byte, 0, 4096)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendFrame(buf[:0], &spoolEntry{Row: r}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendJSON(buf[:0], &spoolEntry{Row: r}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
