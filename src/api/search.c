/* Search and history: Bundles built as text around the stored bodies (never re-serialised). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

int api_conditional_search(api_ctx *c, const char *type, const char *query, bv_search **out, bv_outcome *oo)
{
    bv_param *ps;
    size_t n;
    if (api_parse_query_string(c->a, query, &ps, &n)) {
        bv_outcome_add(oo, BV_SEV_ERROR, "invalid", NULL, "malformed conditional criteria '%.200s'", query);
        return -1;
    }
    if (n == 0) {
        bv_outcome_add(oo, BV_SEV_ERROR, "invalid", NULL, "conditional criteria are empty");
        return -1;
    }
    bv_search_request *sr = bv_arena_calloc(c->a, 1, sizeof *sr);
    if (bv_fhir_parse_search(c->a, type, ps, n, true, sr, oo)) return -1;
    if (sr->search.n_ands == 0) {
        bv_outcome_add(oo, BV_SEV_ERROR, "invalid", NULL, "conditional criteria select nothing: '%.200s'", query);
        return -1;
    }
    *out = &sr->search;
    return 0;
}

static void put_encoded(bv_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~' || ch == ':' || ch == '|' || ch == ',' || ch == '$' || ch == '/')
            bv_buf_putc(b, (char)ch);
        else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            bv_buf_append(b, e, 3);
        }
    }
}

static void link_entry(bv_buf *b, bool *first, const char *rel, const char *url)
{
    if (!*first) bv_buf_putc(b, ',');
    *first = false;
    bv_buf_puts(b, "{\"relation\":");
    json_write_string(b, rel, strlen(rel));
    bv_buf_puts(b, ",\"url\":");
    json_write_string(b, url, strlen(url));
    bv_buf_putc(b, '}');
}

static const char *page_url(api_ctx *c, const char *type, const bv_search_request *sr, size_t count, size_t offset)
{
    bv_buf u;
    bv_buf_init(&u, 0);
    bv_buf_puts(&u, c->base);
    if (type) { bv_buf_putc(&u, '/'); bv_buf_puts(&u, type); }
    bv_buf_putc(&u, '?');
    for (size_t i = 0; i < sr->n_applied; i++) {
        const char *nm = sr->applied[i].name;
        if (strcmp(nm, "_count") == 0 || strcmp(nm, "_offset") == 0) continue;
        put_encoded(&u, nm);
        bv_buf_putc(&u, '=');
        put_encoded(&u, sr->applied[i].value);
        bv_buf_putc(&u, '&');
    }
    bv_buf_printf(&u, "_count=%zu&_offset=%zu", count, offset);
    const char *s = bv_arena_strndup(c->a, bv_buf_cstr(&u), u.len);
    bv_buf_free(&u);
    return s;
}

/* The Bundle was built as compact text in the response body; re-indent it for _pretty=true. */
static void finish_bundle(api_ctx *c)
{
    bv_buf *b = &c->resp->body;
    c->resp->status = 200;
    if (c->pretty) {
        size_t len = b->len;
        char *copy = bv_arena_strndup(c->a, b->data, len);
        api_send_raw(c, 200, copy, len);
    }
}

static void bundle_head(api_ctx *c, bv_buf *b, const char *kind)
{
    char uuid[40], ts[40];
    bv_uuid4(uuid);
    bv_format_instant(bv_now_ms(), ts, sizeof ts);
    bv_buf_printf(b, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"lastUpdated\":\"%s\"},\"type\":\"%s\"",
                  uuid, ts, kind);
}

static void full_url(bv_buf *b, api_ctx *c, const bv_record *r)
{
    bv_buf_puts(b, "\"fullUrl\":");
    char *u = bv_arena_printf(c->a, "%s/%s/%s", c->base, r->type, r->id);
    json_write_string(b, u, strlen(u));
}

/* A reference given as an absolute URL: under this server's base it is a local Type/id (match on
 * type and id), otherwise it is an external URL (match on the text as written). */
static void localise_references(api_ctx *c, const bv_search *s, int depth)
{
    if (!s || depth > 8) return;
    size_t bl = strlen(c->base);
    for (size_t i = 0; i < s->n_ands; i++) {
        for (size_t k = 0; k < s->ands[i].n; k++) {
            bv_pred *p = (bv_pred *)&s->ands[i].preds[k];
            localise_references(c, p->chain, depth + 1);
            localise_references(c, p->has, depth + 1);
            if (p->kind != BV_IX_REFERENCE || p->op != BV_OP_REF || !p->text || !p->ref_id) continue;
            if (strncmp(p->text, c->base, bl) == 0 && p->text[bl] == '/') p->text = NULL;
            else { p->ref_type = NULL; p->ref_id = NULL; }
        }
    }
}

void api_search(api_ctx *c, const char *type, const bv_param *params, size_t n)
{
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    const char *pref = api_header(c, "Prefer");
    bool strict = !(pref && strstr(pref, "handling=lenient"));
    bv_search_request sr;
    memset(&sr, 0, sizeof sr);
    if (bv_fhir_parse_search(c->a, type, params, n, strict, &sr, &oo)) {
        api_send_outcome(c, 400, &oo);
        return;
    }
    localise_references(c, &sr.search, 0);
    if (sr.n_includes || sr.n_revincludes) {
        api_error(c, 400, "not-supported", NULL, "_include and _revinclude are not supported yet");
        return;
    }
    bool count_only = bv_streq(sr.summary, "count");
    bool want_total = !bv_streq(sr.total, "none") || count_only;
    sr.search.want_total = want_total;
    size_t count = sr.search.count, offset = sr.search.offset;
    if (count_only) sr.search.count = 0;
    bv_record *recs = NULL;
    size_t nrec = 0;
    int64_t total = -1;
    if (bv_store_search(c->api->store, c->a, &sr.search, &recs, &nrec, &total)) {
        api_error(c, 500, "exception", NULL, "search failed");
        return;
    }
    bv_buf *b = &c->resp->body;
    bv_buf_reset(b);
    bundle_head(c, b, "searchset");
    if (want_total && total >= 0) bv_buf_printf(b, ",\"total\":%lld", (long long)total);
    bv_buf_puts(b, ",\"link\":[");
    bool first = true;
    link_entry(b, &first, "self", page_url(c, type, &sr, count, offset));
    if (!count_only) {
        link_entry(b, &first, "first", page_url(c, type, &sr, count, 0));
        if (offset > 0) link_entry(b, &first, "previous", page_url(c, type, &sr, count, offset > count ? offset - count : 0));
        bool more = total >= 0 ? (int64_t)(offset + nrec) < total : nrec == count;
        if (more && nrec > 0) link_entry(b, &first, "next", page_url(c, type, &sr, count, offset + nrec));
    }
    bv_buf_putc(b, ']');
    if (nrec) {
        bv_buf_puts(b, ",\"entry\":[");
        for (size_t i = 0; i < nrec; i++) {
            if (i) bv_buf_putc(b, ',');
            bv_buf_putc(b, '{');
            full_url(b, c, &recs[i]);
            bv_buf_puts(b, ",\"resource\":");
            if (sr.summary || sr.elements) {
                json_value *v;
                json_error jerr;
                char err[200];
                json_value *shaped = NULL;
                if (json_parse(c->a, recs[i].body, recs[i].body_len, NULL, &v, &jerr) == BV_OK)
                    shaped = api_shape_resource(c->a, v, sr.summary, sr.elements, err, sizeof err);
                if (!shaped) {
                    api_error(c, 400, "invalid", NULL, "invalid _summary/_elements");
                    return;
                }
                json_write(b, shaped, false);
            } else {
                bv_buf_append(b, recs[i].body, recs[i].body_len);
            }
            bv_buf_puts(b, ",\"search\":{\"mode\":\"match\"}}");
        }
        bv_buf_putc(b, ']');
    }
    bv_buf_putc(b, '}');
    finish_bundle(c);
}

/* ---- history ---- */
static int parse_instant_param(api_ctx *c, const char *name, const char *v, int64_t *out)
{
    int64_t lo, hi;
    if (bv_fhir_date_range(v, &lo, &hi)) {
        api_error(c, 400, "invalid", NULL, "%s must be an instant (e.g. 2024-01-02T03:04:05Z), got '%.60s'", name, v);
        return -1;
    }
    *out = lo;
    return 0;
}

void api_history(api_ctx *c, const char *type, const char *id)
{
    bv_history_query q = {.type = type, .id = id, .count = BV_DEFAULT_PAGE_COUNT};
    for (size_t i = 0; i < c->req->n_query; i++) {
        const char *nm = c->req->query[i].name, *v = c->req->query[i].value;
        if (strcmp(nm, "_count") == 0) {
            uint64_t n;
            if (bv_str_to_u64(v, strlen(v), UINT32_MAX, &n)) {
                api_error(c, 400, "invalid", NULL, "_count must be a non-negative integer");
                return;
            }
            q.count = n > BV_MAX_PAGE_COUNT ? BV_MAX_PAGE_COUNT : (size_t)n;
        } else if (strcmp(nm, "_since") == 0) {
            if (parse_instant_param(c, "_since", v, &q.since_ms)) return;
            q.has_since = true;
        } else if (strcmp(nm, "_at") == 0) {
            int64_t lo, hi;
            if (bv_fhir_date_range(v, &lo, &hi)) {
                api_error(c, 400, "invalid", NULL, "_at must be a date or instant, got '%.60s'", v);
                return;
            }
            q.at_ms = hi;
            q.has_at = true;
        } else if (strcmp(nm, "_cursor") == 0) {
            uint64_t n;
            if (bv_str_to_u64(v, strlen(v), INT64_MAX, &n)) {
                api_error(c, 400, "invalid", NULL, "invalid _cursor");
                return;
            }
            q.before_seq = (int64_t)n;
        } else if (strcmp(nm, "_format") == 0 || strcmp(nm, "_pretty") == 0) {
        } else {
            api_error(c, 400, "not-supported", NULL, "unknown history parameter '%s'", nm);
            return;
        }
    }
    bv_record *recs = NULL;
    size_t n = 0;
    int64_t total = -1;
    if (bv_store_history(c->api->store, c->a, &q, &recs, &n, &total)) {
        api_error(c, 500, "exception", NULL, "history failed");
        return;
    }
    if (id && total == 0) {
        api_error(c, 404, "not-found", NULL, "%s/%s is not known", type, id);
        return;
    }
    bv_buf *b = &c->resp->body;
    bv_buf_reset(b);
    bundle_head(c, b, "history");
    if (total >= 0) bv_buf_printf(b, ",\"total\":%lld", (long long)total);
    const char *path = id ? bv_arena_printf(c->a, "%s/%s/%s/_history", c->base, type, id)
                     : type ? bv_arena_printf(c->a, "%s/%s/_history", c->base, type)
                            : bv_arena_printf(c->a, "%s/_history", c->base);
    bv_buf_puts(b, ",\"link\":[");
    bool first = true;
    char sincebuf[64] = "", atbuf[64] = "";
    if (q.has_since) { char ts[40]; bv_format_instant(q.since_ms, ts, sizeof ts); snprintf(sincebuf, sizeof sincebuf, "&_since=%s", ts); }
    if (q.has_at) { char ts[40]; bv_format_instant(q.at_ms, ts, sizeof ts); snprintf(atbuf, sizeof atbuf, "&_at=%s", ts); }
    link_entry(b, &first, "self", bv_arena_printf(c->a, "%s?_count=%zu%s%s%s", path, q.count, sincebuf, atbuf,
                                                   q.before_seq ? bv_arena_printf(c->a, "&_cursor=%lld", (long long)q.before_seq) : ""));
    if (n == q.count && n > 0)
        link_entry(b, &first, "next", bv_arena_printf(c->a, "%s?_count=%zu%s%s&_cursor=%lld", path, q.count, sincebuf,
                                                      atbuf, (long long)recs[n - 1].seq));
    bv_buf_putc(b, ']');
    if (n) {
        bv_buf_puts(b, ",\"entry\":[");
        for (size_t i = 0; i < n; i++) {
            const bv_record *r = &recs[i];
            if (i) bv_buf_putc(b, ',');
            bv_buf_putc(b, '{');
            full_url(b, c, r);
            if (!r->deleted) {
                bv_buf_puts(b, ",\"resource\":");
                bv_buf_append(b, r->body, r->body_len);
            }
            const char *method = r->method ? r->method : "PUT";
            bool post = strcmp(method, "POST") == 0;
            bv_buf_printf(b, ",\"request\":{\"method\":\"%s\",\"url\":", method);
            char *url = post ? bv_arena_printf(c->a, "%s", r->type) : bv_arena_printf(c->a, "%s/%s", r->type, r->id);
            json_write_string(b, url, strlen(url));
            char ts[40];
            bv_format_instant(r->last_updated_ms, ts, sizeof ts);
            bv_buf_printf(b, "},\"response\":{\"status\":\"%s\",\"etag\":\"W/\\\"%lld\\\"\",\"lastModified\":\"%s\"}}",
                          r->deleted ? "204" : (r->version == 1 ? "201" : "200"), (long long)r->version, ts);
        }
        bv_buf_putc(b, ']');
    }
    bv_buf_putc(b, '}');
    finish_bundle(c);
}
