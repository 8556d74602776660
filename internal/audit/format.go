package audit

import (
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats accepted by Write.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// Write writes rows in format: "table" (aligned columns for a terminal), "json" (one
// JSON object per line, streamable) or "csv" (header row, then every column).
// header controls the table and CSV header rows, so pages can be appended.
func Write(w io.Writer, format string, rows []Row, header bool) error {
	switch format {
	case FormatTable, "":
		return WriteTable(w, rows, header)
	case FormatJSON:
		return WriteJSON(w, rows)
	case FormatCSV:
		return WriteCSV(w, rows, header)
	}
	return fmt.Errorf("audit: unknown format %q (want table, json or csv)", format)
}

// WriteTable writes the columns an auditor reads first.
func WriteTable(w io.Writer, rows []Row, header bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, "TIME\tSUBJECT\tTEAMS\tACTION\tMODULE\tVERSION\tOUTCOME\tSTATUS\tCLIENT\tREASON")
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
			r.Time.Format(time.RFC3339), dash(r.Subject), dash(strings.Join(r.Teams, ",")), r.Action,
			dash(r.Module), dash(r.Version), r.Outcome, r.Status, dash(r.ClientAddr), dash(oneLine(r.Reason)))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// WriteJSON writes one JSON object per row and line.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	for i := range rows {
		if err := enc.Encode(&rows[i]); err != nil {
			return err
		}
	}
	return nil
}

var csvHeader = []string{
	"id", "event_id", "time", "request_id", "decision_id", "subject", "teams", "auth_method",
	"client_addr", "cert_fingerprint", "action", "module", "version", "outcome", "status",
	"reason", "source", "bytes", "duration_ms", "user_agent", "replica", "content_hash",
	"chain_id", "seq", "prev_hash", "hash",
}

// WriteCSV writes every column; teams are joined with ';', hashes in hex.
func WriteCSV(w io.Writer, rows []Row, header bool) error {
	records := make([][]string, 0, len(rows))
	for _, r := range rows {
		records = append(records, []string{
			strconv.FormatInt(r.ID, 10), r.EventID, r.Time.Format(time.RFC3339Nano), r.RequestID, r.DecisionID,
			r.Subject, strings.Join(r.Teams, ";"), r.AuthMethod, r.ClientAddr, r.CertFingerprint,
			string(r.Action), r.Module, r.Version, string(r.Outcome), strconv.Itoa(r.Status),
			r.Reason, r.Source, strconv.FormatInt(r.Bytes, 10), strconv.FormatFloat(r.DurationMS, 'f', -1, 64),
			r.UserAgent, r.Replica, r.ContentHash, r.ChainID, strconv.FormatInt(r.Seq, 10),
			hex.EncodeToString(r.PrevHash), hex.EncodeToString(r.Hash),
		})
	}
	return writeCSVRecords(w, csvHeader, records, header)
}

// writeCSVRecords is the one CSV writer of every audit export (events,
// exposures), so what one export does to its cells every export does.
func writeCSVRecords(w io.Writer, header []string, records [][]string, writeHeader bool) error {
	cw := csv.NewWriter(w)
	if writeHeader {
		if err := cw.Write(header); err != nil {
			return err
		}
	}
	for _, rec := range records {
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
