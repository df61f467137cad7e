package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys and channel. They are part of the protocol between gateways.
const (
	eventChannel = "tandem:gateway:topology"
	rateKeyFmt   = "tandem:gateway:rl:%s:%d" // client hash, unix second
	idemKeyFmt   = "tandem:gateway:idem:%s:%s:%s"
	idemTTL      = 24 * time.Hour
	idemMaxBody  = 1 << 20
)

// ParseRedisURL turns --redis into go-redis universal options:
//
//	redis://[user:pass@]host:port[/db]                     one server
//	redis-sentinel://host:port[?addr=h2:p2&master_name=M]  Sentinel (master_name required)
//	redis-cluster://host:port[?addr=h2:p2]                 Cluster
//
// and the same with rediss for TLS.
func ParseRedisURL(s string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	scheme, kind, _ := strings.Cut(u.Scheme, "-")
	if scheme != "redis" && scheme != "rediss" {
		return nil, fmt.Errorf("%q: scheme must be redis, rediss, redis-sentinel or redis-cluster", s)
	}
	u.Scheme = scheme
	switch kind {
	case "":
		o, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}, nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, err
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("%q: Sentinel needs ?master_name=", s)
		}
		return &redis.UniversalOptions{Addrs: o.SentinelAddrs, MasterName: o.MasterName, SentinelUsername: o.SentinelUsername,
			SentinelPassword: o.SentinelPassword, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}, nil
	case "cluster":
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{Addrs: o.Addrs, IsClusterMode: true, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig}, nil
	}
	return nil, fmt.Errorf("%q: unknown Redis kind %q (sentinel or cluster)", s, kind)
}

// event is a topology event on Redis: a hint to re-read, never an authority.
type event struct {
	Kind    string `json:"kind"` // "suspect" (forwarding to the primary failed) or "changed"
	Tier    string `json:"tier"`
	Epoch   uint64 `json:"epoch,omitempty"`
	Primary string `json:"primary,omitempty"`
	From    string `json:"from"`
}

func hash16(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// allow counts one request of client in the current one-second window and
// reports whether it is within limit, and if not, how long to wait.
func allow(ctx context.Context, rdb redis.UniversalClient, client string, limit int, now time.Time) (bool, time.Duration, error) {
	key := fmt.Sprintf(rateKeyFmt, hash16(client), now.Unix())
	pipe := rdb.Pipeline()
	incr := pipe.Incr(ctx, key)
	pipe.Expire(ctx, key, 2*time.Second)
	if _, err := pipe.Exec(ctx); err != nil {
		return true, 0, err
	}
	if incr.Val() <= int64(limit) {
		return true, 0, nil
	}
	next := time.Unix(now.Unix()+1, 0)
	return false, next.Sub(now), nil
}

// cachedResult is an Idempotency-Key result kept for other gateways.
type cachedResult struct {
	Fingerprint string      `json:"fp"`
	Status      int         `json:"status"`
	Header      http.Header `json:"header"`
	Body        []byte      `json:"body"`
}

// idemKey is the cache key: per tier and client, so one client's key never
// answers another's request.
func idemKey(tier, client, key string) string {
	return fmt.Sprintf(idemKeyFmt, tier, hash16(client), hash16(key))
}

// fingerprint identifies the request a key was used for, like the node's.
func fingerprint(method, path, query string, h http.Header, body []byte) string {
	s := sha256.New()
	fmt.Fprintf(s, "%s %s?%s\nIf-Match: %s\nIf-None-Exist: %s\n", method, path, query, h.Get("If-Match"), h.Get("If-None-Exist"))
	s.Write(body)
	return hex.EncodeToString(s.Sum(nil))
}

func getCached(ctx context.Context, rdb redis.UniversalClient, key string) (*cachedResult, error) {
	b, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		return nil, err
	}
	var c cachedResult
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func putCached(ctx context.Context, rdb redis.UniversalClient, key string, c *cachedResult) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return rdb.Set(ctx, key, b, idemTTL).Err()
}
