// Package gateway is `tandem gateway`: one stable HTTPS address for
// clinician apps and FHIR clients in front of every tier of a cluster. It
// forwards /fhir requests and logins (/auth/token) to the tier's current
// primary, holds and retries the requests that are safe to retry while a
// tier fails over, and lets reads that accept staleness go to an async
// member.
//
// # Routing
//
//	/fhir/{tier}/...   the named tier (a tier of the cluster file)
//	/fhir/...          the default tier: --default-tier, or the only tier
//	POST /auth/token          the default tier's token endpoint (login.go)
//	POST /auth/{tier}/token   the named tier's
//
// A first path segment that names a tier selects it; anything else (a
// resource type, "metadata", "_history") goes to the default tier. The
// tier segment is removed before forwarding (the node serves /fhir/...);
// Location and Content-Location headers of the answer get it back. Links
// inside response bodies (bundle fullUrl, paging links) are left as the
// node wrote them.
//
// # Headers
//
//	X-Request-Id          kept when the client sent one (at most 128
//	                      printable characters), else generated; sent to the
//	                      member and returned to the client
//	X-Tandem-Max-Lag      on GET/HEAD: the staleness the client accepts
//	                      ("5s", "500ms" or seconds "5"); the read may go to a
//	                      dr or reporting async whose reported lag plus the
//	                      age of the gateway's last look at it is within it
//	X-Tandem-Member       answer: tier/member that served the request
//	X-Tandem-Epoch        answer: the epoch the gateway routed at
//	X-Tandem-Attempts     answer: forwarding attempts, when more than one
//	X-Tandem-Idempotent-Replay  answer: "gateway-cache" when the result of an
//	                      earlier request with the same Idempotency-Key was
//	                      served from Redis without reaching a member
//	Retry-After           with 429 (rate limit) and with 503 (no primary
//	                      before the hold deadline)
//	Authorization         forwarded unchanged (the node checks it again)
//
// # Topology
//
// The members' /mirror/status is the source of truth. The gateway reads
// every member of every tier on a timer (PollInterval), faster
// (FastPollInterval) while a tier has no proven primary, and at once on
// every Redis pub/sub event. A member is routed writes only when it says
// "primary" at the highest epoch this gateway has ever seen for the tier,
// and no other member says so: an old primary that cannot prove the
// highest epoch is never routed to. Events on Redis carry no authority:
// they only cause a re-read (they are lossy, and anyone who can write to
// Redis can publish). A gateway publishes "suspect" when forwarding to a
// primary fails and "changed" when it sees a new primary or epoch, so
// every gateway sharing the Redis re-reads within milliseconds.
//
// # Retries across a failover
//
// Safe to retry: GET, HEAD, OPTIONS, POST .../_search, PUT (update and
// create-on-update), DELETE, conditional create (POST with If-None-Exist),
// and any request with an Idempotency-Key (the primary stores its result
// in the same journal record as the write, so a retry on the new primary
// answers the first result). These are held until a primary proves itself
// and answers, or until HoldTimeout (then 503 with Retry-After). Any other
// request (a POST without a key) is retried only when it provably never
// reached a member: no connection was established, so not one byte of it
// was written. Otherwise its outcome is unknown and the client gets 502
// saying so.
//
// # Logins
//
// POST /auth/token is forwarded, body unchanged, to the tier's primary's
// token endpoint (services/login): apps log in at the address they read
// FHIR from. It needs no bearer token; a login is safe to retry (another
// token for the same credentials changes nothing), so it is held and
// retried across a failover like a read. The gateway's own refusals there
// (no primary within the hold, rate limit, unknown tier) are OAuth error
// objects, not OperationOutcomes. With --rate-limit, token requests count
// against the client address's budget.
//
// # Mirror Monitor
//
// With Config.Monitor set (`tandem gateway` always sets it), the gateway
// serves the Mirror Monitor page at /monitor/ and runs its sampler (every
// member's /mirror/status once a second, with the gateway's own
// certificate: no operator credentials) for as long as it serves. Only bearer tokens that
// grant system/tandem.admin see it (header, or the page's HttpOnly login
// cookie). Its gate-log section reads each tier primary's /admin/gate/log
// with the requesting administrator's token (the gateway's certificate has
// no admin right and is not given one); with --temporal-address it lists
// the running workflows.
//
// # Metrics
//
// GET /metrics serves Prometheus text without authentication, as a node
// does: requests by status class and method, their latency, retries by
// reason, topology changes and whether each tier has a primary, rate-limit
// refusals and idempotency-cache replays (metrics.go). Labels never hold a
// path, an id, a client or a key.
//
// # Redis
//
// Redis (go-redis universal client: single, Sentinel or Cluster) holds the
// per-client rate-limit windows, the topology events, and a cache of
// Idempotency-Key results for other gateways (scoped by client and
// fingerprinted like the node does; the primary's journal holds the
// truth). Rate limits are counted per one-second window: a gateway leases
// a slice of a client's window (limit/50, at least 1) with one INCRBY and
// spends it locally, so together the gateways admit at most the limit per
// client per window, and fewer when a lease is left unspent as the window
// ends. Idempotency-Key lookups and stores of concurrent requests share
// pipelined round trips (idemCache). Bearer tokens the gateway verified are
// remembered by their SHA-256 until their exp (Tokens). When Redis is
// unreachable the gateway still routes: rate limits
// fail open, topology comes from polling alone, idempotent retries reach
// the primary.
//
// The gateway must never route a write to a member that cannot prove the
// highest epoch, never retry a request whose outcome is unknown unless it
// is safe to retry, and never log resource content or tokens.
package gateway
