package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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

// limiter enforces a per-client limit per one-second window shared by
// every gateway through Redis. To keep Redis off the path of most
// requests, a gateway leases a slice of the window's budget at a time
// (INCRBY lease) and spends it locally; a slice left unspent when the
// window ends is lost, so the gateways together admit at most limit
// requests per client per window, and possibly fewer.
type limiter struct {
	rdb   redis.UniversalClient
	limit int64
	lease int64

	mu      sync.Mutex
	clients map[string]*budget
}

type budget struct {
	window int64 // unix second
	tokens int64 // leased, not yet spent
	spent  bool  // the window's budget is used up
}

func newLimiter(rdb redis.UniversalClient, limit int) *limiter {
	return &limiter{rdb: rdb, limit: int64(limit), lease: max(1, int64(limit)/50), clients: map[string]*budget{}}
}

// allow counts one request of client at now and reports whether it is
// within the limit, and if not, how long until the next window. A Redis
// error admits the request (fail open) and is returned.
func (l *limiter) allow(ctx context.Context, client string, now time.Time) (bool, time.Duration, error) {
	win := now.Unix()
	wait := time.Unix(win+1, 0).Sub(now)
	l.mu.Lock()
	b := l.clients[client]
	if b == nil || b.window != win {
		if len(l.clients) > 100000 {
			clear(l.clients) // old windows of departed clients
		}
		b = &budget{window: win}
		l.clients[client] = b
	}
	if b.tokens > 0 {
		b.tokens--
		l.mu.Unlock()
		return true, 0, nil
	}
	if b.spent {
		l.mu.Unlock()
		return false, wait, nil
	}
	l.mu.Unlock()
	key := fmt.Sprintf(rateKeyFmt, hash16(client), win)
	pipe := l.rdb.Pipeline()
	incr := pipe.IncrBy(ctx, key, l.lease)
	pipe.Expire(ctx, key, 2*time.Second)
	if _, err := pipe.Exec(ctx); err != nil {
		return true, 0, err
	}
	total := incr.Val()
	granted := min(l.lease, l.limit-(total-l.lease)) // of this lease, what is within the limit
	l.mu.Lock()
	defer l.mu.Unlock()
	if b.window != win {
		return true, 0, nil
	}
	if granted <= 0 {
		b.spent = true
		return false, wait, nil
	}
	b.tokens += granted - 1
	if total >= l.limit {
		b.spent = b.tokens == 0
	}
	return true, 0, nil
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

// idemCache is the Redis cache of Idempotency-Key results. The lookups and
// stores of concurrent requests share round trips: a worker sends every
// operation queued while it waited as one pipeline (Redis runs them in
// order), so under load a keyed write costs a fraction of a round trip and
// of Redis's work, and alone it costs one round trip as before. Every
// keyed write is still looked up in Redis before it is forwarded, and
// every result still stored.
type idemCache struct {
	rdb  redis.UniversalClient
	log  *slog.Logger
	ops  chan *idemOp
	quit chan struct{}
	wg   sync.WaitGroup

	pipelines atomic.Int64 // sent, for tests
}

type idemOp struct {
	key  string
	val  []byte        // a store; nil: a lookup
	done chan idemRead // a lookup's answer (buffered)
}

type idemRead struct {
	b   []byte
	err error
}

const (
	idemWorkers = 2
	idemBatch   = 256 // operations per pipeline at most
	idemTimeout = 500 * time.Millisecond
)

func newIdemCache(rdb redis.UniversalClient, log *slog.Logger) *idemCache {
	c := &idemCache{rdb: rdb, log: log, ops: make(chan *idemOp, 4096), quit: make(chan struct{})}
	for range idemWorkers {
		c.wg.Add(1)
		go c.work()
	}
	return c
}

// close stops the workers; operations still queued are dropped (stores
// are a cache, lookups time out in their callers).
func (c *idemCache) close() {
	close(c.quit)
	c.wg.Wait()
}

// get returns the cached result under key (redis.Nil when none).
func (c *idemCache) get(ctx context.Context, key string) (*cachedResult, error) {
	op := &idemOp{key: key, done: make(chan idemRead, 1)}
	select {
	case c.ops <- op:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var r idemRead
	select {
	case r = <-op.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	var res cachedResult
	if err := json.Unmarshal(r.b, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// put stores a result off the caller's path.
func (c *idemCache) put(key string, res *cachedResult) {
	b, err := json.Marshal(res)
	if err != nil {
		return
	}
	select {
	case c.ops <- &idemOp{key: key, val: b}:
	default: // queue full: on its own, as before batching
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), idemTimeout)
			defer cancel()
			if err := c.rdb.Set(ctx, key, b, idemTTL).Err(); err != nil {
				c.log.Debug("idempotency result not cached", "err", err)
			}
		}()
	}
}

func (c *idemCache) work() {
	defer c.wg.Done()
	batch := make([]*idemOp, 0, idemBatch)
	cmds := make([]redis.Cmder, 0, idemBatch)
	for {
		batch = batch[:0]
		select {
		case <-c.quit:
			return
		case op := <-c.ops:
			batch = append(batch, op)
		}
	drain:
		for len(batch) < idemBatch {
			select {
			case op := <-c.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), idemTimeout)
		pipe := c.rdb.Pipeline()
		cmds = cmds[:0]
		for _, op := range batch {
			if op.val != nil {
				cmds = append(cmds, pipe.Set(ctx, op.key, op.val, idemTTL))
			} else {
				cmds = append(cmds, pipe.Get(ctx, op.key))
			}
		}
		pipe.Exec(ctx) // each command carries its own error
		cancel()
		c.pipelines.Add(1)
		stored := 0
		var storeErr error
		for i, op := range batch {
			if op.val == nil {
				b, err := cmds[i].(*redis.StringCmd).Bytes()
				op.done <- idemRead{b, err}
			} else if err := cmds[i].Err(); err != nil {
				storeErr = err
			} else {
				stored++
			}
		}
		if storeErr != nil {
			c.log.Debug("idempotency results not cached", "err", storeErr, "stored", stored)
		}
	}
}
