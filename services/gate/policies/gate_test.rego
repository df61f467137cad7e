# Unit tests of gate.rego: every deny and warn rule, run from go test
# (services/gate TestRegoUnitTests) through OPA's tester.
package tandem.gate_test

import rego.v1

import data.tandem.gate

digests := {"users": "u1", "roles": "r1", "security": "s1"}

dbs := [{"name": "fhir", "status": "normal"}, {"name": "audit", "status": "normal"}, {"name": "system", "status": "normal"}]

member(name, role, transfer) := {
	"name": name, "role": role, "status": role, "transfer": transfer,
	"databases": dbs, "software_version": "1.0", "journal_format": 1, "protocol_version": 1,
	"cert_not_after_unix": 100 * 86400, "effective": digests, "lag_records": 0,
}

snapshot(op, a, b) := {
	"operation": op, "target": "b", "now_unix": 0,
	"desired": {"users": {"version": 2, "digest": "u1"}, "roles": {"version": 1, "digest": "r1"}, "security": {"version": 1, "digest": "s1"}},
	"required_databases": ["fhir", "audit", "system"],
	"members": [a, b],
}

ok_input := snapshot("planned_failover", member("a", "primary", "active"), member("b", "backup", "active"))

test_aligned_active_backup_allowed if {
	count(gate.deny) == 0 with input as ok_input
	count(gate.warn) == 0 with input as ok_input
}

test_unknown_target_denied if {
	gate.deny["target c: not a member of the tier snapshot"] with input as object.union(ok_input, {"target": "c"})
}

test_planned_failover_needs_active_backup if {
	b := object.union(member("b", "backup", "behind"), {})
	inp := snapshot("planned_failover", member("a", "primary", "active"), b)
	gate.deny["target b: journal transfer is behind, not active: a planned failover needs an active backup"] with input as inp
}

test_automatic_failover_does_not_check_transfer if {
	inp := snapshot("automatic_failover", member("a", "primary", "disconnected"), member("b", "backup", "disconnected"))
	count(gate.deny) == 0 with input as inp
}

test_missing_database_denied if {
	b := object.union(member("b", "backup", "active"), {"databases": [{"name": "fhir", "status": "normal"}, {"name": "system", "status": "normal"}]})
	inp := snapshot("planned_failover", member("a", "primary", "active"), b)
	gate.deny["databases: member b is missing database audit"] with input as inp
}

test_database_not_normal_denied if {
	b := object.union(member("b", "backup", "active"), {"databases": [{"name": "fhir", "status": "needs-catchup"}, {"name": "audit", "status": "normal"}, {"name": "system", "status": "normal"}]})
	inp := snapshot("planned_failover", member("a", "primary", "active"), b)
	gate.deny["databases: member b has database fhir in state needs-catchup, not normal"] with input as inp
}

test_users_not_aligned_denied_naming_category_and_member if {
	b := object.union(member("b", "backup", "active"), {"effective": {"users": "u0", "roles": "r1", "security": "s1"}})
	inp := snapshot("planned_failover", member("a", "primary", "active"), b)
	msgs := gate.deny with input as inp
	count(msgs) == 1
	some m in msgs
	startswith(m, "users: member b is not aligned with the desired state (version 2)")
}

test_every_category_checked if {
	b := object.union(object.remove(member("b", "backup", "active"), ["effective"]), {"effective": {}})
	inp := snapshot("planned_failover", member("a", "primary", "active"), b)
	msgs := gate.deny with input as inp
	count(msgs) == 3
}

test_unalignable_category_denied_once if {
	b := object.union(member("b", "backup", "disconnected"), {"effective": {"users": "u1", "roles": "r1", "security": "s0"}, "unalignable": {"security": "bad CA"}})
	inp := snapshot("automatic_failover", member("a", "primary", "disconnected"), b)
	msgs := gate.deny with input as inp
	msgs == {"security: member b cannot apply the desired state: bad CA"}
}

test_older_journal_format_denied if {
	a := object.union(member("a", "primary", "active"), {"journal_format": 2})
	inp := snapshot("planned_failover", a, member("b", "backup", "active"))
	gate.deny["formats: member b reads journal format 1 but primary a writes 2"] with input as inp
}

test_older_protocol_denied if {
	a := object.union(member("a", "primary", "active"), {"protocol_version": 3})
	inp := snapshot("planned_failover", a, member("b", "backup", "active"))
	gate.deny["formats: member b speaks protocol 1 but primary a speaks 3"] with input as inp
}

test_newer_target_formats_allowed_with_version_warning if {
	b := object.union(member("b", "backup", "active"), {"journal_format": 2, "protocol_version": 2, "software_version": "1.1"})
	inp := snapshot("planned_failover", member("a", "primary", "active"), b)
	count(gate.deny) == 0 with input as inp
	gate.warn["versions: member b runs 1.1, primary a runs 1.0 (compatible formats: rolling upgrade)"] with input as inp
}

test_expired_certificate_denied if {
	b := object.union(member("b", "backup", "active"), {"cert_not_after_unix": 10})
	inp := object.union(snapshot("planned_failover", member("a", "primary", "active"), b), {"now_unix": 20})
	gate.deny["certificates: member b's certificate has expired"] with input as inp
}

test_certificate_expiring_within_14_days_warns if {
	a := object.union(member("a", "primary", "active"), {"cert_not_after_unix": 3 * 86400})
	inp := snapshot("planned_failover", a, member("b", "backup", "active"))
	gate.warn["certificates: member a's certificate expires in 3 days"] with input as inp
	count(gate.deny) == 0 with input as inp
}

test_certificate_15_days_no_warning if {
	a := object.union(member("a", "primary", "active"), {"cert_not_after_unix": 15 * 86400})
	inp := snapshot("planned_failover", a, member("b", "backup", "active"))
	count(gate.warn) == 0 with input as inp
}

test_promote_async_lag_warns if {
	c := object.union(member("b", "dr", "behind"), {"lag_records": 7})
	inp := snapshot("promote_async", member("a", "primary", "active"), c)
	gate.warn["target b: 7 journal records behind: promoting it loses them unless they are recovered"] with input as inp
	count(gate.deny) == 0 with input as inp
}
