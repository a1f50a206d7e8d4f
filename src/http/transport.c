/* Transport policy of the HTTP layer: security headers, CORS and per-client rate limits.
 * Kept apart from http.c (the libmicrohttpd plumbing); everything here is plain C and unit-tested
 * through the small interface in transport.h. */
#include "transport.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- security headers */

/* FHIR responses carry personal health information: never cached, never sniffed or framed.
 * HTML (the web apps) gets a strict CSP: scripts, styles and connections only from this origin. */
static const char CSP_API[] = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
static const char CSP_HTML[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'";

size_t bv__security_headers(const char *content_type, bool tls, bool has_cache_control, bv_kv *out, size_t cap)
{
    size_t n = 0;
#define ADD(k, v)                                                                                                    \
    do {                                                                                                             \
        if (n < cap) {                                                                                               \
            out[n].name = (k);                                                                                       \
            out[n].value = (v);                                                                                      \
            n++;                                                                                                     \
        }                                                                                                            \
    } while (0)
    bool html = content_type && strncmp(content_type, "text/html", 9) == 0;
    ADD("X-Content-Type-Options", "nosniff");
    ADD("X-Frame-Options", "DENY");
    ADD("Referrer-Policy", "no-referrer");
    ADD("Content-Security-Policy", html ? CSP_HTML : CSP_API);
    if (!has_cache_control) ADD("Cache-Control", "no-store");
    if (tls) ADD("Strict-Transport-Security", "max-age=31536000");
#undef ADD
    return n;
}

/* ---------------------------------------------------------------- CORS */

bool bv__cors_allowed(const char *const *origins, size_t n, const char *origin)
{
    if (!origin || !*origin) return false;
    for (size_t i = 0; i < n; i++)
        if (origins[i] && strcmp(origins[i], origin) == 0) return true;
    return false;
}

/* ---------------------------------------------------------------- rate limits */

/* Token bucket per client address, in a fixed table (open addressing, evicting the stalest
 * entry of a probe window): memory stays bounded whatever the number of clients. */
#define RL_SLOTS 4096
#define RL_PROBE 8

typedef struct {
    char key[48];
    double tokens;
    int64_t last_ns;
} rl_slot;

struct bv__ratelimit {
    pthread_mutex_t mu;
    double rate, burst;
    rl_slot slots[RL_SLOTS];
};

bv__ratelimit *bv__ratelimit_new(double rate_per_s, double burst)
{
    if (rate_per_s <= 0) return NULL;
    bv__ratelimit *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->rate = rate_per_s;
    r->burst = burst >= 1 ? burst : rate_per_s;
    return r;
}

void bv__ratelimit_free(bv__ratelimit *r)
{
    if (!r) return;
    pthread_mutex_destroy(&r->mu);
    free(r);
}

unsigned bv__ratelimit_take(bv__ratelimit *r, const char *client, int64_t now_ns)
{
    if (!r || !client) return 0;
    if (now_ns == 0) now_ns = bv_mono_ns();
    uint64_t h = bv_hash_str(client);
    pthread_mutex_lock(&r->mu);
    rl_slot *hit = NULL, *victim = NULL;
    for (unsigned i = 0; i < RL_PROBE; i++) {
        rl_slot *s = &r->slots[(h + i) % RL_SLOTS];
        if (s->key[0] && strcmp(s->key, client) == 0) {
            hit = s;
            break;
        }
        if (!victim || !s->key[0] || (victim->key[0] && s->last_ns < victim->last_ns)) victim = s;
    }
    if (!hit) {
        hit = victim;
        snprintf(hit->key, sizeof hit->key, "%s", client);
        hit->tokens = r->burst;
        hit->last_ns = now_ns;
    }
    double elapsed = (double)(now_ns - hit->last_ns) / 1e9;
    if (elapsed > 0) {
        hit->tokens += elapsed * r->rate;
        if (hit->tokens > r->burst) hit->tokens = r->burst;
        hit->last_ns = now_ns;
    }
    unsigned wait_s = 0;
    if (hit->tokens >= 1) {
        hit->tokens -= 1;
    } else {
        double need = (1 - hit->tokens) / r->rate;
        wait_s = (unsigned)need;
        if ((double)wait_s < need) wait_s++;   /* round up */
        if (wait_s < 1) wait_s = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return wait_s;
}
