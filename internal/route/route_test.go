package route

import "testing"

func TestOf(t *testing.T) {
	t.Parallel()
	r := New("corp.example,*.internal.test/private", func(p string) bool { return p == "corp.example/git/x" || len(p) > 30 })
	for _, tt := range []struct {
		name, path string
		want       Route
	}{
		{"public/unmatched", "github.com/sirupsen/logrus", Public},
		{"public/prefix-of-pattern-only", "corp", Public},
		{"git/served-by-route", "corp.example/git/x", Git},
		{"published/private-no-route", "corp.example/pub/x", Published},
		{"published/glob", "a.internal.test/private/y", Published},
		{"public/glob-mismatch", "a.internal.test/public/y", Public},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Of(tt.path); got != tt.want {
				t.Errorf("Of(%q) = %v, want %v", tt.path, got, tt.want)
			}
			if got := r.Of(tt.path).Private(); got != (tt.want != Public) {
				t.Errorf("Of(%q).Private() = %v", tt.path, got)
			}
		})
	}
	var none *Router
	if none.Of("corp.example/x") != Public {
		t.Error("a nil router routes everything public")
	}
	if New("", nil).Of("corp.example/x") != Public {
		t.Error("no private patterns: everything public")
	}
}
