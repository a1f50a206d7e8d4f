/* SQLite store, reads: current version, versions, history, counts, the consistency check and the
 * online backup. All run on the calling thread's own connection. */
#include "internal.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *col_dup(bv_arena *a, sqlite3_stmt *st, int col, size_t *len)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (len) *len = t ? n : 0;
    return t ? bv_arena_strndup(a, (const char *)t, n) : NULL;
}

void bv__record_from(bv_arena *a, sqlite3_stmt *st, int c0, bv_record *r)
{
    memset(r, 0, sizeof *r);
    r->type = col_dup(a, st, c0 + 0, NULL);
    r->id = col_dup(a, st, c0 + 1, NULL);
    r->version = sqlite3_column_int64(st, c0 + 2);
    r->last_updated_ms = sqlite3_column_int64(st, c0 + 3);
    r->deleted = sqlite3_column_int(st, c0 + 4) != 0;
    r->method = col_dup(a, st, c0 + 5, NULL);
    r->body = col_dup(a, st, c0 + 6, &r->body_len);
    r->seq = sqlite3_column_int64(st, c0 + 7);
}

static int read_one(bv__conn *c, bv__stmt_id id, bv_arena *a, const char *type, const char *rid, int64_t version,
                    bv_record *out)
{
    if (!type || !rid || !out) return BV_EINVAL;
    sqlite3_stmt *st = bv__stmt(c, id);
    if (!st) return BV_EINTERNAL;
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, rid, -1, SQLITE_STATIC);
    if (id == ST_VREAD) sqlite3_bind_int64(st, 3, version);
    int rc = sqlite3_step(st), ret = BV_OK;
    if (rc == SQLITE_ROW) bv__record_from(a, st, 0, out);
    else if (rc == SQLITE_DONE) ret = BV_ENOTFOUND;
    else ret = bv__fail(c, rc, "read");
    bv__done(st);
    return ret;
}

int bv__read(bv__conn *c, bv_arena *a, const char *type, const char *id, bv_record *out)
{
    return read_one(c, ST_READ, a, type, id, 0, out);
}

int bv__vread(bv__conn *c, bv_arena *a, const char *type, const char *id, int64_t version, bv_record *out)
{
    return read_one(c, ST_VREAD, a, type, id, version, out);
}

/* Every public read ends with bv__await_durable: what it saw may come from a group whose sync is
 * still running, and nothing is served before it is durable. */
int bv_store_read(bv_store *s, bv_arena *a, const char *type, const char *id, bv_record *out)
{
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    int rc = read_one(c, ST_READ, a, type, id, 0, out);
    bv__reader_done(s, c);
    bv__await_durable(s);
    return rc;
}

int bv_store_vread(bv_store *s, bv_arena *a, const char *type, const char *id, int64_t version, bv_record *out)
{
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    int rc = read_one(c, ST_VREAD, a, type, id, version, out);
    bv__reader_done(s, c);
    bv__await_durable(s);
    return rc;
}

/* Runs a generated statement that yields one integer. */
/* A generated statement SQLite refused: too big for its limits, or our bug. */
static int prepare_failed(bv__conn *c, const bv__qb *q)
{
    int max_vars = sqlite3_limit(c->db, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
    if (q->n > (size_t)max_vars || strstr(sqlite3_errmsg(c->db), "too ") != NULL) return BV_ETOOBIG;
    return BV_EINTERNAL;
}

static void dyn_done(sqlite3_stmt *st, bool owned)
{
    if (owned) sqlite3_finalize(st);
    else bv__done(st);
}

int bv__query_count(bv__conn *c, bv__qb *q, int64_t *out)
{
    if (q->err) return q->err;
    bool owned;
    sqlite3_stmt *st = bv__dyn_stmt(c, bv_buf_cstr(&q->sql), &owned);
    if (!st) return prepare_failed(c, q);
    int rc = bv__qb_bind(q, st);
    if (rc) {
        dyn_done(st, owned);
        return rc;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    int ret = rc == SQLITE_ROW ? BV_OK : bv__fail(c, rc, "count");
    dyn_done(st, owned);
    return ret;
}

int bv__query_records(bv__conn *c, bv_arena *a, bv__qb *q, int col0, bv_record **out, size_t *n)
{
    if (q->err) return q->err;
    bool owned;
    sqlite3_stmt *st = bv__dyn_stmt(c, bv_buf_cstr(&q->sql), &owned);
    if (!st) return prepare_failed(c, q);
    int rc = bv__qb_bind(q, st);
    if (rc) {
        dyn_done(st, owned);
        return rc;
    }
    bv_record *recs = NULL;
    size_t got = 0, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (got == cap) { /* grow in the arena: the old block is simply left behind */
            size_t ncap = cap ? cap * 2 : 32;
            bv_record *nr = bv_arena_alloc(a, ncap * sizeof *nr);
            if (got) memcpy(nr, recs, got * sizeof *nr);
            recs = nr;
            cap = ncap;
        }
        bv__record_from(a, st, col0, &recs[got++]);
    }
    int ret = rc == SQLITE_DONE ? BV_OK : bv__fail(c, rc, "query");
    dyn_done(st, owned);
    if (ret) return ret;
    *out = recs;
    *n = got;
    return BV_OK;
}

/* WHERE for history; with_cursor false leaves out before_seq (the total counts the whole set). */
static void history_where(bv__qb *q, const bv_history_query *h, bool with_cursor)
{
    bv__qb_sql(q, " WHERE 1");
    if (h->type) {
        bv__qb_sql(q, " AND type = ");
        bv__qb_text(q, h->type);
    }
    if (h->id) {
        bv__qb_sql(q, " AND id = ");
        bv__qb_text(q, h->id);
    }
    if (h->has_since) {
        bv__qb_sql(q, " AND last_updated >= ");
        bv__qb_int(q, h->since_ms);
    }
    if (h->has_at) {
        /* Per resource, the newest version made at or before `at` (seq order = time order). */
        bv__qb_sql(q, " AND seq IN (SELECT max(seq) FROM history WHERE last_updated <= ");
        bv__qb_int(q, h->at_ms);
        if (h->type) {
            bv__qb_sql(q, " AND type = ");
            bv__qb_text(q, h->type);
        }
        if (h->id) {
            bv__qb_sql(q, " AND id = ");
            bv__qb_text(q, h->id);
        }
        bv__qb_sql(q, " GROUP BY type, id)");
    }
    if (with_cursor && h->before_seq > 0) {
        /* "+": for one resource, keep SQLite on (type, id, version), not history(type, seq). */
        bv__qb_sql(q, h->id ? " AND +seq < " : " AND seq < ");
        bv__qb_int(q, h->before_seq);
    }
}

int bv_store_history(bv_store *s, bv_arena *a, const bv_history_query *h, bv_record **out, size_t *n,
                     int64_t *total)
{
    if (!h || !out || !n || (h->id && !h->type)) return BV_EINVAL;
    *out = NULL;
    *n = 0;
    if (total) *total = -1;
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    bv__qb rows, cnt;
    bv__qb_init(&rows);
    bv__qb_init(&cnt);
    bool txn = false;
    int rc = BV_OK;
    if (total) {
        /* One snapshot for the page and the total. */
        if ((rc = bv__step_simple(c, ST_BEGIN))) goto out;
        txn = true;
        bv__qb_sql(&cnt, "SELECT count(*) FROM history");
        history_where(&cnt, h, false);
        if ((rc = bv__query_count(c, &cnt, total))) goto out;
    }
    if (h->count > 0) {
        bv__qb_sql(&rows, "SELECT " BV__HIST_COLS " FROM history");
        history_where(&rows, h, true);
        /* For one resource, version order is seq order, and (type, id, version) then serves the
         * whole query; ordering by seq would make SQLite walk the type's history instead. */
        bv__qb_sql(&rows, h->id ? " ORDER BY version DESC LIMIT " : " ORDER BY seq DESC LIMIT ");
        bv__qb_int(&rows, h->count > INT64_MAX ? INT64_MAX : (int64_t)h->count);
        rc = bv__query_records(c, a, &rows, 0, out, n);
    }
out:
    if (txn) bv__step_simple(c, rc ? ST_ROLLBACK : ST_COMMIT);
    bv__qb_free(&rows);
    bv__qb_free(&cnt);
    bv__reader_done(s, c);
    bv__await_durable(s);
    return rc;
}

int bv_store_search(bv_store *s, bv_arena *a, const bv_search *q, bv_record **out, size_t *n, int64_t *total)
{
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    int rc = bv__search(c, false, a, q, out, n, total);
    bv__reader_done(s, c);
    bv__await_durable(s);
    return rc;
}

int bv_store_search_page(bv_store *s, bv_arena *a, const bv_search *q, bv_search_page *out)
{
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    int rc = bv__search_page(c, a, q, out);
    bv__reader_done(s, c);
    bv__await_durable(s);
    return rc;
}

int bv_store_include(bv_store *s, bv_arena *a, const bv_include_query *q, bv_record **out, size_t *n)
{
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    int rc = bv__include(c, a, q, out, n);
    bv__reader_done(s, c);
    bv__await_durable(s);
    return rc;
}

static int count_by_type(bv__conn *c, void (*fn)(void *ctx, const char *type, int64_t n), void *ctx)
{
    bool owned;
    sqlite3_stmt *st =
        bv__dyn_stmt(c, "SELECT type, count(*) FROM resources WHERE deleted = 0 GROUP BY type ORDER BY type", &owned);
    if (!st) return BV_EINTERNAL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
    int ret = rc == SQLITE_DONE ? BV_OK : bv__fail(c, rc, "count by type");
    dyn_done(st, owned);
    return ret;
}

/* fn must not read from the store (the connection is lent to this call) */
int bv_store_count_by_type(bv_store *s, void (*fn)(void *ctx, const char *type, int64_t n), void *ctx)
{
    if (!fn) return BV_EINVAL;
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    int rc = count_by_type(c, fn, ctx);
    bv__reader_done(s, c);
    return rc;
}

/* ---- Check ---- */
typedef struct {
    const char *what;
    const char *sql; /* yields a row (type, id or a message) when the invariant is broken */
} invariant;

static const invariant invariants[] = {
    /* Joined on r.seq (primary key) rather than a max(seq) subquery, which SQLite would plan
     * through history(type, seq) and make quadratic. */
    {"current row differs from the newest history row",
     "SELECT r.type, r.id FROM resources r LEFT JOIN history h ON h.seq = r.seq"
     " WHERE h.seq IS NULL OR h.type <> r.type OR h.id <> r.id OR h.version <> r.version"
     " OR h.deleted <> r.deleted OR h.body IS NOT NULL OR h.last_updated <> r.last_updated"
     " OR h.method <> r.method"
     " OR EXISTS (SELECT 1 FROM history x WHERE x.type = r.type AND x.id = r.id AND x.version > r.version)"
     " LIMIT 1"},
    {"a replaced version without its body",
     "SELECT h.type, h.id FROM history h WHERE h.deleted = 0 AND h.body IS NULL AND NOT EXISTS"
     " (SELECT 1 FROM resources r WHERE r.type = h.type AND r.id = h.id AND r.seq = h.seq) LIMIT 1"},
    {"history without a current row",
     "SELECT h.type, h.id FROM history h WHERE NOT EXISTS"
     " (SELECT 1 FROM resources r WHERE r.type = h.type AND r.id = h.id) LIMIT 1"},
    {"versions not contiguous from 1 in seq order",
     "SELECT type, id FROM (SELECT type, id, version,"
     " lag(version) OVER (PARTITION BY type, id ORDER BY seq) AS pv FROM history)"
     " WHERE (pv IS NULL AND version <> 1) OR (pv IS NOT NULL AND version <> pv + 1) LIMIT 1"},
    {"a deleted version with a body in history",
     "SELECT type, id FROM history WHERE deleted <> 0 AND body IS NOT NULL LIMIT 1"},
    {"deleted flag and body disagree",
     "SELECT type, id FROM resources WHERE (deleted <> 0) = (body IS NOT NULL) LIMIT 1"},
    {"index rows for a deleted resource",
     "SELECT r.type, r.id FROM resources r WHERE r.deleted <> 0 AND ("
     " EXISTS (SELECT 1 FROM ix_string x WHERE x.rid = r.rid) OR"
     " EXISTS (SELECT 1 FROM ix_token x WHERE x.rid = r.rid) OR"
     " EXISTS (SELECT 1 FROM ix_reference x WHERE x.rid = r.rid) OR"
     " EXISTS (SELECT 1 FROM ix_date x WHERE x.rid = r.rid) OR"
     " EXISTS (SELECT 1 FROM ix_number x WHERE x.rid = r.rid) OR"
     " EXISTS (SELECT 1 FROM ix_quantity x WHERE x.rid = r.rid) OR"
     " EXISTS (SELECT 1 FROM ix_uri x WHERE x.rid = r.rid)) LIMIT 1"},
    {"foreign key violation", "SELECT \"table\", rowid FROM pragma_foreign_key_check LIMIT 1"},
    /* the kept token counts (schema 3) against a count of the rows themselves, both ways */
    {"token count differs from the index rows",
     "WITH c (param, code, system, type, n) AS MATERIALIZED (" BV__TOKEN_COUNT_SELECT ")"
     " SELECT type, param || '=' || system || '|' || code FROM"
     " (SELECT param, code, system, type, n FROM ix_token_count WHERE n <> 0 EXCEPT SELECT * FROM c)"
     " UNION ALL SELECT type, param || '=' || system || '|' || code FROM"
     " (SELECT * FROM c EXCEPT SELECT param, code, system, type, n FROM ix_token_count) LIMIT 1"},
};

static int check_on(bv__conn *c, char *msg, size_t msglen);

int bv_store_check(bv_store *s, char *msg, size_t msglen)
{
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) {
        snprintf(msg, msglen, "cannot open a connection");
        return err;
    }
    int rc = check_on(c, msg, msglen);
    bv__reader_done(s, c);
    return rc;
}

static int check_on(bv__conn *c, char *msg, size_t msglen)
{
    int ret = BV_OK;
    sqlite3_stmt *st = NULL;
    if (bv__step_simple(c, ST_BEGIN)) {
        snprintf(msg, msglen, "cannot begin a read transaction");
        return BV_EIO;
    }
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA integrity_check(20)", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (!r || strcmp(r, "ok") != 0) {
            snprintf(msg, msglen, "integrity_check: %s", r ? r : "(null)");
            ret = BV_EINTERNAL;
        }
    } else {
        snprintf(msg, msglen, "integrity_check failed: %s", sqlite3_errmsg(c->db));
        ret = BV_EIO;
    }
    sqlite3_finalize(st);
    st = NULL;
    for (size_t i = 0; ret == BV_OK && i < sizeof invariants / sizeof invariants[0]; i++) {
        rc = sqlite3_prepare_v2(c->db, invariants[i].sql, -1, &st, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *a = (const char *)sqlite3_column_text(st, 0), *b = (const char *)sqlite3_column_text(st, 1);
            snprintf(msg, msglen, "%s: %s/%s", invariants[i].what, a ? a : "?", b ? b : "?");
            ret = BV_EINTERNAL;
        } else if (rc != SQLITE_DONE) {
            snprintf(msg, msglen, "%s: query failed: %s", invariants[i].what, sqlite3_errmsg(c->db));
            ret = BV_EIO;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    bv__step_simple(c, ST_COMMIT);
    if (ret == BV_OK && msglen) msg[0] = '\0';
    return ret;
}

/* ---- Online backup ---- */
static int fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? bv_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : bv_strdup(".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    if (fd < 0) return BV_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? BV_OK : BV_EIO;
}

static int backup_on(bv__conn *c, const char *out_path, char *err, size_t errlen);

int bv_store_backup(bv_store *s, const char *out_path, char *err, size_t errlen)
{
    if (!s || !out_path || !*out_path) return BV_EINVAL;
    int e = BV_OK;
    bv__conn *c = bv__reader(s, &e);
    if (!c) {
        snprintf(err, errlen, "cannot open a connection");
        return e;
    }
    int rc = backup_on(c, out_path, err, errlen);
    bv__reader_done(s, c);
    return rc;
}

static int backup_on(bv__conn *c, const char *out_path, char *err, size_t errlen)
{
    size_t tlen = strlen(out_path) + sizeof ".tmp";
    char *tmp = bv_malloc(tlen);
    snprintf(tmp, tlen, "%s.tmp", out_path);
    unlink(tmp);
    sqlite3 *dst = NULL;
    sqlite3_backup *b = NULL;
    int ret = BV_EIO;
    int rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", tmp, dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
        goto fail;
    }
    /* The copy is written through a rollback journal and synced, so the single file is complete
     * on its own once renamed (no -wal file to carry along). */
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", tmp, sqlite3_errmsg(dst));
        goto fail;
    }
    b = sqlite3_backup_init(dst, "main", c->db, "main");
    if (!b) {
        snprintf(err, errlen, "backup: %s", sqlite3_errmsg(dst));
        goto fail;
    }
    /* All pages in one step: one read snapshot of the source, so WAL writers go on meanwhile and
     * the copy is consistent (stepping in pieces would restart on every concurrent commit). */
    for (int tries = 0; tries < 100; tries++) {
        rc = sqlite3_backup_step(b, -1);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
        sqlite3_sleep(50);
    }
    int frc = sqlite3_backup_finish(b);
    b = NULL;
    if (rc != SQLITE_DONE || frc != SQLITE_OK) {
        snprintf(err, errlen, "backup: %s", sqlite3_errstr(rc != SQLITE_DONE ? rc : frc));
        goto fail;
    }
    rc = sqlite3_close(dst);
    dst = NULL;
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "backup close: %s", sqlite3_errstr(rc));
        goto fail;
    }
    if (rename(tmp, out_path) != 0) {
        snprintf(err, errlen, "rename %s: %s", out_path, strerror(errno));
        goto fail;
    }
    if (fsync_dir_of(out_path) != BV_OK) {
        snprintf(err, errlen, "fsync folder of %s failed", out_path);
        goto fail_renamed;
    }
    free(tmp);
    return BV_OK;
fail:
    if (b) sqlite3_backup_finish(b);
    if (dst) sqlite3_close(dst);
    unlink(tmp);
fail_renamed:
    free(tmp);
    return ret;
}
