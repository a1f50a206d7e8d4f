/* faultfs: an LD_PRELOAD shim that makes the store's file I/O fail on demand, to prove that a failed
 * write or sync is never acknowledged (tests/crash/faultfs.test.mjs).
 *
 *   LD_PRELOAD=build/libfaultfs.so FAULTFS_TRIGGER=/tmp/x/trigger FAULTFS_ERRNO=EIO \
 *   FAULTFS_OPS=fdatasync,fsync FAULTFS_MATCH=bevan.db bevan serve ...
 *
 * While the file FAULTFS_TRIGGER exists, every call of an operation listed in FAULTFS_OPS
 * (fsync, fdatasync, write, pwrite; default all four) on a descriptor whose path contains
 * FAULTFS_MATCH (default "bevan.db", which also matches bevan.db-wal) fails with FAULTFS_ERRNO
 * (EIO or ENOSPC; default EIO) without doing anything. Other descriptors (sockets, stderr) are never
 * touched. Each injected failure increments a counter written (best effort) to FAULTFS_TRIGGER.count.
 * Removing the trigger file stops the failures. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef int (*sync_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

static int op_enabled(const char *op)
{
    const char *ops = getenv("FAULTFS_OPS");
    if (!ops || !*ops) return 1;
    size_t n = strlen(op);
    for (const char *p = ops; (p = strstr(p, op)) != NULL; p += n)
        if ((p == ops || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) return 1;
    return 0;
}

static int fd_matches(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    const char *m = getenv("FAULTFS_MATCH");
    return strstr(path, m && *m ? m : "bevan.db") != NULL;
}

static void count_fault(const char *trig)
{
    static volatile int total;
    int t = __atomic_add_fetch(&total, 1, __ATOMIC_SEQ_CST);
    char path[4096], num[32];
    snprintf(path, sizeof path, "%s.count", trig);
    int len = snprintf(num, sizeof num, "%d\n", t);
    static pwrite_fn real_pwrite;
    if (!real_pwrite) real_pwrite = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (real_pwrite) (void)real_pwrite(fd, num, (size_t)len, 0);
        close(fd);
    }
}

/* Returns the errno to inject, or 0 to pass the call through. */
static int should_fail(const char *op, int fd)
{
    const char *trig = getenv("FAULTFS_TRIGGER");
    if (!trig || !*trig || fd <= 2) return 0;
    if (access(trig, F_OK) != 0) return 0;
    if (!op_enabled(op) || !fd_matches(fd)) return 0;
    const char *e = getenv("FAULTFS_ERRNO");
    count_fault(trig);
    return e && strcmp(e, "ENOSPC") == 0 ? ENOSPC : EIO;
}

int fsync(int fd)
{
    static sync_fn real;
    if (!real) real = (sync_fn)dlsym(RTLD_NEXT, "fsync");
    int e = should_fail("fsync", fd);
    if (e) { errno = e; return -1; }
    return real(fd);
}

int fdatasync(int fd)
{
    static sync_fn real;
    if (!real) real = (sync_fn)dlsym(RTLD_NEXT, "fdatasync");
    int e = should_fail("fdatasync", fd);
    if (e) { errno = e; return -1; }
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static write_fn real;
    if (!real) real = (write_fn)dlsym(RTLD_NEXT, "write");
    int e = should_fail("write", fd);
    if (e) { errno = e; return -1; }
    return real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static pwrite_fn real;
    if (!real) real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
    int e = should_fail("pwrite", fd);
    if (e) { errno = e; return -1; }
    return real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    static pwrite_fn real;
    if (!real) real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite64");
    int e = should_fail("pwrite", fd);
    if (e) { errno = e; return -1; }
    return real(fd, buf, n, off);
}
