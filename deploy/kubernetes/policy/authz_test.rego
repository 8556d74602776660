# Unit tests for authz.rego over the data files in this directory.
# Run them with `modgate policy test` (add -v for every test's name). modgate
# refuses to load a policy whose tests fail, so a broken rule never goes live.
package modgate.authz_test

import data.modgate.authz

# req builds an input document like modgate's from the fields that matter to a
# test; everything else takes a default.
req(fields) := object.union(
	{
		"subject": "alice@corp.example",
		"teams": [],
		"method": "oidc",
		"scopes": [],
		"action": "zip",
		"module": "github.com/pkg/errors",
		"version": "v0.9.1",
		"version_time": "",
		"route": "public",
		"client_addr": "192.0.2.10",
		"time": "2026-11-25T10:00:00Z",
		"advisories": [],
		"licenses": [],
	},
	object.union(fields, {
		"path_prefixes": prefixes(object.get(fields, "module", "github.com/pkg/errors")),
		"verb": verb(object.get(fields, "action", "zip")),
	}),
)

# verb mirrors modgate's grouping of actions.
verb(action) := "pull" if action in {"list", "info", "mod", "zip", "latest"}

else := action if action in {"sumdb", "vulndb", "publish", "delete", "audit.read", "admin"}

else := ""

# prefixes mirrors what modgate computes: the module path's prefixes at
# path-element boundaries, shortest first, lower-cased (modgate also lower-cases
# the keys of owners and the deny list when it loads them).
prefixes(m) := [concat("/", array.slice(parts, 0, i + 1)) |
	parts := split(lower(m), "/")
	some i, _ in parts
]

allowed(fields) if authz.decision.allow with input as req(fields)

reason(fields) := r if {
	r := authz.decision.reasons[0] with input as req(fields)
}

test_public_module_any_authenticated_caller if {
	allowed({"teams": ["payments"]})
	allowed({"teams": []})
	allowed({"action": "list", "version": ""})
	allowed({"action": "sumdb", "module": "", "version": ""})
}

test_owner_pulls_private if {
	allowed({"teams": ["payments"], "route": "private", "module": "corp.example/payments/ledger"})
}

test_other_team_is_denied_with_reason if {
	fields := {"teams": ["payments"], "route": "private", "module": "corp.example/secret/x", "action": "zip", "version": "v1.0.0"}
	not allowed(fields)
	reason(fields) == "team payments may not pull corp.example/secret/x@v1.0.0: owned by team platform"
}

test_path_element_boundary if {
	# corp.example/paymentsx is not under corp.example/payments: the catch-all owns it.
	fields := {"teams": ["payments"], "route": "private", "module": "corp.example/paymentsx"}
	reason(fields) == "team payments may not pull corp.example/paymentsx@v0.9.1: owned by team platform"
}

test_shared_team_pulls if {
	allowed({"teams": ["checkout"], "route": "private", "module": "corp.example/payments/api/v2"})
	allowed({"teams": ["risk", "checkout"], "route": "private", "module": "corp.example/payments/api/v2"})
}

test_shared_with_everyone if {
	allowed({"teams": ["checkout"], "route": "private", "module": "corp.example/platform/log"})
	allowed({"teams": [], "route": "private", "module": "corp.example/platform/log"})
}

test_longest_prefix_wins if {
	# corp.example is platform's, but corp.example/checkout is checkout's own.
	allowed({"teams": ["checkout"], "route": "private", "module": "corp.example/checkout/cart"})
	not allowed({"teams": ["platform"], "route": "private", "module": "corp.example/checkout/cart"})
}

test_private_without_owner if {
	fields := {"teams": ["payments"], "route": "private", "module": "git.internal.example/tools"}
	reason(fields) == "team payments may not pull git.internal.example/tools@v0.9.1: no team owns it"
}

test_members_data_adds_teams if {
	allowed({"subject": "ci-release@corp.example", "teams": [], "route": "private", "module": "corp.example/secret/signer"})
}

test_denylisted_prefix_denied_for_everyone if {
	fields := {"teams": ["platform-admins"], "module": "github.com/evil-typosquat/uuid", "version": "v1.0.0"}
	not allowed(fields)
	reason(fields) == "team platform-admins may not pull github.com/evil-typosquat/uuid@v1.0.0: github.com/evil-typosquat is deny-listed: typosquatting account, see SEC-1042"
	not allowed({"module": "github.com/evil-typosquat/uuid", "action": "list", "version": ""})
}

test_denylisted_version_only if {
	not allowed({"module": "github.com/example/leftpad", "version": "v1.3.1"})
	allowed({"module": "github.com/example/leftpad", "version": "v1.3.2"})
	allowed({"module": "github.com/example/leftpad", "action": "list", "version": ""})
}

test_publish_only_by_owner if {
	allowed({"teams": ["payments"], "action": "publish", "route": "private", "module": "corp.example/payments/ledger", "version": "v1.2.0"})
	fields := {"teams": ["checkout"], "action": "publish", "route": "private", "module": "corp.example/payments/ledger", "version": "v1.2.0"}
	not allowed(fields)
	reason(fields) == "team checkout may not publish corp.example/payments/ledger@v1.2.0: owned by team payments"
	not allowed({"teams": ["payments"], "action": "publish", "route": "private", "module": "git.internal.example/x", "version": "v1.0.0"})
}

test_delete_only_admin if {
	allowed({"teams": ["platform-admins"], "action": "delete", "route": "private", "module": "corp.example/payments/ledger", "version": "v1.2.0"})
	fields := {"teams": ["payments"], "action": "delete", "route": "private", "module": "corp.example/payments/ledger", "version": "v1.2.0"}
	reason(fields) == "team payments may not delete corp.example/payments/ledger@v1.2.0: only the admin teams (platform-admins) may"
}

test_admin_only_admin if {
	allowed({"teams": ["platform-admins"], "action": "admin", "module": "", "version": ""})
	not allowed({"teams": ["platform"], "action": "admin", "module": "", "version": ""})
}

test_audit_read_auditors_and_admins if {
	allowed({"teams": ["security-audit"], "action": "audit.read", "module": "", "version": ""})
	allowed({"teams": ["platform-admins"], "action": "audit.read", "module": "", "version": ""})
	fields := {"teams": ["payments", "checkout"], "action": "audit.read", "module": "", "version": ""}
	reason(fields) == "teams checkout, payments may not read the audit trail: only auditors (security-audit) and admins may"
}

test_cooldown_off_by_default if {
	allowed({"version_time": "2026-11-25T09:00:00Z"})
}

cooldown := {"enabled": true, "hours": 72, "exempt": ["golang.org/x"]}

test_cooldown_denies_young_public_versions if {
	fields := {"version_time": "2026-11-24T10:00:00Z"}
	not allowed(fields) with data.modgate.settings.cooldown as cooldown
	r := reason(fields) with data.modgate.settings.cooldown as cooldown
	r == "alice@corp.example may not pull github.com/pkg/errors@v0.9.1 yet: it was published less than 72 hours ago (cool-down until 2026-11-27T10:00:00Z)"
}

test_cooldown_allows_old_unknown_exempt_and_private if {
	allowed({"version_time": "2026-11-20T10:00:00Z"}) with data.modgate.settings.cooldown as cooldown
	allowed({"version_time": ""}) with data.modgate.settings.cooldown as cooldown
	allowed({"version_time": "2026-11-25T09:00:00Z", "module": "golang.org/x/mod"}) with data.modgate.settings.cooldown as cooldown
	allowed({"version_time": "2026-11-25T09:00:00Z", "teams": ["payments"], "route": "private", "module": "corp.example/payments/ledger"}) with data.modgate.settings.cooldown as cooldown
}

test_anonymous_per_setting if {
	allowed({"subject": "", "method": "anonymous"})
	not allowed({"subject": "", "method": "anonymous", "route": "private", "module": "corp.example/platform/log"})
	not allowed({"subject": "", "method": "anonymous", "action": "publish"})
	fields := {"subject": "", "method": "anonymous"}
	not allowed(fields) with data.modgate.settings.anonymous as "deny"
	r := reason(fields) with data.modgate.settings.anonymous as "deny"
	startswith(r, "authentication required")
}

test_token_scopes if {
	allowed({"scopes": ["pull"]})
	fields := {"scopes": ["pull"], "teams": ["payments"], "action": "publish", "route": "private", "module": "corp.example/payments/ledger", "version": "v1.2.0"}
	reason(fields) == "team payments may not publish corp.example/payments/ledger@v1.2.0: the token lacks the \"publish\" scope"
}

test_unknown_action if {
	not allowed({"action": "frobnicate"})
}

test_sumdb_needs_pull_scope if {
	allowed({"action": "sumdb", "module": "", "version": "", "scopes": ["pull"]})
	not allowed({"action": "sumdb", "module": "", "version": "", "scopes": ["publish"]})
}

# ---------------------------------------------------------------------------
# Case variants. The go command treats github.com/Sirupsen/logrus (escaped
# github.com/!sirupsen/logrus in the protocol) as a module of its own, but git
# hosts resolve it to the same repository: owners and the deny list must match
# every case variant, whichever case the request or the data file uses.
# ---------------------------------------------------------------------------

test_case_variant_of_lowercase_denylist_entry if {
	deny := {"github.com/sirupsen/logrus": {"reason": "SEC-2001", "versions": []}}
	every m in ["github.com/sirupsen/logrus", "github.com/Sirupsen/logrus", "GITHUB.COM/SIRUPSEN/LOGRUS", "github.com/Sirupsen/logrus/hooks/syslog"] {
		not allowed({"module": m, "teams": ["platform"]}) with data.modgate.denylist as deny
		r := reason({"module": m, "teams": ["platform"], "version": "v1.0.0"}) with data.modgate.denylist as deny
		r == sprintf("team platform may not pull %s@v1.0.0: github.com/sirupsen/logrus is deny-listed: SEC-2001", [m])
	}

	# A path that merely shares a prefix string is not covered.
	allowed({"module": "github.com/Sirupsen/logrusx", "teams": ["platform"]}) with data.modgate.denylist as deny
}

test_case_variant_of_lowercase_denylist_entry_all_actions if {
	deny := {"github.com/sirupsen/logrus": {"reason": "SEC-2001", "versions": []}}
	every action in ["list", "info", "mod", "zip", "latest"] {
		not allowed({"module": "github.com/Sirupsen/logrus", "action": action}) with data.modgate.denylist as deny
	}
}

test_lowercase_request_of_mixed_case_denylist_entry if {
	# denylist.yaml writes github.com/PkgErrors-Mirror; the loader folds it.
	every m in ["github.com/pkgerrors-mirror/errors", "github.com/PkgErrors-Mirror/errors", "github.com/PKGERRORS-MIRROR"] {
		not allowed({"module": m})
		contains(reason({"module": m}), "github.com/pkgerrors-mirror is deny-listed: typosquat of github.com/pkg/errors")
	}
}

test_case_variant_does_not_escape_ownership if {
	every m in ["corp.example/payments/ledger", "corp.example/Payments/ledger", "corp.example/PAYMENTS/Ledger", "Corp.Example/payments/ledger"] {
		not allowed({"teams": ["platform"], "route": "private", "module": m, "version": "v1.1.0"})
		reason({"teams": ["platform"], "route": "private", "module": m, "version": "v1.1.0"}) == sprintf("team platform may not pull %s@v1.1.0: owned by team payments", [m])

		# the owner and the teams it shares with still pull every variant
		allowed({"teams": ["payments"], "route": "private", "module": m})
		allowed({"teams": ["risk"], "route": "private", "module": m})
	}
}

test_lowercase_request_of_mixed_case_owner if {
	# owners.yaml writes corp.example/DataScience; the loader folds it.
	every m in ["corp.example/datascience/models", "corp.example/DataScience/models", "corp.example/DATASCIENCE"] {
		allowed({"teams": ["datascience"], "route": "private", "module": m})
		not allowed({"teams": ["platform"], "route": "private", "module": m, "version": "v1.0.0"})
		reason({"teams": ["platform"], "route": "private", "module": m, "version": "v1.0.0"}) == sprintf("team platform may not pull %s@v1.0.0: owned by team datascience", [m])
	}
}

test_case_variant_publish_needs_the_owner if {
	not allowed({"teams": ["platform"], "action": "publish", "route": "private", "module": "corp.example/Payments/ledger"})
	allowed({"teams": ["payments"], "action": "publish", "route": "private", "module": "corp.example/Payments/ledger"})
}
