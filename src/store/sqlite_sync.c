/* SQLite store, durability: the syncer thread, the change feed and the key/value table.
 *
 * The writer COMMITs with synchronous=NORMAL (in WAL mode: no sync at commit) and hands each group
 * to the syncer, which fdatasyncs the WAL file and only then answers the group's units and tells
 * the commit listeners. One sync covers every group committed before it started, so while it runs
 * the writer already executes and commits the next group: throughput is no longer one group per
 * sync latency. Equivalent durability to synchronous=FULL: a unit is acknowledged only after the
 * WAL frames of its COMMIT are on stable storage. A failed sync poisons the store: its units get
 * BV_EIO and every later write is refused until a restart (recovery then decides from the WAL what
 * is stored), because after a failed fsync the kernel may have dropped the dirty pages, and a
 * later successful fsync would not mean they were written. */
#define _GNU_SOURCE /* statx */
#include "internal.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* bv__same_file when statx cannot say. It reads the times (see below): slower syncs, same answer. */
static int same_by_stat(const char *path, int fd)
{
    struct stat by_path, by_fd;
    if (stat(path, &by_path) != 0) return errno == ENOENT ? 0 : -1;
    if (fstat(fd, &by_fd) != 0) return -1;
    return by_path.st_ino == by_fd.st_ino && by_path.st_dev == by_fd.st_dev;
}

/* The WAL's identity, asking for no timestamp: since Linux 6.13 a stat that reads a file's times
 * makes its next write take a fine-grained time, so the inode is dirty again and every fdatasync
 * on ext4 without a journal also writes the inode table block (a second device round trip,
 * measured about 55 us of a 300 us sync). With times not asked for, they move once per clock
 * tick only. */
int bv__same_file(const char *path, int fd)
{
    struct statx by_path, by_fd;
    if (statx(AT_FDCWD, path, 0, STATX_INO, &by_path) != 0)
        return errno == ENOENT ? 0 : same_by_stat(path, fd); /* e.g. statx refused by a seccomp filter */
    if (statx(fd, "", AT_EMPTY_PATH, STATX_INO, &by_fd) != 0 || !(by_path.stx_mask & by_fd.stx_mask & STATX_INO))
        return same_by_stat(path, fd);
    return by_path.stx_ino == by_fd.stx_ino && by_path.stx_dev_major == by_fd.stx_dev_major &&
           by_path.stx_dev_minor == by_fd.stx_dev_minor;
}

/* Opens (or reopens, when SQLite recreated it) the WAL file; syncs the folder once so the WAL's
 * directory entry survives a power loss too. */
static int wal_open(bv_store *s)
{
    char wal[4096];
    int n = snprintf(wal, sizeof wal, "%s-wal", s->path);
    if (n < 0 || (size_t)n >= sizeof wal) return BV_EINVAL;
    if (s->wal_fd >= 0) {
        /* Kept unless the path is known to name another file, or none: a new descriptor would not
         * be told of a writeback error that happened before it was opened. */
        if (bv__same_file(wal, s->wal_fd) != 0) return BV_OK;
        close(s->wal_fd);
        s->wal_fd = -1;
    }
    s->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (s->wal_fd < 0) {
        bv_log(BV_LOG_ERROR, "store: open %s: %s", wal, strerror(errno));
        return BV_EIO;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", s->path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return BV_EIO;
    int rc = fsync(dfd) == 0 ? BV_OK : BV_EIO;
    close(dfd);
    return rc;
}

static void count_sync(bv_store *s, uint64_t us);

static int wal_sync(bv_store *s)
{
    if (s->sync_normal) return BV_OK; /* --sync normal: durable at the next checkpoint only */
    int rc = wal_open(s);
    if (rc) return rc;
    if (atomic_exchange(&s->fail_next_sync, false)) {
        bv_log(BV_LOG_ERROR, "store: fdatasync of the WAL failed: injected by a test");
        return BV_EIO;
    }
    if (bv__vfs_failed()) {
        bv_log(BV_LOG_ERROR, "store: writing WAL frames failed after their commit");
        return BV_EIO;
    }
    int64_t t0 = bv_mono_ns();
    if (fdatasync(s->wal_fd) != 0) {
        bv_log(BV_LOG_ERROR, "store: fdatasync of the WAL failed: %s", strerror(errno));
        return BV_EIO;
    }
    count_sync(s, (uint64_t)((bv_mono_ns() - t0) / 1000));
    return BV_OK;
}

/* ---- Durability statistics (bv_store_durability) ---- */
#define SYNC_FIRST_OCTAVE 4 /* bucket 0 holds everything under 2^4 us */

int bv_store_sync_bucket(uint64_t us)
{
    if (us < ((uint64_t)1 << SYNC_FIRST_OCTAVE)) return 0;
    int octave = 63 - __builtin_clzll(us);
    int quarter = (int)((us >> (octave - 2)) & 3); /* the two bits after the leading one */
    int b = 1 + (octave - SYNC_FIRST_OCTAVE) * 4 + quarter;
    return b < BV_SYNC_BUCKETS ? b : BV_SYNC_BUCKETS - 1;
}

uint64_t bv_store_sync_bucket_limit_us(int bucket)
{
    if (bucket <= 0) return (uint64_t)1 << SYNC_FIRST_OCTAVE;
    if (bucket >= BV_SYNC_BUCKETS - 1) return UINT64_MAX;
    int octave = SYNC_FIRST_OCTAVE + (bucket - 1) / 4;
    uint64_t quarter = (uint64_t)((bucket - 1) % 4);
    return (5 + quarter) << (octave - 2);
}

uint64_t bv_store_sync_quantile_us(const uint64_t hist[BV_SYNC_BUCKETS], double q)
{
    uint64_t total = 0;
    for (int i = 0; i < BV_SYNC_BUCKETS; i++) total += hist[i];
    if (!total) return 0;
    double want = q * (double)total, seen = 0;
    for (int i = 0; i < BV_SYNC_BUCKETS; i++) {
        seen += (double)hist[i];
        if (hist[i] && seen >= want) return bv_store_sync_bucket_limit_us(i);
    }
    return bv_store_sync_bucket_limit_us(BV_SYNC_BUCKETS - 1);
}

/* Syncer thread only (so the maximum needs no compare-and-swap); relaxed: read whole by anyone. */
static void count_sync(bv_store *s, uint64_t us)
{
    atomic_fetch_add_explicit(&s->sync_us_total, us, memory_order_relaxed);
    if (us > atomic_load_explicit(&s->sync_us_max, memory_order_relaxed))
        atomic_store_explicit(&s->sync_us_max, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sync_hist[bv_store_sync_bucket(us)], 1, memory_order_relaxed);
}

void bv_store_durability_get(bv_store *s, bv_store_durability *out)
{
    memset(out, 0, sizeof *out);
    if (!s) return;
    bv__store_stats(s, &out->groups, &out->units, &out->commit_failures);
    out->sync_us_total = atomic_load_explicit(&s->sync_us_total, memory_order_relaxed);
    out->sync_us_max = atomic_load_explicit(&s->sync_us_max, memory_order_relaxed);
    for (int i = 0; i < BV_SYNC_BUCKETS; i++) { /* syncs: the histogram's sum, so the two always agree */
        out->sync_hist[i] = atomic_load_explicit(&s->sync_hist[i], memory_order_relaxed);
        out->syncs += out->sync_hist[i];
    }
}

static void *syncer_main(void *arg)
{
    bv_thread_name("bv-syncer");
    bv_store *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->sync_head && !s->writer_done) pthread_cond_wait(&s->scond, &s->mu);
        bv__synced *list = s->sync_head;
        s->sync_head = s->sync_tail = NULL;
        bool stop = !list && s->writer_done;
        s->sync_busy = list != NULL;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;

        bool any_commit = false;
        int64_t gen = 0, seq = 0;
        uint64_t types = 0;
        for (bv__synced *g = list; g; g = g->next) {
            any_commit |= g->committed;
            types |= g->types;
            if (g->gen > gen) gen = g->gen;
            if (g->committed && g->seq > seq) seq = g->seq;
        }
        int rc = BV_OK;
        if (any_commit && !atomic_load(&s->poisoned)) rc = wal_sync(s);
        if (rc != BV_OK || atomic_load(&s->poisoned)) {
            if (!atomic_exchange(&s->poisoned, true))
                bv_log(BV_LOG_ERROR, "store: a durable sync failed: refusing writes until restart");
            for (bv__synced *g = list; g; g = g->next)
                for (bv__unit *u = g->units; u; u = u->next)
                    if (u->rc == 0) u->rc = BV_EIO;
        } else if (seq > 0) {
            atomic_store(&s->last_seq, seq);
        }

        pthread_mutex_lock(&s->mu);
        size_t nl = s->n_listeners;
        pthread_mutex_unlock(&s->mu);
        if (rc == BV_OK && seq > 0)
            for (size_t i = 0; i < nl; i++) s->listeners[i].fn(s->listeners[i].ctx, seq, types);

        pthread_mutex_lock(&s->mu);
        if (gen > atomic_load(&s->durable_gen)) atomic_store(&s->durable_gen, gen);
        pthread_cond_broadcast(&s->dcond);
        s->sync_busy = false;
        pthread_cond_signal(&s->wcond); /* a writer holding its group open commits now */
        pthread_mutex_unlock(&s->mu);
        /* The callers wait on their semaphores, not on s->mu: answering them outside the lock
         * lets each run at once instead of queuing for the mutex. */
        for (bv__synced *g = list, *gnext; g; g = gnext) {
            gnext = g->next;
            for (bv__unit *u = g->units, *next; u; u = next) {
                next = u->next; /* u lives on the waiter's stack: read before waking it */
                if (u->done_fn) {
                    u->done_fn(u->done_ctx, u->rc);
                    free(u);
                } else {
                    sem_post(&u->done);
                }
            }
            free(g);
        }
    }
    return NULL;
}

int bv__syncer_start(bv_store *s, char *err, size_t errlen)
{
    if (pthread_create(&s->syncer, NULL, syncer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the syncer thread");
        return BV_EINTERNAL;
    }
    s->syncer_started = true;
    return BV_OK;
}

void bv__syncer_stop(bv_store *s)
{
    if (!s->syncer_started) return;
    pthread_mutex_lock(&s->mu);
    s->writer_done = true; /* also set by the writer; here for a writer that never started */
    pthread_cond_broadcast(&s->scond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->syncer, NULL);
    s->syncer_started = false;
    if (s->wal_fd >= 0) close(s->wal_fd);
    s->wal_fd = -1;
}

void bv__syncer_push(bv_store *s, bv__synced *g)
{
    pthread_mutex_lock(&s->mu);
    if (s->sync_tail) s->sync_tail->next = g;
    else s->sync_head = g;
    s->sync_tail = g;
    pthread_cond_signal(&s->scond);
    pthread_mutex_unlock(&s->mu);
}

void bv__await_durable(bv_store *s)
{
    if (s->read_only) return;
    /* A done callback of bv_store_write_async runs here, on the syncer: waiting for a group
     * committed after its own would wait for this thread (deadlock). Its own group is durable;
     * it may see later commits before their sync, as the writer does. */
    if (s->syncer_started && pthread_equal(pthread_self(), s->syncer)) return;
    int64_t gen = atomic_load(&s->commit_gen);
    if (atomic_load(&s->durable_gen) >= gen) return; /* the common case: no sync outstanding */
    pthread_mutex_lock(&s->mu);
    while (atomic_load(&s->durable_gen) < gen && s->syncer_started) pthread_cond_wait(&s->dcond, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

int bv_store_on_commit(bv_store *s, bv_store_commit_fn fn, void *ctx)
{
    if (!s || !fn) return BV_EINVAL;
    pthread_mutex_lock(&s->mu);
    int rc = BV_EINVAL;
    if (s->n_listeners < BV__MAX_LISTENERS) {
        s->listeners[s->n_listeners].fn = fn;
        s->listeners[s->n_listeners].ctx = ctx;
        s->n_listeners++;
        rc = BV_OK;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- Change feed ---- */
int bv_store_changes(bv_store *s, bv_arena *a, int64_t after_seq, size_t limit, bv_record **out, size_t *n)
{
    if (!s || !a || !out || !n) return BV_EINVAL;
    *out = NULL;
    *n = 0;
    if (limit == 0) return BV_OK;
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    sqlite3_stmt *st = bv__stmt(c, ST_CHANGES);
    if (!st) {
        bv__reader_done(s, c);
        return BV_EINTERNAL;
    }
    if (limit > 100000) limit = 100000;
    sqlite3_bind_int64(st, 1, after_seq);
    sqlite3_bind_int64(st, 2, bv_store_last_seq(s));
    sqlite3_bind_int64(st, 3, (int64_t)limit);
    bv_record *recs = bv_arena_alloc(a, limit * sizeof *recs);
    size_t k = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && k < limit) bv__record_from(a, st, 0, &recs[k++]);
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? BV_OK : bv__fail(c, rc, "changes");
    bv__done(st);
    bv__reader_done(s, c);
    if (ret == BV_OK) {
        *out = recs;
        *n = k;
    }
    return ret;
}

/* ---- Key/value state ---- */
static int kv_get(bv__conn *c, bv_arena *a, const char *key, const char **value)
{
    if (!key || !value || !a) return BV_EINVAL;
    *value = NULL;
    sqlite3_stmt *st = bv__stmt(c, ST_KV_GET);
    if (!st) return BV_EINTERNAL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), ret = BV_OK;
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        *value = bv_arena_strndup(a, t ? (const char *)t : "", (size_t)sqlite3_column_bytes(st, 0));
    } else if (rc == SQLITE_DONE) {
        ret = BV_ENOTFOUND;
    } else {
        ret = bv__fail(c, rc, "kv get");
    }
    bv__done(st);
    return ret;
}

int bv_store_kv_get(bv_store *s, bv_arena *a, const char *key, const char **value)
{
    int err = BV_OK;
    bv__conn *c = bv__reader(s, &err);
    if (!c) return err;
    int rc = kv_get(c, a, key, value);
    bv__reader_done(s, c);
    bv__await_durable(s);
    return rc;
}

int bv_txn_kv_get(bv_store_txn *t, bv_arena *a, const char *key, const char **value)
{
    if (!t || sqlite3_get_autocommit(t->c->db)) return BV_EIO;
    return kv_get(t->c, a, key, value);
}

int bv_txn_kv_set(bv_store_txn *t, const char *key, const char *value)
{
    if (!t || !key) return BV_EINVAL;
    if (sqlite3_get_autocommit(t->c->db)) return BV_EIO;
    sqlite3_stmt *st = bv__stmt(t->c, value ? ST_KV_SET : ST_KV_DEL);
    if (!st) return BV_EINTERNAL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (value) sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    bv__done(st);
    return rc == SQLITE_DONE ? BV_OK : bv__fail(t->c, rc, "kv set");
}

void bv__store_fail_next_sync(bv_store *s) { atomic_store(&s->fail_next_sync, true); }
