/* Cursor parsers and string helpers for untrusted text (no atoi/strtol/sscanf). */
#include "bevan/core.h"

#include <string.h>

int bv_parse_u64(const char **p, const char *end, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9') return BV_EINVAL;
    while (s < end && *s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (max - d) / 10) return BV_ETOOBIG;
        v = v * 10 + d;
        s++;
    }
    *out = v;
    *p = s;
    return BV_OK;
}

int bv_parse_i64(const char **p, const char *end, int64_t *out)
{
    const char *s = *p;
    bool neg = false;
    if (s < end && (*s == '-' || *s == '+')) { neg = *s == '-'; s++; }
    uint64_t v;
    int rc = bv_parse_u64(&s, end, neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX, &v);
    if (rc) return rc;
    *out = neg ? (v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    *p = s;
    return BV_OK;
}

int bv_str_to_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    const char *p = s, *end = s + len;
    int rc = bv_parse_u64(&p, end, max, out);
    if (rc) return rc;
    return p == end ? BV_OK : BV_EINVAL;
}

int bv_str_to_i64(const char *s, size_t len, int64_t *out)
{
    const char *p = s, *end = s + len;
    int rc = bv_parse_i64(&p, end, out);
    if (rc) return rc;
    return p == end ? BV_OK : BV_EINVAL;
}

bool bv_streq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

bool bv_strneq_lit(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return n == len && memcmp(s, lit, n) == 0;
}

bool bv_starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *bv_url_decode(bv_arena *a, const char *s, size_t len, bool form)
{
    char *out = bv_arena_alloc(a, len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len) return NULL;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return NULL;
            *o++ = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && form) {
            *o++ = ' ';
        } else {
            *o++ = c;
        }
    }
    *o = '\0';
    return out;
}

char *bv_url_decode_nonul(bv_arena *a, const char *s, size_t len, bool form)
{
    size_t escapes = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '%') escapes++;
    char *out = bv_url_decode(a, s, len, form);
    if (!out || strlen(out) != len - 2 * escapes) return NULL; /* a NUL inside */
    return out;
}

size_t bv_query_pieces(const char *qs)
{
    size_t n = 1;
    for (const char *p = qs; *p; p++)
        if (*p == '&') n++;
    return n;
}

long bv_query_split(bv_arena *a, const char *qs, bool nonul, bv_pair *out)
{
    char *(*decode)(bv_arena *, const char *, size_t, bool) = nonul ? bv_url_decode_nonul : bv_url_decode;
    long n = 0;
    for (const char *p = qs; *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len) {
            const char *eq = memchr(p, '=', len);
            size_t nlen = eq ? (size_t)(eq - p) : len;
            char *name = decode(a, p, nlen, true);
            char *value = eq ? decode(a, eq + 1, len - nlen - 1, true) : bv_arena_strdup(a, "");
            if (!name || !value) return -1;
            out[n].name = name;
            out[n].value = value;
            n++;
        }
        p += len + (amp ? 1 : 0);
    }
    return n;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

char *bv_base64_decode(bv_arena *a, const char *s, size_t len, size_t *out_len)
{
    char *out = bv_arena_alloc(a, len / 4 * 3 + 4), *o = out;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') { pad++; continue; }
        int v = b64val(c);
        if (v < 0 || pad) return NULL;   /* bad character, or data after padding */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || bits >= 6) return NULL;
    *o = '\0';
    if (out_len) *out_len = (size_t)(o - out);
    return out;
}
