# The failover gate (DESIGN §5 "Policy gate"). Input: the tier snapshot, the
# operation and its target (see services/gate Input). A non-empty deny
# refuses the operation; warn is reported with the decision.
#
# These rules can only refuse: the data-safety rules of DESIGN §3 live in the
# failover core (Go) and no policy can loosen them.
#
# Written for evaluation cost as well (issue #10, gate p99 < 1 ms): each
# rule binds target and primary once (every reference to a rule is a
# lookup), conditions come first and a message is built by a function only
# when its rule fires (OPA sizes a rule's bindings by its expressions).
package tandem.gate

import rego.v1

target := m if {
	some m in input.members
	m.name == input.target
}

primary := m if {
	some m in input.members
	m.role == "primary"
	m.name != input.target
}

# The required databases the target does not have.
missing_databases := {db | some db in input.required_databases} - {d.name | some d in target.databases}

deny contains msg if {
	not target
	msg := sprintf("target %s: not a member of the tier snapshot", [input.target])
}

# A planned failover hands over only to a backup whose journal transfer is active.
deny contains msg if {
	input.operation == "planned_failover"
	t := target
	t.transfer != "active"
	msg := not_active_msg(t)
}

not_active_msg(t) := sprintf("target %s: journal transfer is %s, not active: a planned failover needs an active backup", [t.name, t.transfer])

deny contains msg if {
	some db in missing_databases
	msg := sprintf("databases: member %s is missing database %s", [target.name, db])
}

deny contains msg if {
	some d in target.databases
	d.status != "normal"
	msg := database_msg(target, d)
}

database_msg(t, d) := sprintf("databases: member %s has database %s in state %s, not normal", [t.name, d.name, d.status])

# Users, roles and security must be what the tier wants: a failover that
# locks clinicians out, or lets a disabled user in, is an incident.
deny contains msg if {
	t := target
	some c in ["users", "roles", "security"]
	object.get(t.effective, c, "") != input.desired[c].digest
	not t.unalignable[c]
	msg := misaligned_msg(t, c)
}

misaligned_msg(t, c) := sprintf("%s: member %s is not aligned with the desired state (version %d): effective %s, desired %s; run tandem ctl config apply --member %s",
	[c, t.name, input.desired[c].version, short(object.get(t.effective, c, "")), short(input.desired[c].digest), t.name])

deny contains msg if {
	some c, reason in target.unalignable
	msg := sprintf("%s: member %s cannot apply the desired state: %s", [c, target.name, reason])
}

# Different software versions are fine (rolling upgrades); formats the
# target cannot read are not.
deny contains msg if {
	t := target
	p := primary
	t.journal_format < p.journal_format
	msg := journal_format_msg(t, p)
}

journal_format_msg(t, p) := sprintf("formats: member %s reads journal format %d but primary %s writes %d", [t.name, t.journal_format, p.name, p.journal_format])

deny contains msg if {
	t := target
	p := primary
	t.protocol_version < p.protocol_version
	msg := protocol_msg(t, p)
}

protocol_msg(t, p) := sprintf("formats: member %s speaks protocol %d but primary %s speaks %d", [t.name, t.protocol_version, p.name, p.protocol_version])

deny contains msg if {
	t := target
	t.cert_not_after_unix > 0
	t.cert_not_after_unix <= input.now_unix
	msg := sprintf("certificates: member %s's certificate has expired", [t.name])
}

warn contains msg if {
	some m in input.members
	m.cert_not_after_unix > input.now_unix
	days := (m.cert_not_after_unix - input.now_unix) / 86400
	days < 14
	msg := sprintf("certificates: member %s's certificate expires in %d days", [m.name, floor(days)])
}

warn contains msg if {
	t := target
	p := primary
	t.software_version != p.software_version
	msg := versions_msg(t, p)
}

versions_msg(t, p) := sprintf("versions: member %s runs %s, primary %s runs %s (compatible formats: rolling upgrade)", [t.name, t.software_version, p.name, p.software_version])

warn contains msg if {
	input.operation == "promote_async"
	t := target
	t.lag_records > 0
	msg := sprintf("target %s: %d journal records behind: promoting it loses them unless they are recovered", [t.name, t.lag_records])
}

short(s) := substring(s, 0, 12) if count(s) > 12

short(s) := s if count(s) <= 12
