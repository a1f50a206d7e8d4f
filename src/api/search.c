/* Search and history: Bundles built as text around the stored bodies (never re-serialised). */
#include "internal.h"
#include "authz.h"

#include <stdio.h>
#include <string.h>

int api_conditional_search(api_ctx *c, const char *type, const char *query, bv_search **out, bv_outcome *oo)
{
    bv_param *ps;
    size_t n;
    if (bv_fhir_parse_query_string(c->a, query, &ps, &n)) {
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
    if (authz_restrict(c, type, &sr->search, BV_PERM_C | BV_PERM_U | BV_PERM_D, oo)) return -1;
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

/* A paging link: the search's path, the applied parameters, _count and the paging cursor. */
static const char *page_url(api_ctx *c, const char *path, const bv_search_request *sr, size_t count,
                            const char *cursor, bool self)
{
    bv_buf u;
    bv_buf_init(&u, 0);
    bv_buf_puts(&u, c->base);
    if (path) { bv_buf_putc(&u, '/'); bv_buf_puts(&u, path); }
    bv_buf_putc(&u, '?');
    for (size_t i = 0; i < sr->n_applied; i++) {
        const char *nm = sr->applied[i].name;
        if (strcmp(nm, "_count") == 0 || strcmp(nm, "_offset") == 0 || strcmp(nm, "_cursor") == 0) continue;
        put_encoded(&u, nm);
        bv_buf_putc(&u, '=');
        put_encoded(&u, sr->applied[i].value);
        bv_buf_putc(&u, '&');
    }
    bv_buf_printf(&u, "_count=%zu", count);
    if (self && sr->search.offset) bv_buf_printf(&u, "&_offset=%zu", sr->search.offset);
    if (cursor) { bv_buf_puts(&u, "&_cursor="); put_encoded(&u, cursor); }
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

/* ---- _include / _revinclude ---- */

typedef struct {
    const char **keys;        /* "Type/id" of every resource already in the Bundle */
    size_t n, cap;
} keyset_t;

static bool keyset_add(bv_arena *a, keyset_t *k, const bv_record *r)
{
    char *key = bv_arena_printf(a, "%s/%s", r->type, r->id);
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->keys[i], key) == 0) return false;
    if (k->n == k->cap) {
        size_t ncap = k->cap ? k->cap * 2 : 64;
        const char **nk = bv_arena_alloc(a, ncap * sizeof *nk);
        if (k->n) memcpy(nk, k->keys, k->n * sizeof *nk);
        k->keys = nk;
        k->cap = ncap;
    }
    k->keys[k->n++] = key;
    return true;
}

/* The reference parameters of type (its own and inherited), for "Type:*". */
static const char *const *ref_params(api_ctx *c, const char *type, size_t *n)
{
    size_t np = 0;
    const fhir_search_param *ps = fhir_search_params_of(type, &np);
    const char **out = bv_arena_alloc(c->a, (np + 1) * sizeof *out);
    *n = 0;
    for (size_t i = 0; i < np; i++)
        if (ps[i].type == FHIR_SP_REFERENCE && ps[i].expression) out[(*n)++] = ps[i].code;
    return out;
}

typedef struct {
    bv_record *recs;
    size_t n, cap;
    bool capped;
} reclist;

static void reclist_push(bv_arena *a, reclist *l, const bv_record *r)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 32;
        bv_record *nr = bv_arena_alloc(a, ncap * sizeof *nr);
        if (l->n) memcpy(nr, l->recs, l->n * sizeof *nr);
        l->recs = nr;
        l->cap = ncap;
    }
    l->recs[l->n++] = *r;
}

/* One include value applied to the sources; new resources go to out. */
static int include_one(api_ctx *c, const bv_include *inc, const bv_record *src, size_t nsrc, keyset_t *seen,
                       reclist *out, size_t cap)
{
    /* the sources of the right type */
    bv_record *from = bv_arena_alloc(c->a, (nsrc + 1) * sizeof *from);
    size_t nf = 0;
    const char *want = inc->rev ? inc->target : inc->type;
    for (size_t i = 0; i < nsrc; i++)
        if (!want || strcmp(src[i].type, want) == 0) from[nf++] = src[i];
    if (!nf) return 0;
    bv_include_query q = {.from = from, .n_from = nf, .rev = inc->rev, .limit = cap - out->n + 1};
    if (inc->rev) {
        q.rev_type = inc->type;
        if (inc->param) { q.params = &inc->param; q.n_params = 1; }
        else q.params = ref_params(c, inc->type, &q.n_params);
        if (!q.n_params) return 0;
    } else {
        q.target_type = inc->target;
        if (inc->param) { q.params = &inc->param; q.n_params = 1; }
        else if (inc->type) {
            q.params = ref_params(c, inc->type, &q.n_params);
            if (!q.n_params) return 0;
        } /* "*": every reference of every source */
    }
    bv_record *recs;
    size_t n;
    int rc = bv_store_include(c->api->store, c->a, &q, &recs, &n);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        if (!authz_include_ok(c, &recs[i])) continue;
        if (!keyset_add(c->a, seen, &recs[i])) continue;
        if (out->n >= cap) { out->capped = true; break; }
        reclist_push(c->a, out, &recs[i]);
    }
    return 0;
}

/* All includes for a page: the non-iterate ones on the matches, the iterate ones repeatedly on
 * what was added (bounded by the cap and a round limit). */
static int do_includes(api_ctx *c, const bv_search_request *sr, const bv_record *recs, size_t n, reclist *out)
{
    keyset_t seen = {0};
    for (size_t i = 0; i < n; i++) keyset_add(c->a, &seen, &recs[i]);
    const size_t cap = BV_MAX_INCLUDED;
    for (size_t k = 0; k < sr->n_incs; k++) {
        int rc = include_one(c, &sr->incs[k], recs, n, &seen, out, cap);
        if (rc) return rc;
    }
    bool any_iter = false;
    for (size_t k = 0; k < sr->n_incs; k++) any_iter |= sr->incs[k].iterate;
    size_t done = 0;
    for (int round = 0; any_iter && round < 8 && done < out->n && !out->capped; round++) {
        size_t upto = out->n;
        for (size_t k = 0; k < sr->n_incs; k++) {
            if (!sr->incs[k].iterate) continue;
            int rc = include_one(c, &sr->incs[k], out->recs + done, upto - done, &seen, out, cap);
            if (rc) return rc;
        }
        done = upto;
    }
    return 0;
}

/* ---- search ---- */

static void entry(api_ctx *c, bv_buf *b, const bv_record *r, const bv_search_request *sr, const char *mode,
                  bool *first, bool *shape_failed)
{
    if (!*first) bv_buf_putc(b, ',');
    *first = false;
    bv_buf_putc(b, '{');
    full_url(b, c, r);
    bv_buf_puts(b, ",\"resource\":");
    if (sr->summary || sr->elements) {
        json_value *v;
        json_error jerr;
        char err[200];
        json_value *shaped = NULL;
        if (json_parse(c->a, r->body, r->body_len, NULL, &v, &jerr) == BV_OK)
            shaped = api_shape_resource(c->a, v, sr->summary, sr->elements, err, sizeof err);
        if (!shaped) {
            *shape_failed = true;
            bv_buf_puts(b, "null");
        } else {
            json_write(b, shaped, false);
        }
    } else {
        bv_buf_append(b, r->body, r->body_len);
    }
    bv_buf_printf(b, ",\"search\":{\"mode\":\"%s\"}}", mode);
}

void api_search_add_and(bv_arena *a, bv_search *s, bv_pred *preds, size_t n)
{
    bv_or *ands = bv_arena_calloc(a, s->n_ands + 1, sizeof *ands);
    if (s->n_ands) memcpy(ands, s->ands, s->n_ands * sizeof *ands);
    ands[s->n_ands].preds = preds;
    ands[s->n_ands].n = n;
    s->ands = ands;
    s->n_ands++;
}

size_t api_compartment_preds(bv_arena *a, const fhir_compartment_entry *table, size_t count, const char *type,
                             const char *ref_type, const char *ref_id, bool self, bv_pred **out)
{
    size_t np = 0;
    for (size_t i = 0; i < count; i++)
        if (!type || strcmp(table[i].resource, type) == 0) np += table[i].n_params;
    bv_pred *preds = bv_arena_calloc(a, np + 1, sizeof *preds);
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        const fhir_compartment_entry *e = &table[i];
        if (type && strcmp(e->resource, type) != 0) continue;
        for (size_t j = 0; j < e->n_params; j++) {
            bv_pred *p = &preds[k++];
            p->kind = BV_IX_REFERENCE;
            p->op = BV_OP_REF;
            p->param = e->params[j];
            p->ref_type = ref_type;
            p->ref_id = ref_id;
            if (!type) p->res_type = e->resource;
        }
    }
    if (self) {
        bv_pred *p = &preds[k++];
        p->kind = BV_IX_TOKEN;
        p->op = BV_OP_TOKEN;
        p->param = "_id";
        p->code = ref_id;
        p->res_type = ref_type;
    }
    *out = preds;
    return k;
}

/* Adds the Patient compartment of (ctype, cid) to s as one more AND group: for a search on type,
 * "type's compartment parameters refer to ctype/cid"; for a system search, the same for every
 * member type (each pred restricted to its type), plus the compartment's own resource when
 * self is set. Returns 0, or sends 400/404 and returns -1. */
static int add_compartment(api_ctx *c, bv_search *s, const char *ctype, const char *cid, const char *type, bool self)
{
    if (strcmp(ctype, "Patient") != 0) {
        api_error(c, 400, "not-supported", NULL, "only the Patient compartment is supported, not %s", ctype);
        return -1;
    }
    bv_pred *preds;
    size_t k = api_compartment_preds(c->a, fhir_patient_compartment, fhir_patient_compartment_count, type, ctype, cid,
                                     self, &preds);
    if (type && k == 0) {
        api_error(c, 400, "invalid", NULL, "%s is not in the Patient compartment", type);
        return -1;
    }
    api_search_add_and(c->a, s, preds, k);
    return 0;
}

/* The search itself, once parsed and scoped. path is what the links repeat ("Patient",
 * "Patient/1/Observation", "Patient/1/$everything", NULL for the system). */
static void run_search(api_ctx *c, const char *path, bv_search_request *sr)
{
    if (authz_search(c, sr)) return;
    bool count_only = bv_streq(sr->summary, "count");
    bv_search *s = &sr->search;
    /* _total: accurate counts every match; the default and estimate count up to a cap (a
     * broad search is never counted in full unless asked); none never counts. A page that
     * holds the whole result knows its total for free. _summary=count is always accurate. */
    s->want_total = !bv_streq(sr->total, "none") || count_only;
    s->total_cap = count_only || bv_streq(sr->total, "accurate") ? 0
                 : bv_streq(sr->total, "estimate") ? BV_TOTAL_ESTIMATE_CAP : BV_TOTAL_DEFAULT_CAP;
    /* without _total, a broad search (every condition matching thousands) is not counted */
    s->total_narrow_only = !sr->total && !count_only;
    size_t count = s->count;
    if (count_only) s->count = 0;
    bv_search_page pg;
    int rc = bv_store_search_page(c->api->store, c->a, s, &pg);
    if (rc == BV_EINVAL && s->cursor) {
        api_error(c, 400, "invalid", NULL, "_cursor is not a paging position of this search");
        return;
    }
    if (rc == BV_ETOOBIG) {
        api_error(c, 400, "too-costly", NULL, "the search is too large to run; use fewer values");
        return;
    }
    if (rc) {
        api_error(c, 500, "exception", NULL, "search failed");
        return;
    }
    reclist inc = {0};
    if (sr->n_incs && pg.n && do_includes(c, sr, pg.recs, pg.n, &inc)) {
        api_error(c, 500, "exception", NULL, "_include failed");
        return;
    }
    bv_buf *b = &c->resp->body;
    bv_buf_reset(b);
    bundle_head(c, b, "searchset");
    if (s->want_total && pg.total >= 0) bv_buf_printf(b, ",\"total\":%lld", (long long)pg.total);
    bv_buf_puts(b, ",\"link\":[");
    bool first = true;
    link_entry(b, &first, "self", page_url(c, path, sr, count, s->cursor, true));
    if (!count_only) {
        link_entry(b, &first, "first", page_url(c, path, sr, count, NULL, false));
        bool has_prev = pg.backward ? pg.more : s->cursor != NULL;
        bool has_next = pg.backward ? true : pg.more;
        if (has_prev && pg.prev) link_entry(b, &first, "previous", page_url(c, path, sr, count, pg.prev, false));
        if (has_next && pg.next) link_entry(b, &first, "next", page_url(c, path, sr, count, pg.next, false));
    }
    bv_buf_putc(b, ']');
    if (pg.n || inc.n) {
        bool efirst = true, bad = false;
        bv_buf_puts(b, ",\"entry\":[");
        for (size_t i = 0; i < pg.n; i++) entry(c, b, &pg.recs[i], sr, "match", &efirst, &bad);
        for (size_t i = 0; i < inc.n; i++) entry(c, b, &inc.recs[i], sr, "include", &efirst, &bad);
        if (inc.capped) {
            bv_buf_printf(b, ",{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"warning\","
                             "\"code\":\"too-costly\",\"diagnostics\":\"_include/_revinclude stopped at %d included"
                             " resources for this page: ask for fewer matches per page (_count)\"}]},"
                             "\"search\":{\"mode\":\"outcome\"}}", BV_MAX_INCLUDED);
        }
        bv_buf_putc(b, ']');
        if (bad) {
            api_error(c, 400, "invalid", NULL, "invalid _summary/_elements");
            return;
        }
    }
    bv_buf_putc(b, '}');
    finish_bundle(c);
}

static int parse_request(api_ctx *c, const char *type, const bv_param *params, size_t n, bv_search_request *sr)
{
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    const char *pref = api_header(c, "Prefer");
    bool strict = !(pref && strstr(pref, "handling=lenient"));
    memset(sr, 0, sizeof *sr);
    if (bv_fhir_parse_search(c->a, type, params, n, strict, sr, &oo)) {
        api_send_outcome(c, 400, &oo);
        return -1;
    }
    localise_references(c, &sr->search, 0);
    return 0;
}

void api_search(api_ctx *c, const char *type, const bv_param *params, size_t n)
{
    bv_search_request sr;
    if (parse_request(c, type, params, n, &sr)) return;
    run_search(c, type, &sr);
}

void api_compartment_search(api_ctx *c, const char *ctype, const char *cid, const char *type, const bv_param *params,
                            size_t n)
{
    bool all = strcmp(type, "*") == 0;
    if (authz_gate(c, AZ_COMPARTMENT, ctype, cid)) return;
    bv_search_request sr;
    if (parse_request(c, all ? NULL : type, params, n, &sr)) return;
    if (add_compartment(c, &sr.search, ctype, cid, all ? NULL : type, false)) return;
    run_search(c, bv_arena_printf(c->a, "%s/%s/%s", ctype, cid, type), &sr);
}

/* Patient/[id]/$everything: the patient and every resource in its compartment, paged like a
 * search (by row order), with _since (last updated at or after), _type and _count. */
void api_everything(api_ctx *c, const char *ctype, const char *cid, const bv_param *params, size_t n)
{
    if (strcmp(ctype, "Patient") != 0) {
        api_error(c, 400, "not-supported", NULL, "$everything is supported on Patient only");
        return;
    }
    if (authz_gate(c, AZ_EVERYTHING, ctype, cid)) return;
    bv_record pat;
    int rc = bv_store_read(c->api->store, c->a, ctype, cid, &pat);
    if (rc == BV_ENOTFOUND || (rc == BV_OK && pat.deleted)) {
        api_error(c, rc ? 404 : 410, rc ? "not-found" : "deleted", NULL, "%s/%s is %s", ctype, cid,
                  rc ? "not known" : "deleted");
        return;
    }
    if (rc) {
        api_error(c, 500, "exception", NULL, "read failed");
        return;
    }
    /* only the paging parameters, _since and _type */
    bv_param *ps = bv_arena_calloc(c->a, n + 1, sizeof *ps);
    size_t k = 0;
    const char *since = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *nm = params[i].name;
        if (strcmp(nm, "_since") == 0) since = params[i].value;
        else if (strcmp(nm, "_type") == 0 || strcmp(nm, "_count") == 0 || strcmp(nm, "_cursor") == 0 ||
                 strcmp(nm, "_summary") == 0 || strcmp(nm, "_elements") == 0 || strcmp(nm, "_total") == 0)
            ps[k++] = params[i];
        else if (strcmp(nm, "start") == 0 || strcmp(nm, "end") == 0) {
            api_error(c, 400, "not-supported", NULL, "$everything: '%s' is not supported; use _since and _type", nm);
            return;
        } else {
            api_error(c, 400, "not-supported", NULL, "$everything takes _since, _type, _count; not '%s'", nm);
            return;
        }
    }
    bv_search_request sr;
    if (parse_request(c, NULL, ps, k, &sr)) return;
    if (since) {
        int64_t lo, hi;
        if (bv_fhir_date_range(since, &lo, &hi) || !strchr(since, 'T')) {
            api_error(c, 400, "invalid", NULL, "_since must be an instant (e.g. 2024-01-02T03:04:05Z), got '%.60s'",
                      since);
            return;
        }
        bv_pred *p = bv_arena_calloc(c->a, 1, sizeof *p);
        p->kind = BV_IX_DATE;
        p->param = "_lastUpdated";
        p->op = BV_OP_GE;
        p->lo = lo;
        p->hi = lo;
        api_search_add_and(c->a, &sr.search, p, 1);
        bv_param *ap = bv_arena_calloc(c->a, sr.n_applied + 1, sizeof *ap);
        memcpy(ap, sr.applied, sr.n_applied * sizeof *ap);
        ap[sr.n_applied].name = "_since";
        ap[sr.n_applied].value = since;
        sr.applied = ap;
        sr.n_applied++;
    }
    if (add_compartment(c, &sr.search, ctype, cid, NULL, true)) return;
    run_search(c, bv_arena_printf(c->a, "%s/%s/$everything", ctype, cid), &sr);
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
    if (authz_gate(c, id ? AZ_HISTORY_INSTANCE : type ? AZ_HISTORY_TYPE : AZ_HISTORY_SYSTEM, type, id)) return;
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
        bool efirst = true;
        for (size_t i = 0; i < n; i++) {
            const bv_record *r = &recs[i];
            if (!authz_version_ok(c, r)) continue; /* another patient's version of a moved resource */
            if (!efirst) bv_buf_putc(b, ',');
            efirst = false;
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
