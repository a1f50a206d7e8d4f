/* JWT verification and signing with OpenSSL 3; JWKS loading; Bevan's own ES256 signing key. */
#include "bevan/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

/* ---------------------------------------------------------------- base64url */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *bv_b64url_encode(bv_arena *a, const unsigned char *d, size_t len)
{
    char *out = bv_arena_alloc(a, len / 3 * 4 + 5);
    size_t k = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        out[k++] = B64[v >> 18];
        out[k++] = B64[(v >> 12) & 63];
        out[k++] = B64[(v >> 6) & 63];
        out[k++] = B64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)d[i] << 16;
        out[k++] = B64[v >> 18];
        out[k++] = B64[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
        out[k++] = B64[v >> 18];
        out[k++] = B64[(v >> 12) & 63];
        out[k++] = B64[(v >> 6) & 63];
    }
    out[k] = '\0';
    return out;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

unsigned char *bv_b64url_decode(bv_arena *a, const char *s, size_t len, size_t *out_len)
{
    if (len % 4 == 1) return NULL;
    unsigned char *out = bv_arena_alloc(a, len / 4 * 3 + 4);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(s[i]);
        if (v < 0) return NULL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return NULL; /* non-canonical trailing bits */
    out[k] = 0;
    *out_len = k;
    return out;
}

char *bv_sha256_b64url(bv_arena *a, const char *data, size_t len)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)data, len, md);
    return bv_b64url_encode(a, md, sizeof md);
}

char *bv_random_token(bv_arena *a, size_t n)
{
    unsigned char buf[64];
    if (n > sizeof buf) n = sizeof buf;
    if (RAND_bytes(buf, (int)n) != 1) bv_panic("RAND_bytes failed");
    return bv_b64url_encode(a, buf, n);
}

/* ---------------------------------------------------------------- keys */
typedef enum { ALG_NONE, ALG_RS256, ALG_RS384, ALG_ES256, ALG_ES384 } jwt_alg;

static jwt_alg alg_of(const char *s)
{
    if (!s) return ALG_NONE;
    if (strcmp(s, "RS256") == 0) return ALG_RS256;
    if (strcmp(s, "RS384") == 0) return ALG_RS384;
    if (strcmp(s, "ES256") == 0) return ALG_ES256;
    if (strcmp(s, "ES384") == 0) return ALG_ES384;
    return ALG_NONE;
}

typedef struct {
    char *kid;
    char *issuer;             /* iss this key may sign for */
    EVP_PKEY *pkey;
    bool rsa;
    int ec_bits;              /* 256 / 384 for EC keys */
    bool own_issuer;          /* trusted for Bevan's own issuer (which is set late) */
} trusted_key;

struct bv_auth {
    /* set once after the listening port is known (bv_auth_set_base): read by request threads */
    _Atomic(char *) issuer;
    _Atomic(char *) audience;
    char *old[8];             /* replaced values, freed with the verifier */
    size_t n_old;
    EVP_PKEY *sign_key;       /* own ES256 private key */
    char *sign_kid;
    char *jwks_text;          /* own public JWKS */
    trusted_key *keys;
    size_t n_keys;
    /* Signatures already verified (SHA-256 of the whole token): a client sends the same token
     * with every request, and an ECDSA/RSA verification costs far more than the rest of a read.
     * Claims (times, aud, ...) are still checked on every use. */
    pthread_mutex_t cache_mu;
    unsigned char (*cache)[32];
};

#define SIG_CACHE_SLOTS 4096

const char *bv_auth_issuer(const bv_auth *au) { return atomic_load(&((bv_auth *)au)->issuer); }
const char *bv_auth_audience(const bv_auth *au) { return atomic_load(&((bv_auth *)au)->audience); }

void bv_auth_set_base(bv_auth *au, const char *base_url)
{
    /* keys trusted for the own issuer follow it (key_issuer) */
    if (au->n_old + 2 <= 8) {
        au->old[au->n_old++] = atomic_exchange(&au->issuer, bv_strdup(base_url));
        au->old[au->n_old++] = atomic_exchange(&au->audience, bv_strdup(base_url));
    }
}

static EVP_PKEY *pkey_from_jwk(bv_arena *a, const json_value *jwk, bool *rsa, int *ec_bits)
{
    const char *kty = json_get_str(jwk, "kty");
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    BIGNUM *n = NULL, *e = NULL;
    unsigned char pub[1 + 2 * 48]; /* the builder keeps a pointer to it until OSSL_PARAM_BLD_to_param */
    if (!bld) return NULL;
    if (bv_streq(kty, "RSA")) {
        const char *ns = json_get_str(jwk, "n"), *es = json_get_str(jwk, "e");
        size_t nl, el;
        unsigned char *nb = ns ? bv_b64url_decode(a, ns, strlen(ns), &nl) : NULL;
        unsigned char *eb = es ? bv_b64url_decode(a, es, strlen(es), &el) : NULL;
        if (!nb || !eb || nl < 256 || nl > 1024) goto out; /* at least 2048-bit keys */
        n = BN_bin2bn(nb, (int)nl, NULL);
        e = BN_bin2bn(eb, (int)el, NULL);
        if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        *rsa = true;
        *ec_bits = 0;
    } else if (bv_streq(kty, "EC")) {
        const char *crv = json_get_str(jwk, "crv"), *xs = json_get_str(jwk, "x"), *ys = json_get_str(jwk, "y");
        int bytes = bv_streq(crv, "P-256") ? 32 : bv_streq(crv, "P-384") ? 48 : 0;
        size_t xl, yl;
        unsigned char *xb = xs ? bv_b64url_decode(a, xs, strlen(xs), &xl) : NULL;
        unsigned char *yb = ys ? bv_b64url_decode(a, ys, strlen(ys), &yl) : NULL;
        if (!bytes || !xb || !yb || xl != (size_t)bytes || yl != (size_t)bytes) goto out;
        pub[0] = 4;
        memcpy(pub + 1, xb, xl);
        memcpy(pub + 1 + xl, yb, yl);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, bytes == 32 ? "prime256v1" : "secp384r1",
                                             0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * (size_t)bytes))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        *rsa = false;
        *ec_bits = bytes * 8;
    } else {
        goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (!ctx || !params || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

static void add_key(bv_auth *au, const char *kid, const char *issuer, EVP_PKEY *pkey, bool rsa, int ec_bits)
{
    au->keys = bv_realloc(au->keys, (au->n_keys + 1) * sizeof *au->keys);
    au->keys[au->n_keys++] = (trusted_key){bv_strdup(kid), bv_strdup(issuer ? issuer : ""), pkey, rsa, ec_bits,
                                           issuer == NULL};
}

/* Every key of a JWKS document; each must have a kid. Returns the number of keys or -1. */
static int load_jwks_text(bv_auth *au, bv_arena *a, const char *text, size_t len, const char *issuer, char *err,
                          size_t errlen)
{
    json_value *doc;
    json_error jerr;
    if (json_parse(a, text, len, NULL, &doc, &jerr)) {
        snprintf(err, errlen, "JWKS is not JSON: %s", jerr.message);
        return -1;
    }
    json_value *keys = json_get(doc, "keys");
    if (!json_is(keys, JSON_ARRAY)) {
        snprintf(err, errlen, "JWKS has no keys array");
        return -1;
    }
    int n = 0;
    for (size_t i = 0; i < json_count(keys); i++) {
        json_value *k = json_at(keys, i);
        const char *kid = json_get_str(k, "kid"), *use = json_get_str(k, "use");
        if (use && strcmp(use, "sig") != 0) continue;
        if (!kid || !*kid) {
            snprintf(err, errlen, "JWKS key %zu has no kid", i);
            return -1;
        }
        bool rsa = false;
        int bits = 0;
        EVP_PKEY *pk = pkey_from_jwk(a, k, &rsa, &bits);
        if (!pk) {
            snprintf(err, errlen, "JWKS key '%.60s' is not a usable RSA (>= 2048 bits) or EC P-256/P-384 public key",
                     kid);
            return -1;
        }
        add_key(au, kid, issuer, pk, rsa, bits);
        n++;
    }
    return n;
}

static int load_jwks_file(bv_auth *au, bv_arena *a, const char *path, const char *issuer, char *err, size_t errlen)
{
    size_t len;
    char *text = bv_read_text_file(path, 1 << 20, &len);
    if (!text) {
        snprintf(err, errlen, "cannot read JWKS file %s", path);
        return -1;
    }
    char sub[200] = "";
    int n = load_jwks_text(au, a, text, len, issuer, sub, sizeof sub);
    free(text);
    if (n < 0) snprintf(err, errlen, "%s: %s", path, sub);
    return n < 0 ? -1 : 0;
}

/* Public JWK members of an EC key; the kid is the RFC 7638 thumbprint. */
static int ec_public_xy(bv_arena *a, EVP_PKEY *pk, char **x, char **y)
{
    BIGNUM *bx = NULL, *by = NULL;
    int ok = EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &bx) &&
             EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &by);
    unsigned char xb[32], yb[32];
    if (ok) ok = BN_bn2binpad(bx, xb, 32) == 32 && BN_bn2binpad(by, yb, 32) == 32;
    BN_free(bx);
    BN_free(by);
    if (!ok) return -1;
    *x = bv_b64url_encode(a, xb, 32);
    *y = bv_b64url_encode(a, yb, 32);
    return 0;
}

static EVP_PKEY *read_private_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return pk;
}

/* Creates DIR/signing.pem (0600) with a new P-256 key, atomically (tmp file + rename). */
static EVP_PKEY *create_signing_key(const char *dir, const char *path, char *err, size_t errlen)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    if (!pk) {
        snprintf(err, errlen, "cannot generate a P-256 key");
        return NULL;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/signing.pem.tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        EVP_PKEY_free(pk);
        return NULL;
    }
    int ok = PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s", path);
        unlink(tmp);
        EVP_PKEY_free(pk);
        return NULL;
    }
    return pk;
}

int bv_auth_open(const bv_auth_options *o, bv_auth **out, char *err, size_t errlen)
{
    *out = NULL;
    bv_auth *au = bv_calloc(1, sizeof *au);
    pthread_mutex_init(&au->cache_mu, NULL);
    au->cache = bv_calloc(SIG_CACHE_SLOTS, sizeof *au->cache);
    atomic_init(&au->issuer, bv_strdup(o->issuer ? o->issuer : ""));
    atomic_init(&au->audience, bv_strdup(o->audience ? o->audience : o->issuer ? o->issuer : ""));
    bv_arena *a = bv_arena_new(1 << 14);
    int rc = BV_EINVAL;
    if (o->key_dir) {
        if (!o->read_only_keys && mkdir(o->key_dir, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", o->key_dir, strerror(errno));
            goto fail;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/signing.pem", o->key_dir);
        struct stat st;
        if (stat(path, &st) == 0) {
            if (st.st_mode & 077) {
                snprintf(err, errlen, "%s is readable by others (mode %03o): chmod 600 it", path,
                         (unsigned)(st.st_mode & 0777));
                goto fail;
            }
            au->sign_key = read_private_pem(path);
            if (!au->sign_key || EVP_PKEY_get_base_id(au->sign_key) != EVP_PKEY_EC ||
                EVP_PKEY_get_bits(au->sign_key) != 256) {
                snprintf(err, errlen, "%s is not a P-256 private key", path);
                goto fail;
            }
        } else if (o->read_only_keys) {
            snprintf(err, errlen, "no signing key in %s (start the server once to create it)", o->key_dir);
            rc = BV_ENOTFOUND;
            goto fail;
        } else {
            au->sign_key = create_signing_key(o->key_dir, path, err, errlen);
            if (!au->sign_key) goto fail;
        }
        char *x, *y;
        if (ec_public_xy(a, au->sign_key, &x, &y)) {
            snprintf(err, errlen, "cannot read the signing key's public part");
            goto fail;
        }
        char *canon = bv_arena_printf(a, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
        au->sign_kid = bv_strdup(bv_sha256_b64url(a, canon, strlen(canon)));
        char *jwks = bv_arena_printf(a,
                                     "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
                                     "\"kid\":\"%s\",\"alg\":\"ES256\",\"use\":\"sig\"}]}",
                                     x, y, au->sign_kid);
        au->jwks_text = bv_strdup(jwks);
        char sub[300];
        if (load_jwks_text(au, a, jwks, strlen(jwks), NULL, sub, sizeof sub) != 1) {
            snprintf(err, errlen, "own JWKS: %s", sub);
            goto fail;
        }
    }
    for (size_t i = 0; i < o->n_jwks_files; i++)
        if (load_jwks_file(au, a, o->jwks_files[i], NULL, err, errlen)) goto fail;
    for (size_t i = 0; i < o->n_trust; i++) {
        const char *eq = strchr(o->trust[i], '=');
        if (!eq || eq == o->trust[i] || !eq[1]) {
            snprintf(err, errlen, "--trust-issuer wants ISS=JWKSFILE, got '%.100s'", o->trust[i]);
            goto fail;
        }
        char *iss = bv_arena_strndup(a, o->trust[i], (size_t)(eq - o->trust[i]));
        if (load_jwks_file(au, a, eq + 1, iss, err, errlen)) goto fail;
    }
    bv_arena_free(a);
    *out = au;
    return BV_OK;
fail:
    bv_arena_free(a);
    bv_auth_free(au);
    return rc;
}

void bv_auth_free(bv_auth *au)
{
    if (!au) return;
    for (size_t i = 0; i < au->n_keys; i++) {
        free(au->keys[i].kid);
        free(au->keys[i].issuer);
        EVP_PKEY_free(au->keys[i].pkey);
    }
    free(au->keys);
    free(au->cache);
    pthread_mutex_destroy(&au->cache_mu);
    EVP_PKEY_free(au->sign_key);
    free(au->sign_kid);
    free(au->jwks_text);
    free(atomic_load(&au->issuer));
    free(atomic_load(&au->audience));
    for (size_t i = 0; i < au->n_old; i++) free(au->old[i]);
    free(au);
}

const char *bv_auth_jwks(bv_auth *au, bv_arena *a)
{
    return bv_arena_strdup(a, au->jwks_text ? au->jwks_text : "{\"keys\":[]}");
}

/* ---------------------------------------------------------------- signatures */
static bool verify_sig(EVP_PKEY *pk, jwt_alg alg, const char *data, size_t dlen, const unsigned char *sig,
                       size_t slen)
{
    const EVP_MD *md = (alg == ALG_RS256 || alg == ALG_ES256) ? EVP_sha256() : EVP_sha384();
    unsigned char der[160];
    const unsigned char *s = sig;
    size_t sl = slen;
    if (alg == ALG_ES256 || alg == ALG_ES384) {
        size_t half = alg == ALG_ES256 ? 32 : 48;
        if (slen != 2 * half) return false;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *ss = BN_bin2bn(sig + half, (int)half, NULL);
        if (!es || !r || !ss || !ECDSA_SIG_set0(es, r, ss)) {
            ECDSA_SIG_free(es);
            BN_free(r);
            BN_free(ss);
            return false;
        }
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es, NULL);
        if (n <= 0 || (size_t)n > sizeof der) { ECDSA_SIG_free(es); return false; }
        n = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
        sl = (size_t)n;
    }
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestVerifyInit(mc, NULL, md, NULL, pk) == 1 &&
              EVP_DigestVerify(mc, s, sl, (const unsigned char *)data, dlen) == 1;
    EVP_MD_CTX_free(mc);
    return ok;
}

static char *sign_es256(bv_arena *a, EVP_PKEY *pk, const char *data, size_t dlen)
{
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t dl = sizeof der;
    bool ok = mc && EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, pk) == 1 &&
              EVP_DigestSign(mc, der, &dl, (const unsigned char *)data, dlen) == 1;
    EVP_MD_CTX_free(mc);
    if (!ok) return NULL;
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    if (!es) return NULL;
    unsigned char raw[64];
    ok = BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32) == 32 && BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32) == 32;
    ECDSA_SIG_free(es);
    return ok ? bv_b64url_encode(a, raw, 64) : NULL;
}

char *bv_auth_sign(bv_auth *au, bv_arena *a, const json_value *claims)
{
    if (!au->sign_key) return NULL;
    bv_buf b;
    bv_buf_init(&b, 0);
    bv_buf_puts(&b, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"");
    bv_buf_puts(&b, au->sign_kid);
    bv_buf_puts(&b, "\"}");
    char *h = bv_b64url_encode(a, (const unsigned char *)b.data, b.len);
    bv_buf_reset(&b);
    json_write(&b, claims, false);
    char *p = bv_b64url_encode(a, (const unsigned char *)b.data, b.len);
    bv_buf_free(&b);
    char *input = bv_arena_printf(a, "%s.%s", h, p);
    char *sig = sign_es256(a, au->sign_key, input, strlen(input));
    return sig ? bv_arena_printf(a, "%s.%s", input, sig) : NULL;
}

/* ---------------------------------------------------------------- parsing */
typedef struct {
    json_value *header, *payload;
    const char *signing_input;
    size_t signing_len;
    unsigned char *sig;
    size_t sig_len;
    jwt_alg alg;
    const char *kid;
} jwt_parts;

static int fail(char *why, size_t whylen, const char *msg)
{
    snprintf(why, whylen, "%s", msg);
    return BV_EINVAL;
}

static int split_jwt(bv_arena *a, const char *token, jwt_parts *jp, char *why, size_t whylen)
{
    size_t len = strnlen(token, BV_AUTH_MAX_TOKEN + 1);
    if (len > BV_AUTH_MAX_TOKEN) {
        snprintf(why, whylen, "token longer than %d bytes", BV_AUTH_MAX_TOKEN);
        return BV_ETOOBIG;
    }
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.')) return fail(why, whylen, "token is not three base64url segments");
    size_t hl, pl;
    unsigned char *h = bv_b64url_decode(a, token, (size_t)(d1 - token), &hl);
    unsigned char *p = bv_b64url_decode(a, d1 + 1, (size_t)(d2 - d1 - 1), &pl);
    jp->sig = bv_b64url_decode(a, d2 + 1, strlen(d2 + 1), &jp->sig_len);
    if (!h || !p || !jp->sig || !hl || !pl) return fail(why, whylen, "token segment is not base64url");
    json_error jerr;
    json_limits lim = {.max_depth = 16};
    if (json_parse(a, (const char *)h, hl, &lim, &jp->header, &jerr) || !json_is(jp->header, JSON_OBJECT))
        return fail(why, whylen, "token header is not a JSON object");
    if (json_parse(a, (const char *)p, pl, &lim, &jp->payload, &jerr) || !json_is(jp->payload, JSON_OBJECT))
        return fail(why, whylen, "token payload is not a JSON object");
    const char *alg = json_get_str(jp->header, "alg");
    jp->alg = alg_of(alg);
    if (jp->alg == ALG_NONE) return fail(why, whylen, "token alg is not one of RS256, RS384, ES256, ES384");
    static const char *const banned[] = {"jku", "x5u", "jwk", "x5c", "crit"};
    for (size_t i = 0; i < sizeof banned / sizeof *banned; i++)
        if (json_get(jp->header, banned[i])) return fail(why, whylen, "token header names its own key (jku/x5u/jwk/x5c) or crit");
    const char *typ = json_get_str(jp->header, "typ");
    if (json_get(jp->header, "typ") && (!typ || (strcasecmp(typ, "JWT") != 0 && strcasecmp(typ, "at+jwt") != 0 &&
                                                 strcasecmp(typ, "application/at+jwt") != 0)))
        return fail(why, whylen, "token typ is not JWT");
    jp->kid = json_get_str(jp->header, "kid");
    if (!jp->kid) return fail(why, whylen, "token has no kid");
    jp->signing_input = token;
    jp->signing_len = (size_t)(d2 - token);
    return BV_OK;
}

static bool key_fits(const trusted_key *k, jwt_alg alg)
{
    switch (alg) {
    case ALG_RS256: case ALG_RS384: return k->rsa;
    case ALG_ES256: return !k->rsa && k->ec_bits == 256;
    case ALG_ES384: return !k->rsa && k->ec_bits == 384;
    default: return false;
    }
}

static bool num_claim(const json_value *p, const char *name, int64_t *out)
{
    json_value *v = json_get(p, name);
    if (!v) return false;
    double d;
    if (!json_number_to_double(v, &d) || d < 0 || d > 1e12) { *out = -1; return true; }
    *out = (int64_t)d;
    return true;
}

static bool aud_matches(const json_value *aud, const char *want)
{
    if (json_is(aud, JSON_STRING)) return bv_streq(json_str(aud), want);
    for (size_t i = 0; i < json_count(aud) && i < 16; i++)
        if (bv_streq(json_str(json_at(aud, i)), want)) return true;
    return false;
}

int bv_auth_verify(bv_auth *au, bv_arena *a, const char *token, int64_t now_s, bv_principal *pr, char *why,
                   size_t whylen)
{
    memset(pr, 0, sizeof *pr);
    jwt_parts jp;
    memset(&jp, 0, sizeof jp);
    int rc = split_jwt(a, token, &jp, why, whylen);
    if (rc) return rc;
    const char *iss = json_get_str(jp.payload, "iss");
    if (!iss) return fail(why, whylen, "token has no iss");
    const trusted_key *key = NULL;
    for (size_t i = 0; i < au->n_keys; i++)
        if (strcmp(au->keys[i].kid, jp.kid) == 0 &&
            strcmp(au->keys[i].own_issuer ? bv_auth_issuer(au) : au->keys[i].issuer, iss) == 0) {
            key = &au->keys[i];
            break;
        }
    if (!key) return fail(why, whylen, "token kid is not a key of a trusted issuer");
    if (!key_fits(key, jp.alg)) return fail(why, whylen, "token alg does not fit its key");
    unsigned char th[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), th);
    size_t slot = ((size_t)th[0] << 8 | th[1]) % SIG_CACHE_SLOTS;
    pthread_mutex_lock(&au->cache_mu);
    bool cached = memcmp(au->cache[slot], th, 32) == 0;
    pthread_mutex_unlock(&au->cache_mu);
    if (!cached) {
        if (!verify_sig(key->pkey, jp.alg, jp.signing_input, jp.signing_len, jp.sig, jp.sig_len))
            return fail(why, whylen, "token signature is not valid");
        pthread_mutex_lock(&au->cache_mu);
        memcpy(au->cache[slot], th, 32);
        pthread_mutex_unlock(&au->cache_mu);
    }
    const json_value *p = jp.payload;
    int64_t exp = 0, nbf = 0, iat = 0;
    if (!num_claim(p, "exp", &exp) || exp < 0) return fail(why, whylen, "token has no valid exp");
    bool timed = now_s >= 0; /* < 0: revocation of a possibly expired token */
    if (timed && now_s > exp + BV_AUTH_SKEW_S) return fail(why, whylen, "token has expired");
    if (num_claim(p, "nbf", &nbf) && (nbf < 0 || (timed && nbf > now_s + BV_AUTH_SKEW_S)))
        return fail(why, whylen, "token is not valid yet (nbf)");
    if (num_claim(p, "iat", &iat) && (iat < 0 || (timed && iat > now_s + BV_AUTH_SKEW_S)))
        return fail(why, whylen, "token was issued in the future (iat)");
    if (!aud_matches(json_get(p, "aud"), bv_auth_audience(au))) return fail(why, whylen, "token aud is not this server");
    if (json_get(p, "nonce")) return fail(why, whylen, "an ID token is not an access token");
    const char *scope = json_get_str(p, "scope");
    if (!scope) return fail(why, whylen, "token has no scope (an ID token is not an access token)");
    pr->iss = iss;
    pr->sub = json_get_str(p, "sub");
    pr->client_id = json_get_str(p, "client_id");
    if (!pr->client_id) pr->client_id = json_get_str(p, "azp");
    pr->jti = json_get_str(p, "jti");
    pr->scope = scope;
    pr->fhir_user = json_get_str(p, "fhirUser");
    pr->patient = json_get_str(p, "patient");
    pr->role = json_get_str(p, "role");
    pr->org = json_get_str(p, "organization");
    pr->exp = exp;
    pr->iat = iat;
    pr->own = au->sign_kid && strcmp(key->kid, au->sign_kid) == 0;
    pr->claims = p;
    bv_scopes_parse(a, scope, &pr->scopes, &pr->n_scopes);
    if (pr->patient && (!*pr->patient || strlen(pr->patient) > 64)) return fail(why, whylen, "token patient is not an id");
    for (size_t i = 0; i < pr->n_scopes; i++)
        if (pr->scopes[i].ctx == BV_SCOPE_PATIENT && !pr->patient)
            return fail(why, whylen, "a patient/ scope needs a patient in context");
    return BV_OK;
}

int bv_jwt_verify_jwks(bv_arena *a, const char *token, const char *jwks_json, json_value **payload, char *why,
                       size_t whylen)
{
    jwt_parts jp;
    memset(&jp, 0, sizeof jp);
    int rc = split_jwt(a, token, &jp, why, whylen);
    if (rc) return rc;
    bv_auth tmp;
    memset(&tmp, 0, sizeof tmp);
    char err[200];
    rc = BV_EINVAL;
    snprintf(why, whylen, "assertion kid is not a registered key");
    if (load_jwks_text(&tmp, a, jwks_json, strlen(jwks_json), "", err, sizeof err) < 0)
        snprintf(why, whylen, "registered JWKS is unusable");
    else for (size_t i = 0; i < tmp.n_keys; i++) {
        if (strcmp(tmp.keys[i].kid, jp.kid) != 0) continue;
        if (!key_fits(&tmp.keys[i], jp.alg)) { snprintf(why, whylen, "assertion alg does not fit its key"); break; }
        if (!verify_sig(tmp.keys[i].pkey, jp.alg, jp.signing_input, jp.signing_len, jp.sig, jp.sig_len)) {
            snprintf(why, whylen, "assertion signature is not valid");
            break;
        }
        rc = BV_OK;
        *payload = jp.payload;
        break;
    }
    for (size_t i = 0; i < tmp.n_keys; i++) {
        free(tmp.keys[i].kid);
        free(tmp.keys[i].issuer);
        EVP_PKEY_free(tmp.keys[i].pkey);
    }
    free(tmp.keys);
    return rc;
}
