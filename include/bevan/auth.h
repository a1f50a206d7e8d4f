/* Bevan auth: JWT access tokens (verify and mint, OpenSSL), the server's own signing key, trusted
 * issuers' JWKS, SMART App Launch v1/v2 scopes, and password hashing (Argon2id) for local accounts.
 * OpenSSL and libargon2 headers stay inside src/auth/. docs/security.md explains the model. */
#ifndef BEVAN_AUTH_H
#define BEVAN_AUTH_H

#include "bevan/core.h"
#include "bevan/json.h"

/* Tokens longer than this are refused before any parsing (reliability-security.md §C 14). */
#define BV_AUTH_MAX_TOKEN 8192
/* Clock skew tolerated on exp / nbf / iat, seconds. */
#define BV_AUTH_SKEW_S 60

/* ---- SMART scopes ---- */
enum { BV_PERM_C = 1, BV_PERM_R = 2, BV_PERM_U = 4, BV_PERM_D = 8, BV_PERM_S = 16 };
typedef enum { BV_SCOPE_PATIENT, BV_SCOPE_USER, BV_SCOPE_SYSTEM } bv_scope_ctx;

typedef struct {
    bv_scope_ctx ctx;
    const char *type;         /* a resource type, or "*" */
    unsigned perms;           /* BV_PERM_* bits */
    const char *query;        /* v2 granular restriction "category=http://...|vital-signs", or NULL */
} bv_scope;

/* One scope string, e.g. "patient/Observation.rs?category=...|vital-signs", "user/<any>.read".
 * v1 read = rs, write = cud, * = cruds; v2 letters must be in c r u d s order, each once.
 * False for anything else (openid, fhirUser, launch/patient, malformed): such scopes grant nothing. */
bool bv_scope_parse(bv_arena *a, const char *s, size_t len, bv_scope *out);
/* A space-separated scope list: the resource scopes found (others are ignored). */
void bv_scopes_parse(bv_arena *a, const char *text, bv_scope **out, size_t *n);

/* ---- the caller, from a verified token ---- */
typedef struct {
    const char *iss, *sub, *client_id, *jti;
    const char *scope;        /* as granted (space-separated) */
    const char *fhir_user;    /* "Practitioner/1", "Patient/2", "RelatedPerson/3", ... or NULL */
    const char *patient;      /* patient id in context (SMART "patient" claim), or NULL */
    const char *role;         /* staff role claim ("clinician", "care-worker", ...), or NULL */
    const char *org;          /* "Organization/ID" the user acts for, or NULL */
    int64_t exp, iat;
    bool own;                 /* signed by Bevan's own key */
    bv_scope *scopes;
    size_t n_scopes;
    const json_value *claims; /* the whole payload */
} bv_principal;

/* ---- keys and tokens ---- */
typedef struct bv_auth bv_auth;

typedef struct {
    const char *key_dir;      /* DATA/keys: created 0700; signing.pem (ES256, 0600) made on first open */
    const char *issuer;       /* iss of Bevan's own tokens (this server's FHIR base URL) */
    const char *audience;     /* the aud every access token must carry (this server's FHIR base URL) */
    const char *const *jwks_files; /* more keys trusted for Bevan's own issuer */
    size_t n_jwks_files;
    const char *const *trust; /* "ISS=JWKSFILE": tokens with that iss verified with that file's keys */
    size_t n_trust;
    bool read_only_keys;      /* do not create a key (bevan token): BV_ENOTFOUND when there is none */
} bv_auth_options;

int bv_auth_open(const bv_auth_options *o, bv_auth **out, char *err, size_t errlen);
void bv_auth_free(bv_auth *au);
const char *bv_auth_issuer(const bv_auth *au);
/* Sets issuer and audience (this server's FHIR base URL) once the port is known, before tokens
 * can be checked; until then every token fails the aud check (fail closed). Call once. */
void bv_auth_set_base(bv_auth *au, const char *base_url);
const char *bv_auth_audience(const bv_auth *au);

/* Verifies an access token: size, structure, alg allowlist (RS256 RS384 ES256 ES384; never none or
 * HS*), no jku/x5u/jwk/x5c/crit, kid known for the token's iss, signature, exp/nbf/iat within the
 * skew, aud, a scope claim (ID tokens are refused), a patient/ scope only with a patient in
 * context. now_s: seconds since the epoch (< 0: times not checked, for revocation). On failure: BV_EINVAL (or BV_ETOOBIG) and a reason in
 * why that never contains the token. Revocation is the caller's (jti). */
int bv_auth_verify(bv_auth *au, bv_arena *a, const char *token, int64_t now_s, bv_principal *p, char *why,
                   size_t whylen);
/* Signs claims (a JSON object) with Bevan's own key (ES256, kid = JWK thumbprint). */
char *bv_auth_sign(bv_auth *au, bv_arena *a, const json_value *claims);
/* The public JWKS of Bevan's own signing key (JSON text). */
const char *bv_auth_jwks(bv_auth *au, bv_arena *a);

/* Verifies a JWT against the keys of a JWKS document given as text (client assertions,
 * private_key_jwt): structure, alg allowlist, kid, signature. Claims are the caller's. */
int bv_jwt_verify_jwks(bv_arena *a, const char *token, const char *jwks_json, json_value **payload, char *why,
                       size_t whylen);

/* base64url without padding */
char *bv_b64url_encode(bv_arena *a, const unsigned char *data, size_t len);
unsigned char *bv_b64url_decode(bv_arena *a, const char *s, size_t len, size_t *out_len); /* NULL if invalid */
/* SHA-256 of data, base64url (PKCE S256 challenges). */
char *bv_sha256_b64url(bv_arena *a, const char *data, size_t len);
/* n random bytes as base64url (codes, ids). */
char *bv_random_token(bv_arena *a, size_t n);

/* ---- passwords (Argon2id, PHC string) ---- */
char *bv_password_hash(bv_arena *a, const char *password);   /* NULL on failure */
bool bv_password_verify(const char *phc, const char *password);

#endif
