package policy

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// Action is what the caller wants to do. The GOPROXY actions are named after the
// protocol's endpoints.
type Action string

const (
	ActionList      Action = "list"   // GET $module/@v/list
	ActionInfo      Action = "info"   // GET $module/@v/$version.info
	ActionMod       Action = "mod"    // GET $module/@v/$version.mod
	ActionZip       Action = "zip"    // GET $module/@v/$version.zip
	ActionLatest    Action = "latest" // GET $module/@latest
	ActionSumDB     Action = "sumdb"  // GET /sumdb/$name/... (checksum database proxy)
	ActionVulnDB    Action = "vulndb" // GET /vulndb/... (the vulnerability database)
	ActionPublish   Action = "publish"
	ActionDelete    Action = "delete"
	ActionAuditRead Action = "audit.read"
	ActionAdmin     Action = "admin"
)

var actions = []Action{
	ActionList, ActionInfo, ActionMod, ActionZip, ActionLatest, ActionSumDB, ActionVulnDB,
	ActionPublish, ActionDelete, ActionAuditRead, ActionAdmin,
}

// Actions returns every action, in the order above.
func Actions() []Action { return slices.Clone(actions) }

// Valid reports whether a is one of the actions above.
func (a Action) Valid() bool { return slices.Contains(actions, a) }

// IsPull reports whether a only reads modules (the checksum and vulnerability
// databases included).
func (a Action) IsPull() bool { return a.Verb() == "pull" || a == ActionSumDB || a == ActionVulnDB }

// Verb groups actions into what a policy usually cares about: "pull" for the
// GOPROXY reads (list, info, mod, zip, latest), else the action itself
// ("sumdb", "publish", "delete", "audit.read", "admin"); "" for an unknown
// action. It is input.verb in Rego. A policy that reads input.verb but not
// input.action lets the engine cache one decision for a version's .info, .mod
// and .zip, since they cannot differ.
func (a Action) Verb() string {
	switch a {
	case ActionList, ActionInfo, ActionMod, ActionZip, ActionLatest:
		return "pull"
	case ActionSumDB, ActionVulnDB, ActionPublish, ActionDelete, ActionAuditRead, ActionAdmin:
		return string(a)
	}
	return ""
}

// Route says where a module comes from: internal git or the upstream mirrors.
type Route string

const (
	RoutePrivate Route = "private"
	RoutePublic  Route = "public"
)

// Input is the question asked of the policy. Its JSON form is the Rego input
// document (docs/policy.md), plus two fields the engine derives: verb (from
// Action) and path_prefixes (from Module, lower-cased: see pathPrefixes).
type Input struct {
	Subject string          `json:"subject"`
	Teams   []string        `json:"teams"` // a set: order does not matter
	Method  identity.Method `json:"method"`
	Scopes  []string        `json:"scopes"` // API-token scopes; empty = unrestricted
	Action  Action          `json:"action"`
	Module  string          `json:"module"`  // module path; empty for audit.read, admin, most sumdb requests
	Version string          `json:"version"` // empty for list and latest
	// VersionTime is the version's publication time (RFC 3339) as the source
	// reports it, or empty when unknown; the cool-down uses it.
	VersionTime string `json:"version_time"`
	Route       Route  `json:"route"`
	ClientAddr  string `json:"client_addr"`
	// Time is when the request is decided; zero means now. The engine rounds it
	// down to its time resolution (a minute by default), see Options.
	Time time.Time `json:"time"`
	// Advisories are the vulnerability reports affecting Module at Version, and
	// Licenses the SPDX ids found in its zip. The engine fills them for pulls of
	// a version, through Options.Advisories and Options.Licenses, when the policy
	// reads them and their settings switch is on; a caller may set them itself
	// (`modgate policy explain`).
	Advisories []Advisory `json:"advisories"`
	Licenses   []string   `json:"licenses"`
}

// Advisory is one vulnerability report affecting the requested version
// (input.advisories): the id (GO-2024-1234), its aliases (CVE and GHSA ids),
// its summary, and the first version that fixes it ("" when none does).
type Advisory struct {
	ID      string   `json:"id"`
	Aliases []string `json:"aliases"`
	Summary string   `json:"summary"`
	Fixed   string   `json:"fixed"`
}

// NewInput starts an Input for the caller: subject, teams, method and scopes
// come from id (nil means anonymous).
func NewInput(id *identity.Identity, action Action) Input {
	in := Input{Action: action, Method: identity.MethodAnonymous}
	if id != nil {
		in.Subject = id.Subject
		in.Teams = id.Teams
		in.Method = id.Method
		in.Scopes = id.Scopes
	}
	return in
}

func (in *Input) validate() error {
	if !in.Action.Valid() {
		return derrors.New(derrors.InvalidArgument, "policy: unknown action %q", in.Action)
	}
	switch in.Route {
	case "", RoutePrivate, RoutePublic:
	default:
		return derrors.New(derrors.InvalidArgument, "policy: unknown route %q", in.Route)
	}
	if in.VersionTime != "" {
		if _, err := time.Parse(time.RFC3339, in.VersionTime); err != nil {
			return derrors.WithCause(derrors.InvalidArgument, err, "policy: version time %q is not RFC 3339", in.VersionTime)
		}
	}
	return nil
}

// pathPrefixes returns the module path's prefixes at element boundaries,
// shortest first, in lower case: "a.com/B/c" → "a.com", "a.com/b", "a.com/b/c".
// The policy looks each up in its prefix-keyed data, so ownership is O(depth)
// lookups instead of a scan over every owned prefix.
//
// Lower case because module identity for policy is case-insensitive: the data's
// keys are lower-cased when loaded (Data.normalize), so "github.com/sirupsen/logrus"
// in the deny list also covers github.com/Sirupsen/logrus, which the go command
// and the checksum database treat as a different module (the protocol escapes it
// as github.com/!sirupsen/logrus) but which hosting services, and people, resolve
// to the same repository. Without this, a case variant walks around ownership and
// the deny list.
func pathPrefixes(m string) []string {
	if m == "" {
		return nil
	}
	m = FoldPath(m)
	n := strings.Count(m, "/") + 1
	out := make([]string, 0, n)
	for i := 0; i < len(m); i++ {
		if m[i] == '/' {
			out = append(out, m[:i])
		}
	}
	return append(out, m)
}

// FoldPath is the form of a module path or path prefix that policy data is keyed
// by: ASCII letters lower-cased. Module paths are ASCII (module.CheckPath), and
// upper-case ASCII is exactly what the GOPROXY protocol's case encoding ("!x")
// distinguishes, so this folds every protocol-level case variant together.
func FoldPath(p string) string {
	for i := 0; i < len(p); i++ {
		if 'A' <= p[i] && p[i] <= 'Z' {
			b := []byte(p)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return p
}

// inputField identifies the input fields a policy may read; the engine builds
// cache keys from only those the loaded policy reads.
type inputField uint16

const (
	fieldSubject inputField = 1 << iota
	fieldTeams
	fieldMethod
	fieldScopes
	fieldAction
	fieldVerb
	fieldModule // module and path_prefixes
	fieldVersion
	fieldVersionTime
	fieldRoute
	fieldClientAddr
	fieldTime
	fieldAdvisories
	fieldLicenses
	fieldAll inputField = 1<<iota - 1
)

var fieldNames = map[string]inputField{
	"subject":       fieldSubject,
	"teams":         fieldTeams,
	"method":        fieldMethod,
	"scopes":        fieldScopes,
	"action":        fieldAction,
	"verb":          fieldVerb,
	"module":        fieldModule,
	"path_prefixes": fieldModule,
	"version":       fieldVersion,
	"version_time":  fieldVersionTime,
	"route":         fieldRoute,
	"client_addr":   fieldClientAddr,
	"time":          fieldTime,
	"advisories":    fieldAdvisories,
	"licenses":      fieldLicenses,
}

// inputFieldsRead returns the input fields the modules refer to. A reference to
// input as a whole (x := input), or with a computed key (input[k]), counts as
// reading every field.
func inputFieldsRead(modules map[string]*ast.Module) inputField {
	var used inputField
	var visit func(x any) bool
	visit = func(x any) bool {
		switch x := x.(type) {
		case ast.Ref:
			if !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(x) < 2 {
				used = fieldAll
				return true
			}
			if key, ok := x[1].Value.(ast.String); !ok {
				used = fieldAll
			} else if f, ok := fieldNames[string(key)]; ok {
				used |= f
			} // else: an unknown field is always undefined and decides nothing
			for _, t := range x[1:] { // input.owners[input.module] reads module too
				ast.NewGenericVisitor(visit).Walk(t)
			}
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				used = fieldAll
			}
		}
		return false
	}
	for _, m := range modules {
		ast.NewGenericVisitor(visit).Walk(m)
	}
	return used
}

// Keys of the input document, allocated once: terms are read-only during
// evaluation, so every decision can share them.
var (
	keySubject      = ast.StringTerm("subject")
	keyTeams        = ast.StringTerm("teams")
	keyMethod       = ast.StringTerm("method")
	keyScopes       = ast.StringTerm("scopes")
	keyAction       = ast.StringTerm("action")
	keyVerb         = ast.StringTerm("verb")
	keyModule       = ast.StringTerm("module")
	keyVersion      = ast.StringTerm("version")
	keyVersionTime  = ast.StringTerm("version_time")
	keyRoute        = ast.StringTerm("route")
	keyClientAddr   = ast.StringTerm("client_addr")
	keyTime         = ast.StringTerm("time")
	keyPathPrefixes = ast.StringTerm("path_prefixes")
	keyAdvisories   = ast.StringTerm("advisories")
	keyLicenses     = ast.StringTerm("licenses")
	keyID           = ast.StringTerm("id")
	keyAliases      = ast.StringTerm("aliases")
	keySummary      = ast.StringTerm("summary")
	keyFixed        = ast.StringTerm("fixed")
)

// value builds the Rego input document directly as an AST value: cheaper than
// rego.EvalInput's JSON round trip on every decision.
func (in *Input) value(now time.Time, prefixes []string) ast.Value {
	strs := func(ss []string) *ast.Term {
		terms := make([]*ast.Term, len(ss))
		for i, s := range ss {
			terms[i] = ast.StringTerm(s)
		}
		return ast.ArrayTerm(terms...)
	}
	return ast.NewObject(
		ast.Item(keySubject, ast.StringTerm(in.Subject)),
		ast.Item(keyTeams, strs(in.Teams)),
		ast.Item(keyMethod, ast.StringTerm(string(in.Method))),
		ast.Item(keyScopes, strs(in.Scopes)),
		ast.Item(keyAction, ast.StringTerm(string(in.Action))),
		ast.Item(keyVerb, ast.StringTerm(in.Action.Verb())),
		ast.Item(keyModule, ast.StringTerm(in.Module)),
		ast.Item(keyVersion, ast.StringTerm(in.Version)),
		ast.Item(keyVersionTime, ast.StringTerm(in.VersionTime)),
		ast.Item(keyRoute, ast.StringTerm(string(in.Route))),
		ast.Item(keyClientAddr, ast.StringTerm(in.ClientAddr)),
		ast.Item(keyTime, ast.StringTerm(now.UTC().Format(time.RFC3339))),
		ast.Item(keyPathPrefixes, strs(prefixes)),
		ast.Item(keyAdvisories, advisoriesTerm(in.Advisories, strs)),
		ast.Item(keyLicenses, strs(in.Licenses)),
	)
}

func advisoriesTerm(advs []Advisory, strs func([]string) *ast.Term) *ast.Term {
	terms := make([]*ast.Term, len(advs))
	for i, a := range advs {
		terms[i] = ast.ObjectTerm(
			ast.Item(keyID, ast.StringTerm(a.ID)),
			ast.Item(keyAliases, strs(a.Aliases)),
			ast.Item(keySummary, ast.StringTerm(a.Summary)),
			ast.Item(keyFixed, ast.StringTerm(a.Fixed)),
		)
	}
	return ast.ArrayTerm(terms...)
}

// appendCacheKey appends to b the fields the policy reads except the time
// (appendTimeKey adds it), each length-prefixed so that no two inputs share a
// key whatever bytes the fields hold. Teams and scopes must already be sorted
// (Decide sorts them).
func (in *Input) appendCacheKey(b []byte, used inputField) []byte {
	put := func(f inputField, s string) {
		if used&f != 0 {
			b = strconv.AppendInt(b, int64(len(s)), 10)
			b = append(b, ':')
			b = append(b, s...)
		}
	}
	putSet := func(f inputField, ss []string) {
		if used&f != 0 {
			b = strconv.AppendInt(b, int64(len(ss)), 10)
			b = append(b, '[')
			for _, s := range ss {
				b = strconv.AppendInt(b, int64(len(s)), 10)
				b = append(b, ':')
				b = append(b, s...)
			}
		}
	}
	put(fieldSubject, in.Subject)
	putSet(fieldTeams, in.Teams)
	put(fieldMethod, string(in.Method))
	putSet(fieldScopes, in.Scopes)
	put(fieldAction, string(in.Action))
	if used&fieldAction == 0 {
		put(fieldVerb, in.Action.Verb())
	}
	put(fieldModule, in.Module)
	put(fieldVersion, in.Version)
	put(fieldVersionTime, in.VersionTime)
	put(fieldRoute, string(in.Route))
	put(fieldClientAddr, in.ClientAddr)
	if used&fieldAdvisories != 0 {
		b = strconv.AppendInt(b, int64(len(in.Advisories)), 10)
		b = append(b, 'a')
		for _, a := range in.Advisories {
			put(fieldAdvisories, a.ID)
			put(fieldAdvisories, a.Fixed)
			put(fieldAdvisories, a.Summary)
			putSet(fieldAdvisories, a.Aliases)
		}
	}
	putSet(fieldLicenses, in.Licenses)
	return b
}

// appendTimeKey appends the decision time to a key from appendCacheKey, for a
// decision that depends on it. Every key of appendCacheKey ends in a field
// whose length prefix says where it ends, so no key without a time equals one
// with it.
func appendTimeKey(b []byte, now time.Time) []byte {
	b = append(b, 't')
	return strconv.AppendInt(b, now.Unix(), 10)
}
