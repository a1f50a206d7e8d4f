/* Unit tests for src/auth: SMART scope parsing, JWT verification and the token attacks of
 * reliability-security.md §C 14 (alg none, HS256 with the public key, wrong aud/iss, expired,
 * future nbf, bad signature, unknown kid, foreign jku/jwk, ID token, oversized), key files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bevan/auth.h"
#include "bevan/json.h"

#define AUD "http://127.0.0.1:9/fhir"

static char dir1[64], dir2[64];

static bv_auth *open_auth(const char *dir)
{
    char kd[128], err[300];
    snprintf(kd, sizeof kd, "%s/keys", dir);
    bv_auth_options o = {.key_dir = kd, .issuer = AUD, .audience = AUD};
    bv_auth *au = NULL;
    int rc = bv_auth_open(&o, &au, err, sizeof err);
    if (rc) fprintf(stderr, "bv_auth_open: %s\n", err);
    assert_int_equal(rc, BV_OK);
    return au;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir1, sizeof dir1, "/tmp/bevan-auth-XXXXXX");
    snprintf(dir2, sizeof dir2, "/tmp/bevan-auth-XXXXXX");
    if (!mkdtemp(dir1) || !mkdtemp(dir2)) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir1, dir2);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_scopes(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    bv_scope s;
    assert_true(bv_scope_parse(a, "patient/Observation.rs", 22, &s));
    assert_int_equal(s.ctx, BV_SCOPE_PATIENT);
    assert_string_equal(s.type, "Observation");
    assert_int_equal(s.perms, BV_PERM_R | BV_PERM_S);
    assert_null(s.query);
    const char *v1 = "user/*.read";
    assert_true(bv_scope_parse(a, v1, strlen(v1), &s));
    assert_int_equal(s.ctx, BV_SCOPE_USER);
    assert_string_equal(s.type, "*");
    assert_int_equal(s.perms, BV_PERM_R | BV_PERM_S);
    const char *w = "system/Patient.write";
    assert_true(bv_scope_parse(a, w, strlen(w), &s));
    assert_int_equal(s.perms, BV_PERM_C | BV_PERM_U | BV_PERM_D);
    const char *all = "user/Condition.*";
    assert_true(bv_scope_parse(a, all, strlen(all), &s));
    assert_int_equal(s.perms, 31);
    const char *g = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";
    assert_true(bv_scope_parse(a, g, strlen(g), &s));
    assert_string_equal(s.query, "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs");
    const char *c = "user/Patient.c";
    assert_true(bv_scope_parse(a, c, strlen(c), &s));
    assert_int_equal(s.perms, BV_PERM_C);
    /* refused: out of order, repeated, unknown letters, unknown type, no context, v1 with a query */
    const char *bad[] = {"patient/Observation.sr", "patient/Observation.rr", "patient/Observation.rx",
                         "patient/Nope.rs", "Observation.rs", "admin/Observation.rs", "patient/Observation.",
                         "patient/.rs", "patient/Observation.read?category=x", "patient/Observation.rs?",
                         "openid", "fhirUser", "launch/patient", "offline_access"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_false(bv_scope_parse(a, bad[i], strlen(bad[i]), &s));
    bv_scope *list;
    size_t n;
    bv_scopes_parse(a, "openid fhirUser  patient/Observation.rs launch/patient patient/Patient.r", &list, &n);
    assert_int_equal(n, 2);
    assert_string_equal(list[1].type, "Patient");
    assert_int_equal(list[1].perms, BV_PERM_R);
    bv_arena_free(a);
}

static void test_b64url(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    const char *cases[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\xfd"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *e = bv_b64url_encode(a, (const unsigned char *)cases[i], strlen(cases[i]));
        assert_null(strchr(e, '='));
        size_t n;
        unsigned char *d = bv_b64url_decode(a, e, strlen(e), &n);
        assert_non_null(d);
        assert_int_equal(n, strlen(cases[i]));
        assert_memory_equal(d, cases[i], n);
    }
    size_t n;
    assert_null(bv_b64url_decode(a, "ab+/", 4, &n));   /* standard alphabet refused */
    assert_null(bv_b64url_decode(a, "abc=", 4, &n));   /* padding refused */
    assert_null(bv_b64url_decode(a, "a", 1, &n));
    /* RFC 7636 appendix B */
    assert_string_equal(bv_sha256_b64url(a, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", 43),
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    bv_arena_free(a);
}

static json_value *claims(bv_arena *a, const char *scope, int64_t exp)
{
    json_value *o = json_new(a, JSON_OBJECT);
    json_set(a, o, "iss", json_new_string(a, AUD));
    json_set(a, o, "aud", json_new_string(a, AUD));
    json_set(a, o, "sub", json_new_string(a, "user-1"));
    json_set(a, o, "exp", json_new_int(a, exp));
    json_set(a, o, "iat", json_new_int(a, 1000));
    json_set(a, o, "jti", json_new_string(a, "j-1"));
    if (scope) json_set(a, o, "scope", json_new_string(a, scope));
    json_set(a, o, "patient", json_new_string(a, "pat-1"));
    return o;
}

static int verify(bv_auth *au, bv_arena *a, const char *tok, int64_t now)
{
    bv_principal p;
    char why[200];
    int rc = bv_auth_verify(au, a, tok, now, &p, why, sizeof why);
    if (rc == BV_OK) return 0;
    assert_true(strlen(why) > 0);
    if (*tok) assert_null(strstr(why, tok)); /* the reason never echoes the token */
    return rc;
}

/* b64url(header).b64url(payload).sig with a header of our choosing */
static char *forge(bv_arena *a, const char *header, const char *payload_token_from, const char *sig)
{
    const char *d1 = strchr(payload_token_from, '.');
    const char *d2 = strchr(d1 + 1, '.');
    char *h = bv_b64url_encode(a, (const unsigned char *)header, strlen(header));
    return bv_arena_printf(a, "%s.%.*s.%s", h, (int)(d2 - d1 - 1), d1 + 1, sig ? sig : d2 + 1);
}

static char *header_of(bv_arena *a, const char *tok)
{
    size_t n;
    const char *d1 = strchr(tok, '.');
    return (char *)bv_b64url_decode(a, tok, (size_t)(d1 - tok), &n);
}

static void test_jwt(void **state)
{
    (void)state;
    bv_auth *au = open_auth(dir1);
    bv_auth *other = open_auth(dir2);
    bv_arena *a = bv_arena_new(1 << 16);
    const int64_t now = 2000;

    char *tok = bv_auth_sign(au, a, claims(a, "patient/Observation.rs", now + 300));
    assert_non_null(tok);
    bv_principal p;
    char why[200];
    assert_int_equal(bv_auth_verify(au, a, tok, now, &p, why, sizeof why), BV_OK);
    assert_true(p.own);
    assert_string_equal(p.patient, "pat-1");
    assert_int_equal(p.n_scopes, 1);

    /* expiry with at most 60 s skew */
    assert_int_equal(verify(au, a, tok, now + 300 + 60), 0);
    assert_int_equal(verify(au, a, tok, now + 300 + 61), BV_EINVAL);

    /* nbf in the future */
    json_value *c = claims(a, "patient/Observation.rs", now + 300);
    json_set(a, c, "nbf", json_new_int(a, now + 120));
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), BV_EINVAL);
    json_set(a, c, "nbf", json_new_int(a, now + 30));
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), 0);

    /* wrong aud, wrong iss, aud array */
    c = claims(a, "patient/Observation.rs", now + 300);
    json_set(a, c, "aud", json_new_string(a, "http://other.example/fhir"));
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), BV_EINVAL);
    json_value *arr = json_new(a, JSON_ARRAY);
    json_push(a, arr, json_new_string(a, "x"));
    json_push(a, arr, json_new_string(a, AUD));
    json_set(a, c, "aud", arr);
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), 0);
    c = claims(a, "patient/Observation.rs", now + 300);
    json_set(a, c, "iss", json_new_string(a, "http://evil.example"));
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), BV_EINVAL);

    /* no exp; ID token (nonce, no scope); patient scope without a patient */
    c = claims(a, "patient/Observation.rs", now + 300);
    json_remove(c, "exp");
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), BV_EINVAL);
    c = claims(a, NULL, now + 300);
    json_set(a, c, "nonce", json_new_string(a, "n"));
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), BV_EINVAL);
    c = claims(a, "patient/*.rs", now + 300);
    json_remove(c, "patient");
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), BV_EINVAL);
    c = claims(a, "system/*.rs", now + 300);
    json_remove(c, "patient");
    assert_int_equal(verify(au, a, bv_auth_sign(au, a, c), now), 0);

    /* alg none, HS256 (key confusion), RS256 on an EC key */
    const char *hdr = header_of(a, tok);
    const char *kid = strstr(hdr, "\"kid\":\"") + 7;
    char *kidv = bv_arena_strndup(a, kid, strcspn(kid, "\""));
    assert_int_equal(verify(au, a, forge(a, bv_arena_printf(a, "{\"alg\":\"none\",\"kid\":\"%s\"}", kidv), tok, ""), now),
                     BV_EINVAL);
    assert_int_equal(verify(au, a, forge(a, bv_arena_printf(a, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kidv), tok, NULL),
                            now),
                     BV_EINVAL);
    assert_int_equal(verify(au, a, forge(a, bv_arena_printf(a, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kidv), tok, NULL),
                            now),
                     BV_EINVAL);
    /* header that brings its own key */
    assert_int_equal(verify(au, a,
                            forge(a, bv_arena_printf(a, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"jku\":\"http://x/\"}", kidv),
                                  tok, NULL),
                            now),
                     BV_EINVAL);
    assert_int_equal(verify(au, a, forge(a, bv_arena_printf(a, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"jwk\":{}}", kidv),
                                         tok, NULL),
                            now),
                     BV_EINVAL);
    /* unknown kid */
    assert_int_equal(verify(au, a, forge(a, "{\"alg\":\"ES256\",\"kid\":\"nope\"}", tok, NULL), now), BV_EINVAL);
    /* signed by another key but claiming ours: bad signature */
    char *t2 = bv_auth_sign(other, a, claims(a, "patient/Observation.rs", now + 300));
    const char *t2sig = strrchr(t2, '.') + 1;
    assert_int_equal(verify(au, a, forge(a, hdr, tok, t2sig), now), BV_EINVAL);
    assert_int_equal(verify(au, a, t2, now), BV_EINVAL); /* other's kid is unknown here */
    /* a flipped signature byte */
    char *flip = bv_arena_strdup(a, tok);
    char *sp = strrchr(flip, '.') + 5;
    *sp = *sp == 'A' ? 'B' : 'A';
    assert_int_equal(verify(au, a, flip, now), BV_EINVAL);
    /* structure: segments, base64 */
    assert_int_equal(verify(au, a, "a.b", now), BV_EINVAL);
    assert_int_equal(verify(au, a, bv_arena_printf(a, "%s.x", tok), now), BV_EINVAL);
    assert_int_equal(verify(au, a, "e30.e30.!!", now), BV_EINVAL);
    assert_int_equal(verify(au, a, "", now), BV_EINVAL);
    /* oversized */
    char *big = bv_arena_alloc(a, BV_AUTH_MAX_TOKEN + 10);
    memset(big, 'A', BV_AUTH_MAX_TOKEN + 9);
    big[BV_AUTH_MAX_TOKEN + 9] = '\0';
    assert_int_equal(verify(au, a, big, now), BV_ETOOBIG);

    /* JWKS verification (client assertions) */
    const char *jwks = bv_auth_jwks(other, a);
    json_value *pl;
    assert_int_equal(bv_jwt_verify_jwks(a, t2, jwks, &pl, why, sizeof why), BV_OK);
    assert_string_equal(json_get_str(pl, "sub"), "user-1");
    assert_int_equal(bv_jwt_verify_jwks(a, tok, jwks, &pl, why, sizeof why), BV_EINVAL);

    bv_arena_free(a);
    bv_auth_free(au);
    bv_auth_free(other);
}

static void test_key_file(void **state)
{
    (void)state;
    char path[200];
    snprintf(path, sizeof path, "%s/keys/signing.pem", dir1);
    bv_auth *au = open_auth(dir1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* reopening keeps the same key (same JWKS) */
    bv_arena *a = bv_arena_new(4096);
    const char *j1 = bv_auth_jwks(au, a);
    bv_auth *again = open_auth(dir1);
    assert_string_equal(j1, bv_auth_jwks(again, a));
    bv_auth_free(again);
    bv_auth_free(au);
    /* a key readable by others is refused */
    chmod(path, 0644);
    char kd[128], err[200];
    snprintf(kd, sizeof kd, "%s/keys", dir1);
    bv_auth_options o = {.key_dir = kd, .issuer = AUD};
    bv_auth *bad = NULL;
    assert_int_not_equal(bv_auth_open(&o, &bad, err, sizeof err), BV_OK);
    assert_null(bad);
    chmod(path, 0600);
    bv_arena_free(a);
}

static void test_password(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    char *h = bv_password_hash(a, "correct horse");
    assert_non_null(h);
    assert_true(strncmp(h, "$argon2id$", 10) == 0);
    assert_true(bv_password_verify(h, "correct horse"));
    assert_false(bv_password_verify(h, "correct horsf"));
    assert_false(bv_password_verify("plain", "plain"));
    bv_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scopes), cmocka_unit_test(test_b64url), cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_key_file), cmocka_unit_test(test_password),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
