/* Private to src/notify. */
#ifndef BEVAN_NOTIFY_INTERNAL_H
#define BEVAN_NOTIFY_INTERNAL_H

#include "bevan/notify.h"

#include <stdatomic.h>

/* An active Subscription, parsed (everything lives in its own arena). */
typedef struct bv__sub {
    bv_arena *a;
    char id[BV_MAX_ID_LEN + 1];
    int64_t seq;              /* the stored version's seq: only later changes are matched */
    int64_t end_ms;           /* Subscription.end (0 = none) */
    const char *type;         /* criteria's resource type */
    bv_search *search;        /* criteria */
    bool simple;              /* matched in memory (match.c), no search */
    bool websocket;
    const char *endpoint;     /* rest-hook */
    bool full_resource;       /* payload present: PUT the resource */
    const char **headers;
    size_t n_headers;
} bv__sub;

int bv__notify_parse_criteria(bv_arena *a, const char *criteria, const char **type, bv_search **search, bv_outcome *oo);
bv__sub *bv__sub_from_record(const bv_record *r);
/* match.c: can criteria be decided from a resource's own index rows? And do they match? */
bool bv__match_is_simple(const bv_search *s);
bool bv__match_rows(const bv_search *s, const char *id, const bv_index_row *rows, size_t n);
void bv__sub_free(bv__sub *s);

/* One rest-hook delivery attempt (deliver.c). status = HTTP status or 0 (no answer; why says). */
typedef struct {
    const char *url;
    const char *method;       /* "POST" or "PUT" */
    const char *body;         /* NULL = empty */
    size_t body_len;
    const char *const *headers;
    size_t n_headers;
    unsigned timeout_ms;
    const atomic_bool *abort; /* set: give up at once */
} bv__delivery;
typedef struct bv__http_client bv__http_client;
bv__http_client *bv__http_client_new(void);
void bv__http_client_free(bv__http_client *c);
int bv__http_deliver(bv__http_client *c, const bv__delivery *d, char *why, size_t whylen);

#endif
