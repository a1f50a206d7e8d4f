/* Private to src/http: transport policy (security headers, CORS, rate limits). No MHD types here,
 * so the unit tests can call it directly. */
#ifndef BEVAN_HTTP_TRANSPORT_H
#define BEVAN_HTTP_TRANSPORT_H

#include "bevan/http.h"

/* Fills out (up to cap) with the security headers for a response of this content type; the
 * values are static strings. Returns how many. */
size_t bv__security_headers(const char *content_type, bool tls, bool has_cache_control, bv_kv *out, size_t cap);

/* Exact match against the configured origins ("https://app.example.org"); never a wildcard. */
bool bv__cors_allowed(const char *const *origins, size_t n, const char *origin);

typedef struct bv__ratelimit bv__ratelimit;
/* NULL when rate_per_s <= 0 (no limit). burst < 1 means burst = rate. */
bv__ratelimit *bv__ratelimit_new(double rate_per_s, double burst);
void bv__ratelimit_free(bv__ratelimit *r);
/* Takes one token for client (an address). Returns 0 when allowed, else the seconds to wait
 * (Retry-After). now_ns 0 = the monotonic clock (tests pass their own). */
unsigned bv__ratelimit_take(bv__ratelimit *r, const char *client, int64_t now_ns);

#endif
