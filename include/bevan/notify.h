/* Bevan notify: FHIR R4 Subscriptions (criteria-based) with the rest-hook and websocket channels.
 * See docs/subscriptions.md.
 *
 * A Subscription's criteria is a search URL ("Observation?code=http://loinc.org|59408-5").
 * A thread of this module follows the store's change feed (bv_store_changes, woken by
 * bv_store_on_commit): each changed resource that is still current is matched against every
 * active Subscription of its type by running the criteria search with _id = the resource's id.
 * So a notification never delays the request that made the change.
 *  - websocket: every connection bound to the Subscription gets "ping {id}" at once (live only:
 *    nothing is kept for a client that is not connected).
 *  - rest-hook: the notification is written to an outbox in the store (key/value table, in the
 *    same unit as the feed cursor), so it survives a restart; a delivery thread POSTs (payload
 *    absent: empty body) or PUTs [endpoint]/[type]/[id] (payload application/fhir+json: the
 *    version that matched) with the channel's headers; failures are retried with exponential
 *    backoff; after the last attempt the notification is dead-lettered (kv record "notify.dead.N"
 *    and an AuditEvent) and the Subscription is set to status "error" with the reason.
 * libcurl is used only inside src/notify. */
#ifndef BEVAN_NOTIFY_H
#define BEVAN_NOTIFY_H

#include "bevan/core.h"
#include "bevan/fhir.h"
#include "bevan/http.h"
#include "bevan/json.h"
#include "bevan/store.h"

#define BV_NOTIFY_WS_PATH       "/ws"   /* the websocket endpoint (advertised in the CapabilityStatement) */
#define BV_NOTIFY_MAX_SUBS      10000   /* active Subscriptions held */
#define BV_NOTIFY_MAX_BINDS     32      /* Subscriptions bound on one websocket */
#define BV_NOTIFY_MAX_PENDING   100000  /* rest-hook notifications waiting; beyond: dead-lettered at once */
#define BV_NOTIFY_MAX_HEADERS   10      /* channel.header entries */

typedef struct bv_notify bv_notify;

/* Decides whether a websocket client presenting token may bind subscription_id. Returns 0 when
 * allowed; otherwise a short reason in why. */
typedef int (*bv_notify_auth_fn)(void *ctx, const char *token, const char *subscription_id, char *why, size_t whylen);

typedef struct {
    bv_store *store;
    /* The in-process API (bv_http_dispatch_local) for the module's own writes: Subscription
     * status "error" and dead-letter AuditEvents. It must accept them without a token. */
    bv_http_handler api;
    void *api_ctx;
    const char *base_path;    /* the API's base path, "/fhir" */
    unsigned max_attempts;    /* rest-hook attempts per notification before dead-letter (0 = 6) */
    unsigned backoff_ms;      /* delay before the first retry, doubled each time, capped at 5 min (0 = 1000) */
    unsigned timeout_ms;      /* one delivery request, connect included (0 = 10000) */
    /* rest-hook endpoints allowed: URL prefixes (e.g. "https://hooks.example.org/"). Endpoints on
     * loopback (127.0.0.0/8, localhost, [::1]) are always allowed; any other is refused at delivery
     * (dead-lettered at once, without a request) unless it starts with one of these. */
    const char *const *endpoints;
    size_t n_endpoints;
    /* Authorization of websocket binds. NULL = authorization is off: "bind {id}" needs no token. */
    bv_notify_auth_fn auth;
    void *auth_ctx;
} bv_notify_options;

int bv_notify_start(const bv_notify_options *opt, bv_notify **out, char *err, size_t errlen);
/* Stops the threads (an in-flight delivery is aborted and stays in the outbox). Call after
 * bv_http_stop (websocket connections call into the module until then). */
void bv_notify_stop(bv_notify *n);
/* The websocket endpoint for bv_http_options.ws (lives as long as n). */
const bv_ws_handler *bv_notify_ws_handler(bv_notify *n);

/* Counters (for tests and /healthz-style reporting). */
typedef struct {
    uint64_t matched;         /* notifications produced */
    uint64_t ws_pings;        /* websocket pings sent */
    uint64_t delivered;       /* rest-hook deliveries that got a 2xx */
    uint64_t retries;         /* rest-hook attempts that failed and were rescheduled */
    uint64_t dead;            /* notifications dead-lettered */
    uint64_t pending;         /* rest-hook notifications in the outbox now */
} bv_notify_stats;
void bv_notify_get_stats(bv_notify *n, bv_notify_stats *out);

/* Called by the API for every Subscription it is about to store (create, update, transaction
 * entry): checks what the module needs (criteria parses as a search on a known type, channel type
 * rest-hook or websocket, an http(s) endpoint for rest-hook, payload absent or JSON, headers
 * "Name: value") and sets status "requested" to "active". Returns the number of errors added to oo. */
size_t bv_notify_check_subscription(bv_arena *a, json_value *res, bv_outcome *oo);

#endif
