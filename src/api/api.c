/* Routing and response helpers: the HTTP edge maps errors to status codes and OperationOutcomes. */
#include "internal.h"
#include "authz.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>

bv_api *bv_api_new(const bv_api_options *opt)
{
    bv_api *api = bv_calloc(1, sizeof *api);
    api->store = opt->store;
    api->check_nhs_number = opt->check_nhs_number;
    snprintf(api->base_path, sizeof api->base_path, "%s", opt->base_path ? opt->base_path : "/fhir");
    api_build_capability(api);
    return api;
}

void bv_api_free(bv_api *api)
{
    if (!api) return;
    api_authz_free(api);
    free(api->capability);
    free(api);
}

/* ---- responses ---- */
void api_send_json(api_ctx *c, int status, const json_value *v)
{
    c->resp->status = status;
    bv_buf_reset(&c->resp->body);
    json_write(&c->resp->body, v, c->pretty);
}

void api_send_outcome(api_ctx *c, int status, const bv_outcome *oo)
{
    api_send_json(c, status, bv_outcome_to_json(oo));
}

void api_error(api_ctx *c, int status, const char *code, const char *expr, const char *fmt, ...)
{
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bv_outcome_add(&oo, status >= 500 ? BV_SEV_FATAL : BV_SEV_ERROR, code, expr, "%s", msg);
    api_send_outcome(c, status, &oo);
}

void api_send_raw(api_ctx *c, int status, const char *body, size_t len)
{
    c->resp->status = status;
    bv_buf_reset(&c->resp->body);
    if (c->pretty) {
        json_value *v;
        json_error err;
        if (json_parse(c->a, body, len, NULL, &v, &err) == BV_OK) {
            json_write(&c->resp->body, v, true);
            return;
        }
    }
    bv_buf_append(&c->resp->body, body, len);
}

void api_version_headers(api_ctx *c, const bv_record *r)
{
    char etag[40], date[40];
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)r->version);
    bv_format_http_date(r->last_updated_ms, date, sizeof date);
    bv_response_header(c->resp, "ETag", etag);
    bv_response_header(c->resp, "Last-Modified", date);
}

int api_status_for_outcome(const bv_outcome *oo)
{
    for (size_t i = 0; i < oo->n; i++) {
        const bv_issue *is = &oo->issues[i];
        if (is->severity > BV_SEV_ERROR) continue;
        /* Core-specification invariants (narrative txt-1/txt-2, dom-2, dom-4) are "basic FHIR
         * validation rules": 400. Profile and business rules (UK Core NHS number): 422. */
        if (bv_streq(is->code, "business-rule")) return 422;
    }
    return 400;
}

const char *api_query(const api_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->req->n_query; i++)
        if (strcmp(c->req->query[i].name, name) == 0) return c->req->query[i].value;
    return NULL;
}

const char *api_header(const api_ctx *c, const char *name) { return bv_request_header(c->req, name); }

int api_parse_etag(const char *s, int64_t *version)
{
    *version = 0;
    if (!s) return BV_OK;
    while (*s == ' ') s++;
    if (strncmp(s, "W/", 2) == 0) s += 2;
    if (*s == '"') s++;
    size_t n = strspn(s, "0123456789");
    uint64_t v;
    if (n == 0 || bv_str_to_u64(s, n, INT64_MAX, &v) || v == 0) return BV_EINVAL;
    *version = (int64_t)v;
    return BV_OK;
}

static bool is_format_param(const char *name)
{
    return strcmp(name, "_format") == 0 || strcmp(name, "_pretty") == 0;
}

void api_request_params(api_ctx *c, bv_param **out, size_t *n)
{
    bv_param *ps = bv_arena_calloc(c->a, c->req->n_query + 1, sizeof *ps);
    size_t k = 0;
    for (size_t i = 0; i < c->req->n_query; i++) {
        if (is_format_param(c->req->query[i].name)) continue;
        ps[k].name = c->req->query[i].name;
        ps[k].value = c->req->query[i].value;
        k++;
    }
    *out = ps;
    *n = k;
}

/* ---- content negotiation ---- */
static bool mime_is_json(const char *v)
{
    /* Accept application/fhir+json, application/json, json (the _format shorthand), with parameters. */
    while (*v == ' ') v++;
    size_t n = strcspn(v, ";, ");
    return bv_strneq_lit(v, n, "application/fhir+json") || bv_strneq_lit(v, n, "application/json") ||
           bv_strneq_lit(v, n, "json") || bv_strneq_lit(v, n, "application/json-patch+json") ||
           bv_strneq_lit(v, n, "*/*") || bv_strneq_lit(v, n, "application/*") ||
           bv_strneq_lit(v, n, "text/json");
}

static bool mime_is_xml(const char *v)
{
    while (*v == ' ') v++;
    size_t n = strcspn(v, ";, ");
    return bv_strneq_lit(v, n, "application/fhir+xml") || bv_strneq_lit(v, n, "application/xml") ||
           bv_strneq_lit(v, n, "xml") || bv_strneq_lit(v, n, "text/xml");
}

/* 406 when the client wants only XML (or something else we cannot produce). */
static bool accept_ok(api_ctx *c)
{
    const char *fmt = api_query(c, "_format");
    if (fmt) return mime_is_json(fmt) && !mime_is_xml(fmt);
    const char *acc = api_header(c, "Accept");
    if (!acc || !*acc) return true;
    const char *p = acc;
    while (*p) {
        if (mime_is_json(p)) return true;
        const char *comma = strchr(p, ',');
        if (!comma) break;
        p = comma + 1;
    }
    return false;
}

static bool content_type_ok(api_ctx *c, bool patch)
{
    const char *ct = api_header(c, "Content-Type");
    if (!ct) return true; /* lenient: many clients omit it for JSON */
    if (patch) {
        while (*ct == ' ') ct++;
        size_t n = strcspn(ct, "; ");
        return bv_strneq_lit(ct, n, "application/json-patch+json") || bv_strneq_lit(ct, n, "application/fhir+json") ||
               bv_strneq_lit(ct, n, "application/json");
    }
    return mime_is_json(ct) && !mime_is_xml(ct);
}

/* POST [base|type]/_search: the form body's parameters, merged with any in the URL (the
 * specification allows both). */
static void search_by_post(api_ctx *c, const char *type)
{
    bv_param *ps; size_t n;
    if (bv_fhir_parse_query_string(c->a, c->req->body, &ps, &n)) {
        api_error(c, 400, "invalid", NULL, "malformed form body");
        return;
    }
    bv_param *qp; size_t qn;
    api_request_params(c, &qp, &qn);
    bv_param *all = bv_arena_calloc(c->a, n + qn + 1, sizeof *all);
    memcpy(all, qp, qn * sizeof *all);
    memcpy(all + qn, ps, n * sizeof *all);
    api_search(c, type, all, n + qn);
}

/* ---- routing ---- */
static bool segment_is_op(const char *s) { return s && s[0] == '$'; }

/* The path after the FHIR base ("" or "/..."), or NULL when it is not under the base. */
static const char *path_in_base(const bv_api *api, const char *path)
{
    size_t bl = strlen(api->base_path);
    if (strncmp(path, api->base_path, bl) != 0 || (path[bl] != '/' && path[bl] != '\0')) return NULL;
    return path + bl;
}

/* /healthz "durability": counts and sync times of the durable-write path since the start, no
 * patient data (docs/operations.md, "Health"). The histogram lists non-empty buckets as
 * [exclusive upper limit in us (null: unbounded), count]. */
static void health_durability(bv_buf *b, bv_store *s)
{
    if (!s) return;
    bv_store_durability d;
    bv_store_durability_get(s, &d);
    bv_buf_printf(b,
                  ",\"durability\":{\"groups\":%llu,\"writes\":%llu,\"failedCommits\":%llu,\"syncs\":%llu,"
                  "\"syncTotalUs\":%llu,\"syncMeanUs\":%llu,\"syncP50Us\":%llu,\"syncP99Us\":%llu,\"syncMaxUs\":%llu,\"syncHistogramUs\":[",
                  (unsigned long long)d.groups, (unsigned long long)d.units, (unsigned long long)d.commit_failures,
                  (unsigned long long)d.syncs, (unsigned long long)d.sync_us_total,
                  (unsigned long long)(d.syncs ? d.sync_us_total / d.syncs : 0),
                  (unsigned long long)bv_store_sync_quantile_us(d.sync_hist, 0.5),
                  (unsigned long long)bv_store_sync_quantile_us(d.sync_hist, 0.99), (unsigned long long)d.sync_us_max);
    const char *sep = "";
    for (int i = 0; i < BV_SYNC_BUCKETS; i++) {
        if (!d.sync_hist[i]) continue;
        uint64_t limit = bv_store_sync_bucket_limit_us(i);
        if (limit == UINT64_MAX) bv_buf_printf(b, "%s[null,%llu]", sep, (unsigned long long)d.sync_hist[i]);
        else bv_buf_printf(b, "%s[%llu,%llu]", sep, (unsigned long long)limit, (unsigned long long)d.sync_hist[i]);
        sep = ",";
    }
    bv_buf_puts(b, "]}");
}

static void route(api_ctx *c)
{
    bv_request *req = c->req;
    const char *m = req->method;
    if (strcmp(req->path, BV_API_HEALTH_PATH) == 0) {
        c->resp->content_type = "application/json";
        if (bv_store_healthy(c->api->store)) {
            bv_buf_puts(&c->resp->body, "{\"status\":\"ok\"");
            c->resp->status = 200;
        } else {
            /* a durable sync failed: writes are refused until an operator restarts the server */
            bv_buf_puts(&c->resp->body, "{\"status\":\"failed\",\"reason\":\"storage sync failed; restart required\"");
            c->resp->status = 503;
        }
        health_durability(&c->resp->body, c->api->store);
        /* resident size, and how often the idle server gave its heap back (docs/operations.md, "Memory") */
        bv_buf_printf(&c->resp->body, ",\"memory\":{\"rssKb\":%ld,\"heapTrims\":%lu}}", bv_rss_kb(), bv_heap_trims());
        return;
    }
    const char *rest = path_in_base(c->api, req->path);
    if (!rest) {
        api_error(c, 404, "not-found", NULL, "no route for %s", req->path);
        return;
    }
    /* split the rest into at most 5 segments */
    char *segs[6] = {0};
    size_t ns = 0;
    char *copy = bv_arena_strdup(c->a, rest);
    char *p = copy;
    while (*p == '/') p++;
    while (*p) {
        if (ns == 6) { api_error(c, 404, "not-found", NULL, "no route for %s", req->path); return; }
        segs[ns++] = p;
        char *slash = strchr(p, '/');
        /* dot segments ("../", "%2e%2e" once decoded) never name anything: refuse rather than route */
        if (p[0] == '.' && (p[1] == '\0' || p[1] == '/' || (p[1] == '.' && (p[2] == '\0' || p[2] == '/')))) {
            api_error(c, 400, "invalid", NULL, "path segments '.' and '..' are not allowed");
            return;
        }
        if (!slash) break;
        *slash = '\0';
        p = slash + 1;
        if (!*p) break;
    }
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    bool post = strcmp(m, "POST") == 0, put = strcmp(m, "PUT") == 0;
    bool del = strcmp(m, "DELETE") == 0, patch = strcmp(m, "PATCH") == 0;

    if (!accept_ok(c)) {
        api_error(c, 406, "not-supported", NULL, "only JSON is supported (application/fhir+json)");
        return;
    }
    /* POST [type]/_search carries its parameters as an HTML form (FHIR R4 3.1.0.1.5 "search"). */
    bool search_post = post && ((ns == 1 && strcmp(segs[0], "_search") == 0) ||
                                (ns == 2 && strcmp(segs[1], "_search") == 0) ||
                                (ns == 4 && strcmp(segs[3], "_search") == 0));
    if (search_post) {
        const char *ct = api_header(c, "Content-Type");
        if (ct && !bv_starts_with(ct, "application/x-www-form-urlencoded")) {
            api_error(c, 415, "not-supported", NULL,
                      "unsupported Content-Type '%s': POST _search takes application/x-www-form-urlencoded", ct);
            return;
        }
    } else if ((post || put || patch) && !content_type_ok(c, patch)) {
        api_error(c, 415, "not-supported", NULL, "unsupported Content-Type '%s': send application/fhir+json",
                  api_header(c, "Content-Type"));
        return;
    }

    if (ns == 0) {
        if (post) { api_bundle(c); return; }
        if (get) {
            bv_param *ps; size_t n;
            api_request_params(c, &ps, &n);
            api_search(c, NULL, ps, n);
            return;
        }
        goto not_allowed;
    }
    if (ns == 1 && strcmp(segs[0], "metadata") == 0) {
        if (get) { api_capability(c); return; }
        goto not_allowed;
    }
    if (ns == 1 && strcmp(segs[0], "_history") == 0) {
        if (get) { api_history(c, NULL, NULL); return; }
        goto not_allowed;
    }
    if (ns == 1 && strcmp(segs[0], "_search") == 0) {
        if (post) { search_by_post(c, NULL); return; }
        goto not_allowed;
    }
    const char *type = segs[0];
    if (!fhir_is_resource_type(type)) {
        if (segment_is_op(type)) {
            api_error(c, 501, "not-supported", NULL, "operation %s is not supported", type);
            return;
        }
        api_error(c, 404, "not-supported", NULL, "unknown resource type '%s'", type);
        return;
    }
    if (ns == 1) {
        if (get) {
            bv_param *ps; size_t n;
            api_request_params(c, &ps, &n);
            api_search(c, type, ps, n);
        } else if (post) api_create(c, type);
        else if (put) api_conditional_update(c, type);
        else if (del) api_conditional_delete(c, type);
        else if (patch) api_error(c, 501, "not-supported", NULL, "conditional patch is not supported");
        else goto not_allowed;
        return;
    }
    const char *s1 = segs[1];
    if (ns == 2 && strcmp(s1, "_search") == 0) {
        if (post) { search_by_post(c, type); return; }
        goto not_allowed;
    }
    if (ns == 2 && strcmp(s1, "_history") == 0) {
        if (get) { api_history(c, type, NULL); return; }
        goto not_allowed;
    }
    if (ns == 2 && strcmp(s1, "$validate") == 0) {
        if (post) { api_validate_op(c, type, NULL); return; }
        goto not_allowed;
    }
    if (segment_is_op(s1)) {
        api_error(c, 501, "not-supported", NULL, "operation %s is not supported on %s", s1, type);
        return;
    }
    if (!bv_fhir_valid_id(s1)) {
        api_error(c, 400, "invalid", NULL, "invalid resource id '%.80s' (1-64 of A-Z a-z 0-9 - .)", s1);
        return;
    }
    const char *id = s1;
    if (ns == 2) {
        if (get) api_read(c, type, id);
        else if (put) api_update(c, type, id);
        else if (del) api_delete(c, type, id);
        else if (patch) api_patch(c, type, id);
        else goto not_allowed;
        return;
    }
    if (ns == 3 && strcmp(segs[2], "_history") == 0) {
        if (get) { api_history(c, type, id); return; }
        goto not_allowed;
    }
    if (ns == 3 && strcmp(segs[2], "$validate") == 0) {
        if (post) { api_validate_op(c, type, id); return; }
        goto not_allowed;
    }
    if (ns == 4 && strcmp(segs[2], "_history") == 0) {
        if (get) { api_vread(c, type, id, segs[3]); return; }
        goto not_allowed;
    }
    if (ns == 3 && strcmp(segs[2], "$everything") == 0) {
        if (get) {
            bv_param *ps; size_t n;
            api_request_params(c, &ps, &n);
            api_everything(c, type, id, ps, n);
            return;
        }
        goto not_allowed;
    }
    if (ns == 3 && segment_is_op(segs[2])) {
        api_error(c, 501, "not-supported", NULL, "operation %s is not supported", segs[2]);
        return;
    }
    /* compartment search: [Patient]/[id]/[type] (GET) and [Patient]/[id]/[type]/_search (POST) */
    if ((ns == 3 || (ns == 4 && strcmp(segs[3], "_search") == 0)) &&
        (strcmp(segs[2], "*") == 0 || fhir_is_resource_type(segs[2]))) {
        bv_param *ps; size_t n;
        if (ns == 3 && get) {
            api_request_params(c, &ps, &n);
        } else if (ns == 4 && post) {
            bv_param *fp; size_t fn;
            if (bv_fhir_parse_query_string(c->a, c->req->body, &fp, &fn)) {
                api_error(c, 400, "invalid", NULL, "malformed form body");
                return;
            }
            api_request_params(c, &ps, &n);
            bv_param *all = bv_arena_calloc(c->a, n + fn + 1, sizeof *all);
            memcpy(all, ps, n * sizeof *all);
            memcpy(all + n, fp, fn * sizeof *all);
            ps = all;
            n += fn;
        } else {
            goto not_allowed;
        }
        api_compartment_search(c, type, id, segs[2], ps, n);
        return;
    }
    if (ns == 3) {
        api_error(c, 404, "not-found", NULL, "unknown resource type '%.80s' in a compartment search", segs[2]);
        return;
    }
    api_error(c, 404, "not-found", NULL, "no route for %s", req->path);
    return;
not_allowed:
    api_error(c, 405, "not-supported", NULL, "method %s is not allowed on %s", m, req->path);
}

static bool pretty_requested(const bv_request *req)
{
    for (size_t i = 0; i < req->n_query; i++)
        if (strcmp(req->query[i].name, "_pretty") == 0) return strcmp(req->query[i].value, "true") == 0;
    return false;
}

void bv_api_handle(void *ctx, bv_request *req, bv_response *resp)
{
    /* In the request arena, not on this stack: a deferred write finishes with it later. */
    api_ctx *c = bv_arena_calloc(req->arena, 1, sizeof *c);
    *c = (api_ctx){
        .api = ctx, .req = req, .resp = resp, .a = req->arena,
        .pretty = pretty_requested(req),
    };
    c->base = bv_arena_printf(req->arena, "%s%s", req->base_url ? req->base_url : "", c->api->base_path);
    resp->status = 200;
    /* Anything but a read or a search may write: the store's writer waits briefly for it, so that
     * concurrent writes share one commit and one sync (bv_store_announce). Not a batch or
     * transaction: reading and checking one takes milliseconds, far longer than the writer waits,
     * which then only delayed every other commit (measured: a fifth of the writer's time during
     * ingest). */
    size_t plen = strlen(req->path);
    const char *rest = path_in_base(c->api, req->path);
    bool bundle = rest && (!*rest || strcmp(rest, "/") == 0);
    bool may_write = strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0 && !bundle &&
                     !(plen >= 8 && strcmp(req->path + plen - 8, "/_search") == 0);
    if (may_write) bv_store_announce(c->api->store);
    if (authn_begin(c) == 0 && !authsrv_route(c)) route(c);
    if (!resp->deferred) authn_end(c); /* else api_deferred_done, once the write is answered */
    if (may_write) bv_store_unannounce(c->api->store);
}

void api_deferred_done(api_ctx *c)
{
    authn_end(c);
    bv_http_complete(c->req);
}

bool bv_api_write_inline(const bv_api *api, const bv_request *req)
{
    const char *m = req->method;
    bool post = strcmp(m, "POST") == 0;
    if (!post && strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0 && strcmp(m, "PATCH") != 0) return false;
    const char *rest = path_in_base(api, req->path);
    if (!rest || *rest != '/') return false;
    const char *type = rest + 1;
    const char *slash = strchr(type, '/');
    size_t tl = slash ? (size_t)(slash - type) : strlen(type);
    char tbuf[64];
    if (tl == 0 || tl >= sizeof tbuf) return false;
    memcpy(tbuf, type, tl);
    tbuf[tl] = '\0';
    if (!fhir_is_resource_type(tbuf)) return false;
    if (!slash) return post; /* create; the conditional forms of PUT and DELETE search first */
    /* update, delete or patch of one instance ($operations, _history and _search are not ids) */
    return !post && bv_fhir_valid_id(slash + 1);
}
