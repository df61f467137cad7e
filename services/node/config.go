package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// Config is a data node's configuration file (YAML).
type Config struct {
	// Tier is the mirror (failover pair plus asyncs) this node belongs to.
	Tier string `yaml:"tier"`
	// Member is this node's name, unique in the tier.
	Member string `yaml:"member"`
	// Role is failover, dr or reporting.
	Role string `yaml:"role"`
	// Listen is the HTTP address of the status and health endpoints.
	Listen string `yaml:"listen"`
	// DataDir holds the journal and the store.
	DataDir string `yaml:"data_dir"`
	// Databases are the mirrored databases this node holds.
	Databases []string `yaml:"databases"`
	Journal   struct {
		// SegmentSize is the size at which the journal starts a new segment, in bytes.
		SegmentSize int64 `yaml:"segment_size"`
	} `yaml:"journal"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Access names the keys of the bearer tokens /fhir accepts (as in the
	// cluster file). Without keys a standalone node does not serve /fhir.
	Access cluster.Access `yaml:"access"`
}

// Defaults for fields left empty.
const (
	DefaultListen      = "127.0.0.1:7401"
	DefaultRole        = "failover"
	DefaultSegmentSize = 64 << 20
	DefaultLogLevel    = "info"
)

// DefaultDatabases are the mirrored databases every node holds (DESIGN §3).
var DefaultDatabases = []string{"fhir", "audit", "system"}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LoadConfig reads, defaults and validates a node configuration file.
// Unknown fields are errors, so a misspelt key is never silently ignored.
func LoadConfig(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if err := cluster.DecodeStrict(data, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// SetDefaults fills the fields left empty.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Role == "" {
		c.Role = DefaultRole
	}
	if len(c.Databases) == 0 {
		c.Databases = append([]string(nil), DefaultDatabases...)
	}
	if c.Journal.SegmentSize == 0 {
		c.Journal.SegmentSize = DefaultSegmentSize
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
}

// Validate reports every invalid field, each named as in the file.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !namePattern.MatchString(c.Tier) {
		bad("tier", "%q must be 1-63 characters of a-z, 0-9, '-' or '_'", c.Tier)
	}
	if !namePattern.MatchString(c.Member) {
		bad("member", "%q must be 1-63 characters of a-z, 0-9, '-' or '_'", c.Member)
	}
	switch c.Role {
	case "failover", "dr", "reporting":
	default:
		bad("role", "%q must be failover, dr or reporting", c.Role)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		bad("listen", "%q must be host:port", c.Listen)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "is required")
	}
	seen := map[string]bool{}
	for i, db := range c.Databases {
		if !namePattern.MatchString(db) {
			bad(fmt.Sprintf("databases[%d]", i), "%q must be 1-63 characters of a-z, 0-9, '-' or '_'", db)
		}
		if db == "local" {
			bad(fmt.Sprintf("databases[%d]", i), "\"local\" is the member's own database and is never mirrored")
		}
		if seen[db] {
			bad(fmt.Sprintf("databases[%d]", i), "%q is listed twice", db)
		}
		seen[db] = true
	}
	if c.Journal.SegmentSize < 1<<20 || c.Journal.SegmentSize > 1<<30 {
		bad("journal.segment_size", "%d must be between 1 MiB and 1 GiB", c.Journal.SegmentSize)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q must be debug, info, warn or error", c.LogLevel)
	}
	if err := c.Access.Validate("access"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
