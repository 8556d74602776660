package audit

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

// ParseTimeBound reads a time bound as users write it: "" (no bound), a duration back
// from now with d or w units or Go units ("90d", "2w", "36h"), a date (2006-01-02,
// UTC) or an RFC 3339 time.
func ParseTimeBound(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if n, unit := s[:len(s)-1], s[len(s)-1]; unit == 'd' || unit == 'w' {
		if v, err := strconv.Atoi(n); err == nil && v >= 0 {
			if unit == 'w' {
				v *= 7
			}
			return now.AddDate(0, 0, -v), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, derrors.New(derrors.InvalidArgument, "%q is not a duration (90d, 12h), a date or an RFC 3339 time", s)
}

// ParseFilter reads a Filter from URL query parameters, for the HTTP API: module,
// version, subject, team, action and outcome (comma-separated or repeated), since and
// until (as ParseTimeBound), limit, cursor. Errors are derrors.InvalidArgument with
// a message fit for the client.
func ParseFilter(v url.Values, now time.Time) (Filter, error) {
	f := Filter{
		Module:  v.Get("module"),
		Version: v.Get("version"),
		Subject: v.Get("subject"),
		Team:    v.Get("team"),
		Cursor:  v.Get("cursor"),
	}
	for _, a := range splitValues(v["action"]) {
		f.Actions = append(f.Actions, Action(a))
	}
	for _, o := range splitValues(v["outcome"]) {
		f.Outcomes = append(f.Outcomes, Outcome(o))
	}
	var err error
	if f.Since, err = ParseTimeBound(v.Get("since"), now); err != nil {
		return f, err
	}
	if f.Until, err = ParseTimeBound(v.Get("until"), now); err != nil {
		return f, err
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > MaxLimit {
			return f, derrors.New(derrors.InvalidArgument, "limit must be between 1 and %d", MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// splitValues flattens repeated and comma-separated values, dropping empties.
func splitValues(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
