/* Private to src/store: shared structures of the SQLite store. Never include sqlite3.h here, so
 * tests and the benchmark can use the test hooks at the end without seeing SQLite. */
#ifndef BEVAN_STORE_INTERNAL_H
#define BEVAN_STORE_INTERNAL_H

#include "bevan/store.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

struct sqlite3;
struct sqlite3_stmt;

#define BV__SCHEMA_VERSION 6
#define BV__STMT_JOURNAL_BYTES (8 << 20) /* a savepoint's journal kept in memory up to this */

/* A history row's record columns (as bv__record_from reads them). The current version's body is
 * stored only in resources (schema 6): its history row's body is NULL and is read from there. */
#define BV__HIST_COLS                                                                              \
    "type, id, version, last_updated, deleted, method,"                                            \
    " coalesce(body, (SELECT r.body FROM resources r WHERE r.type = history.type"                  \
    " AND r.id = history.id AND r.seq = history.seq)), seq"
#define BV__APPLICATION_ID 0x4256414e /* "BVAN" in the database header */
#define BV__DYN_CACHE 32              /* per-connection LRU of dynamic (search) statements */
#define BV__DYN_CACHE_MAX_SQL 16384   /* longer generated SQL is prepared per call, not cached */
#define BV__MAX_SQL (4u * 1024u * 1024u) /* cap on one generated statement */
#define BV__MAX_UNION 100             /* rid sets per IN (...): SQLite allows 500 compound terms */
#define BV__MAX_NEST 4                /* chain / _has nesting depth */
#define BV__EST_BOUND 5000            /* search: index entries counted per condition to judge it (sqlite_search.c) */
#define BV__EST_SMALL 200             /* search: a driver this small is taken without counting the others */

/* ix_token_count (schema 3): per (param, code, system, type) the live resources with such a token
 * row, counted from the rows themselves (the migration, `bevan reindex`, `bevan check`). */
#define BV__TOKEN_COUNT_SELECT                                                                       \
    "SELECT x.param, x.code, x.system, r.type, count(DISTINCT x.rid)"                                \
    " FROM resources r INDEXED BY resources_live CROSS JOIN ix_token x"                              \
    " WHERE r.deleted = 0 AND x.rid = r.rid AND x.system IS NOT NULL AND x.code IS NOT NULL"         \
    " AND instr(x.param, '#') = 0 GROUP BY x.param, x.code, x.system, r.type"
#define BV__TOKEN_COUNT_FILL "INSERT INTO ix_token_count (param, code, system, type, n) " BV__TOKEN_COUNT_SELECT ";"

/* Fixed statements, prepared lazily once per connection (SQLITE_PREPARE_PERSISTENT). The
 * per-kind ones follow bv_index_kind order, so ST_IX_DEL_STRING + kind is the right one. */
typedef enum {
    ST_BEGIN, ST_BEGIN_IMMEDIATE, ST_COMMIT, ST_ROLLBACK,
    ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
    ST_PUT_SAVEPOINT, ST_PUT_RELEASE, ST_PUT_ROLLBACK_TO,
    ST_READ, ST_VREAD, ST_LOOKUP, ST_HIST_INSERT, ST_HIST_KEEP, ST_RES_INSERT, ST_RES_UPDATE, ST_MAX_SEQ,
    ST_IX_DEL_STRING, ST_IX_DEL_TOKEN, ST_IX_DEL_REFERENCE, ST_IX_DEL_DATE, ST_IX_DEL_NUMBER,
    ST_IX_DEL_QUANTITY, ST_IX_DEL_URI,
    ST_IX_INS_STRING, ST_IX_INS_TOKEN, ST_IX_INS_REFERENCE, ST_IX_INS_DATE, ST_IX_INS_NUMBER,
    ST_IX_INS_QUANTITY, ST_IX_INS_URI,
    ST_CHANGES, ST_KV_GET, ST_KV_SET, ST_KV_DEL,
    ST_TC_OLD, ST_TC_ADD, ST_TC_NEW, /* ix_token_count upkeep (sqlite_count.c) */
    ST__COUNT
} bv__stmt_id;

#define BV__N_KINDS 7

typedef struct {
    char *sql;                   /* heap copy: the cache key */
    struct sqlite3_stmt *st;
    uint64_t used;               /* LRU clock */
} bv__dyn;

/* One SQLite connection: the writer's, or one reader thread's. Never shared between threads. */
typedef struct bv__conn {
    struct sqlite3 *db;
    struct sqlite3_stmt *st[ST__COUNT];
    bv__dyn dyn[BV__DYN_CACHE];
    uint64_t tick;
    bv_store *store;
    struct bv__tc_pending *tc;    /* writer only: the unit's token-count changes not yet applied */
    int64_t unit_seq;             /* writer only: the highest history seq the running unit inserted */
    struct bv__conn *next;        /* the store's list of reader connections (closed with it) */
    struct bv__conn *idle_next;   /* the pool's list of idle reader connections */
} bv__conn;

/* A queued write unit; lives on the stack of the thread waiting in bv_store_write. */
typedef struct bv__unit {
    bv_store_write_fn fn;
    void *ctx;
    unsigned opts;               /* BV_WRITE_* */
    int rc;
    sem_t done;                  /* posted once the unit is answered; waited on without s->mu */
    bv_store_done_fn done_fn;    /* instead, for bv_store_write_async: called (then the unit freed) */
    void *done_ctx;
    struct bv__unit *next;
} bv__unit;

/* One group commit waiting for the syncer: its units are answered after the sync. */
typedef struct bv__synced {
    bv__unit *units;
    int64_t gen;                 /* commit generation of this group */
    int64_t seq;                 /* highest history seq after its COMMIT */
    bool committed;              /* false: the group's COMMIT failed (units already hold errors) */
    uint64_t types;              /* bv_store_type_bit of every version it stored */
    struct bv__synced *next;
} bv__synced;

#define BV__MAX_LISTENERS 8

struct bv_store_txn {
    bv_store *s;
    bv__conn *c;
    int64_t now_ms;              /* 0 until bv_txn_now_ms is first called in this unit */
    uint64_t *types;             /* the group's bv_store_type_bit set: bv_txn_put adds to it */
};

struct bv_store {
    char *path;                  /* DIR/bevan.db */
    bool read_only;
    bool sync_normal;
    unsigned group_max;
    unsigned linger_us;          /* longest wait for announced units before a COMMIT (0 = none) */
    atomic_int incoming;         /* announced writes not queued yet (bv_store_announce) */
    /* Reader connections: a pool of at most max_readers, each lent for one call (bv__reader,
     * bv__reader_done), so their page caches, and RSS, are bounded whatever the thread count. */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    bv__conn *idle;              /* guarded by pool_mu */
    unsigned n_readers, max_readers; /* guarded by pool_mu */
    pthread_mutex_t mu;          /* guards everything below except wconn, last_ms, last_seq */
    pthread_cond_t wcond;        /* writer waits here for units */
    bv__unit *head, *tail;
    size_t pending;
    bool stopping;
    bool writer_started;
    pthread_t writer;
    bv__conn *conns;             /* reader connections, closed by bv_store_close */
    uint64_t groups, units, commit_failures;
    bv__conn *wconn;             /* writer thread only */
    int64_t last_ms;             /* writer thread only: last timestamp handed out */
    int64_t high_seq;            /* writer thread only: the highest history seq committed */
    _Atomic int64_t last_seq;
    /* checkpoints run on their own thread so the writer never waits for one */
    pthread_t ckpt;
    bool ckpt_started;
    bool ckpt_wanted;            /* guarded by mu */
    atomic_bool ckpt_caught_up;  /* the checkpointer backfilled nearly the whole WAL */
    int wal_pages;               /* writer thread only: frames in the WAL after its last COMMIT */
    int ckpt_asked_at;           /* writer thread only: wal_pages when a checkpoint was last asked for */
    int ckpt_pages;              /* WAL frames at which a checkpoint starts (CKPT_PAGES by default) */
    int reader_cache_kb;         /* page cache of each reader connection */
    int writer_cache_kb;         /* page cache of the writer connection */
    pthread_cond_t ccond;
    bv__conn *cconn;             /* checkpointer thread only */
    /* Durability pipeline: the writer COMMITs (no sync inside SQLite) and hands the group to the
     * syncer thread, which fdatasyncs the WAL and only then answers the group's units, while
     * the writer already runs the next group. Readers wait for the sync of any generation they
     * may have seen (bv__await_durable), so nothing is served before it is durable. */
    pthread_t syncer;
    bool syncer_started;
    bool writer_done;            /* guarded by mu: the writer has exited; the syncer drains and stops */
    pthread_cond_t scond;        /* syncer waits here for groups */
    pthread_cond_t dcond;        /* readers wait here for durable_gen */
    bv__synced *sync_head, *sync_tail;
    bool sync_busy;              /* guarded by mu: the syncer is syncing; the writer extends its group */
    _Atomic int64_t commit_gen;  /* incremented by the writer before each COMMIT */
    _Atomic int64_t durable_gen; /* every generation <= this one is synced (or failed) */
    _Atomic bool poisoned;       /* a sync failed: refuse writes until restart (never retry-and-ack) */
    _Atomic bool fail_next_sync; /* test hook: the next sync fails as if fdatasync returned EIO */
    int wal_fd;                  /* syncer thread only; -1 until opened */
    /* Written by the syncer only, read by anyone (bv_store_durability_get). */
    _Atomic uint64_t sync_us_total, sync_us_max;
    _Atomic uint64_t sync_hist[BV_SYNC_BUCKETS];
    struct {
        bv_store_commit_fn fn;
        void *ctx;
    } listeners[BV__MAX_LISTENERS];
    size_t n_listeners;          /* guarded by mu */
};

/* ---- walbuf.c: the "bevan" VFS (one write per commit's WAL frames) ---- */
const char *bv__vfs_register(void); /* its name, or NULL to use SQLite's default VFS */
bool bv__vfs_failed(void);          /* frames of a published commit could not be written */
unsigned long long bv__vfs_wal_writes(void); /* writes of buffered WAL frames so far (tests) */
unsigned long long bv__vfs_trickles(void);   /* database-file writeback starts so far (tests) */
unsigned long long bv__vfs_wal_kicks(void);  /* WAL writeback starts at commits so far (tests) */

/* ---- sqlite.c: connections and statements ---- */
bv__conn *bv__reader(bv_store *s, int *err);      /* borrows a reader connection (waits if all are lent) */
void bv__reader_done(bv_store *s, bv__conn *c);  /* gives it back; NULL ok */
struct sqlite3_stmt *bv__stmt(bv__conn *c, bv__stmt_id id);
/* A statement for generated SQL, from the connection's LRU cache (prepared on a miss). With
 * *owned set (SQL too long to cache) the caller must sqlite3_finalize it after use. */
struct sqlite3_stmt *bv__dyn_stmt(bv__conn *c, const char *sql, bool *owned);
void bv__done(struct sqlite3_stmt *st);           /* reset + clear bindings; NULL ok */
int bv__fail(bv__conn *c, int rc, const char *what); /* logs; maps a SQLite code to bv_err */
int bv__step_simple(bv__conn *c, bv__stmt_id id);   /* runs a no-parameter statement */

/* ---- Query builder: SQL text plus its bindings, in order. Values are never spliced. ---- */
typedef enum { BV__B_TEXT, BV__B_INT, BV__B_REAL } bv__bind_type;
typedef struct {
    bv__bind_type t;
    const char *s;               /* must outlive the statement's use (caller's arena/query) */
    int64_t i;                   /* TEXT: its length in bytes, or -1 up to the NUL */
    double d;
} bv__bind;
typedef struct {
    bv_buf sql;
    bv__bind *b;
    size_t n, cap;
    int err;                     /* sticky: first error while building */
} bv__qb;
void bv__qb_init(bv__qb *q);
void bv__qb_free(bv__qb *q);
void bv__qb_sql(bv__qb *q, const char *sql);
void bv__qb_sqlf(bv__qb *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bv__qb_text(bv__qb *q, const char *s);     /* appends "?" bound to s */
void bv__qb_textn(bv__qb *q, const char *s, size_t n); /* appends "?" bound to the n bytes at s */
/* Appends " = ?" bound to a stored param code, or " IN (?, ?, ...)" for a union "a|b|..."
 * (fhir_search_param_rows: the parameter's rows are those of a, b, ...). */
void bv__qb_param(bv__qb *q, const char *param);
void bv__qb_int(bv__qb *q, int64_t v);
void bv__qb_real(bv__qb *q, double v);
void bv__qb_append(bv__qb *q, const bv__qb *other);
int bv__qb_bind(const bv__qb *q, struct sqlite3_stmt *st);

/* ---- sqlite_sync.c: the syncer thread ---- */
int bv__syncer_start(bv_store *s, char *err, size_t errlen);
/* 1 if fd is the file now at path (inode and device), 0 if path names another file or none, -1 if
 * that cannot be told; asks for no timestamp when statx works (sqlite_sync.c). */
int bv__same_file(const char *path, int fd);
void bv__syncer_stop(bv_store *s);               /* after the writer has exited */
void bv__syncer_push(bv_store *s, bv__synced *g);  /* writer thread: g is heap-allocated */
/* Waits until every commit generation started so far is synced: call after a read. */
void bv__await_durable(bv_store *s);

/* ---- sqlite_read.c ---- */
/* Columns from col0: type, id, version, last_updated, deleted, method, body, seq. */
void bv__record_from(bv_arena *a, struct sqlite3_stmt *st, int col0, bv_record *out);
int bv__read(bv__conn *c, bv_arena *a, const char *type, const char *id, bv_record *out);
int bv__vread(bv__conn *c, bv_arena *a, const char *type, const char *id, int64_t version, bv_record *out);
/* Run generated SQL (from the connection's cache) built by q. Records are REC columns from col0. */
int bv__query_count(bv__conn *c, bv__qb *q, int64_t *out);
int bv__query_records(bv__conn *c, bv_arena *a, bv__qb *q, int col0, bv_record **out, size_t *n);

/* ---- sqlite_search.c ---- */
int bv__search(bv__conn *c, bool in_txn, bv_arena *a, const bv_search *q, bv_record **out, size_t *n,
               int64_t *total);
int bv__search_page(bv__conn *c, bv_arena *a, const bv_search *q, bv_search_page *out);
int bv__include(bv__conn *c, bv_arena *a, const bv_include_query *q, bv_record **out, size_t *n);

/* sqlite_count.c: ix_token_count upkeep, called by the writer around a resource's index rows. */
int bv__token_count_drop(bv__conn *c, int64_t rid, const char *type); /* before its rows are deleted */
int bv__token_count_add(bv__conn *c, const char *type, const bv_index_row *rows, size_t n); /* after insert */
/* On a connection with c->tc (the writer), drop and add only sum the changes per value; they are
 * applied by flush (at the end of a unit, undone with it if it fails, and before a search in it)
 * or thrown away by discard (a unit that failed). A transaction of 170 Observations then updates
 * each count row once, not once per resource. */
struct bv__tc_pending *bv__token_count_pending_new(void);
void bv__token_count_pending_free(struct bv__tc_pending *p);
int bv__token_count_flush(bv__conn *c);
void bv__token_count_discard(bv__conn *c);

/* ---- Test and benchmark hooks (not for production callers) ---- */
size_t bv__store_pending(bv_store *s);           /* units queued and not yet taken by the writer */
void bv__store_stats(bv_store *s, uint64_t *groups, uint64_t *units, uint64_t *commit_failures);
/* Runs raw SQL inside a write unit (used to provoke failures and corruption in tests). */
int bv__txn_exec(bv_store_txn *t, const char *sql);
void bv__store_fail_next_sync(bv_store *s);       /* the next durable sync fails (EIO) */

#endif
