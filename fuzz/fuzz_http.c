/* libFuzzer target for the whole request path in-process: the input is a request in a small text
 * form, decoded as the HTTP layer does and dispatched to the API (bv_api_handle) over a temporary
 * store, so reads, searches, writes, patches, history and bundles all run for real.
 *
 *   METHOD SP TARGET LF          e.g. "PUT /fhir/Patient/p1?_pretty=true"
 *   Name: value LF ...           headers, until an empty line
 *   LF body                      the rest
 *
 * Invariants: no crash or sanitizer report; never a 500 (bad input is a 4xx); every non-empty
 * body is JSON, and every 4xx/5xx body is an OperationOutcome. */
#include "fuzz_store_env.h"
#include "bevan/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *line(bv_arena *a, const char **p, const char *end)
{
    const char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    size_t n = (size_t)(e - s);
    if (n && s[n - 1] == '\r') n--;
    return bv_arena_strndup(a, s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    bv_api *api = fz_env();
    if (memchr(data, '\0', size)) return 0; /* the HTTP layer never passes NUL in the head; a body NUL is a JSON error */
    bv_arena *a = bv_arena_new(1 << 14);
    const char *p = (const char *)data, *end = p + size;
    const char *rl = line(a, &p, end);
    const char *sp = strchr(rl, ' ');
    if (!sp || sp == rl) { bv_arena_free(a); return 0; }
    bv_request req;
    memset(&req, 0, sizeof req);
    req.arena = a;
    req.method = bv_arena_strndup(a, rl, (size_t)(sp - rl));
    const char *target = sp + 1, *q = strchr(target, '?');
    size_t plen = q ? (size_t)(q - target) : strlen(target);
    char *path = bv_url_decode_nonul(a, target, plen, false);
    if (!path || strlen(path) == 0 || path[0] != '/' || plen > BV_MAX_URL_BYTES) { bv_arena_free(a); return 0; }
    req.path = path;
    req.raw_query = q ? q + 1 : "";
    /* query: split as the HTTP layer splits it (a bad escape is a 400 there, skipped here) */
    size_t cap = bv_query_pieces(req.raw_query);
    if (cap > BV_MAX_QUERY_PARAMS) { bv_arena_free(a); return 0; }
    bv_kv *kv = bv_arena_alloc(a, cap * sizeof *kv);
    long n = bv_query_split(a, req.raw_query, true, kv);
    if (n < 0) { bv_arena_free(a); return 0; }
    req.query = kv;
    req.n_query = (size_t)n;
    bv_kv *hs = bv_arena_alloc(a, 100 * sizeof *hs);
    size_t nh = 0;
    while (p < end) {
        const char *h = line(a, &p, end);
        if (!*h) break;
        const char *colon = strchr(h, ':');
        if (!colon || nh == 100) continue;
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        hs[nh].name = bv_arena_strndup(a, h, (size_t)(colon - h));
        hs[nh].value = v;
        nh++;
    }
    req.headers = hs;
    req.n_headers = nh;
    req.body = bv_arena_strndup(a, p, (size_t)(end - p));
    req.body_len = (size_t)(end - p);
    req.base_url = "http://127.0.0.1:8080";
    req.peer = "127.0.0.1";
    bv_response resp;
    bv_http_dispatch_local(bv_api_handle, api, &req, &resp);
    fz_check_response(resp.status, resp.body.data ? resp.body.data : "", resp.body.len);
    bv_buf_free(&resp.body);
    bv_arena_free(a);
    return 0;
}
