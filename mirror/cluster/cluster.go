// Package cluster describes a Tandem deployment: its tiers, each tier's
// members, the arbiter, the agents, the QoS timeout and the TLS material,
// as read from one YAML cluster file that every process starts from.
//
// Loading never guesses: unknown keys, missing fields and impossible
// topologies fail with the field named, so a bad file stops a process at
// start, not at its first failover.
package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/transport"
)

// Member roles.
const (
	RoleFailover  = "failover"
	RoleDR        = "dr"
	RoleReporting = "reporting"
)

// DefaultQoS is the time after which a missing acknowledgement counts as a
// lost partner (DESIGN §3).
const DefaultQoS = 2 * time.Second

// MaxAsyncMembers per tier (DESIGN §3 "Members").
const MaxAsyncMembers = 14

// File is a parsed cluster file.
type File struct {
	// QoS is the failover timeout; 2s when empty.
	QoS Duration `yaml:"qos"`
	// TLS names the CA and certificates; in development a generated CA.
	TLS TLS `yaml:"tls"`
	// Arbiter decides automatic failovers for every tier.
	Arbiter Arbiter `yaml:"arbiter"`
	// Tiers are the mirrors.
	Tiers []Tier `yaml:"tiers"`
	// Access names the keys that sign bearer tokens for /fhir and the
	// admin API. Without keys, only the operator's client certificate is
	// accepted there.
	Access Access `yaml:"access"`
	// Temporal is where the workflow worker, `tandem ctl workflow` and the
	// gateway's monitor reach Temporal; empty: the embedded server on
	// 127.0.0.1:7233 (`tandem temporal`). Their flags override it.
	Temporal Temporal `yaml:"temporal"`
	// Journal sets the members' journal segments and purge (DESIGN §3
	// "Journal purge").
	Journal Journal `yaml:"journal"`
}

// Temporal names a Temporal frontend and how to authenticate to it: TLS
// (a CA, and a client certificate for mutual TLS) and/or an API key.
type Temporal struct {
	Address   string      `yaml:"address"`   // host:port
	Namespace string      `yaml:"namespace"` // "default" when empty
	TLS       TemporalTLS `yaml:"tls"`
	// APIKeyFile holds an API key sent as a bearer token (Temporal Cloud);
	// it needs TLS.
	APIKeyFile string `yaml:"api_key_file"`
}

// TemporalTLS: with Enabled, the frontend's certificate is checked against
// CAFile (the system roots when empty) under ServerName (the address's host
// when empty); CertFile and KeyFile, together, add a client certificate.
type TemporalTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Validate reports every problem of a temporal section, fields named
// under prefix.
func (t Temporal) Validate(prefix string) error {
	var errs []error
	if t.Address != "" {
		if _, p, err := net.SplitHostPort(t.Address); err != nil || p == "" {
			errs = append(errs, fmt.Errorf("field %s.address: %q must be host:port", prefix, t.Address))
		}
	}
	if (t.TLS.CertFile == "") != (t.TLS.KeyFile == "") {
		errs = append(errs, fmt.Errorf("field %s.tls: cert_file and key_file go together", prefix))
	}
	if !t.TLS.Enabled && (t.TLS.CAFile != "" || t.TLS.CertFile != "" || t.TLS.ServerName != "") {
		errs = append(errs, fmt.Errorf("field %s.tls.enabled: must be true when ca_file, cert_file or server_name is set", prefix))
	}
	if t.APIKeyFile != "" && !t.TLS.Enabled {
		errs = append(errs, fmt.Errorf("field %s.api_key_file: an API key needs tls.enabled (it must not cross the network in clear)", prefix))
	}
	return errors.Join(errs...)
}

// Journal configures every member's journal: segment size and purge.
type Journal struct {
	// SegmentSize is the size at which a segment is closed and a new one
	// started, in bytes (purge removes whole segments); 64 MiB when empty.
	SegmentSize int64 `yaml:"segment_size"`
	// AsyncRetention: an async disconnected from the primary for longer
	// stops holding the journal; once the primary purges what it needed,
	// it needs a rebuild. 14 days (336h) when empty.
	AsyncRetention Duration `yaml:"async_retention"`
	// MaxBytes caps, in bytes, the journal the primary keeps for asyncs: an
	// async that needs more than this behind the primary's last record
	// stops holding it. 0 (empty): no cap. The failover pair always holds.
	MaxBytes int64 `yaml:"max_bytes"`
	// PurgeInterval is how often every member checks what it may purge
	// (flushing its store first); 1m when empty.
	PurgeInterval Duration `yaml:"purge_interval"`
}

// Journal defaults.
const (
	DefaultSegmentSize    = 64 << 20
	DefaultAsyncRetention = 14 * 24 * time.Hour
	DefaultPurgeInterval  = time.Minute
)

// Access configures bearer tokens (package fhir/access).
type Access struct {
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Leeway is the tolerated clock skew on exp and nbf; 30s when empty.
	Leeway Duration `yaml:"leeway"`
	// Keys are every trusted signing key; several during a rotation.
	Keys []AccessKey `yaml:"keys"`
	// SigningKey is the kid of the key members sign login tokens with
	// (POST /auth/token): an HS256 secret or an RS256/ES256 private key.
	// Empty: members answer /auth/token with 501.
	SigningKey string `yaml:"signing_key"`
	// TokenTTL is the lifetime of a login token; 15m when empty, at most
	// 24h (and never more than the effective security settings' session
	// lifetime).
	TokenTTL Duration `yaml:"token_ttl"`
	// LockoutAfter failed logins of one user name (or API client) within
	// LockoutFor refuse that name for LockoutFor, on each member; 5 and
	// 15m when empty.
	LockoutAfter int      `yaml:"lockout_after"`
	LockoutFor   Duration `yaml:"lockout_for"`
}

// Login defaults (Access).
const (
	DefaultTokenTTL     = 15 * time.Minute
	DefaultLockoutAfter = 5
	DefaultLockoutFor   = 15 * time.Minute
)

// AccessKey is one signing key file: for HS256 the secret, for RS256 and
// ES256 a PEM key (a private key also lets "tandem token" sign).
type AccessKey struct {
	KID  string `yaml:"kid"`
	Alg  string `yaml:"alg"`
	Path string `yaml:"path"`
}

// Validate reports every problem of an access section, fields named under
// prefix (e.g. "access").
func (a Access) Validate(prefix string) error {
	var errs []error
	kids := map[string]bool{}
	for i, k := range a.Keys {
		kp := fmt.Sprintf("%s.keys[%d]", prefix, i)
		switch {
		case k.KID == "":
			errs = append(errs, fmt.Errorf("field %s.kid: is required", kp))
		case kids[k.KID]:
			errs = append(errs, fmt.Errorf("field %s.kid: %q is listed twice", kp, k.KID))
		}
		kids[k.KID] = true
		switch k.Alg {
		case "HS256", "RS256", "ES256":
		default:
			errs = append(errs, fmt.Errorf("field %s.alg: %q must be HS256, RS256 or ES256", kp, k.Alg))
		}
		if k.Path == "" {
			errs = append(errs, fmt.Errorf("field %s.path: is required", kp))
		}
	}
	if l := time.Duration(a.Leeway); l < 0 || l > 5*time.Minute {
		errs = append(errs, fmt.Errorf("field %s.leeway: %s must be between 0 and 5m", prefix, l))
	}
	if a.SigningKey != "" && !kids[a.SigningKey] {
		errs = append(errs, fmt.Errorf("field %s.signing_key: %q is not the kid of a key in %s.keys", prefix, a.SigningKey, prefix))
	}
	if d := time.Duration(a.TokenTTL); d != 0 && (d < time.Minute || d > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("field %s.token_ttl: %s must be between 1m and 24h", prefix, d))
	}
	if a.LockoutAfter < 0 || a.LockoutAfter > 1000 {
		errs = append(errs, fmt.Errorf("field %s.lockout_after: %d must be between 1 and 1000 (0: the default, %d)", prefix, a.LockoutAfter, DefaultLockoutAfter))
	}
	if d := time.Duration(a.LockoutFor); d != 0 && (d < time.Second || d > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("field %s.lockout_for: %s must be between 1s and 24h", prefix, d))
	}
	return errors.Join(errs...)
}

// TLS configures mutual TLS between every process of the cluster. Either
// DevCADir (development: a CA generated on first start, certificates issued
// per process) or CAFile with per-process CertFile/KeyFile (production).
type TLS struct {
	DevCADir string `yaml:"dev_ca_dir"`
	CAFile   string `yaml:"ca_file"`
	// CertDir holds <identity>.pem and <identity>-key.pem for every process.
	CertDir string `yaml:"cert_dir"`
}

// Arbiter is the arbiter process.
type Arbiter struct {
	Address string `yaml:"address"`
	DataDir string `yaml:"data_dir"`
	// HTTP, when set, serves /healthz and /metrics (TLS with the arbiter's
	// certificate, client certificates optional).
	HTTP string `yaml:"http"`
}

// Tier is one mirror: exactly two failover members and up to 14 asyncs.
type Tier struct {
	Name    string   `yaml:"name"`
	Members []Member `yaml:"members"`
	// Links override the address a member dials to reach another process
	// ("a->b", "a->arbiter", "b->agent-a"), so a test can route any directed
	// link through a fault proxy.
	Links map[string]string `yaml:"links"`
}

// Member is one data node of a tier, with the agent on its host.
type Member struct {
	Name    string `yaml:"name"`
	Role    string `yaml:"role"`
	Address string `yaml:"address"` // mirror transport (mTLS)
	HTTP    string `yaml:"http"`    // status, health, admin API, FHIR
	DataDir string `yaml:"data_dir"`
	Agent   Agent  `yaml:"agent"`
}

// Agent runs beside a member on its host.
type Agent struct {
	Address string `yaml:"address"`
	// HTTP, when set, serves /healthz and /metrics (TLS with the agent's
	// certificate, client certificates optional).
	HTTP string `yaml:"http"`
}

// Duration is a time.Duration written as "2s", "500ms".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 2s or 500ms", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Load reads, defaults and validates a cluster file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster file: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cluster file %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes, defaults and validates cluster-file bytes.
func Parse(data []byte) (*File, error) {
	var f File
	if err := DecodeStrict(data, &f); err != nil {
		return nil, err
	}
	if f.QoS == 0 {
		f.QoS = Duration(DefaultQoS)
	}
	if f.Journal.SegmentSize == 0 {
		f.Journal.SegmentSize = DefaultSegmentSize
	}
	if f.Journal.AsyncRetention == 0 {
		f.Journal.AsyncRetention = Duration(DefaultAsyncRetention)
	}
	if f.Journal.PurgeInterval == 0 {
		f.Journal.PurgeInterval = Duration(DefaultPurgeInterval)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate reports every problem, each with its field path.
func (f *File) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...)))
	}
	addrs := map[string]string{} // address -> field that uses it
	addr := func(field, a string, required bool) {
		if a == "" {
			if required {
				bad(field, "is required (host:port)")
			}
			return
		}
		if _, p, err := net.SplitHostPort(a); err != nil || p == "" {
			bad(field, "%q must be host:port", a)
			return
		}
		if other, dup := addrs[a]; dup {
			bad(field, "%s is already used by %s", a, other)
		}
		addrs[a] = field
	}
	if time.Duration(f.QoS) < 100*time.Millisecond || time.Duration(f.QoS) > time.Minute {
		bad("qos", "%s must be between 100ms and 1m", time.Duration(f.QoS))
	}
	switch {
	case f.TLS.DevCADir != "" && f.TLS.CAFile != "":
		bad("tls", "set dev_ca_dir (development) or ca_file + cert_dir (production), not both")
	case f.TLS.DevCADir == "" && f.TLS.CAFile == "":
		bad("tls", "set dev_ca_dir (development) or ca_file + cert_dir (production)")
	case f.TLS.CAFile != "" && f.TLS.CertDir == "":
		bad("tls.cert_dir", "is required with tls.ca_file")
	}
	addr("arbiter.address", f.Arbiter.Address, true)
	addr("arbiter.http", f.Arbiter.HTTP, false)
	if f.Arbiter.DataDir == "" {
		bad("arbiter.data_dir", "is required")
	}
	if len(f.Tiers) == 0 {
		bad("tiers", "at least one tier is required")
	}
	tierNames := map[string]bool{}
	memberTier := map[string]string{} // member names are identities in certificates: unique in the file
	for i, t := range f.Tiers {
		tp := fmt.Sprintf("tiers[%d]", i)
		if !namePattern.MatchString(t.Name) {
			bad(tp+".name", "%q must be 1-63 characters of a-z, 0-9, '-' or '_'", t.Name)
		} else if tierNames[t.Name] {
			bad(tp+".name", "tier %q is defined twice", t.Name)
		}
		tierNames[t.Name] = true
		names := map[string]bool{"arbiter": true}
		failover, async := 0, 0
		for j, m := range t.Members {
			mp := fmt.Sprintf("%s.members[%d]", tp, j)
			if !namePattern.MatchString(m.Name) || m.Name == "arbiter" || m.Name == "operator" || m.Name == "gateway" {
				bad(mp+".name", "%q must be 1-63 characters of a-z, 0-9, '-' or '_' (not arbiter, operator or gateway)", m.Name)
			} else if names[m.Name] {
				bad(mp+".name", "member %q is defined twice in tier %q", m.Name, t.Name)
			} else if other, dup := memberTier[m.Name]; dup {
				bad(mp+".name", "member %q is also in tier %q; member names identify certificates and must be unique in the file", m.Name, other)
			}
			names[m.Name] = true
			memberTier[m.Name] = t.Name
			switch m.Role {
			case RoleFailover:
				failover++
			case RoleDR, RoleReporting:
				async++
			default:
				bad(mp+".role", "%q must be failover, dr or reporting", m.Role)
			}
			addr(mp+".address", m.Address, true)
			addr(mp+".http", m.HTTP, true)
			addr(mp+".agent.address", m.Agent.Address, true)
			addr(mp+".agent.http", m.Agent.HTTP, false)
			if m.DataDir == "" {
				bad(mp+".data_dir", "is required")
			}
		}
		if failover != 2 {
			bad(tp+".members", "a tier needs exactly 2 failover members, tier %q has %d", t.Name, failover)
		}
		if async > MaxAsyncMembers {
			bad(tp+".members", "at most %d async members, tier %q has %d", MaxAsyncMembers, t.Name, async)
		}
		for link, a := range t.Links {
			lp := fmt.Sprintf("%s.links[%q]", tp, link)
			from, to, ok := splitLink(link)
			if !ok {
				bad(lp, "must be written from->to, e.g. a->b or a->arbiter")
				continue
			}
			if !names[from] || from == "arbiter" {
				bad(lp, "unknown sender %q", from)
			}
			if !t.knows(to) {
				bad(lp, "unknown target %q", to)
			}
			if _, p, err := net.SplitHostPort(a); err != nil || p == "" {
				bad(lp, "%q must be host:port", a)
			}
		}
	}
	if err := f.Access.Validate("access"); err != nil {
		errs = append(errs, err)
	}
	if err := f.Temporal.Validate("temporal"); err != nil {
		errs = append(errs, err)
	}
	j := f.Journal
	if j.SegmentSize < 1<<20 || j.SegmentSize > 1<<30 {
		bad("journal.segment_size", "%d must be between 1 MiB (1048576) and 1 GiB", j.SegmentSize)
	}
	if d := time.Duration(j.AsyncRetention); d < time.Second || d > 365*24*time.Hour {
		bad("journal.async_retention", "%s must be between 1s and 8760h (a year)", d)
	}
	if j.MaxBytes < 0 {
		bad("journal.max_bytes", "%d must not be negative (0: no cap)", j.MaxBytes)
	} else if j.MaxBytes > 0 && j.MaxBytes < 2*j.SegmentSize {
		bad("journal.max_bytes", "%d must be at least two segments (2 × journal.segment_size = %d), or 0 for no cap", j.MaxBytes, 2*j.SegmentSize)
	}
	if d := time.Duration(j.PurgeInterval); d < 100*time.Millisecond || d > time.Hour {
		bad("journal.purge_interval", "%s must be between 100ms and 1h", d)
	}
	return errors.Join(errs...)
}

// knows reports whether a link target names a process of the tier: a
// member, "arbiter" or "agent-<member>".
func (t Tier) knows(to string) bool {
	if to == "arbiter" {
		return true
	}
	for _, m := range t.Members {
		if to == m.Name || to == "agent-"+m.Name {
			return true
		}
	}
	return false
}

func splitLink(s string) (string, string, bool) {
	i := bytes.Index([]byte(s), []byte("->"))
	if i <= 0 || i+2 >= len(s) {
		return "", "", false
	}
	return s[:i], s[i+2:], true
}

// Tier returns the named tier.
func (f *File) Tier(name string) (Tier, bool) {
	for _, t := range f.Tiers {
		if t.Name == name {
			return t, true
		}
	}
	return Tier{}, false
}

// Member returns the named member of the tier.
func (t Tier) Member(name string) (Member, bool) {
	for _, m := range t.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// DialAddress is the address from uses to reach to ("b", "arbiter",
// "agent-b"): the link override if the file has one, else the target's own.
func (f *File) DialAddress(tier, from, to string) (string, error) {
	t, ok := f.Tier(tier)
	if !ok {
		return "", fmt.Errorf("cluster: no tier %q", tier)
	}
	if a, ok := t.Links[from+"->"+to]; ok {
		return a, nil
	}
	if to == "arbiter" {
		return f.Arbiter.Address, nil
	}
	for _, m := range t.Members {
		if to == m.Name {
			return m.Address, nil
		}
		if to == "agent-"+m.Name {
			return m.Agent.Address, nil
		}
	}
	return "", fmt.Errorf("cluster: tier %q has no process %q", tier, to)
}

// DecodeStrict decodes YAML into v, refusing unknown keys, and names the
// field of every type error ("line 5 (field journal.segment_size): ...").
// Tandem's configuration files all load through it.
func DecodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return errors.New(nameFields(data, err))
	}
	return nil
}

// nameFields rewrites yaml's "line N: ..." messages to name the field found
// on that line.
func nameFields(data []byte, err error) string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err.Error()
	}
	fields := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				fields[k.Line] = p
				walk(v, p)
			}
		}
	}
	walk(&root, "")
	lineRE := regexp.MustCompile(`line (\d+):`)
	return lineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		line, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if f, ok := fields[line]; ok {
			return fmt.Sprintf("line %d (field %s):", line, f)
		}
		return m
	})
}

// TickInterval is the real time of one failover-core tick in every Tandem
// process; the cores count every timeout in ticks.
const TickInterval = 50 * time.Millisecond

// QoSTicks is the file's QoS timeout in core ticks.
func (f *File) QoSTicks() failover.Tick {
	return max(failover.Tick(time.Duration(f.QoS)/TickInterval), 2)
}

// Credentials returns the mutual-TLS credentials of identity (a member
// name, "arbiter", "agent-<member>", "operator"): issued by the development
// CA when the file names one, else read from cert_dir/<identity>.pem and
// cert_dir/<identity>-key.pem.
func (f *File) Credentials(identity string) (transport.Credentials, error) {
	if f.TLS.DevCADir != "" {
		ca, err := transport.EnsureDevCA(f.TLS.DevCADir)
		if err != nil {
			return transport.Credentials{}, fmt.Errorf("field tls.dev_ca_dir: %w", err)
		}
		cert, err := ca.Issue(identity)
		if err != nil {
			return transport.Credentials{}, err
		}
		return transport.Credentials{Cert: cert, Roots: ca.Pool()}, nil
	}
	return transport.LoadCredentials(f.TLS.CAFile,
		filepath.Join(f.TLS.CertDir, identity+".pem"), filepath.Join(f.TLS.CertDir, identity+"-key.pem"))
}

// MutationsEnv names the environment variable that switches on the
// failover core's deliberate bugs (TEST ONLY: the real-process fault suite
// proves its checkers catch each one). Processes log it loudly at start.
const MutationsEnv = "TANDEM_TEST_MUTATIONS"

// MutationsFromEnv returns the switches named by MutationsEnv (all off when
// it is unset) and the raw value.
func MutationsFromEnv() (*failover.Mutations, string, error) {
	v := os.Getenv(MutationsEnv)
	m, err := failover.ParseMutations(v)
	if err != nil {
		return nil, v, fmt.Errorf("%s: %w", MutationsEnv, err)
	}
	return m, v, nil
}
