# Supply-chain rules: versions affected by a known vulnerability, modules by
# license, and who may read the vulnerability database. Both refusals are off
# until switched on in settings.yaml (settings.vulnerabilities,
# settings.licenses); docs/vulnerabilities.md explains them.
#
# modgate fills input.advisories (the reports affecting input.module at
# input.version: id, aliases, summary, fixed) for pulls of a version, and
# input.licenses (the SPDX ids found in the version's zip) for zip downloads,
# only while the matching switch is on, so these rules cost nothing when off.
# A license is therefore refused at the zip: the go command prints the reason
# when it downloads the module.
package modgate.authz

# The vulnerability database is as public as the checksum database: every
# caller who may pull public modules may read it (govulncheck -db).
allow contains "the vulnerability database is public" if {
	input.verb == "vulndb"
	public_caller
}

# ---------------------------------------------------------------------------
# Vulnerabilities: refuse a version affected by an advisory, unless exempted.
# @v/list and @latest leave such versions out, so `go get m@latest` picks the
# newest version that is not affected.
# ---------------------------------------------------------------------------

deny contains msg if {
	input.verb == "pull"
	settings.vulnerabilities.enabled
	input.version != ""
	some adv in input.advisories
	not vulnerability_exempt(adv.id)
	msg := sprintf("%s@%s is affected by %s%s: %s", [
		input.module, input.version, adv.id,
		advisory_aliases(adv), advisory_fix(adv),
	])
}

advisory_aliases(adv) := sprintf(" (%s)", [concat(", ", adv.aliases)]) if count(adv.aliases) > 0

else := ""

advisory_fix(adv) := sprintf("fixed in %s", [adv.fixed]) if adv.fixed != ""

else := "no fixed version yet"

# An exemption applies where every field it sets matches: the advisory, a path
# prefix of the module, a team of the caller.
vulnerability_exempt(id) if {
	some x in settings.vulnerabilities.exempt
	object.get(x, "advisory", "") in {"", id}
	exempt_module(object.get(x, "module", ""))
	exempt_team(object.get(x, "team", ""))
}

exempt_module(p) if p == ""

exempt_module(p) if p in input.path_prefixes

exempt_team(t) if t == ""

exempt_team(t) if in_team(t)

# ---------------------------------------------------------------------------
# Licenses: refuse modules whose zip carries a license denied to the caller's
# team ("*" denies it to everyone).
# ---------------------------------------------------------------------------

deny contains msg if {
	input.verb == "pull"
	settings.licenses.enabled
	input.version != ""
	some team, ids in settings.licenses.deny
	license_rule_applies(team)
	some id in input.licenses
	id in ids
	msg := sprintf("%s may not %s: it is licensed under %s, which %s", [who, what, id, license_scope(team)])
}

license_rule_applies(t) if t == "*"

license_rule_applies(t) if in_team(t)

license_scope(t) := "no team may use" if t == "*"

else := sprintf("team %s may not use", [t])
