/* AuditEvents in the IHE BALP pattern for every access (allowed or denied) and every failed
 * authentication. Writes are audited inside their own transaction (the audit commits with the
 * write, or neither does); reads, searches, denials and authentication failures are queued and
 * written by one thread in batches, durable within AZ_AUDIT_FLUSH_MS of the response (a crash in
 * that window can lose them: docs/security.md). AuditEvents are stored directly, never through
 * the API, and no route can change or delete them. */
#include "authz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct audit_item {
    char *json;
    size_t len;
    audit_item *next;
};

int az_put_json(bv_store_txn *t, bv_arena *a, const char *type, const char *json, size_t len)
{
    json_value *res;
    json_error je;
    if (json_parse(a, json, len, NULL, &res, &je)) return BV_EINVAL;
    bv_index_row *rows = NULL;
    size_t n = 0;
    if (bv_fhir_extract_index(a, res, &rows, &n)) return BV_EINVAL;
    char uuid[40];
    bv_uuid7(uuid);
    const char *id = bv_arena_strdup(a, uuid);
    int64_t now = bv_txn_now_ms(t);
    size_t blen;
    const char *body = api_finalize(a, res, id, 1, now, &blen);
    bv_put p = {.type = type, .id = id, .version = 1, .last_updated_ms = now, .method = "POST",
                .body = body, .body_len = blen, .rows = rows, .n_rows = n};
    return bv_txn_put(t, &p);
}

/* ------------------------------------------------------------------ building */
static void b64(bv_buf *b, const char *s, size_t len)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *d = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        char o[4] = {T[v >> 18], T[(v >> 12) & 63], T[(v >> 6) & 63], T[v & 63]};
        bv_buf_append(b, o, 4);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)d[i] << 16;
        char o[4] = {T[v >> 18], T[(v >> 12) & 63], '=', '='};
        bv_buf_append(b, o, 4);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
        char o[4] = {T[v >> 18], T[(v >> 12) & 63], T[(v >> 6) & 63], '='};
        bv_buf_append(b, o, 4);
    }
}

static void str(bv_buf *b, const char *s) { json_write_string(b, s ? s : "", s ? strlen(s) : 0); }

typedef struct {
    const char *action, *subtype, *what, *patient, *query_text;
    int status;
    const char *desc;
    bool auth_failure;
} audit_fields;

static void build(api_ctx *c, const audit_fields *f, bv_buf *b)
{
    api_az *z = c->az;
    char ts[40];
    bv_format_instant(bv_now_ms(), ts, sizeof ts);
    bv_buf_puts(b, "{\"resourceType\":\"AuditEvent\",");
    if (z && (z->self_patient || !z->p.fhir_user)) {
        bv_buf_printf(b, "\"meta\":{\"tag\":[{\"system\":\"%s\",\"code\":\"%s\"}]},", AZ_AUDIT_TAG_SYSTEM,
                      z->self_patient ? "patient-access" : "system-access");
    }
    if (f->auth_failure)
        bv_buf_puts(b, "\"type\":{\"system\":\"http://dicom.nema.org/resources/ontology/DCM\",\"code\":\"110114\","
                       "\"display\":\"User Authentication\"},\"subtype\":[{\"system\":"
                       "\"http://dicom.nema.org/resources/ontology/DCM\",\"code\":\"110122\",\"display\":\"Login\"}],");
    else {
        bv_buf_puts(b, "\"type\":{\"system\":\"http://terminology.hl7.org/CodeSystem/audit-event-type\",\"code\":\"rest\","
                       "\"display\":\"Restful Operation\"},");
        if (f->subtype) {
            bv_buf_puts(b, "\"subtype\":[{\"system\":\"http://hl7.org/fhir/restful-interaction\",\"code\":");
            str(b, f->subtype);
            bv_buf_puts(b, "}],");
        }
    }
    bv_buf_puts(b, "\"action\":");
    str(b, f->action ? f->action : "E");
    bv_buf_printf(b, ",\"recorded\":\"%s\",\"outcome\":\"%s\"", ts,
                  f->status < 400 ? "0" : f->status < 500 ? "4" : "8");
    if (f->desc) {
        bv_buf_puts(b, ",\"outcomeDesc\":");
        str(b, f->desc);
    }
    if (z && z->btg) {
        bv_buf_puts(b, ",\"purposeOfEvent\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActReason\","
                       "\"code\":\"BTG\",\"display\":\"break the glass\"}]");
        if (z->btg_reason) {
            bv_buf_puts(b, ",\"text\":");
            str(b, z->btg_reason);
        }
        bv_buf_puts(b, "}]");
    }
    /* agents: the requestor (user or client), its organisation, the server */
    bv_buf_puts(b, ",\"agent\":[{\"type\":{\"coding\":[{\"system\":\"http://dicom.nema.org/resources/ontology/DCM\","
                   "\"code\":\"110153\",\"display\":\"Source Role ID\"}]}");
    if (z && z->p.fhir_user) {
        bv_buf_puts(b, ",\"who\":{\"reference\":");
        str(b, z->p.fhir_user);
        bv_buf_putc(b, '}');
    } else if (z) {
        bv_buf_puts(b, ",\"who\":{\"identifier\":{\"system\":");
        str(b, z->p.iss);
        bv_buf_puts(b, ",\"value\":");
        str(b, z->p.client_id ? z->p.client_id : z->p.sub);
        bv_buf_puts(b, "}}");
    }
    if (z && z->p.client_id) {
        bv_buf_puts(b, ",\"altId\":");
        str(b, z->p.client_id);
    }
    if (z && (z->role || z->p.role)) {
        bv_buf_puts(b, ",\"role\":[{\"text\":");
        str(b, z->role ? z->role->name : z->p.role);
        bv_buf_puts(b, "}]");
    } else if (z && z->self_patient) {
        bv_buf_puts(b, ",\"role\":[{\"text\":\"patient\"}]");
    }
    bv_buf_puts(b, ",\"requestor\":true");
    if (z && z->p.jti) {
        bv_buf_puts(b, ",\"policy\":[");
        char *pol = bv_arena_printf(c->a, "urn:bevan:token:%s", z->p.jti);
        str(b, pol);
        bv_buf_putc(b, ']');
    }
    if (c->req->peer) {
        bv_buf_puts(b, ",\"network\":{\"address\":");
        str(b, c->req->peer);
        bv_buf_puts(b, ",\"type\":\"2\"}");
    }
    bv_buf_putc(b, '}');
    if (z && z->p.org) {
        bv_buf_puts(b, ",{\"type\":{\"text\":\"organization\"},\"who\":{\"reference\":");
        str(b, z->p.org);
        bv_buf_puts(b, "},\"requestor\":false}");
    }
    bv_buf_puts(b, ",{\"type\":{\"coding\":[{\"system\":\"http://dicom.nema.org/resources/ontology/DCM\",\"code\":\"110152\","
                   "\"display\":\"Destination Role ID\"}]},\"who\":{\"display\":\"Bevan\"},\"requestor\":false}]");
    bv_buf_puts(b, ",\"source\":{\"observer\":{\"display\":\"Bevan\"},\"type\":[{\"system\":"
                   "\"http://terminology.hl7.org/CodeSystem/security-source-type\",\"code\":\"4\"}]}");
    bool any = false;
    if (f->patient || f->what || f->query_text) {
        bv_buf_puts(b, ",\"entity\":[");
        if (f->patient) {
            bv_buf_puts(b, "{\"what\":{\"reference\":");
            char *pr = bv_arena_printf(c->a, "Patient/%s", f->patient);
            str(b, pr);
            bv_buf_puts(b, "},\"type\":{\"system\":\"http://terminology.hl7.org/CodeSystem/audit-entity-type\",\"code\":\"1\"},"
                           "\"role\":{\"system\":\"http://terminology.hl7.org/CodeSystem/object-role\",\"code\":\"1\"}}");
            any = true;
        }
        if (f->what) {
            if (any) bv_buf_putc(b, ',');
            bv_buf_puts(b, "{\"what\":{\"reference\":");
            str(b, f->what);
            bv_buf_puts(b, "},\"type\":{\"system\":\"http://terminology.hl7.org/CodeSystem/audit-entity-type\",\"code\":\"2\"},"
                           "\"role\":{\"system\":\"http://terminology.hl7.org/CodeSystem/object-role\",\"code\":\"4\"}}");
            any = true;
        } else if (f->query_text) {
            if (any) bv_buf_putc(b, ',');
            bv_buf_puts(b, "{\"type\":{\"system\":\"http://terminology.hl7.org/CodeSystem/audit-entity-type\",\"code\":\"2\"},"
                           "\"role\":{\"system\":\"http://terminology.hl7.org/CodeSystem/object-role\",\"code\":\"24\"},"
                           "\"query\":\"");
            b64(b, f->query_text, strlen(f->query_text));
            bv_buf_puts(b, "\"}");
        }
        bv_buf_putc(b, ']');
    }
    bv_buf_putc(b, '}');
}

/* ------------------------------------------------------------------ queue */
/* At most this many AuditEvents per write unit, and at most AUDIT_MAX_QUEUE waiting: when the
 * writer falls behind, requests wait for it (back-pressure) instead of the queue, the memory and
 * the time to durability growing without bound. */
#define AUDIT_BATCH 2000
#define AUDIT_MAX_QUEUE 20000

static void enqueue(api_authz_cfg *cfg, bv_buf *b)
{
    audit_item *it = bv_calloc(1, sizeof *it);
    it->json = bv_buf_steal(b, &it->len);
    pthread_mutex_lock(&cfg->mu);
    while (cfg->queued >= AUDIT_MAX_QUEUE && !cfg->stop) pthread_cond_wait(&cfg->done_cv, &cfg->mu);
    if (cfg->tail) cfg->tail->next = it;
    else cfg->head = it;
    cfg->tail = it;
    cfg->queued++;
    cfg->enq_seq++;
    if (cfg->queued == 1 || cfg->queued == AUDIT_BATCH) pthread_cond_signal(&cfg->cv);
    pthread_mutex_unlock(&cfg->mu);
}

typedef struct {
    audit_item *items;
    bv_arena *a;
} flush_ctx;

static int flush_unit(bv_store_txn *t, void *ctx)
{
    flush_ctx *f = ctx;
    for (audit_item *it = f->items; it; it = it->next)
        if (az_put_json(t, f->a, "AuditEvent", it->json, it->len)) bv_log(BV_LOG_ERROR, "audit: an AuditEvent could not be stored");
    return 0;
}

typedef struct {
    api_authz_cfg *cfg;
    bv_store *store;
} thread_arg;

static thread_arg g_arg;

static void *audit_thread(void *arg)
{
    bv_thread_name("bv-audit");
    thread_arg *ta = arg;
    api_authz_cfg *cfg = ta->cfg;
    for (;;) {
        pthread_mutex_lock(&cfg->mu);
        while (!cfg->head && !cfg->stop) pthread_cond_wait(&cfg->cv, &cfg->mu);
        if (!cfg->head && cfg->stop) {
            pthread_mutex_unlock(&cfg->mu);
            break;
        }
        /* gather for half the flush bound: one group commit (and one sync, which every read then
         * waits for) per batch instead of one per access */
        if (!cfg->stop && cfg->queued < AUDIT_BATCH) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (AZ_AUDIT_FLUSH_MS / 2) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            while (!cfg->stop && cfg->queued < AUDIT_BATCH && pthread_cond_timedwait(&cfg->cv, &cfg->mu, &ts) == 0) {
            }
        }
        audit_item *items = cfg->head, *last = NULL, *p = cfg->head;
        size_t n = 0;
        while (p && n < AUDIT_BATCH) {
            last = p;
            p = p->next;
            n++;
        }
        cfg->head = p;
        if (!p) cfg->tail = NULL;
        last->next = NULL;
        cfg->queued -= n;
        uint64_t upto = cfg->enq_seq - cfg->queued;
        pthread_mutex_unlock(&cfg->mu);
        flush_ctx f = {items, bv_arena_new(1 << 16)};
        if (bv_store_write(ta->store, flush_unit, &f)) bv_log(BV_LOG_ERROR, "audit: a batch of AuditEvents could not be stored");
        bv_arena_free(f.a);
        while (items) {
            audit_item *nx = items->next;
            free(items->json);
            free(items);
            items = nx;
        }
        pthread_mutex_lock(&cfg->mu);
        cfg->done_seq = upto;
        pthread_cond_broadcast(&cfg->done_cv);
        pthread_mutex_unlock(&cfg->mu);
    }
    return NULL;
}

void audit_start(api_authz_cfg *cfg, bv_store *s)
{
    pthread_mutex_init(&cfg->mu, NULL);
    pthread_cond_init(&cfg->cv, NULL);
    pthread_cond_init(&cfg->done_cv, NULL);
    g_arg = (thread_arg){cfg, s};
    if (pthread_create(&cfg->thread, NULL, audit_thread, &g_arg)) bv_panic("audit: cannot start the writer thread");
}

void audit_stop(api_authz_cfg *cfg, bv_store *s)
{
    (void)s;
    pthread_mutex_lock(&cfg->mu);
    cfg->stop = true;
    pthread_cond_signal(&cfg->cv);
    pthread_cond_broadcast(&cfg->done_cv);
    pthread_mutex_unlock(&cfg->mu);
    pthread_join(cfg->thread, NULL);
    pthread_cond_destroy(&cfg->cv);
    pthread_cond_destroy(&cfg->done_cv);
    pthread_mutex_destroy(&cfg->mu);
}

/* ------------------------------------------------------------------ entry points */
static const char *query_text(api_ctx *c)
{
    const char *rq = c->req->raw_query;
    const char *path = c->req->path;
    return rq && *rq ? bv_arena_printf(c->a, "%s?%s", path, rq) : path;
}

void audit_request(api_ctx *c)
{
    api_authz_cfg *cfg = c->api->az;
    api_az *z = c->az;
    if (!cfg || !z) return;
    int st = c->resp->status;
    if (!z->audit_action && st < 400) return; /* e.g. the outer request of a batch: entries are audited */
    audit_fields f = {.action = z->audit_action ? z->audit_action : "E", .subtype = z->audit_subtype,
                      .what = z->audit_what, .patient = z->audit_patient, .status = st};
    if (!f.what) f.query_text = query_text(c);
    if (st >= 400) f.desc = z->reason ? z->reason : bv_arena_printf(c->a, "HTTP %d", st);
    bv_buf b;
    bv_buf_init(&b, 0);
    build(c, &f, &b);
    enqueue(cfg, &b);
}

void audit_auth_failure(api_ctx *c, const char *why)
{
    api_authz_cfg *cfg = c->api->az;
    if (!cfg) return;
    api_az *keep = c->az;
    c->az = NULL;
    audit_fields f = {.action = "E", .status = 401, .desc = why, .auth_failure = true, .query_text = NULL};
    bv_buf b;
    bv_buf_init(&b, 0);
    build(c, &f, &b);
    c->az = keep;
    enqueue(cfg, &b);
}

int audit_unit(api_unit *u, bv_store_txn *t)
{
    api_ctx *c = u->c;
    api_az *z = c->az;
    if (!z) return 0;
    static const char *const act[] = {[OP_CREATE] = "C", [OP_UPDATE] = "U", [OP_DELETE] = "D", [OP_PATCH] = "U"};
    static const char *const sub[] = {[OP_CREATE] = "create", [OP_UPDATE] = "update", [OP_DELETE] = "delete",
                                      [OP_PATCH] = "patch"};
    audit_fields f = {.action = act[u->kind], .subtype = sub[u->kind], .status = u->status ? u->status : 200,
                      .patient = z->audit_patient,
                      .what = bv_arena_printf(c->a, "%s/%s", u->type, u->rec.id ? u->rec.id : u->id)};
    bv_buf b;
    bv_buf_init(&b, 0);
    build(c, &f, &b);
    int rc = az_put_json(t, c->a, "AuditEvent", bv_buf_cstr(&b), b.len);
    bv_buf_free(&b);
    if (rc == BV_OK) z->audited = true;
    /* Refused before any change (the request's own audit records it later): the write stands. A
     * store error may have left half an AuditEvent: the write must fail so that it is undone. */
    return rc == BV_OK || rc == BV_EINVAL || rc == BV_ECONFLICT ? 0 : rc;
}
