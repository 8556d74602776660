package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/identity"
)

func fuzzInput(subject, teams, module, version, addr string) Input {
	in := NewInput(&identity.Identity{Subject: subject, Teams: splitSorted(teams), Method: identity.MethodToken}, ActionZip)
	in.Module, in.Version, in.ClientAddr = module, version, addr
	in.Scopes = splitSorted(teams + "\x00scope")
	return in
}

func splitSorted(s string) []string {
	if s == "" {
		return nil
	}
	out := strings.Split(s, "\n")
	slices.Sort(out)
	return out
}

// FuzzInputCacheKey: the decision cache keys inputs by the fields the policy
// reads; two different inputs sharing a key would let one caller's decision
// answer another's request. Every field holds caller-influenced bytes (module
// paths, certificate subjects, token names), so the key must be injective
// whatever they contain. The input document and path prefixes must be built
// without panicking.
func FuzzInputCacheKey(f *testing.F) {
	f.Add("alice", "payments\nrisk", "corp.example/pay", "v1.0.0", "10.0.0.1", "alice", "payments", "\nrisk", "v1.0.0", "10.0.0.1")
	f.Add("a:1", "", "b", "", "", "a", "", "1:b", "", "")
	f.Add("3:abc", "x", "m/n", "v", "", "3", "x", "abc", "m/nv", "")
	f.Add("", "", "a//b/", "", "::1", "", "", "a/", "/b/", "::1")
	f.Fuzz(func(t *testing.T, s1, t1, m1, v1, a1, s2, t2, m2, v2, a2 string) {
		now := time.Unix(1700000000, 0)
		in1, in2 := fuzzInput(s1, t1, m1, v1, a1), fuzzInput(s2, t2, m2, v2, a2)
		// A decision is cached without the time when it cannot depend on it,
		// else with it: no key of one kind may equal a key of the other.
		u1, u2 := string(in1.appendCacheKey(nil, fieldAll)), string(in2.appendCacheKey(nil, fieldAll))
		k1 := string(appendTimeKey(in1.appendCacheKey(nil, fieldAll), now))
		k2 := string(appendTimeKey(in2.appendCacheKey(nil, fieldAll), now))
		same := s1 == s2 && slices.Equal(in1.Teams, in2.Teams) && slices.Equal(in1.Scopes, in2.Scopes) && m1 == m2 && v1 == v2 && a1 == a2
		if (k1 == k2) != same || (u1 == u2) != same {
			t.Fatalf("inputs %+v and %+v: keys equal=%v/%v, inputs equal=%v", in1, in2, k1 == k2, u1 == u2, same)
		}
		if u1 == k2 || u2 == k1 {
			t.Fatalf("inputs %+v and %+v: a key without the time equals one with it", in1, in2)
		}
		ps := pathPrefixes(m1)
		if m1 != "" && (len(ps) != strings.Count(m1, "/")+1 || ps[len(ps)-1] != FoldPath(m1)) {
			t.Fatalf("pathPrefixes(%q) = %q", m1, ps)
		}
		for _, p := range ps {
			if !strings.HasPrefix(FoldPath(m1), p) {
				t.Fatalf("pathPrefixes(%q): %q is not a prefix", m1, p)
			}
		}
		_ = in1.value(now, ps)
		_ = in1.validate()
	})
}
