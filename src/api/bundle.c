/* batch and transaction Bundles.
 * batch: each entry is processed as its own request.
 * transaction: one writer unit, all-or-nothing, in the specification's order (DELETE, POST,
 * PUT/PATCH, GET); urn:uuid fullUrls and conditional references are rewritten to assigned ids. */
#include "internal.h"
#include "authz.h"

#include <stdio.h>
#include <string.h>

/* ---- a small string map (fullUrl -> "Type/id"), arena-backed, open addressing ---- */
typedef struct { const char *key; const char *val; } map_slot;
typedef struct { map_slot *slots; size_t cap, n; } str_map;

static void map_init(bv_arena *a, str_map *m, size_t expected)
{
    m->cap = 16;
    while (m->cap < expected * 2 + 1) m->cap *= 2;
    m->slots = bv_arena_calloc(a, m->cap, sizeof *m->slots);
    m->n = 0;
}

static map_slot *map_find(const str_map *m, const char *key)
{
    size_t i = bv_hash_str(key) & (m->cap - 1);
    while (m->slots[i].key) {
        if (strcmp(m->slots[i].key, key) == 0) return &m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    return &m->slots[i];
}

static bool map_put(str_map *m, const char *key, const char *val)
{
    map_slot *s = map_find(m, key);
    if (s->key) { s->val = val; return false; }
    s->key = key;
    s->val = val;
    m->n++;
    return true;
}

static const char *map_get(const str_map *m, const char *key)
{
    map_slot *s = map_find(m, key);
    return s->key ? s->val : NULL;
}

/* ---- entries ---- */
typedef struct {
    size_t index;
    const char *method;
    const char *url;
    const char *full_url;
    json_value *res;
    const char *type;
    const char *id;
    const char *query;          /* conditional URL criteria, or GET search query */
    const char *if_none_exist;
    int64_t if_match;
    bool needs_writer_rewrite;  /* references to resolve inside the unit */
    api_unit unit;
    /* GET results */
    int get_status;
    const char *get_body;
    size_t get_len;
    bv_record get_rec;
} tx_entry;

typedef struct {
    api_ctx *c;
    tx_entry *entries;
    size_t n;
    str_map map;
    size_t fail_index;
    int status;
    char msg[400];
    const char *code;
    bv_outcome oo;
    bool prepared_outside;      /* no conditional entries: references and index rows were done
                                   before the unit, except entries marked needs_writer_rewrite */
} tx_ctx;

static int tx_fail(tx_ctx *tx, size_t i, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int tx_fail(tx_ctx *tx, size_t i, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tx->msg, sizeof tx->msg, fmt, ap);
    va_end(ap);
    tx->fail_index = i;
    tx->status = status;
    tx->code = code;
    return BV_EINVAL;
}

static const char *status_text(int s)
{
    switch (s) {
    case 200: return "200 OK";
    case 201: return "201 Created";
    case 204: return "204 No Content";
    case 304: return "304 Not Modified";
    case 400: return "400 Bad Request";
    case 404: return "404 Not Found";
    case 405: return "405 Method Not Allowed";
    case 409: return "409 Conflict";
    case 410: return "410 Gone";
    case 412: return "412 Precondition Failed";
    case 413: return "413 Payload Too Large";
    case 415: return "415 Unsupported Media Type";
    case 422: return "422 Unprocessable Entity";
    default: return s >= 500 ? "500 Internal Server Error" : "400 Bad Request";
    }
}

/* Split "Type", "Type/id", "Type?query", "Type/id/_history/v" (relative to the base). */
static int parse_entry_url(api_ctx *c, tx_entry *e)
{
    const char *u = e->url;
    size_t bl = strlen(c->base);
    if (strncmp(u, c->base, bl) == 0 && u[bl] == '/') u += bl + 1;
    while (*u == '/') u++;
    char *copy = bv_arena_strdup(c->a, u);
    char *q = strchr(copy, '?');
    if (q) { *q = '\0'; e->query = q + 1; }
    char *slash = strchr(copy, '/');
    if (slash) {
        *slash = '\0';
        e->id = slash + 1;
        char *rest = strchr(slash + 1, '/');
        if (rest) *rest = '\0';
    }
    e->type = copy;
    if (!fhir_is_resource_type(e->type)) return -1;
    if (e->id && !bv_fhir_valid_id(e->id)) return -1;
    return 0;
}

/* FHIR carries a JSON Patch inside a Bundle as a Binary resource whose contentType is
 * application/json-patch+json and whose data is the base64 of the patch document. */
static const char *binary_patch_text(bv_arena *a, const json_value *res, size_t *len)
{
    if (!bv_streq(json_get_str(res, "resourceType"), "Binary")) return NULL;
    const char *ct = json_get_str(res, "contentType"), *data = json_get_str(res, "data");
    if (!ct || strncmp(ct, "application/json-patch+json", 27) != 0 || !data) return NULL;
    return bv_base64_decode(a, data, strlen(data), len);
}

static int method_order(const char *m)
{
    if (strcmp(m, "DELETE") == 0) return 0;
    if (strcmp(m, "POST") == 0) return 1;
    if (strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) return 2;
    return 3; /* GET, HEAD */
}

/* The base of an absolute fullUrl "http(s)://host/fhir/Type/id" ("http(s)://host/fhir"), or NULL.
 * A relative reference "Type/id" in that entry means base + "/Type/id" (R4 Bundle 2.36.4.1). */
static const char *full_url_base(bv_arena *a, const char *fu)
{
    if (!fu || (strncmp(fu, "http://", 7) != 0 && strncmp(fu, "https://", 8) != 0)) return NULL;
    const char *id_slash = strrchr(fu, '/');
    if (!id_slash || id_slash == fu) return NULL;
    const char *type_slash = id_slash - 1;
    while (type_slash > fu && *type_slash != '/') type_slash--;
    char *type = bv_arena_strndup(a, type_slash + 1, (size_t)(id_slash - type_slash - 1));
    if (*type_slash != '/' || !fhir_is_resource_type(type)) return NULL;
    return bv_arena_strndup(a, fu, (size_t)(type_slash - fu));
}

/* Rewrite Reference.reference values found in the map (as written, or as a relative "Type/id"
 * resolved against base, the referencing entry's fullUrl base). Returns the number of references
 * still needing resolution (conditional references "Type?query"); fails on unresolved urn: refs. */
static int rewrite_refs(json_value *v, const str_map *map, const char *base, bool resolve_unknown_urn_as_error,
                        const char **bad)
{
    int pending = 0;
    if (json_is(v, JSON_OBJECT)) {
        for (size_t i = 0; i < v->u.obj.count; i++) {
            json_member *m = &v->u.obj.members[i];
            if (strcmp(m->key, "reference") == 0 && json_is(m->value, JSON_STRING)) {
                const char *r = m->value->u.str.s;
                const char *to = map_get(map, r);
                if (!to && base && r[0] != '#' && !strchr(r, ':') && !strchr(r, '?')) {
                    char key[600];
                    int kl = snprintf(key, sizeof key, "%s/%s", base, r);
                    if (kl > 0 && (size_t)kl < sizeof key) to = map_get(map, key);
                }
                if (to) {
                    m->value->u.str.s = to;
                    m->value->u.str.len = strlen(to);
                } else if (strncmp(r, "urn:uuid:", 9) == 0 || strncmp(r, "urn:oid:", 8) == 0) {
                    if (resolve_unknown_urn_as_error) { *bad = r; return -1; }
                } else if (strchr(r, '?') && r[0] != '#') {
                    pending++;
                }
            } else {
                int p = rewrite_refs(m->value, map, base, resolve_unknown_urn_as_error, bad);
                if (p < 0) return p;
                pending += p;
            }
        }
    } else if (json_is(v, JSON_ARRAY)) {
        for (size_t i = 0; i < v->u.arr.count; i++) {
            int p = rewrite_refs(v->u.arr.items[i], map, base, resolve_unknown_urn_as_error, bad);
            if (p < 0) return p;
            pending += p;
        }
    }
    return pending;
}

/* Inside the unit: resolve conditional references "Type?criteria" to exactly one match. */
static int resolve_conditional_refs(tx_ctx *tx, bv_store_txn *t, size_t ei, json_value *v)
{
    api_ctx *c = tx->c;
    if (json_is(v, JSON_OBJECT)) {
        for (size_t i = 0; i < v->u.obj.count; i++) {
            json_member *m = &v->u.obj.members[i];
            if (strcmp(m->key, "reference") == 0 && json_is(m->value, JSON_STRING)) {
                const char *r = m->value->u.str.s;
                const char *qm = strchr(r, '?');
                if (!qm || r[0] == '#') continue;
                char *type = bv_arena_strndup(c->a, r, (size_t)(qm - r));
                if (!fhir_is_resource_type(type))
                    return tx_fail(tx, ei, 400, "invalid", "conditional reference '%.200s' names no resource type", r);
                bv_search *s;
                bv_outcome oo;
                bv_outcome_init(&oo, c->a);
                if (api_conditional_search(c, type, qm + 1, &s, &oo))
                    return tx_fail(tx, ei, 400, "invalid", "conditional reference '%.200s': %s", r,
                                   oo.n ? oo.issues[0].diagnostics : "bad criteria");
                s->count = 2;
                bv_record *found;
                size_t n;
                if (bv_txn_search(t, c->a, s, &found, &n, NULL)) return tx_fail(tx, ei, 500, "exception", "search failed");
                if (n != 1)
                    return tx_fail(tx, ei, n ? 412 : 404, n ? "duplicate" : "not-found",
                                   "conditional reference '%.200s' matched %zu resources (exactly one needed)", r, n);
                const char *to = bv_arena_printf(c->a, "%s/%s", type, found[0].id);
                m->value->u.str.s = to;
                m->value->u.str.len = strlen(to);
            } else {
                int rc = resolve_conditional_refs(tx, t, ei, m->value);
                if (rc) return rc;
            }
        }
    } else if (json_is(v, JSON_ARRAY)) {
        for (size_t i = 0; i < v->u.arr.count; i++) {
            int rc = resolve_conditional_refs(tx, t, ei, v->u.arr.items[i]);
            if (rc) return rc;
        }
    }
    return 0;
}

static int tx_run(bv_store_txn *t, void *ctx)
{
    tx_ctx *tx = ctx;
    api_ctx *c = tx->c;
    /* 1. conditional creates and conditional updates/deletes decide their targets first. */
    for (size_t i = 0; i < tx->n; i++) {
        tx_entry *e = &tx->entries[i];
        bv_search *s = NULL;
        const char *crit = e->if_none_exist && strcmp(e->method, "POST") == 0 ? e->if_none_exist
                         : (e->query && strcmp(e->method, "GET") != 0 && strcmp(e->method, "HEAD") != 0) ? e->query
                                                                                                        : NULL;
        if (!crit) continue;
        const char *qm = strchr(crit, '?');
        if (qm) crit = qm + 1;
        bv_outcome oo;
        bv_outcome_init(&oo, c->a);
        if (api_conditional_search(c, e->type, crit, &s, &oo))
            return tx_fail(tx, i, 400, "invalid", "entry %zu: %s", i, oo.n ? oo.issues[0].diagnostics : "bad criteria");
        s->count = 2;
        bv_record *found;
        size_t n;
        if (bv_txn_search(t, c->a, s, &found, &n, NULL)) return tx_fail(tx, i, 500, "exception", "search failed");
        if (n > 1) return tx_fail(tx, i, 412, "duplicate", "entry %zu: the condition matches more than one resource", i);
        if (strcmp(e->method, "POST") == 0) {
            if (n == 1) {
                /* the existing match is returned: the caller must be allowed to read it */
                int zst = authz_unit_read(c, t, &found[0]);
                if (zst) return tx_fail(tx, i, zst, zst == 404 ? "not-found" : "forbidden",
                                        "entry %zu: the resource matching If-None-Exist is not accessible", i);
                e->unit.status = 200;       /* exists: no create */
                e->unit.rec = found[0];
                e->id = found[0].id;
            }
        } else if (strcmp(e->method, "DELETE") == 0) {
            if (n == 0) e->unit.status = 204;
            else e->id = found[0].id;
        } else { /* PUT */
            char msg[300];
            if (api_conditional_update_id(c->a, e->res, found, n, &e->id, msg, sizeof msg))
                return tx_fail(tx, i, 409, "conflict", "entry %zu: %s", i, msg);
        }
        if (e->full_url && e->id) map_put(&tx->map, e->full_url, bv_arena_printf(c->a, "%s/%s", e->type, e->id));
        e->needs_writer_rewrite = true;
    }
    /* 2. references that depended on step 1, and conditional references. Without step 1 only
     * the entries holding conditional references are left: the rest were prepared outside the
     * writer, which is the one thread every write waits for. */
    for (size_t i = 0; i < tx->n; i++) {
        tx_entry *e = &tx->entries[i];
        if (!e->res) continue;
        if (tx->prepared_outside && !e->needs_writer_rewrite) continue;
        const char *bad = NULL;
        int pending = rewrite_refs(e->res, &tx->map, full_url_base(c->a, e->full_url), true, &bad);
        if (pending < 0) return tx_fail(tx, i, 400, "invalid", "entry %zu: unresolved reference '%.200s'", i, bad);
        if (pending > 0) {
            int rc = resolve_conditional_refs(tx, t, i, e->res);
            if (rc) return rc;
        }
        if (strcmp(e->method, "PATCH") != 0) {
            if (e->id && strcmp(e->method, "PUT") == 0) json_set(c->a, e->res, "id", json_new_string(c->a, e->id));
            if (bv_fhir_extract_index(c->a, e->res, &e->unit.rows, &e->unit.n_rows))
                return tx_fail(tx, i, 500, "exception", "index extraction failed");
        }
    }
    /* 3. the writes in the specification's order, then the reads. */
    for (int pass = 0; pass < 4; pass++) {
        for (size_t i = 0; i < tx->n; i++) {
            tx_entry *e = &tx->entries[i];
            if (method_order(e->method) != pass) continue;
            if (pass == 3) {
                if (e->query || !e->id) {   /* "Type?query", or "Type" alone: a search */
                    bv_search *s;
                    bv_outcome oo;
                    bv_outcome_init(&oo, c->a);
                    bv_param *ps;
                    size_t np;
                    bv_search_request sr;
                    memset(&sr, 0, sizeof sr);
                    if (bv_fhir_parse_query_string(c->a, e->query ? e->query : "", &ps, &np) ||
                        bv_fhir_parse_search(c->a, e->type, ps, np, true, &sr, &oo))
                        return tx_fail(tx, i, 400, "invalid", "entry %zu: invalid search", i);
                    s = &sr.search;
                    if (authz_restrict(c, e->type, s, BV_PERM_S, &oo))
                        return tx_fail(tx, i, 403, "forbidden", "entry %zu: %s", i, oo.issues[0].diagnostics);
                    bv_record *found;
                    size_t n;
                    int64_t total;
                    s->want_total = true;
                    if (bv_txn_search(t, c->a, s, &found, &n, &total)) return tx_fail(tx, i, 500, "exception", "search failed");
                    bv_buf b;
                    bv_buf_init(&b, 0);
                    bv_buf_printf(&b, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":%lld", (long long)total);
                    if (n) {
                        bv_buf_puts(&b, ",\"entry\":[");
                        for (size_t k = 0; k < n; k++) {
                            if (k) bv_buf_putc(&b, ',');
                            char *fu = bv_arena_printf(c->a, "%s/%s/%s", c->base, found[k].type, found[k].id);
                            bv_buf_puts(&b, "{\"fullUrl\":");
                            json_write_string(&b, fu, strlen(fu));
                            bv_buf_puts(&b, ",\"resource\":");
                            bv_buf_append(&b, found[k].body, found[k].body_len);
                            bv_buf_puts(&b, ",\"search\":{\"mode\":\"match\"}}");
                        }
                        bv_buf_putc(&b, ']');
                    }
                    bv_buf_putc(&b, '}');
                    e->get_body = bv_arena_strndup(c->a, bv_buf_cstr(&b), b.len);
                    e->get_len = b.len;
                    bv_buf_free(&b);
                    e->get_status = 200;
                } else {
                    bv_record r;
                    int rc = bv_txn_read(t, c->a, e->type, e->id, &r);
                    if (rc == BV_ENOTFOUND) return tx_fail(tx, i, 404, "not-found", "entry %zu: %s/%s is not known", i, e->type, e->id);
                    if (rc) return tx_fail(tx, i, 500, "exception", "storage error");
                    int zst = r.deleted ? 0 : authz_unit_read(c, t, &r);
                    if (zst) return tx_fail(tx, i, zst, zst == 404 ? "not-found" : "forbidden", "entry %zu: %s/%s is %s", i,
                                            e->type, e->id, zst == 404 ? "not known" : "not accessible with this token");
                    if (r.deleted) return tx_fail(tx, i, 410, "deleted", "entry %zu: %s/%s is deleted", i, e->type, e->id);
                    e->get_rec = r;
                    e->get_body = r.body;
                    e->get_len = r.body_len;
                    e->get_status = 200;
                }
                continue;
            }
            if (e->unit.status) continue; /* decided in step 1 (exists / nothing to delete) */
            api_unit *u = &e->unit;
            u->c = c;
            u->type = e->type;
            u->id = e->id;
            u->res = e->res;
            u->if_match = e->if_match;
            u->cond = NULL;
            int rc = api_unit_run(t, u);
            if (rc) {
                if (u->oo.n) {
                    tx->oo = u->oo;
                    tx->fail_index = i;
                    tx->status = u->status;
                    return BV_EINVAL;
                }
                return tx_fail(tx, i, u->status ? u->status : 500, u->code ? u->code : "exception", "entry %zu: %s", i, u->msg);
            }
        }
    }
    return 0;
}

static void entry_response(api_ctx *c, bv_buf *b, tx_entry *e, bool representation)
{
    bv_buf_putc(b, '{');
    if (e->get_status) {
        bv_buf_puts(b, "\"resource\":");
        bv_buf_append(b, e->get_body, e->get_len);
        bv_buf_printf(b, ",\"response\":{\"status\":\"200 OK\"");
        if (e->get_rec.version) bv_buf_printf(b, ",\"etag\":\"W/\\\"%lld\\\"\"", (long long)e->get_rec.version);
        bv_buf_puts(b, "}}");
        return;
    }
    api_unit *u = &e->unit;
    if (u->rec.id && !u->rec.deleted && u->status != 204) {
        char *fu = bv_arena_printf(c->a, "%s/%s/%s", c->base, u->rec.type ? u->rec.type : e->type, u->rec.id);
        bv_buf_puts(b, "\"fullUrl\":");
        json_write_string(b, fu, strlen(fu));
        bv_buf_putc(b, ',');
        if (representation && u->rec.body) {
            bv_buf_puts(b, "\"resource\":");
            bv_buf_append(b, u->rec.body, u->rec.body_len);
            bv_buf_putc(b, ',');
        }
    }
    bv_buf_printf(b, "\"response\":{\"status\":\"%s\"", status_text(u->status));
    if (u->rec.id && u->status != 204) {
        char *loc = bv_arena_printf(c->a, "%s/%s/_history/%lld", u->rec.type ? u->rec.type : e->type, u->rec.id,
                                    (long long)u->rec.version);
        bv_buf_puts(b, ",\"location\":");
        json_write_string(b, loc, strlen(loc));
        bv_buf_printf(b, ",\"etag\":\"W/\\\"%lld\\\"\"", (long long)u->rec.version);
        char ts[40];
        bv_format_instant(u->rec.last_updated_ms, ts, sizeof ts);
        bv_buf_printf(b, ",\"lastModified\":\"%s\"", ts);
    }
    bv_buf_puts(b, "}}");
}

static void do_transaction(api_ctx *c, json_value *bundle, json_value *entries)
{
    tx_ctx tx;
    memset(&tx, 0, sizeof tx);
    int64_t t_start = bv_now_ms();
    tx.c = c;
    tx.n = json_count(entries);
    tx.entries = bv_arena_calloc(c->a, tx.n + 1, sizeof *tx.entries);
    bv_outcome_init(&tx.oo, c->a);
    map_init(c->a, &tx.map, tx.n);
    str_map targets;
    map_init(c->a, &targets, tx.n);
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    (void)bundle;
    for (size_t i = 0; i < tx.n; i++) {
        tx_entry *e = &tx.entries[i];
        json_value *ent = json_at(entries, i), *req = json_get(ent, "request");
        char *path = bv_arena_printf(c->a, "Bundle.entry[%zu]", i);
        e->index = i;
        e->method = json_get_str(req, "method");
        e->url = json_get_str(req, "url");
        e->full_url = json_get_str(ent, "fullUrl");
        e->res = json_get(ent, "resource");
        e->if_none_exist = json_get_str(req, "ifNoneExist");
        bool bad_if_match = api_parse_etag(json_get_str(req, "ifMatch"), &e->if_match) != BV_OK;
        bv_outcome_init(&e->unit.oo, c->a);
        if (!e->method || !e->url) {
            bv_outcome_add(&oo, BV_SEV_ERROR, "required", bv_arena_printf(c->a, "%s.request", path),
                           "each entry needs request.method and request.url");
            break;
        }
        if (bad_if_match) {
            bv_outcome_add(&oo, BV_SEV_ERROR, "invalid", bv_arena_printf(c->a, "%s.request.ifMatch", path), "malformed ifMatch");
            break;
        }
        if (method_order(e->method) == 3 && strcmp(e->method, "GET") != 0 && strcmp(e->method, "HEAD") != 0) {
            bv_outcome_add(&oo, BV_SEV_ERROR, "not-supported", bv_arena_printf(c->a, "%s.request.method", path),
                           "unknown method '%s'", e->method);
            break;
        }
        if (parse_entry_url(c, e)) {
            bv_outcome_add(&oo, BV_SEV_ERROR, "invalid", bv_arena_printf(c->a, "%s.request.url", path),
                           "invalid request url '%.200s'", e->url);
            break;
        }
        bool post = strcmp(e->method, "POST") == 0, put = strcmp(e->method, "PUT") == 0;
        bool patch = strcmp(e->method, "PATCH") == 0, del = strcmp(e->method, "DELETE") == 0;
        if ((post || put) && !json_is(e->res, JSON_OBJECT)) {
            bv_outcome_add(&oo, BV_SEV_ERROR, "required", bv_arena_printf(c->a, "%s.resource", path),
                           "%s entries need a resource", e->method);
            break;
        }
        if (post && (e->id || e->query)) {
            bv_outcome_add(&oo, BV_SEV_ERROR, "invalid", bv_arena_printf(c->a, "%s.request.url", path),
                           "POST url must be a resource type");
            break;
        }
        if ((put || patch || del) && !e->id && !e->query) {
            bv_outcome_add(&oo, BV_SEV_ERROR, "invalid", bv_arena_printf(c->a, "%s.request.url", path),
                           "%s needs Type/id or Type?criteria", e->method);
            break;
        }
        if (patch) {
            size_t plen = 0;
            const char *text = e->id && !e->query ? binary_patch_text(c->a, e->res, &plen) : NULL;
            json_value *pv = NULL;
            json_error jerr;
            bool fpp = e->id && !e->query && bv_streq(json_get_str(e->res, "resourceType"), "Parameters");
            if (fpp) {
                e->unit.kind = OP_PATCH;
                e->unit.patch = e->res;   /* FHIRPath Patch */
                e->unit.fhirpath_patch = true;
            } else if (!text || json_parse(c->a, text, plen, NULL, &pv, &jerr) || !json_is(pv, JSON_ARRAY)) {
                bv_outcome_add(&oo, BV_SEV_ERROR, e->query ? "not-supported" : "invalid",
                               bv_arena_printf(c->a, "%s.resource", path),
                               e->query ? "conditional PATCH is not supported"
                                        : "a PATCH entry needs a Parameters resource (FHIRPath Patch) or a Binary "
                                          "resource with contentType application/json-patch+json whose data is a "
                                          "JSON Patch array");
                break;
            } else {
                e->unit.kind = OP_PATCH;
                e->unit.patch = pv;
            }
        }
        if (e->res && !patch) {
            bv_outcome sub;
            bv_outcome_init(&sub, c->a);
            if (api_prepare(c, e->res, e->type, post || (put && e->query), &sub)) {
                for (size_t k = 0; k < sub.n; k++) {
                    bv_issue is = sub.issues[k];
                    bv_outcome_add(&oo, is.severity, is.code,
                                   is.expression ? bv_arena_printf(c->a, "%s.resource.%s", path, is.expression) : path,
                                   "%s", is.diagnostics);
                }
                break;
            }
        }
        if (put && e->id) {
            const char *bid = json_get_str(e->res, "id");
            if (!bid || strcmp(bid, e->id) != 0) {
                bv_outcome_add(&oo, BV_SEV_ERROR, "invalid", bv_arena_printf(c->a, "%s.resource.id", path),
                               "the resource id must equal the id in request.url");
                break;
            }
        }
        if (post) {
            char uuid[40];
            bv_uuid7(uuid);
            e->id = bv_arena_strdup(c->a, uuid);
            e->unit.kind = OP_CREATE;
        } else if (put) e->unit.kind = OP_UPDATE;
        else if (del) e->unit.kind = OP_DELETE;
        /* the same resource may be touched only once */
        if (e->id && !post) {
            char *key = bv_arena_printf(c->a, "%s/%s", e->type, e->id);
            if (method_order(e->method) != 3 && !map_put(&targets, key, key)) {
                bv_outcome_add(&oo, BV_SEV_ERROR, "duplicate", path, "%s is the target of more than one entry", key);
                break;
            }
        }
        if (e->full_url) {
            if (map_get(&tx.map, e->full_url)) {
                bv_outcome_add(&oo, BV_SEV_ERROR, "duplicate", bv_arena_printf(c->a, "%s.fullUrl", path),
                               "fullUrl '%.200s' appears more than once", e->full_url);
                break;
            }
            if (e->id && !(post && e->if_none_exist) && !(e->query))
                map_put(&tx.map, e->full_url, bv_arena_printf(c->a, "%s/%s", e->type, e->id));
        }
    }
    if (oo.n_errors) {
        api_send_outcome(c, api_status_for_outcome(&oo), &oo);
        return;
    }
    /* rewrite references known now and extract index rows outside the writer */
    bool any_conditional = false;
    for (size_t i = 0; i < tx.n; i++)
        if ((tx.entries[i].if_none_exist && strcmp(tx.entries[i].method, "POST") == 0) ||
            (tx.entries[i].query && method_order(tx.entries[i].method) != 3))
            any_conditional = true;
    tx.prepared_outside = !any_conditional;
    for (size_t i = 0; i < tx.n && !any_conditional; i++) {
        tx_entry *e = &tx.entries[i];
        if (!e->res) continue;
        const char *bad = NULL;
        int pending = rewrite_refs(e->res, &tx.map, full_url_base(c->a, e->full_url), true, &bad);
        if (pending < 0) {
            api_error(c, 400, "invalid", bv_arena_printf(c->a, "Bundle.entry[%zu].resource", i),
                      "unresolved reference '%.200s'", bad);
            return;
        }
        if (pending > 0) { e->needs_writer_rewrite = true; continue; }
        if (bv_fhir_extract_index(c->a, e->res, &e->unit.rows, &e->unit.n_rows)) {
            api_error(c, 500, "exception", NULL, "index extraction failed");
            return;
        }
        /* a create's body is final but for its time: serialised here, not on the writer */
        if (e->unit.kind == OP_CREATE) (void)api_preserialize(c->a, e->res, e->id, &e->unit.pre);
    }
    int64_t t_prepared = bv_now_ms();
    int rc = bv_store_write(c->api->store, tx_run, &tx);
    bv_log(BV_LOG_DEBUG, "transaction: %zu entries, prepare %lld ms, write %lld ms", tx.n,
           (long long)(t_prepared - t_start), (long long)(bv_now_ms() - t_prepared));
    if (rc == BV_EIO || (rc && !tx.status)) {
        api_error(c, 500, "exception", NULL, "%s",
                  bv_store_healthy(c->api->store)
                      ? "the transaction could not be made durable; nothing was stored"
                      : "storage failure: the transaction was not acknowledged; whether it is stored is known only "
                        "after the server restarts (all or nothing either way)");
        return;
    }
    if (rc) {
        if (tx.oo.n) {
            bv_outcome out;
            bv_outcome_init(&out, c->a);
            for (size_t k = 0; k < tx.oo.n; k++) {
                bv_issue is = tx.oo.issues[k];
                bv_outcome_add(&out, is.severity, is.code,
                               bv_arena_printf(c->a, "Bundle.entry[%zu].resource%s%s", tx.fail_index,
                                               is.expression ? "." : "", is.expression ? is.expression : ""),
                               "%s", is.diagnostics);
            }
            api_send_outcome(c, tx.status, &out);
            return;
        }
        api_error(c, tx.status, tx.code, bv_arena_printf(c->a, "Bundle.entry[%zu]", tx.fail_index), "%s", tx.msg);
        return;
    }
    const char *pref = api_header(c, "Prefer");
    bool representation = pref && strstr(pref, "return=representation");
    bv_buf *b = &c->resp->body;
    bv_buf_reset(b);
    char uuid[40], ts[40];
    bv_uuid4(uuid);
    bv_format_instant(bv_now_ms(), ts, sizeof ts);
    bv_buf_printf(b, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"lastUpdated\":\"%s\"},"
                     "\"type\":\"transaction-response\",\"entry\":[", uuid, ts);
    for (size_t i = 0; i < tx.n; i++) {
        if (i) bv_buf_putc(b, ',');
        entry_response(c, b, &tx.entries[i], representation);
    }
    bv_buf_puts(b, "]}");
    c->resp->status = 200;
}

/* batch: every entry is an independent request through the normal router. */
static void do_batch(api_ctx *c, json_value *entries)
{
    size_t n = json_count(entries);
    bv_buf *out = &c->resp->body;
    bv_buf body_acc;
    bv_buf_init(&body_acc, 0);
    char uuid[40], ts[40];
    bv_uuid4(uuid);
    bv_format_instant(bv_now_ms(), ts, sizeof ts);
    bv_buf_printf(&body_acc, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"lastUpdated\":\"%s\"},"
                             "\"type\":\"batch-response\",\"entry\":[", uuid, ts);
    for (size_t i = 0; i < n; i++) {
        json_value *ent = json_at(entries, i), *rq = json_get(ent, "request");
        const char *method = json_get_str(rq, "method"), *url = json_get_str(rq, "url");
        if (i) bv_buf_putc(&body_acc, ',');
        if (!method || !url) {
            bv_buf_puts(&body_acc, "{\"response\":{\"status\":\"400 Bad Request\",\"outcome\":"
                                   "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\","
                                   "\"code\":\"required\",\"diagnostics\":\"request.method and request.url are required\"}]}}}");
            continue;
        }
        bv_request sub;
        memset(&sub, 0, sizeof sub);
        sub.arena = c->a;
        sub.method = method;
        while (*url == '/') url++;
        const char *qm = strchr(url, '?');
        sub.path = bv_arena_printf(c->a, "%s/%.*s", c->api->base_path, qm ? (int)(qm - url) : (int)strlen(url), url);
        sub.raw_query = qm ? qm + 1 : "";
        bv_param *ps = NULL;
        size_t np = 0;
        if (qm) bv_fhir_parse_query_string(c->a, qm + 1, &ps, &np);
        sub.query = ps;
        sub.n_query = np;
        sub.headers = bv_arena_calloc(c->a, 6, sizeof *sub.headers);
        /* every entry is authorised as its own request, with the caller's token */
        const char *authz_h = api_header(c, "Authorization"), *btg_h = api_header(c, "X-Break-Glass-Reason");
        if (authz_h) sub.headers[sub.n_headers++] = (bv_kv){"Authorization", authz_h};
        if (btg_h) sub.headers[sub.n_headers++] = (bv_kv){"X-Break-Glass-Reason", btg_h};
        const char *ine = json_get_str(rq, "ifNoneExist"), *im = json_get_str(rq, "ifMatch");
        if (ine) sub.headers[sub.n_headers++] = (bv_kv){"If-None-Exist", ine};
        if (im) sub.headers[sub.n_headers++] = (bv_kv){"If-Match", im};
        json_value *res = json_get(ent, "resource");
        size_t plen = 0;
        const char *ptext = strcmp(method, "PATCH") == 0 ? binary_patch_text(c->a, res, &plen) : NULL;
        if (ptext) {
            sub.body = ptext;
            sub.body_len = plen;
            sub.headers[sub.n_headers++] = (bv_kv){"Content-Type", "application/json-patch+json"};
        } else if (res) {
            if (strcmp(method, "PATCH") == 0 && bv_streq(json_get_str(res, "resourceType"), "Parameters"))
                sub.headers[sub.n_headers++] = (bv_kv){"Content-Type", "application/fhir+json"};
            bv_buf rb;
            bv_buf_init(&rb, 0);
            json_write(&rb, res, false);
            sub.body = bv_arena_strndup(c->a, bv_buf_cstr(&rb), rb.len);
            sub.body_len = rb.len;
            bv_buf_free(&rb);
        } else {
            sub.body = "";
        }
        sub.base_url = c->req->base_url;
        sub.peer = c->req->peer;
        bv_response r;
        bv_http_dispatch_local(bv_api_handle, c->api, &sub, &r);
        bv_buf_putc(&body_acc, '{');
        bool is_outcome = r.status >= 400;
        if (!is_outcome && r.body.len) {
            bv_buf_puts(&body_acc, "\"resource\":");
            bv_buf_append(&body_acc, r.body.data, r.body.len);
            bv_buf_putc(&body_acc, ',');
        }
        bv_buf_printf(&body_acc, "\"response\":{\"status\":\"%s\"", status_text(r.status));
        for (size_t k = 0; k < r.n_headers; k++) {
            const char *key = NULL;
            if (strcmp(r.headers[k].name, "Location") == 0 || strcmp(r.headers[k].name, "Content-Location") == 0) key = "location";
            else if (strcmp(r.headers[k].name, "ETag") == 0) key = "etag";
            if (!key) continue;
            bv_buf_printf(&body_acc, ",\"%s\":", key);
            json_write_string(&body_acc, r.headers[k].value, strlen(r.headers[k].value));
        }
        if (is_outcome && r.body.len) {
            bv_buf_puts(&body_acc, ",\"outcome\":");
            bv_buf_append(&body_acc, r.body.data, r.body.len);
        }
        bv_buf_puts(&body_acc, "}}");
        bv_buf_free(&r.body);
    }
    bv_buf_puts(&body_acc, "]}");
    bv_buf_free(out);
    *out = body_acc;
    c->resp->status = 200;
}

void api_bundle(api_ctx *c)
{
    json_value *bundle;
    if (api_parse_body(c, &bundle)) return;
    if (!bv_streq(json_get_str(bundle, "resourceType"), "Bundle")) {
        api_error(c, 400, "invalid", "resourceType", "POST to the base needs a batch or transaction Bundle");
        return;
    }
    const char *type = json_get_str(bundle, "type");
    json_value *entries = json_get(bundle, "entry");
    if (entries && !json_is(entries, JSON_ARRAY)) {
        api_error(c, 400, "structure", "Bundle.entry", "Bundle.entry must be an array");
        return;
    }
    if (json_count(entries) > BV_MAX_BUNDLE_ENTRIES) {
        api_error(c, 413, "too-costly", "Bundle.entry", "at most %d entries per Bundle", BV_MAX_BUNDLE_ENTRIES);
        return;
    }
    if (bv_streq(type, "transaction")) do_transaction(c, bundle, entries);
    else if (bv_streq(type, "batch")) do_batch(c, entries);
    else api_error(c, 400, "invalid", "Bundle.type", "Bundle.type must be 'batch' or 'transaction' (got '%s')",
                   type ? type : "");
}

int bv_api_process_bundle(bv_api *api, const char *json, size_t len, bv_buf *out, bv_import_stats *stats)
{
    bv_arena *a = bv_arena_new(1 << 16);
    bv_request req;
    memset(&req, 0, sizeof req);
    req.arena = a;
    req.method = "POST";
    req.path = api->base_path;
    req.raw_query = "";
    req.body = json;
    req.body_len = len;
    req.base_url = "";
    req.peer = "local";
    bv_response resp;
    bv_http_dispatch_local(bv_api_handle, api, &req, &resp);
    if (stats) {
        stats->bundles++;
        if (resp.status < 300) {
            /* count entries in the response */
            json_value *v;
            json_error err;
            size_t n = 0;
            if (json_parse(a, resp.body.data, resp.body.len, NULL, &v, &err) == BV_OK) {
                json_value *es = json_get(v, "entry");
                for (size_t i = 0; i < json_count(es); i++) {
                    const char *st = json_get_str(json_get(json_at(es, i), "response"), "status");
                    if (st && st[0] < '4') n++;
                    else stats->entries_failed++;
                }
            }
            stats->entries_ok += n;
        }
    }
    int status = resp.status;
    if (out) {
        bv_buf_reset(out);
        bv_buf_append(out, resp.body.data ? resp.body.data : "", resp.body.len);
    }
    bv_buf_free(&resp.body);
    bv_arena_free(a);
    return status;
}
