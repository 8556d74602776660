# Unit tests for supplychain.rego (helpers req, allowed and reason are in
# authz_test.rego). Run them with `modgate policy test`.
package modgate.authz_test

import data.modgate.authz

adv_fixed := {"id": "GO-2024-1234", "aliases": ["CVE-2024-0001", "GHSA-xxxx-yyyy-zzzz"], "summary": "Bad things in m", "fixed": "v1.2.4"}

adv_unfixed := {"id": "GO-2024-2000", "aliases": [], "summary": "No fix", "fixed": ""}

vulns_on := {"enabled": true, "exempt": []}

affected := {"module": "example.com/m", "version": "v1.2.3", "advisories": [adv_fixed], "teams": ["payments"]}

test_vulnerabilities_off_by_default if {
	allowed(affected)
}

test_affected_version_denied_with_advisory if {
	not allowed(affected) with data.modgate.settings.vulnerabilities as vulns_on
	r := reason(affected) with data.modgate.settings.vulnerabilities as vulns_on
	r == "example.com/m@v1.2.3 is affected by GO-2024-1234 (CVE-2024-0001, GHSA-xxxx-yyyy-zzzz): fixed in v1.2.4"
}

test_unfixed_advisory_says_so if {
	f := object.union(affected, {"advisories": [adv_unfixed]})
	r := reason(f) with data.modgate.settings.vulnerabilities as vulns_on
	r == "example.com/m@v1.2.3 is affected by GO-2024-2000: no fixed version yet"
}

test_unaffected_version_and_list_allowed if {
	allowed(object.union(affected, {"version": "v1.2.4", "advisories": []})) with data.modgate.settings.vulnerabilities as vulns_on
	allowed(object.union(affected, {"action": "list", "version": "", "advisories": []})) with data.modgate.settings.vulnerabilities as vulns_on
}

test_exemptions if {
	by_advisory := {"enabled": true, "exempt": [{"advisory": "GO-2024-1234", "reason": "not reachable"}]}
	allowed(affected) with data.modgate.settings.vulnerabilities as by_advisory
	by_module := {"enabled": true, "exempt": [{"module": "example.com", "reason": "vendor patched"}]}
	allowed(affected) with data.modgate.settings.vulnerabilities as by_module
	by_team := {"enabled": true, "exempt": [{"team": "payments", "reason": "sandboxed"}]}
	allowed(affected) with data.modgate.settings.vulnerabilities as by_team
	not allowed(object.union(affected, {"teams": ["web"]})) with data.modgate.settings.vulnerabilities as by_team

	# Every field set must match: this exempts the advisory for team web only.
	combined := {"enabled": true, "exempt": [{"advisory": "GO-2024-1234", "team": "web", "reason": "accepted risk"}]}
	not allowed(affected) with data.modgate.settings.vulnerabilities as combined
	allowed(object.union(affected, {"teams": ["web"]})) with data.modgate.settings.vulnerabilities as combined

	# Exempting one advisory leaves the others in force.
	two := object.union(affected, {"advisories": [adv_fixed, adv_unfixed]})
	not allowed(two) with data.modgate.settings.vulnerabilities as by_advisory
}

licenses_on := {"enabled": true, "deny": {"web": ["AGPL-3.0"], "*": ["SSPL-1.0"]}}

test_licenses_off_by_default if {
	allowed({"teams": ["web"], "licenses": ["AGPL-3.0"]})
}

test_license_denied_per_team if {
	f := {"teams": ["web"], "licenses": ["AGPL-3.0", "MIT"]}
	not allowed(f) with data.modgate.settings.licenses as licenses_on
	r := reason(f) with data.modgate.settings.licenses as licenses_on
	r == "team web may not pull github.com/pkg/errors@v0.9.1: it is licensed under AGPL-3.0, which team web may not use"
	allowed({"teams": ["payments"], "licenses": ["AGPL-3.0"]}) with data.modgate.settings.licenses as licenses_on
	allowed({"teams": ["web"], "licenses": ["MIT"]}) with data.modgate.settings.licenses as licenses_on
}

test_license_denied_for_everyone if {
	r := reason({"teams": ["payments"], "licenses": ["SSPL-1.0"]}) with data.modgate.settings.licenses as licenses_on
	r == "team payments may not pull github.com/pkg/errors@v0.9.1: it is licensed under SSPL-1.0, which no team may use"
}

test_vulndb_is_public if {
	allowed({"action": "vulndb", "module": "", "version": ""})
	not allowed({"action": "vulndb", "module": "", "version": "", "method": "anonymous", "subject": ""}) with data.modgate.settings.anonymous as "deny"
	allowed({"action": "vulndb", "module": "", "version": "", "scopes": ["pull"]})
	not allowed({"action": "vulndb", "module": "", "version": "", "scopes": ["publish"]})
}
