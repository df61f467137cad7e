// Package tiertest builds member statuses for workflow tests: a tier in a
// given shape, as the TierStatus activity would report it. Test code only.
package tiertest

import "github.com/tandemhealth/tandem/workflows"

// Member is one failover member in status st ("primary", "backup",
// "transition", "" for unreachable) at epoch, with transfer status tr.
func Member(name, st string, epoch uint64, tr string) workflows.MemberStatus {
	s := workflows.MemberStatus{Member: name, Role: workflows.RoleFailover, Status: st, Epoch: epoch,
		Databases: []workflows.DatabaseStatus{{Name: "fhir"}, {Name: "audit"}, {Name: "system"}}}
	if st == "" {
		s.Error = "dial tcp: connection refused"
	}
	if tr != "" {
		s.Transfer = &workflows.TransferStatus{Status: tr}
	}
	return s
}

// Healthy is a: primary, b: backup, both active, in epoch.
func Healthy(epoch uint64) []workflows.MemberStatus {
	return []workflows.MemberStatus{Member("a", "primary", epoch, "active"), Member("b", "backup", epoch, "active")}
}

// Switched is b: primary, a: backup in epoch.
func Switched(epoch uint64) []workflows.MemberStatus {
	return []workflows.MemberStatus{Member("a", "backup", epoch, "active"), Member("b", "primary", epoch, "active")}
}

// Hashes reports equal hashes for every database on members.
func Hashes(members ...string) []workflows.HashReport {
	var out []workflows.HashReport
	for _, m := range members {
		for _, db := range []string{"fhir", "audit", "system"} {
			out = append(out, workflows.HashReport{Member: m, Database: db, SHA256: "sha-" + db, AppliedLSN: 7})
		}
	}
	return out
}

// Endpoints reports every endpoint of a two-member tier reachable.
func Endpoints() []workflows.EndpointCheck {
	var out []workflows.EndpointCheck
	for _, n := range []string{"a (admin API)", "a (mirror)", "agent-a", "b (admin API)", "b (mirror)", "agent-b", "arbiter"} {
		out = append(out, workflows.EndpointCheck{Name: n, Address: "127.0.0.1:1", OK: true})
	}
	return out
}
