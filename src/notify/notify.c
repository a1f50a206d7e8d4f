/* The Subscription service: a dispatcher thread follows the change feed and matches changes
 * against the active Subscriptions; websocket pings go out at once, rest-hook notifications go
 * through a durable outbox to a delivery thread (see include/bevan/notify.h, docs/subscriptions.md).
 *
 * Durable state (store kv table):
 *   notify.cursor        last change seq the dispatcher has handled (written with outbox entries,
 *                        else at most once a second)
 *   notify.out.head/tail outbox entries live in [head, tail)
 *   notify.out.N         one pending rest-hook notification (JSON)
 *   notify.dead.N        a dead-lettered notification (JSON, with the reason); notify.dead.count */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CURSOR_SAVE_MS   1000
#define BACKOFF_CAP_MS   (5 * 60 * 1000)
#define CHANGES_BATCH    512

typedef struct {
    int64_t n;                /* outbox slot */
    char sub[BV_MAX_ID_LEN + 1];
    char type[64];
    char rid[BV_MAX_ID_LEN + 1];
    int64_t version;
    unsigned attempts;
    int64_t next_ms;
    int64_t created_ms;
} pending;

typedef struct {
    bv_ws *ws;
    char sub[BV_MAX_ID_LEN + 1];
} binding;

struct bv_notify {
    bv_notify_options o;
    bv_ws_handler wsh;
    pthread_mutex_t mu;       /* everything below */
    pthread_cond_t cv_disp, cv_del;
    int64_t commit_seq;
    uint64_t interest;        /* bv_store_type_bit of Subscription and of every active one's type */
    bool stopping;
    atomic_bool abort;
    /* active subscriptions: changed only by the dispatcher (under mu), read by others under mu */
    bv__sub **subs;
    size_t n_subs, cap_subs;
    binding *binds;
    size_t n_binds, cap_binds;
    pending *pend;
    size_t n_pend, cap_pend;
    int64_t out_head, out_tail, dead_count;
    bv_notify_stats st;
    int64_t cursor;
    pthread_t disp, deliv;
    bool threads;
    int slot;
};

/* ---------------------------------------------------------------- commit listener */
/* The store has no way to remove a listener: it calls a static slot, which forgets the notifier
 * when it stops. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bv_notify *g_slots[8];

static void on_commit(void *ctx, int64_t last_seq, uint64_t types)
{
    int slot = (int)(intptr_t)ctx;
    pthread_mutex_lock(&g_mu);
    bv_notify *n = g_slots[slot];
    if (n) {
        pthread_mutex_lock(&n->mu);
        if (last_seq > n->commit_seq) n->commit_seq = last_seq;
        /* Versions no Subscription is about are read at the dispatcher's next round (within
         * CURSOR_SAVE_MS), not at once: waking per group cost about 5 us of CPU per create. */
        if (types & n->interest) pthread_cond_signal(&n->cv_disp);
        pthread_mutex_unlock(&n->mu);
    }
    pthread_mutex_unlock(&g_mu);
}

/* ---------------------------------------------------------------- small helpers */

static void abs_deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

static char *outkey(bv_arena *a, int64_t n) { return bv_arena_printf(a, "notify.out.%lld", (long long)n); }

typedef struct {
    size_t n, cap;
    const char **keys;
    const char **vals;
    bv_arena *a;
} kv_batch;

static int kv_unit(bv_store_txn *t, void *ctx)
{
    kv_batch *b = ctx;
    for (size_t i = 0; i < b->n; i++) {
        int rc = bv_txn_kv_set(t, b->keys[i], b->vals[i]);
        if (rc) return rc;
    }
    return 0;
}

static void kv_add(kv_batch *b, const char *k, const char *v)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        const char **nk = bv_arena_alloc(b->a, cap * sizeof *nk), **nv = bv_arena_alloc(b->a, cap * sizeof *nv);
        if (b->n) {
            memcpy(nk, b->keys, b->n * sizeof *nk);
            memcpy(nv, b->vals, b->n * sizeof *nv);
        }
        b->keys = nk;
        b->vals = nv;
        b->cap = cap;
    }
    b->keys[b->n] = k;
    b->vals[b->n] = v;
    b->n++;
}

static const char *pending_json(bv_arena *a, const pending *p)
{
    bv_buf b;
    bv_buf_init(&b, 0);
    bv_buf_puts(&b, "{\"sub\":");
    json_write_string(&b, p->sub, strlen(p->sub));
    bv_buf_puts(&b, ",\"type\":");
    json_write_string(&b, p->type, strlen(p->type));
    bv_buf_puts(&b, ",\"id\":");
    json_write_string(&b, p->rid, strlen(p->rid));
    bv_buf_printf(&b, ",\"version\":%lld,\"attempts\":%u,\"next\":%lld,\"created\":%lld}", (long long)p->version,
                  p->attempts, (long long)p->next_ms, (long long)p->created_ms);
    const char *s = bv_arena_strndup(a, bv_buf_cstr(&b), b.len);
    bv_buf_free(&b);
    return s;
}

static bool pending_parse(bv_arena *a, const char *text, pending *p)
{
    json_value *v;
    json_error je;
    if (json_parse(a, text, strlen(text), NULL, &v, &je) != BV_OK) return false;
    const char *sub = json_get_str(v, "sub"), *type = json_get_str(v, "type"), *id = json_get_str(v, "id");
    int64_t ver, att, next, created;
    if (!sub || !type || !id || !json_number_to_i64(json_get(v, "version"), &ver) ||
        !json_number_to_i64(json_get(v, "attempts"), &att) || !json_number_to_i64(json_get(v, "next"), &next) ||
        !json_number_to_i64(json_get(v, "created"), &created))
        return false;
    snprintf(p->sub, sizeof p->sub, "%s", sub);
    snprintf(p->type, sizeof p->type, "%s", type);
    snprintf(p->rid, sizeof p->rid, "%s", id);
    p->version = ver;
    p->attempts = (unsigned)att;
    p->next_ms = next;
    p->created_ms = created;
    return true;
}

static bv__sub *find_sub(bv_notify *n, const char *id, size_t *idx)
{
    for (size_t i = 0; i < n->n_subs; i++)
        if (strcmp(n->subs[i]->id, id) == 0) {
            if (idx) *idx = i;
            return n->subs[i];
        }
    return NULL;
}

/* With n->mu held, or before the threads start: the types on_commit wakes the dispatcher for. */
static void refresh_interest(bv_notify *n)
{
    n->interest = bv_store_type_bit("Subscription");
    for (size_t k = 0; k < n->n_subs; k++) n->interest |= bv_store_type_bit(n->subs[k]->type);
}

/* Dispatcher only: replace or remove the entry for this Subscription id. */
static void set_sub(bv_notify *n, const char *id, bv__sub *s)
{
    pthread_mutex_lock(&n->mu);
    size_t i;
    bv__sub *old = find_sub(n, id, &i);
    if (old) {
        if (s) n->subs[i] = s;
        else n->subs[i] = n->subs[--n->n_subs];
    } else if (s) {
        if (n->n_subs == BV_NOTIFY_MAX_SUBS) {
            bv_log(BV_LOG_WARN, "notify: more than %d active Subscriptions; Subscription/%s is not served",
                   BV_NOTIFY_MAX_SUBS, id);
            bv__sub_free(s);
            s = NULL;
        } else {
            if (n->n_subs == n->cap_subs) {
                n->cap_subs = n->cap_subs ? n->cap_subs * 2 : 16;
                n->subs = bv_realloc(n->subs, n->cap_subs * sizeof *n->subs);
            }
            n->subs[n->n_subs++] = s;
        }
    }
    refresh_interest(n);
    pthread_mutex_unlock(&n->mu);
    bv__sub_free(old);
}

/* ---------------------------------------------------------------- in-process API writes */

static int local_call(bv_notify *n, bv_arena *a, const char *method, const char *path, const char *body)
{
    bv_request req;
    memset(&req, 0, sizeof req);
    req.arena = a;
    req.method = method;
    req.path = path;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    bv_kv *h = bv_arena_calloc(a, 1, sizeof *h);
    h[0].name = "Content-Type";
    h[0].value = "application/fhir+json";
    req.headers = h;
    req.n_headers = 1;
    req.peer = "bevan-notify";
    bv_response resp;
    bv_http_dispatch_local(n->o.api, n->o.api_ctx, &req, &resp);
    int status = resp.status;
    if (status >= 300)
        bv_log(BV_LOG_WARN, "notify: %s %s answered %d: %.300s", method, path, status, bv_buf_cstr(&resp.body));
    bv_buf_free(&resp.body);
    return status;
}

/* The Subscription goes to status "error" with the reason (R4 Subscription.error). */
static void sub_set_error(bv_notify *n, const char *id, const char *reason)
{
    if (!n->o.api) return;
    bv_arena *a = bv_arena_new(8192);
    bv_record r;
    json_value *v;
    json_error je;
    if (bv_store_read(n->o.store, a, "Subscription", id, &r) == BV_OK && !r.deleted &&
        json_parse(a, r.body, r.body_len, NULL, &v, &je) == BV_OK &&
        bv_streq(json_get_str(v, "status"), "active")) {
        json_set(a, v, "status", json_new_string(a, "error"));
        json_set(a, v, "error", json_new_string(a, reason));
        bv_buf b;
        bv_buf_init(&b, 0);
        json_write(&b, v, false);
        local_call(n, a, "PUT", bv_arena_printf(a, "%s/Subscription/%s", n->o.base_path, id),
                   bv_arena_strndup(a, bv_buf_cstr(&b), b.len));
        bv_buf_free(&b);
    }
    bv_arena_free(a);
}

static void audit_dead_letter(bv_notify *n, const pending *p, const char *reason)
{
    if (!n->o.api) return;
    bv_arena *a = bv_arena_new(8192);
    char ts[40];
    bv_format_instant(bv_now_ms(), ts, sizeof ts);
    bv_buf b;
    bv_buf_init(&b, 0);
    bv_buf_printf(&b,
                  "{\"resourceType\":\"AuditEvent\","
                  "\"type\":{\"system\":\"http://terminology.hl7.org/CodeSystem/audit-event-type\",\"code\":\"rest\","
                  "\"display\":\"RESTful Operation\"},"
                  "\"subtype\":[{\"system\":\"http://bevan.dev/fhir/CodeSystem/audit-subtype\",\"code\":\"subscription-dead-letter\","
                  "\"display\":\"Subscription notification not delivered\"}],"
                  "\"action\":\"E\",\"recorded\":\"%s\",\"outcome\":\"8\",\"outcomeDesc\":",
                  ts);
    char *desc = bv_arena_printf(a, "rest-hook notification for %s/%s version %lld not delivered after %u attempts: %s",
                                 p->type, p->rid, (long long)p->version, p->attempts, reason);
    json_write_string(&b, desc, strlen(desc));
    bv_buf_puts(&b, ",\"agent\":[{\"who\":{\"display\":\"Bevan Subscription delivery\"},\"requestor\":false}],"
                    "\"source\":{\"observer\":{\"display\":\"Bevan\"}},\"entity\":[{\"what\":{\"reference\":");
    char *sref = bv_arena_printf(a, "Subscription/%s", p->sub);
    json_write_string(&b, sref, strlen(sref));
    bv_buf_puts(&b, "}},{\"what\":{\"reference\":");
    char *rref = bv_arena_printf(a, "%s/%s/_history/%lld", p->type, p->rid, (long long)p->version);
    json_write_string(&b, rref, strlen(rref));
    bv_buf_puts(&b, "}}]}");
    local_call(n, a, "POST", bv_arena_printf(a, "%s/AuditEvent", n->o.base_path), bv_buf_cstr(&b));
    bv_buf_free(&b);
    bv_arena_free(a);
}

/* ---------------------------------------------------------------- websocket */

/* "bound {id}" (extra NULL) or "error {id} {extra}" */
static void ws_reply(bv_ws *ws, bv_arena *a, const char *id, const char *extra)
{
    char *m = extra ? bv_arena_printf(a, "error %s %s", id, extra) : bv_arena_printf(a, "bound %s", id);
    bv_ws_send_text(ws, m, strlen(m));
}

/* Is id an active websocket Subscription? (the table first; a Subscription stored a moment ago
 * may not have reached the dispatcher yet, so the store decides otherwise) */
static bool ws_sub_ok(bv_notify *n, bv_arena *a, const char *id)
{
    pthread_mutex_lock(&n->mu);
    bv__sub *s = find_sub(n, id, NULL);
    bool known = s != NULL, ok = s && s->websocket;
    pthread_mutex_unlock(&n->mu);
    if (known) return ok;
    bv_record r;
    if (bv_store_read(n->o.store, a, "Subscription", id, &r) != BV_OK) return false;
    bv__sub *t = bv__sub_from_record(&r);
    ok = t && t->websocket;
    bv__sub_free(t);
    return ok;
}

static void ws_on_text(void *ctx, bv_ws *ws, const char *msg, size_t len)
{
    bv_notify *n = ctx;
    bv_arena *a = bv_arena_new(4096);
    char *m = bv_arena_strndup(a, msg, len);
    while (len && (m[len - 1] == '\n' || m[len - 1] == '\r' || m[len - 1] == ' ')) m[--len] = '\0';
    const char *id = NULL, *token = NULL;
    if (bv_starts_with(m, "bind ")) {
        id = m + 5;
    } else if (bv_starts_with(m, "bind-with-token ")) {
        char *p = m + 16;
        char *sp = strchr(p, ' ');
        if (sp) { *sp = '\0'; token = sp + 1; }
        id = p;
    } else {
        ws_reply(ws, a, "-", "unknown command: send 'bind {id}' or 'bind-with-token {id} {token}'");
        bv_arena_free(a);
        return;
    }
    while (*id == ' ') id++;
    if (!bv_fhir_valid_id(id)) {
        ws_reply(ws, a, "-", "not a Subscription id");
        bv_arena_free(a);
        return;
    }
    if (n->o.auth) {
        if (!token) {
            const char *h = bv_ws_authorization(ws);
            if (h && strncasecmp(h, "Bearer ", 7) == 0) token = h + 7;
        }
        char why[160] = "a token is required: use 'bind-with-token {id} {access token}'";
        if (!token || !*token || n->o.auth(n->o.auth_ctx, token, id, why, sizeof why) != 0) {
            ws_reply(ws, a, id, why);
            bv_arena_free(a);
            return;
        }
    }
    if (!ws_sub_ok(n, a, id)) {
        ws_reply(ws, a, id, "no active websocket Subscription with this id");
        bv_arena_free(a);
        return;
    }
    pthread_mutex_lock(&n->mu);
    size_t mine = 0;
    bool dup = false;
    for (size_t i = 0; i < n->n_binds; i++)
        if (n->binds[i].ws == ws) {
            mine++;
            if (strcmp(n->binds[i].sub, id) == 0) dup = true;
        }
    bool full = !dup && mine >= BV_NOTIFY_MAX_BINDS;
    if (!dup && !full) {
        if (n->n_binds == n->cap_binds) {
            n->cap_binds = n->cap_binds ? n->cap_binds * 2 : 16;
            n->binds = bv_realloc(n->binds, n->cap_binds * sizeof *n->binds);
        }
        n->binds[n->n_binds].ws = ws;
        snprintf(n->binds[n->n_binds].sub, sizeof n->binds[n->n_binds].sub, "%s", id);
        n->n_binds++;
    }
    pthread_mutex_unlock(&n->mu);
    if (full) ws_reply(ws, a, id, "too many Subscriptions bound on this connection");
    else ws_reply(ws, a, id, NULL);
    bv_arena_free(a);
}

static void ws_on_close(void *ctx, bv_ws *ws)
{
    bv_notify *n = ctx;
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; i < n->n_binds;) {
        if (n->binds[i].ws == ws) n->binds[i] = n->binds[--n->n_binds];
        else i++;
    }
    pthread_mutex_unlock(&n->mu);
}

/* ---------------------------------------------------------------- dispatcher */

/* Does the current version of rec match the Subscription's criteria? Only when rec is still the
 * current version (a later change is matched on its own). */
/* A criteria search reshaped to one unsorted first page of count, no total, the newest data. */
static void first_page(bv_search *q, size_t count)
{
    q->count = count;
    q->offset = 0;
    q->cursor = NULL;
    q->sort = NULL;
    q->n_sort = 0;
    q->want_total = false;
    q->max_seq = 0;
}

static bool matches(bv_notify *n, bv_arena *a, const bv__sub *s, const bv_record *rec)
{
    bv_search q = *s->search;
    bv_or *ands = bv_arena_calloc(a, q.n_ands + 1, sizeof *ands);
    if (q.n_ands) memcpy(ands, q.ands, q.n_ands * sizeof *ands);
    bv_pred *p = bv_arena_calloc(a, 1, sizeof *p);
    p->kind = BV_IX_TOKEN;
    p->op = BV_OP_TOKEN;
    p->param = "_id";
    p->code = rec->id;
    ands[q.n_ands].preds = p;
    ands[q.n_ands].n = 1;
    q.ands = ands;
    q.n_ands++;
    first_page(&q, 1);
    bv_record *recs = NULL;
    size_t k = 0;
    if (bv_store_search(n->o.store, a, &q, &recs, &k, NULL) != BV_OK) return false;
    return k == 1 && recs[0].version == rec->version;
}

/* matches() for m changes at once (one search): hit[c] for recs[cand[c]]. A change that is not
 * the current version of its resource never matches (its successor is matched on its own). */
static void match_batch(bv_notify *n, bv_arena *a, const bv__sub *s, const bv_record *recs, const size_t *cand, size_t m,
                        bool *hit)
{
    for (size_t c = 0; c < m; c++) hit[c] = false;
    if (m == 1) {
        hit[0] = matches(n, a, s, &recs[cand[0]]);
        return;
    }
    bv_search q = *s->search;
    bv_or *ands = bv_arena_calloc(a, q.n_ands + 1, sizeof *ands);
    if (q.n_ands) memcpy(ands, q.ands, q.n_ands * sizeof *ands);
    bv_pred *p = bv_arena_calloc(a, m, sizeof *p);
    for (size_t c = 0; c < m; c++) {
        p[c].kind = BV_IX_TOKEN;
        p[c].op = BV_OP_TOKEN;
        p[c].param = "_id";
        p[c].code = recs[cand[c]].id;
    }
    ands[q.n_ands].preds = p;
    ands[q.n_ands].n = m;
    q.ands = ands;
    q.n_ands++;
    first_page(&q, m);
    bv_record *found = NULL;
    size_t k = 0;
    if (bv_store_search(n->o.store, a, &q, &found, &k, NULL) != BV_OK) {
        for (size_t c = 0; c < m; c++) hit[c] = matches(n, a, s, &recs[cand[c]]);   /* one by one */
        return;
    }
    for (size_t f = 0; f < k; f++)
        for (size_t c = 0; c < m; c++)
            if (recs[cand[c]].version == found[f].version && strcmp(recs[cand[c]].id, found[f].id) == 0) hit[c] = true;
}

static void ws_ping(bv_notify *n, bv_arena *a, const char *sub_id)
{
    char *m = bv_arena_printf(a, "ping %s", sub_id);
    size_t ml = strlen(m);
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; i < n->n_binds; i++)
        if (strcmp(n->binds[i].sub, sub_id) == 0 && bv_ws_send_text(n->binds[i].ws, m, ml) == BV_OK) n->st.ws_pings++;
    pthread_mutex_unlock(&n->mu);
}

static void pend_push(bv_notify *n, const pending *p)
{
    if (n->n_pend == n->cap_pend) {
        n->cap_pend = n->cap_pend ? n->cap_pend * 2 : 64;
        n->pend = bv_realloc(n->pend, n->cap_pend * sizeof *n->pend);
    }
    n->pend[n->n_pend++] = *p;
}

/* One batch of changes. Returns false when nothing was there to do. */
static bool dispatch_batch(bv_notify *n, bv_arena *a, int64_t *last_save_ms)
{
    bv_record *recs = NULL;
    size_t k = 0;
    if (bv_store_changes(n->o.store, a, n->cursor, CHANGES_BATCH, &recs, &k) != BV_OK || k == 0) {
        /* persist an advanced cursor that has not been saved yet */
        return false;
    }
    size_t cap_fresh = k + 8, nf = 0;
    pending *fresh = bv_arena_calloc(a, cap_fresh, sizeof *fresh);
    int64_t now = bv_now_ms();
    pthread_mutex_lock(&n->mu);
    int64_t tail = n->out_tail;
    size_t queued = n->n_pend;
    pthread_mutex_unlock(&n->mu);
    /* Subscriptions first (each one only sees changes after its own version: s->seq) */
    for (size_t i = 0; i < k; i++)
        if (strcmp(recs[i].type, "Subscription") == 0) set_sub(n, recs[i].id, bv__sub_from_record(&recs[i]));
    /* then one search per Subscription for the whole batch: the criteria AND _id in (the batch's
     * resources of its type); a change matches when its version is the one that is current */
    size_t *cand = bv_arena_alloc(a, k * sizeof *cand);
    bool *hit = bv_arena_alloc(a, k * sizeof *hit);
    /* index rows of each changed resource, extracted when a simple Subscription first needs them */
    bv_index_row **rows = bv_arena_calloc(a, k, sizeof *rows);
    size_t *n_rows = bv_arena_calloc(a, k, sizeof *n_rows);
    signed char *have = bv_arena_calloc(a, k, sizeof *have);   /* 0 not yet, 1 ok, -1 failed */
    /* the dispatcher is the only writer of the table: reading it here needs no lock */
    for (size_t j = 0; j < n->n_subs; j++) {
        bv__sub *s = n->subs[j];
        if (s->end_ms && now > s->end_ms) continue;
        size_t m = 0;
        for (size_t i = 0; i < k; i++)
            if (!recs[i].deleted && recs[i].seq > s->seq && strcmp(s->type, recs[i].type) == 0) cand[m++] = i;
        if (!m) continue;
        if (s->simple) {
            /* decided on the changed version's own index rows: no search, no wait for a sync */
            for (size_t c = 0; c < m; c++) {
                size_t i = cand[c];
                if (!have[i]) {
                    json_value *v;
                    json_error je;
                    have[i] = json_parse(a, recs[i].body, recs[i].body_len, NULL, &v, &je) == BV_OK &&
                                      bv_fhir_extract_index(a, v, &rows[i], &n_rows[i]) == BV_OK
                                  ? 1 : -1;
                }
                hit[c] = have[i] > 0 ? bv__match_rows(s->search, recs[i].id, rows[i], n_rows[i])
                                     : matches(n, a, s, &recs[i]);
            }
        } else {
            match_batch(n, a, s, recs, cand, m, hit);
        }
        for (size_t c = 0; c < m; c++) {
            if (!hit[c]) continue;
            const bv_record *r = &recs[cand[c]];
            pthread_mutex_lock(&n->mu);
            n->st.matched++;
            pthread_mutex_unlock(&n->mu);
            if (s->websocket) {
                ws_ping(n, a, s->id);
                continue;
            }
            if (queued + nf >= BV_NOTIFY_MAX_PENDING) {
                bv_log(BV_LOG_WARN, "notify: outbox full (%d): notification for Subscription/%s dropped",
                       BV_NOTIFY_MAX_PENDING, s->id);
                continue;
            }
            if (nf == cap_fresh) {
                pending *bigger = bv_arena_calloc(a, cap_fresh * 2, sizeof *bigger);
                memcpy(bigger, fresh, nf * sizeof *fresh);
                fresh = bigger;
                cap_fresh *= 2;
            }
            pending *p = &fresh[nf++];
            p->n = tail++;
            snprintf(p->sub, sizeof p->sub, "%s", s->id);
            snprintf(p->type, sizeof p->type, "%s", r->type);
            snprintf(p->rid, sizeof p->rid, "%s", r->id);
            p->version = r->version;
            p->next_ms = now;
            p->created_ms = now;
        }
    }
    int64_t new_cursor = recs[k - 1].seq;
    if (nf || bv_now_ms() - *last_save_ms >= CURSOR_SAVE_MS) {
        kv_batch *b = bv_arena_calloc(a, 1, sizeof *b);
        b->a = a;
        for (size_t i = 0; i < nf; i++) kv_add(b, outkey(a, fresh[i].n), pending_json(a, &fresh[i]));
        kv_add(b, "notify.out.tail", bv_arena_printf(a, "%lld", (long long)tail));
        kv_add(b, "notify.cursor", bv_arena_printf(a, "%lld", (long long)new_cursor));
        int rc = bv_store_write(n->o.store, kv_unit, b);
        if (rc) {
            /* not stored: handle these changes again later (websocket pings may repeat) */
            bv_log(BV_LOG_WARN, "notify: cannot store the outbox (%d); retrying", rc);
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
            return true;
        }
        *last_save_ms = bv_now_ms();
        pthread_mutex_lock(&n->mu);
        for (size_t i = 0; i < nf; i++) pend_push(n, &fresh[i]);
        n->out_tail = tail;
        n->st.pending = n->n_pend;
        if (nf) pthread_cond_signal(&n->cv_del);
        pthread_mutex_unlock(&n->mu);
    }
    n->cursor = new_cursor;
    return true;
}

static void *dispatcher_main(void *arg)
{
    bv_thread_name("bv-notify");
    bv_notify *n = arg;
    bv_arena *a = bv_arena_new(64 * 1024);
    int64_t last_save = bv_now_ms();
    int64_t saved_cursor = n->cursor;
    for (;;) {
        pthread_mutex_lock(&n->mu);
        if (!n->stopping && n->commit_seq <= n->cursor) {
            struct timespec ts;
            abs_deadline(&ts, CURSOR_SAVE_MS);
            pthread_cond_timedwait(&n->cv_disp, &n->mu, &ts);
        }
        bool stop = n->stopping;
        pthread_mutex_unlock(&n->mu);
        if (stop) break;
        bool more = true;
        while (more && !atomic_load(&n->abort)) {
            bv_arena_reset(a);
            more = dispatch_batch(n, a, &last_save);
        }
        /* a cursor moved by changes that made no notification: save it now and then */
        if (n->cursor != saved_cursor && bv_now_ms() - last_save >= CURSOR_SAVE_MS) {
            kv_batch b = {.a = a};
            char cur[32];
            snprintf(cur, sizeof cur, "%lld", (long long)n->cursor);
            kv_add(&b, "notify.cursor", cur);
            if (bv_store_write(n->o.store, kv_unit, &b) == BV_OK) {
                saved_cursor = n->cursor;
                last_save = bv_now_ms();
            }
        }
    }
    bv_arena_free(a);
    return NULL;
}

/* ---------------------------------------------------------------- delivery */

/* Loopback endpoints, or one of the configured prefixes (server-side request forgery control:
 * the server only calls where its operator said it may). */
static bool endpoint_allowed(const bv_notify *n, const char *url)
{
    for (size_t i = 0; i < n->o.n_endpoints; i++)
        if (n->o.endpoints[i] && *n->o.endpoints[i] && bv_starts_with(url, n->o.endpoints[i])) return true;
    const char *h = bv_starts_with(url, "http://") ? url + 7 : bv_starts_with(url, "https://") ? url + 8 : NULL;
    if (!h) return false;
    size_t auth = strcspn(h, "/?#");
    if (memchr(h, '@', auth) || memchr(h, '\\', auth)) return false;   /* userinfo could name another host */
    static const char *const loop[] = {"localhost", "[::1]"};
    for (size_t i = 0; i < 2; i++) {
        size_t l = strlen(loop[i]);
        if (strncasecmp(h, loop[i], l) == 0 && (h[l] == ':' || h[l] == '/' || h[l] == '\0')) return true;
    }
    if (strncmp(h, "127.", 4) != 0) return false;
    /* 127.a.b.c: digits and dots only up to the port or path */
    size_t k = strspn(h, "0123456789.");
    return k > 4 && (h[k] == ':' || h[k] == '/' || h[k] == '\0');
}

static int64_t backoff_ms(const bv_notify *n, unsigned attempts)
{
    int64_t d = n->o.backoff_ms;
    for (unsigned i = 1; i < attempts && d < BACKOFF_CAP_MS; i++) d *= 2;
    return d > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : d;
}

/* Removes the entry for slot from the in-memory outbox; returns the new head. Under mu. */
static int64_t pend_remove(bv_notify *n, int64_t slot)
{
    for (size_t i = 0; i < n->n_pend; i++)
        if (n->pend[i].n == slot) {
            memmove(&n->pend[i], &n->pend[i + 1], (n->n_pend - i - 1) * sizeof *n->pend);
            n->n_pend--;
            break;
        }
    int64_t head = n->out_tail;
    for (size_t i = 0; i < n->n_pend; i++)
        if (n->pend[i].n < head) head = n->pend[i].n;
    n->st.pending = n->n_pend;
    return head;
}

/* Finishes an entry: removed from the outbox; dead-lettered with a reason when reason != NULL. */
static void finish_entry(bv_notify *n, bv_arena *a, const pending *p, const char *reason)
{
    pthread_mutex_lock(&n->mu);
    int64_t head = pend_remove(n, p->n);
    int64_t dead = n->dead_count;
    if (reason) { n->dead_count++; n->st.dead++; }
    else n->st.delivered++;
    pthread_mutex_unlock(&n->mu);
    kv_batch b = {.a = a};
    kv_add(&b, outkey(a, p->n), NULL);
    kv_add(&b, "notify.out.head", bv_arena_printf(a, "%lld", (long long)head));
    if (reason) {
        bv_buf j;
        bv_buf_init(&j, 0);
        const char *pj = pending_json(a, p);
        bv_buf_append(&j, pj, strlen(pj) - 1);
        bv_buf_puts(&j, ",\"reason\":");
        json_write_string(&j, reason, strlen(reason));
        bv_buf_putc(&j, '}');
        kv_add(&b, bv_arena_printf(a, "notify.dead.%lld", (long long)dead), bv_arena_strndup(a, bv_buf_cstr(&j), j.len));
        kv_add(&b, "notify.dead.count", bv_arena_printf(a, "%lld", (long long)dead + 1));
        bv_buf_free(&j);
    }
    if (bv_store_write(n->o.store, kv_unit, &b) != BV_OK)
        bv_log(BV_LOG_WARN, "notify: cannot update the outbox for slot %lld (it may be sent again)", (long long)p->n);
}

#define MAX_HEADS 1024

static void *delivery_main(void *arg)
{
    bv_thread_name("bv-deliver");
    bv_notify *n = arg;
    const char **seen_subs = bv_calloc(MAX_HEADS, sizeof *seen_subs);
    bv__http_client *hc = bv__http_client_new();
    bv_arena *a = bv_arena_new(64 * 1024);
    for (;;) {
        pthread_mutex_lock(&n->mu);
        pending p;
        memset(&p, 0, sizeof p);
        bool found = false;
        int64_t now = bv_now_ms(), wait = 1000;
        while (!n->stopping) {
            now = bv_now_ms();
            wait = 1000;
            /* only the oldest entry of each Subscription may go: notifications of one Subscription
             * keep their order, and a failing receiver holds back only its own */
            size_t n_seen = 0;
            for (size_t i = 0; i < n->n_pend; i++) {
                bool seen = false;
                for (size_t k = 0; k < n_seen && !seen; k++) seen = strcmp(seen_subs[k], n->pend[i].sub) == 0;
                if (seen) continue;
                if (n_seen < MAX_HEADS) seen_subs[n_seen++] = n->pend[i].sub;
                if (n->pend[i].next_ms <= now) { p = n->pend[i]; found = true; break; }
                if (n->pend[i].next_ms - now < wait) wait = n->pend[i].next_ms - now;
            }
            if (found) break;
            struct timespec ts;
            abs_deadline(&ts, wait < 1 ? 1 : wait);
            pthread_cond_timedwait(&n->cv_del, &n->mu, &ts);
        }
        if (n->stopping) { pthread_mutex_unlock(&n->mu); break; }
        /* what the delivery needs from the Subscription, copied under the lock */
        bv_arena_reset(a);
        bv__sub *s = find_sub(n, p.sub, NULL);
        const char *endpoint = NULL;
        const char **headers = NULL;
        size_t nh = 0;
        bool full = false;
        if (s && !s->websocket) {
            endpoint = bv_arena_strdup(a, s->endpoint);
            full = s->full_resource;
            nh = s->n_headers;
            headers = bv_arena_calloc(a, nh + 1, sizeof *headers);
            for (size_t i = 0; i < nh; i++) headers[i] = bv_arena_strdup(a, s->headers[i]);
        }
        pthread_mutex_unlock(&n->mu);
        if (!endpoint) {
            finish_entry(n, a, &p, "the Subscription is no longer active");
            continue;
        }
        if (!endpoint_allowed(n, endpoint)) {
            const char *why = "the endpoint is not allowed on this server (bevan serve --notify-endpoint PREFIX)";
            bv_log(BV_LOG_WARN, "notify: Subscription/%s: %s", p.sub, why);
            finish_entry(n, a, &p, why);
            audit_dead_letter(n, &p, why);
            sub_set_error(n, p.sub, why);
            continue;
        }
        bv__delivery d = {.method = "POST", .url = endpoint, .headers = headers, .n_headers = nh,
                          .timeout_ms = n->o.timeout_ms, .abort = &n->abort};
        if (full) {
            bv_record r;
            if (bv_store_vread(n->o.store, a, p.type, p.rid, p.version, &r) != BV_OK || r.deleted) {
                finish_entry(n, a, &p, "the resource version is no longer readable");
                continue;
            }
            size_t el = strlen(endpoint);
            d.url = bv_arena_printf(a, "%.*s/%s/%s", (int)(el && endpoint[el - 1] == '/' ? el - 1 : el), endpoint, p.type,
                                    p.rid);
            d.method = "PUT";
            d.body = r.body;
            d.body_len = r.body_len;
        }
        char why[256] = "";
        bv_log(BV_LOG_DEBUG, "notify: %s %s for Subscription/%s (slot %lld, attempt %u)", d.method, d.url, p.sub,
               (long long)p.n, p.attempts + 1);
        int status = bv__http_deliver(hc, &d, why, sizeof why);
        bv_log(BV_LOG_DEBUG, "notify: -> %d %s", status, why);
        if (atomic_load(&n->abort)) break;   /* stopping: the entry stays in the outbox */
        if (status >= 200 && status <= 299) {
            finish_entry(n, a, &p, NULL);
            continue;
        }
        p.attempts++;
        if (p.attempts >= n->o.max_attempts) {
            bv_log(BV_LOG_WARN, "notify: Subscription/%s: giving up on %s/%s after %u attempts: %s", p.sub, p.type, p.rid,
                   p.attempts, why);
            finish_entry(n, a, &p, why);
            audit_dead_letter(n, &p, why);
            sub_set_error(n, p.sub, bv_arena_printf(a, "rest-hook delivery failed after %u attempts: %s", p.attempts, why));
            continue;
        }
        int64_t next = bv_now_ms() + backoff_ms(n, p.attempts);
        p.next_ms = next;
        pthread_mutex_lock(&n->mu);
        n->st.retries++;
        for (size_t i = 0; i < n->n_pend; i++)
            if (n->pend[i].n == p.n) n->pend[i] = p;
        pthread_mutex_unlock(&n->mu);
        kv_batch b = {.a = a};
        kv_add(&b, outkey(a, p.n), pending_json(a, &p));
        bv_store_write(n->o.store, kv_unit, &b);
    }
    bv_arena_free(a);
    free(seen_subs);
    bv__http_client_free(hc);
    return NULL;
}

/* ---------------------------------------------------------------- start / stop */

static int64_t kv_int(bv_store *s, bv_arena *a, const char *key, int64_t dflt)
{
    const char *v;
    int64_t x;
    if (bv_store_kv_get(s, a, key, &v) != BV_OK || bv_str_to_i64(v, strlen(v), &x) != BV_OK) return dflt;
    return x;
}

static int load_state(bv_notify *n, char *err, size_t errlen)
{
    bv_arena *a = bv_arena_new(64 * 1024);
    bv_store *st = n->o.store;
    const char *cur;
    if (bv_store_kv_get(st, a, "notify.cursor", &cur) == BV_OK) {
        n->cursor = kv_int(st, a, "notify.cursor", 0);
    } else {
        /* first start: what was stored before Subscriptions existed notifies nobody */
        n->cursor = bv_store_last_seq(st);
    }
    n->commit_seq = bv_store_last_seq(st);
    refresh_interest(n);
    n->out_head = kv_int(st, a, "notify.out.head", 0);
    n->out_tail = kv_int(st, a, "notify.out.tail", 0);
    n->dead_count = kv_int(st, a, "notify.dead.count", 0);
    /* active Subscriptions */
    bv_param ps[1] = {{"status", "active"}};
    bv_search_request sr;
    bv_outcome oo;
    bv_outcome_init(&oo, a);
    memset(&sr, 0, sizeof sr);
    if (bv_fhir_parse_search(a, "Subscription", ps, 1, true, &sr, &oo)) {
        snprintf(err, errlen, "cannot build the Subscription query");
        bv_arena_free(a);
        return BV_EINTERNAL;
    }
    sr.search.count = BV_NOTIFY_MAX_SUBS;
    bv_record *recs;
    size_t k;
    if (bv_store_search(st, a, &sr.search, &recs, &k, NULL) != BV_OK) {
        snprintf(err, errlen, "cannot read the Subscriptions");
        bv_arena_free(a);
        return BV_EIO;
    }
    for (size_t i = 0; i < k; i++) set_sub(n, recs[i].id, bv__sub_from_record(&recs[i]));
    /* the outbox */
    int64_t loaded = 0;
    for (int64_t slot = n->out_head; slot < n->out_tail && loaded < BV_NOTIFY_MAX_PENDING; slot++) {
        bv_arena_reset(a);
        const char *v;
        if (bv_store_kv_get(st, a, outkey(a, slot), &v) != BV_OK) continue;
        pending p;
        memset(&p, 0, sizeof p);
        if (!pending_parse(a, v, &p)) continue;
        p.n = slot;
        /* resumed: try again now rather than after the backoff of the previous run */
        if (p.next_ms > bv_now_ms()) p.next_ms = bv_now_ms();
        pend_push(n, &p);
        loaded++;
    }
    n->st.pending = n->n_pend;
    if (loaded) bv_log(BV_LOG_INFO, "notify: %lld rest-hook notifications resumed from the outbox", (long long)loaded);
    bv_arena_free(a);
    return BV_OK;
}

int bv_notify_start(const bv_notify_options *opt, bv_notify **out, char *err, size_t errlen)
{
    *out = NULL;
    bv_notify *n = bv_calloc(1, sizeof *n);
    n->o = *opt;
    if (!n->o.max_attempts) n->o.max_attempts = 6;
    if (!n->o.backoff_ms) n->o.backoff_ms = 1000;
    if (!n->o.timeout_ms) n->o.timeout_ms = 10000;
    if (!n->o.base_path) n->o.base_path = "/fhir";
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv_disp, NULL);
    pthread_cond_init(&n->cv_del, NULL);
    atomic_init(&n->abort, false);
    n->wsh.path = BV_NOTIFY_WS_PATH;
    n->wsh.ctx = n;
    n->wsh.on_text = ws_on_text;
    n->wsh.on_close = ws_on_close;
    int rc = load_state(n, err, errlen);
    if (rc) { bv_notify_stop(n); return rc; }
    pthread_mutex_lock(&g_mu);
    n->slot = -1;
    for (int i = 0; i < 8; i++)
        if (!g_slots[i]) { g_slots[i] = n; n->slot = i; break; }
    pthread_mutex_unlock(&g_mu);
    if (n->slot < 0 || bv_store_on_commit(n->o.store, on_commit, (void *)(intptr_t)n->slot) != BV_OK) {
        snprintf(err, errlen, "cannot listen to the store's commits");
        bv_notify_stop(n);
        return BV_EINTERNAL;
    }
    if (pthread_create(&n->disp, NULL, dispatcher_main, n) != 0 || pthread_create(&n->deliv, NULL, delivery_main, n) != 0)
        bv_panic("notify: cannot start threads");
    n->threads = true;
    *out = n;
    return BV_OK;
}

void bv_notify_stop(bv_notify *n)
{
    if (!n) return;
    pthread_mutex_lock(&g_mu);
    if (n->slot >= 0 && g_slots[n->slot] == n) g_slots[n->slot] = NULL;
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_lock(&n->mu);
    n->stopping = true;
    atomic_store(&n->abort, true);
    pthread_cond_broadcast(&n->cv_disp);
    pthread_cond_broadcast(&n->cv_del);
    pthread_mutex_unlock(&n->mu);
    if (n->threads) {
        pthread_join(n->disp, NULL);
        pthread_join(n->deliv, NULL);
    }
    /* the cursor as far as it got (best effort; unsaved work is redone at the next start) */
    for (size_t i = 0; i < n->n_subs; i++) bv__sub_free(n->subs[i]);
    free(n->subs);
    free(n->binds);
    free(n->pend);
    pthread_cond_destroy(&n->cv_disp);
    pthread_cond_destroy(&n->cv_del);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

const bv_ws_handler *bv_notify_ws_handler(bv_notify *n) { return &n->wsh; }

void bv_notify_get_stats(bv_notify *n, bv_notify_stats *out)
{
    pthread_mutex_lock(&n->mu);
    *out = n->st;
    pthread_mutex_unlock(&n->mu);
}
