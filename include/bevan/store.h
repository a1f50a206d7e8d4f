/* Bevan store: the one interface to persistence. SQLite (src/store/sqlite*.c) is the embedded
 * default; PostgreSQL can follow behind the same interface without touching src/api/.
 *
 * Model: the current version of each resource lives apart from its history; every version
 * (including the current one and deletions) is a history row with a global sequence number.
 * Search index rows are extracted by src/fhir at write time and stored with the current version.
 *
 * Threads: reads run on the calling thread's own connection (opened lazily, thread-local).
 * Writes run as units on one writer thread; concurrent units are group-committed (one durable
 * sync for many requests), each unit isolated (a SAVEPOINT, or a ROLLBACK when it is alone in the
 * transaction) so one failing unit never affects another. A unit's caller is answered only after
 * the group's COMMIT has been synced: the writer commits and moves on to the next group while a
 * syncer thread makes the previous one durable (fdatasync of the WAL), so the sync of one group
 * overlaps the work of the next. Reads never
 * return data whose sync is still outstanding: they wait for it (at most one sync).
 *
 * Committed changes: every stored version has a global seq; bv_store_changes reads them in order
 * and bv_store_on_commit tells listeners (care services, subscriptions) that new ones are durable.
 * Consumers keep their cursor in the store's key/value table (bv_txn_kv_set), in the same unit as
 * the writes it caused, so a restart resumes exactly where they stopped. */
#ifndef BEVAN_STORE_H
#define BEVAN_STORE_H

#include "bevan/core.h"

#include <limits.h>

typedef struct bv_store bv_store;
typedef struct bv_store_txn bv_store_txn;   /* valid only inside a write unit */

typedef struct {
    const char *dir;          /* data folder; created if missing; the database is DIR/bevan.db */
    bool sync_normal;         /* PRAGMA synchronous=NORMAL instead of FULL (documented trade-off) */
    unsigned group_max;       /* max units per group commit (0 = 512) */
    unsigned linger_us;       /* longest wait for announced writes before a COMMIT (0 = 500 us; BV_STORE_NO_LINGER = none) */
    unsigned ckpt_pages;      /* WAL frames that start a checkpoint and let the WAL wrap (0 = 4000) */
    unsigned reader_cache_kb; /* page cache per reader connection (0 = 4096 KiB) */
    unsigned writer_cache_kb; /* page cache of the writer connection (0 = 16384 KiB) */
    unsigned max_readers;     /* reader connections, lent per call (0 = 8) */
    bool read_only;           /* open for checks/export without the writer thread */
} bv_store_options;

/* One stored version of a resource. Strings live in the arena passed to the call. */
typedef struct {
    const char *type;
    const char *id;
    int64_t version;          /* meta.versionId, 1-based */
    int64_t last_updated_ms;  /* meta.lastUpdated */
    bool deleted;             /* this version is a deletion (body is NULL) */
    const char *method;       /* "POST", "PUT", "PATCH", "DELETE" (how this version was made) */
    const char *body;         /* stored JSON bytes, served as they are; NUL-terminated */
    size_t body_len;
    int64_t seq;              /* global history sequence: increases with every stored version */
} bv_record;

/* ---- Index rows (one table per kind). Which fields are used depends on kind. ---- */
typedef enum {
    BV_IX_STRING, BV_IX_TOKEN, BV_IX_REFERENCE, BV_IX_DATE, BV_IX_NUMBER, BV_IX_QUANTITY, BV_IX_URI
} bv_index_kind;

typedef struct {
    bv_index_kind kind;
    const char *param;        /* search parameter code, e.g. "identifier" */
    int32_t group;            /* same non-zero group = components of one composite value; 0 otherwise */
    /* STRING: norm = lower-cased, accents folded; text = original value
     * TOKEN: system (NULL if none), code, text = display/CodeableConcept.text for :text
     * REFERENCE: ref_type + ref_id for a local reference; text = reference as written
     *            (absolute/canonical URL when not local); ref_version optional
     * URI: text = the uri
     * DATE: lo..hi inclusive, ms since epoch (a partial date or Period is a range)
     * NUMBER: num = value, num_lo..num_hi = implicit precision range
     * QUANTITY: NUMBER fields plus system and code (unit code) */
    const char *system;
    const char *code;
    const char *text;
    const char *norm;
    const char *ref_type;
    const char *ref_id;
    const char *ref_version;
    int64_t lo, hi;
    double num, num_lo, num_hi;
} bv_index_row;

/* ---- Search as the store sees it: AND of ORs of predicates on index rows. ---- */
typedef enum {
    BV_OP_EQ, BV_OP_NE, BV_OP_GT, BV_OP_LT, BV_OP_GE, BV_OP_LE, BV_OP_SA, BV_OP_EB, BV_OP_AP, /* ordered values */
    BV_OP_STR_STARTS, BV_OP_STR_EXACT, BV_OP_STR_CONTAINS,        /* string */
    BV_OP_TOKEN, BV_OP_TOKEN_TEXT,                                  /* token: system/code match; :text */
    BV_OP_REF,                                                      /* reference: type/id or url */
    BV_OP_URI_EQ, BV_OP_URI_BELOW, BV_OP_URI_ABOVE,                 /* uri */
    BV_OP_MISSING                                                   /* :missing=true|false (see missing) */
} bv_op;

typedef struct bv_search bv_search;

typedef struct bv_pred_s {
    bv_index_kind kind;
    const char *param;        /* "_id" and "_lastUpdated" are columns of the resource, not index rows */
    bv_op op;
    bool negate;              /* :not (token): resources with no matching row (ne is per row: BV_OP_NE) */
    bool missing;             /* for BV_OP_MISSING: true = no row for param */
    /* TOKEN: system_given false = any system; system_given true and system NULL = no system (|code);
     *        code NULL = any code in system (system|) */
    bool system_given;
    const char *system;
    const char *code;
    const char *text;         /* STRING (already normalised unless EXACT), TOKEN_TEXT, URI, REF url */
    const char *ref_type;     /* REF: NULL = any type */
    const char *ref_id;
    int64_t lo, hi;           /* DATE: the parameter value's range (ms) */
    double num, num_lo, num_hi; /* NUMBER/QUANTITY: value and implicit range */
    const bv_search *chain;   /* REF: reference target must match this search (chaining), or NULL */
    const bv_search *has;     /* _has: a resource of has->type whose param `param` refers to this one matches has */
    const char *res_type;     /* non-NULL: only resources of this type match (compartments, system searches) */
    /* composite: the component predicates (param "<code>#<i>"), all matched by rows of one
     * value (same resource, same non-zero group); kind/op of the composite pred itself unused */
    const struct bv_pred_s *components;
    size_t n_components;
} bv_pred;

typedef struct {
    const bv_pred *preds;
    size_t n;                 /* OR over these */
} bv_or;

typedef struct {
    const char *param;        /* "_id", "_lastUpdated" or an index param */
    bv_index_kind kind;
    bool desc;
} bv_sort;

struct bv_search {
    const char *type;         /* NULL = all types (system search) */
    const char *const *types; /* with type NULL: restrict to these types (_type); NULL = all */
    size_t n_types;
    const bv_or *ands;
    size_t n_ands;
    const bv_sort *sort;      /* ties always broken by resource row order (stable) */
    size_t n_sort;
    size_t count;             /* page size; 0 = count only */
    size_t offset;
    int64_t max_seq;          /* > 0: ignore versions with seq > max_seq (stable paging snapshot) — best effort */
    bool want_total;
    int64_t total_cap;        /* > 0: count at most this many matches; beyond it the total is -1 (unknown) */
    bool total_narrow_only;   /* with total_cap > 0: no count (total -1) when the search is broad, i.e. each of
                               * its conditions has thousands of index entries (docs/search.md) */
    /* Keyset paging (bv_store_search_page): continue after this position, from a previous page's
     * next/prev cursor (opaque text; a malformed one is BV_EINVAL). The position is the sort keys'
     * values and the row id, so pages never repeat or skip a resource whose sort values did not
     * change, whatever is written meanwhile. */
    const char *cursor;
};

typedef struct {
    bv_record *recs;
    size_t n;
    int64_t total;            /* -1 when not counted (want_total false, or more than total_cap) */
    bool more;                /* more matches beyond this page, in the paging direction */
    bool backward;            /* the cursor was a "previous" one: more = there is a page before */
    const char *next;         /* cursor for the page after the last record (NULL when n == 0) */
    const char *prev;         /* cursor for the page before the first record (NULL when n == 0) */
} bv_search_page;

typedef struct {
    const char *type;         /* NULL = system history */
    const char *id;           /* NULL = type history */
    bool has_since;
    int64_t since_ms;         /* only versions with last_updated >= since */
    bool has_at;
    int64_t at_ms;            /* the version current at this instant, per resource */
    int64_t before_seq;       /* paging cursor: only seq < before_seq (0 = from newest) */
    size_t count;
} bv_history_query;

typedef struct {
    const char *type;
    const char *id;
    int64_t version;
    int64_t last_updated_ms;
    bool deleted;             /* writes a deletion version: current row marked deleted, index rows removed */
    const char *method;       /* "POST", "PUT", "PATCH", "DELETE" */
    const char *body;         /* JSON with id/meta already set; NULL for a deletion */
    size_t body_len;
    const bv_index_row *rows;
    size_t n_rows;
} bv_put;

int bv_store_open(const bv_store_options *opt, bv_store **out, char *err, size_t errlen);
void bv_store_close(bv_store *s);   /* stops the writer after the queued units; closes connections */

/* ---- Reads (any thread) ---- */
/* Current version. BV_ENOTFOUND if never existed; a deleted resource returns BV_OK with deleted=true. */
int bv_store_read(bv_store *s, bv_arena *a, const char *type, const char *id, bv_record *out);
int bv_store_vread(bv_store *s, bv_arena *a, const char *type, const char *id, int64_t version, bv_record *out);
/* Newest first (by seq). *total = number of matching versions when total != NULL. */
int bv_store_history(bv_store *s, bv_arena *a, const bv_history_query *q, bv_record **out, size_t *n,
                     int64_t *total);
/* Current, non-deleted resources matching q, in sort order. *total when want_total (else -1). */
int bv_store_search(bv_store *s, bv_arena *a, const bv_search *q, bv_record **out, size_t *n, int64_t *total);
/* One page of a search with keyset paging (q->cursor, q->count); q->offset is applied too. */
int bv_store_search_page(bv_store *s, bv_arena *a, const bv_search *q, bv_search_page *out);
/* Included resources: current, non-deleted resources referred to by `from` through `params`
 * (any reference parameter of the source's type when n_params is 0), optionally only of
 * target_type (_include); or, with rev set, resources of rev_type whose `params` refer to one of
 * `from` (_revinclude). At most limit records (limit + 1 are fetched so the caller can tell the
 * cap was hit). Records of `from` themselves may be returned: the caller deduplicates. */
typedef struct {
    const bv_record *from;
    size_t n_from;
    const char *const *params;
    size_t n_params;
    const char *target_type;  /* _include: only targets of this type; NULL = any */
    bool rev;
    const char *rev_type;     /* _revinclude: the referring type */
    size_t limit;
} bv_include_query;
int bv_store_include(bv_store *s, bv_arena *a, const bv_include_query *q, bv_record **out, size_t *n);
/* Highest seq committed and durable so far (for stable paging snapshots and change feeds). */
int64_t bv_store_last_seq(bv_store *s);
/* Stored versions (all types, deletions included) with after_seq < seq <= bv_store_last_seq(),
 * oldest first, at most limit. */
int bv_store_changes(bv_store *s, bv_arena *a, int64_t after_seq, size_t limit, bv_record **out, size_t *n);
/* Called on the syncer thread each time new versions become durable, with the new
 * bv_store_last_seq() and the resource types they have, as bits of bv_store_type_bit OR-ed together
 * (a listener interested in a few types need not wake for others; two types may share a bit). It
 * must return quickly and must not call bv_store_write (signal a thread of your own instead). At
 * most 8 listeners; returns BV_EINVAL past that. */
typedef void (*bv_store_commit_fn)(void *ctx, int64_t last_seq, uint64_t types);
uint64_t bv_store_type_bit(const char *type);
int bv_store_on_commit(bv_store *s, bv_store_commit_fn fn, void *ctx);
/* Small durable state of the server's own services (e.g. "care.cursor"). Value NUL-terminated,
 * in the arena. BV_ENOTFOUND when the key has no value. */
int bv_store_kv_get(bv_store *s, bv_arena *a, const char *key, const char **value);
/* False once a durable sync has failed: every write is refused (BV_EIO) until a restart. */
bool bv_store_healthy(bv_store *s);
/* What the durable-write path has done since the store opened (GET /healthz, docs/operations.md,
 * "Health"): group commits, the write units in them, and the syncer's fdatasyncs of the WAL
 * with their durations in a histogram of BV_SYNC_BUCKETS buckets, four per power of two (bucket 0:
 * under 16 us; the last: 2^24 us and over). Counters only grow; a benchmark takes the difference
 * of two readings. */
#define BV_SYNC_BUCKETS 82
typedef struct {
    uint64_t groups, units, commit_failures;
    uint64_t syncs;                     /* 0 with --sync normal */
    uint64_t sync_us_total, sync_us_max;
    uint64_t sync_hist[BV_SYNC_BUCKETS];
} bv_store_durability;
void bv_store_durability_get(bv_store *s, bv_store_durability *out);
/* The bucket of a duration, and a bucket's exclusive upper limit in us (UINT64_MAX: the last). */
int bv_store_sync_bucket(uint64_t us);
uint64_t bv_store_sync_bucket_limit_us(int bucket);
/* The limit of the bucket holding the q-th fraction (0 < q <= 1) of the counted syncs: at most a
 * quarter octave above the true quantile. 0 when nothing is counted. */
uint64_t bv_store_sync_quantile_us(const uint64_t hist[BV_SYNC_BUCKETS], double q);
/* PRAGMA integrity_check + Bevan's own invariants (current row = newest history row, index rows
 * only for live resources). On failure returns BV_EINTERNAL and a description in msg. */
int bv_store_check(bv_store *s, char *msg, size_t msglen);
/* Counts of current, non-deleted resources by type: calls fn for each type. */
int bv_store_count_by_type(bv_store *s, void (*fn)(void *ctx, const char *type, int64_t n), void *ctx);
/* Hot backup: copies one consistent snapshot of the database to out_path (a single SQLite file,
 * written as out_path.tmp, synced, then renamed) while writes go on. Restore by placing it as
 * DIR/bevan.db of a stopped server. On failure returns BV_EIO/BV_EINVAL and a message in err. */
int bv_store_backup(bv_store *s, const char *out_path, char *err, size_t errlen);

/* ---- Writes ---- */
typedef int (*bv_store_write_fn)(bv_store_txn *txn, void *ctx);
/* Runs fn on the writer thread in a group transaction, isolated from the group's other units (its
 * own SAVEPOINT, or none when it begins the transaction: then a ROLLBACK undoes only it), and
 * waits. fn returns 0 to keep its changes, or a non-zero value to roll them back; that value is
 * returned.
 * When fn returned 0, bv_store_write returns 0 only after the group is durably committed, or
 * BV_EIO when the commit failed (then none of fn's changes are stored: never acknowledge).
 * fn must do no I/O of its own and must not call bv_store_write. */
int bv_store_write(bv_store *s, bv_store_write_fn fn, void *ctx);
/* Options of a write (bv_store_write_opt, bv_store_write_async), OR-ed. */
enum {
    /* fn promises that every check that can fail comes before its first change, so that it fails
     * after a change only on a store error (I/O, disk full, memory). It then runs without a
     * SAVEPOINT of its own: a savepoint copies every page the unit touches, about a fifth of the
     * writer's time for a small create. If fn does fail after a change, the whole group's
     * transaction is rolled back and each of its other units gets BV_EIO (never half a unit). */
    BV_WRITE_CHECKS_FIRST = 1u,
};
int bv_store_write_opt(bv_store *s, bv_store_write_fn fn, void *ctx, unsigned opts);
/* The same write without waiting: returns once the unit is queued, and done(done_ctx, rc) is
 * called later, on the store's syncer thread, with what bv_store_write would have returned (after
 * the durable sync, or on failure). It must be short and must not write to the store; it may read
 * (a read there does not wait for the sync of groups committed after its own). A non-zero
 * return means nothing was queued and done is never called. */
typedef void (*bv_store_done_fn)(void *done_ctx, int rc);
int bv_store_write_async(bv_store *s, bv_store_write_fn fn, void *ctx, unsigned opts, bv_store_done_fn done,
                         void *done_ctx);

/* A thread about to prepare a write (parse, validate, extract) announces it; its next
 * bv_store_write consumes the announcement, and bv_store_unannounce withdraws it when no write
 * follows (harmless if already consumed). While announced writes are outstanding, the writer keeps
 * its group open for them (at most linger_us), so concurrent writers share one COMMIT and one sync
 * instead of one each. Never needed for correctness. */
void bv_store_announce(bv_store *s);
void bv_store_unannounce(bv_store *s);
#define BV_STORE_NO_LINGER UINT_MAX

/* Inside a unit: reads and searches see the unit's own changes. */
int bv_txn_read(bv_store_txn *t, bv_arena *a, const char *type, const char *id, bv_record *out);
int bv_txn_vread(bv_store_txn *t, bv_arena *a, const char *type, const char *id, int64_t version, bv_record *out);
int bv_txn_search(bv_store_txn *t, bv_arena *a, const bv_search *q, bv_record **out, size_t *n, int64_t *total);
/* Timestamp for this unit's versions: strictly greater than any earlier unit's. */
int64_t bv_txn_now_ms(bv_store_txn *t);
/* Store a new version: a history row, the current row replaced, the index rows replaced.
 * On failure the unit may hold part of the put: the unit must then return non-zero (rolled back). */
int bv_txn_put(bv_store_txn *t, const bv_put *p);
/* Inside a unit: set (value non-NULL) or remove (value NULL) a key/value pair; get sees the
 * unit's own changes. */
int bv_txn_kv_set(bv_store_txn *t, const char *key, const char *value);
int bv_txn_kv_get(bv_store_txn *t, bv_arena *a, const char *key, const char **value);

/* ---- Re-indexing (bevan reindex) ---- */
/* Inside a unit: up to max current, non-deleted resources after *cursor in storage order (start
 * with *cursor = 0); *cursor is advanced past the last one returned; *n = 0 at the end. */
int bv_txn_scan_current(bv_store_txn *t, bv_arena *a, int64_t *cursor, size_t max, bv_record **out, size_t *n);
/* Inside a unit: replaces the index rows of the current version of type/id (no new version, no
 * history row). BV_ENOTFOUND if there is no such live resource. */
int bv_txn_set_index(bv_store_txn *t, const char *type, const char *id, const bv_index_row *rows, size_t n_rows);
/* Recounts the kept token counts (ix_token_count) from the index rows in one statement: `bevan
 * reindex` ends with it, since a repair cannot trust counts kept beside rows it is replacing. */
int bv_txn_recount_index(bv_store_txn *t);

#endif
