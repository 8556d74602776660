package audit

import (
	"encoding/base64"
	"math"
	"strconv"
	"unicode/utf8"
)

// appendRowEntry appends the JSON of spoolEntry{Row: r} to b, byte for byte what
// encoding/json writes, without its reflection: every event is encoded once on
// the request path, and json.Marshal was most of the committer's own CPU after
// the fsync. ok is false for a value encoding/json would refuse or write some
// other way (a time outside years 0–9999, a NaN or infinite duration); the
// caller then uses json.Marshal, which reports the error.
func appendRowEntry(b []byte, r *Row) (_ []byte, ok bool) {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		return b, false
	}
	b = append(b, `{"row":{`...)
	if r.ID != 0 {
		b = append(b, `"id":`...)
		b = strconv.AppendInt(b, r.ID, 10)
		b = append(b, ',')
	}
	b = append(b, `"event_id":`...)
	b = appendJSONString(b, r.EventID)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, "2006-01-02T15:04:05.999999999Z07:00")
	b = append(b, '"')
	b = appendOptString(b, `,"request_id":`, r.RequestID)
	b = appendOptString(b, `,"decision_id":`, r.DecisionID)
	b = appendOptString(b, `,"subject":`, r.Subject)
	if len(r.Teams) > 0 {
		b = append(b, `,"teams":[`...)
		for i, t := range r.Teams {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, t)
		}
		b = append(b, ']')
	}
	b = appendOptString(b, `,"auth_method":`, r.AuthMethod)
	b = appendOptString(b, `,"client_addr":`, r.ClientAddr)
	b = appendOptString(b, `,"cert_fingerprint":`, r.CertFingerprint)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, string(r.Action))
	b = appendOptString(b, `,"module":`, r.Module)
	b = appendOptString(b, `,"version":`, r.Version)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, string(r.Outcome))
	if r.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
	}
	b = appendOptString(b, `,"reason":`, r.Reason)
	b = appendOptString(b, `,"source":`, r.Source)
	if r.Bytes != 0 {
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, r.Bytes, 10)
	}
	if r.DurationMS != 0 {
		b = append(b, `,"duration_ms":`...)
		b = appendJSONFloat(b, r.DurationMS)
	}
	b = appendOptString(b, `,"user_agent":`, r.UserAgent)
	b = appendOptString(b, `,"content_hash":`, r.ContentHash)
	b = appendOptString(b, `,"replica":`, r.Replica)
	b = append(b, `,"chain_id":`...)
	b = appendJSONString(b, r.ChainID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"prev_hash":`...)
	b = appendJSONBytes(b, r.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendJSONBytes(b, r.Hash)
	return append(b, "}}"...), true
}

// appendOptString writes key and s unless s is empty (omitempty).
func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, key...), s)
}

// appendJSONBytes writes p as encoding/json does: base64 in a string, or null.
func appendJSONBytes(b, p []byte) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendJSONFloat writes f as encoding/json does for a float64.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// encoding/json writes e-7, not e-07.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s quoted and escaped as encoding/json does, HTML
// escaping included: <, > and & as \u003c, \u003e, \u0026; invalid UTF-8 as
// \ufffd; U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
