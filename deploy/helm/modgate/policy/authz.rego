# modgate's authorization policy: who may list, pull, publish and delete which
# modules, who may read the audit trail and who administers modgate.
#
# modgate asks for data.modgate.authz.decision with the input document described
# in docs/policy.md and expects {"allow": bool, "reasons": [string, ...]}. When the
# answer is no, the first reason is the one line the developer's go command prints,
# so every deny below says who, what, and why.
#
# The team and ownership data (data.modgate.*) comes from the YAML files next to
# this one; see docs/policy.md for their schema. Test changes with
# `modgate policy test`; modgate reloads this directory without a restart and keeps
# the last good policy if a new one does not compile or its tests fail.
#
# Speed: a decision that misses modgate's cache is evaluated here, on the request
# path. Rules start with equality tests on input (input.verb == "pull",
# input.route == "public"), which OPA indexes, so a request evaluates only the
# rules that can apply to it; owners and the deny list are looked up by
# input.path_prefixes, a handful of lookups however large the data; and the
# rules read input.verb, not input.action, so modgate caches one decision for a
# version's .info, .mod and .zip.
package modgate.authz

settings := data.modgate.settings

# ---------------------------------------------------------------------------
# The decision.
# ---------------------------------------------------------------------------

# Denied explicitly: every deny reason, sorted. Deny rules win over allow rules.
decision := {"allow": false, "reasons": sort(deny)} if count(deny) > 0

# Allowed: the reasons name the rules that allowed it (`modgate policy explain`).
else := {"allow": true, "reasons": sort(allow)} if count(allow) > 0

# Denied because nothing allows it: one reason explaining what would have.
else := {"allow": false, "reasons": [not_allowed]}

# ---------------------------------------------------------------------------
# Who is asking.
# ---------------------------------------------------------------------------

authenticated if {
	input.method != "anonymous"
	input.subject != ""
}

# in_team(t): the caller is in team t, by identity (OIDC groups, certificate
# mapping, token) or by members.yaml.
in_team(t) if t in input.teams

in_team(t) if t in data.modgate.members[input.subject]

admin if {
	some t in settings.admin_teams
	in_team(t)
}

auditor if {
	some t in settings.auditor_teams
	in_team(t)
}

# ---------------------------------------------------------------------------
# Ownership. input.path_prefixes lists the module path's prefixes at path-element
# boundaries, shortest first ("corp.example", "corp.example/pay", ...), so finding
# the owner is a handful of object lookups however many prefixes are owned.
# ---------------------------------------------------------------------------

# The longest owned prefix wins: corp.example/payments overrides corp.example.
owner := object.union(data.modgate.owners[prefix], {"prefix": prefix}) if {
	owned := [p | some p in input.path_prefixes; data.modgate.owners[p]]
	prefix := owned[count(owned) - 1]
}

# ---------------------------------------------------------------------------
# Allow rules.
# ---------------------------------------------------------------------------

# Pulls: the first of these reasons that applies allows the pull.
allow contains pull_grant if input.verb == "pull"

# The owning team.
pull_grant := sprintf("team %s owns %s", [owner.team, owner.prefix]) if {
	authenticated
	in_team(owner.team)
}

# A team the owner shares the prefix with (the first, should the caller be in
# several: a rule has one value).
else := sprintf("team %s shares %s with team %s", [owner.team, owner.prefix, min(shared)]) if {
	authenticated
	shared := {t | some t in owner.shared_with; in_team(t)}
	count(shared) > 0
}

# Everyone, where the owner shares the prefix with "*".
else := sprintf("team %s shares %s with everyone", [owner.team, owner.prefix]) if {
	authenticated
	"*" in owner.shared_with
}

# Public modules nobody in the company owns: any authenticated caller, and
# anonymous callers where settings.anonymous is "public" (development).
else := sprintf("%s is a public module", [input.module]) if {
	input.route == "public"
	not owner
	public_caller
}

# The checksum database holds only public modules' hashes.
allow contains "the checksum database is public" if {
	input.verb == "sumdb"
	public_caller
}

public_caller if authenticated

public_caller if {
	input.method == "anonymous"
	settings.anonymous == "public"
}

allow contains sprintf("team %s owns %s", [owner.team, owner.prefix]) if {
	input.verb == "publish"
	authenticated
	in_team(owner.team)
}

allow contains "admins may delete versions" if {
	input.verb == "delete"
	authenticated
	admin
}

allow contains "admins administer modgate" if {
	input.verb == "admin"
	authenticated
	admin
}

allow contains "auditors may read the audit trail" if {
	input.verb == "audit.read"
	authenticated
	auditor
}

allow contains "admins may read the audit trail" if {
	input.verb == "audit.read"
	authenticated
	admin
}

# ---------------------------------------------------------------------------
# Deny rules: these win over any allow rule.
# ---------------------------------------------------------------------------

deny contains "authentication required: run `modgate login` or use a client certificate or API token" if {
	input.method == "anonymous"
	settings.anonymous != "public"
}

# Known-bad modules, from denylist.yaml. An entry names a module path or a path
# prefix; with versions it denies only those versions (list and latest are
# filtered instead), without it denies the whole module.
deny contains deny_listed(p, data.modgate.denylist[p]) if {
	input.verb == "pull"
	some p in input.path_prefixes
}

deny_listed(p, entry) := sprintf("%s may not %s: %s is deny-listed: %s", [who, what, p, entry.reason]) if {
	count(entry.versions) == 0
} else := sprintf("%s may not %s: version is deny-listed: %s", [who, what, entry.reason]) if {
	input.version in entry.versions
}

# The cool-down: public versions younger than settings.cooldown.hours are not
# served yet, so a malicious release has time to be found and yanked before it
# reaches a build. Private modules are the company's own and are exempt, and so
# are versions whose publication time is unknown.
deny contains msg if {
	input.verb == "pull"
	input.route == "public"
	settings.cooldown.enabled
	input.version_time != ""
	not cooldown_exempt
	published := time.parse_rfc3339_ns(input.version_time)
	now := time.parse_rfc3339_ns(input.time)
	ready := published + ((settings.cooldown.hours * 3600) * 1000000000)
	now < ready
	msg := sprintf("%s may not %s yet: it was published less than %d hours ago (cool-down until %s)", [
		who, what, settings.cooldown.hours,
		time.format([ready, "UTC", "2006-01-02T15:04:05Z07:00"]),
	])
}

cooldown_exempt if {
	some p in input.path_prefixes
	p in settings.cooldown.exempt
}

# A scoped API token may only do what its scopes name: the verbs, with "pull"
# covering the checksum and vulnerability databases too.
deny contains sprintf("%s may not %s: the token lacks the %q scope", [who, what, scope]) if {
	count(input.scopes) > 0
	scope := object.get({"sumdb": "pull", "vulndb": "pull"}, input.verb, input.verb)
	not scope in input.scopes
}

# ---------------------------------------------------------------------------
# Reasons. These are evaluated only for denies.
# ---------------------------------------------------------------------------

# The caller's teams, for reasons.
teams contains t if some t in input.teams

teams contains t if some t in data.modgate.members[input.subject]

# Who the caller is: "team payments", "teams payments, web", or the subject
# when identity gave no team.
who := "anonymous callers" if input.method == "anonymous"

else := sprintf("team %s", [concat("", teams)]) if count(teams) == 1

else := sprintf("teams %s", [concat(", ", sort(teams))]) if count(teams) > 1

else := input.subject

# What the caller asked for.
what := sprintf("pull %s", [input.module]) if {
	input.verb == "pull"
	input.version == ""
}

else := sprintf("pull %s@%s", [input.module, input.version]) if input.verb == "pull"

else := "use the checksum database" if input.verb == "sumdb"

else := "read the vulnerability database" if input.verb == "vulndb"

else := sprintf("publish %s@%s", [input.module, input.version]) if input.verb == "publish"

else := sprintf("delete %s@%s", [input.module, input.version]) if input.verb == "delete"

else := "read the audit trail" if input.verb == "audit.read"

else := "administer modgate" if input.verb == "admin"

else := sprintf("perform %q", [input.verb])

# Why nothing allowed it: one line naming the rule that would have.
not_allowed := sprintf("%s may not %s: owned by team %s", [who, what, owner.team]) if {
	input.verb in {"pull", "publish"}
}

else := sprintf("%s may not %s: no team owns it", [who, what]) if {
	input.verb in {"pull", "publish"}
	input.route == "private"
}

else := sprintf("%s may not %s: no team owns it", [who, what]) if input.verb == "publish"

else := sprintf("%s may not %s: only the admin teams (%s) may", [who, what, concat(", ", settings.admin_teams)]) if {
	input.verb in {"delete", "admin"}
}

else := sprintf("%s may not %s: only auditors (%s) and admins may", [who, what, concat(", ", settings.auditor_teams)]) if {
	input.verb == "audit.read"
}

else := sprintf("%s may not %s: no policy rule allows it", [who, what])
