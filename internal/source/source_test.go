package source

import (
	"errors"
	"testing"

	"github.com/modgate/modgate/internal/derrors"
)

func TestNewest(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		versions []string
		want     string
	}{
		{"empty", nil, ""},
		{"release-over-newer-prerelease", []string{"v1.0.0", "v1.1.0-rc.1", "v0.9.0"}, "v1.0.0"},
		{"prerelease-only", []string{"v1.1.0-rc.1", "v1.1.0-rc.2"}, "v1.1.0-rc.2"},
		{"union-order-irrelevant", []string{"v1.2.0", "v1.0.0", "v1.1.0"}, "v1.2.0"},
	} {
		if got := Newest(tt.versions); got != tt.want {
			t.Errorf("%s: Newest(%q) = %q, want %q", tt.name, tt.versions, got, tt.want)
		}
	}
}

func TestParseSumDBPath(t *testing.T) {
	t.Parallel()
	p, err := ParseSumDBPath("sum.golang.org", "lookup/github.com/!sirupsen/logrus@v1.0.0")
	if err != nil || p.Module != "github.com/Sirupsen/logrus" || p.Version != "v1.0.0" || !p.Immutable() {
		t.Errorf("lookup: %+v %v", p, err)
	}
	if p, err := ParseSumDBPath("sum.golang.org", "tile/8/0/001"); err != nil || p.Module != "" || !p.Immutable() {
		t.Errorf("full tile: %+v %v", p, err)
	}
	if p, err := ParseSumDBPath("sum.golang.org", "tile/8/0/001.p/5"); err != nil || p.Immutable() {
		t.Errorf("partial tile: %+v %v", p, err)
	}
	if p, err := ParseSumDBPath("sum.golang.org", "latest"); err != nil || p.Immutable() {
		t.Errorf("latest: %+v %v", p, err)
	}
	for rest, kind := range map[string]error{
		"lookup/no-version":          derrors.InvalidArgument,
		"lookup/Upper.case/x@v1.0.0": derrors.InvalidArgument,
		"tile/x":                     derrors.InvalidArgument,
		"other":                      derrors.NotFound,
	} {
		if _, err := ParseSumDBPath("sum.golang.org", rest); !errors.Is(err, kind) {
			t.Errorf("%q: %v, want %v", rest, err, kind)
		}
	}
}
