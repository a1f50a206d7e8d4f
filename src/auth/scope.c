/* SMART App Launch scopes (v1 and v2) and Argon2id password hashes. */
#include "bevan/auth.h"
#include "bevan/fhir.h"

#include <argon2.h>
#include <string.h>

#include <openssl/rand.h>

bool bv_scope_parse(bv_arena *a, const char *s, size_t len, bv_scope *out)
{
    memset(out, 0, sizeof *out);
    const char *end = s + len;
    const char *slash = memchr(s, '/', len);
    if (!slash) return false;
    size_t cl = (size_t)(slash - s);
    if (bv_strneq_lit(s, cl, "patient")) out->ctx = BV_SCOPE_PATIENT;
    else if (bv_strneq_lit(s, cl, "user")) out->ctx = BV_SCOPE_USER;
    else if (bv_strneq_lit(s, cl, "system")) out->ctx = BV_SCOPE_SYSTEM;
    else return false;
    const char *t = slash + 1;
    const char *q = memchr(t, '?', (size_t)(end - t));
    const char *pend = q ? q : end;
    const char *dot = memchr(t, '.', (size_t)(pend - t));
    if (!dot || dot == t) return false;
    char *type = bv_arena_strndup(a, t, (size_t)(dot - t));
    if (strcmp(type, "*") != 0 && !fhir_is_resource_type(type)) return false;
    out->type = type;
    const char *p = dot + 1;
    size_t pl = (size_t)(pend - p);
    if (bv_strneq_lit(p, pl, "read")) out->perms = BV_PERM_R | BV_PERM_S;
    else if (bv_strneq_lit(p, pl, "write")) out->perms = BV_PERM_C | BV_PERM_U | BV_PERM_D;
    else if (bv_strneq_lit(p, pl, "*")) out->perms = BV_PERM_C | BV_PERM_R | BV_PERM_U | BV_PERM_D | BV_PERM_S;
    else {
        static const char order[] = "cruds";
        size_t at = 0;
        if (pl == 0) return false;
        for (size_t i = 0; i < pl; i++) {
            const char *f = memchr(order + at, p[i], 5 - at);
            if (!f) return false; /* unknown letter, repeated, or out of order */
            at = (size_t)(f - order) + 1;
            out->perms |= 1u << (f - order);
        }
    }
    if (q) {
        if (pend + 1 >= end) return false; /* "?" with nothing after it */
        /* v1 forms (read, write, star) take no restriction */
        if (!(p[0] >= 'a' && p[0] <= 'z' && pl <= 5 && !bv_strneq_lit(p, pl, "read") && !bv_strneq_lit(p, pl, "write")))
            return false;
        out->query = bv_arena_strndup(a, q + 1, (size_t)(end - q - 1));
    }
    return true;
}

void bv_scopes_parse(bv_arena *a, const char *text, bv_scope **out, size_t *n)
{
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        if (*p == ' ') cap++;
    if (cap > 256) cap = 256;
    bv_scope *sc = bv_arena_calloc(a, cap, sizeof *sc);
    size_t k = 0;
    const char *p = text;
    while (*p && k < cap) {
        while (*p == ' ') p++;
        size_t l = strcspn(p, " ");
        if (l && bv_scope_parse(a, p, l, &sc[k])) k++;
        p += l;
    }
    *out = sc;
    *n = k;
}

/* ---- passwords: Argon2id, RFC 9106 second recommended option scaled for a small server
 * (t=3, m=64 MiB, p=1), 16-byte salt, 32-byte hash, PHC string format. */
#define PW_T 3
#define PW_M (64 * 1024)
#define PW_P 1

char *bv_password_hash(bv_arena *a, const char *password)
{
    unsigned char salt[16];
    if (RAND_bytes(salt, sizeof salt) != 1) return NULL;
    size_t enclen = argon2_encodedlen(PW_T, PW_M, PW_P, sizeof salt, 32, Argon2_id);
    char *enc = bv_arena_alloc(a, enclen + 1);
    int rc = argon2id_hash_encoded(PW_T, PW_M, PW_P, password, strlen(password), salt, sizeof salt, 32, enc, enclen);
    return rc == ARGON2_OK ? enc : NULL;
}

bool bv_password_verify(const char *phc, const char *password)
{
    if (!phc || !password || strncmp(phc, "$argon2id$", 10) != 0) return false;
    return argon2id_verify(phc, password, strlen(password)) == ARGON2_OK;
}
