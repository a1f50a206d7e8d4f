/* SQLite store: the "bevan" VFS, a thin layer over the platform VFS that gathers the frames a
 * COMMIT appends to the write-ahead log and hands them to the kernel in one write.
 *
 * Why: SQLite writes each WAL frame as two writes (a 24-byte header, then the page), so a group
 * commit touching 20 pages costs 40 pwrite calls, and because a frame is 4,120 bytes none of them
 * is page-aligned: ext4 zeroes the partial page-cache pages of every one. On this project's
 * virtual machines a system call is expensive; measured, the writer spent about half its time in
 * those writes. One contiguous write per commit leaves only the two ends partial.
 *
 * Durability is unchanged: the buffer is written out before the write of a commit frame returns
 * (so COMMIT fails, and rolls back, if that write fails), before any read, sync, size query,
 * truncate or close of the log, and, as a safety net, when the connection publishes a new WAL
 * index header (xShmBarrier on its database file). The syncer thread's fdatasync then covers the
 * write exactly as before. Readers never see a frame the writer still holds: the index header
 * that makes frames visible is published only after they are written.
 *
 * It also starts the kernel's writeback of a database file every TRICKLE_BYTES written to it (only
 * checkpoints write it in WAL mode): a checkpoint pass copies megabytes of pages and ends with one
 * fdatasync of the file, and the WAL syncs that answer clients queued behind that burst on the
 * device (p99 of random updates 28-31 ms, of creates 6-7 ms). Started early, the pages go out in
 * smaller pieces between the WAL syncs. sync_file_range(WRITE) only starts writeback: durability
 * still comes from SQLite's sync at the end of the checkpoint, and it reports write errors as
 * before (the error is kept for every descriptor of the file; this one never waits on it).
 * The descriptor used is one per database file in the process, opened at the first writeback and
 * closed only when the last of its files opened through this VFS closes: closing any descriptor of
 * a file drops every POSIX lock the process holds on it, SQLite's included (SQLite itself defers
 * closing its own while another connection holds locks). A connection opened on the same file
 * through another VFS is not counted: the store opens every connection through this one.
 *
 * At each commit it also starts the writeback of the WAL (start_wal_writeback), so the device is
 * already writing the frames while the syncer wakes up to sync them.
 *
 * The frame layout this relies on is SQLite's documented file format (sqlite.org/fileformat.html,
 * "WAL file format"): a 32-byte header at offset 0, then frames of a 24-byte header and one page;
 * bytes 4-7 of a frame header are non-zero for the frame that commits a transaction. */
#define _GNU_SOURCE /* sync_file_range */
#include "internal.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAL_HEADER_BYTES 32
#define FRAME_HEADER_BYTES 24
#define FLUSH_AT (4u << 20) /* a commit larger than this is written out as it grows */
/* The unix VFS writes at most 128 KiB - 1 bytes per call (it masks the length to 17 bits), so
 * the buffer goes out in pieces ending at 64 KiB-aligned offsets: whole pages in between. */
#define PIECE ((sqlite3_int64)64 << 10)
/* Database-file bytes written between two starts of writeback (measured 256 KiB-1 MiB alike). */
#define TRICKLE_BYTES ((size_t)1 << 20)

typedef struct wb_file wb_file;
struct wb_file {
    sqlite3_file base;   /* must be first: SQLite sees this */
    sqlite3_file *real;  /* the platform VFS's file, stored right after this struct */
    bool is_wal;
    wb_file *wal;        /* on a database file: this connection's open WAL, if any */
    wb_file *db;         /* on a WAL file: its connection's database file */
    unsigned char *buf;  /* frames not yet handed to the kernel */
    size_t len, cap;
    sqlite3_int64 off;   /* file offset of buf[0] */
    bool commit_pending; /* the last buffered write was a commit frame's header */
    struct wb_db *shared; /* a main database file: what every connection to it shares */
    size_t unstarted;    /* database-file bytes written since writeback was last started */
    int own_fd;          /* on a WAL file opened for writing: its own descriptor, opened with it, to
                          * write each commit's frames in one call and start their writeback; -1 on
                          * other files or if it could not be opened (SQLite's own writes work
                          * without it). SQLite takes no POSIX lock on a WAL, so closing it drops none */
};

static sqlite3_vfs *real_vfs;
/* The platform VFS's file object follows ours, 16-byte aligned. */
#define WB_HEAD ((sizeof(wb_file) + 15) & ~(size_t)15)
static sqlite3_vfs bevan_vfs;
static atomic_bool failed_in_barrier;
static atomic_ullong wal_writes; /* calls into the platform VFS that wrote WAL bytes (tests) */
static atomic_ullong trickles;   /* starts of a database file's writeback (tests) */
static atomic_ullong wal_kicks;  /* starts of a WAL's writeback at a commit (tests) */

/* A main database file open through this VFS: how many of its files are open in the process, and
 * the descriptor used to start its writeback (-1 until the first). All under db_mu. */
typedef struct wb_db {
    struct wb_db *next;
    char *name; /* as SQLite names the file: its full path */
    int files;
    int fd;
} wb_db;
static wb_db *dbs;
static pthread_mutex_t db_mu = PTHREAD_MUTEX_INITIALIZER;

static wb_db *db_attach(const char *name)
{
    pthread_mutex_lock(&db_mu);
    wb_db *d = dbs;
    while (d && strcmp(d->name, name) != 0) d = d->next;
    if (!d) {
        d = bv_calloc(1, sizeof *d);
        d->name = bv_strdup(name);
        d->fd = -1;
        d->next = dbs;
        dbs = d;
    }
    d->files++;
    pthread_mutex_unlock(&db_mu);
    return d;
}

/* After SQLite closed one of d's files: the last one also closes the descriptor (no lock of SQLite's
 * on the file is left in the process then). */
static void db_detach(wb_db *d)
{
    pthread_mutex_lock(&db_mu);
    if (--d->files == 0) {
        wb_db **p = &dbs;
        while (*p != d) p = &(*p)->next;
        *p = d->next;
        if (d->fd >= 0) close(d->fd);
        free(d->name);
        free(d);
    }
    pthread_mutex_unlock(&db_mu);
}

/* Writes len bytes at off in pieces the platform VFS takes whole (see PIECE). */
static int write_pieces(wb_file *f, const unsigned char *data, size_t len, sqlite3_int64 off)
{
    int rc = SQLITE_OK;
    for (size_t done = 0; done < len && rc == SQLITE_OK;) {
        sqlite3_int64 at = off + (sqlite3_int64)done;
        size_t piece = PIECE - (size_t)(at % PIECE); /* up to the next PIECE-aligned offset */
        if (piece > len - done) piece = len - done;
        rc = f->real->pMethods->xWrite(f->real, data + done, (int)piece, at);
        if (f->is_wal) atomic_fetch_add(&wal_writes, 1);
        done += piece;
    }
    return rc;
}

/* After a commit's frames are written: the kernel starts writing them to the device now, while the
 * syncer is still being woken, so its fdatasync finds them written or under way and mostly waits for
 * the device's flush (WAL syncs under 8-connection creates 364 -> 279 us on average). Only started:
 * the syncer's fdatasync still waits for these pages and reports their write errors (an error is
 * kept for every descriptor of the file; this one never waits, so never takes it). Nothing to undo
 * on failure: the sync writes whatever was not started. */
static void start_wal_writeback(wb_file *f)
{
    if (f->own_fd >= 0 && sync_file_range(f->own_fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0) atomic_fetch_add(&wal_kicks, 1);
}

/* The buffer in one pwrite on the WAL's own descriptor: through the platform VFS a group commit's
 * 130 KB took three or four calls (it writes at most 128 KiB - 1 bytes per call), each a system call
 * on the COMMIT's critical path. Same file, same page cache: the syncer's fdatasync covers it, and
 * reports a failed writeback, as before. Errors as the unix VFS gives them (a full disk is
 * SQLITE_FULL); -1: no own descriptor, write through the platform VFS instead. */
static int write_own(wb_file *f, const unsigned char *data, size_t len, sqlite3_int64 off)
{
    int fd = f->own_fd;
    if (fd < 0) return -1;
    atomic_fetch_add(&wal_writes, 1);
    for (size_t done = 0; done < len;) {
        ssize_t n = pwrite(fd, data + done, len - done, (off_t)(off + (sqlite3_int64)done));
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n == 0 || errno == ENOSPC || errno == EDQUOT ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    }
    return SQLITE_OK;
}

/* Hands the buffer to the kernel. On failure the frames are dropped: the caller returns the error
 * to SQLite, whose transaction then fails (its frames beyond the published header are ignored). */
static int wb_flush(wb_file *f)
{
    if (f->len == 0) return SQLITE_OK;
    int rc = write_own(f, f->buf, f->len, f->off);
    if (rc < 0) rc = write_pieces(f, f->buf, f->len, f->off);
    if (rc == SQLITE_OK && f->commit_pending) start_wal_writeback(f);
    f->len = 0;
    f->commit_pending = false;
    return rc;
}

static int wb_close(sqlite3_file *p)
{
    wb_file *f = (wb_file *)p;
    int rc = wb_flush(f);
    if (f->is_wal && f->db) f->db->wal = NULL;
    if (!f->is_wal && f->wal) f->wal->db = NULL;
    free(f->buf);
    f->buf = NULL;
    int rc2 = f->real->pMethods->xClose(f->real);
    if (f->own_fd >= 0) close(f->own_fd);
    if (f->shared) db_detach(f->shared); /* after SQLite's own close, which may release its locks */
    return rc != SQLITE_OK ? rc : rc2;
}

static int wb_read(sqlite3_file *p, void *out, int amt, sqlite3_int64 off)
{
    wb_file *f = (wb_file *)p;
    int rc = wb_flush(f);
    if (rc != SQLITE_OK) return rc;
    return f->real->pMethods->xRead(f->real, out, amt, off);
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* After amt bytes written to a main database file: start their writeback once enough are pending. */
static void trickle(wb_file *f, int amt)
{
    if (!f->shared || amt <= 0) return;
    f->unstarted += (size_t)amt;
    if (f->unstarted < TRICKLE_BYTES) return;
    f->unstarted = 0;
    wb_db *d = f->shared;
    pthread_mutex_lock(&db_mu);
    if (d->fd < 0) d->fd = open(d->name, O_RDONLY | O_CLOEXEC);
    int fd = d->fd;
    pthread_mutex_unlock(&db_mu);
    /* fd stays open: this file is one of d's, so d->files > 0 until it closes */
    if (fd >= 0 && sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0) atomic_fetch_add(&trickles, 1);
}

static int wb_write(sqlite3_file *p, const void *data, int amt, sqlite3_int64 off)
{
    wb_file *f = (wb_file *)p;
    if (!f->is_wal || amt <= 0) {
        /* in pieces: a statement journal spilling to its file writes it in one call (sqlite_global_init) */
        int rc = amt <= 0 ? f->real->pMethods->xWrite(f->real, data, amt, off)
                          : write_pieces(f, data, (size_t)amt, off);
        if (rc == SQLITE_OK) trickle(f, amt);
        return rc;
    }
    if (f->len && off != f->off + (sqlite3_int64)f->len) {
        int rc = wb_flush(f); /* not an append (a restarted log, a rolled-back spill): write out first */
        if (rc != SQLITE_OK) return rc;
    }
    if ((size_t)amt > FLUSH_AT) {
        int rc = wb_flush(f);
        return rc != SQLITE_OK ? rc : write_pieces(f, data, (size_t)amt, off);
    }
    if (f->len + (size_t)amt > f->cap) {
        size_t cap = f->cap ? f->cap : 64u << 10;
        while (cap < f->len + (size_t)amt) cap *= 2;
        unsigned char *nb = realloc(f->buf, cap);
        if (!nb) {
            int rc = wb_flush(f);
            return rc != SQLITE_OK ? rc : write_pieces(f, data, (size_t)amt, off);
        }
        f->buf = nb;
        f->cap = cap;
    }
    if (f->len == 0) f->off = off;
    memcpy(f->buf + f->len, data, (size_t)amt);
    f->len += (size_t)amt;
    if (amt == FRAME_HEADER_BYTES && off >= WAL_HEADER_BYTES) {
        f->commit_pending = be32((const unsigned char *)data + 4) != 0;
        return SQLITE_OK;
    }
    if (f->commit_pending || f->len >= FLUSH_AT) return wb_flush(f); /* the commit frame's page is in */
    return SQLITE_OK;
}

static int wb_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    wb_file *f = (wb_file *)p;
    int rc = wb_flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wb_sync(sqlite3_file *p, int flags)
{
    wb_file *f = (wb_file *)p;
    int rc = wb_flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wb_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
    wb_file *f = (wb_file *)p;
    int rc = wb_flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wb_lock(sqlite3_file *p, int level)
{
    return ((wb_file *)p)->real->pMethods->xLock(((wb_file *)p)->real, level);
}

static int wb_unlock(sqlite3_file *p, int level)
{
    return ((wb_file *)p)->real->pMethods->xUnlock(((wb_file *)p)->real, level);
}

static int wb_check_reserved(sqlite3_file *p, int *out)
{
    return ((wb_file *)p)->real->pMethods->xCheckReservedLock(((wb_file *)p)->real, out);
}

static int wb_file_control(sqlite3_file *p, int op, void *arg)
{
    wb_file *f = (wb_file *)p;
    int rc = wb_flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wb_sector_size(sqlite3_file *p)
{
    return ((wb_file *)p)->real->pMethods->xSectorSize(((wb_file *)p)->real);
}

static int wb_device(sqlite3_file *p)
{
    return ((wb_file *)p)->real->pMethods->xDeviceCharacteristics(((wb_file *)p)->real);
}

static int wb_shm_map(sqlite3_file *p, int page, int size, int extend, void volatile **out)
{
    sqlite3_file *r = ((wb_file *)p)->real;
    if (r->pMethods->iVersion < 2) return SQLITE_IOERR;
    return r->pMethods->xShmMap(r, page, size, extend, out);
}

static int wb_shm_lock(sqlite3_file *p, int offset, int n, int flags)
{
    sqlite3_file *r = ((wb_file *)p)->real;
    if (r->pMethods->iVersion < 2) return SQLITE_IOERR;
    return r->pMethods->xShmLock(r, offset, n, flags);
}

/* SQLite calls this between the two copies of a new WAL index header: the last moment at which
 * frames the header will point at can still be written before any reader could look for them.
 * Normally nothing is pending here (the commit frame's write already flushed). */
static void wb_shm_barrier(sqlite3_file *p)
{
    wb_file *f = (wb_file *)p;
    if (f->wal && f->wal->len && wb_flush(f->wal) != SQLITE_OK) atomic_store(&failed_in_barrier, true);
    if (f->real->pMethods->iVersion >= 2) f->real->pMethods->xShmBarrier(f->real);
}

static int wb_shm_unmap(sqlite3_file *p, int del)
{
    sqlite3_file *r = ((wb_file *)p)->real;
    if (r->pMethods->iVersion < 2) return SQLITE_OK;
    return r->pMethods->xShmUnmap(r, del);
}

static int wb_fetch(sqlite3_file *p, sqlite3_int64 off, int amt, void **pp)
{
    wb_file *f = (wb_file *)p;
    *pp = NULL;
    if (f->is_wal || f->real->pMethods->iVersion < 3) return SQLITE_OK; /* SQLite then reads */
    return f->real->pMethods->xFetch(f->real, off, amt, pp);
}

static int wb_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr)
{
    sqlite3_file *r = ((wb_file *)p)->real;
    if (r->pMethods->iVersion < 3) return SQLITE_OK;
    return r->pMethods->xUnfetch(r, off, ptr);
}

static const sqlite3_io_methods wb_methods = {
    3,           wb_close,    wb_read,         wb_write,     wb_truncate,     wb_sync,
    wb_file_size, wb_lock,    wb_unlock,       wb_check_reserved, wb_file_control, wb_sector_size,
    wb_device,   wb_shm_map,  wb_shm_lock,     wb_shm_barrier, wb_shm_unmap,  wb_fetch,
    wb_unfetch,
};

static int wb_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *p, int flags, int *out_flags)
{
    (void)vfs;
    wb_file *f = (wb_file *)p;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)((char *)f + WB_HEAD);
    f->own_fd = -1;
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (f->real->pMethods) f->real->pMethods->xClose(f->real);
        f->base.pMethods = NULL;
        return rc;
    }
    f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    if ((flags & SQLITE_OPEN_MAIN_DB) && name) f->shared = db_attach(name);
    if (f->is_wal && name) {
        /* Its own descriptor now, by the name SQLite just opened: the same file as SQLite's (a lazy
         * open at the first commit could name another, were the log ever replaced meanwhile). */
        if (flags & SQLITE_OPEN_READWRITE) f->own_fd = open(name, O_RDWR | O_CLOEXEC);
        sqlite3_file *db = sqlite3_database_file_object(name);
        if (db && db->pMethods == &wb_methods) {
            f->db = (wb_file *)db;
            f->db->wal = f;
        }
    }
    f->base.pMethods = &wb_methods;
    return SQLITE_OK;
}

static int wb_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *wb_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return real_vfs->xDlOpen(real_vfs, name);
}

static void wb_dlerror(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    real_vfs->xDlError(real_vfs, n, msg);
}

static void (*wb_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return real_vfs->xDlSym(real_vfs, h, sym);
}

static void wb_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    real_vfs->xDlClose(real_vfs, h);
}

static int wb_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}

static int wb_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}

static int wb_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, out);
}

static int wb_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}

static int wb_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    if (real_vfs->iVersion >= 2 && real_vfs->xCurrentTimeInt64)
        return real_vfs->xCurrentTimeInt64(real_vfs, out);
    double d = 0;
    int rc = real_vfs->xCurrentTime(real_vfs, &d);
    *out = (sqlite3_int64)(d * 86400000.0);
    return rc;
}

const char *bv__vfs_register(void)
{
    if (getenv("BEVAN_STORE_PLAIN_VFS")) return NULL; /* A/B measurement: SQLite's own VFS */
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs) return NULL;
    bevan_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)(WB_HEAD + (size_t)real_vfs->szOsFile),
        .mxPathname = real_vfs->mxPathname,
        .zName = "bevan",
        .xOpen = wb_open,
        .xDelete = wb_delete,
        .xAccess = wb_access,
        .xFullPathname = wb_full_pathname,
        .xDlOpen = wb_dlopen,
        .xDlError = wb_dlerror,
        .xDlSym = wb_dlsym,
        .xDlClose = wb_dlclose,
        .xRandomness = wb_randomness,
        .xSleep = wb_sleep,
        .xCurrentTime = wb_current_time,
        .xGetLastError = wb_last_error,
        .xCurrentTimeInt64 = wb_current_time64,
    };
    if (sqlite3_vfs_register(&bevan_vfs, 0) != SQLITE_OK) return NULL;
    return bevan_vfs.zName;
}

bool bv__vfs_failed(void) { return atomic_load(&failed_in_barrier); }

unsigned long long bv__vfs_wal_writes(void) { return atomic_load(&wal_writes); }

unsigned long long bv__vfs_trickles(void) { return atomic_load(&trickles); }

unsigned long long bv__vfs_wal_kicks(void) { return atomic_load(&wal_kicks); }
