/* Subscription resources: the checks made when one is stored, and the parsed form the
 * dispatcher matches changes against. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool mime_json(const char *p)
{
    size_t n = strcspn(p, "; ");
    return bv_strneq_lit(p, n, "application/fhir+json") || bv_strneq_lit(p, n, "application/json");
}

/* "Name: value": a token name, no CR/LF anywhere. */
static bool header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h) return false;
    for (const char *p = h; p < colon; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    for (const char *p = colon; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == '\0') return false;
    return strlen(h) <= 4096;
}

int bv__notify_parse_criteria(bv_arena *a, const char *criteria, const char **type, bv_search **search, bv_outcome *oo)
{
    const char *q = strchr(criteria, '?');
    size_t tl = q ? (size_t)(q - criteria) : strlen(criteria);
    char *t = bv_arena_strndup(a, criteria, tl);
    if (!fhir_is_resource_type(t)) {
        bv_outcome_add(oo, BV_SEV_ERROR, "value", "Subscription.criteria",
                       "criteria must start with a resource type ('Observation?code=...'), got '%.80s'", criteria);
        return -1;
    }
    bv_param *ps = NULL;
    size_t n = 0;
    if (q && q[1]) {
        int rc = bv_fhir_parse_query_string(a, q + 1, &ps, &n);
        if (rc == BV_ETOOBIG) {
            bv_outcome_add(oo, BV_SEV_ERROR, "too-costly", "Subscription.criteria", "too many criteria parameters");
            return -1;
        }
        if (rc) {
            bv_outcome_add(oo, BV_SEV_ERROR, "value", "Subscription.criteria", "criteria has a bad %%-escape");
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *nm = ps[i].name;
        if (bv_starts_with(nm, "_include") || bv_starts_with(nm, "_revinclude") || strcmp(nm, "_sort") == 0 ||
            strcmp(nm, "_count") == 0 || strcmp(nm, "_summary") == 0 || strcmp(nm, "_elements") == 0 ||
            strcmp(nm, "_total") == 0 || strcmp(nm, "_cursor") == 0 || strcmp(nm, "_offset") == 0 ||
            strcmp(nm, "_format") == 0 || strcmp(nm, "_pretty") == 0 || strcmp(nm, "_contained") == 0) {
            bv_outcome_add(oo, BV_SEV_ERROR, "not-supported", "Subscription.criteria",
                           "'%s' shapes a result and means nothing in Subscription criteria", nm);
            return -1;
        }
    }
    bv_search_request *sr = bv_arena_calloc(a, 1, sizeof *sr);
    bv_outcome tmp;
    bv_outcome_init(&tmp, a);
    if (bv_fhir_parse_search(a, t, ps, n, true, sr, &tmp)) {
        for (size_t i = 0; i < tmp.n; i++)
            bv_outcome_add(oo, tmp.issues[i].severity, tmp.issues[i].code, "Subscription.criteria", "criteria: %s",
                           tmp.issues[i].diagnostics ? tmp.issues[i].diagnostics : "invalid");
        if (!tmp.n_errors) bv_outcome_add(oo, BV_SEV_ERROR, "value", "Subscription.criteria", "invalid criteria");
        return -1;
    }
    *type = t;
    *search = &sr->search;
    return 0;
}

size_t bv_notify_check_subscription(bv_arena *a, json_value *res, bv_outcome *oo)
{
    size_t before = oo->n_errors;
    const char *criteria = json_get_str(res, "criteria");
    if (!criteria || !*criteria) {
        bv_outcome_add(oo, BV_SEV_ERROR, "required", "Subscription.criteria", "criteria is required");
    } else {
        const char *t;
        bv_search *s;
        bv__notify_parse_criteria(a, criteria, &t, &s, oo);
    }
    json_value *ch = json_get(res, "channel");
    const char *ct = json_get_str(ch, "type");
    if (!ct) {
        bv_outcome_add(oo, BV_SEV_ERROR, "required", "Subscription.channel.type", "channel.type is required");
    } else if (strcmp(ct, "rest-hook") == 0) {
        const char *ep = json_get_str(ch, "endpoint");
        if (!ep || !(bv_starts_with(ep, "http://") || bv_starts_with(ep, "https://")) || strlen(ep) > 2048 ||
            strpbrk(ep, " \r\n\t"))
            bv_outcome_add(oo, BV_SEV_ERROR, "value", "Subscription.channel.endpoint",
                           "a rest-hook channel needs an http:// or https:// endpoint");
    } else if (strcmp(ct, "websocket") == 0) {
        /* the client connects to us: no endpoint needed */
    } else {
        bv_outcome_add(oo, BV_SEV_ERROR, "not-supported", "Subscription.channel.type",
                       "channel type '%s' is not supported (rest-hook and websocket are)", ct);
    }
    const char *payload = json_get_str(ch, "payload");
    if (payload && !mime_json(payload))
        bv_outcome_add(oo, BV_SEV_ERROR, "not-supported", "Subscription.channel.payload",
                       "payload '%s' is not supported: leave it out (empty notification) or use application/fhir+json",
                       payload);
    json_value *hs = json_get(ch, "header");
    if (json_count(hs) > BV_NOTIFY_MAX_HEADERS)
        bv_outcome_add(oo, BV_SEV_ERROR, "too-costly", "Subscription.channel.header", "at most %d headers",
                       BV_NOTIFY_MAX_HEADERS);
    for (size_t i = 0; i < json_count(hs); i++) {
        const char *h = json_str(json_at(hs, i));
        if (!h || !header_ok(h))
            bv_outcome_add(oo, BV_SEV_ERROR, "value", "Subscription.channel.header",
                           "channel.header[%zu] must be 'Name: value' on one line", i);
    }
    if (oo->n_errors > before) return oo->n_errors - before;
    const char *st = json_get_str(res, "status");
    if (bv_streq(st, "requested")) json_set(a, res, "status", json_new_string(a, "active"));
    return 0;
}

/* The parsed form of a stored Subscription; NULL when it is not active (or not usable). */
bv__sub *bv__sub_from_record(const bv_record *r)
{
    if (r->deleted || !r->body) return NULL;
    bv_arena *a = bv_arena_new(4096);
    json_value *v;
    json_error je;
    if (json_parse(a, r->body, r->body_len, NULL, &v, &je) != BV_OK || !bv_streq(json_get_str(v, "status"), "active")) {
        bv_arena_free(a);
        return NULL;
    }
    bv__sub *s = bv_arena_calloc(a, 1, sizeof *s);
    s->a = a;
    snprintf(s->id, sizeof s->id, "%s", r->id);
    s->seq = r->seq;
    const char *end = json_get_str(v, "end");
    int64_t lo, hi;
    if (end && bv_fhir_date_range(end, &lo, &hi) == BV_OK) s->end_ms = hi;
    bv_outcome oo;
    bv_outcome_init(&oo, a);
    const char *criteria = json_get_str(v, "criteria");
    if (!criteria || bv__notify_parse_criteria(a, criteria, &s->type, &s->search, &oo)) {
        bv_arena_free(a);
        return NULL;
    }
    s->simple = bv__match_is_simple(s->search);
    json_value *ch = json_get(v, "channel");
    const char *ct = json_get_str(ch, "type");
    s->websocket = bv_streq(ct, "websocket");
    if (!s->websocket && !bv_streq(ct, "rest-hook")) {
        bv_arena_free(a);
        return NULL;
    }
    s->endpoint = json_get_str(ch, "endpoint");
    if (!s->websocket && !s->endpoint) {
        bv_arena_free(a);
        return NULL;
    }
    s->full_resource = json_get_str(ch, "payload") != NULL;
    json_value *hs = json_get(ch, "header");
    s->n_headers = json_count(hs) > BV_NOTIFY_MAX_HEADERS ? BV_NOTIFY_MAX_HEADERS : json_count(hs);
    s->headers = bv_arena_calloc(a, s->n_headers + 1, sizeof *s->headers);
    for (size_t i = 0; i < s->n_headers; i++) s->headers[i] = json_str(json_at(hs, i));
    return s;
}

void bv__sub_free(bv__sub *s)
{
    if (s) bv_arena_free(s->a);
}
