/* Ceiling benchmark: the fastest a libmicrohttpd 0.9.75 server answers on this machine, with the
 * same thread options as src/http (internal polling thread + epoll, a thread pool, a connection
 * limit, 64 KB per-connection memory). One persistent 12-byte response; queued only on the second
 * call of the access handler (queuing on the first forces Connection: close, see craft.md §2.1).
 *
 *   cc -O2 -std=c11 bench/hello_mhd.c -lmicrohttpd -o hello_mhd && ./hello_mhd PORT THREADS [SECONDS]
 * Listens on 127.0.0.1 only; exits after SECONDS (default 60) so a forgotten server cannot linger. */
#define _POSIX_C_SOURCE 200809L
#include "mhd_bench.h"

#include <unistd.h>

static struct MHD_Response *hello;
static int marker;

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    (void)cls; (void)url; (void)method; (void)version; (void)upload_data;
    if (*con_cls == NULL) {        /* first call: headers only */
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {  /* drop any body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(c, MHD_HTTP_OK, hello);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT THREADS [SECONDS]\n", argv[0]);
        return 2;
    }
    unsigned port = arg_u(argv[1], 1, 65535, "port");
    unsigned threads = arg_u(argv[2], 1, 256, "threads");
    unsigned secs = argc > 3 ? arg_u(argv[3], 1, 3600, "seconds") : 60;

    static const char body[] = "hello world\n";
    hello = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(hello, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");

    struct MHD_Daemon *d = bench_daemon_start(port, threads, 0, handler, NULL);
    if (!d) return 1;
    printf("listening on 127.0.0.1:%u with %u thread(s)\n", port, threads);
    fflush(stdout);
    sleep(secs);
    MHD_stop_daemon(d);
    MHD_destroy_response(hello);
    return 0;
}
