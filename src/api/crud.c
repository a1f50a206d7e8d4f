/* Instance interactions: read, vread, create, update, delete, patch (and their conditional forms). */
#include "internal.h"
#include "bevan/care.h"
#include "bevan/notify.h"
#include "authz.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(api_unit *u, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(api_unit *u, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->msg, sizeof u->msg, fmt, ap);
    va_end(ap);
    u->status = status;
    u->code = code;
    return BV_EINVAL;
}

static int put_version(api_unit *u, bv_store_txn *t, json_value *res, int64_t version, const char *method)
{
    bv_arena *a = u->c->a;
    int64_t now = bv_txn_now_ms(t);
    size_t len;
    if (authz_unit_new(u, t, res, u->cur)) return BV_EINVAL;
    const char *body;
    if (version == 1 && u->pre.body) { /* serialised before the writer: only the time to fill in */
        body = api_stamp(&u->pre, now);
        len = u->pre.len;
    } else {
        body = api_finalize(a, res, u->id, version, now, &len);
    }
    bv_put p = {
        .type = u->type, .id = u->id, .version = version, .last_updated_ms = now, .deleted = false,
        .method = method, .body = body, .body_len = len, .rows = u->rows, .n_rows = u->n_rows,
    };
    int rc = bv_txn_put(t, &p);
    if (rc) return fail(u, 500, "exception", "storage error");
    u->rec = (bv_record){.type = u->type, .id = u->id, .version = version, .last_updated_ms = now,
                         .method = method, .body = body, .body_len = len};
    u->wrote = true;
    if (audit_unit(u, t)) return fail(u, 500, "exception", "storage error");
    return 0;
}

/* Runs on the writer thread: everything that must be atomic with the write. */
int api_conditional_update_id(bv_arena *a, const json_value *res, const bv_record *found, size_t n,
                              const char **id, char *msg, size_t msglen)
{
    const char *body_id = json_get_str(res, "id");
    if (n == 1) {
        if (body_id && strcmp(body_id, found[0].id) != 0) {
            snprintf(msg, msglen, "the body's id '%s' differs from the matched resource '%s'", body_id, found[0].id);
            return 409;
        }
        *id = found[0].id;
    } else if (body_id) {
        *id = body_id;
    } else {
        char uuid[40];
        bv_uuid7(uuid);
        *id = bv_arena_strdup(a, uuid);
    }
    return 0;
}

/* Keeps BV_WRITE_CHECKS_FIRST (unless break-glass, unit_opts): every check (condition,
 * authorisation, If-Match, patch, validation) precedes the one bv_txn_put, and after it only the
 * AuditEvent is written (refused: ignored; a store error fails the unit). */
int api_unit_run(bv_store_txn *t, void *ctx)
{
    api_unit *u = ctx;
    bv_arena *a = u->c->a;
    if (u->cond) {
        bv_record *found = NULL;
        size_t n = 0;
        u->cond->count = 2;
        if (bv_txn_search(t, a, u->cond, &found, &n, NULL)) return fail(u, 500, "exception", "search failed");
        if (n > 1) return fail(u, 412, "duplicate", "the condition matches more than one resource");
        if (u->kind == OP_CREATE) {
            if (n == 1) {
                if (authz_unit_old(u, t, &found[0])) return BV_EINVAL;
                u->rec = found[0];
                u->status = 200;
                return 0;
            }
        } else if (u->kind == OP_UPDATE) {
            char msg[300];
            if (api_conditional_update_id(a, u->res, found, n, &u->id, msg, sizeof msg))
                return fail(u, 409, "conflict", "%s", msg);
        } else if (u->kind == OP_DELETE) {
            if (n == 0) { u->status = 204; return 0; }
            u->id = found[0].id;
        }
    }
    bv_record cur;
    int rc = u->kind == OP_CREATE ? BV_ENOTFOUND : bv_txn_read(t, a, u->type, u->id, &cur);
    if (rc && rc != BV_ENOTFOUND) return fail(u, 500, "exception", "storage error");
    bool exists = rc == BV_OK;
    u->cur = exists ? &cur : NULL;
    if (exists && !cur.deleted && authz_unit_old(u, t, &cur)) return BV_EINVAL;
    if (u->if_match) {
        if (!exists || cur.deleted)
            return fail(u, exists ? 409 : 404, exists ? "conflict" : "not-found",
                        "If-Match given but %s/%s %s", u->type, u->id, exists ? "is deleted" : "does not exist");
        if (cur.version != u->if_match)
            return fail(u, 412, "conflict", "version conflict: If-Match W/\"%lld\" but the current version is %lld",
                        (long long)u->if_match, (long long)cur.version);
    }
    int64_t next = exists ? cur.version + 1 : 1;
    switch (u->kind) {
    case OP_CREATE:
        u->status = 201;
        return put_version(u, t, u->res, 1, "POST");
    case OP_UPDATE:
        u->status = (exists && !cur.deleted) ? 200 : 201;
        return put_version(u, t, u->res, next, "PUT");
    case OP_DELETE: {
        if (!exists) return fail(u, 404, "not-found", "%s/%s is not known", u->type, u->id);
        u->status = 204;
        if (cur.deleted) { u->rec = cur; return 0; }
        int64_t now = bv_txn_now_ms(t);
        bv_put p = {.type = u->type, .id = u->id, .version = next, .last_updated_ms = now, .deleted = true,
                    .method = "DELETE"};
        if (bv_txn_put(t, &p)) return fail(u, 500, "exception", "storage error");
        u->rec = (bv_record){.type = u->type, .id = u->id, .version = next, .last_updated_ms = now, .deleted = true};
        u->wrote = true;
        if (audit_unit(u, t)) return fail(u, 500, "exception", "storage error");
        return 0;
    }
    case OP_PATCH: {
        if (!exists) return fail(u, 404, "not-found", "%s/%s is not known", u->type, u->id);
        if (cur.deleted) return fail(u, 410, "deleted", "%s/%s has been deleted", u->type, u->id);
        json_value *doc;
        json_error jerr;
        if (json_parse(a, cur.body, cur.body_len, NULL, &doc, &jerr))
            return fail(u, 500, "exception", "stored resource unreadable");
        char err[300];
        if (u->fhirpath_patch) {
            int prc = bv_fhirpath_patch(a, doc, u->patch, err, sizeof err);
            if (prc == BV_EINVAL) return fail(u, 400, "invalid", "FHIRPath Patch: %s", err);
            if (prc) return fail(u, 422, "processing", "FHIRPath Patch failed: %s", err);
        } else if (api_json_patch(a, &doc, u->patch, err, sizeof err))
            return fail(u, 422, "processing", "JSON Patch failed: %s", err);
        if (!json_is(doc, JSON_OBJECT)) return fail(u, 422, "processing", "the patched document is not a resource");
        const char *rt = json_get_str(doc, "resourceType"), *pid = json_get_str(doc, "id");
        if (!bv_streq(rt, u->type)) return fail(u, 422, "processing", "a patch may not change resourceType");
        if (!bv_streq(pid, u->id)) return fail(u, 422, "processing", "a patch may not change id");
        bv_validate_opts vo = {.check_nhs_number = u->c->api->check_nhs_number};
        if (bv_fhir_validate(doc, u->type, &vo, &u->oo) > 0 || bv_care_check_write(a, doc, &u->oo) > 0 ||
            (strcmp(u->type, "Subscription") == 0 && bv_notify_check_subscription(a, doc, &u->oo) > 0)) {
            u->status = api_status_for_outcome(&u->oo);
            return BV_EINVAL;
        }
        if (bv_fhir_extract_index(a, doc, &u->rows, &u->n_rows)) return fail(u, 500, "exception", "index extraction failed");
        u->status = 200;
        return put_version(u, t, doc, next, "PATCH");
    }
    }
    return fail(u, 500, "exception", "unknown operation");
}

static int parse_if_match(api_ctx *c, int64_t *out)
{
    if (api_parse_etag(api_header(c, "If-Match"), out)) {
        api_error(c, 400, "invalid", NULL, "malformed If-Match header (expected W/\"<version>\")");
        return -1;
    }
    return 0;
}

typedef enum { RET_REPRESENTATION, RET_MINIMAL, RET_OUTCOME } prefer_return;

static prefer_return prefer(api_ctx *c)
{
    const char *p = api_header(c, "Prefer");
    if (!p) return RET_REPRESENTATION;
    if (strstr(p, "return=minimal")) return RET_MINIMAL;
    if (strstr(p, "return=OperationOutcome")) return RET_OUTCOME;
    return RET_REPRESENTATION;
}

static void respond_written(api_ctx *c, api_unit *u)
{
    if (u->status == 204) {
        c->resp->status = 204;
        bv_buf_reset(&c->resp->body);
        return;
    }
    if (u->status >= 400) {
        if (u->oo.n) { api_send_outcome(c, u->status, &u->oo); return; }
        api_error(c, u->status, u->code, NULL, "%s", u->msg);
        return;
    }
    api_version_headers(c, &u->rec);
    if (u->status == 201 || u->kind != OP_CREATE) {
        char *loc = bv_arena_printf(c->a, "%s/%s/%s/_history/%lld", c->base, u->type, u->rec.id,
                                    (long long)u->rec.version);
        bv_response_header(c->resp, u->status == 201 ? "Location" : "Content-Location", loc);
    }
    switch (prefer(c)) {
    case RET_MINIMAL:
        c->resp->status = u->status;
        bv_buf_reset(&c->resp->body);
        return;
    case RET_OUTCOME: {
        bv_outcome oo;
        bv_outcome_init(&oo, c->a);
        bv_outcome_add(&oo, BV_SEV_INFORMATION, "informational", NULL, "%s/%s version %lld %s", u->type, u->rec.id,
                       (long long)u->rec.version, u->status == 201 ? "created" : "stored");
        api_send_outcome(c, u->status, &oo);
        return;
    }
    case RET_REPRESENTATION:
        api_send_raw(c, u->status, u->rec.body, u->rec.body_len);
        return;
    }
}

static void answer_unit(api_ctx *c, api_unit *u, int rc)
{
    /* a failure with a success status set before the write: nothing was stored */
    if (rc == BV_EIO || (rc && (u->status == 0 || u->status < 400))) {
        /* Poisoned (a failed sync or I/O error): a commit may still survive the restart. */
        api_error(c, 500, "exception", NULL, "%s",
                  bv_store_healthy(c->api->store)
                      ? "the write could not be made durable; nothing was stored"
                      : "storage failure: the write was not acknowledged; whether it is stored is known only after "
                        "the server restarts (retry with a conditional create or If-Match)");
        return;
    }
    respond_written(c, u);
}

/* bv_store_done_fn, on the store's syncer thread: the deferred write's answer. */
static void unit_done(void *ctx, int rc)
{
    api_unit *u = ctx;
    answer_unit(u->c, u, rc);
    api_deferred_done(u->c);
}

/* A break-glass request may store its Task during the unit's checks, before a later check fails:
 * then the unit needs its own savepoint (BV_WRITE_CHECKS_FIRST would roll back the whole group). */
static unsigned unit_opts(const api_ctx *c) { return c->az && c->az->btg_reason ? 0 : BV_WRITE_CHECKS_FIRST; }

static void run_unit(api_ctx *c, api_unit *u)
{
    bv_outcome_init(&u->oo, c->a);
    int rc;
    if (c->req->can_defer && !c->in_bundle) {
        /* No thread waits: the store answers once the write is durable (docs/http.md). */
        api_unit *du = bv_arena_alloc(c->a, sizeof *du);
        *du = *u;
        c->resp->deferred = true; /* before the write is queued: its answer may come at once */
        rc = bv_store_write_async(c->api->store, api_unit_run, du, unit_opts(c), unit_done, du);
        if (rc == BV_OK) return;
        c->resp->deferred = false;
    } else {
        rc = bv_store_write_opt(c->api->store, api_unit_run, u, unit_opts(c));
    }
    answer_unit(c, u, rc);
}

/* Validate the body for a create/update; sends the error and returns non-zero on failure. */
static int prepare_body(api_ctx *c, const char *type, bool allow_missing_id, json_value **res_out, api_unit *u)
{
    json_value *res;
    if (api_parse_body(c, &res)) return -1;
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    if (api_prepare(c, res, type, allow_missing_id, &oo)) {
        api_send_outcome(c, api_status_for_outcome(&oo), &oo);
        return -1;
    }
    if (bv_fhir_extract_index(c->a, res, &u->rows, &u->n_rows)) {
        api_error(c, 500, "exception", NULL, "index extraction failed");
        return -1;
    }
    *res_out = res;
    return 0;
}

void api_create(api_ctx *c, const char *type)
{
    api_unit u = {.c = c, .kind = OP_CREATE, .type = type};
    if (authz_gate(c, AZ_CREATE, type, NULL)) return;
    if (prepare_body(c, type, true, &u.res, &u)) return;
    char uuid[40];
    bv_uuid7(uuid);
    u.id = bv_arena_strdup(c->a, uuid);
    (void)api_preserialize(c->a, u.res, u.id, &u.pre); /* on failure the writer serialises */
    const char *ine = api_header(c, "If-None-Exist");
    if (ine) {
        bv_outcome oo;
        bv_outcome_init(&oo, c->a);
        const char *q = ine;
        /* Clients send either "identifier=x" or a full "Type?identifier=x". */
        const char *qm = strchr(q, '?');
        if (qm) q = qm + 1;
        if (api_conditional_search(c, type, q, &u.cond, &oo)) {
            api_send_outcome(c, 400, &oo);
            return;
        }
    }
    run_unit(c, &u);
}

void api_update(api_ctx *c, const char *type, const char *id)
{
    api_unit u = {.c = c, .kind = OP_UPDATE, .type = type, .id = id};
    if (authz_gate(c, AZ_UPDATE, type, id)) return;
    if (parse_if_match(c, &u.if_match)) return;
    if (prepare_body(c, type, false, &u.res, &u)) return;
    const char *body_id = json_get_str(u.res, "id");
    if (!body_id) {
        api_error(c, 400, "required", "id", "the resource must contain an id for an update");
        return;
    }
    if (strcmp(body_id, id) != 0) {
        api_error(c, 400, "invalid", "id", "the body's id '%s' does not match the URL's id '%s'", body_id, id);
        return;
    }
    run_unit(c, &u);
}

void api_conditional_update(api_ctx *c, const char *type)
{
    api_unit u = {.c = c, .kind = OP_UPDATE, .type = type};
    if (authz_gate(c, AZ_UPDATE, type, NULL)) return;
    if (!c->req->raw_query || !*c->req->raw_query) {
        api_error(c, 405, "not-supported", NULL, "PUT needs an id or search criteria");
        return;
    }
    if (parse_if_match(c, &u.if_match)) return;
    if (prepare_body(c, type, true, &u.res, &u)) return;
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    if (api_conditional_search(c, type, c->req->raw_query, &u.cond, &oo)) {
        api_send_outcome(c, 400, &oo);
        return;
    }
    run_unit(c, &u);
}

void api_delete(api_ctx *c, const char *type, const char *id)
{
    api_unit u = {.c = c, .kind = OP_DELETE, .type = type, .id = id};
    if (authz_gate(c, AZ_DELETE, type, id)) return;
    if (parse_if_match(c, &u.if_match)) return;
    run_unit(c, &u);
}

void api_conditional_delete(api_ctx *c, const char *type)
{
    api_unit u = {.c = c, .kind = OP_DELETE, .type = type};
    if (authz_gate(c, AZ_DELETE, type, NULL)) return;
    if (!c->req->raw_query || !*c->req->raw_query) {
        api_error(c, 405, "not-supported", NULL, "DELETE needs an id or search criteria");
        return;
    }
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    if (api_conditional_search(c, type, c->req->raw_query, &u.cond, &oo)) {
        api_send_outcome(c, 400, &oo);
        return;
    }
    run_unit(c, &u);
}

void api_patch(api_ctx *c, const char *type, const char *id)
{
    api_unit u = {.c = c, .kind = OP_PATCH, .type = type, .id = id};
    if (authz_gate(c, AZ_PATCH, type, id)) return;
    if (parse_if_match(c, &u.if_match)) return;
    const char *ct = api_header(c, "Content-Type");
    bool jp = ct && strncmp(ct, "application/json-patch+json", 27) == 0;
    bool fp = !jp && ct && (strncmp(ct, "application/fhir+json", 21) == 0 || strncmp(ct, "application/json", 16) == 0);
    if (!jp && !fp) {
        api_error(c, 415, "not-supported", NULL,
                  "PATCH needs Content-Type application/json-patch+json (JSON Patch, RFC 6902) or "
                  "application/fhir+json (FHIRPath Patch: a Parameters resource)");
        return;
    }
    json_value *patch;
    json_error err;
    int rc = json_parse(c->a, c->req->body, c->req->body_len, NULL, &patch, &err);
    if (rc) {
        api_error(c, rc == BV_ETOOBIG ? 413 : 400, "structure", NULL, "malformed %s: %s",
                  jp ? "JSON Patch" : "FHIRPath Patch", err.message);
        return;
    }
    if (jp && !json_is(patch, JSON_ARRAY)) {
        api_error(c, 400, "structure", NULL, "a JSON Patch document is an array of operations");
        return;
    }
    if (fp && (!json_is(patch, JSON_OBJECT) || !bv_streq(json_get_str(patch, "resourceType"), "Parameters"))) {
        api_error(c, 400, "structure", NULL, "a FHIRPath Patch body is a Parameters resource");
        return;
    }
    u.fhirpath_patch = fp;
    u.patch = patch;
    run_unit(c, &u);
}

/* ---- reads ---- */
static bool not_modified(api_ctx *c, const bv_record *r)
{
    const char *inm = api_header(c, "If-None-Match");
    if (inm) {
        char etag[40];
        snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)r->version);
        const char *p = inm;
        while (*p == ' ') p++;
        if (strcmp(p, etag) == 0 || strcmp(p, etag + 2) == 0 || strcmp(p, "*") == 0) return true;
        return false;
    }
    const char *ims = api_header(c, "If-Modified-Since");
    int64_t since;
    if (ims && bv_parse_http_date(ims, &since) == BV_OK) return r->last_updated_ms / 1000 <= since / 1000;
    return false;
}

static void send_record(api_ctx *c, const bv_record *r)
{
    api_version_headers(c, r);
    const char *summary = api_query(c, "_summary"), *elements = api_query(c, "_elements");
    if (summary || elements) {
        json_value *v;
        json_error jerr;
        if (json_parse(c->a, r->body, r->body_len, NULL, &v, &jerr)) {
            api_error(c, 500, "exception", NULL, "stored resource unreadable");
            return;
        }
        char err[200];
        json_value *shaped = api_shape_resource(c->a, v, summary, elements, err, sizeof err);
        if (!shaped) {
            api_error(c, 400, "invalid", NULL, "%s", err);
            return;
        }
        api_send_json(c, 200, shaped);
        return;
    }
    api_send_raw(c, 200, r->body, r->body_len);
}

void api_read(api_ctx *c, const char *type, const char *id)
{
    if (authz_gate(c, AZ_READ, type, id)) return;
    bv_record r;
    int rc = bv_store_read(c->api->store, c->a, type, id, &r);
    if (rc == BV_ENOTFOUND) { api_error(c, 404, "not-found", NULL, "%s/%s is not known", type, id); return; }
    if (rc) { api_error(c, 500, "exception", NULL, "storage error"); return; }
    if (r.deleted) {
        api_version_headers(c, &r);
        api_error(c, 410, "deleted", NULL, "%s/%s was deleted (version %lld)", type, id, (long long)r.version);
        return;
    }
    if (not_modified(c, &r)) {
        api_version_headers(c, &r);
        c->resp->status = 304;
        return;
    }
    send_record(c, &r);
}

void api_vread(api_ctx *c, const char *type, const char *id, const char *vid)
{
    uint64_t v;
    if (authz_gate(c, AZ_VREAD, type, id)) return;
    if (bv_str_to_u64(vid, strlen(vid), INT64_MAX, &v) || v == 0) {
        api_error(c, 400, "invalid", NULL, "invalid version id '%.40s'", vid);
        return;
    }
    bv_record r;
    int rc = bv_store_vread(c->api->store, c->a, type, id, (int64_t)v, &r);
    if (rc == BV_ENOTFOUND) {
        api_error(c, 404, "not-found", NULL, "%s/%s version %llu is not known", type, id, (unsigned long long)v);
        return;
    }
    if (rc) { api_error(c, 500, "exception", NULL, "storage error"); return; }
    if (r.deleted) {
        api_version_headers(c, &r);
        api_error(c, 410, "deleted", NULL, "%s/%s version %lld is a deletion", type, id, (long long)r.version);
        return;
    }
    if (!authz_version_ok(c, &r)) {
        api_error(c, 404, "not-found", NULL, "%s/%s version %llu is not known", type, id, (unsigned long long)v);
        return;
    }
    send_record(c, &r);
}

/* ---- $validate ---- */
void api_validate_op(api_ctx *c, const char *type, const char *id)
{
    json_value *body;
    if (authz_gate(c, AZ_VALIDATE, type, id)) return;
    if (api_parse_body(c, &body)) return;
    json_value *res = body;
    const char *mode = NULL;
    if (bv_streq(json_get_str(body, "resourceType"), "Parameters") && !bv_streq(type, "Parameters")) {
        res = NULL;
        json_value *params = json_get(body, "parameter");
        for (size_t i = 0; i < json_count(params); i++) {
            json_value *p = json_at(params, i);
            const char *name = json_get_str(p, "name");
            if (bv_streq(name, "resource")) res = json_get(p, "resource");
            else if (bv_streq(name, "mode")) mode = json_get_str(p, "valueCode");
        }
        if (!res && !bv_streq(mode, "delete")) {
            api_error(c, 400, "required", "Parameters.parameter", "no 'resource' parameter given");
            return;
        }
    }
    if (mode && !bv_streq(mode, "create") && !bv_streq(mode, "update") && !bv_streq(mode, "delete")) {
        api_error(c, 400, "not-supported", NULL, "mode '%s' is not supported (create, update, delete)", mode);
        return;
    }
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    if (bv_streq(mode, "delete")) {
        if (!id) {
            api_error(c, 400, "required", NULL, "mode=delete needs an instance ($validate on Type/id)");
            return;
        }
        bv_record r;
        int rc = bv_store_read(c->api->store, c->a, type, id, &r);
        if (rc == BV_ENOTFOUND || (rc == BV_OK && r.deleted)) {
            api_error(c, 404, "not-found", NULL, "%s/%s is not known", type, id);
            return;
        }
        api_send_outcome(c, 200, &oo);
        return;
    }
    bool is_update = bv_streq(mode, "update") || id;
    if (!json_is(res, JSON_OBJECT)) {
        api_error(c, 400, "structure", NULL, "the resource to validate must be a JSON object");
        return;
    }
    api_prepare(c, res, type, !is_update, &oo);
    if (is_update && oo.n_errors == 0) {
        const char *rid = json_get_str(res, "id");
        if (!rid) bv_outcome_add(&oo, BV_SEV_ERROR, "required", "id", "an update needs an id");
        else if (id && strcmp(rid, id) != 0)
            bv_outcome_add(&oo, BV_SEV_ERROR, "invalid", "id", "the body's id '%s' does not match '%s'", rid, id);
    }
    api_send_outcome(c, oo.n_errors ? api_status_for_outcome(&oo) : 200, &oo);
}
