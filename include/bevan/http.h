/* Bevan HTTP: libmicrohttpd behind a small interface (microhttpd.h is included only in src/http/).
 * One arena per request, freed when the response has been sent. Limits (body, URL, headers,
 * connections, timeouts) are enforced here before a handler sees the request. */
#ifndef BEVAN_HTTP_H
#define BEVAN_HTTP_H

#include "bevan/core.h"

typedef bv_pair bv_kv;

typedef struct {
    bv_arena *arena;          /* request-scoped; everything below lives in it */
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* percent-decoded path, without the query, e.g. "/fhir/Patient/1" */
    const char *raw_query;    /* query string as received (no '?'), "" if none */
    bv_kv *query;             /* decoded query parameters in order (form decoding: '+' is space) */
    size_t n_query;
    bv_kv *headers;           /* request headers as received */
    size_t n_headers;
    const char *body;         /* NUL-terminated copy of the body, "" if none */
    size_t body_len;
    const char *base_url;     /* e.g. "http://127.0.0.1:8080" (from Host, else the listen address) */
    const char *peer;         /* client address, for audit */
    bool can_defer;           /* the handler may answer later: see bv_http_complete */
} bv_request;

typedef struct {
    int status;
    bv_kv *headers;           /* arena-allocated; add with bv_response_header */
    size_t n_headers, cap_headers;
    const char *content_type; /* default "application/fhir+json; charset=utf-8" */
    bv_buf body;              /* heap buffer; the HTTP layer sends and frees it */
    bv_arena *arena;
    bool deferred;            /* set by a handler that will answer later (bv_http_complete) */
} bv_response;

/* Case-insensitive header lookup; NULL if absent. */
const char *bv_request_header(const bv_request *r, const char *name);
/* Adds a header (name and value copied into the response arena). */
void bv_response_header(bv_response *r, const char *name, const char *value);

typedef void (*bv_http_handler)(void *ctx, bv_request *req, bv_response *resp);

/* Deferred answers. When req->can_defer is set, a handler may return with resp->deferred set
 * instead of a response: the connection is then parked (no thread waits for it), and the handler's
 * side calls bv_http_complete(req) exactly once, from any thread, when resp is filled in. req and
 * resp (and the request arena) stay valid until then; nothing else touches them meanwhile.
 * bv_http_stop waits for every deferred request to be completed. */
void bv_http_complete(bv_request *req);

/* ---- WebSocket (RFC 6455) on an upgraded connection (src/http/ws.c) ----
 * A GET on bv_http_options.ws->path with a valid WebSocket handshake is upgraded (101); the
 * frames are then read by one I/O thread of the HTTP module. Text messages (UTF-8 checked,
 * fragments reassembled, at most BV_WS_MAX_MESSAGE bytes) go to on_text on that thread; pings are
 * answered, the server pings idle connections and closes dead ones. Binary messages, unmasked
 * frames and oversized messages close the connection with the RFC's status code.
 * Lifetime: a bv_ws is valid from on_open until on_close returns (both on the I/O thread, each
 * called once). bv_ws_send_text may be called from any thread in between; it never blocks: when
 * the peer does not keep up (socket buffer full) the connection is closed instead. */
#define BV_WS_MAX_MESSAGE      (64u * 1024u)
#define BV_WS_MAX_CONNECTIONS  256
#define BV_WS_PING_INTERVAL_S  25     /* server ping on a quiet connection */
#define BV_WS_DEAD_AFTER_S     75     /* nothing received for this long: closed */
typedef struct bv_ws bv_ws;
typedef struct {
    const char *path;         /* e.g. "/fhir/$websocket" (exact match) */
    void *ctx;
    void (*on_open)(void *ctx, bv_ws *ws);
    void (*on_text)(void *ctx, bv_ws *ws, const char *msg, size_t len);
    void (*on_close)(void *ctx, bv_ws *ws);
} bv_ws_handler;
/* Sends one text message (thread-safe, non-blocking). BV_EIO when the connection is closing or
 * could not take the message (then it is closed). */
int bv_ws_send_text(bv_ws *ws, const char *msg, size_t len);
/* Asks for the connection to be closed with this status code (1000 normal, 1008 policy). */
void bv_ws_close(bv_ws *ws, unsigned code);
/* The upgrade request's Authorization header (NULL if none) and the client address. */
const char *bv_ws_authorization(const bv_ws *ws);
const char *bv_ws_peer(const bv_ws *ws);
/* One pointer of the application's own per connection. */
void bv_ws_set_user(bv_ws *ws, void *user);
void *bv_ws_user(const bv_ws *ws);


typedef struct {
    const char *listen;       /* "HOST:PORT", port 0 = any free port */
    unsigned threads;         /* worker threads (0 = number of CPUs) */
    size_t max_body;          /* 0 = BV_MAX_BODY_BYTES */
    unsigned max_connections; /* 0 = BV_MAX_CONNECTIONS */
    unsigned timeout_s;       /* idle connection timeout, 0 = BV_CONNECTION_TIMEOUT_S */
    unsigned write_workers;   /* threads that run writing requests while their connection is
                                 suspended (0 = 32): how many writes can share one group commit */
    /* Writing requests for which this returns true are handled on the I/O thread, with
     * req->can_defer set, instead of on a worker: the handler must not wait for anything slow
     * (it defers the answer instead). NULL: every writing request goes to a worker. */
    bool (*write_inline)(void *ctx, const bv_request *req);
    /* TLS: both PEM files given = HTTPS only, TLS 1.2 and 1.3 (docs/http.md). */
    const char *tls_cert_file;
    const char *tls_key_file;
    /* CORS: browser apps from exactly these origins may call the API (no wildcard). */
    const char *const *cors_origins;
    size_t n_cors_origins;
    /* Per-client (address) rate limit: token bucket of rate_per_s with rate_burst; over it the
     * answer is 429 with Retry-After. 0 = the default (BV_RATE_PER_S); < 0 = no limit.
     * Loopback clients are exempt unless rate_loopback (local tools, tests and benchmarks). */
    double rate_per_s;
    double rate_burst;
    bool rate_loopback;
    /* WebSocket endpoint (NULL = none). The handler must outlive the server. */
    const bv_ws_handler *ws;
} bv_http_options;

typedef struct bv_http_server bv_http_server;

int bv_http_start(const bv_http_options *opt, bv_http_handler handler, void *ctx, bv_http_server **out,
                  char *err, size_t errlen);
int bv_http_port(const bv_http_server *s);            /* the bound port (after port 0) */
int bv_http_in_flight(bv_http_server *s);             /* requests received and not yet answered */
/* Stops accepting, lets in-flight requests finish, frees the server. */
void bv_http_stop(bv_http_server *s);

/* Run the handler in-process on a synthetic request (bevan import, fuzzing, tests). */
void bv_http_dispatch_local(bv_http_handler handler, void *ctx, bv_request *req, bv_response *resp);

#endif
