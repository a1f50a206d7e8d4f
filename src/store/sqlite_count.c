/* SQLite store: upkeep of ix_token_count (schema 3), the number of live resources of each type
 * with a token row (param, code, system). Search answers the total of a search that is exactly
 * one "param=system|code" from it (sqlite_search.c, count_by_token_table) instead of counting
 * 100,000 matches. The writer calls these inside the write unit, around the resource's index
 * rows, so the counts commit and roll back with them. A resource counts once per distinct value;
 * composite components ("param#i") and tokens without a system or code are not counted. */
#include "internal.h"

#include <sqlite3.h>

#include <stdlib.h>
#include <string.h>

static bool counted(const bv_index_row *r)
{
    return r->kind == BV_IX_TOKEN && r->param && r->system && r->code && !strchr(r->param, '#');
}

/* n += delta for (param, code, system, type), inserting the row when there is none. */
static int bump(bv__conn *c, const char *param, const char *code, const char *system, const char *type, int delta)
{
    sqlite3_stmt *st = bv__stmt(c, ST_TC_ADD);
    if (!st) return BV_EINTERNAL;
    sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, system, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, delta);
    int rc = sqlite3_step(st);
    bv__done(st);
    if (rc != SQLITE_DONE) return bv__fail(c, rc, "token count");
    if (sqlite3_changes(c->db) > 0) return BV_OK;
    if (!(st = bv__stmt(c, ST_TC_NEW))) return BV_EINTERNAL;
    sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, system, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, delta);
    rc = sqlite3_step(st);
    bv__done(st);
    return rc == SQLITE_DONE ? BV_OK : bv__fail(c, rc, "token count");
}

/* ---- changes pending within a unit: (param, code, system, type) -> delta ---- */
typedef struct {
    uint64_t hash;
    char *key;      /* param \0 code \0 system \0 type \0, one allocation */
    size_t key_len;
    int delta;
} tc_entry;

struct bv__tc_pending {
    tc_entry *e;
    size_t cap, n;  /* open addressing, cap a power of two, n <= cap / 2 */
};

struct bv__tc_pending *bv__token_count_pending_new(void) { return bv_calloc(1, sizeof(struct bv__tc_pending)); }

static void pending_clear(struct bv__tc_pending *p)
{
    for (size_t i = 0; i < p->cap; i++) free(p->e[i].key);
    free(p->e);
    p->e = NULL;
    p->cap = p->n = 0;
}

void bv__token_count_pending_free(struct bv__tc_pending *p)
{
    if (!p) return;
    pending_clear(p);
    free(p);
}

static void pending_insert(struct bv__tc_pending *p, uint64_t h, char *key, size_t key_len, int delta)
{
    size_t i = (size_t)h & (p->cap - 1);
    while (p->e[i].key) i = (i + 1) & (p->cap - 1);
    p->e[i] = (tc_entry){.hash = h, .key = key, .key_len = key_len, .delta = delta};
    p->n++;
}

static void pending_add(struct bv__tc_pending *p, const char *param, const char *code, const char *system,
                        const char *type, int delta)
{
    const char *parts[4] = {param, code, system, type};
    size_t lens[4], len = 0;
    uint64_t h = BV_HASH_BASIS;
    for (int k = 0; k < 4; k++) {
        lens[k] = strlen(parts[k]);
        h = bv_hash(h, parts[k], lens[k] + 1); /* with its NUL: "ab"+"c" differs from "a"+"bc" */
        len += lens[k] + 1;
    }
    if (p->cap) {
        for (size_t i = (size_t)h & (p->cap - 1); p->e[i].key; i = (i + 1) & (p->cap - 1)) {
            if (p->e[i].hash != h || p->e[i].key_len != len) continue;
            const char *q = p->e[i].key;
            bool same = true;
            for (int k = 0; k < 4 && same; k++) {
                same = memcmp(q, parts[k], lens[k] + 1) == 0;
                q += lens[k] + 1;
            }
            if (same) {
                p->e[i].delta += delta;
                return;
            }
        }
    }
    if (2 * (p->n + 1) > p->cap) { /* grow: rehash every entry into a table twice as large */
        struct bv__tc_pending old = *p;
        p->cap = old.cap ? old.cap * 2 : 64;
        p->e = bv_calloc(p->cap, sizeof *p->e);
        p->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.e[i].key) pending_insert(p, old.e[i].hash, old.e[i].key, old.e[i].key_len, old.e[i].delta);
        free(old.e);
    }
    char *key = bv_malloc(len), *w = key;
    for (int k = 0; k < 4; k++) {
        memcpy(w, parts[k], lens[k] + 1);
        w += lens[k] + 1;
    }
    pending_insert(p, h, key, len, delta);
}

int bv__token_count_flush(bv__conn *c)
{
    struct bv__tc_pending *p = c->tc;
    if (!p || !p->n) return BV_OK;
    int rc = BV_OK;
    for (size_t i = 0; i < p->cap && !rc; i++) {
        if (!p->e[i].key || !p->e[i].delta) continue;
        const char *param = p->e[i].key, *code = param + strlen(param) + 1, *system = code + strlen(code) + 1,
                   *type = system + strlen(system) + 1;
        rc = bump(c, param, code, system, type, p->e[i].delta);
    }
    pending_clear(p);
    return rc;
}

void bv__token_count_discard(bv__conn *c)
{
    if (c->tc) pending_clear(c->tc);
}

/* n += delta now, or later (summed) on a connection that keeps the changes pending */
static int count_change(bv__conn *c, const char *param, const char *code, const char *system, const char *type,
                        int delta)
{
    if (!c->tc) return bump(c, param, code, system, type, delta);
    pending_add(c->tc, param, code, system, type, delta);
    return BV_OK;
}

int bv__token_count_drop(bv__conn *c, int64_t rid, const char *type)
{
    sqlite3_stmt *st = bv__stmt(c, ST_TC_OLD);
    if (!st) return BV_EINTERNAL;
    sqlite3_bind_int64(st, 1, rid);
    int rc, ret = BV_OK;
    /* the resource's current values (DISTINCT: once each), decremented while they are read */
    while (ret == BV_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ret = count_change(c, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
                           (const char *)sqlite3_column_text(st, 2), type, -1);
    if (ret == BV_OK && rc != SQLITE_DONE) ret = bv__fail(c, rc, "token count: old values");
    bv__done(st);
    return ret;
}

static int cmp_row(const void *pa, const void *pb)
{
    const bv_index_row *a = *(const bv_index_row *const *)pa, *b = *(const bv_index_row *const *)pb;
    int d = strcmp(a->param, b->param);
    if (!d) d = strcmp(a->code, b->code);
    if (!d) d = strcmp(a->system, b->system);
    return d;
}

int bv__token_count_add(bv__conn *c, const char *type, const bv_index_row *rows, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += counted(&rows[i]);
    if (!k) return BV_OK;
    const bv_index_row **v = bv_malloc(k * sizeof *v);
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (counted(&rows[i])) v[k++] = &rows[i];
    qsort(v, k, sizeof *v, cmp_row); /* equal values side by side: each is counted once */
    int rc = BV_OK;
    for (size_t i = 0; i < k && !rc; i++)
        if (i == 0 || cmp_row(&v[i - 1], &v[i]) != 0) rc = count_change(c, v[i]->param, v[i]->code, v[i]->system, type, 1);
    free(v);
    return rc;
}

int bv_txn_recount_index(bv_store_txn *t)
{
    if (!t) return BV_EINVAL;
    bv__token_count_discard(t->c); /* the recount below includes whatever they would change */
    int rc = bv__txn_exec(t, "DELETE FROM ix_token_count;");
    return rc ? rc : bv__txn_exec(t, BV__TOKEN_COUNT_FILL);
}
