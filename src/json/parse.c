/* Strict RFC 8259 parser into an arena DOM.
 *
 * Shape: one loop with an explicit container stack (no recursion), so nesting depth costs heap,
 * never C stack; the depth cap is checked before a container is opened. Members of the open
 * containers are collected on one scratch stack and copied into an exact-size arena array when the
 * container closes, so the arena holds no half-grown arrays. Duplicate keys are caught as each key
 * is read: a linear scan for small objects, a per-object hash table once an object is large, so a
 * big object costs O(n), not O(n^2). Strings are scanned 8 bytes at a time until a byte that needs
 * attention ('"', '\\', a control character or non-ASCII); strings without escapes are then one
 * memcpy. */
#include "bevan/json.h"
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    HT_THRESHOLD = 16,      /* objects with this many members switch to a hash table for dup checks */
    STR_CHUNK = 16384,      /* strings and number texts are packed into chunks of this size */
    STR_DIRECT = 2048,      /* longer strings get an arena allocation of their own */
    NODE_CHUNK_MAX = 256,   /* nodes are carved from chunks that grow up to this many */
};

const unsigned char jx_plain[256] = {
    0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0, /* 0x00-0x1F: control */
    1,1,0,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, /* 0x22 '"' */
    1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,0,1,1,1, /* 0x5C '\\' */
    1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,
    /* 0x80-0xFF: UTF-8, validated by jx_utf8_seq */
};

typedef struct {
    size_t start;      /* first scratch slot of this container */
    size_t *ht;        /* open addressing: slot index (relative to start) + 1; NULL while small */
    size_t ht_cap;     /* power of two */
    bool is_obj;
} frame;

typedef struct {
    bv_arena *a;
    const unsigned char *base, *end;
    size_t max_depth, max_string;
    json_error *err;
    json_member *slots;      /* scratch: items/members of every open container, innermost last */
    size_t nslots, slots_cap;
    frame *frames;
    size_t depth, frames_cap;
    json_value *nodes;       /* node chunk being handed out */
    size_t nodes_left, node_chunk;
    char *sbuf;              /* string chunk being handed out */
    size_t sbuf_left;
    size_t sbuf_chunk;       /* next chunk size: small documents get one chunk no bigger than they are */
} parser;

const char *jx_utf8_why(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t avail = (size_t)(end - s), need;
    if (c >= 0x80 && c < 0xC0) return "unexpected continuation byte";
    if (c == 0xC0 || c == 0xC1) return "overlong encoding";
    if (c >= 0xF5) return c >= 0xF8 ? "invalid byte" : "code point above U+10FFFF";
    need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    for (size_t i = 1; i < need; i++)
        if (i >= avail || (s[i] & 0xC0) != 0x80) return "truncated sequence";
    if (c == 0xE0 && s[1] < 0xA0) return "overlong encoding";
    if (c == 0xF0 && s[1] < 0x90) return "overlong encoding";
    if (c == 0xED && s[1] >= 0xA0) return "UTF-16 surrogate encoded in UTF-8";
    if (c == 0xF4 && s[1] >= 0x90) return "code point above U+10FFFF";
    return "invalid sequence";
}

static void set_pos(json_error *e, const unsigned char *base, size_t off)
{
    size_t line = 1, line_start = 0;
    if (off) {
        const unsigned char *p = base, *end = base + off, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            line++;
            p = nl + 1;
            line_start = (size_t)(p - base);
        }
    }
    e->offset = off;
    e->line = line;
    e->column = off - line_start + 1;  /* in bytes */
}

__attribute__((format(printf, 4, 5)))
static int fail_rc(parser *ps, int rc, const unsigned char *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err->message, sizeof ps->err->message, fmt, ap);
    va_end(ap);
    ps->err->too_big = rc == BV_ETOOBIG;
    set_pos(ps->err, ps->base, (size_t)(at - ps->base));
    return rc;
}

#define fail(ps, at, ...) fail_rc((ps), BV_EINVAL, (at), __VA_ARGS__)
#define fail_big(ps, at, ...) fail_rc((ps), BV_ETOOBIG, (at), __VA_ARGS__)

/* Describes the byte at p for a message: "'x'" or "byte 0xC3". */
static const char *describe(const unsigned char *p, char buf[16])
{
    if (*p >= 0x21 && *p < 0x7F) snprintf(buf, 16, "'%c'", *p);
    else snprintf(buf, 16, "byte 0x%02X", *p);
    return buf;
}

/* Copies a key into buf for a message: printable, truncated at a UTF-8 boundary. */
static const char *key_for_message(const char *k, size_t n, char *buf, size_t bufsize)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < bufsize; i++) {
        unsigned char c = (unsigned char)k[i];
        buf[o++] = c < 0x20 || c == 0x7F || c == '"' || c == '\\' ? '?' : (char)c;
    }
    if (o < n) {
        while (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0x80) o--;  /* drop a cut sequence */
        if (o > 0 && (unsigned char)buf[o - 1] >= 0xC0) o--;
        buf[o++] = '.'; buf[o++] = '.'; buf[o++] = '.';
    }
    buf[o] = '\0';
    return buf;
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static inline json_value *node(parser *ps, json_type t)
{
    if (!ps->nodes_left) {
        ps->node_chunk = ps->node_chunk < NODE_CHUNK_MAX ? ps->node_chunk * 2 : NODE_CHUNK_MAX;
        ps->nodes = bv_arena_alloc(ps->a, ps->node_chunk * sizeof(json_value));
        ps->nodes_left = ps->node_chunk;
    }
    ps->nodes_left--;
    json_value *v = ps->nodes++;
    v->type = t;
    return v;
}

/* Room for n bytes plus a NUL. Small strings are packed to spare the arena's 16-byte rounding. */
static char *str_alloc(parser *ps, size_t n)
{
    size_t need = n + 1;
    if (need > ps->sbuf_left) {
        if (need > STR_DIRECT) return bv_arena_alloc(ps->a, need);
        size_t chunk = ps->sbuf_chunk > need ? ps->sbuf_chunk : need;
        ps->sbuf = bv_arena_alloc(ps->a, chunk);
        ps->sbuf_left = chunk;
        ps->sbuf_chunk = STR_CHUNK;
    }
    char *d = ps->sbuf;
    ps->sbuf += need;
    ps->sbuf_left -= need;
    return d;
}

/* Gives back the tail of the last str_alloc(n) when only used bytes (plus NUL) were needed. */
static void str_shrink(parser *ps, char *d, size_t n, size_t used)
{
    if (d + n + 1 == ps->sbuf) {
        ps->sbuf = d + used + 1;
        ps->sbuf_left += n - used;
    }
}

static void slot_push(parser *ps, const char *key, size_t klen, json_value *v)
{
    if (ps->nslots == ps->slots_cap) {
        ps->slots_cap = ps->slots_cap ? ps->slots_cap * 2 : 64;
        ps->slots = bv_realloc(ps->slots, ps->slots_cap * sizeof *ps->slots);
    }
    json_member *m = &ps->slots[ps->nslots++];
    m->key = key;
    m->key_len = klen;
    m->value = v;
}

static int hex4(const unsigned char *p, const unsigned char *lim, uint32_t *out)
{
    uint32_t v = 0;
    if (lim - p < 4) return 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
        else return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

static size_t utf8_put(uint32_t cp, char *d)
{
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | cp >> 6);
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12);
        d[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18);
    d[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    d[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Second pass over a string that has escapes: decode raw[start..stop) into d. */
static int decode_escapes(parser *ps, const unsigned char *r, const unsigned char *stop,
                          char *d, size_t *out_len)
{
    size_t n = 0;
    while (r < stop) {
        const unsigned char *bs = memchr(r, '\\', (size_t)(stop - r));
        size_t run = (size_t)((bs ? bs : stop) - r);
        memcpy(d + n, r, run);
        n += run;
        if (!bs) break;
        r = bs;
        char c;
        switch (r[1]) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(r + 2, stop, &cp))
                return fail(ps, r, "invalid \\u escape: expected four hex digits");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fail(ps, r, "unpaired low surrogate \\u%04X", (unsigned)cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (stop - r < 12 || r[6] != '\\' || r[7] != 'u')
                    return fail(ps, r, "lone high surrogate \\u%04X: must be followed by a \\u low surrogate",
                                (unsigned)cp);
                if (!hex4(r + 8, stop, &lo))
                    return fail(ps, r + 6, "invalid \\u escape: expected four hex digits");
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return fail(ps, r, "high surrogate \\u%04X followed by \\u%04X, not a low surrogate",
                                (unsigned)cp, (unsigned)lo);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                r += 12;
            } else {
                r += 6;
            }
            n += utf8_put(cp, d + n);
            continue;
        }
        default: {
            char b[16];
            return fail(ps, r, "invalid escape '\\' followed by %s", describe(r + 1, b));
        }
        }
        d[n++] = c;
        r += 2;
    }
    *out_len = n;
    return BV_OK;
}

/* *pp is at the opening quote; on success it is just past the closing quote. */
static int parse_string(parser *ps, const unsigned char **pp, const char **out, size_t *out_len)
{
    const unsigned char *q0 = *pp, *start = q0 + 1, *s = start, *end = ps->end;
    bool esc = false;
    for (;;) {
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (jx_swar_special(w)) break;
            s += 8;
        }
        while (s < end && jx_plain[*s]) s++;
        if (s >= end) return fail(ps, q0, "unterminated string");
        unsigned c = *s;
        if (c == '"') break;
        if (c == '\\') {
            if (end - s < 2) return fail(ps, q0, "unterminated string");
            switch (s[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': case 'u':
                break;
            default: {
                char b[16];
                return fail(ps, s, "invalid escape '\\' followed by %s", describe(s + 1, b));
            }
            }
            esc = true;
            s += 2;  /* \u digits and surrogate pairing are checked by decode_escapes */
            continue;
        }
        if (c < 0x20) return fail(ps, s, "unescaped control character U+%04X in a string", c);
        size_t n = jx_utf8_seq(s, end);
        if (!n) return fail(ps, s, "invalid UTF-8 in a string: %s", jx_utf8_why(s, end));
        s += n;
    }
    size_t raw = (size_t)(s - start), len = raw;
    if (!esc && raw > ps->max_string)
        return fail_big(ps, q0, "string of %zu bytes exceeds the limit of %zu", raw, ps->max_string);
    char *d = str_alloc(ps, raw);
    if (!esc) {
        memcpy(d, start, raw);
    } else {
        int rc = decode_escapes(ps, start, s, d, &len);
        if (rc) return rc;
        if (len > ps->max_string)
            return fail_big(ps, q0, "string of %zu bytes exceeds the limit of %zu", len, ps->max_string);
        str_shrink(ps, d, raw, len);
    }
    d[len] = '\0';
    *out = d;
    *out_len = len;
    *pp = s + 1;
    return BV_OK;
}

static inline bool is_digit(unsigned c) { return c - '0' < 10u; }

static int parse_number(parser *ps, const unsigned char **pp, json_value **out)
{
    const unsigned char *s = *pp, *p = s, *end = ps->end;
    if (*p == '-') {
        p++;
        if (p < end && *p == 'I') return fail(ps, s, "Infinity is not allowed in JSON");
        if (p < end && *p == 'N') return fail(ps, s, "NaN is not allowed in JSON");
    }
    if (p < end && *p == '0') {
        p++;
        if (p < end && is_digit(*p)) return fail(ps, s, "leading zeros are not allowed in numbers");
    } else if (p < end && is_digit(*p)) {
        do p++; while (p < end && is_digit(*p));
    } else {
        return fail(ps, p, "expected a digit after '-'");
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return fail(ps, p, "expected a digit after the decimal point");
        do p++; while (p < end && is_digit(*p));
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !is_digit(*p)) return fail(ps, p, "expected a digit in the exponent");
        do p++; while (p < end && is_digit(*p));
    }
    size_t len = (size_t)(p - s);
    char *t = str_alloc(ps, len);
    memcpy(t, s, len);
    t[len] = '\0';
    json_value *v = node(ps, JSON_NUMBER);
    v->u.num.text = t;
    v->u.num.len = len;
    *out = v;
    *pp = p;
    return BV_OK;
}

static inline uint64_t key_hash(const char *k, size_t n) { return bv_hash(BV_HASH_BASIS, k, n); }

static inline bool same_key(const json_member *m, const char *k, size_t n)
{
    return m->key_len == n && memcmp(m->key, k, n) == 0;
}

/* Inserts member rel (relative to f->start) into f's table; false if its key is already there. */
static bool ht_insert(frame *f, const json_member *slots, size_t rel)
{
    const json_member *m = &slots[f->start + rel];
    size_t mask = f->ht_cap - 1, i = (size_t)key_hash(m->key, m->key_len) & mask;
    while (f->ht[i]) {
        if (same_key(&slots[f->start + f->ht[i] - 1], m->key, m->key_len)) return false;
        i = (i + 1) & mask;
    }
    f->ht[i] = rel + 1;
    return true;
}

/* True if the newest member of the innermost (object) frame repeats an earlier key. */
static bool is_duplicate(parser *ps)
{
    frame *f = &ps->frames[ps->depth - 1];
    size_t count = ps->nslots - f->start;   /* including the new member */
    const json_member *nm = &ps->slots[ps->nslots - 1];
    if (count <= HT_THRESHOLD) {
        for (size_t i = f->start; i < ps->nslots - 1; i++)
            if (same_key(&ps->slots[i], nm->key, nm->key_len)) return true;
        return false;
    }
    if (!f->ht || count * 2 > f->ht_cap) {
        /* (Re)build at <= 25% load; earlier members are known to be distinct. */
        size_t cap = f->ht_cap ? f->ht_cap : 64;
        while (cap < count * 4) cap *= 2;
        free(f->ht);
        f->ht = bv_calloc(cap, sizeof *f->ht);
        f->ht_cap = cap;
        for (size_t i = 0; i + 1 < count; i++) ht_insert(f, ps->slots, i);
    }
    return !ht_insert(f, ps->slots, count - 1);
}

static void push_frame(parser *ps, bool is_obj)
{
    if (ps->depth == ps->frames_cap) {
        ps->frames_cap = ps->frames_cap ? ps->frames_cap * 2 : 16;
        ps->frames = bv_realloc(ps->frames, ps->frames_cap * sizeof *ps->frames);
    }
    frame *f = &ps->frames[ps->depth++];
    f->start = ps->nslots;
    f->ht = NULL;
    f->ht_cap = 0;
    f->is_obj = is_obj;
}

static json_value *close_frame(parser *ps)
{
    frame *f = &ps->frames[--ps->depth];
    size_t n = ps->nslots - f->start;
    const json_member *src = n ? ps->slots + f->start : NULL;  /* slots is NULL before the first push */
    json_value *v = node(ps, f->is_obj ? JSON_OBJECT : JSON_ARRAY);
    if (f->is_obj) {
        json_member *m = NULL;
        if (n) {
            m = bv_arena_alloc(ps->a, n * sizeof *m);
            memcpy(m, src, n * sizeof *m);
        }
        v->u.obj.members = m;
        v->u.obj.count = v->u.obj.cap = n;
    } else {
        json_value **items = NULL;
        if (n) {
            items = bv_arena_alloc(ps->a, n * sizeof *items);
            for (size_t i = 0; i < n; i++) items[i] = src[i].value;
        }
        v->u.arr.items = items;
        v->u.arr.count = v->u.arr.cap = n;
    }
    free(f->ht);
    f->ht = NULL;
    ps->nslots = f->start;
    return v;
}

/* *pp is at the first non-space byte where a key must start; reads `"key" :`. */
static int parse_key(parser *ps, const unsigned char **pp, bool after_comma)
{
    const unsigned char *p = *pp, *end = ps->end;
    if (p >= end) return fail(ps, p, "unexpected end of input: expected an object key");
    if (*p != '"') {
        char b[16];
        if (*p == '}' && after_comma) return fail(ps, p, "trailing comma before '}'");
        if (*p == '\'') return fail(ps, p, "single quotes are not allowed: keys must use '\"'");
        if (*p == '/') return fail(ps, p, "comments are not allowed in JSON");
        return fail(ps, p, "expected a \"string\" object key, found %s", describe(p, b));
    }
    const unsigned char *kq = p;
    const char *key;
    size_t klen;
    int rc = parse_string(ps, &p, &key, &klen);
    if (rc) return rc;
    slot_push(ps, key, klen, NULL);
    if (is_duplicate(ps)) {
        char kb[104];
        return fail(ps, kq, "duplicate key \"%s\"", key_for_message(key, klen, kb, sizeof kb));
    }
    p = skip_ws(p, end);
    if (p >= end) return fail(ps, p, "unexpected end of input: expected ':'");
    if (*p != ':') {
        char b[16];
        return fail(ps, p, "expected ':' after an object key, found %s", describe(p, b));
    }
    *pp = skip_ws(p + 1, end);
    return BV_OK;
}

/* p is where a value should start but none can; explain why. */
static int bad_value(parser *ps, const unsigned char *p, bool after_comma)
{
    char b[16];
    const unsigned char *end = ps->end;
    if (p >= end) return fail(ps, p, "unexpected end of input: expected a value");
    switch (*p) {
    case ']': case '}':
        if (after_comma) return fail(ps, p, "trailing comma before '%c'", *p);
        return fail(ps, p, "unexpected '%c': expected a value", *p);
    case '\'': return fail(ps, p, "single quotes are not allowed: strings must use '\"'");
    case '/': return fail(ps, p, "comments are not allowed in JSON");
    case '+': return fail(ps, p, "a number may not start with '+'");
    case '.': return fail(ps, p, "a number must have a digit before the decimal point");
    case 'N': return fail(ps, p, "NaN is not allowed in JSON");
    case 'I': return fail(ps, p, "Infinity is not allowed in JSON");
    case 't': return fail(ps, p, "invalid literal: expected 'true'");
    case 'f': return fail(ps, p, "invalid literal: expected 'false'");
    case 'n': return fail(ps, p, "invalid literal: expected 'null'");
    default: return fail(ps, p, "unexpected %s: expected a value", describe(p, b));
    }
}

static int run(parser *ps, json_value **root)
{
    const unsigned char *p = ps->base, *end = ps->end;
    bool after_comma = false;
    int rc;
    if (end - p >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        return fail(ps, p, "a byte order mark is not allowed");
    p = skip_ws(p, end);
    if (p == end) return fail(ps, p, "empty input: expected a JSON value");
    for (;;) {
        json_value *v = NULL;
        /* State: a value must start at p (spaces already skipped). */
        if (p >= end) return bad_value(ps, p, after_comma);
        switch (*p) {
        case '{': case '[': {
            bool obj = *p == '{';
            if (ps->depth >= ps->max_depth)
                return fail(ps, p, "nesting too deep (limit %zu)", ps->max_depth);
            push_frame(ps, obj);
            p = skip_ws(p + 1, end);
            if (p < end && *p == (obj ? '}' : ']')) {
                p++;
                v = close_frame(ps);
                break;
            }
            if (obj && (rc = parse_key(ps, &p, false)) != BV_OK) return rc;
            after_comma = false;
            continue;
        }
        case '"':
            v = node(ps, JSON_STRING);
            if ((rc = parse_string(ps, &p, &v->u.str.s, &v->u.str.len)) != BV_OK) return rc;
            break;
        case '-': case '0': case '1': case '2': case '3': case '4':
        case '5': case '6': case '7': case '8': case '9':
            if ((rc = parse_number(ps, &p, &v)) != BV_OK) return rc;
            break;
        case 't':
            if (end - p < 4 || memcmp(p, "true", 4) != 0) return bad_value(ps, p, false);
            v = node(ps, JSON_TRUE);
            p += 4;
            break;
        case 'f':
            if (end - p < 5 || memcmp(p, "false", 5) != 0) return bad_value(ps, p, false);
            v = node(ps, JSON_FALSE);
            p += 5;
            break;
        case 'n':
            if (end - p < 4 || memcmp(p, "null", 4) != 0) return bad_value(ps, p, false);
            v = node(ps, JSON_NULL);
            p += 4;
            break;
        default:
            return bad_value(ps, p, after_comma);
        }
        /* State: v is complete; attach it and close any containers that end here. */
        for (;;) {
            if (ps->depth == 0) {
                p = skip_ws(p, end);
                if (p != end && *p == '/') return fail(ps, p, "comments are not allowed in JSON");
                if (p != end) return fail(ps, p, "unexpected data after the JSON value");
                *root = v;
                return BV_OK;
            }
            const frame *f = &ps->frames[ps->depth - 1];
            if (f->is_obj) ps->slots[ps->nslots - 1].value = v;
            else slot_push(ps, NULL, 0, v);
            p = skip_ws(p, end);
            char closer = f->is_obj ? '}' : ']';
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                if (f->is_obj && (rc = parse_key(ps, &p, true)) != BV_OK) return rc;
                after_comma = !f->is_obj;
                break;
            }
            if (p < end && *p == closer) {
                p++;
                v = close_frame(ps);
                continue;
            }
            if (p >= end) return fail(ps, p, "unexpected end of input: expected ',' or '%c'", closer);
            if (*p == '/') return fail(ps, p, "comments are not allowed in JSON");
            char b[16];
            return fail(ps, p, "expected ',' or '%c', found %s", closer, describe(p, b));
        }
    }
}

int json_parse(bv_arena *a, const char *text, size_t len, const json_limits *lim,
               json_value **out, json_error *err)
{
    json_error scratch_err;
    if (!err) err = &scratch_err;
    memset(err, 0, sizeof *err);
    err->line = err->column = 1;
    if (out) *out = NULL;
    static const char empty[1] = "";
    parser ps = {0};
    ps.a = a;
    ps.base = (const unsigned char *)(text ? text : empty);
    ps.end = ps.base + (text ? len : 0);
    ps.err = err;
    ps.node_chunk = 8;
    /* Decoded strings and number texts (each with its NUL) never need more than len + 1 bytes. */
    ps.sbuf_chunk = len < STR_CHUNK ? len + 1 : STR_CHUNK;
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : BV_MAX_BODY_BYTES;
    ps.max_depth = lim && lim->max_depth ? lim->max_depth : BV_MAX_JSON_DEPTH;
    ps.max_string = lim && lim->max_string ? lim->max_string : BV_MAX_JSON_STRING;
    if (text && len > max_bytes) {
        snprintf(err->message, sizeof err->message, "document of %zu bytes exceeds the limit of %zu",
                 len, max_bytes);
        err->too_big = true;
        set_pos(err, ps.base, max_bytes);
        return BV_ETOOBIG;
    }
    json_value *root = NULL;
    int rc = run(&ps, &root);
    for (size_t i = 0; i < ps.depth; i++) free(ps.frames[i].ht);
    free(ps.frames);
    free(ps.slots);
    if (rc == BV_OK && out) *out = root;
    return rc;
}
