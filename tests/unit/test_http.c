/* Integration tests for src/http: a real libmicrohttpd server on 127.0.0.1 (port 0) with an echo
 * handler, driven by plain sockets. Every socket has send/receive timeouts; every loop is bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <pthread.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bevan/http.h"
#include "../../src/http/transport.h"

#define MAX_BODY 1000

static bv_http_server *srv;
static int port;

/* Echo: method, path, raw query, each decoded query pair, base_url, body length, then the body. */
static void echo(void *ctx, bv_request *req, bv_response *resp)
{
    (void)ctx;
    bv_buf_printf(&resp->body, "method=%s\npath=%s\nraw=%s\n", req->method, req->path, req->raw_query);
    for (size_t i = 0; i < req->n_query; i++)
        bv_buf_printf(&resp->body, "q:%s=%s\n", req->query[i].name, req->query[i].value);
    bv_buf_printf(&resp->body, "base=%s\npeer=%s\nxh=%s\nlen=%zu\nbody=%s", req->base_url, req->peer,
                  bv_request_header(req, "x-test") ? bv_request_header(req, "x-test") : "-", req->body_len,
                  req->body);
    resp->content_type = "text/plain";
    bv_response_header(resp, "X-Echo", "1");
}

static int setup(void **state)
{
    (void)state;
    bv_http_options o = {.listen = "127.0.0.1:0", .threads = 2, .max_body = MAX_BODY, .timeout_s = 10};
    char err[256] = "";
    int rc = bv_http_start(&o, echo, NULL, &srv, err, sizeof err);
    if (rc != BV_OK) {
        fprintf(stderr, "start: %s\n", err);
        return -1;
    }
    port = bv_http_port(srv);
    return port > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    bv_http_stop(srv);
    srv = NULL;
    return 0;
}

/* ---- tiny HTTP client ---- */

/* case-insensitive strstr (strcasestr is a GNU extension) */
static const char *ci_find(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0) return p;
    return NULL;
}

/* A connection to 127.0.0.1:p with 5 s timeouts, or -1. Asserts nothing: usable off the test's thread. */
static int connect_port(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)p);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_local(void)
{
    int fd = connect_port(port);
    assert_true(fd >= 0);
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < 10000 && off < len; i++) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) return;   /* the server may close early (413): the test checks the answer */
        off += (size_t)n;
    }
}

typedef struct {
    int status;
    char head[8192];
    char *body;       /* malloc'd, NUL-terminated */
    size_t body_len;
    bool closed;      /* server closed the connection after the response */
} http_resp;

static size_t content_length(const char *head)
{
    const char *p = head;
    for (int i = 0; i < 200 && (p = strchr(p, '\n')) != NULL; i++) {
        p++;
        if (strncasecmp(p, "Content-Length:", 15) == 0) {
            uint64_t v = 0;
            const char *q = p + 15;
            while (*q == ' ') q++;
            const char *e = q;
            while (*e >= '0' && *e <= '9') e++;
            if (bv_str_to_u64(q, (size_t)(e - q), UINT64_MAX, &v) == BV_OK) return (size_t)v;
        }
    }
    return 0;
}

/* Reads one response. no_body: HEAD (Content-Length present but no body follows). */
static int read_resp(int fd, http_resp *r, bool no_body)
{
    memset(r, 0, sizeof *r);
    size_t hl = 0;
    char *end = NULL;
    for (int i = 0; i < 10000 && !end; i++) {   /* headers, one byte at a time: keeps pipelining exact */
        if (hl + 1 >= sizeof r->head) return -1;
        ssize_t n = recv(fd, r->head + hl, 1, 0);
        if (n <= 0) return -1;
        hl++;
        r->head[hl] = '\0';
        if (hl >= 4 && memcmp(r->head + hl - 4, "\r\n\r\n", 4) == 0) end = r->head + hl;
    }
    if (!end) return -1;
    if (strncmp(r->head, "HTTP/1.", 7) != 0 || r->head[8] != ' ') return -1;
    uint64_t st = 0;
    if (bv_str_to_u64(r->head + 9, 3, 999, &st) != BV_OK) return -1;
    r->status = (int)st;
    size_t cl = no_body ? 0 : content_length(r->head);
    r->body = calloc(1, cl + 1);
    size_t got = 0;
    for (int i = 0; i < 100000 && got < cl; i++) {
        ssize_t n = recv(fd, r->body + got, cl - got, 0);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    r->body_len = got;
    r->closed = ci_find(r->head, "\r\nConnection: close") != NULL;
    return 0;
}

static void resp_free(http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One request on a fresh connection. */
static void roundtrip(const char *raw, size_t len, http_resp *r, bool no_body)
{
    int fd = connect_local();
    send_all(fd, raw, len);
    assert_int_equal(read_resp(fd, r, no_body), 0);
    close(fd);
}

static void get(const char *target, http_resp *r)
{
    char req[16384];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: example.test:8080\r\n\r\n", target);
    assert_true(n > 0 && (size_t)n < sizeof req);
    roundtrip(req, (size_t)n, r, false);
}

/* ---- tests ---- */

static void test_keep_alive(void **state)
{
    (void)state;
    int fd = connect_local();
    const char *req = "GET /fhir/metadata HTTP/1.1\r\nHost: a.test\r\n\r\n";
    http_resp r;
    for (int i = 0; i < 3; i++) {
        send_all(fd, req, strlen(req));
        assert_int_equal(read_resp(fd, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_false(r.closed);
        assert_non_null(strstr(r.body, "path=/fhir/metadata\n"));
        assert_non_null(ci_find(r.head, "\r\nDate: "));
        assert_non_null(ci_find(r.head, "\r\nX-Echo: 1\r\n"));
        assert_non_null(ci_find(r.head, "\r\nContent-Type: text/plain\r\n"));
        resp_free(&r);
    }
    /* a POST with a body on the same connection, then a GET again */
    const char *post = "POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello";
    send_all(fd, post, strlen(post));
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.closed);
    assert_non_null(strstr(r.body, "method=POST\n"));
    assert_non_null(strstr(r.body, "len=5\nbody=hello"));
    resp_free(&r);
    send_all(fd, req, strlen(req));
    assert_int_equal(read_resp(fd, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    close(fd);
}

static char *post_with_length(size_t n, size_t *len_out)
{
    char *buf = malloc(n + 256);
    int h = snprintf(buf, 256, "POST /fhir/Patient HTTP/1.1\r\nHost: a.test\r\nContent-Length: %zu\r\n\r\n", n);
    memset(buf + h, 'x', n);
    *len_out = (size_t)h + n;
    return buf;
}

static char *post_chunked(size_t n, size_t chunk, size_t *len_out)
{
    char *buf = malloc(n * 2 + 4096);
    size_t o = (size_t)snprintf(buf, 256, "POST /fhir/Patient HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t done = 0; done < n;) {
        size_t c = n - done < chunk ? n - done : chunk;
        o += (size_t)snprintf(buf + o, 32, "%zx\r\n", c);
        memset(buf + o, 'y', c);
        o += c;
        memcpy(buf + o, "\r\n", 2);
        o += 2;
        done += c;
    }
    memcpy(buf + o, "0\r\n\r\n", 5);
    *len_out = o + 5;
    return buf;
}

static void test_body_cap(void **state)
{
    (void)state;
    http_resp r;
    size_t len;
    char *req = post_with_length(MAX_BODY, &len);
    roundtrip(req, len, &r, false);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "len=1000\n"));
    resp_free(&r);
    free(req);

    req = post_with_length(MAX_BODY + 1, &len);
    roundtrip(req, len, &r, false);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "\"resourceType\":\"OperationOutcome\""));
    assert_non_null(strstr(r.body, "too-costly"));
    assert_non_null(ci_find(r.head, "Content-Type: application/fhir+json"));
    resp_free(&r);
    free(req);

    /* headers only: the 413 comes before any body is sent */
    const char *big = "POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 99999999999\r\n\r\n";
    roundtrip(big, strlen(big), &r, false);
    assert_int_equal(r.status, 413);
    resp_free(&r);

    req = post_chunked(MAX_BODY, 300, &len);
    roundtrip(req, len, &r, false);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "len=1000\n"));
    resp_free(&r);
    free(req);

    req = post_chunked(MAX_BODY + 1, 300, &len);
    roundtrip(req, len, &r, false);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "OperationOutcome"));
    resp_free(&r);
    free(req);

    req = post_chunked(50 * MAX_BODY, 4000, &len);
    roundtrip(req, len, &r, false);
    assert_int_equal(r.status, 413);
    assert_false(r.closed);   /* MHD read and dropped the rest: the connection stays usable */
    resp_free(&r);
    free(req);

    /* a chunked body far past the cap: after 1 MiB of dropped bytes the server hangs up */
    req = post_chunked(3u << 20, 65536, &len);
    int fd = connect_local();
    send_all(fd, req, len);
    int rc = read_resp(fd, &r, false);
    assert_true(rc != 0 || r.status == 413);
    resp_free(&r);
    close(fd);
    free(req);
}

static void test_query_order(void **state)
{
    (void)state;
    http_resp r;
    get("/fhir/Patient?b=2&a=1&b=3&&c&name%3Aexact=x&empty=", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "raw=b=2&a=1&b=3&&c&name%3Aexact=x&empty=\n"
                                   "q:b=2\nq:a=1\nq:b=3\nq:c=\nq:name:exact=x\nq:empty=\nbase="));
    resp_free(&r);
}

static void test_decoding(void **state)
{
    (void)state;
    http_resp r;
    get("/fhir/Patient/a%20b%2Fc?name=J%C3%BCrgen+Smith&x=%2B1&y=a%2Cb,c&z=%7C", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "path=/fhir/Patient/a b/c\n"));
    assert_non_null(strstr(r.body, "q:name=J\xc3\xbcrgen Smith\nq:x=+1\nq:y=a,b,c\nq:z=|\n"));
    assert_non_null(strstr(r.body, "base=http://example.test:8080\n"));
    assert_non_null(strstr(r.body, "peer=127.0.0.1\n"));
    resp_free(&r);

    get("/fhir/Patient/a%00b", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "OperationOutcome"));
    resp_free(&r);
    get("/fhir/Patient/a%zzb", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    get("/fhir/Patient?name=%4", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    get("/fhir/Patient?name=a%00", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
}

static void test_limits(void **state)
{
    (void)state;
    http_resp r;
    /* URL: exactly at the limit is fine, one over is 414 */
    char *url = malloc(BV_MAX_URL_BYTES + 2);
    memcpy(url, "/p?a=", 5);
    memset(url + 5, 'v', BV_MAX_URL_BYTES - 5);
    url[BV_MAX_URL_BYTES] = '\0';
    get(url, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    url[BV_MAX_URL_BYTES] = 'v';
    url[BV_MAX_URL_BYTES + 1] = '\0';
    get(url, &r);
    assert_int_equal(r.status, 414);
    assert_non_null(strstr(r.body, "OperationOutcome"));
    assert_false(r.closed);   /* error answers keep the connection */
    resp_free(&r);
    free(url);

    /* query parameters: 100 ok, 101 -> 400 */
    char q[2048];
    size_t o = (size_t)snprintf(q, sizeof q, "/p?");
    for (int i = 0; i < BV_MAX_QUERY_PARAMS; i++) o += (size_t)snprintf(q + o, sizeof q - o, "a=%d&", i);
    get(q, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    snprintf(q + o, sizeof q - o, "z=1");
    get(q, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "too many query parameters"));
    resp_free(&r);

    /* headers: 100 in all ok, 101 -> 431 */
    char h[8192];
    for (int total = 100; total <= 101; total++) {
        o = (size_t)snprintf(h, sizeof h, "GET /p HTTP/1.1\r\nHost: a.test\r\n");
        for (int i = 1; i < total; i++) o += (size_t)snprintf(h + o, sizeof h - o, "X-H%d: v\r\n", i);
        o += (size_t)snprintf(h + o, sizeof h - o, "\r\n");
        roundtrip(h, o, &r, false);
        assert_int_equal(r.status, total == 100 ? 200 : 431);
        resp_free(&r);
    }

    /* past MHD's 64 KB per-connection memory: MHD answers itself (431 / 414) */
    size_t big = 70000;
    char *hb = malloc(big + 256);
    o = (size_t)snprintf(hb, 256, "GET /p HTTP/1.1\r\nHost: a.test\r\nX-Big: ");
    memset(hb + o, 'a', big);
    o += big;
    memcpy(hb + o, "\r\n\r\n", 4);
    roundtrip(hb, o + 4, &r, false);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    o = (size_t)snprintf(hb, 256, "GET /");
    memset(hb + o, 'a', big);
    o += big;
    o += (size_t)snprintf(hb + o, 256, " HTTP/1.1\r\nHost: a.test\r\n\r\n");
    roundtrip(hb, o, &r, false);
    assert_int_equal(r.status, 414);
    resp_free(&r);
    /* a 40 KB bearer token fits */
    o = (size_t)snprintf(hb, 256, "GET /p HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer ");
    memset(hb + o, 'a', 40000);
    o += 40000;
    memcpy(hb + o, "\r\n\r\n", 4);
    roundtrip(hb, o + 4, &r, false);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(hb);

    const char *bad_cl = "POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 12abc\r\n\r\n";
    roundtrip(bad_cl, strlen(bad_cl), &r, false);
    assert_int_equal(r.status, 400);
    resp_free(&r);
}

static void test_head(void **state)
{
    (void)state;
    int fd = connect_local();
    const char *head = "HEAD /fhir/Patient/1 HTTP/1.1\r\nHost: a.test\r\n\r\n";
    const char *get1 = "GET /fhir/Patient/1 HTTP/1.1\r\nHost: a.test\r\n\r\n";
    http_resp r, g;
    send_all(fd, head, strlen(head));
    assert_int_equal(read_resp(fd, &r, true), 0);
    assert_int_equal(r.status, 200);
    assert_true(content_length(r.head) > 0);
    assert_int_equal(r.body_len, 0);
    /* the next response on the connection starts right away: no body followed the HEAD headers */
    send_all(fd, get1, strlen(get1));
    assert_int_equal(read_resp(fd, &g, false), 0);
    assert_int_equal(g.status, 200);
    assert_int_equal(content_length(r.head), g.body_len);
    assert_non_null(strstr(g.body, "method=GET\n"));
    resp_free(&r);
    resp_free(&g);
    close(fd);
}

static void test_header_lookup_and_fallback_base(void **state)
{
    (void)state;
    http_resp r;
    const char *req = "GET /h HTTP/1.0\r\nX-Test: hello\r\n\r\n";   /* HTTP/1.0 without Host */
    int fd = connect_local();
    send_all(fd, req, strlen(req));
    assert_int_equal(read_resp(fd, &r, false), 0);
    close(fd);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "xh=hello\n"));
    char want[64];
    snprintf(want, sizeof want, "base=http://127.0.0.1:%d\n", port);
    assert_non_null(strstr(r.body, want));
    resp_free(&r);

    /* a Host header with odd characters is not copied into links */
    const char *evil = "GET /h HTTP/1.1\r\nHost: a.test/<script>\r\n\r\n";
    roundtrip(evil, strlen(evil), &r, false);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, want));
    resp_free(&r);
}

static void test_dispatch_local(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    bv_request req;
    memset(&req, 0, sizeof req);
    req.arena = a;
    req.method = "POST";
    req.path = "/fhir/Patient";
    req.body = "{}";
    req.body_len = 2;
    bv_response resp;
    bv_http_dispatch_local(echo, NULL, &req, &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(bv_buf_cstr(&resp.body), "method=POST\npath=/fhir/Patient\n"));
    assert_non_null(strstr(bv_buf_cstr(&resp.body), "len=2\nbody={}"));
    assert_int_equal(resp.n_headers, 1);
    assert_string_equal(resp.headers[0].name, "X-Echo");
    bv_buf_free(&resp.body);
    bv_arena_free(a);
}

static void test_listen_errors(void **state)
{
    (void)state;
    bv_http_server *s = NULL;
    char err[256];
    const char *bad[] = {"", "127.0.0.1", "127.0.0.1:99999", "[::1:80", "::1:80", "127.0.0.1:x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bv_http_options o = {.listen = bad[i], .threads = 1};
        err[0] = '\0';
        assert_int_not_equal(bv_http_start(&o, echo, NULL, &s, err, sizeof err), BV_OK);
        assert_null(s);
        assert_true(err[0] != '\0');
    }
    /* the same port twice: the second start fails */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    bv_http_options o = {.listen = addr, .threads = 1};
    assert_int_not_equal(bv_http_start(&o, echo, NULL, &s, err, sizeof err), BV_OK);
    /* IPv6 loopback, when the host has it */
    bv_http_options o6 = {.listen = "[::1]:0", .threads = 1};
    if (bv_http_start(&o6, echo, NULL, &s, err, sizeof err) == BV_OK) {
        assert_true(bv_http_port(s) > 0);
        bv_http_stop(s);
    }
}

/* Stopping: a request in progress is answered, a connection opened meanwhile gets no answer. */
static void slow_echo(void *ctx, bv_request *req, bv_response *resp)
{
    if (strcmp(req->path, "/slow") == 0) {
        struct timespec ts = {0, 400 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    echo(ctx, req, resp);
}

typedef struct {
    int port;
    int rc;   /* read_resp's result; -1 also when the connection failed */
    http_resp resp;
} slow_call;

/* GET /slow on its own thread: no cmocka assertion here (they must stay on the test's thread). */
static void *get_slow(void *arg)
{
    slow_call *c = arg;
    c->rc = -1;
    int fd = connect_port(c->port);
    if (fd < 0) return NULL;
    const char *rq = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, rq, strlen(rq));
    c->rc = read_resp(fd, &c->resp, false);
    close(fd);
    return NULL;
}

static void *stop_server(void *arg)
{
    bv_http_stop(arg);
    return NULL;
}

static void test_stop_refuses_new_connections(void **state)
{
    (void)state;
    bv_http_server *s = NULL;
    char err[256];
    bv_http_options o = {.listen = "127.0.0.1:0", .threads = 2, .max_body = MAX_BODY, .timeout_s = 10};
    assert_int_equal(bv_http_start(&o, slow_echo, NULL, &s, err, sizeof err), BV_OK);
    slow_call slow = {.port = bv_http_port(s)};
    pthread_t t_slow, t_stop;
    assert_int_equal(pthread_create(&t_slow, NULL, get_slow, &slow), 0);
    for (int i = 0; i < 400 && bv_http_in_flight(s) == 0; i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(bv_http_in_flight(s), 1);
    assert_int_equal(pthread_create(&t_stop, NULL, stop_server, s), 0);
    struct timespec settle = {0, 50 * 1000 * 1000};   /* the slow request still has ~350 ms to run */
    nanosleep(&settle, NULL);
    int fd = connect_port(slow.port);
    if (fd >= 0) {   /* refused outright is fine too */
        const char *rq = "GET /late HTTP/1.1\r\nHost: x\r\n\r\n";
        send_all(fd, rq, strlen(rq));
        http_resp late;
        assert_int_equal(read_resp(fd, &late, false), -1);
        resp_free(&late);
        close(fd);
    }
    pthread_join(t_slow, NULL);
    pthread_join(t_stop, NULL);
    assert_int_equal(slow.rc, 0);
    assert_int_equal(slow.resp.status, 200);
    assert_non_null(strstr(slow.resp.body, "path=/slow"));
    resp_free(&slow.resp);
}

/* Token bucket: the burst is served, then one request per 1/rate seconds; Retry-After rounds up;
 * clients are independent; the table stays bounded with many clients. */
static void test_ratelimit(void **state)
{
    (void)state;
    bv__ratelimit *r = bv__ratelimit_new(2.0, 3.0);
    assert_non_null(r);
    int64_t t = 1000000000;
    for (int i = 0; i < 3; i++) assert_int_equal(bv__ratelimit_take(r, "10.0.0.1", t), 0);
    assert_int_equal(bv__ratelimit_take(r, "10.0.0.1", t), 1); /* needs 0.5 s: rounds up to 1 */
    assert_int_equal(bv__ratelimit_take(r, "10.0.0.2", t), 0); /* another client has its own bucket */
    t += 500000000;                                           /* 0.5 s later: one token back */
    assert_int_equal(bv__ratelimit_take(r, "10.0.0.1", t), 0);
    assert_int_equal(bv__ratelimit_take(r, "10.0.0.1", t), 1);
    t += 100LL * 1000000000;                                  /* long idle: capped at the burst */
    for (int i = 0; i < 3; i++) assert_int_equal(bv__ratelimit_take(r, "10.0.0.1", t), 0);
    assert_true(bv__ratelimit_take(r, "10.0.0.1", t) > 0);
    char ip[32];
    for (int i = 0; i < 20000; i++) { /* many clients: bounded table, no failure */
        snprintf(ip, sizeof ip, "10.1.%d.%d", i / 256, i % 256);
        assert_int_equal(bv__ratelimit_take(r, ip, t), 0);
    }
    bv__ratelimit_free(r);
    assert_null(bv__ratelimit_new(0, 10)); /* 0 = no limiter */
    bv_kv h[8];
    size_t n = bv__security_headers("text/html; charset=utf-8", true, false, h, 8);
    bool csp = false, hsts = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(h[i].name, "Content-Security-Policy") == 0) csp = strstr(h[i].value, "script-src 'self'") != NULL;
        if (strcmp(h[i].name, "Strict-Transport-Security") == 0) hsts = true;
    }
    assert_true(csp);
    assert_true(hsts);
    const char *allowed[] = {"https://a.example"};
    assert_true(bv__cors_allowed(allowed, 1, "https://a.example"));
    assert_false(bv__cors_allowed(allowed, 1, "https://a.example.evil"));
    assert_false(bv__cors_allowed(allowed, 1, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratelimit),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_query_order),
        cmocka_unit_test(test_decoding),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_header_lookup_and_fallback_base),
        cmocka_unit_test(test_dispatch_local),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_stop_refuses_new_connections),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
