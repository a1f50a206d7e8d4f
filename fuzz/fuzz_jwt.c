/* libFuzzer target for the token parsers: bv_auth_verify (an access token against Bevan's own
 * ES256 key, made in a temporary folder once), bv_jwt_verify_jwks (a client assertion against a
 * fixed JWKS), base64url decoding and the SMART scope grammar, all on the same input.
 * Invariants: no crash or sanitizer report; nothing the fuzzer makes is ever accepted (it cannot
 * hold Bevan's private key), and every refusal has a reason. */
#include "bevan/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bv_auth *au;
static const char *jwks;

static void setup(void)
{
    char dir[] = "/tmp/bevan-fuzz-jwt-XXXXXX";
    if (!mkdtemp(dir)) abort();
    char keys[sizeof dir + 8];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    bv_auth_options o = {.key_dir = keys, .issuer = "http://127.0.0.1:1/fhir", .audience = "http://127.0.0.1:1/fhir"};
    char err[256];
    if (bv_auth_open(&o, &au, err, sizeof err) != BV_OK) {
        fprintf(stderr, "fuzz_jwt: %s\n", err);
        abort();
    }
    bv_arena *a = bv_arena_new(4096);
    jwks = strdup(bv_auth_jwks(au, a));   /* kept for the process's life */
    bv_arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!au) setup();
    if (size > 16384) return 0;
    bv_arena *a = bv_arena_new(1 << 14);
    char *s = bv_arena_strndup(a, (const char *)data, size);
    char why[256] = "";

    bv_principal p;
    if (bv_auth_verify(au, a, s, 1800000000, &p, why, sizeof why) == BV_OK) abort();
    if (!why[0]) abort();
    if (bv_auth_verify(au, a, s, -1, &p, why, sizeof why) == BV_OK) abort();

    json_value *payload = NULL;
    why[0] = '\0';
    if (bv_jwt_verify_jwks(a, s, jwks, &payload, why, sizeof why) == BV_OK) abort();
    if (!why[0]) abort();

    size_t n = 0;
    (void)bv_b64url_decode(a, s, strlen(s), &n);
    bv_scope sc;
    (void)bv_scope_parse(a, s, strlen(s), &sc);
    bv_scope *all;
    size_t nall;
    bv_scopes_parse(a, s, &all, &nall);
    bv_arena_free(a);
    return 0;
}
