/* DOM accessors, builders, equality, clone and number helpers.
 * Builders grow arrays and member lists by doubling inside the arena (the old block is simply left
 * behind: arenas free everything at once). json_equal and json_clone recurse; the trees they see
 * come from json_parse (depth-capped) or from code. */
#include "bevan/json.h"
#include "internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Accessors ---- */

bool json_is(const json_value *v, json_type t) { return v && v->type == t; }

static json_member *find_member(const json_value *obj, const char *key, size_t klen, size_t *idx)
{
    for (size_t i = 0; i < obj->u.obj.count; i++) {
        json_member *m = &obj->u.obj.members[i];
        if (m->key_len == klen && memcmp(m->key, key, klen) == 0) {
            if (idx) *idx = i;
            return m;
        }
    }
    return NULL;
}

json_value *json_get(const json_value *obj, const char *key)
{
    if (!json_is(obj, JSON_OBJECT) || !key) return NULL;
    json_member *m = find_member(obj, key, strlen(key), NULL);
    return m ? m->value : NULL;
}

json_value *json_at(const json_value *arr, size_t i)
{
    if (!json_is(arr, JSON_ARRAY) || i >= arr->u.arr.count) return NULL;
    return arr->u.arr.items[i];
}

size_t json_count(const json_value *v)
{
    if (json_is(v, JSON_ARRAY)) return v->u.arr.count;
    if (json_is(v, JSON_OBJECT)) return v->u.obj.count;
    return 0;
}

const char *json_str(const json_value *v) { return json_is(v, JSON_STRING) ? v->u.str.s : NULL; }

const char *json_get_str(const json_value *obj, const char *key) { return json_str(json_get(obj, key)); }

/* ---- Numbers ---- */

bool jx_number_valid(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    if (p < end && *p == '-') p++;
    if (p >= end) return false;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return false;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return false;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return false;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p == end;
}

/* A JSON number as  ±  digits[first..last] x 10^exp, with no leading or trailing zero digits.
 * digits is the integer part followed by the fraction part (the '.' dropped). */
typedef struct {
    bool neg, zero;
    bool big_exp;                 /* exponent text has more than 18 digits: exp not computed */
    const char *ip, *fp;          /* integer and fraction digits */
    size_t ilen, flen;
    size_t first, last;           /* significant digit span, indexes into ip ++ fp */
    int64_t exp;
    const char *etext;            /* exponent digits without leading zeros (big_exp case) */
    size_t elen;
    bool eneg;
    int64_t adj;                  /* exp minus the written exponent */
} decnum;

static char dn_digit(const decnum *d, size_t i) { return i < d->ilen ? d->ip[i] : d->fp[i - d->ilen]; }

static void decompose(const char *text, size_t len, decnum *d)
{
    const char *p = text, *end = text + len;
    memset(d, 0, sizeof *d);
    if (p < end && *p == '-') { d->neg = true; p++; }
    d->ip = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    d->ilen = (size_t)(p - d->ip);
    d->fp = p;
    if (p < end && *p == '.') {
        d->fp = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        d->flen = (size_t)(p - d->fp);
    }
    int64_t e = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) { d->eneg = *p == '-'; p++; }
        while (p < end && *p == '0') p++;
        d->etext = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        d->elen = (size_t)(p - d->etext);
        if (d->elen > 18) {
            d->big_exp = true;
        } else {
            for (size_t i = 0; i < d->elen; i++) e = e * 10 + (d->etext[i] - '0');
            if (d->eneg) e = -e;
        }
    }
    size_t n = d->ilen + d->flen, f = 0;
    while (f < n && dn_digit(d, f) == '0') f++;
    if (f == n) {
        d->zero = true;
        return;
    }
    size_t l = n - 1;
    while (dn_digit(d, l) == '0') l--;
    d->first = f;
    d->last = l;
    /* Text lengths are far below 2^62, so this cannot overflow. */
    d->adj = (int64_t)(n - 1 - l) - (int64_t)d->flen;
    d->exp = e + d->adj;
}

static bool number_equal(const json_value *a, const json_value *b)
{
    decnum x, y;
    decompose(a->u.num.text, a->u.num.len, &x);
    decompose(b->u.num.text, b->u.num.len, &y);
    if (x.zero || y.zero) return x.zero && y.zero;   /* -0 == 0 */
    if (x.neg != y.neg || x.last - x.first != y.last - y.first) return false;
    for (size_t i = 0; i <= x.last - x.first; i++)
        if (dn_digit(&x, x.first + i) != dn_digit(&y, y.first + i)) return false;
    if (!x.big_exp && !y.big_exp) return x.exp == y.exp;
    /* Exponents beyond 10^18 are compared as written (see docs/json.md). */
    return x.big_exp && y.big_exp && x.eneg == y.eneg && x.elen == y.elen && x.adj == y.adj &&
           memcmp(x.etext, y.etext, x.elen) == 0;
}

bool json_number_to_double(const json_value *v, double *out)
{
    if (!json_is(v, JSON_NUMBER)) return false;
    /* The text is validated and NUL-terminated; strtod assumes the "C" locale (Bevan never
     * calls setlocale). */
    char *endp;
    double d = strtod(v->u.num.text, &endp);
    if (endp != v->u.num.text + v->u.num.len || isinf(d)) return false;
    *out = d;
    return true;
}

bool json_number_to_i64(const json_value *v, int64_t *out)
{
    if (!json_is(v, JSON_NUMBER)) return false;
    decnum d;
    decompose(v->u.num.text, v->u.num.len, &d);
    if (d.zero) { *out = 0; return true; }
    if (d.big_exp || d.exp < 0) return false;
    size_t k = d.last - d.first + 1;
    if (k + (uint64_t)d.exp > 19) return false;
    uint64_t acc = 0;
    for (size_t i = d.first; i <= d.last; i++) acc = acc * 10 + (uint64_t)(dn_digit(&d, i) - '0');
    for (int64_t i = 0; i < d.exp; i++) {
        if (acc > UINT64_MAX / 10) return false;
        acc *= 10;
    }
    uint64_t lim = d.neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    if (acc > lim) return false;
    *out = d.neg ? (acc == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
    return true;
}

/* ---- Equality and clone ---- */

bool json_equal(const json_value *a, const json_value *b)
{
    if (a == b) return true;
    if (!a || !b || a->type != b->type) return false;
    switch (a->type) {
    case JSON_NULL: case JSON_FALSE: case JSON_TRUE: return true;
    case JSON_NUMBER: return number_equal(a, b);
    case JSON_STRING:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case JSON_ARRAY:
        if (a->u.arr.count != b->u.arr.count) return false;
        for (size_t i = 0; i < a->u.arr.count; i++)
            if (!json_equal(a->u.arr.items[i], b->u.arr.items[i])) return false;
        return true;
    case JSON_OBJECT:
        if (a->u.obj.count != b->u.obj.count) return false;
        for (size_t i = 0; i < a->u.obj.count; i++) {
            const json_member *ma = &a->u.obj.members[i], *mb = &b->u.obj.members[i];
            /* Same order is the common case; otherwise look the key up. Keys are unique. */
            if (mb->key_len != ma->key_len || memcmp(mb->key, ma->key, ma->key_len) != 0)
                mb = find_member(b, ma->key, ma->key_len, NULL);
            if (!mb || !json_equal(ma->value, mb->value)) return false;
        }
        return true;
    }
    return false;
}

static char *copy_bytes(bv_arena *a, const char *s, size_t n)
{
    char *d = bv_arena_alloc(a, n + 1);
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

json_value *json_clone(bv_arena *a, const json_value *v)
{
    if (!v) return NULL;
    json_value *c = bv_arena_alloc(a, sizeof *c);
    *c = *v;
    switch (v->type) {
    case JSON_NULL: case JSON_FALSE: case JSON_TRUE: break;
    case JSON_NUMBER: c->u.num.text = copy_bytes(a, v->u.num.text, v->u.num.len); break;
    case JSON_STRING: c->u.str.s = copy_bytes(a, v->u.str.s, v->u.str.len); break;
    case JSON_ARRAY: {
        size_t n = v->u.arr.count;
        c->u.arr.items = n ? bv_arena_alloc(a, n * sizeof *c->u.arr.items) : NULL;
        c->u.arr.cap = n;
        for (size_t i = 0; i < n; i++) c->u.arr.items[i] = json_clone(a, v->u.arr.items[i]);
        break;
    }
    case JSON_OBJECT: {
        size_t n = v->u.obj.count;
        c->u.obj.members = n ? bv_arena_alloc(a, n * sizeof *c->u.obj.members) : NULL;
        c->u.obj.cap = n;
        for (size_t i = 0; i < n; i++) {
            const json_member *m = &v->u.obj.members[i];
            c->u.obj.members[i].key = copy_bytes(a, m->key, m->key_len);
            c->u.obj.members[i].key_len = m->key_len;
            c->u.obj.members[i].value = json_clone(a, m->value);
        }
        break;
    }
    }
    return c;
}

/* ---- Builders ---- */

json_value *json_new(bv_arena *a, json_type t)
{
    json_value *v = bv_arena_calloc(a, 1, sizeof *v);
    v->type = t;
    if (t == JSON_NUMBER) { v->u.num.text = "0"; v->u.num.len = 1; }
    if (t == JSON_STRING) { v->u.str.s = ""; v->u.str.len = 0; }
    return v;
}

json_value *json_new_stringn(bv_arena *a, const char *s, size_t n)
{
    json_value *v = json_new(a, JSON_STRING);
    if (s) {
        v->u.str.s = copy_bytes(a, s, n);
        v->u.str.len = n;
    }
    return v;
}

json_value *json_new_string(bv_arena *a, const char *s) { return json_new_stringn(a, s, s ? strlen(s) : 0); }

json_value *json_new_number_text(bv_arena *a, const char *text)
{
    size_t n = text ? strlen(text) : 0;
    if (!text || !jx_number_valid(text, n)) bv_panic("json_new_number_text: not a JSON number");
    json_value *v = json_new(a, JSON_NUMBER);
    v->u.num.text = copy_bytes(a, text, n);
    v->u.num.len = n;
    return v;
}

json_value *json_new_int(bv_arena *a, int64_t n)
{
    char buf[24];
    int len = snprintf(buf, sizeof buf, "%" PRId64, n);
    json_value *v = json_new(a, JSON_NUMBER);
    v->u.num.text = copy_bytes(a, buf, (size_t)len);
    v->u.num.len = (size_t)len;
    return v;
}

json_value *json_new_bool(bv_arena *a, bool b) { return json_new(a, b ? JSON_TRUE : JSON_FALSE); }

/* Makes room for one more member (doubling; parsed objects start with cap == count). */
static void obj_reserve(bv_arena *a, json_value *obj)
{
    if (obj->u.obj.count < obj->u.obj.cap) return;
    size_t cap = obj->u.obj.cap ? obj->u.obj.cap * 2 : 4;
    json_member *m = bv_arena_alloc(a, cap * sizeof *m);
    if (obj->u.obj.count) memcpy(m, obj->u.obj.members, obj->u.obj.count * sizeof *m);
    obj->u.obj.members = m;
    obj->u.obj.cap = cap;
}

static void arr_reserve(bv_arena *a, json_value *arr)
{
    if (arr->u.arr.count < arr->u.arr.cap) return;
    size_t cap = arr->u.arr.cap ? arr->u.arr.cap * 2 : 4;
    json_value **items = bv_arena_alloc(a, cap * sizeof *items);
    if (arr->u.arr.count) memcpy(items, arr->u.arr.items, arr->u.arr.count * sizeof *items);
    arr->u.arr.items = items;
    arr->u.arr.cap = cap;
}

/* A NULL value is stored as JSON null so the tree never holds NULL pointers. */
static json_value *or_null(bv_arena *a, json_value *v) { return v ? v : json_new(a, JSON_NULL); }

void json_set(bv_arena *a, json_value *obj, const char *key, json_value *v)
{
    if (!json_is(obj, JSON_OBJECT) || !key) return;
    size_t klen = strlen(key);
    json_member *m = find_member(obj, key, klen, NULL);
    if (m) {
        m->value = or_null(a, v);
        return;
    }
    obj_reserve(a, obj);
    m = &obj->u.obj.members[obj->u.obj.count++];
    m->key = copy_bytes(a, key, klen);
    m->key_len = klen;
    m->value = or_null(a, v);
}

void json_set_at(bv_arena *a, json_value *obj, size_t pos, const char *key, json_value *v)
{
    if (!json_is(obj, JSON_OBJECT) || !key) return;
    json_remove(obj, key);
    size_t n = obj->u.obj.count, klen = strlen(key);
    if (pos > n) pos = n;
    obj_reserve(a, obj);
    json_member *m = obj->u.obj.members;
    memmove(m + pos + 1, m + pos, (n - pos) * sizeof *m);
    m[pos].key = copy_bytes(a, key, klen);
    m[pos].key_len = klen;
    m[pos].value = or_null(a, v);
    obj->u.obj.count = n + 1;
}

bool json_remove(json_value *obj, const char *key)
{
    if (!json_is(obj, JSON_OBJECT) || !key) return false;
    size_t i;
    if (!find_member(obj, key, strlen(key), &i)) return false;
    json_member *m = obj->u.obj.members;
    memmove(m + i, m + i + 1, (obj->u.obj.count - i - 1) * sizeof *m);
    obj->u.obj.count--;
    return true;
}

void json_push(bv_arena *a, json_value *arr, json_value *v)
{
    if (!json_is(arr, JSON_ARRAY)) return;
    arr_reserve(a, arr);
    arr->u.arr.items[arr->u.arr.count++] = or_null(a, v);
}

bool json_array_remove(json_value *arr, size_t i)
{
    if (!json_is(arr, JSON_ARRAY) || i >= arr->u.arr.count) return false;
    json_value **it = arr->u.arr.items;
    memmove(it + i, it + i + 1, (arr->u.arr.count - i - 1) * sizeof *it);
    arr->u.arr.count--;
    return true;
}

bool json_array_insert(bv_arena *a, json_value *arr, size_t i, json_value *v)
{
    if (!json_is(arr, JSON_ARRAY) || i > arr->u.arr.count) return false;
    arr_reserve(a, arr);
    json_value **it = arr->u.arr.items;
    memmove(it + i + 1, it + i, (arr->u.arr.count - i) * sizeof *it);
    it[i] = or_null(a, v);
    arr->u.arr.count++;
    return true;
}

/* ---- UTF-8 ---- */

bool json_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & 0x8080808080808080ull) break;
            p += 8;
        }
        while (p < end && *p < 0x80) p++;
        if (p >= end) break;
        size_t n = jx_utf8_seq(p, end);
        if (!n) return false;
        p += n;
    }
    return true;
}
