/* Bevan HTTP on libmicrohttpd 0.9.75 (see include/bevan/http.h and docs/http.md).
 *
 * Request life cycle (one struct http_req per request, living in its own arena):
 *   uri_log_cb      MHD has read the request line: the arena is created here and the raw request
 *                   target (path + query, still percent-encoded) is kept. MHD strips and decodes
 *                   the query itself; we parse the raw target so that '+', order, repeated names,
 *                   %00 and bad escapes are handled exactly as documented.
 *   access_cb #1    headers are in: limits checked (URL, query count, header count,
 *                   Content-Length). Only a 413 is queued here (that closes the connection, which
 *                   is what we want: the body is not read). Everything else waits for the last
 *                   call, because queuing on the first call makes MHD answer Connection: close.
 *   access_cb #2..  body chunks appended to a capped buffer (chunked bodies over the cap: 413).
 *   access_cb last  *upload_data_size == 0: the handler runs and the response is queued.
 *                   Requests that write (any method but GET/HEAD) are handed to a pool of worker
 *                   threads instead: the connection is suspended, a worker runs the handler (which
 *                   waits for the group commit) and resumes it; the next access_cb queues the
 *                   response. So an MHD thread never sleeps on a commit, and as many writes as
 *                   there are workers can share one durable sync.
 *                   Writes the application marks as inline (write_inline: plain create, update,
 *                   delete, patch) skip the worker: the handler runs here, queues its write and
 *                   defers the answer; the connection is suspended until bv_http_complete (called
 *                   by the store's syncer after the durable sync) resumes it. That saves two
 *                   thread wake-ups per write.
 *   completed_cb    the arena and the body buffer are freed. */
#include "bevan/http.h"
#include "transport.h"
#include "ws_internal.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_MAX_HEADERS        100
#define HTTP_CONN_MEMORY_LIMIT  (64u * 1024u)
#define HTTP_DEFAULT_CTYPE      "application/fhir+json; charset=utf-8"
#define HTTP_MAX_DISCARD        (64u * 1024u * 1024u) /* body bytes read and dropped after an error (then 413), beyond: close */
#define HTTP_STOP_WAIT_MS       10000   /* bv_http_stop: how long in-flight requests may take */
#define HTTP_STR_(x) #x
#define HTTP_STR(x) HTTP_STR_(x)

struct bv_http_server {
    struct MHD_Daemon *daemon;
    bv_http_handler handler;
    void *ctx;
    size_t max_body;
    int port;
    atomic_int in_flight;     /* requests between uri_log_cb and completed_cb */
    atomic_int open_conns;    /* connections accepted and not yet closed (notify_conn_cb) */
    atomic_bool refusing;     /* set by bv_http_stop: accept_policy_cb turns new connections away */
    unsigned max_conn;        /* past this many open connections a request is answered 503 */
    char fallback_base[96];   /* "http://HOST:PORT" from the listen address */
    /* write offload (see the top comment) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct http_job *head, *tail;
    pthread_t *workers;
    unsigned n_workers;
    bool stopping;
    bool (*write_inline)(void *ctx, const bv_request *req);
    atomic_int deferrable;    /* inline writes not answered yet: bv_http_stop waits for them */
    /* transport policy (transport.c) */
    bool tls;
    char *tls_cert, *tls_key;     /* PEM text, alive while the daemon runs */
    const char *const *cors;
    size_t n_cors;
    bv__ratelimit *rl;
    bool rate_loopback;
    /* WebSocket endpoint (ws.c) */
    bv__ws_hub *ws_hub;
    char *ws_path;
};

typedef struct http_job {
    struct http_job *next;
    struct MHD_Connection *conn;
    void *hr;
} http_job;

typedef struct {
    bv_arena *arena;
    const char *raw_target;   /* request target as received */
    bool started;             /* first access_cb call done */
    bool queued;              /* a response has been queued */
    int error_status;         /* non-zero: answer this (with error_msg) instead of calling the handler */
    const char *error_code;
    const char *error_msg;
    bv_buf body;
    size_t discarded;         /* body bytes dropped after an error */
    bv_request req;
    size_t hdr_cap;
    int offload;              /* 0 none, 1 with a worker or deferred, 2 answered by the worker or completed */
    atomic_int defer_state;   /* inline write: 0 handler running, 1 connection suspended, 2 completed early */
    struct MHD_Connection *conn;
    bv_http_server *srv;
    bv_response resp;         /* the worker's response */
    http_job job;
    const char *cors_origin;  /* the request's Origin when it is allowed: echoed back */
    unsigned retry_after;     /* 429: seconds */
    bool tls;
} http_req;

/* ---------------------------------------------------------------- small helpers */

const char *bv_request_header(const bv_request *r, const char *name)
{
    if (!r || !name) return NULL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

void bv_response_header(bv_response *r, const char *name, const char *value)
{
    if (r->n_headers == r->cap_headers) {
        size_t cap = r->cap_headers ? r->cap_headers * 2 : 8;
        bv_kv *h = bv_arena_alloc(r->arena, cap * sizeof *h);
        if (r->n_headers) memcpy(h, r->headers, r->n_headers * sizeof *h);
        r->headers = h;
        r->cap_headers = cap;
    }
    r->headers[r->n_headers].name = bv_arena_strdup(r->arena, name);
    r->headers[r->n_headers].value = bv_arena_strdup(r->arena, value ? value : "");
    r->n_headers++;
}

static void response_init(bv_response *resp, bv_arena *a)
{
    memset(resp, 0, sizeof *resp);
    resp->status = 200;
    resp->content_type = HTTP_DEFAULT_CTYPE;
    resp->arena = a;
    bv_buf_init(&resp->body, 0);
}

void bv_http_dispatch_local(bv_http_handler handler, void *ctx, bv_request *req, bv_response *resp)
{
    response_init(resp, req->arena);
    if (!req->method) req->method = "GET";
    if (!req->path) req->path = "/";
    if (!req->raw_query) req->raw_query = "";
    if (!req->body) { req->body = ""; req->body_len = 0; }
    if (!req->base_url) req->base_url = "http://localhost";
    if (!req->peer) req->peer = "local";
    handler(ctx, req, resp);
}

/* Splits "a=1&b=2" into decoded pairs in order (empty segments skipped). Returns 0, or an HTTP
 * status with *msg set. */
static int parse_query(bv_arena *a, const char *q, bv_kv **out, size_t *n_out, const char **msg)
{
    size_t cap = bv_query_pieces(q);
    if (cap > BV_MAX_QUERY_PARAMS) {
        /* cap counts separators; count the non-empty segments before refusing */
        size_t segs = 0;
        for (const char *p = q; *p;) {
            const char *e = strchr(p, '&');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (l) segs++;
            p += l + (e ? 1 : 0);
        }
        if (segs > BV_MAX_QUERY_PARAMS) {
            *msg = "too many query parameters (limit " HTTP_STR(BV_MAX_QUERY_PARAMS) ")";
            return 400;
        }
        cap = segs ? segs : 1;
    }
    bv_kv *kv = bv_arena_alloc(a, cap * sizeof *kv);
    long n = bv_query_split(a, q, true, kv);
    if (n < 0) {
        *msg = "invalid percent-encoding in the query";
        return 400;
    }
    *out = kv;
    *n_out = (size_t)n;
    return 0;
}

/* The Host header is copied into self links: accept only host[:port] characters. */
static bool host_ok(const char *h)
{
    if (!h || !*h || strlen(h) > 255) return false;
    for (const char *p = h; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-' || c == ':' || c == '[' || c == ']' || c == '_'))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- MHD callbacks */

static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    bv_http_server *s = cls;
    (void)conn;
    atomic_fetch_add(&s->in_flight, 1);
    bv_arena *a = bv_arena_new(8192);
    http_req *hr = bv_arena_calloc(a, 1, sizeof *hr);
    hr->arena = a;
    hr->raw_target = bv_arena_strdup(a, uri ? uri : "");
    return hr;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    bv_http_server *s = cls;
    (void)conn;
    (void)toe;
    http_req *hr = *con_cls;
    if (!hr) return;
    atomic_fetch_sub(&s->in_flight, 1);
    bv_buf_free(&hr->body);
    *con_cls = NULL;
    bv_arena_free(hr->arena);   /* hr lives in its own arena */
}

static enum MHD_Result header_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    http_req *hr = cls;
    bv_request *r = &hr->req;
    if (r->n_headers == hr->hdr_cap) {
        size_t cap = hr->hdr_cap ? hr->hdr_cap * 2 : 16;
        bv_kv *h = bv_arena_alloc(hr->arena, cap * sizeof *h);
        if (r->n_headers) memcpy(h, r->headers, r->n_headers * sizeof *h);
        r->headers = h;
        hr->hdr_cap = cap;
    }
    r->headers[r->n_headers].name = bv_arena_strdup(hr->arena, key ? key : "");
    r->headers[r->n_headers].value = bv_arena_strdup(hr->arena, value ? value : "");
    r->n_headers++;
    return MHD_YES;
}

static void set_error(http_req *hr, int status, const char *code, const char *msg)
{
    if (hr->error_status) return;   /* the first problem wins */
    hr->error_status = status;
    hr->error_code = code;
    hr->error_msg = msg;
}

static void add_transport_headers(struct MHD_Response *mr, const http_req *hr, const char *ctype,
                                  bool has_cache_control)
{
    bv_kv h[8];
    size_t n = bv__security_headers(ctype, hr->tls, has_cache_control, h, 8);
    for (size_t i = 0; i < n; i++) MHD_add_response_header(mr, h[i].name, h[i].value);
    if (hr->cors_origin) {
        MHD_add_response_header(mr, "Access-Control-Allow-Origin", hr->cors_origin);
        MHD_add_response_header(mr, "Access-Control-Expose-Headers",
                                "Location, Content-Location, ETag, Last-Modified, Retry-After, WWW-Authenticate");
    }
    MHD_add_response_header(mr, "Vary", "Origin");
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, http_req *hr)
{
    bv_buf b;
    bv_buf_init(&b, 0);
    /* messages are fixed strings of ours: nothing to escape */
    bv_buf_printf(&b,
                  "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\","
                  "\"code\":\"%s\",\"diagnostics\":\"%s\"}]}",
                  hr->error_code, hr->error_msg);
    size_t len;
    char *data = bv_buf_steal(&b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(data); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, HTTP_DEFAULT_CTYPE);
    add_transport_headers(resp, hr, HTTP_DEFAULT_CTYPE, false);
    if (hr->retry_after) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", hr->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (hr->error_status == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close"); /* free the slot */
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)hr->error_status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES) hr->queued = true;
    return rc;
}

/* First call: parse the target and check every limit that the headers alone decide. */
static void first_call(bv_http_server *s, struct MHD_Connection *conn, http_req *hr, const char *method)
{
    bv_arena *a = hr->arena;
    bv_request *r = &hr->req;
    r->arena = a;
    /* HEAD is served as GET; MHD sends the headers (with Content-Length) and drops the body. */
    r->method = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0 ? "GET" : bv_arena_strdup(a, method);
    r->path = "/";
    r->raw_query = "";
    r->body = "";
    bv_buf_init(&hr->body, s->max_body);

    unsigned n_headers = (unsigned)MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL);
    if (n_headers > HTTP_MAX_HEADERS) {
        set_error(hr, 431, "too-costly", "too many request headers (limit 100)");
    } else {
        MHD_get_connection_values(conn, MHD_HEADER_KIND, header_cb, hr);
    }

    const char *t = hr->raw_target;
    if (strlen(t) > BV_MAX_URL_BYTES) {
        set_error(hr, 414, "too-costly", "request URL too long (limit " HTTP_STR(BV_MAX_URL_BYTES) " bytes)");
    } else {
        /* absolute-form (http://host/path) -> origin-form */
        if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
            const char *p = strstr(t, "://") + 3;
            const char *slash = strpbrk(p, "/?");
            t = slash ? slash : "/";
        }
        const char *q = strchr(t, '?');
        size_t plen = q ? (size_t)(q - t) : strlen(t);
        char *path = bv_url_decode_nonul(a, t, plen, false);
        if (!path) {
            set_error(hr, 400, "invalid", "invalid percent-encoding in the path");
        } else {
            r->path = *path ? path : "/";
            if (q) {
                r->raw_query = bv_arena_strdup(a, q + 1);
                const char *msg = NULL;
                int st = parse_query(a, r->raw_query, &r->query, &r->n_query, &msg);
                if (st) set_error(hr, st, st == 400 && strstr(msg, "too many") ? "too-costly" : "invalid", msg);
            }
        }
    }

    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        uint64_t v;
        if (bv_str_to_u64(cl, strlen(cl), UINT64_MAX, &v) != BV_OK)
            set_error(hr, 400, "invalid", "invalid Content-Length");
        else if (v > s->max_body) {
            hr->error_status = 0;   /* 413 takes precedence: answer now and skip the body */
            set_error(hr, 413, "too-costly", "request body too large");
        }
    }

    const char *host = bv_request_header(r, MHD_HTTP_HEADER_HOST);
    r->base_url = host_ok(host) ? bv_arena_printf(a, "%s://%s", s->tls ? "https" : "http", host) : s->fallback_base;
    hr->tls = s->tls;
    const char *origin = bv_request_header(r, "Origin");
    if (bv__cors_allowed(s->cors, s->n_cors, origin)) hr->cors_origin = origin;

    r->peer = "unknown";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        char buf[INET6_ADDRSTRLEN] = "";
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf, sizeof buf);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf, sizeof buf);
        if (buf[0]) r->peer = bv_arena_strdup(a, buf);
    }
    bool loopback = strncmp(r->peer, "127.", 4) == 0 || strcmp(r->peer, "::1") == 0 ||
                    strncmp(r->peer, "::ffff:127.", 11) == 0;
    if (s->rl && (s->rate_loopback || !loopback)) {
        unsigned wait = bv__ratelimit_take(s->rl, r->peer, 0);
        if (wait) {
            hr->error_status = 0; /* over the rate: nothing else is looked at */
            set_error(hr, 429, "throttled", "too many requests from this client: retry after the Retry-After delay");
            hr->retry_after = wait;
        }
    }
    /* Past --max-connections (MHD itself allows some headroom above it, then closes new
     * connections): answer 503 with Retry-After and close, instead of a silent close. */
    if ((unsigned)atomic_load(&s->open_conns) > s->max_conn) {
        hr->error_status = 0;
        set_error(hr, 503, "transient", "too many open connections: retry after the Retry-After delay");
        hr->retry_after = 1;
    }
}

/* Counts open connections for the 503 above. */
static void notify_conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    (void)socket_context;
    bv_http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&s->open_conns, 1);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) atomic_fetch_sub(&s->open_conns, 1);
}

/* Stands in for MHD_quiesce_daemon, which under epoll with MHD's own threads races its workers for
 * the listen socket and can abort the process (MHD 0.9.75, "Failed to remove listen FD from epoll
 * set"). Refused connections are closed at once; MHD_stop_daemon closes the listen socket. */
static enum MHD_Result accept_policy_cb(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    bv_http_server *s = cls;
    return atomic_load(&s->refusing) ? MHD_NO : MHD_YES;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, const http_req *hr, bv_response *resp)
{
    size_t len;
    char *data = bv_buf_steal(&resp->body, &len);
    struct MHD_Response *mr = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!mr) { free(data); return MHD_NO; }
    bool cache_control = false;
    for (size_t i = 0; i < resp->n_headers; i++) {
        MHD_add_response_header(mr, resp->headers[i].name, resp->headers[i].value);
        if (strcasecmp(resp->headers[i].name, "Cache-Control") == 0) cache_control = true;
    }
    add_transport_headers(mr, hr, resp->content_type, cache_control);
    if (resp->content_type && len > 0)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    int status = resp->status >= 100 && resp->status <= 599 ? resp->status : 500;
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, mr);
    MHD_destroy_response(mr);
    return rc;
}

/* CORS preflight: answered here, before any handler (and before authentication, which a browser
 * does not send on a preflight). Allowed origin: 204 with what may be sent; otherwise 403. */
static enum MHD_Result answer_preflight(struct MHD_Connection *conn, http_req *hr)
{
    if (!hr->cors_origin) {
        set_error(hr, 403, "forbidden", "this Origin is not allowed to call the API (see --cors-origin)");
        return queue_error(conn, hr);
    }
    struct MHD_Response *mr = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!mr) return MHD_NO;
    add_transport_headers(mr, hr, NULL, false);
    MHD_add_response_header(mr, "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    MHD_add_response_header(mr, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, "
                            "If-Modified-Since, Prefer, X-Break-Glass-Reason");
    MHD_add_response_header(mr, "Access-Control-Max-Age", "600");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, mr);
    MHD_destroy_response(mr);
    if (rc == MHD_YES) hr->queued = true;
    return rc;
}

/* ---------------------------------------------------------------- WebSocket upgrade */

static void ws_close_handle(void *h)
{
    MHD_upgrade_action((struct MHD_UpgradeResponseHandle *)h, MHD_UPGRADE_ACTION_CLOSE);
}

static void ws_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
                        size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    bv_http_server *s = cls;
    (void)conn;
    http_req *hr = con_cls;
    bv__ws_adopt(s->ws_hub, sock, urh, extra_in, extra_in_size, hr ? bv_request_header(&hr->req, "Authorization") : NULL,
                 hr ? hr->req.peer : NULL);
}

/* A browser's WebSocket carries no CORS check: accept a cross-origin page only when its origin is
 * allowed by --cors-origin (same-origin pages and non-browser clients always). */
static bool ws_origin_ok(const bv_http_server *s, const http_req *hr)
{
    const char *origin = bv_request_header(&hr->req, "Origin");
    if (!origin || hr->cors_origin) return true;
    return bv_streq(origin, hr->req.base_url);
}

static enum MHD_Result ws_upgrade(bv_http_server *s, struct MHD_Connection *conn, http_req *hr)
{
    char accept[40];
    const char *msg = NULL;
    int st = bv__ws_handshake(&hr->req, accept, sizeof accept, &msg);
    if (st) {
        set_error(hr, st, st == 426 ? "not-supported" : "invalid", msg);
        return queue_error(conn, hr);
    }
    if (!ws_origin_ok(s, hr)) {
        set_error(hr, 403, "forbidden", "this Origin may not open the WebSocket (see --cors-origin)");
        return queue_error(conn, hr);
    }
    if (bv__ws_hub_full(s->ws_hub)) {
        set_error(hr, 503, "transient", "too many WebSocket connections; try again later");
        return queue_error(conn, hr);
    }
    struct MHD_Response *mr = MHD_create_response_for_upgrade(ws_upgraded, s);
    if (!mr) return MHD_NO;
    MHD_add_response_header(mr, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(mr, "Sec-WebSocket-Accept", accept);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, mr);
    MHD_destroy_response(mr);
    if (rc == MHD_YES) hr->queued = true;
    return rc;
}

/* A write the handler may answer later (see the top comment). */
static enum MHD_Result run_inline(bv_http_server *s, struct MHD_Connection *conn, http_req *hr)
{
    hr->conn = conn;
    hr->srv = s;
    atomic_store(&hr->defer_state, 0);
    response_init(&hr->resp, hr->arena);
    hr->req.can_defer = true;
    s->handler(s->ctx, &hr->req, &hr->resp);
    if (!hr->resp.deferred) {
        atomic_fetch_sub(&s->deferrable, 1);
        hr->queued = true;
        return send_response(conn, hr, &hr->resp);
    }
    hr->offload = 1;
    MHD_suspend_connection(conn);
    int running = 0;
    if (!atomic_compare_exchange_strong(&hr->defer_state, &running, 1)) {
        /* completed before the connection was suspended: bv_http_complete left the resume to us */
        hr->offload = 2;
        MHD_resume_connection(conn);
        atomic_fetch_sub(&s->deferrable, 1);
    }
    return MHD_YES;
}

void bv_http_complete(bv_request *req)
{
    http_req *hr = (http_req *)(void *)((char *)req - offsetof(http_req, req));
    int running = 0;
    if (atomic_compare_exchange_strong(&hr->defer_state, &running, 2)) return; /* run_inline resumes */
    bv_http_server *s = hr->srv;
    hr->offload = 2;
    MHD_resume_connection(hr->conn);
    atomic_fetch_sub(&s->deferrable, 1); /* last: bv_http_stop may free the daemon after this */
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    (void)url;
    (void)version;
    bv_http_server *s = cls;
    http_req *hr = *con_cls;
    if (!hr) return MHD_NO;   /* uri_log_cb always sets it */

    if (!hr->started) {
        hr->started = true;
        first_call(s, conn, hr, method);
        if (hr->error_status == 413) return queue_error(conn, hr);
        return MHD_YES;
    }
    if (hr->queued) {          /* early 413: MHD drops the rest */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!hr->error_status && bv_buf_append(&hr->body, upload_data, *upload_data_size) != BV_OK) {
            set_error(hr, 413, "too-costly", "request body too large");
            bv_buf_free(&hr->body);
            *upload_data_size = 0;
            /* Try to answer at once (MHD closes the connection and stops reading); if MHD refuses
             * a response in the middle of a body, the rest is discarded and 413 goes at the end. */
            /* MHD 0.9.75 refuses a response in the middle of a body (measured), so the rest is
             * read and dropped and the 413 goes at the end, keeping the connection. */
            queue_error(conn, hr);
            return MHD_YES;
        }
        if (hr->error_status) {
            hr->discarded += *upload_data_size;
            if (hr->discarded > HTTP_MAX_DISCARD) return MHD_NO;   /* stop reading: close */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    /* whole request received */
    if (hr->error_status) return queue_error(conn, hr);
    if (strcmp(method, "OPTIONS") == 0 && bv_request_header(&hr->req, "Origin") &&
        bv_request_header(&hr->req, "Access-Control-Request-Method"))
        return answer_preflight(conn, hr);
    if (hr->offload == 2) {
        hr->queued = true;
        return send_response(conn, hr, &hr->resp);
    }
    if (hr->offload == 1) return MHD_YES;
    if (s->ws_hub && strcmp(hr->req.path, s->ws_path) == 0) return ws_upgrade(s, conn, hr);
    bv_request *r = &hr->req;
    r->body = bv_buf_cstr(&hr->body);
    r->body_len = hr->body.len;
    bool writes = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
    if (writes && s->write_inline && s->write_inline(s->ctx, r)) {
        pthread_mutex_lock(&s->mu);
        bool may_defer = !s->stopping; /* bv_http_stop counts on no new deferral once stopping */
        if (may_defer) atomic_fetch_add(&s->deferrable, 1);
        pthread_mutex_unlock(&s->mu);
        if (may_defer) return run_inline(s, conn, hr);
    }
    if (s->n_workers && writes) {
        pthread_mutex_lock(&s->mu);
        /* Once the workers are stopping nobody would resume a suspended connection (and MHD aborts
         * when it stops with one): a request on a kept-alive connection is answered here instead. */
        if (!s->stopping) {
            hr->offload = 1;
            hr->job.conn = conn;
            hr->job.hr = hr;
            hr->job.next = NULL;
            MHD_suspend_connection(conn);
            if (s->tail) s->tail->next = &hr->job; else s->head = &hr->job;
            s->tail = &hr->job;
            pthread_mutex_unlock(&s->mu);
            pthread_cond_signal(&s->cv); /* after the unlock: the woken worker needs s->mu */
            return MHD_YES;
        }
        pthread_mutex_unlock(&s->mu);
    }
    bv_response resp;
    response_init(&resp, hr->arena);
    s->handler(s->ctx, r, &resp);
    hr->queued = true;
    return send_response(conn, hr, &resp);
}

__attribute__((format(printf, 2, 0)))
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    bv_log(BV_LOG_WARN, "http: %s", msg);
}

/* ---------------------------------------------------------------- start / stop */

/* "HOST:PORT" or "[V6]:PORT" -> sockaddr. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sl, bool *v6,
                        char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (!listen || !*listen) { snprintf(err, errlen, "empty listen address"); return BV_EINVAL; }
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - listen - 1) >= sizeof host) {
            snprintf(err, errlen, "bad listen address '%s' (want [IPv6]:PORT)", listen);
            return BV_EINVAL;
        }
        memcpy(host, listen + 1, (size_t)(rb - listen - 1));
        host[rb - listen - 1] = '\0';
        port = rb + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host ||
            memchr(listen, ':', (size_t)(colon - listen))) {
            snprintf(err, errlen, "bad listen address '%s' (want HOST:PORT)", listen);
            return BV_EINVAL;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = colon + 1;
    }
    uint64_t pv;
    if (bv_str_to_u64(port, strlen(port), 65535, &pv) != BV_OK) {
        snprintf(err, errlen, "bad port in listen address '%s'", listen);
        return BV_EINVAL;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve listen host '%s': %s", host, gai_strerror(rc));
        if (res) freeaddrinfo(res);
        return BV_EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return BV_OK;
}

static void *worker_main(void *arg)
{
    bv_thread_name("bv-http-write");
    bv_http_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
        http_job *j = s->head;
        if (!j) { pthread_mutex_unlock(&s->mu); return NULL; }
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        http_req *hr = j->hr;
        response_init(&hr->resp, hr->arena);
        s->handler(s->ctx, &hr->req, &hr->resp);
        hr->offload = 2;
        MHD_resume_connection(j->conn);
    }
}

/* What bv_http_start allocated besides the daemon and the worker threads. */
static void server_free(bv_http_server *s)
{
    free(s->workers);
    bv__ratelimit_free(s->rl);
    free(s->tls_cert);
    free(s->tls_key);
    bv__ws_hub_free(s->ws_hub);
    free(s->ws_path);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int bv_http_start(const bv_http_options *opt, bv_http_handler handler, void *ctx, bv_http_server **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    bool v6 = false;
    int rc = parse_listen(opt->listen, &ss, &sl, &v6, err, errlen);
    if (rc) return rc;
    (void)sl;

    unsigned threads = opt->threads;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    unsigned max_conn = opt->max_connections ? opt->max_connections : BV_MAX_CONNECTIONS;
    if (max_conn < threads) max_conn = threads;   /* MHD splits the limit per pool thread */

    bv_http_server *s = bv_calloc(1, sizeof *s);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->open_conns, 0);
    s->max_conn = max_conn;
    /* MHD's own hard limit is higher, so that connections past max_conn still get a 503 */
    unsigned mhd_max_conn = max_conn + (max_conn / 8 > 64 ? max_conn / 8 : 64);
    s->handler = handler;
    s->ctx = ctx;
    s->max_body = opt->max_body ? opt->max_body : BV_MAX_BODY_BYTES;

    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->n_workers = opt->write_workers ? opt->write_workers : 32;
    s->write_inline = opt->write_inline;

    s->cors = opt->cors_origins;
    s->n_cors = opt->n_cors_origins;
    s->rate_loopback = opt->rate_loopback;
    double rate = opt->rate_per_s == 0 ? BV_RATE_PER_S : opt->rate_per_s;
    double burst = opt->rate_burst > 0 ? opt->rate_burst : 2 * rate;
    s->rl = rate > 0 ? bv__ratelimit_new(rate, burst) : NULL;
    if ((opt->tls_cert_file != NULL) != (opt->tls_key_file != NULL)) {
        snprintf(err, errlen, "TLS needs both a certificate and a key");
        goto fail_early;
    }
    if (opt->tls_cert_file) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "this libmicrohttpd has no TLS support");
            goto fail_early;
        }
        size_t n;
        s->tls_cert = bv_read_text_file(opt->tls_cert_file, 1u << 20, &n);
        s->tls_key = bv_read_text_file(opt->tls_key_file, 1u << 20, &n);
        if (!s->tls_cert || !s->tls_key) {
            snprintf(err, errlen, "cannot read the TLS certificate or key file");
            goto fail_early;
        }
        s->tls = true;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (s->tls) flags |= MHD_USE_TLS;
    if (opt->ws) {
        if (MHD_is_feature_supported(MHD_FEATURE_UPGRADE) != MHD_YES) {
            snprintf(err, errlen, "this libmicrohttpd cannot upgrade connections (WebSocket)");
            goto fail_early;
        }
        flags |= MHD_ALLOW_UPGRADE;
        s->ws_path = bv_strdup(opt->ws->path);
        s->ws_hub = bv__ws_hub_new(opt->ws, ws_close_handle);
    }
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    if (v6) flags |= MHD_USE_IPv6;
    /* MHD warns about a pool of 1: give the option only for 2+ threads */
    struct MHD_OptionItem pool[] = {
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    /* TLS 1.2 and 1.3 only (GnuTLS priority string); nothing older is offered or accepted. */
    struct MHD_OptionItem tls_opts[] = {
        {s->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, s->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    unsigned timeout = opt->timeout_s ? opt->timeout_s : BV_CONNECTION_TIMEOUT_S;
    s->daemon = MHD_start_daemon(flags, 0, accept_policy_cb, s, access_cb, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                 MHD_OPTION_ARRAY, pool,
                                 MHD_OPTION_ARRAY, tls_opts,
                                 MHD_OPTION_CONNECTION_LIMIT, mhd_max_conn,
                                 MHD_OPTION_NOTIFY_CONNECTION, notify_conn_cb, s,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY_LIMIT,
                                 MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                                 MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, s,
                                 MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, s->tls ? "cannot listen on %s (address in use, or the TLS certificate/key is invalid)"
                                     : "cannot listen on %s (address in use or not available)", opt->listen);
        goto fail_early;
    }
    s->workers = bv_calloc(s->n_workers, sizeof *s->workers);
    for (unsigned i = 0; i < s->n_workers; i++)
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) bv_panic("cannot start HTTP workers");
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? (int)di->port : 0;
    char host[INET6_ADDRSTRLEN] = "127.0.0.1";
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)&ss)->sin_addr, host, sizeof host);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr, host, sizeof host);
    snprintf(s->fallback_base, sizeof s->fallback_base, v6 ? "%s://[%s]:%d" : "%s://%s:%d", s->tls ? "https" : "http",
             host, s->port);
    *out = s;
    return BV_OK;
fail_early:
    server_free(s);
    return BV_EINVAL;
}

int bv_http_in_flight(bv_http_server *s) { return atomic_load(&s->in_flight); }

int bv_http_port(const bv_http_server *s) { return s ? s->port : 0; }

static void stop_workers(bv_http_server *s)
{
    pthread_mutex_lock(&s->mu);
    bool already = s->stopping;
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (already) return;
    for (unsigned i = 0; i < s->n_workers && s->workers; i++) pthread_join(s->workers[i], NULL);
}

void bv_http_stop(bv_http_server *s)
{
    if (!s) return;
    if (s->daemon) {
        atomic_store(&s->refusing, true);   /* stop accepting (see accept_policy_cb) */
        /* WebSocket connections end now (1001 going away): MHD must not hold upgraded sockets
         * when it stops. */
        bv__ws_hub_stop(s->ws_hub);
        /* Let requests in progress be answered (bounded), then close everything. */
        for (int i = 0; i < HTTP_STOP_WAIT_MS / 5 && atomic_load(&s->in_flight) > 0; i++) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        /* Workers drain their queue and resume their connections while the daemon still runs,
         * so no worker touches a connection after MHD_stop_daemon has freed it. */
        stop_workers(s);
        /* Deferred writes are answered by the store once durable, whatever the clients do: wait for
         * every one (no bound), since each will resume its connection on this daemon. */
        while (atomic_load(&s->deferrable) > 0) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        for (int i = 0; i < HTTP_STOP_WAIT_MS / 5 && atomic_load(&s->in_flight) > 0; i++) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        MHD_stop_daemon(s->daemon);
    }
    stop_workers(s);
    server_free(s);
}
