/* Ceiling for durable writes: the fastest a libmicrohttpd 0.9.75 server can acknowledge POSTs on this
 * machine when every acknowledgement waits for fdatasync, as Bevan's creates do. No JSON, no SQLite,
 * no validation: each request's body is dropped and BYTES bytes per request are appended to a log
 * file, group-committed. It is what bench/hello_mhd.c is for reads: the figure a durable create rate
 * is judged against on this host.
 *
 * Same thread options as src/http (internal polling thread + epoll, a thread pool, a connection
 * limit, 64 KB per-connection memory). A request is suspended (MHD_suspend_connection) and queued;
 * one committer thread takes everything queued, writes it in one pwrite, calls fdatasync, then
 * resumes the connections, which answer 201. Fewer hand-offs than Bevan (one thread both writes and
 * syncs), so it is a floor for the latency of a durable write, not a model of Bevan.
 *
 * The log is a 64 MiB file written once at start and then overwritten in a ring, as Bevan's WAL is
 * once it wraps: an fdatasync then has only data to flush, no file size or block allocation.
 *
 *   cc -O2 -std=c11 bench/durable_floor.c -lmicrohttpd -lpthread -o durable_floor
 *   ./durable_floor PORT THREADS BYTES FILE [SECONDS]
 * Listens on 127.0.0.1 only; exits after SECONDS (default 60). bench/durable-floor.sh runs it under
 * wrk like bench/wrk/create.lua. */
#define _POSIX_C_SOURCE 200809L
#include "mhd_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#define LOG_BYTES ((off_t)64 << 20)
#define MAX_BATCH 1024

typedef struct pending {
    struct MHD_Connection *conn;
    bool queued, done;
    struct pending *next;
} pending;

static struct MHD_Response *created;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pending *queue_head;
static bool stopping;
static int log_fd = -1;
static size_t bytes_per_write;
static unsigned long long groups, writes;

static void *committer(void *arg)
{
    (void)arg;
    unsigned char *buf = calloc(MAX_BATCH, bytes_per_write);
    off_t at = 0;
    if (!buf) abort();
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!queue_head && !stopping) pthread_cond_wait(&cv, &mu);
        pending *batch = queue_head;
        queue_head = NULL;
        pthread_mutex_unlock(&mu);
        if (!batch) return NULL; /* stopping, nothing left */
        size_t n = 0;
        for (pending *p = batch; p; p = p->next) n++;
        size_t len = (n < MAX_BATCH ? n : MAX_BATCH) * bytes_per_write;
        if (at + (off_t)len > LOG_BYTES) at = 0;
        memset(buf, (int)(groups & 0xff), len); /* new bytes each time, like new WAL frames */
        ssize_t w = pwrite(log_fd, buf, len, at);
        if (w != (ssize_t)len || fdatasync(log_fd) != 0) {
            fprintf(stderr, "write or sync failed: %s\n", strerror(errno));
            abort(); /* a floor benchmark: never acknowledge an unsynced write */
        }
        at += (off_t)len;
        groups++;
        writes += n;
        for (pending *p = batch, *next; p; p = next) {
            next = p->next;
            p->done = true;
            MHD_resume_connection(p->conn);
        }
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    (void)cls; (void)url; (void)method; (void)version; (void)upload_data;
    pending *p = *con_cls;
    if (!p) { /* first call: headers only */
        if (!(p = calloc(1, sizeof *p))) return MHD_NO;
        p->conn = c;
        *con_cls = p;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* drop the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (p->done) return MHD_queue_response(c, MHD_HTTP_CREATED, created);
    if (!p->queued) {
        p->queued = true;
        MHD_suspend_connection(c);
        pthread_mutex_lock(&mu);
        p->next = queue_head;
        queue_head = p;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
    return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why)
{
    (void)cls; (void)c; (void)why;
    free(*con_cls);
    *con_cls = NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PORT THREADS BYTES FILE [SECONDS]\n", argv[0]);
        return 2;
    }
    unsigned port = arg_u(argv[1], 1, 65535, "port");
    unsigned threads = arg_u(argv[2], 1, 256, "threads");
    bytes_per_write = arg_u(argv[3], 1, 1u << 16, "bytes");
    unsigned secs = argc > 5 ? arg_u(argv[5], 1, 3600, "seconds") : 60;

    log_fd = open(argv[4], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        fprintf(stderr, "%s: %s\n", argv[4], strerror(errno));
        return 1;
    }
    static unsigned char zero[1 << 16];
    for (off_t at = 0; at < LOG_BYTES; at += (off_t)sizeof zero)
        if (pwrite(log_fd, zero, sizeof zero, at) != (ssize_t)sizeof zero) return 1;
    if (fsync(log_fd) != 0) return 1;

    static const char body[] = "{}";
    created = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(created, MHD_HTTP_HEADER_CONTENT_TYPE, "application/fhir+json");

    pthread_t tid;
    if (pthread_create(&tid, NULL, committer, NULL) != 0) return 1;

    struct MHD_Daemon *d = bench_daemon_start(port, threads, MHD_ALLOW_SUSPEND_RESUME, handler, completed);
    if (!d) return 1;
    printf("listening on 127.0.0.1:%u with %u thread(s), %zu bytes per write\n", port, threads, bytes_per_write);
    fflush(stdout);
    sleep(secs);
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    MHD_stop_daemon(d);
    pthread_join(tid, NULL);
    printf("%llu writes in %llu groups (%.2f per group)\n", writes, groups, groups ? (double)writes / (double)groups : 0.0);
    MHD_destroy_response(created);
    close(log_fd);
    unlink(argv[4]);
    return 0;
}
