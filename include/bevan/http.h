/* Bevan HTTP: libmicrohttpd behind a small interface (microhttpd.h is included only in src/http/).
 * One arena per request, freed when the response has been sent. Limits (body, URL, headers,
 * connections, timeouts) are enforced here before a handler sees the request. */
#ifndef BEVAN_HTTP_H
#define BEVAN_HTTP_H

#include "bevan/core.h"

typedef struct { const char *name; const char *value; } bv_kv;

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
} bv_request;

typedef struct {
    int status;
    bv_kv *headers;           /* arena-allocated; add with bv_response_header */
    size_t n_headers, cap_headers;
    const char *content_type; /* default "application/fhir+json; charset=utf-8" */
    bv_buf body;              /* heap buffer; the HTTP layer sends and frees it */
    bv_arena *arena;
} bv_response;

/* Case-insensitive header lookup; NULL if absent. */
const char *bv_request_header(const bv_request *r, const char *name);
/* Adds a header (name and value copied into the response arena). */
void bv_response_header(bv_response *r, const char *name, const char *value);

typedef void (*bv_http_handler)(void *ctx, bv_request *req, bv_response *resp);

typedef struct {
    const char *listen;       /* "HOST:PORT", port 0 = any free port */
    unsigned threads;         /* worker threads (0 = number of CPUs) */
    size_t max_body;          /* 0 = BV_MAX_BODY_BYTES */
    unsigned max_connections; /* 0 = BV_MAX_CONNECTIONS */
    unsigned timeout_s;       /* idle connection timeout, 0 = BV_CONNECTION_TIMEOUT_S */
    unsigned write_workers;   /* threads that run writing requests while their connection is
                                 suspended (0 = 32): how many writes can share one group commit */
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
} bv_http_options;

typedef struct bv_http_server bv_http_server;

int bv_http_start(const bv_http_options *opt, bv_http_handler handler, void *ctx, bv_http_server **out,
                  char *err, size_t errlen);
int bv_http_port(const bv_http_server *s);            /* the bound port (after port 0) */
/* Stops accepting, lets in-flight requests finish, frees the server. */
void bv_http_stop(bv_http_server *s);

/* Run the handler in-process on a synthetic request (bevan import, fuzzing, tests). */
void bv_http_dispatch_local(bv_http_handler handler, void *ctx, bv_request *req, bv_response *resp);

#endif
