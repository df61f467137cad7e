# The failover gate (DESIGN §5 "Policy gate"). Input: the tier snapshot, the
# operation and its target (see services/gate Input). A non-empty deny
# refuses the operation; warn is reported with the decision.
#
# These rules can only refuse: the data-safety rules of DESIGN §3 live in the
# failover core (Go) and no policy can loosen them.
package tandem.gate

import rego.v1

categories := ["users", "roles", "security"]

target := m if {
	some m in input.members
	m.name == input.target
}

primary := m if {
	some m in input.members
	m.role == "primary"
	m.name != input.target
}

deny contains msg if {
	not target
	msg := sprintf("target %s: not a member of the tier snapshot", [input.target])
}

# A planned failover hands over only to a backup whose journal transfer is active.
deny contains msg if {
	input.operation == "planned_failover"
	target.transfer != "active"
	msg := sprintf("target %s: journal transfer is %s, not active: a planned failover needs an active backup", [target.name, target.transfer])
}

deny contains msg if {
	some db in input.required_databases
	not has_database(target, db)
	msg := sprintf("databases: member %s is missing database %s", [target.name, db])
}

deny contains msg if {
	some d in target.databases
	d.status != "normal"
	msg := sprintf("databases: member %s has database %s in state %s, not normal", [target.name, d.name, d.status])
}

# Users, roles and security must be what the tier wants: a failover that
# locks clinicians out, or lets a disabled user in, is an incident.
deny contains msg if {
	some c in categories
	object.get(target.effective, c, "") != input.desired[c].digest
	not target.unalignable[c]
	msg := sprintf("%s: member %s is not aligned with the desired state (version %d): effective %s, desired %s; run tandem ctl config apply --member %s",
		[c, target.name, input.desired[c].version, short(object.get(target.effective, c, "")), short(input.desired[c].digest), target.name])
}

deny contains msg if {
	some c, reason in target.unalignable
	msg := sprintf("%s: member %s cannot apply the desired state: %s", [c, target.name, reason])
}

# Different software versions are fine (rolling upgrades); formats the
# target cannot read are not.
deny contains msg if {
	target.journal_format < primary.journal_format
	msg := sprintf("formats: member %s reads journal format %d but primary %s writes %d", [target.name, target.journal_format, primary.name, primary.journal_format])
}

deny contains msg if {
	target.protocol_version < primary.protocol_version
	msg := sprintf("formats: member %s speaks protocol %d but primary %s speaks %d", [target.name, target.protocol_version, primary.name, primary.protocol_version])
}

deny contains msg if {
	target.cert_not_after_unix > 0
	target.cert_not_after_unix <= input.now_unix
	msg := sprintf("certificates: member %s's certificate has expired", [target.name])
}

warn contains msg if {
	some m in input.members
	m.cert_not_after_unix > input.now_unix
	days := (m.cert_not_after_unix - input.now_unix) / 86400
	days < 14
	msg := sprintf("certificates: member %s's certificate expires in %d days", [m.name, floor(days)])
}

warn contains msg if {
	target.software_version != primary.software_version
	msg := sprintf("versions: member %s runs %s, primary %s runs %s (compatible formats: rolling upgrade)", [target.name, target.software_version, primary.name, primary.software_version])
}

warn contains msg if {
	input.operation == "promote_async"
	target.lag_records > 0
	msg := sprintf("target %s: %d journal records behind: promoting it loses them unless they are recovered", [target.name, target.lag_records])
}

has_database(m, db) if {
	some d in m.databases
	d.name == db
}

short(s) := substring(s, 0, 12) if count(s) > 12

short(s) := s if count(s) <= 12
