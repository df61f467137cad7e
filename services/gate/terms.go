package gate

import "github.com/open-policy-agent/opa/v1/ast"

// The input's object keys, as shared terms (they must match Input's JSON
// tags; TestToValueMatchesJSON checks that they do).
var (
	keyOperation         = ast.StringTerm("operation")
	keyTarget            = ast.StringTerm("target")
	keyNowUnix           = ast.StringTerm("now_unix")
	keyDesired           = ast.StringTerm("desired")
	keyRequiredDatabases = ast.StringTerm("required_databases")
	keyMembers           = ast.StringTerm("members")
	keyVersion           = ast.StringTerm("version")
	keyDigest            = ast.StringTerm("digest")
	keyName              = ast.StringTerm("name")
	keyRole              = ast.StringTerm("role")
	keyStatus            = ast.StringTerm("status")
	keyTransfer          = ast.StringTerm("transfer")
	keyLastLSN           = ast.StringTerm("last_lsn")
	keyDurableLSN        = ast.StringTerm("durable_lsn")
	keyLagRecords        = ast.StringTerm("lag_records")
	keyDatabases         = ast.StringTerm("databases")
	keySoftwareVersion   = ast.StringTerm("software_version")
	keyJournalFormat     = ast.StringTerm("journal_format")
	keyProtocolVersion   = ast.StringTerm("protocol_version")
	keyCertNotAfter      = ast.StringTerm("cert_not_after_unix")
	keyEffective         = ast.StringTerm("effective")
	keyUnalignable       = ast.StringTerm("unalignable")
)

// common holds a shared term for each string a snapshot repeats on every
// evaluation: operations, roles, member, transfer and database statuses
// (DESIGN §3), database and category names. It is built once and only
// read afterwards, so concurrent evaluations may share it; OPA never
// modifies the terms of an input.
var common = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		PlannedFailover, AutomaticFailover, PromoteAsync,
		"primary", "backup", "async", "dr", "reporting",
		"in-trouble", "transition", "catching-up", "waiting", "down", "needs-rebuild",
		"active", "caught-up", "behind", "disconnected",
		"normal", "needs-catchup", "catchup-running", "needs-activation", "obsolete",
		"fhir", "audit", "system", "local",
		"users", "roles", "security",
	} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// term is the OPA string term of s: a shared one for a common string, a
// new one otherwise.
func term(s string) *ast.Term {
	if t, ok := common[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}
