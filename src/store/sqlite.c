/* SQLite store: schema and migrations, per-thread connections with statement caches, the query
 * builder, and the group-committing writer thread with the write-unit API (bv_txn_*).
 * Reads are in sqlite_read.c, search SQL in sqlite_search.c. */
#include "internal.h"

#include <sqlite3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- Schema. Migration i brings user_version from i to i + 1; append, never edit. ---- */
static const char *const migrations[BV__SCHEMA_VERSION] = {
    /* 1: current versions apart from history; one index table per search-parameter kind.
     * Index tables are WITHOUT ROWID, clustered by (rid, ord): replacing a resource's rows is
     * one range delete, and every secondary index carries rid for the IN (...) lookups. */
    "CREATE TABLE resources ("
    " rid INTEGER PRIMARY KEY,"
    " type TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " last_updated INTEGER NOT NULL,"   /* ms since epoch */
    " deleted INTEGER NOT NULL,"
    " method TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"            /* history.seq of this version */
    " body TEXT,"                       /* NULL when deleted */
    " UNIQUE (type, id)) STRICT;"
    "CREATE INDEX resources_live ON resources(type) WHERE deleted = 0;" /* (type, rid): default order, counts */
    "CREATE INDEX resources_type_lu ON resources(type, last_updated);"
    "CREATE TABLE history ("
    " seq INTEGER PRIMARY KEY,"
    " type TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " last_updated INTEGER NOT NULL,"
    " deleted INTEGER NOT NULL,"
    " method TEXT NOT NULL,"
    " body TEXT,"
    " UNIQUE (type, id, version)) STRICT;"
    "CREATE INDEX history_type_seq ON history(type, seq);"
    "CREATE INDEX history_lu ON history(last_updated);"
    "CREATE TABLE ix_string ("
    " rid INTEGER NOT NULL REFERENCES resources(rid), ord INTEGER NOT NULL,"
    " param TEXT NOT NULL, grp INTEGER NOT NULL,"
    " norm TEXT NOT NULL, text TEXT,"
    " PRIMARY KEY (rid, ord)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ix_string_q ON ix_string(param, norm, rid);"
    "CREATE TABLE ix_token ("
    " rid INTEGER NOT NULL REFERENCES resources(rid), ord INTEGER NOT NULL,"
    " param TEXT NOT NULL, grp INTEGER NOT NULL,"
    " system TEXT, code TEXT, text TEXT,"
    " PRIMARY KEY (rid, ord)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ix_token_q ON ix_token(param, code, system, rid);"
    "CREATE TABLE ix_reference ("
    " rid INTEGER NOT NULL REFERENCES resources(rid), ord INTEGER NOT NULL,"
    " param TEXT NOT NULL, grp INTEGER NOT NULL,"
    " ref_type TEXT, ref_id TEXT, ref_version TEXT, text TEXT,"
    " PRIMARY KEY (rid, ord)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ix_reference_q ON ix_reference(param, ref_type, ref_id, rid);"
    "CREATE INDEX ix_reference_url ON ix_reference(param, text, rid);"
    "CREATE TABLE ix_date ("
    " rid INTEGER NOT NULL REFERENCES resources(rid), ord INTEGER NOT NULL,"
    " param TEXT NOT NULL, grp INTEGER NOT NULL,"
    " lo INTEGER NOT NULL, hi INTEGER NOT NULL,"
    " PRIMARY KEY (rid, ord)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ix_date_lo ON ix_date(param, lo, hi, rid);"
    "CREATE INDEX ix_date_hi ON ix_date(param, hi, lo, rid);"
    "CREATE TABLE ix_number ("
    " rid INTEGER NOT NULL REFERENCES resources(rid), ord INTEGER NOT NULL,"
    " param TEXT NOT NULL, grp INTEGER NOT NULL,"
    " num REAL, num_lo REAL, num_hi REAL,"
    " PRIMARY KEY (rid, ord)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ix_number_q ON ix_number(param, num, rid);"
    "CREATE TABLE ix_quantity ("
    " rid INTEGER NOT NULL REFERENCES resources(rid), ord INTEGER NOT NULL,"
    " param TEXT NOT NULL, grp INTEGER NOT NULL,"
    " num REAL, num_lo REAL, num_hi REAL, system TEXT, code TEXT,"
    " PRIMARY KEY (rid, ord)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ix_quantity_q ON ix_quantity(param, num, rid);"
    "CREATE TABLE ix_uri ("
    " rid INTEGER NOT NULL REFERENCES resources(rid), ord INTEGER NOT NULL,"
    " param TEXT NOT NULL, grp INTEGER NOT NULL,"
    " text TEXT NOT NULL,"
    " PRIMARY KEY (rid, ord)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ix_uri_q ON ix_uri(param, text, rid);",
    /* 2: durable state of the server's own services (change-feed cursors and the like). */
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT, WITHOUT ROWID;",
    /* 3: per (param, code, system, type) the number of live resources with such a token row: an
     * accurate total of "code=system|code" without reading its 100,000 matches (docs/search.md,
     * "Counts"). Kept by the writer in the same transaction as the rows (sqlite_count.c), so it is
     * exact under every write, rollback and reindex; `bevan check` recounts it. Rows of composite
     * components ("param#i") and tokens without a system or code are not counted; a resource
     * counts once however many rows it has for the value. (Not triggers: a statement with a
     * trigger opens a statement journal, and that made ingest four times slower.) */
    "CREATE TABLE ix_token_count ("
    " param TEXT NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL, type TEXT NOT NULL,"
    " n INTEGER NOT NULL,"
    " PRIMARY KEY (param, code, system, type)) STRICT, WITHOUT ROWID;" BV__TOKEN_COUNT_FILL,
    /* 4: the ids of live resources in rid order, without their rows: a chain's targets (a
     * practice's 479 patients) become the ids its references are matched on by reading this
     * index, not 479 pages of the table (docs/search.md, "Chains"). */
    "CREATE INDEX resources_ids ON resources(type, rid, id, deleted) WHERE deleted = 0;",
    /* 5: a reference written "Type/id" is its ref_type and ref_id: its text is not stored again
     * (NULL), and the text index holds only the others (absolute URLs, canonicals, other forms):
     * one B-tree insert less per reference row (docs/search.md, "Indexes"). Rows written before
     * keep their text, which stays correct (`bevan reindex` drops it). */
    ("DROP INDEX ix_reference_url;"
     "CREATE INDEX ix_reference_url ON ix_reference(param, text, rid) WHERE text IS NOT NULL;"),
    /* 6: a body is stored once. The history row of the current version has no body (NULL): it is
     * the body in resources, and moves into history when a newer version (or a delete) replaces
     * it (docs/storage.md, "Tables"). Before, every version's body was written twice. */
    "UPDATE history SET body = NULL WHERE body IS NOT NULL AND seq IN (SELECT seq FROM resources);",
};

#define REC_COLS "type, id, version, last_updated, deleted, method, body, seq"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT u",
    [ST_RELEASE] = "RELEASE u",
    [ST_ROLLBACK_TO] = "ROLLBACK TO u",
    [ST_PUT_SAVEPOINT] = "SAVEPOINT p",
    [ST_PUT_RELEASE] = "RELEASE p",
    [ST_PUT_ROLLBACK_TO] = "ROLLBACK TO p",
    [ST_READ] = "SELECT " REC_COLS " FROM resources WHERE type = ?1 AND id = ?2",
    [ST_VREAD] = "SELECT " BV__HIST_COLS " FROM history WHERE type = ?1 AND id = ?2 AND version = ?3",
    [ST_LOOKUP] = "SELECT rid, version, seq, deleted FROM resources WHERE type = ?1 AND id = ?2",
    /* no body: the new version's body is in resources (schema 6) */
    [ST_HIST_INSERT] = "INSERT INTO history (type, id, version, last_updated, deleted, method)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* the version being replaced keeps its body in history (NULL for a deleted one) */
    [ST_HIST_KEEP] = "UPDATE history SET body = (SELECT body FROM resources WHERE rid = ?1) WHERE seq = ?2",
    [ST_RES_INSERT] = "INSERT INTO resources (type, id, version, last_updated, deleted, method, seq, body)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_RES_UPDATE] = "UPDATE resources SET version = ?3, last_updated = ?4, deleted = ?5, method = ?6,"
                      " seq = ?7, body = ?8 WHERE rid = ?1",
    /* Two scalar subqueries: max(a), max(b) in one SELECT would defeat the min/max
     * optimisation and scan the whole history after every commit. */
    [ST_MAX_SEQ] = "SELECT coalesce((SELECT max(seq) FROM history), 0),"
                   " coalesce((SELECT max(last_updated) FROM history), 0)",
    [ST_IX_DEL_STRING] = "DELETE FROM ix_string WHERE rid = ?1",
    [ST_IX_DEL_TOKEN] = "DELETE FROM ix_token WHERE rid = ?1",
    [ST_IX_DEL_REFERENCE] = "DELETE FROM ix_reference WHERE rid = ?1",
    [ST_IX_DEL_DATE] = "DELETE FROM ix_date WHERE rid = ?1",
    [ST_IX_DEL_NUMBER] = "DELETE FROM ix_number WHERE rid = ?1",
    [ST_IX_DEL_QUANTITY] = "DELETE FROM ix_quantity WHERE rid = ?1",
    [ST_IX_DEL_URI] = "DELETE FROM ix_uri WHERE rid = ?1",
    [ST_IX_INS_STRING] = "INSERT INTO ix_string (rid, ord, param, grp, norm, text)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_IX_INS_TOKEN] = "INSERT INTO ix_token (rid, ord, param, grp, system, code, text)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_IX_INS_REFERENCE] = "INSERT INTO ix_reference (rid, ord, param, grp, ref_type, ref_id, ref_version, text)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_IX_INS_DATE] = "INSERT INTO ix_date (rid, ord, param, grp, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_IX_INS_NUMBER] = "INSERT INTO ix_number (rid, ord, param, grp, num, num_lo, num_hi)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_IX_INS_QUANTITY] = "INSERT INTO ix_quantity (rid, ord, param, grp, num, num_lo, num_hi, system, code)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_IX_INS_URI] = "INSERT INTO ix_uri (rid, ord, param, grp, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_CHANGES] = "SELECT " BV__HIST_COLS " FROM history WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    [ST_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
    [ST_KV_SET] = "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
    [ST_KV_DEL] = "DELETE FROM kv WHERE key = ?1",
    [ST_TC_OLD] = "SELECT DISTINCT param, code, system FROM ix_token WHERE rid = ?1 AND system IS NOT NULL"
                  " AND code IS NOT NULL AND instr(param, '#') = 0",
    [ST_TC_ADD] = "UPDATE ix_token_count SET n = n + ?5 WHERE param = ?1 AND code = ?2 AND system = ?3 AND type = ?4",
    [ST_TC_NEW] = "INSERT INTO ix_token_count (param, code, system, type, n) VALUES (?1, ?2, ?3, ?4, ?5)",
};

_Static_assert(ST_IX_DEL_URI - ST_IX_DEL_STRING == BV_IX_URI, "per-kind statements follow bv_index_kind");
_Static_assert(ST_IX_INS_URI - ST_IX_INS_STRING == BV_IX_URI, "per-kind statements follow bv_index_kind");

/* ---- Errors ---- */

/* Set on the thread that saw an I/O-class error (a failed write, a full disk, corruption); the
 * writer thread checks it after each unit and at COMMIT and poisons the store (store_io_check). */
static _Thread_local bool io_error_seen;

static bool is_io_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL: return true;
    default: return false;
    }
}

int bv__fail(bv__conn *c, int rc, const char *what)
{
    bv_log(BV_LOG_WARN, "store: %s: %s (%d)", what, c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc), rc);
    if (is_io_error(rc)) io_error_seen = true;
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT: return BV_ECONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return BV_EBUSY;
    case SQLITE_NOMEM: return BV_ENOMEM;
    case SQLITE_TOOBIG: return BV_ETOOBIG;
    case SQLITE_MISUSE:
    case SQLITE_ERROR:
    case SQLITE_RANGE: return BV_EINTERNAL;
    default: return BV_EIO;
    }
}

/* ---- Statements ---- */
sqlite3_stmt *bv__stmt(bv__conn *c, bv__stmt_id id)
{
    if (!c->st[id]) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
        if (rc != SQLITE_OK) {
            bv__fail(c, rc, stmt_sql[id]);
            c->st[id] = NULL;
        }
    }
    return c->st[id];
}

void bv__done(sqlite3_stmt *st)
{
    if (!st) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

sqlite3_stmt *bv__dyn_stmt(bv__conn *c, const char *sql, bool *owned)
{
    *owned = false;
    if (strlen(sql) > BV__DYN_CACHE_MAX_SQL) {
        /* A huge one-off (thousands of ORed values): not worth keeping, and 32 of them per
         * connection would pin a lot of memory. The caller finalises it. */
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v3(c->db, sql, -1, 0, &st, NULL);
        if (rc != SQLITE_OK) {
            bv__fail(c, rc, "prepare generated statement");
            return NULL;
        }
        *owned = true;
        return st;
    }
    bv__dyn *victim = NULL;
    for (size_t i = 0; i < BV__DYN_CACHE; i++) {
        bv__dyn *d = &c->dyn[i];
        if (!d->sql) { /* slots fill in order and are never emptied: no hit beyond this one */
            victim = d;
            break;
        }
        if (strcmp(d->sql, sql) == 0) {
            d->used = ++c->tick;
            return d->st;
        }
        if (!victim || d->used < victim->used) victim = d;
    }
    /* Generated SQL holds only placeholders, never values: safe to log. */
    bv_log(BV_LOG_DEBUG, "store: prepare %s", sql);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        /* Generated SQL only fails on SQLite's limits (variables, expression depth, length). */
        bv__fail(c, rc, "prepare generated statement");
        return NULL;
    }
    if (victim->sql) {
        sqlite3_finalize(victim->st);
        free(victim->sql);
    }
    victim->sql = bv_strdup(sql);
    victim->st = st;
    victim->used = ++c->tick;
    return st;
}

int bv__step_simple(bv__conn *c, bv__stmt_id id)
{
    sqlite3_stmt *st = bv__stmt(c, id);
    if (!st) return BV_EINTERNAL;
    int rc = sqlite3_step(st);
    bv__done(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return bv__fail(c, rc, stmt_sql[id]);
    return BV_OK;
}

/* ---- Query builder ---- */
void bv__qb_init(bv__qb *q)
{
    memset(q, 0, sizeof *q);
    bv_buf_init(&q->sql, BV__MAX_SQL);
}

void bv__qb_free(bv__qb *q)
{
    bv_buf_free(&q->sql);
    free(q->b);
    memset(q, 0, sizeof *q);
}

void bv__qb_sql(bv__qb *q, const char *sql)
{
    if (q->err) return;
    if (bv_buf_puts(&q->sql, sql) != BV_OK) q->err = BV_ETOOBIG;
}

void bv__qb_sqlf(bv__qb *q, const char *fmt, ...)
{
    if (q->err) return;
    va_list ap;
    va_start(ap, fmt);
    if (bv_buf_vprintf(&q->sql, fmt, ap) != BV_OK) q->err = BV_ETOOBIG;
    va_end(ap);
}

static bv__bind *qb_push(bv__qb *q)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->b = bv_realloc(q->b, q->cap * sizeof *q->b);
    }
    bv__bind *b = &q->b[q->n++];
    memset(b, 0, sizeof *b);
    return b;
}

void bv__qb_text(bv__qb *q, const char *s)
{
    bv__qb_sql(q, "?");
    if (q->err) return;
    bv__bind *b = qb_push(q);
    b->t = BV__B_TEXT;
    b->s = s;
    b->i = -1;
}

void bv__qb_textn(bv__qb *q, const char *s, size_t n)
{
    bv__qb_sql(q, "?");
    if (q->err) return;
    bv__bind *b = qb_push(q);
    b->t = BV__B_TEXT;
    b->s = s;
    b->i = (int64_t)n;
}

void bv__qb_param(bv__qb *q, const char *param)
{
    if (!param || !strchr(param, '|')) {
        bv__qb_sql(q, " = ");
        bv__qb_text(q, param);
        return;
    }
    bv__qb_sql(q, " IN (");
    for (const char *s = param;;) {
        const char *bar = strchr(s, '|');
        bv__qb_textn(q, s, bar ? (size_t)(bar - s) : strlen(s));
        if (!bar) break;
        bv__qb_sql(q, ", ");
        s = bar + 1;
    }
    bv__qb_sql(q, ")");
}

void bv__qb_int(bv__qb *q, int64_t v)
{
    bv__qb_sql(q, "?");
    if (q->err) return;
    bv__bind *b = qb_push(q);
    b->t = BV__B_INT;
    b->i = v;
}

void bv__qb_real(bv__qb *q, double v)
{
    bv__qb_sql(q, "?");
    if (q->err) return;
    bv__bind *b = qb_push(q);
    b->t = BV__B_REAL;
    b->d = v;
}

void bv__qb_append(bv__qb *q, const bv__qb *o)
{
    if (!q->err && o->err) q->err = o->err;
    if (q->err) return;
    if (o->sql.len && bv_buf_append(&q->sql, o->sql.data, o->sql.len) != BV_OK) {
        q->err = BV_ETOOBIG;
        return;
    }
    for (size_t i = 0; i < o->n; i++) *qb_push(q) = o->b[i];
}

int bv__qb_bind(const bv__qb *q, sqlite3_stmt *st)
{
    if (q->n != (size_t)sqlite3_bind_parameter_count(st)) return BV_EINTERNAL;
    for (size_t i = 0; i < q->n; i++) {
        const bv__bind *b = &q->b[i];
        int idx = (int)i + 1, rc;
        switch (b->t) {
        case BV__B_TEXT:
            rc = b->s ? sqlite3_bind_text(st, idx, b->s, b->i < 0 ? -1 : (int)b->i, SQLITE_STATIC) : sqlite3_bind_null(st, idx);
            break;
        case BV__B_INT: rc = sqlite3_bind_int64(st, idx, b->i); break;
        default: rc = sqlite3_bind_double(st, idx, b->d); break;
        }
        if (rc != SQLITE_OK) return BV_EINTERNAL;
    }
    return BV_OK;
}

/* ---- Connections ---- */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
static const char *vfs_name; /* "bevan" (walbuf.c), or NULL for SQLite's default */

static void sqlite_global_init(void)
{
    /* Memory statistics take a global mutex on every allocation, serialising reader threads.
     * Only possible before SQLite initialises; harmless (ignored) if someone else was first. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* A unit with a SAVEPOINT of its own (a transaction Bundle sharing a group) has every page it
     * changes copied to a statement journal first. In memory (temp_store=MEMORY) that journal is
     * a chain of 1 KiB blocks, allocated and freed by the thousand per Bundle (about a tenth of
     * the writer's time under ingest, in malloc). With temp_store=FILE on the writer it is one
     * block of this size instead, and spills to an unlinked temporary file (SQLITE_TMPDIR, TMPDIR,
     * /var/tmp or /tmp) only beyond it (docs/storage.md, "Durability and group commit"; hazard REL-14). */
    sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, BV__STMT_JOURNAL_BYTES);
    sqlite3_initialize();
    vfs_name = bv__vfs_register();
}

static void conn_free(bv__conn *c)
{
    if (!c) return;
    for (size_t i = 0; i < ST__COUNT; i++) sqlite3_finalize(c->st[i]);
    for (size_t i = 0; i < BV__DYN_CACHE; i++) {
        sqlite3_finalize(c->dyn[i].st);
        free(c->dyn[i].sql);
    }
    if (c->db && sqlite3_close(c->db) != SQLITE_OK)
        bv_log(BV_LOG_ERROR, "store: close: %s", sqlite3_errmsg(c->db));
    bv__token_count_pending_free(c->tc);
    free(c);
}

static int conn_exec(bv__conn *c, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        if (err) snprintf(err, errlen, "%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return bv__fail(c, rc, "exec");
    }
    return BV_OK;
}

static int conn_open(bv_store *s, bool writer, bv__conn **out, char *err, size_t errlen)
{
    bv__conn *c = bv_calloc(1, sizeof *c);
    c->store = s;
    if (writer) c->tc = bv__token_count_pending_new();
    int flags = SQLITE_OPEN_NOMUTEX;
    if (s->read_only) flags |= SQLITE_OPEN_READONLY;
    else flags |= SQLITE_OPEN_READWRITE | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(s->path, &c->db, flags, vfs_name);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", s->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, 5000);
    char pragmas[512];
    snprintf(pragmas, sizeof pragmas,
             "%s"
             "PRAGMA synchronous=%s;"
             "PRAGMA foreign_keys=ON;"
             "PRAGMA journal_size_limit=67108864;"
             "PRAGMA wal_autocheckpoint=%d;"
             "PRAGMA cache_size=%d;"
             "%s"
             "%s",
             /* NORMAL everywhere: in WAL mode SQLite then syncs only around checkpoints, and the
              * syncer thread fdatasyncs the WAL after every COMMIT before anyone is answered
              * (sqlite_sync.c), which is what FULL would do inside COMMIT, without stalling the
              * writer. --sync normal skips the syncer's fdatasync (documented trade-off). */
             s->read_only ? "" : "PRAGMA journal_mode=WAL;", "NORMAL",
             writer ? 0 : 1000, /* the writer's WAL is checkpointed by the checkpointer thread */
             /* KiB. The writer's working set is larger. A reader's cache is emptied by SQLite at
              * the next read after any commit, and RSS is what operators see: small by default
              * (--reader-cache-mb for read-heavy stores) */
             writer ? -s->writer_cache_kb : -s->reader_cache_kb,
             /* readers sort in memory; the writer's statement journals: sqlite_global_init */
             writer ? "" : "PRAGMA temp_store=MEMORY;",
             writer || s->read_only ? "" : "PRAGMA query_only=ON;");
    if (conn_exec(c, pragmas, err, errlen) != BV_OK) goto fail;
    *out = c;
    return BV_OK;
fail:
    conn_free(c);
    *out = NULL;
    return BV_EIO;
}

bv__conn *bv__reader(bv_store *s, int *err)
{
    pthread_mutex_lock(&s->pool_mu);
    while (!s->idle && s->n_readers >= s->max_readers) pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    bv__conn *c = s->idle;
    if (c) {
        s->idle = c->idle_next;
        pthread_mutex_unlock(&s->pool_mu);
        return c;
    }
    s->n_readers++;
    pthread_mutex_unlock(&s->pool_mu);
    char msg[256];
    if (conn_open(s, false, &c, msg, sizeof msg) != BV_OK) {
        bv_log(BV_LOG_ERROR, "store: reader connection: %s", msg);
        pthread_mutex_lock(&s->pool_mu);
        s->n_readers--;
        pthread_cond_signal(&s->pool_cv);
        pthread_mutex_unlock(&s->pool_mu);
        *err = BV_EIO;
        return NULL;
    }
    pthread_mutex_lock(&s->pool_mu);
    c->next = s->conns;
    s->conns = c;
    pthread_mutex_unlock(&s->pool_mu);
    return c;
}

void bv__reader_done(bv_store *s, bv__conn *c)
{
    if (!c) return;
    pthread_mutex_lock(&s->pool_mu);
    c->idle_next = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

/* ---- Open: schema check and migrations ---- */
static int pragma_int(bv__conn *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? BV_OK : bv__fail(c, rc, sql);
}

static int migrate(bv_store *s, bv__conn *c, char *err, size_t errlen)
{
    int64_t ver = 0, app = 0, objects = 0;
    if (pragma_int(c, "PRAGMA user_version", &ver) || pragma_int(c, "PRAGMA application_id", &app) ||
        pragma_int(c, "SELECT count(*) FROM sqlite_schema", &objects)) {
        snprintf(err, errlen, "%s: cannot read the schema version", s->path);
        return BV_EIO;
    }
    if ((app != 0 && app != BV__APPLICATION_ID) || (ver == 0 && objects > 0)) {
        snprintf(err, errlen, "%s: not a Bevan database", s->path);
        return BV_EINVAL;
    }
    if (ver > BV__SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema version %lld is newer than this Bevan (%d)", s->path, (long long)ver,
                 BV__SCHEMA_VERSION);
        return BV_EINVAL;
    }
    if (ver < BV__SCHEMA_VERSION && s->read_only) {
        snprintf(err, errlen, "%s: schema version %lld needs migrating; open read-write once", s->path,
                 (long long)ver);
        return BV_EINVAL;
    }
    for (; ver < BV__SCHEMA_VERSION; ver++) {
        char tail[128];
        /* user_version and application_id take no bound parameters; these are our own integers. */
        snprintf(tail, sizeof tail, "PRAGMA user_version=%lld; PRAGMA application_id=%d;", (long long)ver + 1,
                 BV__APPLICATION_ID);
        if (conn_exec(c, "BEGIN IMMEDIATE", err, errlen)) return BV_EIO;
        if (conn_exec(c, migrations[ver], err, errlen) || conn_exec(c, tail, err, errlen)) {
            conn_exec(c, "ROLLBACK", NULL, 0);
            return BV_EIO;
        }
        if (conn_exec(c, "COMMIT", err, errlen)) {
            conn_exec(c, "ROLLBACK", NULL, 0);
            return BV_EIO;
        }
        bv_log(BV_LOG_INFO, "store: %s migrated to schema version %lld", s->path, (long long)ver + 1);
    }
    return BV_OK;
}

/* Highest seq and last_updated in history, read once at open: the writer counts the seqs it commits
 * from there (commit_group) and starts its clock from the latter. */
static int load_high_marks(bv__conn *c, int64_t *seq, int64_t *ms)
{
    sqlite3_stmt *st = bv__stmt(c, ST_MAX_SEQ);
    if (!st) return BV_EINTERNAL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        *ms = sqlite3_column_int64(st, 1);
    }
    bv__done(st);
    return rc == SQLITE_ROW ? BV_OK : bv__fail(c, rc, "max seq");
}

static void *writer_main(void *arg);

/* WAL pages after a commit at which the checkpointer copies the WAL back into the database
 * (PASSIVE: it never blocks the writer or readers). SQLite's own auto-checkpoint would run it in
 * the committing writer, stalling every queued write behind the checkpoint's syncs. */
#define CKPT_PAGES 4000
/* The writer rewinds the log (wal_wrap) only once it holds this many times CKPT_PAGES: each wrap
 * stalls the writer for the last frames' copy and a sync of the database file (1-6 ms under
 * durable creates, 20-60 ms under transaction ingest, measured), so fewer, later wraps. */
#define WRAP_FACTOR 4

static int wal_hook_cb(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    bv_store *s = arg;
    s->wal_pages = pages;
    if (pages < s->ckpt_asked_at) s->ckpt_asked_at = 0; /* the log was rewound */
    /* Past the threshold, a pass per ckpt_pages new frames, not one per commit: each pass ends
     * with a sync of the database file, and copies a page written several times since the last
     * pass once (a pass per ckpt_pages / 4 frames wrote 17 % more under ingest: bench/README.md
     * Run L). */
    if (pages >= s->ckpt_pages && (!s->ckpt_asked_at || pages - s->ckpt_asked_at >= s->ckpt_pages)) {
        s->ckpt_asked_at = pages;
        pthread_mutex_lock(&s->mu);
        s->ckpt_wanted = true;
        pthread_cond_signal(&s->ccond);
        pthread_mutex_unlock(&s->mu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    bv_thread_name("bv-checkpoint");
    bv_store *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->ckpt_wanted && !s->stopping) pthread_cond_wait(&s->ccond, &s->mu);
        bool stop = s->stopping;
        s->ckpt_wanted = false;
        pthread_mutex_unlock(&s->mu);
        if (stop) return NULL;
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(s->cconn->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            bv_log(BV_LOG_WARN, "store: checkpoint failed: %s", sqlite3_errstr(rc));
        else if (done >= log - log / 8)
            atomic_store(&s->ckpt_caught_up, true); /* the writer finishes it: see wal_wrap */
    }
}

int bv_store_open(const bv_store_options *opt, bv_store **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!opt || !opt->dir || !*opt->dir) {
        snprintf(err, errlen, "no data folder given");
        return BV_EINVAL;
    }
    pthread_once(&sqlite_once, sqlite_global_init);
    if (!opt->read_only && mkdir(opt->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", opt->dir, strerror(errno));
        return BV_EIO;
    }
    bv_store *s = bv_calloc(1, sizeof *s);
    size_t plen = strlen(opt->dir) + sizeof "/bevan.db";
    s->path = bv_malloc(plen);
    snprintf(s->path, plen, "%s/bevan.db", opt->dir);
    s->read_only = opt->read_only;
    s->sync_normal = opt->sync_normal;
    s->group_max = opt->group_max ? opt->group_max : 512;
    s->linger_us = opt->linger_us ? (opt->linger_us == BV_STORE_NO_LINGER ? 0 : opt->linger_us) : 500;
    s->ckpt_pages = opt->ckpt_pages ? (int)opt->ckpt_pages : CKPT_PAGES;
    s->reader_cache_kb = opt->reader_cache_kb ? (int)opt->reader_cache_kb : 4096;
    s->writer_cache_kb = opt->writer_cache_kb ? (int)opt->writer_cache_kb : 16384;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wcond, NULL);
    pthread_cond_init(&s->ccond, NULL);
    pthread_cond_init(&s->scond, NULL);
    pthread_cond_init(&s->dcond, NULL);
    s->wal_fd = -1;
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    s->max_readers = opt->max_readers ? opt->max_readers : 8;
    int rc;
    bv__conn *c = NULL;
    int64_t seq = 0;
    if (s->read_only) {
        rc = BV_OK;
        c = bv__reader(s, &rc);
        if (!c) {
            snprintf(err, errlen, "%s: cannot open read-only", s->path);
            goto fail;
        }
    } else {
        rc = conn_open(s, true, &s->wconn, err, errlen);
        if (rc) goto fail;
        c = s->wconn;
    }
    rc = migrate(s, c, err, errlen);
    if (rc) goto fail;
    rc = load_high_marks(c, &seq, &s->last_ms);
    if (rc) {
        snprintf(err, errlen, "%s: cannot read history", s->path);
        goto fail;
    }
    atomic_store(&s->last_seq, seq);
    s->high_seq = seq;
    if (s->read_only) bv__reader_done(s, c);
    if (!s->read_only) {
        /* the whole reader pool now: a serving process's descriptors are then fixed from the
         * start, not opened by the first burst of concurrent reads (page caches still fill lazily) */
        bv__conn *pool[64];
        unsigned n = s->max_readers < 64 ? s->max_readers : 64;
        for (unsigned i = 0; i < n; i++)
            if (!(pool[i] = bv__reader(s, &rc))) {
                snprintf(err, errlen, "%s: cannot open a reader connection", s->path);
                goto fail;
            }
        for (unsigned i = 0; i < n; i++) bv__reader_done(s, pool[i]);
        rc = conn_open(s, true, &s->cconn, err, errlen);
        if (rc) goto fail;
        sqlite3_wal_hook(s->wconn->db, wal_hook_cb, s);
        if (pthread_create(&s->ckpt, NULL, ckpt_main, s) != 0) {
            snprintf(err, errlen, "cannot start the checkpointer thread");
            rc = BV_EINTERNAL;
            goto fail;
        }
        s->ckpt_started = true;
        if ((rc = bv__syncer_start(s, err, errlen))) goto fail;
        if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
            snprintf(err, errlen, "cannot start the writer thread");
            rc = BV_EINTERNAL;
            goto fail;
        }
        s->writer_started = true;
    }
    *out = s;
    return BV_OK;
fail:
    bv_store_close(s);
    return rc ? rc : BV_EIO;
}

void bv_store_close(bv_store *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->wcond);
    pthread_cond_broadcast(&s->ccond);
    pthread_mutex_unlock(&s->mu);
    if (s->writer_started) pthread_join(s->writer, NULL);
    bv__syncer_stop(s); /* answers the last groups after their sync */
    if (s->groups)
        bv_log(BV_LOG_DEBUG, "store: %llu units in %llu group commits", (unsigned long long)s->units,
               (unsigned long long)s->groups);
    if (s->ckpt_started) pthread_join(s->ckpt, NULL);
    conn_free(s->cconn);
    conn_free(s->wconn);
    /* Callers close the store only after the threads that read from it are done. */
    for (bv__conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_free(c);
    }
    pthread_cond_destroy(&s->pool_cv);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->wcond);
    pthread_cond_destroy(&s->ccond);
    pthread_cond_destroy(&s->scond);
    pthread_cond_destroy(&s->dcond);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

/* ---- Writer thread and group commit ---- */

/* The SQLite transaction vanished under us (SQLite rolls back by itself on some I/O, disk-full
 * and out-of-memory errors): every unit since BEGIN that meant to keep its changes lost them. */
static void units_lost(bv__unit *from, bv__unit *to_incl)
{
    for (bv__unit *u = from; u; u = u->next) {
        if (u->rc == 0) u->rc = BV_EIO;
        if (u == to_incl) break;
    }
}

/* Writer thread: an I/O error on the writing connection poisons the store, as a failed sync does
 * (after a failed write the kernel's and SQLite's view of the files is uncertain; SQLite's recovery
 * at the next start decides what is stored). The syncer then answers BV_EIO to every unit not yet
 * answered, and bv_store_write refuses new ones until a restart. */
static bool store_io_check(bv_store *s, const char *where)
{
    if (io_error_seen && !atomic_exchange(&s->poisoned, true))
        bv_log(BV_LOG_ERROR, "store: I/O error in %s: refusing writes until restart", where);
    return atomic_load(&s->poisoned);
}

/* One group commit being built on the writer thread. */
typedef struct {
    bv__unit *first;   /* first unit of the open transaction; NULL when none is open */
    bv__unit *tail;    /* last unit of the group's list */
    size_t n;          /* units in the group */
    uint64_t failures;
    uint64_t types;    /* bv_store_type_bit of the versions stored (failed units' too: harmless) */
    int64_t max_seq;   /* the highest history seq inserted by the units kept in the open transaction */
} group_state;

/* Runs units (a list already linked at the end of the group's list) in the group's transaction,
 * each in its own SAVEPOINT unless it is the first (alone in the transaction so far) or promised
 * BV_WRITE_CHECKS_FIRST. */
static void run_units(bv_store *s, group_state *st, bv__unit *units)
{
    bv__conn *c = s->wconn;
    for (bv__unit *u = units; u; u = u->next) {
        st->n++;
        if (store_io_check(s, "a write")) {
            u->rc = BV_EIO; /* poisoned: run nothing more */
            continue;
        }
        bool alone = !st->first; /* it begins the transaction: a ROLLBACK undoes only it */
        if (alone) {
            if (bv__step_simple(c, ST_BEGIN_IMMEDIATE) != BV_OK) {
                u->rc = BV_EIO;
                continue;
            }
            st->first = u;
        }
        /* A savepoint copies every page the unit touches (a fifth of a small create's writer time),
         * so none when the unit is alone in the transaction, or promised BV_WRITE_CHECKS_FIRST. */
        bool own_savepoint = !alone && !(u->opts & BV_WRITE_CHECKS_FIRST);
        int64_t changes_before = sqlite3_total_changes64(c->db);
        if (own_savepoint && bv__step_simple(c, ST_SAVEPOINT) != BV_OK) {
            u->rc = BV_EIO;
        } else {
            bv_store_txn t = {.s = s, .c = c, .now_ms = 0, .types = &st->types};
            c->unit_seq = 0;
            u->rc = u->fn(&t, u->ctx);
            /* the unit's summed token-count changes, undone with the unit if it fails */
            if (u->rc == 0 && !sqlite3_get_autocommit(c->db)) {
                if (bv__token_count_flush(c) != BV_OK) u->rc = BV_EIO; /* its changes are undone */
            } else {
                bv__token_count_discard(c);
            }
            if (!sqlite3_get_autocommit(c->db)) {
                bool ok;
                if (!own_savepoint) /* failed after a change: only a ROLLBACK undoes it */
                    ok = u->rc == 0 || sqlite3_total_changes64(c->db) == changes_before;
                else if (u->rc != 0)
                    ok = bv__step_simple(c, ST_ROLLBACK_TO) == BV_OK && bv__step_simple(c, ST_RELEASE) == BV_OK;
                else
                    ok = bv__step_simple(c, ST_RELEASE) == BV_OK;
                if (!ok) bv__step_simple(c, ST_ROLLBACK); /* cannot isolate the unit: give up the group */
                if (!ok && !sqlite3_get_autocommit(c->db) && !atomic_exchange(&s->poisoned, true))
                    /* not even a ROLLBACK: commit none of it (commit_group sees the poison) */
                    bv_log(BV_LOG_ERROR, "store: a failed write could not be rolled back: refusing writes until restart");
                /* kept: its history rows are in the transaction (a failed unit's were undone, and
                 * their seqs are given out again) */
                if (u->rc == 0 && c->unit_seq > st->max_seq) st->max_seq = c->unit_seq;
            }
        }
        if (sqlite3_get_autocommit(c->db)) {
            if (!alone || u->rc == 0) { /* a failed unit alone in it lost nothing of anyone else's */
                units_lost(st->first, u);
                st->failures++;
            }
            st->first = NULL;
            st->max_seq = 0; /* rolled back with the transaction */
        }
    }
}

/* COMMITs the group's transaction (no sync: the syncer does that). Fills g->committed, g->seq. */
static void commit_group(bv_store *s, group_state *st, bv__synced *g)
{
    bv__conn *c = s->wconn;
    uint64_t groups = 0;
    if (st->first) {
        /* Announce the generation before its data can be seen: a reader that sees it then waits
         * for its sync (bv__await_durable). */
        g->gen = atomic_fetch_add(&s->commit_gen, 1) + 1;
        if (!store_io_check(s, "a write") && bv__step_simple(c, ST_COMMIT) == BV_OK && !store_io_check(s, "COMMIT")) {
            groups++;
            g->committed = true;
            g->types = st->types;
            /* The writer is the only one to add history rows, so the highest seq committed is known
             * without reading it back (a read transaction after every COMMIT: 4 lock calls and two
             * B-tree descents on the writer's critical path). */
            if (st->max_seq > s->high_seq) s->high_seq = st->max_seq;
            g->seq = s->high_seq;
        } else {
            /* e.g. a deferred constraint or an I/O error: nothing of this transaction is stored
             * (poisoned: the syncer answers BV_EIO to every unit of the group). */
            if (!sqlite3_get_autocommit(c->db)) bv__step_simple(c, ST_ROLLBACK);
            (void)store_io_check(s, "COMMIT"); /* an I/O error poisons now, before anyone is answered */
            units_lost(st->first, NULL);
            st->failures++;
        }
    }
    pthread_mutex_lock(&s->mu);
    s->groups += groups;
    s->units += st->n;
    s->commit_failures += st->failures;
    pthread_mutex_unlock(&s->mu);
}

/* With mu held: detaches up to max queued units (at least one must be queued). */
static bv__unit *take_queued(bv_store *s, size_t max, bv__unit **last_out)
{
    bv__unit *batch = s->head, *last = batch;
    size_t n = 1;
    while (n < max && last->next) {
        last = last->next;
        n++;
    }
    s->head = last->next;
    if (!s->head) s->tail = NULL;
    last->next = NULL;
    s->pending -= n;
    *last_out = last;
    return batch;
}

/* Lets the WAL start again from its beginning. Under a steady stream of commits the background
 * checkpoint never catches the writer, so SQLite never restarts the log: it grows without bound,
 * and every commit appends to newly allocated blocks, which makes each fdatasync also commit file
 * system metadata (measured: about 3x the cost of syncing overwritten blocks). Once the
 * checkpointer has copied most of the log, the writer, between two groups, copies the few frames
 * added since (a PASSIVE checkpoint on its own connection: short, since little is left); SQLite
 * then rewinds the log at the next BEGIN, and later commits overwrite blocks already on disk. */
static void wal_wrap(bv_store *s)
{
    if (s->wal_pages < WRAP_FACTOR * s->ckpt_pages || !atomic_exchange(&s->ckpt_caught_up, false)) return;
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->wconn->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        bv_log(BV_LOG_WARN, "store: writer checkpoint failed: %s", sqlite3_errstr(rc));
    s->wal_pages = 0;
}

/* With mu held and units queued: runs them in the open group. */
static void extend_group(bv_store *s, group_state *st)
{
    bv__unit *last, *more = take_queued(s, s->group_max - st->n, &last);
    st->tail->next = more;
    st->tail = last;
    pthread_mutex_unlock(&s->mu);
    run_units(s, st, more);
    pthread_mutex_lock(&s->mu);
}

/* Before a COMMIT: units that are about to arrive share it, instead of each paying its own
 * COMMIT, WAL write, sync and listener wake-ups (about 100 us of CPU per group here). Expected
 * are the writes callers announced (bv_store_announce). The wait ends when none is outstanding
 * or after s->linger_us. Not waiting also for as many units as the last group had: with deferred
 * writes that kept every client in one lock-step group, each waiting for the slowest, and no
 * group executing while another synced (docs/storage.md, "Lingering"). With mu held. */
static void linger(bv_store *s, group_state *st)
{
    if (!s->linger_us || st->n >= s->group_max || atomic_load(&s->incoming) <= 0) return;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl); /* the clock of s->wcond */
    int64_t ns = dl.tv_nsec + (int64_t)s->linger_us * 1000;
    dl.tv_sec += (time_t)(ns / 1000000000);
    dl.tv_nsec = (long)(ns % 1000000000);
    while (st->n < s->group_max) {
        if (!s->head) {
            if (s->stopping || atomic_load(&s->incoming) <= 0) break;
            if (pthread_cond_timedwait(&s->wcond, &s->mu, &dl) != 0) break; /* ETIMEDOUT */
            continue;
        }
        extend_group(s, st);
    }
}

/* The store whose write this thread announced and has not queued yet (one at a time). */
static _Thread_local bv_store *announced;

void bv_store_announce(bv_store *s)
{
    if (!s || s->read_only || announced) return;
    atomic_fetch_add(&s->incoming, 1);
    announced = s;
}

/* With mu held, or with wake set: a lingering writer must learn that nobody is coming. */
static void announce_consumed(bv_store *s, bool wake)
{
    if (announced != s) return;
    announced = NULL;
    if (atomic_fetch_sub(&s->incoming, 1) == 1 && wake) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_signal(&s->wcond);
        pthread_mutex_unlock(&s->mu);
    }
}

void bv_store_unannounce(bv_store *s)
{
    if (s) announce_consumed(s, true);
}

static void *writer_main(void *arg)
{
    bv_thread_name("bv-writer");
    bv_store *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping) pthread_cond_wait(&s->wcond, &s->mu);
        if (!s->head) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        /* Take everything queued (up to group_max). */
        group_state st = {0};
        bv__synced *g = bv_calloc(1, sizeof *g);
        g->units = take_queued(s, s->group_max, &st.tail);
        g->gen = atomic_load(&s->commit_gen); /* no COMMIT (every unit failed): nothing new to wait for */
        pthread_mutex_unlock(&s->mu);
        run_units(s, &st, g->units);

        /* While the syncer is still busy with the previous groups, this group could not start its
         * own sync anyway: keep it open and run the units that arrive meanwhile in it, then
         * COMMIT as soon as the syncer is free. Bigger groups write each hot page once for more
         * requests, at no cost in latency. */
        pthread_mutex_lock(&s->mu);
        while (st.n < s->group_max && s->sync_busy) {
            if (!s->head) {
                if (s->stopping) break;
                pthread_cond_wait(&s->wcond, &s->mu);
                continue;
            }
            extend_group(s, &st);
        }
        linger(s, &st);
        pthread_mutex_unlock(&s->mu);

        commit_group(s, &st, g);
        /* The callers are answered by the syncer, after the WAL holding this COMMIT is synced. */
        bv__syncer_push(s, g);
        wal_wrap(s);
    }
    pthread_mutex_lock(&s->mu);
    s->writer_done = true;
    pthread_cond_broadcast(&s->scond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queues u for the writer; BV_EIO (nothing queued) once the store is stopping. */
static int queue_unit(bv_store *s, bv__unit *u)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return BV_EIO;
    }
    if (s->tail) s->tail->next = u;
    else s->head = u;
    s->tail = u;
    s->pending++;
    announce_consumed(s, false); /* its unit is queued: the writer sees it under mu */
    pthread_mutex_unlock(&s->mu);
    /* Woken after the unlock, the writer does not at once block on s->mu held by this thread. */
    pthread_cond_signal(&s->wcond);
    return BV_OK;
}

static int write_check(bv_store *s, bv_store_write_fn fn)
{
    if (!s || !fn || s->read_only) return BV_EINVAL;
    if (pthread_equal(pthread_self(), s->writer)) return BV_EINTERNAL; /* would wait on itself */
    if (atomic_load(&s->poisoned)) return BV_EIO;
    return BV_OK;
}

int bv_store_write(bv_store *s, bv_store_write_fn fn, void *ctx) { return bv_store_write_opt(s, fn, ctx, 0); }

int bv_store_write_opt(bv_store *s, bv_store_write_fn fn, void *ctx, unsigned opts)
{
    int rc = write_check(s, fn);
    if (rc) return rc;
    bv__unit u;
    memset(&u, 0, sizeof u);
    u.fn = fn;
    u.ctx = ctx;
    u.opts = opts;
    sem_init(&u.done, 0, 0);
    rc = queue_unit(s, &u);
    if (rc == BV_OK) {
        /* A semaphore, not a condition variable on s->mu: the syncer answers a whole group and
         * each woken caller would otherwise queue for s->mu behind it (a second sleep and wake
         * per write). */
        while (sem_wait(&u.done) != 0) {} /* EINTR */
        rc = u.rc;
    }
    sem_destroy(&u.done);
    return rc;
}

int bv_store_write_async(bv_store *s, bv_store_write_fn fn, void *ctx, unsigned opts, bv_store_done_fn done,
                         void *done_ctx)
{
    int rc = write_check(s, fn);
    if (rc) return rc;
    if (!done) return BV_EINVAL;
    bv__unit *u = bv_calloc(1, sizeof *u);
    u->fn = fn;
    u->ctx = ctx;
    u->opts = opts;
    u->done_fn = done;
    u->done_ctx = done_ctx;
    rc = queue_unit(s, u);
    if (rc) free(u);
    return rc;
}

int64_t bv_store_last_seq(bv_store *s) { return atomic_load(&s->last_seq); }

bool bv_store_healthy(bv_store *s) { return s && !atomic_load(&s->poisoned); }

/* ---- Inside a unit ---- */
int64_t bv_txn_now_ms(bv_store_txn *t)
{
    if (!t->now_ms) {
        int64_t now = bv_now_ms();
        t->now_ms = now > t->s->last_ms ? now : t->s->last_ms + 1;
        t->s->last_ms = t->now_ms;
    }
    return t->now_ms;
}

/* SQLite may have rolled the group's transaction back by itself (I/O error, disk full): then
 * nothing more may run in this unit, or it would run, and commit, on its own. */
static bool txn_gone(bv_store_txn *t) { return sqlite3_get_autocommit(t->c->db) != 0; }

int bv_txn_read(bv_store_txn *t, bv_arena *a, const char *type, const char *id, bv_record *out)
{
    if (txn_gone(t)) return BV_EIO;
    return bv__read(t->c, a, type, id, out);
}

int bv_txn_vread(bv_store_txn *t, bv_arena *a, const char *type, const char *id, int64_t version, bv_record *out)
{
    if (txn_gone(t)) return BV_EIO;
    return bv__vread(t->c, a, type, id, version, out);
}

int bv_txn_search(bv_store_txn *t, bv_arena *a, const bv_search *q, bv_record **out, size_t *n, int64_t *total)
{
    if (txn_gone(t)) return BV_EIO;
    int rc = bv__token_count_flush(t->c); /* a total read from the counts sees this unit's writes */
    return rc ? rc : bv__search(t->c, true, a, q, out, n, total);
}

static int bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    return s ? sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, idx);
}

static int step_done(bv__conn *c, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    bv__done(st);
    return rc == SQLITE_DONE ? BV_OK : bv__fail(c, rc, what);
}

/* A reference row whose text is exactly "<ref_type>/<ref_id>" (a relative literal reference, no
 * version): the text adds nothing and is stored NULL (schema 5); searches by type and id, includes
 * and _has read ref_type and ref_id, a sort rebuilds it. */
static bool ref_text_implied(const bv_index_row *r)
{
    if (!r->text || !r->ref_type || !r->ref_id || r->ref_version) return false;
    size_t nt = strlen(r->ref_type);
    return strncmp(r->text, r->ref_type, nt) == 0 && r->text[nt] == '/' && strcmp(r->text + nt + 1, r->ref_id) == 0;
}

static int put_row(bv__conn *c, int64_t rid, int64_t ord, const bv_index_row *r)
{
    sqlite3_stmt *st = bv__stmt(c, (bv__stmt_id)(ST_IX_INS_STRING + (int)r->kind));
    if (!st) return BV_EINTERNAL;
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, ord);
    bind_text(st, 3, r->param);
    sqlite3_bind_int(st, 4, r->group);
    switch (r->kind) {
    case BV_IX_STRING:
        bind_text(st, 5, r->norm);
        bind_text(st, 6, r->text);
        break;
    case BV_IX_TOKEN:
        bind_text(st, 5, r->system);
        bind_text(st, 6, r->code);
        bind_text(st, 7, r->text);
        break;
    case BV_IX_REFERENCE:
        bind_text(st, 5, r->ref_type);
        bind_text(st, 6, r->ref_id);
        bind_text(st, 7, r->ref_version);
        bind_text(st, 8, ref_text_implied(r) ? NULL : r->text);
        break;
    case BV_IX_DATE:
        sqlite3_bind_int64(st, 5, r->lo);
        sqlite3_bind_int64(st, 6, r->hi);
        break;
    case BV_IX_NUMBER:
    case BV_IX_QUANTITY:
        sqlite3_bind_double(st, 5, r->num);
        sqlite3_bind_double(st, 6, r->num_lo);
        sqlite3_bind_double(st, 7, r->num_hi);
        if (r->kind == BV_IX_QUANTITY) {
            bind_text(st, 8, r->system);
            bind_text(st, 9, r->code);
        }
        break;
    case BV_IX_URI:
        bind_text(st, 5, r->text);
        break;
    }
    return step_done(c, st, "insert index row");
}

static int check_put(const bv_put *p)
{
    if (!p->type || !*p->type || !p->id || !*p->id || !p->method || p->version < 1) return BV_EINVAL;
    if (p->deleted ? p->body != NULL : p->body == NULL) return BV_EINVAL;
    if (p->n_rows && !p->rows) return BV_EINVAL;
    for (size_t i = 0; !p->deleted && i < p->n_rows; i++) {
        const bv_index_row *r = &p->rows[i];
        if ((unsigned)r->kind >= BV__N_KINDS || !r->param) return BV_EINVAL;
        if (r->kind == BV_IX_STRING && !r->norm) return BV_EINVAL;
        if (r->kind == BV_IX_URI && !r->text) return BV_EINVAL;
        if (r->kind == BV_IX_DATE && r->lo > r->hi) return BV_EINVAL;
    }
    return BV_OK;
}

/* Deletes a resource's index rows and takes them out of the kept token counts (sqlite_count.c). */
static int drop_rows(bv__conn *c, int64_t rid, const char *type)
{
    int rc = bv__token_count_drop(c, rid, type);
    for (int k = 0; !rc && k < BV__N_KINDS; k++) {
        sqlite3_stmt *st = bv__stmt(c, (bv__stmt_id)(ST_IX_DEL_STRING + k));
        if (!st) return BV_EINTERNAL;
        sqlite3_bind_int64(st, 1, rid);
        rc = step_done(c, st, "delete index rows");
    }
    return rc;
}

/* Stores a resource's index rows and adds them to the kept token counts. */
static int add_rows(bv__conn *c, int64_t rid, const char *type, const bv_index_row *rows, size_t n)
{
    int rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = put_row(c, rid, (int64_t)i, &rows[i]))) return rc;
    return bv__token_count_add(c, type, rows, n);
}

/* The body of bv_txn_put. A failure part-way is undone with its unit (run_units). */
static int put_inner(bv__conn *c, const bv_put *p)
{
    int64_t rid = 0, cur = 0, cur_seq = 0;
    bool cur_deleted = false;
    sqlite3_stmt *st = bv__stmt(c, ST_LOOKUP);
    if (!st) return BV_EINTERNAL;
    bind_text(st, 1, p->type);
    bind_text(st, 2, p->id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        rid = sqlite3_column_int64(st, 0);
        cur = sqlite3_column_int64(st, 1);
        cur_seq = sqlite3_column_int64(st, 2);
        cur_deleted = sqlite3_column_int(st, 3) != 0;
    }
    bv__done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return bv__fail(c, rc, "lookup");
    /* Versions are contiguous: a put must name the next one (guards against lost updates). */
    if (p->version != cur + 1) return BV_ECONFLICT;

    if (rid && !cur_deleted) { /* a deleted version has no body to keep */
        if (!(st = bv__stmt(c, ST_HIST_KEEP))) return BV_EINTERNAL;
        sqlite3_bind_int64(st, 1, rid);
        sqlite3_bind_int64(st, 2, cur_seq);
        if ((rc = step_done(c, st, "keep the replaced version"))) return rc;
        if (sqlite3_changes(c->db) != 1) { /* the body would be lost: refuse the put */
            bv_log(BV_LOG_ERROR, "store: %s/%s: no history row %lld for the replaced version", p->type, p->id,
                   (long long)cur_seq);
            return BV_EINTERNAL;
        }
    }
    if (!(st = bv__stmt(c, ST_HIST_INSERT))) return BV_EINTERNAL;
    bind_text(st, 1, p->type);
    bind_text(st, 2, p->id);
    sqlite3_bind_int64(st, 3, p->version);
    sqlite3_bind_int64(st, 4, p->last_updated_ms);
    sqlite3_bind_int(st, 5, p->deleted);
    bind_text(st, 6, p->method);
    if ((rc = step_done(c, st, "insert history"))) return rc;
    int64_t seq = sqlite3_last_insert_rowid(c->db);
    if (seq > c->unit_seq) c->unit_seq = seq;

    if (rid && (rc = drop_rows(c, rid, p->type))) return rc;
    if (!(st = bv__stmt(c, rid ? ST_RES_UPDATE : ST_RES_INSERT))) return BV_EINTERNAL;
    if (rid) {
        sqlite3_bind_int64(st, 1, rid);
    } else {
        bind_text(st, 1, p->type);
        bind_text(st, 2, p->id);
    }
    sqlite3_bind_int64(st, 3, p->version);
    sqlite3_bind_int64(st, 4, p->last_updated_ms);
    sqlite3_bind_int(st, 5, p->deleted);
    bind_text(st, 6, p->method);
    sqlite3_bind_int64(st, 7, seq);
    if (p->body) sqlite3_bind_text64(st, 8, p->body, p->body_len, SQLITE_STATIC, SQLITE_UTF8);
    if ((rc = step_done(c, st, rid ? "update resource" : "insert resource"))) return rc;
    if (!rid) rid = sqlite3_last_insert_rowid(c->db);

    return p->deleted ? BV_OK : add_rows(c, rid, p->type, p->rows, p->n_rows);
}

uint64_t bv_store_type_bit(const char *type) { return (uint64_t)1 << (bv_hash_str(type ? type : "") % 64); }

int bv_txn_put(bv_store_txn *t, const bv_put *p)
{
    if (!t || !p) return BV_EINVAL;
    int rc = check_put(p);
    if (rc) return rc;
    if (txn_gone(t)) return BV_EIO;
    if (t->types) *t->types |= bv_store_type_bit(p->type);
    /* No savepoint of its own: the unit is isolated already, and a unit whose put failed must
     * return non-zero, which rolls the whole unit back (store.h). A savepoint per put cost a third
     * of the writer's time during ingest. */
    return put_inner(t->c, p);
}

/* ---- Re-indexing ---- */
int bv_txn_scan_current(bv_store_txn *t, bv_arena *a, int64_t *cursor, size_t max, bv_record **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!t || !cursor || max == 0) return BV_EINVAL;
    if (txn_gone(t)) return BV_EIO;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(t->c->db,
                                "SELECT " REC_COLS ", rid FROM resources WHERE rid > ?1 AND deleted = 0"
                                " ORDER BY rid LIMIT ?2",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return bv__fail(t->c, rc, "prepare scan");
    sqlite3_bind_int64(st, 1, *cursor);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    bv_record *recs = bv_arena_calloc(a, max, sizeof *recs);
    size_t got = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && got < max) {
        bv__record_from(a, st, 0, &recs[got++]);
        *cursor = sqlite3_column_int64(st, 8);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return bv__fail(t->c, rc, "scan");
    *out = recs;
    *n = got;
    return BV_OK;
}

int bv_txn_set_index(bv_store_txn *t, const char *type, const char *id, const bv_index_row *rows, size_t n_rows)
{
    if (!t || !type || !id || (n_rows && !rows)) return BV_EINVAL;
    bv_put chk = {.type = type, .id = id, .version = 1, .method = "PUT", .body = "", .rows = rows, .n_rows = n_rows};
    int rc = check_put(&chk);
    if (rc) return rc;
    if (txn_gone(t)) return BV_EIO;
    bv__conn *c = t->c;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(c->db, "SELECT rid FROM resources WHERE type = ?1 AND id = ?2 AND deleted = 0", -1, &st,
                            NULL);
    if (rc != SQLITE_OK) return bv__fail(c, rc, "prepare lookup");
    bind_text(st, 1, type);
    bind_text(st, 2, id);
    int64_t rid = 0;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) rid = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return bv__fail(c, rc, "lookup");
    if (!rid) return BV_ENOTFOUND;
    if ((rc = drop_rows(c, rid, type))) return rc;
    return add_rows(c, rid, type, rows, n_rows);
}

/* ---- Hooks ---- */
size_t bv__store_pending(bv_store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->pending;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void bv__store_stats(bv_store *s, uint64_t *groups, uint64_t *units, uint64_t *commit_failures)
{
    pthread_mutex_lock(&s->mu);
    if (groups) *groups = s->groups;
    if (units) *units = s->units;
    if (commit_failures) *commit_failures = s->commit_failures;
    pthread_mutex_unlock(&s->mu);
}

int bv__txn_exec(bv_store_txn *t, const char *sql)
{
    if (txn_gone(t)) return BV_EIO;
    return conn_exec(t->c, sql, NULL, 0);
}
