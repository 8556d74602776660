package audit

import (
	"errors"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

func TestParseFilter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		query   string
		want    Filter
		wantErr bool
	}{
		{"ok/empty", "", Filter{}, false},
		{"ok/everything", "module=github.com/acme/*&version=v1.0.0&subject=alice&team=payments&action=zip,mod&action=info&outcome=denied&since=90d&until=2026-06-01&limit=50&cursor=abc",
			Filter{Module: "github.com/acme/*", Version: "v1.0.0", Subject: "alice", Team: "payments",
				Actions: []Action{ActionZip, ActionMod, ActionInfo}, Outcomes: []Outcome{OutcomeDenied},
				Since: now.AddDate(0, 0, -90), Until: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), Limit: 50, Cursor: "abc"}, false},
		{"ok/weeks-and-hours", "since=2w&until=36h", Filter{Since: now.AddDate(0, 0, -14), Until: now.Add(-36 * time.Hour)}, false},
		{"ok/rfc3339", "since=2026-01-02T03:04:05Z", Filter{Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, false},
		{"fail/since", "since=last-tuesday", Filter{}, true},
		{"fail/negative-duration", "since=-5h", Filter{}, true},
		{"fail/limit-zero", "limit=0", Filter{}, true},
		{"fail/limit-huge", "limit=1000000", Filter{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseFilter(v, now)
			if tt.wantErr {
				if !errors.Is(err, derrors.InvalidArgument) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseFilter(%q) =\n %+v\nwant\n %+v", tt.query, got, tt.want)
			}
		})
	}
}
