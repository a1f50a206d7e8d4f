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

int bv__token_count_drop(bv__conn *c, int64_t rid, const char *type)
{
    sqlite3_stmt *st = bv__stmt(c, ST_TC_OLD);
    if (!st) return BV_EINTERNAL;
    sqlite3_bind_int64(st, 1, rid);
    int rc, ret = BV_OK;
    /* the resource's current values (DISTINCT: once each), decremented while they are read */
    while (ret == BV_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ret = bump(c, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
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
        if (i == 0 || cmp_row(&v[i - 1], &v[i]) != 0) rc = bump(c, v[i]->param, v[i]->code, v[i]->system, type, 1);
    free(v);
    return rc;
}

int bv_txn_recount_index(bv_store_txn *t)
{
    if (!t) return BV_EINVAL;
    int rc = bv__txn_exec(t, "DELETE FROM ix_token_count;");
    return rc ? rc : bv__txn_exec(t, BV__TOKEN_COUNT_FILL);
}
