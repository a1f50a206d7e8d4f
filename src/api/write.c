/* Preparing resources for a write: parse, validate, extract index rows, and stamp meta. */
#include "internal.h"
#include "bevan/care.h"
#include "bevan/notify.h"

#include <stdio.h>
#include <string.h>

int api_parse_body(api_ctx *c, json_value **out)
{
    if (c->req->body_len == 0) {
        api_error(c, 400, "required", NULL, "a resource body is required");
        return -1;
    }
    json_error err;
    int rc = json_parse(c->a, c->req->body, c->req->body_len, NULL, out, &err);
    if (rc == BV_ETOOBIG || err.too_big) {
        api_error(c, 413, "too-costly", NULL, "body too large: %s", err.message);
        return -1;
    }
    if (rc) {
        api_error(c, 400, "structure", NULL, "malformed JSON at line %zu column %zu: %s", err.line, err.column,
                  err.message);
        return -1;
    }
    if (!json_is(*out, JSON_OBJECT)) {
        api_error(c, 400, "structure", NULL, "the body must be a JSON object (a FHIR resource)");
        return -1;
    }
    return 0;
}

int api_prepare(api_ctx *c, json_value *res, const char *expected_type, bool allow_missing_id,
                bv_outcome *oo)
{
    const char *rt = json_get_str(res, "resourceType");
    if (!rt) {
        bv_outcome_add(oo, BV_SEV_ERROR, "required", "resourceType", "resourceType is missing");
        return -1;
    }
    if (expected_type && strcmp(rt, expected_type) != 0) {
        bv_outcome_add(oo, BV_SEV_ERROR, "invalid", "resourceType",
                       "resourceType '%s' does not match the URL's type '%s'", rt, expected_type);
        return -1;
    }
    bv_validate_opts vo = {.allow_missing_id = allow_missing_id, .check_nhs_number = c->api->check_nhs_number};
    if (bv_fhir_validate(res, expected_type, &vo, oo) > 0) return -1;
    /* virtual wards (docs/ward.md): implausible vital signs and invalid monitoring plans are 422 */
    if (bv_care_check_write(c->a, res, oo) > 0) return -1;
    /* Subscriptions: what the notify module needs to serve them; requested -> active */
    if (strcmp(rt, "Subscription") == 0 && bv_notify_check_subscription(c->a, res, oo) > 0) return -1;
    return 0;
}

const char *api_finalize(bv_arena *a, json_value *res, const char *id, int64_t version, int64_t last_updated_ms,
                         size_t *len_out)
{
    /* resourceType, id and meta lead the object so stored bodies read naturally. */
    json_remove(res, "id");
    json_set_at(a, res, 1, "id", json_new_string(a, id));
    json_value *meta = json_get(res, "meta");
    if (!json_is(meta, JSON_OBJECT)) {
        meta = json_new(a, JSON_OBJECT);
    } else {
        json_remove(res, "meta");
    }
    char vbuf[24], ts[40];
    snprintf(vbuf, sizeof vbuf, "%lld", (long long)version);
    bv_format_instant(last_updated_ms, ts, sizeof ts);
    json_remove(meta, "versionId");
    json_remove(meta, "lastUpdated");
    json_set_at(a, meta, 0, "versionId", json_new_string(a, vbuf));
    json_set_at(a, meta, 1, "lastUpdated", json_new_string(a, ts));
    json_set_at(a, res, 2, "meta", meta);
    bv_buf b;
    bv_buf_init(&b, 0);
    json_write(&b, res, false);
    const char *out = bv_arena_strndup(a, b.data ? b.data : "", b.len);
    *len_out = b.len;
    bv_buf_free(&b);
    return out;
}

#define INSTANT_LEN 24 /* bv_format_instant: YYYY-MM-DDThh:mm:ss.sssZ */

int api_preserialize(bv_arena *a, json_value *res, const char *id, api_preserialized *out)
{
    out->body = (char *)api_finalize(a, res, id, 1, 0, &out->len); /* arena memory of this request */
    /* The first "lastUpdated":" is meta's: only resourceType and id (never holding such bytes:
     * quotes inside strings are escaped) come before meta. */
    static const char key[] = "\"lastUpdated\":\"";
    const char *k = NULL;
    for (size_t i = 0; !k && i + sizeof key - 1 <= out->len; i++)
        if (out->body[i] == '"' && memcmp(out->body + i, key, sizeof key - 1) == 0) k = out->body + i;
    if (!k || (size_t)(k - out->body) + sizeof key - 1 + INSTANT_LEN > out->len) {
        out->body = NULL;
        return -1;
    }
    out->lu_off = (size_t)(k - out->body) + sizeof key - 1;
    return 0;
}

const char *api_stamp(api_preserialized *p, int64_t last_updated_ms)
{
    char ts[40];
    bv_format_instant(last_updated_ms, ts, sizeof ts);
    memcpy(p->body + p->lu_off, ts, INSTANT_LEN);
    return p->body;
}
