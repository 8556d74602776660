package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// Data is the schema of the policy's data files (*.yaml, *.yml, *.json in the
// policy directory). Each file holds some of the top-level sections; map
// sections from several files are merged, and an entry defined twice is an
// error. The merged, validated document is what Rego sees as data.modgate, with
// every list present (possibly empty) so rules need not guard against null.
type Data struct {
	Settings *Settings `json:"settings,omitempty" yaml:"settings"`
	// Members adds teams to subjects, on top of the teams identity provides.
	Members map[string][]string `json:"members,omitempty" yaml:"members"`
	// Owners maps a module path prefix to the team that owns it.
	Owners map[string]Owner `json:"owners,omitempty" yaml:"owners"`
	// Denylist maps a module path or prefix to why it is denied.
	Denylist map[string]DenyEntry `json:"denylist,omitempty" yaml:"denylist"`
	// Extra is free-form data for site-specific rules (data.modgate.extra).
	Extra map[string]any `json:"extra,omitempty" yaml:"extra"`
}

// Settings are the policy's switches (data.modgate.settings).
type Settings struct {
	AdminTeams   []string `json:"admin_teams" yaml:"admin_teams"`
	AuditorTeams []string `json:"auditor_teams" yaml:"auditor_teams"`
	// Anonymous is "deny" (default) or "public".
	Anonymous string   `json:"anonymous" yaml:"anonymous"`
	Cooldown  Cooldown `json:"cooldown" yaml:"cooldown"`
	// Vulnerabilities refuses versions affected by a known advisory
	// (docs/vulnerabilities.md).
	Vulnerabilities Vulnerabilities `json:"vulnerabilities" yaml:"vulnerabilities"`
	// Licenses refuses modules by the licenses found in their zips.
	Licenses Licenses `json:"licenses" yaml:"licenses"`
}

// Vulnerabilities configures the rule that refuses affected versions.
type Vulnerabilities struct {
	Enabled bool `json:"enabled" yaml:"enabled"`
	// Exempt lists exemptions; each applies where all its set fields match.
	Exempt []VulnExemption `json:"exempt" yaml:"exempt"`
}

// VulnExemption lets affected versions through: of one advisory, one module
// path prefix, for one team, or any combination of them.
type VulnExemption struct {
	Advisory string `json:"advisory" yaml:"advisory"` // GO-2024-1234; "" = any
	Module   string `json:"module" yaml:"module"`     // path prefix; "" = any
	Team     string `json:"team" yaml:"team"`         // "" = any caller
	Reason   string `json:"reason" yaml:"reason"`     // why, for the next reviewer
}

// Licenses configures the rule that refuses modules by license.
type Licenses struct {
	Enabled bool `json:"enabled" yaml:"enabled"`
	// Deny maps a team ("*" for everyone) to the SPDX license ids it may not pull.
	Deny map[string][]string `json:"deny" yaml:"deny"`
}

// Cooldown holds back public versions younger than Hours.
type Cooldown struct {
	Enabled bool     `json:"enabled" yaml:"enabled"`
	Hours   int      `json:"hours" yaml:"hours"`
	Exempt  []string `json:"exempt" yaml:"exempt"` // path prefixes
}

// Owner is the owner of a module path prefix.
type Owner struct {
	Team        string   `json:"team" yaml:"team"`
	SharedWith  []string `json:"shared_with" yaml:"shared_with"` // "*" = every authenticated caller
	Description string   `json:"description,omitempty" yaml:"description"`
}

// DenyEntry denies a module or prefix, or only some of its versions.
type DenyEntry struct {
	Reason   string   `json:"reason" yaml:"reason"`
	Versions []string `json:"versions" yaml:"versions"` // empty = every version
}

// Anonymous modes.
const (
	AnonymousDeny   = "deny"
	AnonymousPublic = "public"
)

// decodeDataFile decodes one data file strictly: unknown keys are errors, so a
// typo ("shared-with") fails the load instead of silently granting nothing.
func decodeDataFile(name string, content []byte) (*Data, error) {
	var d Data
	if strings.HasSuffix(name, ".json") {
		dec := json.NewDecoder(bytes.NewReader(content))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return &d, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(content))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &d, nil
}

// mergeData merges the files' sections; files must be in a stable order so the
// error for a duplicate names the same two files every time.
func mergeData(files []string, docs []*Data) (*Data, error) {
	out := &Data{
		Members:  map[string][]string{},
		Owners:   map[string]Owner{},
		Denylist: map[string]DenyEntry{},
		Extra:    map[string]any{},
	}
	settingsFrom := ""
	seen := map[string]string{} // "section\x00key" → file
	dup := func(section, key, file string) error {
		k := section + "\x00" + key
		if prev, ok := seen[k]; ok {
			return fmt.Errorf("%s: %s %q is already defined in %s", file, section, key, prev)
		}
		seen[k] = file
		return nil
	}
	for i, d := range docs {
		file := files[i]
		if d.Settings != nil {
			if settingsFrom != "" {
				return nil, fmt.Errorf("%s: settings are already defined in %s", file, settingsFrom)
			}
			settingsFrom = file
			out.Settings = d.Settings
		}
		for k, v := range d.Members {
			if err := dup("members", k, file); err != nil {
				return nil, err
			}
			out.Members[k] = v
		}
		for k, v := range d.Owners {
			if err := dup("owners", k, file); err != nil {
				return nil, err
			}
			out.Owners[k] = v
		}
		for k, v := range d.Denylist {
			if err := dup("denylist", k, file); err != nil {
				return nil, err
			}
			out.Denylist[k] = v
		}
		for k, v := range d.Extra {
			if err := dup("extra", k, file); err != nil {
				return nil, err
			}
			out.Extra[k] = v
		}
	}
	if out.Settings == nil {
		out.Settings = &Settings{}
	}
	return out, nil
}

// normalize fills defaults and validates d, returning every problem at once so
// the security team fixes a data file in one round.
func (d *Data) normalize() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	s := d.Settings
	if s.Anonymous == "" {
		s.Anonymous = AnonymousDeny
	}
	if s.Anonymous != AnonymousDeny && s.Anonymous != AnonymousPublic {
		bad("settings.anonymous: %q is neither %q nor %q", s.Anonymous, AnonymousDeny, AnonymousPublic)
	}
	s.AdminTeams = nonNil(s.AdminTeams)
	s.AuditorTeams = nonNil(s.AuditorTeams)
	for _, t := range s.AdminTeams {
		if err := checkTeam(t); err != nil {
			bad("settings.admin_teams: %v", err)
		}
	}
	for _, t := range s.AuditorTeams {
		if err := checkTeam(t); err != nil {
			bad("settings.auditor_teams: %v", err)
		}
	}
	if s.Cooldown.Enabled && (s.Cooldown.Hours <= 0 || s.Cooldown.Hours > 24*366) {
		bad("settings.cooldown.hours: %d is not between 1 and %d", s.Cooldown.Hours, 24*366)
	}
	if s.Cooldown.Hours < 0 {
		bad("settings.cooldown.hours: %d is negative", s.Cooldown.Hours)
	}
	s.Cooldown.Exempt = nonNil(s.Cooldown.Exempt)
	for _, p := range s.Cooldown.Exempt {
		if err := checkPrefix(p); err != nil {
			bad("settings.cooldown.exempt: %v", err)
		}
	}

	s.Vulnerabilities.Exempt = nonNilSlice(s.Vulnerabilities.Exempt)
	for i, x := range s.Vulnerabilities.Exempt {
		if x.Advisory == "" && x.Module == "" && x.Team == "" {
			bad("settings.vulnerabilities.exempt[%d]: names no advisory, module or team (it would exempt everything)", i)
		}
		if strings.TrimSpace(x.Reason) == "" {
			bad("settings.vulnerabilities.exempt[%d]: reason is missing", i)
		}
		if x.Module != "" {
			if err := checkPrefix(x.Module); err != nil {
				bad("settings.vulnerabilities.exempt[%d].module: %v", i, err)
			}
		}
		if x.Team != "" {
			if err := checkTeam(x.Team); err != nil {
				bad("settings.vulnerabilities.exempt[%d].team: %v", i, err)
			}
		}
	}
	if s.Licenses.Deny == nil {
		s.Licenses.Deny = map[string][]string{}
	}
	for _, team := range sortedKeys(s.Licenses.Deny) {
		if team != "*" {
			if err := checkTeam(team); err != nil {
				bad("settings.licenses.deny: %v", err)
			}
		}
		s.Licenses.Deny[team] = nonNil(s.Licenses.Deny[team])
		for _, id := range s.Licenses.Deny[team] {
			if id == "" || strings.ContainsFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
				bad("settings.licenses.deny[%q]: %q is not an SPDX license id", team, id)
			}
		}
	}

	for _, subject := range sortedKeys(d.Members) {
		if strings.TrimSpace(subject) == "" {
			bad("members: empty subject")
		}
		d.Members[subject] = nonNil(d.Members[subject])
		for _, t := range d.Members[subject] {
			if err := checkTeam(t); err != nil {
				bad("members[%q]: %v", subject, err)
			}
		}
	}
	for _, p := range sortedKeys(d.Owners) {
		o := d.Owners[p]
		if err := checkPrefix(p); err != nil {
			bad("owners: %v", err)
		}
		if o.Team == "" {
			bad("owners[%q]: team is missing", p)
		} else if err := checkTeam(o.Team); err != nil {
			bad("owners[%q].team: %v", p, err)
		}
		o.SharedWith = nonNil(o.SharedWith)
		for _, t := range o.SharedWith {
			if t == "*" {
				continue
			}
			if err := checkTeam(t); err != nil {
				bad("owners[%q].shared_with: %v", p, err)
			}
		}
		d.Owners[p] = o
	}
	for _, p := range sortedKeys(d.Denylist) {
		e := d.Denylist[p]
		if err := checkPrefix(p); err != nil {
			bad("denylist: %v", err)
		}
		if strings.TrimSpace(e.Reason) == "" {
			bad("denylist[%q]: reason is missing (developers are shown it)", p)
		} else if strings.ContainsAny(e.Reason, "\r\n") {
			bad("denylist[%q]: reason must be one line", p)
		}
		e.Versions = nonNil(e.Versions)
		for _, v := range e.Versions {
			if !semver.IsValid(v) || semver.Canonical(v) != strings.TrimSuffix(v, "+incompatible") {
				bad("denylist[%q].versions: %q is not a canonical semantic version", p, v)
			}
		}
		d.Denylist[p] = e
	}
	return errors.Join(errs...)
}

// document returns d as Rego sees it: plain JSON values.
func (d *Data) document() (map[string]any, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // OPA's stores expect json.Number, not float64
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	// Sections are always present for the rules, even when empty.
	for _, k := range []string{"members", "owners", "denylist", "extra"} {
		if m[k] == nil {
			m[k] = map[string]any{}
		}
	}
	return m, nil
}

// checkPrefix accepts module path prefixes: import paths, whose first element
// need not contain a dot (internal hosts are fine), without trailing slashes.
func checkPrefix(p string) error {
	if p == "" {
		return errors.New("empty path prefix")
	}
	if err := module.CheckImportPath(p); err != nil {
		return fmt.Errorf("path prefix %q: %w", p, err)
	}
	return nil
}

func checkTeam(t string) error {
	if t == "" {
		return errors.New("empty team name")
	}
	if strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("team name %q contains spaces or control characters", t)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
