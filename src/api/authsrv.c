/* Bevan's own authorization server (the embedded default; an external identity provider can be
 * trusted instead with --trust-issuer):
 *   GET  /.well-known/smart-configuration (also under the FHIR base)
 *   GET  /auth/jwks.json                  the public key of Bevan's signing key
 *   POST /auth/token                      client_credentials + private_key_jwt (SMART Backend
 *                                         Services), authorization_code + PKCE S256, refresh_token
 *                                         (rotated on every use; a reused one ends its family)
 *   GET  /auth/authorize, POST /auth/authorize   login page for local accounts (Argon2id)
 *   POST /auth/revoke                     revocation (RFC 7009), persisted
 * Registered clients, local users, codes, assertion jtis and revocations live in the store's kv
 * table (auth.client.*, auth.user.*, auth.code.*, auth.jti.*, auth.revoked.*, auth.refresh.* keyed
 * by the SHA-256 of the refresh token, never the token itself). */
#include "authz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODE_TTL_S 300           /* authorization codes live 5 minutes and work once */
#define ASSERTION_MAX_S 300      /* client assertion lifetime at most 5 minutes */
#define USER_TOKEN_TTL_S 3600
#define SYSTEM_TOKEN_TTL_S 900
#define OFFLINE_REFRESH_TTL_S (30 * 24 * 3600) /* offline_access: 30 days from sign-in, not extended */
#define ONLINE_REFRESH_TTL_S (12 * 3600)       /* online_access: one 12-hour working session */

static const char *origin_of(api_ctx *c)
{
    /* the configured base URL without the FHIR path */
    const char *b = bv_auth_audience(c->api->az->auth);
    size_t bl = strlen(b), pl = strlen(c->api->base_path);
    if (bl >= pl && strcmp(b + bl - pl, c->api->base_path) == 0) return bv_arena_strndup(c->a, b, bl - pl);
    return b;
}

static void oauth_error(api_ctx *c, int status, const char *err, const char *desc)
{
    /* failed client authentication and refused grants are authentication failures: audited */
    if (status == 401 || strcmp(err, "invalid_grant") == 0 || strcmp(err, "invalid_client") == 0)
        audit_auth_failure(c, bv_arena_printf(c->a, "%s: %s", err, desc));
    c->resp->status = status;
    c->resp->content_type = "application/json";
    bv_buf_reset(&c->resp->body);
    bv_buf_puts(&c->resp->body, "{\"error\":");
    json_write_string(&c->resp->body, err, strlen(err));
    bv_buf_puts(&c->resp->body, ",\"error_description\":");
    json_write_string(&c->resp->body, desc, strlen(desc));
    bv_buf_putc(&c->resp->body, '}');
    bv_response_header(c->resp, "Cache-Control", "no-store");
    bv_response_header(c->resp, "Pragma", "no-cache");
}

static void smart_config(api_ctx *c)
{
    const char *o = origin_of(c);
    bv_buf *b = &c->resp->body;
    bv_buf_reset(b);
    c->resp->content_type = "application/json";
    c->resp->status = 200;
    bv_buf_printf(b,
                  "{\"issuer\":\"%s\",\"jwks_uri\":\"%s/auth/jwks.json\","
                  "\"authorization_endpoint\":\"%s/auth/authorize\",\"token_endpoint\":\"%s/auth/token\","
                  "\"revocation_endpoint\":\"%s/auth/revoke\","
                  "\"token_endpoint_auth_methods_supported\":[\"private_key_jwt\",\"none\"],"
                  "\"token_endpoint_auth_signing_alg_values_supported\":[\"RS384\",\"ES384\",\"RS256\",\"ES256\"],"
                  "\"grant_types_supported\":[\"authorization_code\",\"client_credentials\",\"refresh_token\"],"
                  "\"scopes_supported\":[\"openid\",\"fhirUser\",\"launch/patient\",\"offline_access\",\"online_access\","
                  "\"patient/*.rs\",\"user/*.rs\",\"user/*.cruds\",\"system/*.rs\"],"
                  "\"response_types_supported\":[\"code\"],"
                  "\"code_challenge_methods_supported\":[\"S256\"],"
                  "\"capabilities\":[\"launch-standalone\",\"client-public\",\"client-confidential-asymmetric\","
                  "\"context-standalone-patient\",\"permission-patient\",\"permission-user\",\"permission-v1\","
                  "\"permission-v2\",\"permission-offline\",\"permission-online\",\"sso-openid-connect\"]}",
                  bv_auth_issuer(c->api->az->auth), o, o, o, o);
}

/* ---- kv helpers ---- */
typedef struct {
    const char *key, *value;
} kv_put;

static int kv_put_run(bv_store_txn *t, void *ctx)
{
    kv_put *p = ctx;
    return bv_txn_kv_set(t, p->key, p->value);
}

static int kv_set(api_ctx *c, const char *key, const char *value)
{
    kv_put p = {key, value};
    return bv_store_write(c->api->store, kv_put_run, &p);
}

/* take-once: get and delete in one unit; or set only when absent (replay check) */
typedef struct {
    bv_arena *a;
    const char *key;
    const char *value;        /* set-if-absent value; NULL = take */
    const char *got;
    bool existed;
} kv_once;

static int kv_once_run(bv_store_txn *t, void *ctx)
{
    kv_once *o = ctx;
    const char *v;
    o->existed = bv_txn_kv_get(t, o->a, o->key, &v) == BV_OK;
    if (o->existed) o->got = v;
    if (o->value) return o->existed ? 0 : bv_txn_kv_set(t, o->key, o->value);
    return o->existed ? bv_txn_kv_set(t, o->key, NULL) : 0;
}

static json_value *kv_json(api_ctx *c, const char *key)
{
    const char *v;
    json_value *j;
    json_error je;
    if (bv_store_kv_get(c->api->store, c->a, key, &v) != BV_OK) return NULL;
    if (json_parse(c->a, v, strlen(v), NULL, &j, &je)) return NULL;
    return j;
}

/* ---- scopes: what a client or user may be given ---- */
static bool scope_covered(bv_arena *a, const char *req, size_t len, const char *allowed)
{
    bv_scope rq;
    if (!bv_scope_parse(a, req, len, &rq)) {
        /* identity/context scopes pass through */
        return bv_strneq_lit(req, len, "openid") || bv_strneq_lit(req, len, "fhirUser") ||
               bv_strneq_lit(req, len, "launch/patient") || bv_strneq_lit(req, len, "profile") ||
               bv_strneq_lit(req, len, "offline_access") || bv_strneq_lit(req, len, "online_access");
    }
    bv_scope *al;
    size_t n;
    bv_scopes_parse(a, allowed ? allowed : "", &al, &n);
    for (size_t i = 0; i < n; i++) {
        if (al[i].ctx != rq.ctx) continue;
        if (strcmp(al[i].type, "*") != 0 && strcmp(al[i].type, rq.type) != 0) continue;
        if ((al[i].perms & rq.perms) != rq.perms) continue;
        if (al[i].query && !bv_streq(al[i].query, rq.query)) continue;
        return true;
    }
    return false;
}

static const char *grant_scopes(api_ctx *c, const char *requested, const char *allowed)
{
    bv_buf b;
    bv_buf_init(&b, 0);
    const char *p = requested ? requested : "";
    while (*p) {
        while (*p == ' ') p++;
        size_t l = strcspn(p, " ");
        if (l && scope_covered(c->a, p, l, allowed)) {
            if (b.len) bv_buf_putc(&b, ' ');
            bv_buf_append(&b, p, l);
        }
        p += l;
    }
    const char *out = bv_arena_strdup(c->a, bv_buf_cstr(&b));
    bv_buf_free(&b);
    return out;
}

static void add_str(bv_arena *a, json_value *o, const char *k, const char *v)
{
    if (v && *v) json_set(a, o, k, json_new_string(a, v));
}

/* Mints an access token and answers the token response. */
static void issue(api_ctx *c, const char *sub, const char *client_id, const char *scope, const json_value *user,
                  int ttl, const char *refresh_token)
{
    bv_arena *a = c->a;
    json_value *cl = json_new(a, JSON_OBJECT);
    int64_t now = bv_now_ms() / 1000;
    add_str(a, cl, "iss", bv_auth_issuer(c->api->az->auth));
    add_str(a, cl, "aud", bv_auth_audience(c->api->az->auth));
    add_str(a, cl, "sub", sub);
    add_str(a, cl, "client_id", client_id);
    json_set(a, cl, "scope", json_new_string(a, scope));
    json_set(a, cl, "iat", json_new_int(a, now));
    json_set(a, cl, "exp", json_new_int(a, now + ttl));
    add_str(a, cl, "jti", bv_random_token(a, 16));
    const char *patient = json_get_str(user, "patient");
    add_str(a, cl, "fhirUser", json_get_str(user, "fhirUser"));
    add_str(a, cl, "patient", patient);
    add_str(a, cl, "role", json_get_str(user, "role"));
    add_str(a, cl, "organization", json_get_str(user, "organization"));
    /* a client registered for a secondary use (research, planning) always carries it: the
     * national data opt-out then applies to everything it asks */
    const char *purpose = json_get_str(user, "purpose_of_use");
    if (purpose) {
        json_value *arr = json_new(a, JSON_ARRAY);
        json_push(a, arr, json_new_string(a, purpose));
        json_set(a, cl, "purpose_of_use", arr);
    }
    char *tok = bv_auth_sign(c->api->az->auth, a, cl);
    if (!tok) {
        oauth_error(c, 500, "server_error", "cannot sign");
        return;
    }
    bv_buf *b = &c->resp->body;
    bv_buf_reset(b);
    c->resp->status = 200;
    c->resp->content_type = "application/json";
    bv_buf_puts(b, "{\"access_token\":");
    json_write_string(b, tok, strlen(tok));
    bv_buf_printf(b, ",\"token_type\":\"Bearer\",\"expires_in\":%d,\"scope\":", ttl);
    json_write_string(b, scope, strlen(scope));
    if (patient) {
        bv_buf_puts(b, ",\"patient\":");
        json_write_string(b, patient, strlen(patient));
    }
    const char *fu = json_get_str(user, "fhirUser");
    if (fu) {
        bv_buf_puts(b, ",\"fhirUser\":");
        json_write_string(b, fu, strlen(fu));
    }
    if (refresh_token) {
        bv_buf_puts(b, ",\"refresh_token\":");
        json_write_string(b, refresh_token, strlen(refresh_token));
    }
    bv_buf_putc(b, '}');
    bv_response_header(c->resp, "Cache-Control", "no-store");
    bv_response_header(c->resp, "Pragma", "no-cache");
}

static const char *form(const bv_param *ps, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].name, name) == 0) return ps[i].value;
    return NULL;
}

static bool dup_param(const bv_param *ps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            if (strcmp(ps[i].name, ps[k].name) == 0) return true;
    return false;
}

/* SMART Backend Services: client_credentials with a private_key_jwt assertion. */
static void token_client_credentials(api_ctx *c, const bv_param *ps, size_t n)
{
    const char *at = form(ps, n, "client_assertion_type"), *as = form(ps, n, "client_assertion");
    if (!bv_streq(at, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") || !as) {
        oauth_error(c, 400, "invalid_client", "client_credentials needs a private_key_jwt client_assertion");
        return;
    }
    /* the client id is the assertion's iss: read it before verifying, to find the registered keys */
    const char *d1 = strchr(as, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    size_t pl = 0;
    unsigned char *pj = d1 && d2 ? bv_b64url_decode(c->a, d1 + 1, (size_t)(d2 - d1 - 1), &pl) : NULL;
    json_value *unverified;
    json_error je;
    if (!pj || json_parse(c->a, (const char *)pj, pl, NULL, &unverified, &je)) {
        oauth_error(c, 400, "invalid_client", "malformed client assertion");
        return;
    }
    const char *cid = json_get_str(unverified, "iss");
    json_value *client = cid && bv_fhir_valid_id(cid) ? kv_json(c, bv_arena_printf(c->a, "auth.client.%s", cid)) : NULL;
    if (!client || !json_get(client, "jwks")) {
        oauth_error(c, 401, "invalid_client", "unknown client");
        return;
    }
    bv_buf jb;
    bv_buf_init(&jb, 0);
    json_write(&jb, json_get(client, "jwks"), false);
    const char *jwks = bv_arena_strdup(c->a, bv_buf_cstr(&jb));
    bv_buf_free(&jb);
    json_value *pl2;
    char why[200];
    if (bv_jwt_verify_jwks(c->a, as, jwks, &pl2, why, sizeof why)) {
        oauth_error(c, 401, "invalid_client", why);
        return;
    }
    int64_t now = bv_now_ms() / 1000, exp = 0, iat = 0;
    json_value *ev = json_get(pl2, "exp"), *iv = json_get(pl2, "iat");
    const char *aud_want = bv_arena_printf(c->a, "%s/auth/token", origin_of(c));
    const char *jti = json_get_str(pl2, "jti");
    const char *aud = json_get_str(pl2, "aud");
    bool aud_ok = bv_streq(aud, aud_want);
    json_value *audv = json_get(pl2, "aud");
    for (size_t i = 0; !aud_ok && i < json_count(audv) && i < 8; i++) aud_ok = bv_streq(json_str(json_at(audv, i)), aud_want);
    if (!bv_streq(json_get_str(pl2, "sub"), cid) || !aud_ok) {
        oauth_error(c, 401, "invalid_client", "assertion iss and sub must be the client id, aud the token URL");
        return;
    }
    if (!json_number_to_i64(ev, &exp) || exp < now - BV_AUTH_SKEW_S) {
        oauth_error(c, 401, "invalid_client", "assertion has expired or has no exp");
        return;
    }
    if (iv && json_number_to_i64(iv, &iat) && iat > now + BV_AUTH_SKEW_S) {
        oauth_error(c, 401, "invalid_client", "assertion issued in the future");
        return;
    }
    if (exp > now + ASSERTION_MAX_S + BV_AUTH_SKEW_S) {
        oauth_error(c, 401, "invalid_client", "assertion lifetime is longer than 5 minutes");
        return;
    }
    if (!jti || !*jti || strlen(jti) > 200) {
        oauth_error(c, 401, "invalid_client", "assertion has no jti");
        return;
    }
    kv_once o = {c->a, bv_arena_printf(c->a, "auth.jti.%s|%s", cid, jti), bv_arena_printf(c->a, "%lld", (long long)exp),
                 NULL, false};
    if (bv_store_write(c->api->store, kv_once_run, &o)) {
        oauth_error(c, 500, "server_error", "storage error");
        return;
    }
    if (o.existed) {
        oauth_error(c, 401, "invalid_client", "assertion jti has been used before (replay)");
        return;
    }
    const char *scope = grant_scopes(c, form(ps, n, "scope"), json_get_str(client, "scope"));
    if (!*scope) {
        oauth_error(c, 400, "invalid_scope", "none of the requested scopes is allowed for this client");
        return;
    }
    issue(c, cid, cid, scope, client, SYSTEM_TOKEN_TTL_S, NULL);
}

/* The built-in public client bevan-web: redirect URIs are this server's /web/NAME.html pages. */
static bool redirect_ok(api_ctx *c, const char *client_id, const json_value *client, const char *uri)
{
    if (!uri) return false;
    if (bv_streq(client_id, "bevan-web")) {
        const char *o = bv_arena_printf(c->a, "%s/web/", origin_of(c));
        if (!bv_starts_with(uri, o)) return false;
        const char *page = uri + strlen(o);
        size_t l = strlen(page);
        if (l < 6 || strcmp(page + l - 5, ".html") != 0) return false;
        for (const char *p = page; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                  *p == '_' || (*p == '.' && p[1] != '.')))
                return false;
        return true;
    }
    json_value *ru = json_get(client, "redirect_uris");
    for (size_t i = 0; i < json_count(ru); i++)
        if (bv_streq(json_str(json_at(ru, i)), uri)) return true;
    return false;
}

static json_value *find_client(api_ctx *c, const char *cid)
{
    if (!cid || !bv_fhir_valid_id(cid)) return NULL;
    if (strcmp(cid, "bevan-web") == 0) {
        json_value *o = json_new(c->a, JSON_OBJECT);
        json_set(c->a, o, "client_id", json_new_string(c->a, "bevan-web"));
        return o;
    }
    return kv_json(c, bv_arena_printf(c->a, "auth.client.%s", cid));
}

/* The local account a stored grant (code or refresh token) was made for, read now; or answers
 * invalid_grant and returns NULL. */
static json_value *grant_account(api_ctx *c, const json_value *grant)
{
    json_value *user = kv_json(c, bv_arena_printf(c->a, "auth.user.%s", json_get_str(grant, "username")));
    if (!user) oauth_error(c, 400, "invalid_grant", "the account no longer exists");
    return user;
}

/* Whether a space-separated scope string holds one scope exactly. */
static bool scope_has(const char *scopes, const char *one)
{
    size_t ol = strlen(one);
    for (const char *p = scopes ? scopes : ""; *p;) {
        while (*p == ' ') p++;
        size_t l = strcspn(p, " ");
        if (l == ol && strncmp(p, one, l) == 0) return true;
        p += l;
    }
    return false;
}

/* asked if every scope in it is within the grant (one resource type within a wildcard grant; identity
 * and context scopes such as offline_access only if granted as such), else NULL */
static const char *subset_of(api_ctx *c, const char *asked, const char *granted)
{
    for (const char *p = asked; *p;) {
        while (*p == ' ') p++;
        size_t l = strcspn(p, " ");
        bv_scope sc;
        if (l && !(bv_scope_parse(c->a, p, l, &sc) ? scope_covered(c->a, p, l, granted)
                                                   : scope_has(granted, bv_arena_strndup(c->a, p, l))))
            return NULL;
        p += l;
    }
    return asked;
}

/* Stores a new refresh token's grant (by the token's hash) and returns the token, or answers 500. */
static const char *refresh_new(api_ctx *c, const char *cid, const char *username, const char *scope, int64_t exp,
                               const char *family)
{
    const char *tok = bv_random_token(c->a, 32);
    bv_buf b;
    bv_buf_init(&b, 0);
    bv_buf_printf(&b, "{\"exp\":%lld,\"client_id\":", (long long)exp);
    json_write_string(&b, cid, strlen(cid));
    bv_buf_puts(&b, ",\"username\":");
    json_write_string(&b, username, strlen(username));
    bv_buf_puts(&b, ",\"scope\":");
    json_write_string(&b, scope, strlen(scope));
    bv_buf_puts(&b, ",\"family\":");
    json_write_string(&b, family, strlen(family));
    bv_buf_putc(&b, '}');
    int rc = kv_set(c, bv_arena_printf(c->a, "auth.refresh.%s", bv_sha256_b64url(c->a, tok, strlen(tok))), bv_buf_cstr(&b));
    bv_buf_free(&b);
    if (rc) {
        oauth_error(c, 500, "server_error", "storage error");
        return NULL;
    }
    return tok;
}

static void token_authorization_code(api_ctx *c, const bv_param *ps, size_t n)
{
    const char *code = form(ps, n, "code"), *ru = form(ps, n, "redirect_uri"), *cv = form(ps, n, "code_verifier");
    const char *cid = form(ps, n, "client_id");
    if (!code || !ru || !cid) {
        oauth_error(c, 400, "invalid_request", "code, redirect_uri and client_id are required");
        return;
    }
    if (!cv || strlen(cv) < 43 || strlen(cv) > 128) {
        oauth_error(c, 400, "invalid_grant", "a PKCE code_verifier (43-128 characters) is required");
        return;
    }
    if (strlen(code) > 100) {
        oauth_error(c, 400, "invalid_grant", "unknown code");
        return;
    }
    kv_once o = {c->a, bv_arena_printf(c->a, "auth.code.%s", code), NULL, NULL, false};
    if (bv_store_write(c->api->store, kv_once_run, &o)) {
        oauth_error(c, 500, "server_error", "storage error");
        return;
    }
    json_value *cj;
    json_error je;
    if (!o.existed || json_parse(c->a, o.got, strlen(o.got), NULL, &cj, &je)) {
        oauth_error(c, 400, "invalid_grant", "unknown, used or expired code");
        return;
    }
    int64_t exp = 0;
    json_number_to_i64(json_get(cj, "exp"), &exp);
    if (exp < bv_now_ms() / 1000) {
        oauth_error(c, 400, "invalid_grant", "unknown, used or expired code");
        return;
    }
    if (!bv_streq(json_get_str(cj, "client_id"), cid) || !bv_streq(json_get_str(cj, "redirect_uri"), ru)) {
        oauth_error(c, 400, "invalid_grant", "client_id or redirect_uri differ from the authorization request");
        return;
    }
    if (!bv_streq(bv_sha256_b64url(c->a, cv, strlen(cv)), json_get_str(cj, "code_challenge"))) {
        oauth_error(c, 400, "invalid_grant", "code_verifier does not match the code_challenge");
        return;
    }
    json_value *user = grant_account(c, cj);
    if (!user) return;
    const char *scope = json_get_str(cj, "scope");
    const char *refresh = NULL;
    int64_t life = scope_has(scope, "offline_access") ? OFFLINE_REFRESH_TTL_S
                 : scope_has(scope, "online_access")  ? ONLINE_REFRESH_TTL_S
                                                      : 0;
    if (life) {
        refresh = refresh_new(c, cid, json_get_str(user, "username"), scope, bv_now_ms() / 1000 + life,
                              bv_random_token(c->a, 16));
        if (!refresh) return;
    }
    issue(c, json_get_str(user, "username"), cid, scope, user, USER_TOKEN_TTL_S, refresh);
}

/* refresh_token grant: in one write unit the token is taken, checked, and (only when it is good)
 * its successor stored; a token presented a second time means it was copied, so its whole family
 * is ended (OAuth 2.0 Security BCP, refresh token rotation). A refused refresh uses the token up. */
typedef struct {
    api_ctx *c;
    const char *key, *used_key, *next_key; /* the token's, its used marker's, the successor's */
    const char *cid, *asked;               /* the request's client_id and scope (NULL: as granted) */
    bool reused;                           /* a used token came back: its family is now revoked */
    int status;                            /* 0, or the refusal: status, error and description */
    const char *error, *desc;
    json_value *user;                      /* the account, read in the unit */
    const char *scope;                     /* the scope to grant (before the account's cut) */
} refresh_take;

static int refresh_refuse(refresh_take *r, int status, const char *error, const char *desc)
{
    r->status = status;
    r->error = error;
    r->desc = desc;
    return 0; /* the unit still commits: the token stays used up */
}

static int refresh_take_run(bv_store_txn *t, void *ctx)
{
    refresh_take *r = ctx;
    bv_arena *a = r->c->a;
    const char *v, *st;
    static const char GONE[] = "unknown, used or expired refresh token";
    if (bv_txn_kv_get(t, a, r->key, &v) != BV_OK) {
        if (bv_txn_kv_get(t, a, r->used_key, &v) == BV_OK) {
            r->reused = true;
            int rc = bv_txn_kv_set(t, bv_arena_printf(a, "auth.refresh.family.%s", v), "revoked");
            if (rc) return rc;
        }
        return refresh_refuse(r, 400, "invalid_grant", GONE);
    }
    json_value *g;
    json_error je;
    const char *fam = json_parse(a, v, strlen(v), NULL, &g, &je) ? NULL : json_get_str(g, "family");
    int rc = bv_txn_kv_set(t, r->key, NULL);
    if (!rc && fam) rc = bv_txn_kv_set(t, r->used_key, fam);
    if (rc) return rc;
    if (!fam || bv_txn_kv_get(t, a, bv_arena_printf(a, "auth.refresh.family.%s", fam), &st) == BV_OK)
        return refresh_refuse(r, 400, "invalid_grant", GONE);
    int64_t exp = 0;
    json_number_to_i64(json_get(g, "exp"), &exp);
    if (exp < bv_now_ms() / 1000) return refresh_refuse(r, 400, "invalid_grant", GONE);
    if (!bv_streq(json_get_str(g, "client_id"), r->cid))
        return refresh_refuse(r, 400, "invalid_grant", "the refresh token was issued to another client");
    const char *uv;
    if (bv_txn_kv_get(t, a, bv_arena_printf(a, "auth.user.%s", json_get_str(g, "username")), &uv) != BV_OK ||
        json_parse(a, uv, strlen(uv), NULL, &r->user, &je))
        return refresh_refuse(r, 400, "invalid_grant", "the account no longer exists");
    /* a narrower scope may be asked for; never a wider one */
    const char *granted = json_get_str(g, "scope");
    r->scope = r->asked ? subset_of(r->c, r->asked, granted) : granted;
    if (!r->scope) return refresh_refuse(r, 400, "invalid_scope", "the scope asked for is wider than the original grant");
    return bv_txn_kv_set(t, r->next_key, v); /* the successor: same grant, same family, same end */
}

static void token_refresh(api_ctx *c, const bv_param *ps, size_t n)
{
    const char *rt = form(ps, n, "refresh_token"), *cid = form(ps, n, "client_id");
    if (!rt || !cid) {
        oauth_error(c, 400, "invalid_request", "refresh_token and client_id are required");
        return;
    }
    if (strlen(rt) > 200) {
        oauth_error(c, 400, "invalid_grant", "unknown, used or expired refresh token");
        return;
    }
    const char *hash = bv_sha256_b64url(c->a, rt, strlen(rt));
    const char *next = bv_random_token(c->a, 32);
    refresh_take r = {.c = c,
                      .key = bv_arena_printf(c->a, "auth.refresh.%s", hash),
                      .used_key = bv_arena_printf(c->a, "auth.refresh.used.%s", hash),
                      .next_key = bv_arena_printf(c->a, "auth.refresh.%s", bv_sha256_b64url(c->a, next, strlen(next))),
                      .cid = cid,
                      .asked = form(ps, n, "scope")};
    if (bv_store_write(c->api->store, refresh_take_run, &r)) {
        oauth_error(c, 500, "server_error", "storage error");
        return;
    }
    if (r.reused) {
        bv_log(BV_LOG_WARN, "auth: a used refresh token was presented again: its family is revoked");
        audit_auth_failure(c, "a refresh token was used twice (possible theft): every token of its sign-in is revoked");
    }
    if (r.status) {
        oauth_error(c, r.status, r.error, r.desc);
        return;
    }
    /* never more than the account holds now */
    const char *scope = grant_scopes(c, r.scope, json_get_str(r.user, "scope"));
    issue(c, json_get_str(r.user, "username"), cid, scope, r.user, USER_TOKEN_TTL_S, next);
}

static void token_endpoint(api_ctx *c)
{
    const char *ct = api_header(c, "Content-Type");
    if (!ct || !bv_starts_with(ct, "application/x-www-form-urlencoded")) {
        oauth_error(c, 400, "invalid_request", "the token endpoint takes application/x-www-form-urlencoded");
        return;
    }
    bv_param *ps;
    size_t n;
    if (bv_fhir_parse_query_string(c->a, c->req->body, &ps, &n) || dup_param(ps, n)) {
        oauth_error(c, 400, "invalid_request", "malformed or repeated form parameters");
        return;
    }
    const char *gt = form(ps, n, "grant_type");
    if (bv_streq(gt, "client_credentials")) token_client_credentials(c, ps, n);
    else if (bv_streq(gt, "authorization_code")) token_authorization_code(c, ps, n);
    else if (bv_streq(gt, "refresh_token")) token_refresh(c, ps, n);
    else oauth_error(c, 400, "unsupported_grant_type",
                     "grant_type must be client_credentials, authorization_code or refresh_token");
}

/* ---- /auth/authorize: the login page ---- */
static void html_escape(bv_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': bv_buf_puts(b, "&lt;"); break;
        case '>': bv_buf_puts(b, "&gt;"); break;
        case '&': bv_buf_puts(b, "&amp;"); break;
        case '"': bv_buf_puts(b, "&quot;"); break;
        case '\'': bv_buf_puts(b, "&#39;"); break;
        default: bv_buf_putc(b, *s);
        }
    }
}

static const char *const AUTHZ_FIELDS[] = {"response_type", "client_id", "redirect_uri", "scope", "state",
                                           "code_challenge", "code_challenge_method", "aud"};

static void login_page(api_ctx *c, const bv_param *ps, size_t n, const char *error)
{
    bv_buf *b = &c->resp->body;
    bv_buf_reset(b);
    c->resp->status = error ? 401 : 200;
    c->resp->content_type = "text/html; charset=utf-8";
    bv_buf_puts(b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Bevan sign in</title>"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head><body>"
                   "<main><h1>Sign in to Bevan</h1>");
    if (error) {
        bv_buf_puts(b, "<p role=\"alert\">");
        html_escape(b, error);
        bv_buf_puts(b, "</p>");
    }
    bv_buf_puts(b, "<p>Application: <strong>");
    html_escape(b, form(ps, n, "client_id"));
    bv_buf_puts(b, "</strong><br>Access asked for: <code>");
    html_escape(b, form(ps, n, "scope"));
    bv_buf_puts(b, "</code></p><form method=\"post\" action=\"/auth/authorize\">");
    for (size_t i = 0; i < sizeof AUTHZ_FIELDS / sizeof *AUTHZ_FIELDS; i++) {
        const char *v = form(ps, n, AUTHZ_FIELDS[i]);
        if (!v) continue;
        bv_buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", AUTHZ_FIELDS[i]);
        html_escape(b, v);
        bv_buf_puts(b, "\">");
    }
    bv_buf_puts(b, "<p><label>User name <input name=\"username\" autocomplete=\"username\" required></label></p>"
                   "<p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" "
                   "required></label></p><p><button type=\"submit\">Sign in</button></p></form></main></body></html>");
    bv_response_header(c->resp, "Cache-Control", "no-store");
}

static void authorize_endpoint(api_ctx *c, bool post)
{
    bv_param *ps;
    size_t n;
    if (post) {
        if (bv_fhir_parse_query_string(c->a, c->req->body, &ps, &n)) {
            oauth_error(c, 400, "invalid_request", "malformed form");
            return;
        }
    } else {
        ps = c->req->query;
        n = c->req->n_query;
    }
    if (dup_param(ps, n)) {
        oauth_error(c, 400, "invalid_request", "repeated parameters");
        return;
    }
    const char *cid = form(ps, n, "client_id"), *ru = form(ps, n, "redirect_uri");
    json_value *client = find_client(c, cid);
    /* never redirect to an unverified URI: answer here */
    if (!client) { oauth_error(c, 400, "invalid_request", "unknown client_id"); return; }
    if (!redirect_ok(c, cid, client, ru)) {
        oauth_error(c, 400, "invalid_request", "redirect_uri is not registered for this client");
        return;
    }
    if (!bv_streq(form(ps, n, "response_type"), "code")) {
        oauth_error(c, 400, "unsupported_response_type", "response_type must be code");
        return;
    }
    const char *m = form(ps, n, "code_challenge_method"), *ch = form(ps, n, "code_challenge");
    if (!bv_streq(m, "S256") || !ch || strlen(ch) != 43) {
        oauth_error(c, 400, "invalid_request", "PKCE with code_challenge_method=S256 is required (plain is refused)");
        return;
    }
    const char *aud = form(ps, n, "aud");
    if (aud && !bv_streq(aud, bv_auth_audience(c->api->az->auth))) {
        oauth_error(c, 400, "invalid_request", "aud is not this server's FHIR base URL");
        return;
    }
    if (!post) { login_page(c, ps, n, NULL); return; }
    const char *un = form(ps, n, "username"), *pw = form(ps, n, "password");
    json_value *user = un && bv_fhir_valid_id(un) ? kv_json(c, bv_arena_printf(c->a, "auth.user.%s", un)) : NULL;
    /* verify even for unknown users so timing does not reveal which names exist */
    static const char DUMMY[] = "$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$"
                                "3xPcV3q8PvmKSmS1bnKZ0W1w6ZvG5HNEYm0vMSbqNgk";
    bool ok = bv_password_verify(user ? json_get_str(user, "password") : DUMMY, pw ? pw : "");
    if (!user || !ok) {
        bv_log(BV_LOG_WARN, "auth: failed sign-in");
        audit_auth_failure(c, "failed sign-in to a local account");
        login_page(c, ps, n, "The user name or password is wrong.");
        return;
    }
    const char *scope = grant_scopes(c, form(ps, n, "scope"), json_get_str(user, "scope"));
    const char *code = bv_random_token(c->a, 32);
    bv_buf cb;
    bv_buf_init(&cb, 0);
    bv_buf_printf(&cb, "{\"exp\":%lld,\"client_id\":", (long long)(bv_now_ms() / 1000 + CODE_TTL_S));
    json_write_string(&cb, cid, strlen(cid));
    bv_buf_puts(&cb, ",\"redirect_uri\":");
    json_write_string(&cb, ru, strlen(ru));
    bv_buf_puts(&cb, ",\"code_challenge\":");
    json_write_string(&cb, ch, strlen(ch));
    bv_buf_puts(&cb, ",\"scope\":");
    json_write_string(&cb, scope, strlen(scope));
    bv_buf_puts(&cb, ",\"username\":");
    json_write_string(&cb, un, strlen(un));
    bv_buf_putc(&cb, '}');
    int rc = kv_set(c, bv_arena_printf(c->a, "auth.code.%s", code), bv_buf_cstr(&cb));
    bv_buf_free(&cb);
    if (rc) { oauth_error(c, 500, "server_error", "storage error"); return; }
    const char *state = form(ps, n, "state");
    bv_buf loc;
    bv_buf_init(&loc, 0);
    bv_buf_printf(&loc, "%s%scode=%s", ru, strchr(ru, '?') ? "&" : "?", code);
    if (state) {
        bv_buf_puts(&loc, "&state=");
        for (const unsigned char *p = (const unsigned char *)state; *p; p++) {
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                *p == '_' || *p == '.' || *p == '~')
                bv_buf_putc(&loc, (char)*p);
            else
                bv_buf_printf(&loc, "%%%02X", *p);
        }
    }
    bv_response_header(c->resp, "Location", bv_buf_cstr(&loc));
    bv_buf_free(&loc);
    bv_response_header(c->resp, "Cache-Control", "no-store");
    c->resp->status = 302;
    c->resp->content_type = "text/plain; charset=utf-8";
    bv_buf_reset(&c->resp->body);
}

static void revoke_endpoint(api_ctx *c)
{
    bv_param *ps;
    size_t n;
    if (bv_fhir_parse_query_string(c->a, c->req->body, &ps, &n)) {
        oauth_error(c, 400, "invalid_request", "malformed form");
        return;
    }
    const char *tok = form(ps, n, "token");
    if (!tok) { oauth_error(c, 400, "invalid_request", "token is required"); return; }
    /* a refresh token (not a JWT): its whole sign-in ends */
    if (!strchr(tok, '.') && strlen(tok) <= 200) {
        const char *key = bv_arena_printf(c->a, "auth.refresh.%s", bv_sha256_b64url(c->a, tok, strlen(tok)));
        json_value *g = kv_json(c, key);
        const char *fam = json_get_str(g, "family");
        if (fam && (kv_set(c, bv_arena_printf(c->a, "auth.refresh.family.%s", fam), "revoked") || kv_set(c, key, NULL))) {
            oauth_error(c, 500, "server_error", "storage error");
            return;
        }
        if (fam) bv_log(BV_LOG_INFO, "auth: refresh token revoked");
    }
    /* only Bevan's own, correctly signed tokens are revoked here (even when expired) */
    bv_principal p;
    char why[200];
    if (bv_auth_verify(c->api->az->auth, c->a, tok, -1, &p, why, sizeof why) == BV_OK && p.own && p.jti) {
        if (kv_set(c, bv_arena_printf(c->a, "auth.revoked.%s", p.jti), "1")) {
            oauth_error(c, 500, "server_error", "storage error");
            return;
        }
        bv_log(BV_LOG_INFO, "auth: token revoked");
    }
    /* RFC 7009: 200 whatever the token was */
    c->resp->status = 200;
    c->resp->content_type = "application/json";
    bv_buf_reset(&c->resp->body);
    bv_buf_puts(&c->resp->body, "{}");
    bv_response_header(c->resp, "Cache-Control", "no-store");
}

bool authsrv_route(api_ctx *c)
{
    if (!c->api->az) return false;
    const char *p = c->req->path, *m = c->req->method;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    const char *wk = bv_arena_printf(c->a, "%s/.well-known/smart-configuration", c->api->base_path);
    if (strcmp(p, "/.well-known/smart-configuration") == 0 || strcmp(p, wk) == 0) {
        if (get) smart_config(c);
        else oauth_error(c, 405, "invalid_request", "GET only");
        return true;
    }
    if (!bv_starts_with(p, "/auth/")) return false;
    if (strcmp(p, "/auth/jwks.json") == 0 && get) {
        c->resp->status = 200;
        c->resp->content_type = "application/json";
        bv_buf_reset(&c->resp->body);
        bv_buf_puts(&c->resp->body, bv_auth_jwks(c->api->az->auth, c->a));
        bv_response_header(c->resp, "Cache-Control", "max-age=300");
    } else if (strcmp(p, "/auth/token") == 0 && post) token_endpoint(c);
    else if (strcmp(p, "/auth/authorize") == 0 && (get || post)) authorize_endpoint(c, post);
    else if (strcmp(p, "/auth/revoke") == 0 && post) revoke_endpoint(c);
    else oauth_error(c, 404, "invalid_request", "no such endpoint");
    return true;
}

/* ---- set-up ---- */
int bv_api_enable_auth(bv_api *api, bv_auth *auth, const char *policy_path, char *err, size_t errlen)
{
    api_authz_cfg *cfg = bv_calloc(1, sizeof *cfg);
    if (az_policy_load(&cfg->policy, policy_path, err, errlen)) {
        az_policy_free(&cfg->policy);
        free(cfg);
        return BV_EINVAL;
    }
    cfg->auth = auth;
    audit_start(cfg, api->store);
    api->az = cfg;
    return BV_OK;
}

void api_authz_free(bv_api *api)
{
    api_authz_cfg *cfg = api->az;
    if (!cfg) return;
    audit_stop(cfg, api->store);
    az_policy_free(&cfg->policy);
    bv_auth_free(cfg->auth);
    free(cfg);
    api->az = NULL;
}

const char *bv_api_default_policy(void) { return az_default_policy(); }
