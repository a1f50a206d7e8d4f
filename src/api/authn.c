/* Authentication of API requests: bearer tokens, query-string tokens refused, revocation,
 * principal set-up (patient in context, proxy Consent, staff role), break-glass reason. */
#include "authz.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_protected(api_ctx *c)
{
    const char *path = c->req->path, *bp = c->api->base_path;
    size_t bl = strlen(bp);
    if (strncmp(path, bp, bl) != 0 || (path[bl] != '/' && path[bl] != '\0')) return false;
    const char *rest = path + bl;
    bool get = strcmp(c->req->method, "GET") == 0 || strcmp(c->req->method, "HEAD") == 0;
    if (get && (strcmp(rest, "/metadata") == 0 || strcmp(rest, "/metadata/") == 0 ||
                strcmp(rest, "/.well-known/smart-configuration") == 0))
        return false;
    return true;
}

static void unauthorized(api_ctx *c, const char *error, const char *desc)
{
    char hdr[400];
    if (error)
        snprintf(hdr, sizeof hdr, "Bearer realm=\"bevan\", error=\"%s\", error_description=\"%s\"", error, desc);
    else
        snprintf(hdr, sizeof hdr, "Bearer realm=\"bevan\"");
    bv_response_header(c->resp, "WWW-Authenticate", hdr);
    api_error(c, 401, "login", NULL, "%s", desc);
}

static bool has_query_token(const bv_request *r)
{
    for (size_t i = 0; i < r->n_query; i++)
        if (strcmp(r->query[i].name, "access_token") == 0) return true;
    return false;
}

static const char *trim_reason(bv_arena *a, const char *s)
{
    if (!s) return NULL;
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strnlen(s, 500);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (!n) return NULL;
    char *out = bv_arena_strndup(a, s, n);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    return out;
}

int authn_begin(api_ctx *c)
{
    api_authz_cfg *cfg = c->api->az;
    if (!cfg) return 0;
    if (has_query_token(c->req)) {
        /* RFC 6750 2.3 is not offered: URLs end up in logs, histories and Referer headers */
        unauthorized(c, "invalid_request", "access tokens are not accepted in the query string; send an Authorization header");
        return -1;
    }
    if (!is_protected(c)) return 0;
    const char *h = api_header(c, "Authorization");
    if (!h || !*h) {
        unauthorized(c, NULL, "this server needs a bearer token (Authorization: Bearer ...)");
        return -1;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        unauthorized(c, "invalid_request", "the Authorization header must use the Bearer scheme");
        return -1;
    }
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    api_az *z = bv_arena_calloc(c->a, 1, sizeof *z);
    char why[200];
    int rc = bv_auth_verify(cfg->auth, c->a, tok, bv_now_ms() / 1000, &z->p, why, sizeof why);
    if (rc) {
        audit_auth_failure(c, why);
        unauthorized(c, "invalid_token", why);
        return -1;
    }
    const char *v;
    if (z->p.jti && bv_store_kv_get(c->api->store, c->a, bv_arena_printf(c->a, "auth.revoked.%s", z->p.jti), &v) == BV_OK) {
        audit_auth_failure(c, "token revoked");
        unauthorized(c, "invalid_token", "the token has been revoked");
        return -1;
    }
    c->az = z;
    const char *fu = z->p.fhir_user;
    bool any_user = false;
    for (size_t i = 0; i < z->p.n_scopes; i++) any_user |= z->p.scopes[i].ctx == BV_SCOPE_USER;
    if (fu && bv_starts_with(fu, "Patient/")) {
        z->self_patient = fu + 8;
        if (z->p.patient && strcmp(z->p.patient, z->self_patient) != 0) {
            c->az = NULL;
            unauthorized(c, "invalid_token", "the token's patient and fhirUser disagree");
            return -1;
        }
    } else if (fu && bv_starts_with(fu, "RelatedPerson/")) {
        /* proxy: acts for the patient in context only while an active Consent names it */
        if (!z->p.patient) {
            c->az = NULL;
            unauthorized(c, "invalid_token", "a RelatedPerson token needs the patient it acts for");
            return -1;
        }
        bv_param ps[3] = {{"patient", bv_arena_printf(c->a, "Patient/%s", z->p.patient)}, {"actor", fu}, {"status", "active"}};
        bv_search_request sr;
        memset(&sr, 0, sizeof sr);
        bv_outcome oo;
        bv_outcome_init(&oo, c->a);
        bv_record *recs;
        size_t n = 0;
        if (bv_fhir_parse_search(c->a, "Consent", ps, 3, true, &sr, &oo) == BV_OK) {
            sr.search.count = 1;
            bv_store_search(c->api->store, c->a, &sr.search, &recs, &n, NULL);
        }
        if (n == 0) {
            z->denied = true;
            z->reason = "no active proxy Consent";
            api_error(c, 403, "forbidden", NULL, "%s has no active proxy Consent for Patient/%s", fu, z->p.patient);
            return -1;
        }
        z->self_patient = z->p.patient;
    } else {
        z->self_patient = NULL;
        if (any_user) {
            const char *rn = z->p.role ? z->p.role : cfg->policy.default_role;
            for (size_t i = 0; i < cfg->policy.n_roles; i++)
                if (rn && strcmp(cfg->policy.roles[i].name, rn) == 0) z->role = &cfg->policy.roles[i];
            if (!z->role) {
                z->denied = true;
                z->reason = "unknown role";
                api_error(c, 403, "forbidden", NULL, "the role '%s' is not in this server's policy", rn ? rn : "");
                return -1;
            }
        }
    }
    /* patient/ scopes act for the patient in context */
    if (!z->self_patient && z->p.patient) {
        bool any_patient = false;
        for (size_t i = 0; i < z->p.n_scopes; i++) any_patient |= z->p.scopes[i].ctx == BV_SCOPE_PATIENT;
        if (any_patient && !any_user) z->self_patient = z->p.patient;
        else if (any_patient) {
            /* staff with a patient launched: user/ scopes are the staff's, patient/ ones the patient's;
             * keep it simple and safe: patient/ scopes are ignored for staff tokens */
            size_t k = 0;
            for (size_t i = 0; i < z->p.n_scopes; i++)
                if (z->p.scopes[i].ctx != BV_SCOPE_PATIENT) z->p.scopes[k++] = z->p.scopes[i];
            z->p.n_scopes = k;
        }
    }
    z->btg_reason = trim_reason(c->a, api_header(c, "X-Break-Glass-Reason"));
    return 0;
}

void authn_end(api_ctx *c)
{
    if (!c->az || c->az->audited) {
        if (c->az && c->resp->status >= 400) audit_request(c);
        return;
    }
    audit_request(c);
}
