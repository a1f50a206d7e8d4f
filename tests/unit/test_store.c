/* Store tests: versions and history, write units and group commit, search semantics per kind and
 * prefix, check and backup. Each test gets a fresh data folder under /tmp. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "bevan/store.h"
#include "store/internal.h"

#include <sqlite3.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- Fixtures ---- */
typedef struct {
    char dir[64];
    bv_store *s;
    bv_arena *a;
} fx;

static void rm_flat(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static bv_store *open_dir(const char *dir, bool read_only)
{
    bv_store_options o = {.dir = dir, .read_only = read_only};
    bv_store *s = NULL;
    char err[256];
    int rc = bv_store_open(&o, &s, err, sizeof err);
    if (rc) fprintf(stderr, "open: %s\n", err);
    return s;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/bevan-store-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    f->s = open_dir(f->dir, false);
    f->a = bv_arena_new(0);
    *state = f;
    return f->s ? 0 : -1;
}

static int teardown(void **state)
{
    fx *f = *state;
    bv_store_close(f->s);
    bv_arena_free(f->a);
    rm_flat(f->dir);
    free(f);
    return 0;
}

/* ---- Writing helpers ---- */
typedef struct {
    const char *type, *id, *body;
    const bv_index_row *rows;
    size_t n_rows;
    bool deleted;
    int64_t version;      /* 0: next version from the current row */
    int64_t last_updated; /* 0: bv_txn_now_ms */
    int fail_with;        /* returned after a successful put (rolls the unit back) */
    int64_t out_version, out_ms;
} put_ctx;

static int put_fn(bv_store_txn *t, void *vctx)
{
    put_ctx *c = vctx;
    bv_arena *a = bv_arena_new(0);
    bv_record cur;
    int64_t v = c->version;
    int rc = BV_OK;
    if (!v) {
        rc = bv_txn_read(t, a, c->type, c->id, &cur);
        if (rc == BV_OK) v = cur.version + 1;
        else if (rc == BV_ENOTFOUND) v = 1, rc = BV_OK;
        else goto out;
    }
    bv_put p = {.type = c->type,
                .id = c->id,
                .version = v,
                .last_updated_ms = c->last_updated ? c->last_updated : bv_txn_now_ms(t),
                .deleted = c->deleted,
                .method = c->deleted ? "DELETE" : v == 1 ? "POST" : "PUT",
                .body = c->deleted ? NULL : c->body,
                .body_len = c->deleted ? 0 : strlen(c->body),
                .rows = c->rows,
                .n_rows = c->n_rows};
    rc = bv_txn_put(t, &p);
    c->out_version = v;
    c->out_ms = p.last_updated_ms;
    if (!rc && c->fail_with) rc = c->fail_with;
out:
    bv_arena_free(a);
    return rc;
}

static int put(bv_store *s, const char *type, const char *id, const char *body, const bv_index_row *rows, size_t n)
{
    put_ctx c = {.type = type, .id = id, .body = body, .rows = rows, .n_rows = n};
    return bv_store_write(s, put_fn, &c);
}

static int del(bv_store *s, const char *type, const char *id)
{
    put_ctx c = {.type = type, .id = id, .deleted = true};
    return bv_store_write(s, put_fn, &c);
}

/* ---- Page-cache sizes (bv_store_options; bevan serve --writer-cache-mb / --reader-cache-mb) ---- */
static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = INT64_MIN;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int writer_cache_fn(bv_store_txn *t, void *ctx)
{
    *(int64_t *)ctx = query_int(t->c->db, "PRAGMA cache_size"); /* runs on the writer's connection */
    return BV_OK;
}

static void check_cache_sizes(const char *dir, unsigned writer_kb, unsigned reader_kb, int64_t want_w, int64_t want_r)
{
    bv_store_options o = {.dir = dir, .writer_cache_kb = writer_kb, .reader_cache_kb = reader_kb};
    bv_store *s = NULL;
    char err[256];
    assert_int_equal(bv_store_open(&o, &s, err, sizeof err), 0);
    int64_t w = 0;
    assert_int_equal(bv_store_write(s, writer_cache_fn, &w), 0);
    assert_int_equal(w, want_w); /* negative: KiB */
    int e = 0;
    bv__conn *c = bv__reader(s, &e);
    assert_non_null(c);
    assert_int_equal(query_int(c->db, "PRAGMA cache_size"), want_r);
    bv__reader_done(s, c);
    bv_store_close(s);
}

static void test_cache_sizes(void **state)
{
    fx *f = *state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/caches", f->dir);
    check_cache_sizes(dir, 0, 0, -16384, -4096); /* the defaults (docs/operations.md, "Memory") */
    check_cache_sizes(dir, 2048, 1024, -2048, -1024);
    rm_flat(dir);
}

/* ---- Basics ---- */
static void test_put_read_vread(void **state)
{
    fx *f = *state;
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "p1", &r), BV_ENOTFOUND);
    assert_int_equal(put(f->s, "Patient", "p1", "{\"v\":1.50}", NULL, 0), 0);
    assert_int_equal(put(f->s, "Patient", "p1", "{\"v\":2}", NULL, 0), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "p1", &r), 0);
    assert_string_equal(r.type, "Patient");
    assert_string_equal(r.id, "p1");
    assert_int_equal(r.version, 2);
    assert_string_equal(r.body, "{\"v\":2}");
    assert_int_equal(r.body_len, 7);
    assert_string_equal(r.method, "PUT");
    assert_false(r.deleted);
    int64_t seq2 = r.seq;
    assert_int_equal(bv_store_last_seq(f->s), seq2);
    assert_int_equal(bv_store_vread(f->s, f->a, "Patient", "p1", 1, &r), 0);
    assert_string_equal(r.body, "{\"v\":1.50}"); /* verbatim */
    assert_string_equal(r.method, "POST");
    assert_true(r.seq < seq2);
    assert_int_equal(bv_store_vread(f->s, f->a, "Patient", "p1", 3, &r), BV_ENOTFOUND);
    assert_int_equal(bv_store_read(f->s, f->a, "Observation", "p1", &r), BV_ENOTFOUND);

    /* delete */
    assert_int_equal(del(f->s, "Patient", "p1"), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "p1", &r), 0);
    assert_true(r.deleted);
    assert_null(r.body);
    assert_int_equal(r.version, 3);
    assert_string_equal(r.method, "DELETE");
    assert_int_equal(bv_store_vread(f->s, f->a, "Patient", "p1", 3, &r), 0);
    assert_true(r.deleted);
    assert_int_equal(bv_store_vread(f->s, f->a, "Patient", "p1", 2, &r), 0);
    assert_string_equal(r.body, "{\"v\":2}");
    /* re-create after delete continues the versions */
    assert_int_equal(put(f->s, "Patient", "p1", "{}", NULL, 0), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "p1", &r), 0);
    assert_int_equal(r.version, 4);
    assert_false(r.deleted);

    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

static void test_put_validation(void **state)
{
    fx *f = *state;
    put_ctx c = {.type = "Patient", .id = "v", .body = "{}", .version = 2};
    assert_int_equal(bv_store_write(f->s, put_fn, &c), BV_ECONFLICT); /* must be next version (1) */
    c.version = 1;
    assert_int_equal(bv_store_write(f->s, put_fn, &c), 0);
    assert_int_equal(bv_store_write(f->s, put_fn, &c), BV_ECONFLICT); /* version 1 exists */
    bv_index_row bad = {.kind = BV_IX_DATE, .param = "date", .lo = 5, .hi = 4};
    put_ctx d = {.type = "Patient", .id = "w", .body = "{}", .rows = &bad, .n_rows = 1};
    assert_int_equal(bv_store_write(f->s, put_fn, &d), BV_EINVAL);
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "w", &r), BV_ENOTFOUND);
}

static int reenter_fn(bv_store_txn *t, void *ctx)
{
    (void)t;
    return bv_store_write((bv_store *)ctx, put_fn, NULL);
}

static void test_reentrant_write(void **state)
{
    fx *f = *state;
    assert_int_equal(bv_store_write(f->s, reenter_fn, f->s), BV_EINTERNAL);
}

/* ---- History ---- */
static void test_history(void **state)
{
    fx *f = *state;
    int64_t ms[6];
    put_ctx c = {.type = "Patient", .id = "h", .body = "{\"n\":1}"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bv_store_write(f->s, put_fn, &c), 0);
        ms[i] = c.out_ms;
    }
    put_ctx o = {.type = "Observation", .id = "o", .body = "{}"};
    assert_int_equal(bv_store_write(f->s, put_fn, &o), 0);
    ms[3] = o.out_ms;
    put_ctx d = {.type = "Patient", .id = "h", .deleted = true};
    assert_int_equal(bv_store_write(f->s, put_fn, &d), 0);
    ms[4] = d.out_ms;
    for (int i = 1; i < 5; i++) assert_true(ms[i] > ms[i - 1]); /* strictly increasing */

    bv_record *rs;
    size_t n;
    int64_t total;
    bv_history_query q = {.type = "Patient", .id = "h", .count = 10};
    assert_int_equal(bv_store_history(f->s, f->a, &q, &rs, &n, &total), 0);
    assert_int_equal(n, 4);
    assert_int_equal(total, 4);
    assert_int_equal(rs[0].version, 4);
    assert_true(rs[0].deleted);
    assert_string_equal(rs[0].method, "DELETE");
    assert_int_equal(rs[3].version, 1);
    for (size_t i = 1; i < n; i++) assert_true(rs[i].seq < rs[i - 1].seq);

    /* system history */
    bv_history_query sys = {.count = 100};
    assert_int_equal(bv_store_history(f->s, f->a, &sys, &rs, &n, &total), 0);
    assert_int_equal(n, 5);
    assert_string_equal(rs[1].type, "Observation");
    /* type history */
    bv_history_query ty = {.type = "Observation", .count = 100};
    assert_int_equal(bv_store_history(f->s, f->a, &ty, &rs, &n, NULL), 0);
    assert_int_equal(n, 1);

    /* since */
    bv_history_query since = {.has_since = true, .since_ms = ms[2], .count = 100};
    assert_int_equal(bv_store_history(f->s, f->a, &since, &rs, &n, &total), 0);
    assert_int_equal(n, 3);
    assert_int_equal(total, 3);

    /* at: the version current at each instant */
    bv_history_query at = {.type = "Patient", .id = "h", .has_at = true, .at_ms = ms[1], .count = 10};
    assert_int_equal(bv_store_history(f->s, f->a, &at, &rs, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rs[0].version, 2);
    bv_history_query at_sys = {.has_at = true, .at_ms = ms[3], .count = 10};
    assert_int_equal(bv_store_history(f->s, f->a, &at_sys, &rs, &n, &total), 0);
    assert_int_equal(n, 2); /* h v3 and o v1 */
    assert_int_equal(total, 2);
    assert_string_equal(rs[0].type, "Observation");
    assert_int_equal(rs[1].version, 3);
    bv_history_query before = {.has_at = true, .at_ms = ms[0] - 1, .count = 10};
    assert_int_equal(bv_store_history(f->s, f->a, &before, &rs, &n, NULL), 0);
    assert_int_equal(n, 0);

    /* paging with the seq cursor; total ignores the cursor */
    bv_history_query pg = {.count = 2};
    size_t seen = 0;
    int64_t last = INT64_MAX;
    for (int page = 0; page < 5; page++) {
        assert_int_equal(bv_store_history(f->s, f->a, &pg, &rs, &n, &total), 0);
        assert_int_equal(total, 5);
        if (!n) break;
        for (size_t i = 0; i < n; i++) {
            assert_true(rs[i].seq < last);
            last = rs[i].seq;
        }
        seen += n;
        pg.before_seq = rs[n - 1].seq;
    }
    assert_int_equal(seen, 5);
    /* count 0: total only */
    bv_history_query c0 = {.type = "Patient"};
    assert_int_equal(bv_store_history(f->s, f->a, &c0, &rs, &n, &total), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 4);
}

/* ---- Write units: isolation inside a group, failed commit ---- */
typedef struct {
    atomic_int started, release;
} blocker_ctx;

/* Holds the writer until released, so the units queued meanwhile form the next group together. */
static int blocker_fn(bv_store_txn *t, void *vctx)
{
    (void)t;
    blocker_ctx *b = vctx;
    atomic_store(&b->started, 1);
    for (int i = 0; i < 10000 && !atomic_load(&b->release); i++) usleep(1000);
    return 0;
}

typedef struct {
    bv_store *s;
    bv_store_write_fn fn;
    void *ctx;
    unsigned opts;
    int rc;
} writer_arg;

static void *write_thread(void *varg)
{
    writer_arg *w = varg;
    w->rc = bv_store_write_opt(w->s, w->fn, w->ctx, w->opts);
    return NULL;
}

/* Runs the units as one group (after a blocker), in order, and returns when all are answered. */
static void run_as_group(bv_store *s, writer_arg *args, size_t n)
{
    blocker_ctx b = {.started = 0, .release = 0};
    writer_arg barg = {.s = s, .fn = blocker_fn, .ctx = &b};
    pthread_t bt, th[8];
    pthread_create(&bt, NULL, write_thread, &barg);
    while (!atomic_load(&b.started)) usleep(100); /* the writer is inside the blocker */
    for (size_t i = 0; i < n; i++) { /* one at a time, so the group runs them in this order */
        args[i].s = s;
        pthread_create(&th[i], NULL, write_thread, &args[i]);
        while (bv__store_pending(s) < i + 1) usleep(100);
    }
    atomic_store(&b.release, 1);
    pthread_join(bt, NULL);
    for (size_t i = 0; i < n; i++) pthread_join(th[i], NULL);
}

static void test_unit_isolation(void **state)
{
    fx *f = *state;
    uint64_t g0, u0, f0, g1, u1, f1;
    bv__store_stats(f->s, &g0, &u0, &f0);
    /* a begins the group's transaction (no savepoint: a ROLLBACK undoes only it); b has one */
    put_ctx a = {.type = "Patient", .id = "a", .body = "{}", .fail_with = BV_EPRECOND};
    put_ctx b = {.type = "Patient", .id = "b", .body = "{}"};
    put_ctx c = {.type = "Patient", .id = "c", .body = "{}", .fail_with = BV_EPRECOND};
    writer_arg args[3] = {{.fn = put_fn, .ctx = &a}, {.fn = put_fn, .ctx = &b}, {.fn = put_fn, .ctx = &c}};
    run_as_group(f->s, args, 3);
    bv__store_stats(f->s, &g1, &u1, &f1);
    assert_int_equal(u1 - u0, 4);
    assert_int_equal(g1 - g0, 2); /* blocker alone, then a, b and c together */
    assert_int_equal(f1 - f0, 0); /* a's rollback is not a failed commit */
    assert_int_equal(args[2].rc, BV_EPRECOND);
    bv_record rc_;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "c", &rc_), BV_ENOTFOUND);
    assert_int_equal(args[0].rc, BV_EPRECOND);
    assert_int_equal(args[1].rc, 0);
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "a", &r), BV_ENOTFOUND);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "b", &r), 0);
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

/* The seq the syncer publishes (the change feed's high mark) is the writer's own count of what it
 * committed, not read back: it must equal max(seq) of history, also when a unit of a group was
 * rolled back after inserting history rows whose seqs are then given out again. */
static int64_t history_max_seq(bv_store *s)
{
    int e = 0;
    bv__conn *c = bv__reader(s, &e);
    assert_non_null(c);
    int64_t v = query_int(c->db, "SELECT coalesce(max(seq), 0) FROM history");
    bv__reader_done(s, c);
    return v;
}

static void test_committed_seq(void **state)
{
    fx *f = *state;
    assert_int_equal(put(f->s, "Patient", "s1", "{}", NULL, 0), 0);
    int64_t base = history_max_seq(f->s);
    assert_true(base >= 1);
    assert_int_equal(atomic_load(&f->s->last_seq), base);

    /* b is rolled back to its savepoint after inserting seq base + 2 */
    put_ctx a = {.type = "Patient", .id = "s2", .body = "{}"};
    put_ctx b = {.type = "Patient", .id = "s3", .body = "{}", .fail_with = BV_EPRECOND};
    writer_arg args[2] = {{.fn = put_fn, .ctx = &a}, {.fn = put_fn, .ctx = &b}};
    run_as_group(f->s, args, 2);
    assert_int_equal(args[0].rc, 0);
    assert_int_equal(args[1].rc, BV_EPRECOND);
    assert_int_equal(history_max_seq(f->s), base + 1);
    assert_int_equal(atomic_load(&f->s->last_seq), base + 1);

    /* the first unit of a group fails alone (its ROLLBACK undoes only it), the next reuses its seq */
    put_ctx c = {.type = "Patient", .id = "s4", .body = "{}", .fail_with = BV_EPRECOND};
    put_ctx d = {.type = "Patient", .id = "s5", .body = "{}"};
    put_ctx e = {.type = "Patient", .id = "s6", .body = "{}", .fail_with = BV_EPRECOND};
    writer_arg args2[3] = {{.fn = put_fn, .ctx = &c}, {.fn = put_fn, .ctx = &d}, {.fn = put_fn, .ctx = &e}};
    run_as_group(f->s, args2, 3);
    assert_int_equal(args2[1].rc, 0);
    assert_int_equal(history_max_seq(f->s), base + 2);
    assert_int_equal(atomic_load(&f->s->last_seq), base + 2);

    /* a group whose every unit fails commits nothing and publishes nothing new */
    put_ctx g = {.type = "Patient", .id = "s7", .body = "{}", .fail_with = BV_EPRECOND};
    assert_int_equal(bv_store_write(f->s, put_fn, &g), BV_EPRECOND);
    assert_int_equal(atomic_load(&f->s->last_seq), base + 2);
    assert_int_equal(put(f->s, "Patient", "s8", "{}", NULL, 0), 0);
    assert_int_equal(history_max_seq(f->s), base + 3);
    assert_int_equal(atomic_load(&f->s->last_seq), base + 3);

    /* and after a restart the writer starts from what is stored */
    bv_store_close(f->s);
    f->s = open_dir(f->dir, false);
    assert_non_null(f->s);
    assert_int_equal(put(f->s, "Patient", "s9", "{}", NULL, 0), 0);
    assert_int_equal(atomic_load(&f->s->last_seq), base + 4);
    assert_int_equal(history_max_seq(f->s), base + 4);
}

/* This process's open descriptors whose file is named text (whole) or whose name contains it. */
static int descriptors_naming(const char *text, bool whole)
{
    char link[300], target[4096];
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0) continue;
        target[len] = 0;
        if (whole ? strcmp(target, text) == 0 : strstr(target, text) != NULL) n++;
    }
    closedir(d);
    return n;
}

/* This process's open descriptors of path. */
static int descriptors_of(const char *path)
{
    char real[4096];
    return realpath(path, real) ? descriptors_naming(real, true) : -1;
}

/* Rewrites (or, with version 1, writes) many resources with large bodies in one unit; then fails
 * with fail_with, having noted whether SQLite had spilled a statement journal to a file. */
typedef struct {
    int n, version, fail_with;
    const char *body;
    bool spilled;
} many_ctx;

static int many_fn(bv_store_txn *t, void *vctx)
{
    many_ctx *m = vctx;
    for (int i = 0; i < m->n; i++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", i);
        bv_put p = {.type = "Basic", .id = id, .version = m->version, .last_updated_ms = bv_txn_now_ms(t),
                    .method = m->version == 1 ? "POST" : "PUT", .body = m->body, .body_len = strlen(m->body)};
        int rc = bv_txn_put(t, &p);
        if (rc) return rc;
    }
    m->spilled = descriptors_naming("etilqs_", false) > 0; /* SQLite's temporary files */
    return m->fail_with;
}

/* A unit with its own savepoint that changes more than BV__STMT_JOURNAL_BYTES of existing pages:
 * its statement journal spills to a temporary file, and its rollback still restores every page,
 * while the group's other units are stored. */
static void test_savepoint_spill(void **state)
{
    fx *f = *state;
    enum { N = 2500 };
    char *old_body = malloc(4001), *new_body = malloc(4001);
    memset(old_body, 'a', 4000);
    memset(new_body, 'b', 4000);
    old_body[4000] = new_body[4000] = '\0';
    many_ctx first = {.n = N, .version = 1, .body = old_body};
    assert_int_equal(bv_store_write(f->s, many_fn, &first), 0);

    put_ctx a = {.type = "Patient", .id = "a", .body = "{}"};
    many_ctx big = {.n = N, .version = 2, .body = new_body, .fail_with = BV_EPRECOND};
    put_ctx c = {.type = "Patient", .id = "c", .body = "{}"};
    writer_arg args[3] = {{.fn = put_fn, .ctx = &a}, {.fn = many_fn, .ctx = &big}, {.fn = put_fn, .ctx = &c}};
    run_as_group(f->s, args, 3);
    assert_int_equal(args[0].rc, 0);
    assert_int_equal(args[1].rc, BV_EPRECOND);
    assert_int_equal(args[2].rc, 0);
    assert_true(big.spilled); /* the journal of N x 4 KB did not stay in memory */
    bv_record r;
    for (int i = 0; i < N; i += 97) {
        char id[16];
        snprintf(id, sizeof id, "m%d", i);
        assert_int_equal(bv_store_read(f->s, f->a, "Basic", id, &r), 0);
        assert_int_equal(r.version, 1);
        assert_true(r.body_len == 4000 && r.body[0] == 'a' && r.body[3999] == 'a');
    }
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "a", &r), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "c", &r), 0);
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    free(old_body);
    free(new_body);
}

/* Units without a savepoint of their own (BV_WRITE_CHECKS_FIRST): one failing before its first
 * change costs the group nothing; one failing after a change takes the whole group down with it
 * (BV_EIO for the others), and nothing of it is stored. */
static void test_checks_first_units(void **state)
{
    fx *f = *state;
    enum { CF = BV_WRITE_CHECKS_FIRST };
    uint64_t g0, u0, g1, u1;
    bv__store_stats(f->s, &g0, &u0, NULL);
    put_ctx a = {.type = "Patient", .id = "cf-a", .body = "{}"};
    put_ctx b = {.type = "Patient", .id = "cf-b", .body = "{}", .version = 7}; /* conflict: before any change */
    put_ctx c = {.type = "Patient", .id = "cf-c", .body = "{}"};
    writer_arg g[3] = {{.fn = put_fn, .ctx = &a, .opts = CF}, {.fn = put_fn, .ctx = &b, .opts = CF},
                       {.fn = put_fn, .ctx = &c, .opts = CF}};
    run_as_group(f->s, g, 3);
    bv__store_stats(f->s, &g1, &u1, NULL);
    assert_int_equal(g1 - g0, 2); /* the blocker, then the three together */
    assert_int_equal(g[0].rc, 0);
    assert_int_equal(g[1].rc, BV_ECONFLICT);
    assert_int_equal(g[2].rc, 0);
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "cf-a", &r), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "cf-b", &r), BV_ENOTFOUND);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "cf-c", &r), 0);

    put_ctx d = {.type = "Patient", .id = "cf-d", .body = "{}"};
    put_ctx e = {.type = "Patient", .id = "cf-e", .body = "{}", .fail_with = BV_EPRECOND}; /* after its put */
    put_ctx h = {.type = "Patient", .id = "cf-h", .body = "{}"};
    writer_arg g2[3] = {{.fn = put_fn, .ctx = &d, .opts = CF}, {.fn = put_fn, .ctx = &e, .opts = CF},
                        {.fn = put_fn, .ctx = &h}};
    run_as_group(f->s, g2, 3);
    assert_int_equal(g2[0].rc, BV_EIO);     /* rolled back with the broken unit: never acknowledged */
    assert_int_equal(g2[1].rc, BV_EPRECOND);
    assert_int_equal(g2[2].rc, 0);          /* the rest of the group runs in a new transaction */
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "cf-d", &r), BV_ENOTFOUND);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "cf-e", &r), BV_ENOTFOUND);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "cf-h", &r), 0);
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

/* A unit that leaves a deferred foreign-key violation: COMMIT itself fails. */
static int poison_fn(bv_store_txn *t, void *ctx)
{
    (void)ctx;
    return bv__txn_exec(t, "PRAGMA defer_foreign_keys=ON;"
                           "INSERT INTO ix_token (rid, ord, param, grp) VALUES (987654321, 0, 'x', 0)");
}

static void test_commit_failure_eio(void **state)
{
    fx *f = *state;
    uint64_t fails;
    put_ctx a = {.type = "Patient", .id = "lost", .body = "{}"};
    writer_arg args[2] = {{.fn = put_fn, .ctx = &a}, {.fn = poison_fn}};
    run_as_group(f->s, args, 2);
    assert_int_equal(args[0].rc, BV_EIO); /* its own changes were fine, but the group did not commit */
    assert_int_equal(args[1].rc, BV_EIO);
    bv__store_stats(f->s, NULL, NULL, &fails);
    assert_int_equal(fails, 1);
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "lost", &r), BV_ENOTFOUND);
    /* the writer goes on */
    assert_int_equal(put(f->s, "Patient", "after", "{}", NULL, 0), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "after", &r), 0);
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

/* Ends the group's transaction under the writer, as SQLite does by itself on some I/O errors. */
static int vanish_fn(bv_store_txn *t, void *ctx)
{
    int *put_rc = ctx;
    if (bv__txn_exec(t, "ROLLBACK") != 0) return BV_EINTERNAL;
    bv_put p = {.type = "Patient", .id = "v", .version = 1, .last_updated_ms = bv_txn_now_ms(t),
                .method = "POST", .body = "{}", .body_len = 2};
    *put_rc = bv_txn_put(t, &p); /* must not run (and commit) outside the group */
    return 0;
}

static void test_txn_vanished(void **state)
{
    fx *f = *state;
    int put_rc = 0;
    put_ctx a = {.type = "Patient", .id = "before", .body = "{}"};
    put_ctx c = {.type = "Patient", .id = "after", .body = "{}"};
    writer_arg args[3] = {{.fn = put_fn, .ctx = &a}, {.fn = vanish_fn, .ctx = &put_rc}, {.fn = put_fn, .ctx = &c}};
    run_as_group(f->s, args, 3);
    assert_int_equal(put_rc, BV_EIO);
    assert_int_equal(args[0].rc, BV_EIO); /* committed by nobody: never acknowledged */
    assert_int_equal(args[1].rc, BV_EIO);
    assert_int_equal(args[2].rc, 0);      /* the rest of the group runs in a new transaction */
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "before", &r), BV_ENOTFOUND);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "v", &r), BV_ENOTFOUND);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "after", &r), 0);
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

/* ---- Concurrency ---- */
#define N_THREADS 8
#define N_WRITES 200
#define IDS_PER_THREAD 20

typedef struct {
    bv_store *s;
    int t;
    int errors;
} conc_arg;

static void *conc_thread(void *varg)
{
    conc_arg *c = varg;
    bv_arena *a = bv_arena_new(0);
    char id[32], body[64];
    for (int i = 0; i < N_WRITES; i++) {
        bool shared = i % 10 == 0;
        if (shared) snprintf(id, sizeof id, "shared");
        else snprintf(id, sizeof id, "t%d-%d", c->t, i % IDS_PER_THREAD);
        snprintf(body, sizeof body, "{\"t\":%d,\"i\":%d}", c->t, i);
        bv_index_row row = {.kind = BV_IX_TOKEN, .param = "thread", .code = "x"};
        if (put(c->s, "Patient", id, body, &row, 1) != 0) c->errors++;
        /* reads on this thread's own connection, concurrently with the writer */
        bv_record r;
        if (bv_store_read(c->s, a, "Patient", id, &r) != 0 || r.version < 1) c->errors++;
        bv_arena_reset(a);
    }
    bv_arena_free(a);
    return NULL;
}

static void test_concurrency(void **state)
{
    fx *f = *state;
    pthread_t th[N_THREADS];
    conc_arg args[N_THREADS];
    uint64_t g0, u0, g1, u1;
    bv__store_stats(f->s, &g0, &u0, NULL);
    for (int i = 0; i < N_THREADS; i++) {
        args[i] = (conc_arg){.s = f->s, .t = i};
        pthread_create(&th[i], NULL, conc_thread, &args[i]);
    }
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    bv__store_stats(f->s, &g1, &u1, NULL);
    for (int i = 0; i < N_THREADS; i++) assert_int_equal(args[i].errors, 0);
    assert_int_equal(u1 - u0, N_THREADS * N_WRITES);
    print_message("concurrency: %llu units in %llu groups\n", (unsigned long long)(u1 - u0),
                  (unsigned long long)(g1 - g0));

    bv_record r;
    char id[32];
    for (int t = 0; t < N_THREADS; t++)
        for (int k = 1; k < IDS_PER_THREAD; k++) { /* k = 0 never written: i % 10 == 0 goes to shared */
            if (k % 10 == 0) continue;
            snprintf(id, sizeof id, "t%d-%d", t, k);
            assert_int_equal(bv_store_read(f->s, f->a, "Patient", id, &r), 0);
            assert_int_equal(r.version, N_WRITES / IDS_PER_THREAD);
        }
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "shared", &r), 0);
    assert_int_equal(r.version, N_THREADS * N_WRITES / 10);

    /* every version stored, timestamps strictly increasing in seq order */
    bv_record *rs;
    size_t n;
    int64_t total;
    bv_history_query q = {.count = N_THREADS * N_WRITES + 10};
    assert_int_equal(bv_store_history(f->s, f->a, &q, &rs, &n, &total), 0);
    assert_int_equal(n, N_THREADS * N_WRITES);
    for (size_t i = 1; i < n; i++) assert_true(rs[i].last_updated_ms < rs[i - 1].last_updated_ms);
    char msg[256];
    int rc = bv_store_check(f->s, msg, sizeof msg);
    if (rc) fprintf(stderr, "check: %s\n", msg);
    assert_int_equal(rc, 0);
}

/* The "bevan" VFS hands a commit's WAL frames to the kernel in one write (64 KiB pieces), not two
 * writes per page as SQLite issues them (walbuf.c). */
static void test_wal_frames_coalesced(void **state)
{
    fx *f = *state;
    bv_index_row rows[3] = {{.kind = BV_IX_TOKEN, .param = "identifier", .code = "x"},
                            {.kind = BV_IX_STRING, .param = "name", .norm = "smith"},
                            {.kind = BV_IX_DATE, .param = "birthdate", .lo = 0, .hi = 86399999}};
    char id[32];
    unsigned long long before = bv__vfs_wal_writes(), kicks_before = bv__vfs_wal_kicks();
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "c%d", i);
        assert_int_equal(put(f->s, "Patient", id, "{\"resourceType\":\"Patient\"}", rows, 3), 0);
    }
    unsigned long long writes = bv__vfs_wal_writes() - before;
    print_message("wal: %llu writes for 200 commits\n", writes);
    /* each commit touches ~12 pages (resources, history, three index tables and their indexes):
     * ~24 writes each through SQLite's own VFS; one here, on the WAL's own descriptor */
    assert_int_equal(writes, 200);
    /* and each commit started the writeback of its frames before the syncer's fdatasync */
    assert_int_equal(bv__vfs_wal_kicks() - kicks_before, 200);
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "c199", &r), 0); /* readers see the frames */
}

/* Under a steady stream of commits the WAL must wrap (start again from its beginning) instead of
 * growing: a growing WAL makes every sync commit file-system metadata too (sqlite.c, wal_wrap). */
typedef struct {
    bv_store *s;
    int t, n, errors;
    atomic_int *finished;
} wal_arg;

static void *wal_thread(void *varg)
{
    wal_arg *w = varg;
    char id[32], body[600];
    memset(body, 0, sizeof body);
    for (int i = 0; i < w->n; i++) {
        snprintf(id, sizeof id, "w%d-%d", w->t, i);
        int len = snprintf(body, sizeof body, "{\"t\":%d,\"i\":%d,\"pad\":\"", w->t, i);
        while (len < (int)sizeof body - 4) body[len++] = 'x';
        body[len++] = '"';
        body[len++] = '}';
        body[len] = 0;
        bv_index_row rows[2] = {{.kind = BV_IX_TOKEN, .param = "identifier", .code = id},
                                {.kind = BV_IX_STRING, .param = "name", .norm = id}};
        if (put(w->s, "Patient", id, body, rows, 2) != 0) w->errors++;
    }
    atomic_fetch_add(w->finished, 1);
    return NULL;
}

/* Writers that announced themselves share one COMMIT: the writer lingers for them. */
typedef struct {
    bv_store *s;
    pthread_barrier_t *all_announced;
    int t;
    bool writes;
    int rc;
} announce_arg;

static void *announce_thread(void *varg)
{
    announce_arg *w = varg;
    bv_store_announce(w->s);
    pthread_barrier_wait(w->all_announced);
    if (w->writes) {
        usleep((useconds_t)w->t * 30000); /* one after another: without lingering, a group each */
        char id[16];
        snprintf(id, sizeof id, "an%d", w->t);
        w->rc = put(w->s, "Patient", id, "{}", NULL, 0);
    }
    bv_store_unannounce(w->s); /* consumed by the write, or withdrawn */
    return NULL;
}

static void test_announced_writes_share_a_commit(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/bevan-linger-XXXXXX");
    assert_non_null(mkdtemp(dir));
    /* a bound far above any scheduling delay: the group must not close before the last arrives */
    bv_store_options o = {.dir = dir, .linger_us = 5000000};
    bv_store *s = NULL;
    char err[256];
    assert_int_equal(bv_store_open(&o, &s, err, sizeof err), 0);
    enum { WRITERS = 4, THREADS = 5 }; /* the fifth announces and then does not write */
    pthread_barrier_t all;
    pthread_barrier_init(&all, NULL, THREADS);
    pthread_t th[THREADS];
    announce_arg args[THREADS];
    uint64_t g0, u0, g1, u1;
    bv__store_stats(s, &g0, &u0, NULL);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (announce_arg){.s = s, .all_announced = &all, .t = i, .writes = i < WRITERS};
        pthread_create(&th[i], NULL, announce_thread, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&all);
    bv__store_stats(s, &g1, &u1, NULL);
    for (int i = 0; i < WRITERS; i++) assert_int_equal(args[i].rc, 0);
    assert_int_equal(u1 - u0, WRITERS);
    assert_int_equal(g1 - g0, 1);
    bv_arena *a = bv_arena_new(4096);
    bv_record r;
    assert_int_equal(bv_store_read(s, a, "Patient", "an3", &r), 0);
    bv_arena_free(a);
    /* A lone write right after that group of four is not held back waiting for as many units as
     * the last group had (nothing is announced): it commits at once, not after the 5 s linger. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(put(s, "Patient", "lone", "{}", NULL, 0), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 3);
    uint64_t g2;
    bv__store_stats(s, &g2, NULL, NULL);
    assert_int_equal(g2 - g1, 1);
    bv_store_close(s);
    rm_flat(dir);
}

/* A new folder /tmp/bevan-TAG-XXXXXX in dir, and the path of NAME inside it in file. */
static void temp_dir_with(char *dir, size_t dir_len, const char *tag, char *file, size_t file_len, const char *name)
{
    snprintf(dir, dir_len, "/tmp/bevan-%s-XXXXXX", tag);
    assert_non_null(mkdtemp(dir));
    snprintf(file, file_len, "%s/%s", dir, name);
}

static void test_wal_wraps(void **state)
{
    (void)state;
    char dir[64], wal[96];
    temp_dir_with(dir, sizeof dir, "wal", wal, sizeof wal, "bevan.db-wal");
    bv_store_options o = {.dir = dir, .ckpt_pages = 64};
    bv_store *s = NULL;
    char err[256];
    assert_int_equal(bv_store_open(&o, &s, err, sizeof err), 0);
    unsigned long long trickles_before = bv__vfs_trickles();
    enum { THREADS = 4, PER_THREAD = 1500 };
    pthread_t th[THREADS];
    wal_arg args[THREADS];
    atomic_int finished = 0;
    for (int i = 0; i < THREADS; i++) {
        args[i] = (wal_arg){.s = s, .t = i, .n = PER_THREAD, .finished = &finished};
        pthread_create(&th[i], NULL, wal_thread, &args[i]);
    }
    off_t biggest = 0;
    for (int polls = 0; polls < 300000; polls++) { /* bounded: 10 minutes */
        struct stat st;
        if (stat(wal, &st) == 0 && st.st_size > biggest) biggest = st.st_size;
        if (atomic_load(&finished) == THREADS) break;
        usleep(2000);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) assert_int_equal(args[i].errors, 0);
    /* The WAL header's checkpoint sequence number (bytes 12-15, big-endian) counts the times
     * SQLite restarted the log from its beginning. Without the wrap it never restarts under a
     * steady stream of commits (6,000 commits of ~6 pages, ~150 MB of frames). How large the WAL
     * grows between restarts depends on how much CPU the checkpointer thread gets (10-16 MB
     * alone, up to 40 MB beside a parallel test run), so the size is printed, not asserted. */
    unsigned char hdr[16] = {0};
    int fd = open(wal, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
    close(fd);
    uint32_t restarts = (uint32_t)hdr[12] << 24 | (uint32_t)hdr[13] << 16 | (uint32_t)hdr[14] << 8 | hdr[15];
    print_message("wal: largest %lld bytes, restarted %u times\n", (long long)biggest, restarts);
    assert_true(biggest > 0);
    assert_true(restarts >= 3);
    /* the checkpoints copied megabytes into the database file: its writeback was started early */
    print_message("database file writeback started %llu times\n", bv__vfs_trickles() - trickles_before);
    assert_true(bv__vfs_trickles() - trickles_before >= 2);
    char msg[256];
    assert_int_equal(bv_store_check(s, msg, sizeof msg), 0);
    char db[96], real_wal[4096];
    snprintf(db, sizeof db, "%s/bevan.db", dir);
    assert_non_null(realpath(wal, real_wal));
    assert_true(descriptors_naming(real_wal, false) >= 2); /* SQLite's, the syncer's, the writer's */
    bv_store_close(s);
    assert_int_equal(descriptors_of(db), 0); /* the early writeback's descriptor too */
    assert_int_equal(descriptors_naming(real_wal, false), 0); /* (SQLite deletes the WAL at close) */
    rm_flat(dir);
}

/* Whether another process sees a lock on SQLite's SHARED byte range of path (the process itself
 * cannot: its own POSIX locks never conflict with it). */
static bool shared_lock_seen(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0x40000002, .l_len = 510};
        _exit(fd >= 0 && fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK ? 0 : 1);
    }
    int status = 0;
    assert_true(pid > 0 && waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The VFS's descriptor for early writeback is closed only with the file's last connection: closing
 * any descriptor of a file drops every POSIX lock the process holds on it (walbuf.c). */
static void test_writeback_keeps_locks(void **state)
{
    (void)state;
    char dir[64], db[96];
    temp_dir_with(dir, sizeof dir, "locks", db, sizeof db, "bevan.db");
    bv_store_options o = {.dir = dir};
    bv_store *s = NULL;
    char err[256], body[6001], id[32];
    assert_int_equal(bv_store_open(&o, &s, err, sizeof err), 0);
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = 0;
    memcpy(body, "{\"p\":\"", 6);
    memcpy(body + sizeof body - 3, "\"}", 2);
    for (int i = 0; i < 250; i++) { /* about 3,000 WAL frames: fewer than start a checkpoint pass */
        snprintf(id, sizeof id, "k%d", i);
        assert_int_equal(put(s, "Patient", id, body, NULL, 0), 0);
    }
    assert_true(shared_lock_seen(db)); /* the store's connections hold SQLite's SHARED lock */

    /* A second connection through the same VFS copies the WAL into the file: the writeback starts. */
    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open_v2(db, &other, SQLITE_OPEN_READWRITE, "bevan"), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "SELECT count(*) FROM resources", NULL, NULL, NULL), SQLITE_OK);
    unsigned long long before = bv__vfs_trickles();
    int log = 0, copied = 0;
    assert_int_equal(sqlite3_wal_checkpoint_v2(other, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied), SQLITE_OK);
    print_message("checkpoint: %d of %d frames copied\n", copied, log);
    assert_true(bv__vfs_trickles() > before);
    assert_int_equal(sqlite3_close(other), SQLITE_OK);
    assert_true(shared_lock_seen(db)); /* closing it left the store's locks in place */
    assert_true(descriptors_of(db) > 0);

    bv_store_close(s);
    assert_false(shared_lock_seen(db));
    assert_int_equal(descriptors_of(db), 0); /* the writeback descriptor went with the last one */
    rm_flat(dir);
}

/* The syncer's check that its descriptor is still the WAL SQLite writes (it reopens otherwise). */
static void test_same_file(void **state)
{
    (void)state;
    char dir[64], path[96], other[96];
    temp_dir_with(dir, sizeof dir, "same", path, sizeof path, "a");
    snprintf(other, sizeof other, "%s/b", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0);
    assert_int_equal(bv__same_file(path, fd), 1);
    int fd2 = open(other, O_CREAT | O_RDWR, 0600);
    assert_true(fd2 >= 0);
    assert_int_equal(bv__same_file(path, fd2), 0); /* another file */
    assert_int_equal(rename(other, path), 0);        /* path now names the other file */
    assert_int_equal(bv__same_file(path, fd), 0);
    assert_int_equal(bv__same_file(path, fd2), 1);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(bv__same_file(path, fd2), 0); /* gone */
    close(fd);
    close(fd2);
    rm_flat(dir);
}

/* The durable-write statistics of GET /healthz: every acknowledged write was counted in a group,
 * the groups' syncs were timed, and the histogram's buckets partition the durations. */
static void test_durability_stats(void **state)
{
    fx *f = *state;
    bv_store_durability d0, d1;
    bv_store_durability_get(f->s, &d0);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        assert_int_equal(put(f->s, "Patient", id, "{}", NULL, 0), 0);
    }
    bv_store_durability_get(f->s, &d1);
    assert_int_equal(d1.units - d0.units, 5);
    assert_true(d1.groups - d0.groups >= 1 && d1.groups - d0.groups <= 5);
    assert_true(d1.syncs - d0.syncs >= 1 && d1.syncs - d0.syncs <= d1.groups - d0.groups);
    assert_true(d1.sync_us_max > 0 && d1.sync_us_max * d1.syncs >= d1.sync_us_total);
    uint64_t p50 = bv_store_sync_quantile_us(d1.sync_hist, 0.5);
    assert_true(p50 > 0 && p50 <= bv_store_sync_quantile_us(d1.sync_hist, 0.99));

    /* buckets: under 16 us, then four per power of two, each [limit of the previous, its limit) */
    assert_int_equal(bv_store_sync_bucket(0), 0);
    assert_int_equal(bv_store_sync_bucket(15), 0);
    assert_int_equal(bv_store_sync_bucket(16), 1);
    assert_int_equal(bv_store_sync_bucket_limit_us(1), 20);
    assert_int_equal(bv_store_sync_bucket(20), 2);
    assert_int_equal(bv_store_sync_bucket(31), 4);
    assert_int_equal(bv_store_sync_bucket(32), 5);
    assert_int_equal(bv_store_sync_bucket_limit_us(BV_SYNC_BUCKETS - 2), (uint64_t)1 << 24);
    assert_int_equal(bv_store_sync_bucket((uint64_t)1 << 24), BV_SYNC_BUCKETS - 1);
    assert_int_equal(bv_store_sync_bucket(UINT64_MAX), BV_SYNC_BUCKETS - 1);
    assert_true(bv_store_sync_bucket_limit_us(BV_SYNC_BUCKETS - 1) == UINT64_MAX);
    for (uint64_t us = 1; us < ((uint64_t)1 << 25); us = us * 9 / 8 + 1) {
        int b = bv_store_sync_bucket(us);
        assert_true(us < bv_store_sync_bucket_limit_us(b));
        if (b > 0) assert_true(us >= bv_store_sync_bucket_limit_us(b - 1));
    }
    uint64_t hist[BV_SYNC_BUCKETS] = {0};
    assert_int_equal(bv_store_sync_quantile_us(hist, 0.5), 0);
    hist[bv_store_sync_bucket(100)] = 98; /* [96, 112) */
    hist[bv_store_sync_bucket(5000)] = 2; /* [4096, 5120) */
    assert_int_equal(bv_store_sync_quantile_us(hist, 0.5), 112);
    assert_int_equal(bv_store_sync_quantile_us(hist, 0.98), 112);
    assert_int_equal(bv_store_sync_quantile_us(hist, 0.99), 5120);
}

/* ---- Search ---- */
static int64_t ms_at(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000;
}

#define DAY(y, m, d) ms_at(y, m, d, 0, 0, 0), ms_at(y, m, d, 0, 0, 0) + 86400000 - 1
#define YEAR(y) ms_at(y, 1, 1, 0, 0, 0), ms_at(y + 1, 1, 1, 0, 0, 0) - 1

static const char *GENDER = "http://hl7.org/fhir/administrative-gender";
static const char *LOINC = "http://loinc.org";
static const char *UCUM = "http://unitsofmeasure.org";

static void load_search_data(bv_store *s)
{
    int64_t d1lo = ms_at(1980, 5, 1, 0, 0, 0), d1hi = d1lo + 86400000 - 1;
    int64_t y80lo = ms_at(1980, 1, 1, 0, 0, 0), y80hi = ms_at(1981, 1, 1, 0, 0, 0) - 1;
    int64_t t3 = ms_at(1990, 1, 1, 10, 0, 0);
    bv_index_row p1[] = {
        {.kind = BV_IX_STRING, .param = "name", .norm = "smith", .text = "Smith"},
        {.kind = BV_IX_TOKEN, .param = "gender", .system = GENDER, .code = "female"},
        {.kind = BV_IX_DATE, .param = "birthdate", .lo = d1lo, .hi = d1hi},
        {.kind = BV_IX_TOKEN, .param = "identifier", .system = "urn:mrn", .code = "100%", .text = "MRN 100%"},
    };
    bv_index_row p2[] = {
        {.kind = BV_IX_STRING, .param = "name", .norm = "smyth", .text = "Smyth"},
        {.kind = BV_IX_TOKEN, .param = "gender", .system = GENDER, .code = "male"},
        {.kind = BV_IX_DATE, .param = "birthdate", .lo = y80lo, .hi = y80hi},
    };
    bv_index_row p3[] = {
        {.kind = BV_IX_STRING, .param = "name", .norm = "100%_off", .text = "100%_Off"},
        {.kind = BV_IX_TOKEN, .param = "gender", .code = "other"}, /* no system */
        {.kind = BV_IX_DATE, .param = "birthdate", .lo = t3, .hi = t3 + 999},
    };
    bv_index_row p4[] = {{.kind = BV_IX_STRING, .param = "name", .norm = "100xxoff", .text = "100xxOff"}};
    bv_index_row p5[] = {{.kind = BV_IX_STRING, .param = "name", .norm = "100_x", .text = "100_X"}};
    assert_int_equal(put(s, "Patient", "p1", "{\"id\":\"p1\"}", p1, 4), 0);
    assert_int_equal(put(s, "Patient", "p2", "{\"id\":\"p2\"}", p2, 3), 0);
    assert_int_equal(put(s, "Patient", "p3", "{\"id\":\"p3\"}", p3, 3), 0);
    assert_int_equal(put(s, "Patient", "p4", "{\"id\":\"p4\"}", p4, 1), 0);
    assert_int_equal(put(s, "Patient", "p5", "{\"id\":\"p5\"}", p5, 1), 0);

    bv_index_row o1[] = {
        {.kind = BV_IX_REFERENCE, .param = "subject", .ref_type = "Patient", .ref_id = "p1", .text = "Patient/p1"},
        {.kind = BV_IX_TOKEN, .param = "code", .system = LOINC, .code = "1234", .text = "Body Weight"},
        {.kind = BV_IX_QUANTITY, .param = "value-quantity", .num = 70, .num_lo = 69.5, .num_hi = 70.5, .system = UCUM, .code = "kg"},
        {.kind = BV_IX_NUMBER, .param = "probability", .num = 0.5, .num_lo = 0.45, .num_hi = 0.55},
    };
    bv_index_row o2[] = {
        {.kind = BV_IX_REFERENCE, .param = "subject", .ref_type = "Patient", .ref_id = "p2", .text = "Patient/p2"},
        {.kind = BV_IX_TOKEN, .param = "code", .system = LOINC, .code = "5678", .text = "Glucose 5%_x"},
        {.kind = BV_IX_QUANTITY, .param = "value-quantity", .num = 100.5, .num_lo = 100.45, .num_hi = 100.55, .system = UCUM, .code = "mg"},
        {.kind = BV_IX_NUMBER, .param = "probability", .num = 100, .num_lo = 99.5, .num_hi = 100.5},
        {.kind = BV_IX_REFERENCE, .param = "based-on", .text = "http://other.org/fhir/ServiceRequest/9"},
    };
    bv_index_row o3[] = {
        {.kind = BV_IX_REFERENCE, .param = "subject", .ref_type = "Patient", .ref_id = "p1", .text = "Patient/p1"},
        {.kind = BV_IX_TOKEN, .param = "code", .system = LOINC, .code = "5678", .text = "Glucose"},
        {.kind = BV_IX_NUMBER, .param = "probability", .num = 1000, .num_lo = 999.5, .num_hi = 1000.5},
    };
    assert_int_equal(put(s, "Observation", "o1", "{\"id\":\"o1\"}", o1, 4), 0);
    assert_int_equal(put(s, "Observation", "o2", "{\"id\":\"o2\"}", o2, 5), 0);
    assert_int_equal(put(s, "Observation", "o3", "{\"id\":\"o3\"}", o3, 3), 0);

    bv_index_row v1[] = {{.kind = BV_IX_URI, .param = "url", .text = "http://acme.org/fhir/ValueSet/abc"}};
    bv_index_row v2[] = {{.kind = BV_IX_URI, .param = "url", .text = "http://acme.org/fhir/ValueSet/abc/sub"}};
    bv_index_row v3[] = {{.kind = BV_IX_URI, .param = "url", .text = "http://other.org/x"}};
    assert_int_equal(put(s, "ValueSet", "v1", "{}", v1, 1), 0);
    assert_int_equal(put(s, "ValueSet", "v2", "{}", v2, 1), 0);
    assert_int_equal(put(s, "ValueSet", "v3", "{}", v3, 1), 0);
}

static const bv_sort BY_ID = {.param = "_id"};

/* Ids of the matches, comma-separated, in result order (by _id unless q sorts). */
static const char *ids(fx *f, bv_search q)
{
    if (!q.n_sort) {
        q.sort = &BY_ID;
        q.n_sort = 1;
    }
    if (!q.count) q.count = 100;
    bv_record *rs = NULL;
    size_t n = 0;
    int rc = bv_store_search(f->s, f->a, &q, &rs, &n, NULL);
    if (rc) return bv_arena_printf(f->a, "error %d", rc);
    bv_buf b;
    bv_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        if (i) bv_buf_putc(&b, ',');
        bv_buf_puts(&b, rs[i].id);
    }
    const char *out = bv_arena_strdup(f->a, bv_buf_cstr(&b));
    bv_buf_free(&b);
    return out;
}

/* One-predicate search. */
static const char *ids1(fx *f, const char *type, bv_pred p)
{
    bv_or g = {.preds = &p, .n = 1};
    bv_search q = {.type = type, .ands = &g, .n_ands = 1};
    return ids(f, q);
}

static bv_pred date_pred(const char *param, bv_op op, int64_t lo, int64_t hi)
{
    return (bv_pred){.kind = BV_IX_DATE, .param = param, .op = op, .lo = lo, .hi = hi};
}

static void test_search_token_string(void **state)
{
    fx *f = *state;
    load_search_data(f->s);
    bv_pred p = {.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .code = "female"};
    assert_string_equal(ids1(f, "Patient", p), "p1");
    p = (bv_pred){.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .system_given = true, .system = GENDER, .code = "male"};
    assert_string_equal(ids1(f, "Patient", p), "p2");
    p = (bv_pred){.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .system_given = true, .code = "male"};
    assert_string_equal(ids1(f, "Patient", p), ""); /* |male: only rows without a system */
    p.code = "other";
    assert_string_equal(ids1(f, "Patient", p), "p3");
    p = (bv_pred){.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .system_given = true, .system = GENDER};
    assert_string_equal(ids1(f, "Patient", p), "p1,p2"); /* system| */
    p = (bv_pred){.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .code = "female", .negate = true};
    assert_string_equal(ids1(f, "Patient", p), "p2,p3,p4,p5"); /* :not includes resources without a value */
    p = (bv_pred){.kind = BV_IX_TOKEN, .param = "identifier", .op = BV_OP_TOKEN, .code = "100%"};
    assert_string_equal(ids1(f, "Patient", p), "p1");
    p.code = "100_";
    assert_string_equal(ids1(f, "Patient", p), "");
    /* :text, case-insensitive contains, metacharacters literal */
    p = (bv_pred){.kind = BV_IX_TOKEN, .param = "code", .op = BV_OP_TOKEN_TEXT, .text = "body"};
    assert_string_equal(ids1(f, "Observation", p), "o1");
    p.text = "GLUCOSE";
    assert_string_equal(ids1(f, "Observation", p), "o2,o3");
    p.text = "5%_";
    assert_string_equal(ids1(f, "Observation", p), "o2");
    p.text = "e%";
    assert_string_equal(ids1(f, "Observation", p), "");
    /* :missing */
    p = (bv_pred){.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_MISSING, .missing = true};
    assert_string_equal(ids1(f, "Patient", p), "p4,p5");
    p.missing = false;
    assert_string_equal(ids1(f, "Patient", p), "p1,p2,p3");
    p = (bv_pred){.kind = BV_IX_DATE, .param = "birthdate", .op = BV_OP_MISSING, .missing = true};
    assert_string_equal(ids1(f, "Patient", p), "p4,p5");

    /* string: starts (default), contains, exact; % and _ are never wildcards */
    bv_pred s = {.kind = BV_IX_STRING, .param = "name", .op = BV_OP_STR_STARTS, .text = "smi"};
    assert_string_equal(ids1(f, "Patient", s), "p1");
    s.text = "sm";
    assert_string_equal(ids1(f, "Patient", s), "p1,p2");
    s.text = "100%";
    assert_string_equal(ids1(f, "Patient", s), "p3");
    s.text = "100_";
    assert_string_equal(ids1(f, "Patient", s), "p5");
    s.text = "100";
    assert_string_equal(ids1(f, "Patient", s), "p3,p4,p5");
    s.text = "";
    assert_string_equal(ids1(f, "Patient", s), "p1,p2,p3,p4,p5");
    s.text = "smithers";
    assert_string_equal(ids1(f, "Patient", s), "");
    s.op = BV_OP_STR_CONTAINS;
    s.text = "0%_";
    assert_string_equal(ids1(f, "Patient", s), "p3");
    s.text = "%";
    assert_string_equal(ids1(f, "Patient", s), "p3");
    s.text = "_";
    assert_string_equal(ids1(f, "Patient", s), "p3,p5");
    s.text = "x";
    assert_string_equal(ids1(f, "Patient", s), "p4,p5");
    s.text = "myt";
    assert_string_equal(ids1(f, "Patient", s), "p2");
    s.op = BV_OP_STR_EXACT;
    s.text = "Smith";
    assert_string_equal(ids1(f, "Patient", s), "p1");
    s.text = "smith";
    assert_string_equal(ids1(f, "Patient", s), "");
    s.text = "100%_Off";
    assert_string_equal(ids1(f, "Patient", s), "p3");

    /* _id */
    bv_pred id = {.param = "_id", .op = BV_OP_TOKEN, .code = "p2"};
    assert_string_equal(ids1(f, "Patient", id), "p2");
    id.negate = true;
    assert_string_equal(ids1(f, "Patient", id), "p1,p3,p4,p5");

    /* OR within a group, AND across groups, negative and direct terms in an OR */
    bv_pred or1[] = {{.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .code = "female"},
                     {.kind = BV_IX_STRING, .param = "name", .op = BV_OP_STR_STARTS, .text = "smy"}};
    bv_or g1 = {.preds = or1, .n = 2};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .ands = &g1, .n_ands = 1}), "p1,p2");
    bv_pred or2[] = {{.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .code = "male", .negate = true},
                     {.param = "_id", .op = BV_OP_TOKEN, .code = "p2"}};
    bv_or g2 = {.preds = or2, .n = 2};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .ands = &g2, .n_ands = 1}), "p1,p2,p3,p4,p5");
    bv_pred a1 = {.kind = BV_IX_STRING, .param = "name", .op = BV_OP_STR_STARTS, .text = "sm"};
    bv_pred a2 = date_pred("birthdate", BV_OP_EQ, YEAR(1980));
    bv_pred a3 = {.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .code = "male"};
    bv_or ands[] = {{.preds = &a1, .n = 1}, {.preds = &a2, .n = 1}, {.preds = &a3, .n = 1}};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .ands = ands, .n_ands = 3}), "p2");
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .ands = ands, .n_ands = 2}), "p1,p2");
    bv_or empty = {.preds = NULL, .n = 0};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .ands = &empty, .n_ands = 1}), "");
    /* unknown kind/op combination is rejected */
    bv_pred bad = {.kind = BV_IX_STRING, .param = "name", .op = BV_OP_GT, .text = "x"};
    assert_string_equal(ids1(f, "Patient", bad), "error -2");
}

static void test_search_dates(void **state)
{
    fx *f = *state;
    load_search_data(f->s);
    /* stored: p1 = day 1980-05-01, p2 = year 1980, p3 = 1990-01-01T10:00:00 (1 s), p4/p5 none */
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EQ, YEAR(1980))), "p1,p2");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EQ, DAY(1980, 5, 1))), "p1");
    /* ne is per value: p4/p5 have no birth date and do not match */
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_NE, DAY(1980, 5, 1))), "p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_GT, DAY(1980, 5, 1))), "p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_LT, DAY(1980, 5, 1))), "p2");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_GE, DAY(1980, 5, 1))), "p1,p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_LE, DAY(1980, 5, 1))), "p1,p2");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_SA, DAY(1980, 5, 1))), "p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EB, DAY(1980, 5, 1))), "");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EB, YEAR(1990))), "p1,p2");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_AP, DAY(1980, 5, 1))), "p1,p2");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_GE, YEAR(1981))), "p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_LE, YEAR(1979))), "");

    /* boundaries, to the millisecond */
    int64_t d1lo = ms_at(1980, 5, 1, 0, 0, 0), d1hi = d1lo + 86400000 - 1;
    int64_t t3 = ms_at(1990, 1, 1, 10, 0, 0);
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_GT, d1lo, d1hi - 1)), "p1,p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_GT, d1lo, d1hi)), "p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_LT, d1lo + 1, d1hi)), "p1,p2");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_GE, d1lo, d1hi)), "p1,p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_GE, d1lo + 1, d1hi)), "p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_SA, t3 - 1000, t3 - 1)), "p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_SA, t3 - 1000, t3)), "");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EB, t3 + 1000, t3 + 2000)), "p1,p2,p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EB, t3 + 999, t3 + 2000)), "p1,p2");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EQ, t3, t3 + 999)), "p3");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_EQ, t3, t3 + 998)), "");
    assert_string_equal(ids1(f, "Patient", date_pred("birthdate", BV_OP_AP, t3 + 999, t3 + 5000)), "p3");

    /* _lastUpdated is a point on the resource row */
    bv_record r2, r4;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "p2", &r2), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "p4", &r4), 0);
    int64_t lu2 = r2.last_updated_ms, lu4 = r4.last_updated_ms;
    assert_string_equal(ids1(f, "Patient", date_pred("_lastUpdated", BV_OP_GT, lu2, lu2)), "p3,p4,p5");
    assert_string_equal(ids1(f, "Patient", date_pred("_lastUpdated", BV_OP_GE, lu2, lu2)), "p2,p3,p4,p5");
    assert_string_equal(ids1(f, "Patient", date_pred("_lastUpdated", BV_OP_LT, lu2, lu2)), "p1");
    assert_string_equal(ids1(f, "Patient", date_pred("_lastUpdated", BV_OP_EQ, lu2, lu4)), "p2,p3,p4");
    assert_string_equal(ids1(f, "Patient", date_pred("_lastUpdated", BV_OP_NE, lu2, lu4)), "p1,p5");
    assert_string_equal(ids1(f, "Patient", date_pred("_lastUpdated", BV_OP_LE, lu2, lu2)), "p1,p2");
}

/* Column col of the first row of sql, run on the store's file through a connection of its own. */
static const char *raw_column(fx *f, const char *sql, int col, char *buf, size_t len)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->s->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, col));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

static void test_search_number_quantity_uri_ref(void **state)
{
    fx *f = *state;
    load_search_data(f->s);
    /* number: o1 0.5, o2 100, o3 1000 */
    bv_pred n = {.kind = BV_IX_NUMBER, .param = "probability", .op = BV_OP_EQ, .num = 100, .num_lo = 99.5, .num_hi = 100.5};
    assert_string_equal(ids1(f, "Observation", n), "o2");
    n.op = BV_OP_NE;
    assert_string_equal(ids1(f, "Observation", n), "o1,o3");
    n.op = BV_OP_GT;
    assert_string_equal(ids1(f, "Observation", n), "o3");
    n.op = BV_OP_GE;
    assert_string_equal(ids1(f, "Observation", n), "o2,o3");
    n.op = BV_OP_LT;
    assert_string_equal(ids1(f, "Observation", n), "o1");
    n.op = BV_OP_LE;
    assert_string_equal(ids1(f, "Observation", n), "o1,o2");
    n.op = BV_OP_SA;
    assert_string_equal(ids1(f, "Observation", n), "o3");
    n.op = BV_OP_EB;
    assert_string_equal(ids1(f, "Observation", n), "o1");
    n = (bv_pred){.kind = BV_IX_NUMBER, .param = "probability", .op = BV_OP_AP, .num = 95, .num_lo = 94.5, .num_hi = 95.5};
    assert_string_equal(ids1(f, "Observation", n), "o2"); /* within 10% */
    n = (bv_pred){.kind = BV_IX_NUMBER, .param = "probability", .op = BV_OP_EQ, .num = 0.5, .num_lo = 0.45, .num_hi = 0.55};
    assert_string_equal(ids1(f, "Observation", n), "o1");
    n = (bv_pred){.kind = BV_IX_NUMBER, .param = "probability", .op = BV_OP_EQ, .num = 100.5, .num_lo = 100.5, .num_hi = 100.5};
    assert_string_equal(ids1(f, "Observation", n), ""); /* exact, no implicit range */
    n.num = n.num_lo = n.num_hi = 1000;
    assert_string_equal(ids1(f, "Observation", n), "o3");

    /* quantity: o1 70 kg, o2 100.5 mg */
    bv_pred q = {.kind = BV_IX_QUANTITY, .param = "value-quantity", .op = BV_OP_EQ, .num = 70, .num_lo = 69.5, .num_hi = 70.5, .system = UCUM, .code = "kg"};
    assert_string_equal(ids1(f, "Observation", q), "o1");
    q.code = "mg";
    assert_string_equal(ids1(f, "Observation", q), "");
    q = (bv_pred){.kind = BV_IX_QUANTITY, .param = "value-quantity", .op = BV_OP_GT, .num = 50};
    assert_string_equal(ids1(f, "Observation", q), "o1,o2");
    q = (bv_pred){.kind = BV_IX_QUANTITY, .param = "value-quantity", .op = BV_OP_LE, .num = 100.5, .system = UCUM, .code = "mg"};
    assert_string_equal(ids1(f, "Observation", q), "o2");
    q.op = BV_OP_LT;
    assert_string_equal(ids1(f, "Observation", q), "");
    q = (bv_pred){.kind = BV_IX_QUANTITY, .param = "value-quantity", .op = BV_OP_GE, .num = 70, .system = "", .code = ""};
    assert_string_equal(ids1(f, "Observation", q), "o1,o2"); /* empty system/code = any */

    /* uri */
    bv_pred u = {.kind = BV_IX_URI, .param = "url", .op = BV_OP_URI_EQ, .text = "http://acme.org/fhir/ValueSet/abc"};
    assert_string_equal(ids1(f, "ValueSet", u), "v1");
    u.op = BV_OP_URI_BELOW;
    u.text = "http://acme.org/fhir/";
    assert_string_equal(ids1(f, "ValueSet", u), "v1,v2");
    u.text = "http://acme.org/fhir/ValueSet/abc%";
    assert_string_equal(ids1(f, "ValueSet", u), "");
    u.op = BV_OP_URI_ABOVE;
    u.text = "http://acme.org/fhir/ValueSet/abc/sub/deeper";
    assert_string_equal(ids1(f, "ValueSet", u), "v1,v2");
    u.text = "http://acme.org/fhir/ValueSet/abc";
    assert_string_equal(ids1(f, "ValueSet", u), "v1");

    /* reference */
    bv_pred r = {.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .ref_type = "Patient", .ref_id = "p1"};
    assert_string_equal(ids1(f, "Observation", r), "o1,o3");
    r.ref_type = NULL;
    assert_string_equal(ids1(f, "Observation", r), "o1,o3");
    r.ref_type = "Group";
    assert_string_equal(ids1(f, "Observation", r), "");
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "based-on", .op = BV_OP_REF, .text = "http://other.org/fhir/ServiceRequest/9"};
    assert_string_equal(ids1(f, "Observation", r), "o2");
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_MISSING, .missing = true};
    assert_string_equal(ids1(f, "Observation", r), "");

    /* chain: Observation?subject:Patient.name=smyth, subject.gender=female */
    bv_pred cp = {.kind = BV_IX_STRING, .param = "name", .op = BV_OP_STR_STARTS, .text = "smyth"};
    bv_or cg = {.preds = &cp, .n = 1};
    bv_search chain = {.type = "Patient", .ands = &cg, .n_ands = 1};
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .ref_type = "Patient", .chain = &chain};
    assert_string_equal(ids1(f, "Observation", r), "o2");
    cp = (bv_pred){.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .code = "female"};
    assert_string_equal(ids1(f, "Observation", r), "o1,o3");

    /* _has: Patient?_has:Observation:subject:code=5678 */
    bv_pred hp = {.kind = BV_IX_TOKEN, .param = "code", .op = BV_OP_TOKEN, .code = "5678"};
    bv_or hg = {.preds = &hp, .n = 1};
    bv_search has = {.type = "Observation", .ands = &hg, .n_ands = 1};
    bv_pred h = {.kind = BV_IX_REFERENCE, .param = "subject", .has = &has};
    assert_string_equal(ids1(f, "Patient", h), "p1,p2");
    hp.code = "1234";
    assert_string_equal(ids1(f, "Patient", h), "p1");
    hp.code = "0000";
    assert_string_equal(ids1(f, "Patient", h), "");
    /* _has inside a chain: Observation?subject.(_has:Observation:subject:code=1234) */
    hp.code = "1234";
    bv_or hcg = {.preds = &h, .n = 1};
    bv_search chain_has = {.type = "Patient", .ands = &hcg, .n_ands = 1};
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .chain = &chain_has};
    assert_string_equal(ids1(f, "Observation", r), "o1,o3");

    /* deleting the target breaks the chain and the _has, and removes its index rows */
    assert_int_equal(del(f->s, "Observation", "o1"), 0);
    assert_string_equal(ids1(f, "Patient", h), "");
    assert_string_equal(ids1(f, "Observation", r), "");
    cp = (bv_pred){.kind = BV_IX_STRING, .param = "name", .op = BV_OP_STR_STARTS, .text = "smyth"};
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .ref_type = "Patient", .chain = &chain};
    assert_string_equal(ids1(f, "Observation", r), "o2");
    assert_int_equal(del(f->s, "Patient", "p2"), 0);
    assert_string_equal(ids1(f, "Observation", r), "");
    bv_pred any = {.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_MISSING, .missing = false};
    assert_string_equal(ids1(f, "Patient", any), "p1,p3");
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    /* schema 5: "Type/id" as written is not stored as text; other forms are, and match by it */
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_MISSING, .missing = true};
    bv_index_row o4[] = {
        {.kind = BV_IX_REFERENCE, .param = "subject", .ref_type = "Patient", .ref_id = "p1", .ref_version = "2",
         .text = "Patient/p1/_history/2"},
        {.kind = BV_IX_REFERENCE, .param = "based-on", .ref_type = "ServiceRequest", .ref_id = "9",
         .text = "http://other.org/fhir/ServiceRequest/9"},
    };
    assert_int_equal(put(f->s, "Observation", "o4", "{\"id\":\"o4\"}", o4, 2), 0);
    assert_string_equal(ids1(f, "Observation", r), "");
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "based-on", .op = BV_OP_REF, .text = "http://other.org/fhir/ServiceRequest/9"};
    assert_string_equal(ids1(f, "Observation", r), "o2,o4");
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .text = "Patient/p1/_history/2"};
    assert_string_equal(ids1(f, "Observation", r), "o4");
    r = (bv_pred){.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .ref_type = "Patient", .ref_id = "p1"};
    assert_string_equal(ids1(f, "Observation", r), "o3,o4"); /* o1 was deleted above */
    char buf[256];
    assert_string_equal(raw_column(f, "SELECT group_concat(coalesce(text, '-'), ' ') FROM (SELECT text FROM"
                                      " ix_reference WHERE param IN ('subject', 'based-on') ORDER BY rid, ord)",
                                   0, buf, sizeof buf),
                        "- http://other.org/fhir/ServiceRequest/9 - Patient/p1/_history/2 http://other.org/fhir/ServiceRequest/9");
    /* the partial text index still serves a search by text */
    assert_non_null(strstr(raw_column(f, "EXPLAIN QUERY PLAN SELECT x.rid FROM ix_reference x WHERE x.param = 'based-on'"
                                         " AND x.text = 'http://other.org/fhir/ServiceRequest/9'",
                                      3, buf, sizeof buf),
                           "ix_reference_url"));
    /* a sort on a reference rebuilds the text: Patient/p1 (o3), Patient/p1/_history/2, Patient/p2 */
    bv_sort by_subject = {.param = "subject", .kind = BV_IX_REFERENCE};
    assert_string_equal(ids(f, (bv_search){.type = "Observation", .sort = &by_subject, .n_sort = 1}), "o3,o4,o2");
}

/* Closes the store, runs sql on its file (to make it look like a store written by an older
 * schema), and opens it again, which runs the migrations since. */
static void reopen_after(fx *f, const char *sql)
{
    char path[512];
    snprintf(path, sizeof path, "%s", f->s->path);
    bv_store_close(f->s);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->s = open_dir(f->dir, false);
    assert_non_null(f->s);
}

/* Schema 4 -> 5 on open: the reference text index becomes partial, and rows written before keep
 * their text (still correct); searches by text and by type/id find old and new rows alike. */
static void test_migration_reference_text(void **state)
{
    fx *f = *state;
    bv_index_row old_rows[] = {
        {.kind = BV_IX_REFERENCE, .param = "subject", .ref_type = "Patient", .ref_id = "p1", .text = "Patient/p1"}};
    assert_int_equal(put(f->s, "Observation", "old", "{\"id\":\"old\"}", old_rows, 1), 0);
    /* what a schema-4 store looks like: the full index, and the text of every reference row */
    reopen_after(f, "DROP INDEX ix_reference_url;"
                    "CREATE INDEX ix_reference_url ON ix_reference(param, text, rid);"
                    "UPDATE ix_reference SET text = ref_type || '/' || ref_id WHERE text IS NULL;"
                    "PRAGMA user_version = 4;");
    bv_index_row new_rows[] = {
        {.kind = BV_IX_REFERENCE, .param = "subject", .ref_type = "Patient", .ref_id = "p1", .text = "Patient/p1"}};
    assert_int_equal(put(f->s, "Observation", "new", "{\"id\":\"new\"}", new_rows, 1), 0);
    char buf[256], version[16];
    snprintf(version, sizeof version, "%d", BV__SCHEMA_VERSION);
    assert_string_equal(raw_column(f, "SELECT user_version FROM pragma_user_version", 0, buf, sizeof buf), version);
    assert_non_null(strstr(raw_column(f, "SELECT sql FROM sqlite_master WHERE name = 'ix_reference_url'", 0, buf, sizeof buf),
                           "WHERE text IS NOT NULL"));
    assert_string_equal(raw_column(f, "SELECT group_concat(coalesce(text, '-'), ' ') FROM ix_reference", 0, buf, sizeof buf),
                        "Patient/p1 -");
    bv_pred r = {.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .ref_type = "Patient", .ref_id = "p1"};
    assert_string_equal(ids1(f, "Observation", r), "new,old");
    bv_sort by_subject = {.param = "subject", .kind = BV_IX_REFERENCE};
    bv_sort keys[] = {by_subject, {.param = "_id"}};
    assert_string_equal(ids(f, (bv_search){.type = "Observation", .sort = keys, .n_sort = 2}), "new,old");
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

/* The raw history.body column of each version of Patient/b, in version order ("-" for NULL). */
static const char *raw_history_bodies(fx *f, char *buf, size_t len)
{
    return raw_column(f, "SELECT group_concat(coalesce(body, '-'), ' ') FROM (SELECT body FROM history"
                         " WHERE type = 'Patient' AND id = 'b' ORDER BY version)",
                      0, buf, len);
}

/* Schema 6: a body is stored once. The current version's history row has none (it is read from
 * resources); a version moves its body into history when it is replaced or deleted. Every read
 * path still returns every version's body. */
static void test_body_stored_once(void **state)
{
    fx *f = *state;
    char buf[256];
    assert_int_equal(put(f->s, "Patient", "b", "{\"v\":1}", NULL, 0), 0);
    assert_string_equal(raw_history_bodies(f, buf, sizeof buf), "-");
    assert_int_equal(put(f->s, "Patient", "b", "{\"v\":2}", NULL, 0), 0);
    assert_string_equal(raw_history_bodies(f, buf, sizeof buf), "{\"v\":1} -");
    assert_int_equal(del(f->s, "Patient", "b"), 0);
    assert_string_equal(raw_history_bodies(f, buf, sizeof buf), "{\"v\":1} {\"v\":2} -");
    assert_int_equal(put(f->s, "Patient", "b", "{\"v\":4}", NULL, 0), 0);
    assert_string_equal(raw_history_bodies(f, buf, sizeof buf), "{\"v\":1} {\"v\":2} - -");

    const char *want[] = {"{\"v\":1}", "{\"v\":2}", NULL, "{\"v\":4}"};
    bv_record r;
    for (int v = 1; v <= 4; v++) {
        assert_int_equal(bv_store_vread(f->s, f->a, "Patient", "b", v, &r), 0);
        if (want[v - 1]) assert_string_equal(r.body, want[v - 1]);
        else assert_null(r.body);
    }
    bv_record *rs;
    size_t n;
    bv_history_query q = {.type = "Patient", .id = "b", .count = 10};
    assert_int_equal(bv_store_history(f->s, f->a, &q, &rs, &n, NULL), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        if (want[rs[i].version - 1]) assert_string_equal(rs[i].body, want[rs[i].version - 1]);
        else assert_null(rs[i].body);
    }
    bv_history_query at = {.type = "Patient", .id = "b", .has_at = true, .at_ms = INT64_MAX / 2, .count = 10};
    assert_int_equal(bv_store_history(f->s, f->a, &at, &rs, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rs[0].body, "{\"v\":4}");
    /* the change feed carries each version's body */
    assert_int_equal(bv_store_changes(f->s, f->a, 0, 10, &rs, &n), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        if (want[i]) assert_string_equal(rs[i].body, want[i]);
        else assert_null(rs[i].body);
    }
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

/* Schema 5 -> 6 on open: the current versions' second copies in history are dropped, and the
 * replaced versions keep theirs. */
static void test_migration_body_once(void **state)
{
    fx *f = *state;
    assert_int_equal(put(f->s, "Patient", "b", "{\"v\":1}", NULL, 0), 0);
    assert_int_equal(put(f->s, "Patient", "b", "{\"v\":2}", NULL, 0), 0);
    /* what a schema-5 store looks like: every version's body in history as well */
    reopen_after(f, "UPDATE history SET body = (SELECT r.body FROM resources r WHERE r.seq = history.seq)"
                    " WHERE body IS NULL AND deleted = 0;"
                    "PRAGMA user_version = 5;");
    char buf[256];
    assert_string_equal(raw_history_bodies(f, buf, sizeof buf), "{\"v\":1} -");
    bv_record r;
    assert_int_equal(bv_store_vread(f->s, f->a, "Patient", "b", 2, &r), 0);
    assert_string_equal(r.body, "{\"v\":2}");
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

static void test_search_sort_paging(void **state)
{
    fx *f = *state;
    load_search_data(f->s);
    bv_sort by_name = {.param = "name", .kind = BV_IX_STRING};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = &by_name, .n_sort = 1}), "p3,p5,p4,p1,p2");
    by_name.desc = true;
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = &by_name, .n_sort = 1}), "p2,p1,p4,p5,p3");
    /* ties: p4 and p5 both lack the value */
    bv_sort by_missing_then_id[] = {{.param = "gender", .kind = BV_IX_TOKEN}};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = by_missing_then_id, .n_sort = 1}), "p1,p2,p3,p4,p5");
    by_missing_then_id[0].desc = true;
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = by_missing_then_id, .n_sort = 1}), "p3,p2,p1,p5,p4");
    bv_sort by_birth = {.param = "birthdate", .kind = BV_IX_DATE};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = &by_birth, .n_sort = 1}), "p2,p1,p3,p4,p5");
    by_birth.desc = true; /* missing values still last; ties in the key's direction */
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = &by_birth, .n_sort = 1}), "p3,p2,p1,p5,p4");
    bv_sort by_gender[] = {{.param = "gender", .kind = BV_IX_TOKEN}, {.param = "_id", .desc = true}};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = by_gender, .n_sort = 2}), "p1,p2,p3,p5,p4");
    bv_sort by_num = {.param = "probability", .kind = BV_IX_NUMBER, .desc = true};
    assert_string_equal(ids(f, (bv_search){.type = "Observation", .sort = &by_num, .n_sort = 1}), "o3,o2,o1");
    bv_sort by_lu = {.param = "_lastUpdated", .desc = true};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .sort = &by_lu, .n_sort = 1}), "p5,p4,p3,p2,p1");

    /* paging is stable and covers everything exactly once */
    by_birth.desc = false;
    bv_buf all;
    bv_buf_init(&all, 0);
    for (size_t off = 0; off < 6; off += 2) {
        const char *page = ids(f, (bv_search){.type = "Patient", .sort = &by_birth, .n_sort = 1, .count = 2, .offset = off});
        if (*page && all.len) bv_buf_putc(&all, ',');
        bv_buf_puts(&all, page);
    }
    assert_string_equal(bv_buf_cstr(&all), "p2,p1,p3,p4,p5");
    bv_buf_free(&all);

    /* total, count-only, system search with _type */
    bv_record *rs;
    size_t n;
    int64_t total;
    bv_search q = {.type = "Patient", .count = 2, .want_total = true, .sort = &BY_ID, .n_sort = 1};
    assert_int_equal(bv_store_search(f->s, f->a, &q, &rs, &n, &total), 0);
    assert_int_equal(n, 2);
    assert_int_equal(total, 5);
    assert_string_equal(rs[0].body, "{\"id\":\"p1\"}");
    q.count = 0;
    assert_int_equal(bv_store_search(f->s, f->a, &q, &rs, &n, &total), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 5);
    q.want_total = false;
    q.count = 10;
    assert_int_equal(bv_store_search(f->s, f->a, &q, &rs, &n, &total), 0);
    assert_int_equal(total, -1);
    const char *types[] = {"Observation", "ValueSet"};
    assert_string_equal(ids(f, (bv_search){.types = types, .n_types = 2}), "o1,o2,o3,v1,v2,v3");
    assert_string_equal(ids(f, (bv_search){.types = types, .n_types = 0}), "");
    bv_search sys = {.count = 100, .want_total = true};
    assert_int_equal(bv_store_search(f->s, f->a, &sys, &rs, &n, &total), 0);
    assert_int_equal(total, 11);

    /* max_seq: resources created after the snapshot are left out */
    int64_t snap = bv_store_last_seq(f->s);
    assert_int_equal(put(f->s, "Patient", "p6", "{}", NULL, 0), 0);
    assert_int_equal(put(f->s, "Patient", "p1", "{\"id\":\"p1\",\"v\":2}", NULL, 0), 0);
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .max_seq = snap}), "p1,p2,p3,p4,p5");
    assert_string_equal(ids(f, (bv_search){.type = "Patient"}), "p1,p2,p3,p4,p5,p6");

}

static void count_cb(void *ctx, const char *type, int64_t n)
{
    int64_t *c = ctx;
    if (strcmp(type, "Observation") == 0) c[0] = n;
    else if (strcmp(type, "Patient") == 0) c[1] = n;
    else if (strcmp(type, "ValueSet") == 0) c[2] = n;
}

static void test_count_by_type(void **state)
{
    fx *f = *state;
    load_search_data(f->s);
    assert_int_equal(del(f->s, "Observation", "o3"), 0);
    int64_t c[3] = {0};
    assert_int_equal(bv_store_count_by_type(f->s, count_cb, c), 0);
    assert_int_equal(c[0], 2);
    assert_int_equal(c[1], 5);
    assert_int_equal(c[2], 3);
}

/* Large ORs (the parser allows 20,000 preds) and oversized searches. */
static void test_search_large(void **state)
{
    fx *f = *state;
    load_search_data(f->s);
    enum { N = 1200 };
    bv_pred *ps = bv_arena_calloc(f->a, N, sizeof *ps);
    for (int i = 0; i < N; i++) {
        ps[i] = (bv_pred){.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN,
                          .code = bv_arena_printf(f->a, "code%d", i)};
    }
    ps[N - 1].code = "male";
    ps[N / 2].code = "other";
    bv_or g = {.preds = ps, .n = N};
    assert_string_equal(ids(f, (bv_search){.type = "Patient", .ands = &g, .n_ands = 1}), "p2,p3");
    /* too many AND groups: SQLite's limits answer, as BV_ETOOBIG */
    enum { M = 20000 };
    bv_or *gs = bv_arena_calloc(f->a, M, sizeof *gs);
    for (int i = 0; i < M; i++) gs[i] = (bv_or){.preds = &ps[i % N], .n = 1};
    bv_record *rs;
    size_t n;
    bv_search big = {.type = "Patient", .ands = gs, .n_ands = M, .count = 10};
    assert_int_equal(bv_store_search(f->s, f->a, &big, &rs, &n, NULL), BV_ETOOBIG);
}

/* ---- Inside a unit ---- */
static int txn_search_fn(bv_store_txn *t, void *ctx)
{
    int *found = ctx;
    bv_arena *a = bv_arena_new(0);
    bv_index_row row = {.kind = BV_IX_TOKEN, .param = "identifier", .system = "urn:x", .code = "42"};
    bv_put p = {.type = "Patient", .id = "new", .version = 1, .last_updated_ms = bv_txn_now_ms(t),
                .method = "POST", .body = "{}", .body_len = 2, .rows = &row, .n_rows = 1};
    int rc = bv_txn_put(t, &p);
    if (rc) goto out;
    bv_pred pr = {.kind = BV_IX_TOKEN, .param = "identifier", .op = BV_OP_TOKEN, .system_given = true, .system = "urn:x", .code = "42"};
    bv_or g = {.preds = &pr, .n = 1};
    bv_search q = {.type = "Patient", .ands = &g, .n_ands = 1, .count = 10, .want_total = true};
    bv_record *rs;
    size_t n;
    int64_t total;
    rc = bv_txn_search(t, a, &q, &rs, &n, &total);
    if (!rc && n == 1 && total == 1 && strcmp(rs[0].id, "new") == 0) *found = 1;
    bv_record r;
    if (!rc && bv_txn_read(t, a, "Patient", "new", &r) == 0 && r.version == 1) *found += 1;
    /* the same unit's timestamp does not move */
    if (bv_txn_now_ms(t) != p.last_updated_ms) *found = -100;
out:
    bv_arena_free(a);
    return rc;
}

static void test_txn_read_search(void **state)
{
    fx *f = *state;
    int found = 0;
    assert_int_equal(bv_store_write(f->s, txn_search_fn, &found), 0);
    assert_int_equal(found, 2);
}

/* ---- Check, reopen, read-only, backup ---- */
static int exec_fn(bv_store_txn *t, void *ctx) { return bv__txn_exec(t, ctx); }

/* bad_sql breaks an invariant: bevan check must fail naming want; repair_sql mends it again. */
static void check_catches(fx *f, char *bad_sql, const char *want, char *repair_sql)
{
    char msg[256];
    assert_int_equal(bv_store_write(f->s, exec_fn, bad_sql), 0);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), BV_EINTERNAL);
    assert_non_null(strstr(msg, want));
    assert_int_equal(bv_store_write(f->s, exec_fn, repair_sql), 0);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

static void test_check_detects(void **state)
{
    fx *f = *state;
    char msg[256];
    load_search_data(f->s);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    /* the current version's body is stored once, in resources (schema 6) */
    check_catches(f, "UPDATE history SET body = '{}' WHERE id = 'p1'", "p1", "UPDATE history SET body = NULL WHERE id = 'p1'");
    /* a replaced version must keep its body in history */
    assert_int_equal(put(f->s, "Patient", "p1", "{\"id\":\"p1\",\"v\":2}", NULL, 0), 0);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    check_catches(f, "UPDATE history SET body = NULL WHERE id = 'p1' AND version = 1", "replaced version",
                  "UPDATE history SET body = '{}' WHERE id = 'p1' AND version = 1");
    /* a deleted version has no body anywhere */
    assert_int_equal(del(f->s, "Patient", "p3"), 0);
    assert_int_equal(put(f->s, "Patient", "p3", "{\"id\":\"p3\"}", NULL, 0), 0); /* re-created */
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    check_catches(f, "UPDATE history SET body = '{}' WHERE id = 'p3' AND deleted = 1", "deleted version",
                  "UPDATE history SET body = NULL WHERE id = 'p3' AND deleted = 1");
    /* a current row whose seq names no history row: the next put refuses rather than lose the body */
    assert_int_equal(bv_store_write(f->s, exec_fn, "UPDATE resources SET seq = seq + 1000000 WHERE id = 'p4'"), 0);
    assert_int_equal(put(f->s, "Patient", "p4", "{\"id\":\"p4\",\"v\":2}", NULL, 0), BV_EINTERNAL);
    assert_int_equal(bv_store_write(f->s, exec_fn, "UPDATE resources SET seq = seq - 1000000 WHERE id = 'p4'"), 0);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    assert_int_equal(bv_store_write(f->s, exec_fn, "DELETE FROM history WHERE id = 'p2'"), 0);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), BV_EINTERNAL);
}

static void test_check_index_of_deleted(void **state)
{
    fx *f = *state;
    char msg[256];
    load_search_data(f->s);
    assert_int_equal(del(f->s, "Patient", "p4"), 0);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    assert_int_equal(bv_store_write(f->s, exec_fn,
                                    "INSERT INTO ix_uri (rid, ord, param, grp, text)"
                                    " SELECT rid, 0, 'u', 0, 'x' FROM resources WHERE id = 'p4'"),
                     0);
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), BV_EINTERNAL);
    assert_non_null(strstr(msg, "deleted"));
}

static void test_reopen_clock_readonly(void **state)
{
    fx *f = *state;
    int64_t future = bv_now_ms() + 3600 * 1000;
    put_ctx c = {.type = "Patient", .id = "f", .body = "{}", .last_updated = future};
    assert_int_equal(bv_store_write(f->s, put_fn, &c), 0);
    bv_store_close(f->s);
    f->s = open_dir(f->dir, false);
    assert_non_null(f->s);
    put_ctx d = {.type = "Patient", .id = "g", .body = "{}"};
    assert_int_equal(bv_store_write(f->s, put_fn, &d), 0);
    assert_true(d.out_ms > future); /* the clock resumes after the newest stored version */
    bv_store_close(f->s);

    f->s = open_dir(f->dir, true);
    assert_non_null(f->s);
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "g", &r), 0);
    assert_int_equal(bv_store_write(f->s, put_fn, &d), BV_EINVAL);
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
    assert_true(bv_store_last_seq(f->s) >= 2);

    bv_store *none = open_dir("/tmp/bevan-store-does-not-exist", true);
    assert_null(none);
}

typedef struct {
    bv_store *s;
    atomic_int stop;
    atomic_int written;
} bg_arg;

static void *bg_writer(void *varg)
{
    bg_arg *b = varg;
    char id[32];
    while (!atomic_load(&b->stop) && atomic_load(&b->written) < 5000) {
        snprintf(id, sizeof id, "bg%d", atomic_load(&b->written));
        if (put(b->s, "Basic", id, "{\"bg\":true}", NULL, 0) == 0) atomic_fetch_add(&b->written, 1);
    }
    return NULL;
}

static void test_backup(void **state)
{
    fx *f = *state;
    load_search_data(f->s);
    char id[32], body[64];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "b%d", i);
        snprintf(body, sizeof body, "{\"i\":%d}", i);
        bv_index_row row = {.kind = BV_IX_NUMBER, .param = "i", .num = i, .num_lo = i - 0.5, .num_hi = i + 0.5};
        assert_int_equal(put(f->s, "Basic", id, body, &row, 1), 0);
    }
    bg_arg bg = {.s = f->s, .stop = 0, .written = 0};
    pthread_t th;
    pthread_create(&th, NULL, bg_writer, &bg);
    while (atomic_load(&bg.written) < 20) usleep(1000);
    char dir2[64] = "/tmp/bevan-backup-XXXXXX", out[128], err[256];
    assert_non_null(mkdtemp(dir2));
    snprintf(out, sizeof out, "%s/bevan.db", dir2);
    int rc = bv_store_backup(f->s, out, err, sizeof err);
    atomic_store(&bg.stop, 1);
    pthread_join(th, NULL);
    if (rc) fprintf(stderr, "backup: %s\n", err);
    assert_int_equal(rc, 0);
    assert_true(atomic_load(&bg.written) >= 20);

    bv_store *b = open_dir(dir2, false);
    assert_non_null(b);
    char msg[256];
    assert_int_equal(bv_store_check(b, msg, sizeof msg), 0);
    bv_record r;
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "b%d", i);
        snprintf(body, sizeof body, "{\"i\":%d}", i);
        assert_int_equal(bv_store_read(b, f->a, "Basic", id, &r), 0);
        assert_string_equal(r.body, body);
    }
    bv_pred p = {.kind = BV_IX_NUMBER, .param = "i", .op = BV_OP_GE, .num = 299};
    bv_or g = {.preds = &p, .n = 1};
    bv_search q = {.type = "Basic", .ands = &g, .n_ands = 1, .count = 10};
    bv_record *rs;
    size_t n;
    assert_int_equal(bv_store_search(b, f->a, &q, &rs, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rs[0].id, "b299");
    assert_int_equal(bv_store_read(b, f->a, "Patient", "p1", &r), 0);
    /* the restored store takes writes */
    assert_int_equal(put(b, "Basic", "after-restore", "{}", NULL, 0), 0);
    bv_store_close(b);
    rm_flat(dir2);
}

/* ---- Change feed, listeners, key/value state, sync failure ---- */
typedef struct {
    pthread_mutex_t mu;
    int calls;
    int64_t last;
    uint64_t types;
} listen_ctx;

static void on_commit_cb(void *vctx, int64_t last_seq, uint64_t types)
{
    listen_ctx *l = vctx;
    pthread_mutex_lock(&l->mu);
    l->calls++;
    l->types |= types;
    if (last_seq > l->last) l->last = last_seq;
    pthread_mutex_unlock(&l->mu);
}

typedef struct {
    const char *key, *value;
} kv_ctx;

static int kv_fn(bv_store_txn *t, void *vctx)
{
    kv_ctx *k = vctx;
    return bv_txn_kv_set(t, k->key, k->value);
}

static void test_changes_kv_listeners(void **state)
{
    fx *f = *state;
    listen_ctx l = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(bv_store_on_commit(f->s, on_commit_cb, &l), 0);
    int64_t start = bv_store_last_seq(f->s);
    assert_int_equal(put(f->s, "Patient", "c1", "{\"a\":1}", NULL, 0), 0);
    assert_int_equal(put(f->s, "Observation", "o1", "{}", NULL, 0), 0);
    assert_int_equal(put(f->s, "Patient", "c1", "{\"a\":2}", NULL, 0), 0);
    assert_int_equal(del(f->s, "Observation", "o1"), 0);
    /* the listener ran before the writers were answered, told which types were written */
    pthread_mutex_lock(&l.mu);
    assert_true(l.calls >= 1);
    assert_int_equal(l.last, bv_store_last_seq(f->s));
    assert_int_equal(l.types, bv_store_type_bit("Patient") | bv_store_type_bit("Observation"));
    assert_true(bv_store_type_bit("Patient") != 0);
    pthread_mutex_unlock(&l.mu);

    bv_record *r;
    size_t n;
    assert_int_equal(bv_store_changes(f->s, f->a, start, 100, &r, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(r[0].id, "c1");
    assert_int_equal(r[0].version, 1);
    assert_string_equal(r[2].body, "{\"a\":2}");
    assert_true(r[3].deleted);
    assert_string_equal(r[3].type, "Observation");
    for (size_t i = 1; i < n; i++) assert_true(r[i].seq > r[i - 1].seq);
    /* resume from a cursor, with a limit */
    assert_int_equal(bv_store_changes(f->s, f->a, r[1].seq, 1, &r, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].version, 2);
    assert_int_equal(bv_store_changes(f->s, f->a, bv_store_last_seq(f->s), 10, &r, &n), 0);
    assert_int_equal(n, 0);

    const char *v;
    assert_int_equal(bv_store_kv_get(f->s, f->a, "care.cursor", &v), BV_ENOTFOUND);
    kv_ctx k = {"care.cursor", "42"};
    assert_int_equal(bv_store_write(f->s, kv_fn, &k), 0);
    k.value = "43";
    assert_int_equal(bv_store_write(f->s, kv_fn, &k), 0);
    assert_int_equal(bv_store_kv_get(f->s, f->a, "care.cursor", &v), 0);
    assert_string_equal(v, "43");
    /* durable across a restart */
    bv_store_close(f->s);
    f->s = open_dir(f->dir, false);
    assert_non_null(f->s);
    assert_int_equal(bv_store_kv_get(f->s, f->a, "care.cursor", &v), 0);
    assert_string_equal(v, "43");
    k.value = NULL;
    assert_int_equal(bv_store_write(f->s, kv_fn, &k), 0);
    assert_int_equal(bv_store_kv_get(f->s, f->a, "care.cursor", &v), BV_ENOTFOUND);
}

/* A failed durable sync: the unit is not acknowledged, and no write is accepted afterwards (a
 * later successful fsync would not prove the earlier pages reached the disk). */
static void test_sync_failure_poisons(void **state)
{
    fx *f = *state;
    assert_int_equal(put(f->s, "Patient", "before", "{}", NULL, 0), 0);
    assert_true(bv_store_healthy(f->s));
    bv__store_fail_next_sync(f->s);
    assert_int_equal(put(f->s, "Patient", "during", "{}", NULL, 0), BV_EIO);
    assert_false(bv_store_healthy(f->s));
    assert_int_equal(put(f->s, "Patient", "after", "{}", NULL, 0), BV_EIO);
    bv_record r;
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "before", &r), 0);
    assert_int_equal(bv_store_read(f->s, f->a, "Patient", "after", &r), BV_ENOTFOUND);
    /* a restart recovers from the WAL and accepts writes again */
    bv_store_close(f->s);
    f->s = open_dir(f->dir, false);
    assert_non_null(f->s);
    assert_true(bv_store_healthy(f->s));
    assert_int_equal(put(f->s, "Patient", "after", "{}", NULL, 0), 0);
    char msg[256];
    assert_int_equal(bv_store_check(f->s, msg, sizeof msg), 0);
}

/* ---- Writes answered later (bv_store_write_async) ---- */
typedef struct {
    put_ctx put;
    bv_store *s;
    atomic_int *answered;
    int rc;
    bool readable;      /* at answer time the record could be read */
    bool other_thread;  /* answered on another thread than the caller's */
    pthread_t caller;
} async_ctx;

static void async_done(void *vctx, int rc)
{
    async_ctx *c = vctx;
    c->rc = rc;
    bv_arena *a = bv_arena_new(0);
    bv_record r;
    c->readable = bv_store_read(c->s, a, c->put.type, c->put.id, &r) == BV_OK;
    bv_arena_free(a);
    c->other_thread = !pthread_equal(pthread_self(), c->caller);
    atomic_fetch_add(c->answered, 1);
}

static void wait_answered(atomic_int *answered, int n)
{
    for (int i = 0; i < 5000 && atomic_load(answered) < n; i++) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(answered), n);
}

static void test_write_async(void **state)
{
    fx *f = *state;
    enum { N = 20 };
    static async_ctx cs[N + 1];
    char ids[N][16];
    atomic_int answered = 0;
    for (int i = 0; i <= N; i++) {
        cs[i] = (async_ctx){.s = f->s, .answered = &answered, .rc = -1, .caller = pthread_self()};
        cs[i].put = (put_ctx){.type = "Patient", .body = "{}"};
    }
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "async-%d", i);
        cs[i].put.id = ids[i];
    }
    cs[N].put.id = "refused";
    cs[N].put.fail_with = BV_EPRECOND;
    assert_int_equal(bv_store_write_async(f->s, put_fn, &cs[0].put, 0, NULL, NULL), BV_EINVAL); /* no answer */
    for (int i = 0; i <= N; i++)
        assert_int_equal(bv_store_write_async(f->s, put_fn, &cs[i].put, 0, async_done, &cs[i]), 0);
    wait_answered(&answered, N + 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(cs[i].rc, 0);
        assert_true(cs[i].readable);     /* committed (and synced) before the answer */
        assert_true(cs[i].other_thread);
    }
    assert_int_equal(cs[N].rc, BV_EPRECOND); /* the unit's own failure, rolled back */
    assert_false(cs[N].readable);

    /* a failed sync: the queued write is answered BV_EIO; once poisoned nothing is queued */
    bv__store_fail_next_sync(f->s);
    atomic_store(&answered, 0);
    cs[0].put = (put_ctx){.type = "Patient", .id = "during", .body = "{}"};
    assert_int_equal(bv_store_write_async(f->s, put_fn, &cs[0].put, 0, async_done, &cs[0]), 0);
    wait_answered(&answered, 1);
    assert_int_equal(cs[0].rc, BV_EIO);
    cs[1].put = (put_ctx){.type = "Patient", .id = "after", .body = "{}"};
    assert_int_equal(bv_store_write_async(f->s, put_fn, &cs[1].put, 0, async_done, &cs[1]), BV_EIO);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(atomic_load(&answered), 1); /* never answered */
}

/* A done callback that reads while a later group is committed and waits for its sync: the read
 * must not wait for that sync, which only this thread (the syncer) can run. It hung before. */
typedef struct {
    bv_store *s;
    int64_t gen_at_queue;
    atomic_int state; /* 1: callback waiting for the later commit, 2: read done */
    int read_rc;
} read_in_done_ctx;

static void read_in_done(void *vctx, int rc)
{
    read_in_done_ctx *c = vctx;
    (void)rc;
    atomic_store(&c->state, 1);
    for (int i = 0; i < 2000 && atomic_load(&c->s->commit_gen) <= c->gen_at_queue + 1; i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    bv_arena *a = bv_arena_new(0);
    bv_record r;
    c->read_rc = bv_store_read(c->s, a, "Patient", "first", &r);
    bv_arena_free(a);
    atomic_store(&c->state, 2);
}

static void *write_second(void *arg)
{
    put_ctx p = {.type = "Patient", .id = "second", .body = "{}"};
    return (void *)(intptr_t)bv_store_write((bv_store *)arg, put_fn, &p);
}

static void test_read_in_done_callback(void **state)
{
    fx *f = *state;
    static read_in_done_ctx c;
    c = (read_in_done_ctx){.s = f->s, .gen_at_queue = atomic_load(&f->s->commit_gen), .read_rc = -1};
    static put_ctx first = {.type = "Patient", .id = "first", .body = "{}"};
    assert_int_equal(bv_store_write_async(f->s, put_fn, &first, 0, read_in_done, &c), 0);
    for (int i = 0; i < 5000 && atomic_load(&c.state) == 0; i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&c.state), 1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_second, f->s), 0); /* commits while the callback runs */
    void *ret;
    pthread_join(th, &ret);
    assert_int_equal((int)(intptr_t)ret, 0);
    assert_int_equal(atomic_load(&c.state), 2);
    assert_int_equal(c.read_rc, BV_OK);
}

int main(void)
{
    bv_log_set_level(BV_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_read_vread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unit_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_savepoint_spill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checks_first_units, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_vanished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency, setup, teardown),
        cmocka_unit_test(test_wal_wraps),
        cmocka_unit_test(test_same_file),
        cmocka_unit_test_setup_teardown(test_durability_stats, setup, teardown),
        cmocka_unit_test(test_writeback_keeps_locks),
        cmocka_unit_test(test_announced_writes_share_a_commit),
        cmocka_unit_test_setup_teardown(test_wal_frames_coalesced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_token_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_dates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_number_quantity_uri_ref, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_sort_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_reference_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_body_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_in_done_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_by_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_read_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_detects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_index_of_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_clock_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_kv_listeners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_failure_poisons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_committed_seq, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
