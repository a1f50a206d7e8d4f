/* Shared by the standalone ceiling servers (bench/hello_mhd.c, bench/durable_floor.c): argument
 * parsing, and a libmicrohttpd daemon on 127.0.0.1 with the same thread options as src/http
 * (internal polling thread + epoll, a thread pool, a connection limit, 64 KB per-connection memory).
 * Header-only, so that each stays one `cc` command. */
#ifndef BEVAN_BENCH_MHD_BENCH_H
#define BEVAN_BENCH_MHD_BENCH_H

#include <microhttpd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal argument in [lo, hi]; exits with status 2 and a message otherwise. */
static unsigned arg_u(const char *s, unsigned lo, unsigned hi, const char *what)
{
    unsigned v = 0;
    if (!*s) goto bad;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > 1000000) goto bad;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v >= lo && v <= hi) return v;
bad:
    fprintf(stderr, "bad %s '%s'\n", what, s);
    exit(2);
}

/* Starts the daemon on 127.0.0.1:port (NULL and a message when it cannot). extra_flags are OR-ed
 * into src/http's; completed may be NULL. */
static struct MHD_Daemon *bench_daemon_start(unsigned port, unsigned threads, unsigned extra_flags,
                                             MHD_AccessHandlerCallback handler,
                                             MHD_RequestCompletedCallback completed)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | extra_flags;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    struct MHD_OptionItem pool[] = {
        /* MHD warns about a pool of 1: the option only for 2+ threads */
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL,
                                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                            MHD_OPTION_ARRAY, pool,
                                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                                            MHD_OPTION_CONNECTION_LIMIT, 1024u,
                                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                                            MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                                            MHD_OPTION_END);
    if (!d) fprintf(stderr, "cannot listen on 127.0.0.1:%u\n", port);
    return d;
}

#endif
