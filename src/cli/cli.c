/* The subcommands: serve, import, check, demo, reindex. */
#include "bevan/cli.h"
#include "auth_cmd.h"
#include "bevan/api.h"
#include "bevan/care.h"
#include "bevan/demo.h"
#include "bevan/fhir.h"
#include "bevan/http.h"
#include "bevan/json.h"
#include "bevan/notify.h"
#include "bevan/store.h"
#include "bevan/web.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *data;
    const char *listen;
    const char *port_file;
    unsigned threads;
    bool sync_normal;
    unsigned reader_cache_mb;   /* 0 = the store's default */
    unsigned writer_cache_mb;   /* 0 = the store's default */
    unsigned write_linger_us;
    bool write_linger_set;      /* false: the store's default */
    unsigned demo_patients;
    uint64_t seed;
    bool no_nhs_check;
    /* transport (serve) */
    const char *tls_cert, *tls_key;
    const char *cors[16];
    size_t n_cors;
    double rate_per_s, rate_burst;
    bool rate_loopback;
    unsigned max_connections;   /* serve: 0 = BV_MAX_CONNECTIONS */
    /* virtual wards (docs/ward.md) */
    bool no_ward;
    unsigned ward_patients;   /* demo: virtual-ward patients */
    int64_t ward_window_ms, ward_grace_ms, ward_escalate_ms;
    /* Subscriptions (serve) */
    unsigned notify_attempts, notify_backoff_ms, notify_timeout_ms;
    const char *web_dir;
    const char *endpoints[16];
    size_t n_endpoints;
    cli_auth_opts auth;      /* serve: --auth, --base-url, --jwks, --trust-issuer, --policy */
} options;

/* "N" minutes -> ms */
static int parse_minutes(const char *s, int64_t *ms)
{
    uint64_t v;
    if (!s || bv_str_to_u64(s, strlen(s), 100000, &v) || v == 0) return -1;
    *ms = (int64_t)v * 60000;
    return 0;
}

/* "N" or "N/BURST" requests per second; "0" = no limit. */
static int parse_rate(const char *s, options *o)
{
    uint64_t r = 0, b = 0;
    const char *slash = strchr(s, '/');
    size_t rl = slash ? (size_t)(slash - s) : strlen(s);
    if (bv_str_to_u64(s, rl, 1000000, &r)) return -1;
    if (slash && bv_str_to_u64(slash + 1, strlen(slash + 1), 10000000, &b)) return -1;
    o->rate_per_s = r == 0 ? -1 : (double)r;
    o->rate_burst = (double)b;
    return 0;
}

#define UINT_OPTION_MAX 10000000u

/* A whole decimal option value in [lo, hi] (hi at most UINT_OPTION_MAX). */
static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    uint64_t v;
    if (!s || bv_str_to_u64(s, strlen(s), hi, &v) || v < lo) return -1;
    *out = (unsigned)v;
    return 0;
}

/* Common options; returns the index of the first positional argument, or -1 on error. */
static int parse_options(int argc, char **argv, options *o, const char *help)
{
    int i = 1;
    bool auth_bad = false;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { fputs(help, stdout); exit(0); }
        else if (strcmp(a, "--data") == 0 && next) { o->data = next; i++; }
        else if (strcmp(a, "--listen") == 0 && next) { o->listen = next; i++; }
        else if (strcmp(a, "--port-file") == 0 && next) { o->port_file = next; i++; }
        else if (strcmp(a, "--threads") == 0 && next) { if (parse_uint(next, 0, UINT_OPTION_MAX, &o->threads)) goto bad; i++; }
        else if (strcmp(a, "--write-linger-us") == 0 && next) {
            if (parse_uint(next, 0, 100000, &o->write_linger_us)) goto bad;
            o->write_linger_set = true;
            i++;
        }
        else if (strcmp(a, "--reader-cache-mb") == 0 && next) {
            if (parse_uint(next, 1, 4096, &o->reader_cache_mb)) goto bad;
            i++;
        } else if (strcmp(a, "--writer-cache-mb") == 0 && next) {
            if (parse_uint(next, 1, 4096, &o->writer_cache_mb)) goto bad;
            i++;
        } else if (strcmp(a, "--sync") == 0 && next) {
            if (strcmp(next, "normal") == 0) o->sync_normal = true;
            else if (strcmp(next, "full") != 0) goto bad;
            i++;
        } else if ((strcmp(a, "--demo") == 0 || strcmp(a, "--patients") == 0) && next) {
            if (parse_uint(next, 0, UINT_OPTION_MAX, &o->demo_patients)) goto bad;
            i++;
        } else if (strcmp(a, "--seed") == 0 && next) {
            uint64_t v;
            if (bv_str_to_u64(next, strlen(next), UINT64_MAX, &v)) goto bad;
            o->seed = v;
            i++;
        } else if (strcmp(a, "--tz") == 0 && next) {
            if (bv_tz_set(next) != BV_OK) {
                fprintf(stderr, "bevan: unknown time zone '%s' (use an IANA name such as Europe/London)\n", next);
                return -1;
            }
            i++;
        } else if (strcmp(a, "--no-nhs-number-check") == 0) o->no_nhs_check = true;
        else if (strcmp(a, "--tls-cert") == 0 && next) { o->tls_cert = next; i++; }
        else if (strcmp(a, "--tls-key") == 0 && next) { o->tls_key = next; i++; }
        else if (strcmp(a, "--cors-origin") == 0 && next) {
            if (o->n_cors == sizeof o->cors / sizeof o->cors[0]) goto bad;
            o->cors[o->n_cors++] = next;
            i++;
        } else if (strcmp(a, "--rate-limit") == 0 && next) {
            if (parse_rate(next, o)) goto bad;
            i++;
        } else if (strcmp(a, "--rate-limit-loopback") == 0) o->rate_loopback = true;
        else if (strcmp(a, "--max-connections") == 0 && next) {
            if (parse_uint(next, 1, UINT_OPTION_MAX, &o->max_connections)) goto bad;
            i++;
        }
        else if (strcmp(a, "--no-ward") == 0) o->no_ward = true;
        else if (strcmp(a, "--ward") == 0 && next) { if (parse_uint(next, 0, UINT_OPTION_MAX, &o->ward_patients)) goto bad; i++; }
        else if (strcmp(a, "--news2-window") == 0 && next) { if (parse_minutes(next, &o->ward_window_ms)) goto bad; i++; }
        else if (strcmp(a, "--overdue-grace") == 0 && next) { if (parse_minutes(next, &o->ward_grace_ms)) goto bad; i++; }
        else if (strcmp(a, "--overdue-escalate") == 0 && next) {
            if (parse_minutes(next, &o->ward_escalate_ms)) goto bad;
            i++;
        } else if (strcmp(a, "--plausible") == 0 && next) {
            if (bv_care_set_limit_text(next) != BV_OK) {
                fprintf(stderr, "bevan: bad --plausible '%s' (CODE[:UNIT]=MIN..MAX with a code of the table in "
                                "docs/ward.md)\n", next);
                return -1;
            }
            i++;
        }
        else if (strcmp(a, "--notify-attempts") == 0 && next) {
            if (parse_uint(next, 1, 100, &o->notify_attempts)) goto bad;
            i++;
        } else if (strcmp(a, "--notify-backoff-ms") == 0 && next) {
            if (parse_uint(next, 1, UINT_OPTION_MAX, &o->notify_backoff_ms)) goto bad;
            i++;
        } else if (strcmp(a, "--notify-timeout-ms") == 0 && next) {
            if (parse_uint(next, 1, UINT_OPTION_MAX, &o->notify_timeout_ms)) goto bad;
            i++;
        } else if (strcmp(a, "--notify-endpoint") == 0 && next) {
            if (o->n_endpoints == sizeof o->endpoints / sizeof o->endpoints[0] ||
                !(bv_starts_with(next, "http://") || bv_starts_with(next, "https://")))
                goto bad;
            o->endpoints[o->n_endpoints++] = next;
            i++;
        } else if (strcmp(a, "--web") == 0 && next) { o->web_dir = next; i++; }
        else if (cli_auth_option(&o->auth, argc, argv, &i, &auth_bad)) {
            if (auth_bad) { i--; goto bad; }
        }
        else if (strcmp(a, "--") == 0) { i++; break; }
        else if (a[0] == '-' && a[1]) goto bad;
        else break;
    }
    return i;
bad:
    fprintf(stderr, "bevan: bad option '%s'\n%s", argv[i], help);
    return -1;
}

static int open_store(const options *o, bv_store **s)
{
    char err[256];
    bv_store_options so = {.dir = o->data, .sync_normal = o->sync_normal, .reader_cache_kb = o->reader_cache_mb * 1024u,
                           .writer_cache_kb = o->writer_cache_mb * 1024u,
                           .linger_us = !o->write_linger_set ? 0
                                        : o->write_linger_us ? o->write_linger_us : BV_STORE_NO_LINGER};
    if (bv_store_open(&so, s, err, sizeof err)) {
        fprintf(stderr, "bevan: cannot open the store in %s: %s\n", o->data, err);
        return -1;
    }
    return 0;
}

static bv_api *make_api(const options *o, bv_store *s)
{
    bv_api_options ao = {.store = s, .check_nhs_number = !o->no_nhs_check, .base_path = "/fhir"};
    return bv_api_new(&ao);
}

/* ---- demo ---- */
typedef struct {
    bv_api *api;
    bv_import_stats stats;
    size_t failures;
} demo_sink;

static int demo_emit(void *ctx, const char *json, size_t len)
{
    demo_sink *d = ctx;
    bv_buf out;
    bv_buf_init(&out, 0);
    int status = bv_api_process_bundle(d->api, json, len, &out, &d->stats);
    if (status >= 300) {
        fprintf(stderr, "bevan demo: a bundle failed (%d): %.400s\n", status, bv_buf_cstr(&out));
        d->failures++;
    }
    bv_buf_free(&out);
    return status >= 300 ? -1 : 0;
}

static int run_demo(bv_api *api, unsigned patients, unsigned ward_patients, uint64_t seed)
{
    demo_sink d = {.api = api};
    bv_demo_options dopt = {.seed = seed, .patients = patients, .ward_patients = ward_patients,
                            .ward_now_ms = bv_ward_now_ms()};
    int64_t t0 = bv_now_ms();
    int rc = bv_demo_generate(&dopt, demo_emit, &d);
    fprintf(stderr, "bevan demo: %u patients (%u on the virtual ward), %zu resources stored in %.1f s%s\n",
            patients + ward_patients, ward_patients, d.stats.entries_ok,
            (double)(bv_now_ms() - t0) / 1000.0, rc ? " (FAILED)" : "");
    return rc ? -1 : 0;
}

static void count_cb(void *ctx, const char *type, int64_t n)
{
    (void)type;
    *(int64_t *)ctx += n;
}

static const char demo_help[] =
    "usage: bevan demo --data DIR [--patients N] [--seed S] [--ward N]\n"
    "Generates a deterministic synthetic UK population (GP practices, practitioners, patients with\n"
    "valid NHS numbers, conditions, observations, medications) and stores it in DIR.\n"
    "  --ward N   also N virtual-ward patients (CareTeam/demo-ward-1) with 14 days of home readings up\n"
    "             to now (docs/ward.md); alerts and NEWS2 scores appear when `bevan serve` starts\n";

int bv_cmd_demo(int argc, char **argv)
{
    options o = {.data = "./data", .demo_patients = 100, .seed = 1};
    if (parse_options(argc, argv, &o, demo_help) < 0) return 2;
    bv_store *s;
    if (open_store(&o, &s)) return 1;
    bv_api *api = make_api(&o, s);
    int rc = run_demo(api, o.demo_patients, o.ward_patients, o.seed);
    bv_api_free(api);
    bv_store_close(s);
    return rc ? 1 : 0;
}

/* ---- serve ---- */
static const char serve_help[] =
    "usage: bevan serve [--listen HOST:PORT] [--data DIR] [--port-file F] [--threads N]\n"
    "                   [--sync full|normal] [--demo N] [--ward N] [--seed S] [--tz ZONE]\n"
    "                   [--tls-cert F --tls-key F] [--cors-origin O]... [--rate-limit N[/B]]\n"
    "                   [--rate-limit-loopback] [--no-ward] [--news2-window MIN]\n"
    "                   [--overdue-grace MIN] [--overdue-escalate MIN] [--plausible CODE[:UNIT]=LO..HI]\n"
    "                   [--notify-attempts N] [--notify-backoff-ms MS] [--notify-timeout-ms MS]\n"
    "                   [--notify-endpoint PREFIX]... [--web DIR]\n"
    "                   [--auth on|off] [--base-url URL] [--jwks FILE]...\n"
    "                   [--trust-issuer ISS=JWKSFILE]... [--policy FILE]\n"
    "                   [--max-connections N] [--reader-cache-mb N] [--writer-cache-mb N]\n"
    "                   [--write-linger-us N]\n"
    "Serves the FHIR R4 API at http://HOST:PORT/fhir (default 127.0.0.1:8080, data ./data).\n"
    "  --port-file F  write the bound port to F (use with --listen 127.0.0.1:0)\n"
    "  --sync normal  faster commits that may lose the last transactions on power loss (default full)\n"
    "  --reader-cache-mb N  SQLite page cache per reader connection (default 4; docs/storage.md)\n"
    "  --writer-cache-mb N  SQLite page cache of the writer connection (default 16; docs/operations.md)\n"
    "  --write-linger-us N  longest wait of a group commit for writes about to arrive (default 500, 0 = none)\n"
    "  --demo N       on first start (empty store) seed N synthetic patients\n"
    "  --ward N       with --demo: N more on a virtual ward (docs/ward.md)\n"
    "  --tz ZONE      IANA zone for dates without one (default UTC; index and queries use it:\n"
    "                 changing it needs a reindex)\n"
    "  --tls-cert F --tls-key F   serve HTTPS only (PEM files; TLS 1.2 and 1.3)\n"
    "  --cors-origin O            allow browser apps from origin O (exact, repeatable, max 16)\n"
    "  --rate-limit N[/B]         per-client requests per second (burst B, default 2N); 0 = off\n"
    "                             (default 1000/2000; loopback clients exempt unless\n"
    "  --rate-limit-loopback      is given)\n"
    "  --max-connections N        open connections served (default 1024); past it a request gets\n"
    "                             503 + Retry-After and its connection is closed\n"
    "  --no-ward                  do not run the virtual-ward service (NEWS2, alerts, overdue)\n"
    "  --news2-window MIN         a NEWS2 needs all parameters within MIN minutes (default 60)\n"
    "  --overdue-grace MIN        a scheduled reading is overdue after MIN minutes (default 60)\n"
    "  --overdue-escalate MIN     and the overdue alert escalates after MIN minutes (default 240)\n"
    "  --plausible CODE[:UNIT]=LO..HI  override a plausibility limit (docs/ward.md)\n"
    "  --notify-attempts N        rest-hook Subscription attempts before dead-letter (default 6)\n"
    "  --notify-backoff-ms MS     first retry delay, doubled per attempt (default 1000)\n"
    "  --notify-timeout-ms MS     one rest-hook request (default 10000)\n"
    "  --notify-endpoint PREFIX   rest-hook endpoints allowed besides loopback (URL prefix,\n"
    "                             repeatable, max 16; others are dead-lettered unsent)\n"
    "  --web DIR                  the web pages served at /web/ (default: web/ beside the binary)\n"
    "  --auth on|off              bearer tokens required on every FHIR route but /metadata (default\n"
    "                             on; off only on loopback, with a warning). docs/security.md\n"
    "  --base-url URL             the FHIR base URL clients use: access tokens' aud (default\n"
    "                             http://HOST:PORT/fhir; required when not on loopback)\n"
    "  --jwks FILE                more public keys trusted for Bevan's own issuer\n"
    "  --trust-issuer ISS=FILE    trust tokens with iss ISS signed by a key of FILE (JWKS)\n"
    "  --policy FILE              roles and labels (default DATA/policy.json, else built-in)\n"
    "SIGTERM or SIGINT finishes in-flight requests and exits 0.\n";

/* Everything the server answers: the web pages under /web/, the API otherwise. */
typedef struct {
    bv_api *api;
    bv_web *web;
    atomic_ulong requests; /* started, but for /healthz: what keeps the heap from being trimmed */
} serve_ctx;

static void serve_handle(void *ctx, bv_request *req, bv_response *resp)
{
    serve_ctx *sc = ctx;
    /* Health probes (a load balancer's, every few seconds) are not load: they must not keep the
     * memory of the last burst from going back (wait_for_stop). */
    if (strcmp(req->path, BV_API_HEALTH_PATH) != 0) atomic_fetch_add_explicit(&sc->requests, 1, memory_order_relaxed);
    if (bv_web_handle(sc->web, req, resp)) return;
    bv_api_handle(sc->api, req, resp);
}

static bool serve_write_inline(void *ctx, const bv_request *req)
{
    serve_ctx *sc = ctx;
    return bv_api_write_inline(sc->api, req);
}

/* Websocket "bind-with-token": the token must be able to read the Subscription through the public
 * API, so verification, revocation, scopes, patient compartments and audit are the API's own. */
static int ws_bind_check(void *ctx, const char *token, const char *subscription_id, char *why, size_t whylen)
{
    if (!token || !*token) {
        snprintf(why, whylen, "authorization is on: bind with a token (bind-with-token)");
        return -1;
    }
    bv_arena *a = bv_arena_new(4096);
    bv_request req;
    memset(&req, 0, sizeof req);
    req.arena = a;
    req.method = "GET";
    req.path = bv_arena_printf(a, "/fhir/Subscription/%s", subscription_id);
    req.raw_query = "";
    req.body = "";
    bv_kv *h = bv_arena_calloc(a, 1, sizeof *h);
    h[0].name = "Authorization";
    h[0].value = bv_arena_printf(a, "Bearer %s", token);
    req.headers = h;
    req.n_headers = 1;
    req.peer = "websocket";
    bv_response resp;
    bv_http_dispatch_local(bv_api_handle, ctx, &req, &resp);
    int status = resp.status;
    bv_buf_free(&resp.body);
    bv_arena_free(a);
    if (status == 200) return 0;
    snprintf(why, whylen, status == 401 ? "the token is not valid" : "the token cannot read Subscription/%s",
             subscription_id);
    return -1;
}

/* Waits for SIGTERM or SIGINT. Meanwhile, once a second: after a burst of requests, the heap's
 * free memory goes back to the kernel (bv_heap_idle_tick: at least 4 MiB grown, a second with no
 * request started and none in flight). */
static int wait_for_stop(const sigset_t *set, serve_ctx *sc, bv_http_server *srv)
{
    /* Starting is a burst too (a demo seeded on first start, migrations): trimmed after its first quiet second. */
    bv_heap_idle idle = {.active = true};
    for (;;) {
        struct timespec tick = {.tv_sec = 1};
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig > 0) return sig;
        if (errno != EAGAIN && errno != EINTR) {
            bv_log(BV_LOG_ERROR, "sigtimedwait: %s", strerror(errno));
            return SIGTERM;
        }
        unsigned long started = atomic_load_explicit(&sc->requests, memory_order_relaxed);
        if (bv_heap_idle_tick(&idle, started, bv_http_in_flight(srv) > 0, 4096))
            bv_log(BV_LOG_DEBUG, "idle: heap trimmed, RSS %ld kB", idle.rss_after_trim_kb);
    }
}

int bv_cmd_serve(int argc, char **argv)
{
    bv_heap_tune();
    options o = {.data = "./data", .listen = "127.0.0.1:8080", .seed = 1};
    if (parse_options(argc, argv, &o, serve_help) < 0) return 2;
    /* Block the stop signals in every thread; the main thread waits for them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (getenv("BEVAN_DEBUG")) bv_log_set_level(BV_LOG_DEBUG);

    bv_store *s;
    if (open_store(&o, &s)) return 1;
    bv_api *api = make_api(&o, s);
    if (o.demo_patients) {
        int64_t n = 0;
        bv_store_count_by_type(s, count_cb, &n);
        if (n == 0 && run_demo(api, o.demo_patients, o.ward_patients, o.seed)) {
            bv_api_free(api);
            bv_store_close(s);
            return 1;
        }
    }
    bv_auth *auth = NULL;
    if (cli_auth_setup(&o.auth, api, o.data, o.listen, &auth)) {
        bv_api_free(api);
        bv_store_close(s);
        return 1;
    }
    bv_ward *ward = NULL;
    if (!o.no_ward) {
        bv_ward_options wo = {.store = s, .news2_window_ms = o.ward_window_ms, .overdue_grace_ms = o.ward_grace_ms,
                              .overdue_escalate_ms = o.ward_escalate_ms};
        if (bv_ward_start(&wo, &ward) != BV_OK) {
            fprintf(stderr, "bevan: cannot start the ward service\n");
            bv_api_free(api);
            bv_store_close(s);
            return 1;
        }
    }
    /* The Subscription service writes (Subscription status, dead-letter AuditEvents) through an
     * API instance of its own: in-process, never exposed over HTTP, so it needs no token when
     * authorization is switched on for the public one. */
    bv_api *internal_api = make_api(&o, s);
    bv_notify_options no = {.store = s, .api = bv_api_handle, .api_ctx = internal_api, .base_path = "/fhir",
                            .max_attempts = o.notify_attempts, .backoff_ms = o.notify_backoff_ms,
                            .timeout_ms = o.notify_timeout_ms, .endpoints = o.endpoints,
                            .n_endpoints = o.n_endpoints,
                            .auth = auth ? ws_bind_check : NULL, .auth_ctx = api};
    bv_notify *notify;
    char nerr[256];
    if (bv_notify_start(&no, &notify, nerr, sizeof nerr)) {
        fprintf(stderr, "bevan: cannot start Subscriptions: %s\n", nerr);
        bv_ward_stop(ward);
        bv_api_free(internal_api);
        bv_api_free(api);
        bv_store_close(s);
        return 1;
    }
    serve_ctx sc = {.api = api, .web = bv_web_new(o.web_dir)};
    if (o.web_dir && !sc.web) fprintf(stderr, "bevan: --web %s is not a folder; the web pages are not served\n", o.web_dir);
    bv_http_options ho = {.listen = o.listen,
                          .ws = bv_notify_ws_handler(notify),
                          .threads = o.threads,
                          .tls_cert_file = o.tls_cert,
                          .tls_key_file = o.tls_key,
                          .cors_origins = o.cors,
                          .n_cors_origins = o.n_cors,
                          .rate_per_s = o.rate_per_s,
                          .rate_burst = o.rate_burst,
                          .rate_loopback = o.rate_loopback,
                          .max_connections = o.max_connections,
                          .write_inline = serve_write_inline};
    bv_http_server *srv;
    char err[256];
    if (bv_http_start(&ho, serve_handle, &sc, &srv, err, sizeof err)) {
        fprintf(stderr, "bevan: cannot listen on %s: %s\n", o.listen, err);
        bv_ward_stop(ward);
        bv_notify_stop(notify);
        bv_web_free(sc.web);
        bv_api_free(internal_api);
        bv_api_free(api);
        bv_store_close(s);
        return 1;
    }
    int port = bv_http_port(srv);
    char host[256];
    snprintf(host, sizeof host, "%s", o.listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    /* the audience is known now: set it before the port file tells anyone the server is up */
    cli_auth_ready(&o.auth, auth, o.data, host, port, o.tls_cert != NULL);
    if (o.port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", o.port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, o.port_file) != 0) {
            fprintf(stderr, "bevan: cannot write the port file %s\n", o.port_file);
            bv_http_stop(srv);
            bv_ward_stop(ward);
            bv_notify_stop(notify);
            bv_web_free(sc.web);
            bv_api_free(internal_api);
            bv_api_free(api);
            bv_store_close(s);
            return 1;
        }
    }
    bv_log(BV_LOG_INFO, "Bevan serving FHIR R4 at %s://%s:%d/fhir (data %s)", o.tls_cert ? "https" : "http", host,
           port, o.data);
    int sig = wait_for_stop(&set, &sc, srv);
    bv_log(BV_LOG_INFO, "signal %d: finishing in-flight requests", sig);
    bv_http_stop(srv);
    bv_ward_stop(ward);
    bv_notify_stop(notify);
    bv_web_free(sc.web);
    bv_api_free(internal_api);
    bv_api_free(api);
    bv_store_close(s);
    bv_log(BV_LOG_INFO, "stopped");
    return 0;
}

/* ---- import ---- */
static const char import_help[] =
    "usage: bevan import [--data DIR] FILE|DIR...\n"
    "Imports FHIR transaction/batch Bundles (.json) and NDJSON files (.ndjson: one resource per line).\n"
    "Each Bundle is all-or-nothing; an NDJSON file is stored in transactions of up to 10,000 lines.\n"
    "Prints a summary; exits non-zero if anything failed.\n";

typedef struct {
    bv_api *api;
    bv_import_stats stats;
    size_t files, files_failed, total_files;
    bool tty;
} import_state;

static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return NULL; }
    size_t n = (size_t)st.st_size;
    char *buf = bv_malloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { free(buf); close(fd); return NULL; }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int import_ndjson(import_state *st, const char *path, const char *data, size_t len)
{
    /* Wrap lines into transaction Bundles of PUT (id given) or POST entries. */
    const size_t chunk = 10000;
    size_t line_no = 0;
    const char *p = data, *end = data + len;
    int failed = 0;
    while (p < end) {
        bv_buf b;
        bv_buf_init(&b, 0);
        bv_buf_puts(&b, "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[");
        size_t n = 0;
        bv_arena *a = bv_arena_new(1 << 16);
        while (p < end && n < chunk) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
            line_no++;
            const char *line = p;
            p = nl ? nl + 1 : end;
            while (ll && (line[ll - 1] == '\r' || line[ll - 1] == ' ')) ll--;
            if (ll == 0) continue;
            json_value *v;
            json_error err;
            if (json_parse(a, line, ll, NULL, &v, &err)) {
                fprintf(stderr, "\n%s:%zu: %s\n", path, line_no, err.message);
                failed = 1;
                continue;
            }
            const char *type = json_get_str(v, "resourceType"), *id = json_get_str(v, "id");
            if (!type) { fprintf(stderr, "\n%s:%zu: no resourceType\n", path, line_no); failed = 1; continue; }
            if (n++) bv_buf_putc(&b, ',');
            bv_buf_puts(&b, "{\"resource\":");
            bv_buf_append(&b, line, ll);
            if (id) bv_buf_printf(&b, ",\"request\":{\"method\":\"PUT\",\"url\":\"%s/%s\"}}", type, id);
            else bv_buf_printf(&b, ",\"request\":{\"method\":\"POST\",\"url\":\"%s\"}}", type);
        }
        bv_arena_free(a);
        bv_buf_puts(&b, "]}");
        if (!failed && n) {
            bv_buf out;
            bv_buf_init(&out, 0);
            int status = bv_api_process_bundle(st->api, b.data, b.len, &out, &st->stats);
            if (status >= 300) {
                fprintf(stderr, "\n%s: lines up to %zu rejected (%d): %.600s\n", path, line_no, status, bv_buf_cstr(&out));
                failed = 1;
            }
            bv_buf_free(&out);
        }
        bv_buf_free(&b);
        if (failed) break;
    }
    return failed ? -1 : 0;
}

static void progress(import_state *st, const char *path)
{
    if (!st->tty) return;
    int width = 30, filled = st->total_files ? (int)(width * st->files / st->total_files) : width;
    fprintf(stderr, "\r[%-*.*s] %zu/%zu files, %zu resources  %.40s   ", width, filled,
            "##############################", st->files, st->total_files, st->stats.entries_ok, path);
}

static int import_file(import_state *st, const char *path)
{
    size_t len;
    char *data = read_file(path, &len);
    if (!data) { fprintf(stderr, "\n%s: cannot read\n", path); st->files_failed++; st->files++; return -1; }
    int rc = 0;
    if (ends_with(path, ".ndjson")) rc = import_ndjson(st, path, data, len);
    else {
        bv_buf out;
        bv_buf_init(&out, 0);
        int status = bv_api_process_bundle(st->api, data, len, &out, &st->stats);
        if (status >= 300) {
            fprintf(stderr, "\n%s: rejected (%d): %.600s\n", path, status, bv_buf_cstr(&out));
            rc = -1;
        }
        bv_buf_free(&out);
    }
    free(data);
    st->files++;
    if (rc) st->files_failed++;
    progress(st, path);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void push_file(char ***files, size_t *n, size_t *cap, char *path)
{
    if (*n == *cap) { *cap = *cap ? *cap * 2 : 64; *files = bv_realloc(*files, *cap * sizeof **files); }
    (*files)[(*n)++] = path;
}

/* Collect files (sorted, for a deterministic order) from the arguments. */
static void collect(const char *path, char ***files, size_t *n, size_t *cap)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        push_file(files, n, cap, bv_strdup(path)); /* reported as unreadable later */
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return;
        struct dirent *e;
        char **sub = NULL;
        size_t sn = 0, sc = 0;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (!ends_with(e->d_name, ".json") && !ends_with(e->d_name, ".ndjson")) continue;
            size_t l = strlen(path) + strlen(e->d_name) + 2;
            char *full = bv_malloc(l);
            snprintf(full, l, "%s/%s", path, e->d_name);
            push_file(&sub, &sn, &sc, full);
        }
        closedir(d);
        qsort(sub, sn, sizeof *sub, cmp_str);
        for (size_t i = 0; i < sn; i++) {
            push_file(files, n, cap, sub[i]);
        }
        free(sub);
        return;
    }
    push_file(files, n, cap, bv_strdup(path));
}

int bv_cmd_import(int argc, char **argv)
{
    bv_heap_tune();
    options o = {.data = "./data"};
    int first = parse_options(argc, argv, &o, import_help);
    if (first < 0) return 2;
    if (first >= argc) { fputs(import_help, stderr); return 2; }
    char **files = NULL;
    size_t n = 0, cap = 0;
    for (int i = first; i < argc; i++) collect(argv[i], &files, &n, &cap);
    bv_store *s;
    if (open_store(&o, &s)) return 1;
    bv_api *api = make_api(&o, s);
    import_state st = {.api = api, .total_files = n, .tty = isatty(2)};
    int64_t t0 = bv_now_ms();
    for (size_t i = 0; i < n; i++) {
        import_file(&st, files[i]);
        free(files[i]);
    }
    free(files);
    double secs = (double)(bv_now_ms() - t0) / 1000.0;
    if (st.tty) fputc('\n', stderr);
    printf("imported %zu files (%zu failed): %zu resources stored, %zu entries failed, in %.2f s (%.0f resources/s)\n",
           st.files, st.files_failed, st.stats.entries_ok, st.stats.entries_failed, secs,
           secs > 0 ? (double)st.stats.entries_ok / secs : 0.0);
    bv_api_free(api);
    bv_store_close(s);
    return st.files_failed ? 1 : 0;
}

/* ---- check ---- */
static const char check_help[] =
    "usage: bevan check [--data DIR]\n"
    "Runs SQLite's integrity check and Bevan's own invariants on the store; exits 0 when sound.\n";

static void print_count(void *ctx, const char *type, int64_t n)
{
    (void)ctx;
    printf("  %-28s %lld\n", type, (long long)n);
}

int bv_cmd_check(int argc, char **argv)
{
    options o = {.data = "./data"};
    if (parse_options(argc, argv, &o, check_help) < 0) return 2;
    struct stat stt;
    if (stat(o.data, &stt) != 0) { fprintf(stderr, "bevan check: %s does not exist\n", o.data); return 1; }
    bv_store *s;
    if (open_store(&o, &s)) return 1;
    char msg[1024];
    int rc = bv_store_check(s, msg, sizeof msg);
    if (rc) printf("check FAILED: %s\n", msg);
    else {
        printf("check ok\n");
        bv_store_count_by_type(s, print_count, NULL);
    }
    bv_store_close(s);
    return rc ? 1 : 0;
}

/* ---- reindex ---- */
static const char reindex_help[] =
    "usage: bevan reindex [--data DIR]\n"
    "Rebuilds the search-index rows of every current resource from its stored JSON (after a change\n"
    "of the search definitions or of extraction), in batches through the store's writer. Versions,\n"
    "history and bodies are untouched. Prints a progress line and a summary; exits 0 when every\n"
    "resource was re-indexed.\n";

#define REINDEX_BATCH 500

typedef struct {
    int64_t cursor;
    size_t resources, rows, failed, batch_n;
    char first_error[300];
} reindex_state;

/* One writer unit: the next batch of current resources, their index rows replaced. */
static int reindex_unit(bv_store_txn *t, void *ctx)
{
    reindex_state *st = ctx;
    bv_arena *a = bv_arena_new(1 << 20);
    bv_record *recs;
    size_t n;
    int rc = bv_txn_scan_current(t, a, &st->cursor, REINDEX_BATCH, &recs, &n);
    st->batch_n = n;
    for (size_t i = 0; rc == BV_OK && i < n; i++) {
        json_value *doc;
        json_error jerr;
        bv_index_row *rows = NULL;
        size_t nrows = 0;
        if (json_parse(a, recs[i].body, recs[i].body_len, NULL, &doc, &jerr) ||
            bv_fhir_extract_index(a, doc, &rows, &nrows)) {
            /* Leave its rows as they are and report it: nothing stored is lost. */
            if (!st->failed++)
                snprintf(st->first_error, sizeof st->first_error, "%s/%s: stored JSON cannot be indexed", recs[i].type,
                         recs[i].id);
            continue;
        }
        rc = bv_txn_set_index(t, recs[i].type, recs[i].id, rows, nrows);
        if (rc == BV_OK) {
            st->resources++;
            st->rows += nrows;
        }
    }
    bv_arena_free(a);
    return rc;
}

static int recount_unit(bv_store_txn *t, void *ctx)
{
    (void)ctx;
    return bv_txn_recount_index(t);
}

int bv_cmd_reindex(int argc, char **argv)
{
    options o = {.data = "./data"};
    if (parse_options(argc, argv, &o, reindex_help) < 0) return 2;
    struct stat stt;
    if (stat(o.data, &stt) != 0) { fprintf(stderr, "bevan reindex: %s does not exist\n", o.data); return 1; }
    bv_store *s;
    if (open_store(&o, &s)) return 1;
    reindex_state st = {0};
    int64_t t0 = bv_now_ms(), last = t0;
    int rc = 0;
    for (;;) {
        reindex_state before = st;
        rc = bv_store_write(s, reindex_unit, &st);
        if (rc) {
            st = before;   /* the failed unit was rolled back: so are its counts */
            fprintf(stderr, "bevan reindex: storage error (%d); stopped after %zu resources\n", rc, st.resources);
            break;
        }
        if (st.batch_n == 0) {
            rc = bv_store_write(s, recount_unit, NULL); /* the kept token counts, from the new rows */
            if (rc) fprintf(stderr, "bevan reindex: storage error (%d) recounting the token index\n", rc);
            break;
        }
        int64_t now = bv_now_ms();
        if (now - last >= 1000) {
            last = now;
            double secs = (double)(now - t0) / 1000.0;
            fprintf(stderr, "reindex: %zu resources, %zu index rows, %.1f s (%.0f resources/s)\n", st.resources, st.rows,
                    secs, secs > 0 ? (double)st.resources / secs : 0.0);
        }
    }
    double secs = (double)(bv_now_ms() - t0) / 1000.0;
    printf("reindexed %zu resources (%zu index rows) in %.2f s (%.0f resources/s); %zu could not be indexed%s%s\n",
           st.resources, st.rows, secs, secs > 0 ? (double)st.resources / secs : 0.0, st.failed,
           st.failed ? ", first: " : "", st.first_error);
    bv_store_close(s);
    return rc || st.failed ? 1 : 0;
}
