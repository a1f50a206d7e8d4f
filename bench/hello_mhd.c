/* Ceiling benchmark: the fastest a libmicrohttpd 0.9.75 server answers on this machine, with the
 * same thread options as src/http (internal polling thread + epoll, a thread pool, a connection
 * limit, 64 KB per-connection memory). One persistent 12-byte response; queued only on the second
 * call of the access handler (queuing on the first forces Connection: close, see craft.md §2.1).
 *
 *   cc -O2 -std=c11 bench/hello_mhd.c -lmicrohttpd -o hello_mhd && ./hello_mhd PORT THREADS [SECONDS]
 * Listens on 127.0.0.1 only; exits after SECONDS (default 60) so a forgotten server cannot linger. */
#define _POSIX_C_SOURCE 200809L
#include <microhttpd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static unsigned arg_u(const char *s, unsigned lo, unsigned hi, const char *what)
{
    unsigned v = 0;
    if (!*s) goto bad;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > 100000) goto bad;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v >= lo && v <= hi) return v;
bad:
    fprintf(stderr, "bad %s '%s'\n", what, s);
    exit(2);
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

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    struct MHD_OptionItem pool[] = {
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL,
                                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                            MHD_OPTION_ARRAY, pool,
                                            MHD_OPTION_CONNECTION_LIMIT, 1024u,
                                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                                            MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                                            MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    printf("listening on 127.0.0.1:%u with %u thread(s)\n", port, threads);
    fflush(stdout);
    sleep(secs);
    MHD_stop_daemon(d);
    MHD_destroy_response(hello);
    return 0;
}
