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
package modgate.authz

settings := data.modgate.settings

# ---------------------------------------------------------------------------
# The decision.
# ---------------------------------------------------------------------------

# Allowed: no deny rule fired and at least one allow rule did. The reasons say
# which rules allowed the request (shown by `modgate policy explain`).
decision := {"allow": true, "reasons": sort([r | some r in allow])} if {
	count(deny) == 0
	count(allow) > 0
}

# Denied explicitly: every deny reason, sorted.
decision := {"allow": false, "reasons": sort([r | some r in deny])} if {
	count(deny) > 0
}

# Denied because nothing allows it: one reason explaining what would have.
decision := {"allow": false, "reasons": [not_allowed]} if {
	count(deny) == 0
	count(allow) == 0
}

# ---------------------------------------------------------------------------
# Vocabulary.
# ---------------------------------------------------------------------------

# Actions that read a module (the GOPROXY protocol and the checksum database).
pull_actions := {"list", "info", "mod", "zip", "latest", "sumdb"}

# Actions on one version of a module, where the cool-down and version deny
# entries apply.
version_actions := {"info", "mod", "zip"}

# The API-token scope each action needs; an empty scope list means unrestricted.
scope_of := {
	"list": "pull", "info": "pull", "mod": "pull", "zip": "pull", "latest": "pull", "sumdb": "pull",
	"publish": "publish", "delete": "delete", "audit.read": "audit.read", "admin": "admin",
}

pull if input.action in pull_actions

anonymous if input.method == "anonymous"

authenticated if {
	not anonymous
	input.subject != ""
}

# The caller's teams: those identity gave (OIDC groups, certificate mapping,
# token) plus those listed for the subject in members.yaml.
teams contains t if some t in input.teams

teams contains t if some t in data.modgate.members[input.subject]

admin if {
	some t in teams
	t in settings.admin_teams
}

auditor if {
	some t in teams
	t in settings.auditor_teams
}

# Who the caller is, in reasons: "team payments", "teams payments, web", or the
# subject when identity gave no team.
who := "anonymous callers" if anonymous

else := sprintf("team %s", [concat("", teams)]) if count(teams) == 1

else := sprintf("teams %s", [concat(", ", sort([t | some t in teams]))]) if count(teams) > 1

else := input.subject

# What the caller asked for, in reasons.
what := sprintf("pull %s", [input.module]) if {
	pull
	input.action != "sumdb"
	input.version == ""
}

else := sprintf("pull %s@%s", [input.module, input.version]) if {
	pull
	input.action != "sumdb"
}

else := "use the checksum database" if input.action == "sumdb"

else := sprintf("publish %s@%s", [input.module, input.version]) if input.action == "publish"

else := sprintf("delete %s@%s", [input.module, input.version]) if input.action == "delete"

else := "read the audit trail" if input.action == "audit.read"

else := "administer modgate" if input.action == "admin"

else := sprintf("perform %q", [input.action])

# ---------------------------------------------------------------------------
# Ownership. input.path_prefixes lists the module path's prefixes at path-element
# boundaries, shortest first ("corp.example", "corp.example/pay", ...), so finding
# the owner is a handful of object lookups however many prefixes are owned.
# ---------------------------------------------------------------------------

owned_prefixes := [p | some p in input.path_prefixes; data.modgate.owners[p]]

# The longest owned prefix wins: corp.example/payments overrides corp.example.
owner_prefix := owned_prefixes[count(owned_prefixes) - 1]

owner := data.modgate.owners[owner_prefix]

owning_team if owner.team in teams

shared_team contains t if {
	some t in owner.shared_with
	t in teams
}

shared_with_everyone if "*" in owner.shared_with

# ---------------------------------------------------------------------------
# Allow rules.
# ---------------------------------------------------------------------------

# Public modules nobody in the company owns: any authenticated caller, and
# anonymous callers where settings.anonymous is "public" (development).
allow contains sprintf("%s is a public module", [input.module]) if {
	pull
	input.action != "sumdb"
	input.route == "public"
	not owner_prefix
	public_caller
}

# The checksum database holds only public modules' hashes.
allow contains "the checksum database is public" if {
	input.action == "sumdb"
	public_caller
}

public_caller if authenticated

public_caller if {
	anonymous
	settings.anonymous == "public"
}

allow contains sprintf("team %s owns %s", [owner.team, owner_prefix]) if {
	pull
	authenticated
	owning_team
}

allow contains sprintf("team %s shares %s with team %s", [owner.team, owner_prefix, t]) if {
	pull
	authenticated
	some t in shared_team
}

allow contains sprintf("team %s shares %s with everyone", [owner.team, owner_prefix]) if {
	pull
	authenticated
	shared_with_everyone
}

allow contains sprintf("team %s owns %s", [owner.team, owner_prefix]) if {
	input.action == "publish"
	authenticated
	owning_team
}

allow contains "admins may delete versions" if {
	input.action == "delete"
	authenticated
	admin
}

allow contains "admins administer modgate" if {
	input.action == "admin"
	authenticated
	admin
}

allow contains "auditors may read the audit trail" if {
	input.action == "audit.read"
	authenticated
	auditor
}

allow contains "admins may read the audit trail" if {
	input.action == "audit.read"
	authenticated
	admin
}

# ---------------------------------------------------------------------------
# Deny rules: these win over any allow rule.
# ---------------------------------------------------------------------------

deny contains "authentication required: run `modgate login` or use a client certificate or API token" if {
	anonymous
	settings.anonymous != "public"
}

# Known-bad modules, from denylist.yaml. An entry names a module path or a path
# prefix; with versions it denies only those versions (list and latest are
# filtered instead), without it denies the whole module.
denied_prefixes := [p | some p in input.path_prefixes; data.modgate.denylist[p]]

deny contains sprintf("%s may not %s: %s is deny-listed: %s", [who, what, p, entry.reason]) if {
	pull
	some p in denied_prefixes
	entry := data.modgate.denylist[p]
	count(entry.versions) == 0
}

deny contains sprintf("%s may not %s: version is deny-listed: %s", [who, what, entry.reason]) if {
	some p in denied_prefixes
	entry := data.modgate.denylist[p]
	input.version in entry.versions
}

# The cool-down: public versions younger than settings.cooldown.hours are not
# served yet, so a malicious release has time to be found and yanked before it
# reaches a build. Private modules are the company's own and are exempt.
deny contains msg if {
	settings.cooldown.enabled
	pull
	input.version != ""
	input.version_time != ""
	input.route == "public"
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

# A scoped API token may only do what its scopes name.
deny contains sprintf("%s may not %s: the token lacks the %q scope", [who, what, scope_of[input.action]]) if {
	count(input.scopes) > 0
	not scope_of[input.action] in input.scopes
}

deny contains sprintf("unknown action %q", [input.action]) if not scope_of[input.action]

# ---------------------------------------------------------------------------
# Why nothing allowed it: one line naming the rule that would have.
# ---------------------------------------------------------------------------

not_allowed := sprintf("%s may not %s: owned by team %s", [who, what, owner.team]) if {
	input.action in {"list", "info", "mod", "zip", "latest", "publish"}
}

else := sprintf("%s may not %s: no team owns it", [who, what]) if {
	input.action in {"list", "info", "mod", "zip", "latest", "publish"}
	input.route == "private"
}

else := sprintf("%s may not %s: no team owns it", [who, what]) if input.action == "publish"

else := sprintf("%s may not %s: only the admin teams (%s) may", [who, what, concat(", ", settings.admin_teams)]) if {
	input.action in {"delete", "admin"}
}

else := sprintf("%s may not %s: only auditors (%s) and admins may", [who, what, concat(", ", settings.auditor_teams)]) if {
	input.action == "audit.read"
}

else := sprintf("%s may not %s: no policy rule allows it", [who, what])
