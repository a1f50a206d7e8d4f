/* FHIRPath evaluator over the JSON DOM.
 *
 * Every expression evaluates to a collection (fp_coll). Navigation knows FHIR types from the
 * generated definitions: `Observation.value` finds valueQuantity (typed Quantity), `birthDate`
 * carries its `_birthDate` companion (so .extension() works on primitives), BackboneElements
 * are typed by their element definition, and resources inside contained/entry.resource are
 * typed by their resourceType. A node of unknown type is navigated as plain JSON.
 *
 * The evaluator only reads the AST and the resource; everything it makes goes into the arena
 * given to the call, so one compiled expression may be evaluated by many threads at once. */
#include "fhirpath_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fp_fail(fp_ctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen && !c->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return BV_EINVAL;
}

void fp_push(fp_ctx *c, fp_coll *out, const fp_item *it)
{
    if (++c->steps > FP_MAX_STEPS) {
        c->too_costly = true;
        return;
    }
    if (out->n == out->cap) {
        size_t nc = out->cap ? out->cap * 2 : 4;
        fp_item *ni = bv_arena_alloc(fp_tmp(c), nc * sizeof *ni);
        if (out->n) memcpy(ni, out->items, out->n * sizeof *ni);
        out->items = ni;
        out->cap = nc;
    }
    out->items[out->n++] = *it;
}

void fp_charge(fp_ctx *c, size_t n)
{
    c->steps += n;
    if (c->steps > FP_MAX_STEPS) c->too_costly = true;
}

/* ---- Items for JSON nodes ---- */

static const char *canonical_type(const char *name)
{
    const fhir_type *t = fp_type_find(name);
    return t ? t->name : NULL;
}

fp_item fp_node_item(const json_value *v, const json_value *ext, const char *type, const fhir_element *elem)
{
    fp_item it = {.kind = BV_FP_NODE, .node = v, .ext = ext, .type = type, .elem = elem};
    if (!type && v && v->type != JSON_OBJECT && v->type != JSON_ARRAY) {
        /* plain JSON of unknown type (e.g. type() results): a System value */
        fp_item sv;
        if (fp_to_system(NULL, &it, &sv)) return sv;
    }
    if (json_is(v, JSON_OBJECT) && (!type || (type[0] == 'R' && strcmp(type, "Resource") == 0) ||
                                    (type[0] == 'D' && strcmp(type, "DomainResource") == 0))) {
        const char *rt = json_get_str(v, "resourceType");
        const char *ct = rt ? canonical_type(rt) : NULL;
        if (ct) {
            it.type = ct;
            it.elem = NULL;
        }
    }
    return it;
}

fp_item fp_resource_item(const json_value *res)
{
    return fp_node_item(res, NULL, NULL, NULL);
}

/* The element list an object node's children are defined by. */
static const fhir_element *elem_list(const fp_item *it, size_t *n)
{
    const fhir_element *e = it->elem;
    if (e) {
        for (int hops = 0; e->content_ref >= 0 && hops < 8; hops++) e = &fhir_elements[e->content_ref];
        if (e->n_children > 0 && e->first_child >= 0) {
            *n = e->n_children;
            return &fhir_elements[e->first_child];
        }
    }
    const fhir_type *t = it->type ? fp_type_find(it->type) : NULL;
    if (t && t->first_element >= 0 && t->kind != FHIR_KIND_PRIMITIVE) {
        *n = t->n_elements;
        return &fhir_elements[t->first_element];
    }
    *n = 0;
    return NULL;
}

static bool element_is_inline(const fhir_element *e)
{
    return (e->n_children > 0 && e->first_child >= 0) || e->content_ref >= 0;
}

/* "_" + name into buf; false if it does not fit */
static bool ext_key(char *buf, size_t cap, const char *name)
{
    size_t n = strlen(name);
    if (n + 2 > cap) return false;
    buf[0] = '_';
    memcpy(buf + 1, name, n + 1);
    return true;
}

/* Push v (value or array) with its companion x (object or array) as items of one element. */
static void push_values(fp_ctx *c, const json_value *v, const json_value *x, const char *type,
                        const fhir_element *elem, fp_coll *out)
{
    if (json_is(v, JSON_ARRAY)) {
        size_t n = v->u.arr.count;
        size_t nx = json_is(x, JSON_ARRAY) ? x->u.arr.count : 0;
        for (size_t i = 0; i < n; i++) {
            const json_value *iv = v->u.arr.items[i];
            const json_value *ix = i < nx ? x->u.arr.items[i] : NULL;
            if (ix && ix->type == JSON_NULL) ix = NULL;
            if (iv && iv->type == JSON_NULL) {
                if (!ix) continue;
                iv = NULL;
            }
            fp_item it = fp_node_item(iv, ix, type, elem);
            fp_push(c, out, &it);
        }
        return;
    }
    if (v && v->type == JSON_NULL) v = NULL;
    if (!v) {
        if (json_is(x, JSON_ARRAY)) {
            for (size_t i = 0; i < x->u.arr.count; i++) {
                const json_value *ix = x->u.arr.items[i];
                if (!json_is(ix, JSON_OBJECT)) continue;
                fp_item it = fp_node_item(NULL, ix, type, elem);
                fp_push(c, out, &it);
            }
        } else if (json_is(x, JSON_OBJECT)) {
            fp_item it = fp_node_item(NULL, x, type, elem);
            fp_push(c, out, &it);
        }
        return;
    }
    fp_item it = fp_node_item(v, json_is(x, JSON_OBJECT) ? x : NULL, type, elem);
    fp_push(c, out, &it);
}

/* Does the JSON key suffix (after the choice name) name type code t? "Quantity"~"Quantity", "String"~"string" */
static bool suffix_is_type(const char *suffix, const char *t)
{
    if (!suffix[0] || suffix[0] < 'A' || suffix[0] > 'Z') return false;
    char f = t[0];
    if (f >= 'a' && f <= 'z') f = (char)(f - 'a' + 'A');
    return f == suffix[0] && strcmp(suffix + 1, t + 1) == 0;
}

static void collect_element(fp_ctx *c, const json_value *obj, const fhir_element *e, fp_coll *out)
{
    if (e->choice) {
        size_t nl = strlen(e->name);
        for (size_t i = 0; i < obj->u.obj.count; i++) {
            const json_member *m = &obj->u.obj.members[i];
            const char *k = m->key;
            bool under = k[0] == '_';
            if (under) k++;
            if (strncmp(k, e->name, nl) != 0) continue;
            const char *type = NULL;
            for (unsigned t = 0; t < e->n_types; t++)
                if (suffix_is_type(k + nl, e->types[t])) { type = e->types[t]; break; }
            if (!type) continue;
            if (under) {
                if (json_get(obj, k)) continue;   /* handled with its value */
                push_values(c, NULL, m->value, type, NULL, out);
            } else {
                char xk[128];
                const json_value *x = ext_key(xk, sizeof xk, k) ? json_get(obj, xk) : NULL;
                push_values(c, m->value, x, type, NULL, out);
            }
        }
        return;
    }
    const char *type = e->n_types ? e->types[0] : NULL;
    /* Inline structures carry their definition for their children; bound `code` primitives carry
     * it for their implied code system (token extraction). */
    const fhir_element *inl = element_is_inline(e) || (e->binding_valueset && type && strcmp(type, "code") == 0) ? e : NULL;
    const json_value *v = json_get(obj, e->name);
    char xk[128];
    const json_value *x = ext_key(xk, sizeof xk, e->name) ? json_get(obj, xk) : NULL;
    if (!v && !x) return;
    push_values(c, v, x, type, inl, out);
}

static void raw_member(fp_ctx *c, const json_value *obj, const char *name, fp_coll *out)
{
    const json_value *v = json_get(obj, name);
    char xk[128];
    const json_value *x = ext_key(xk, sizeof xk, name) ? json_get(obj, xk) : NULL;
    if (v || x) push_values(c, v, x, NULL, NULL, out);
}

int fp_member(fp_ctx *c, const fp_item *it, const char *name, fp_coll *out)
{
    if (it->kind != BV_FP_NODE) return BV_OK;
    const json_value *v = it->node;
    if (!json_is(v, JSON_OBJECT)) {
        /* a primitive: its id and extensions live in the "_name" companion */
        if (!it->ext) return BV_OK;
        if (strcmp(name, "extension") == 0) push_values(c, json_get(it->ext, "extension"), NULL, "Extension", NULL, out);
        else if (strcmp(name, "id") == 0) push_values(c, json_get(it->ext, "id"), NULL, "string", NULL, out);
        return BV_OK;
    }
    size_t n;
    const fhir_element *list = elem_list(it, &n);
    if (!list) {
        raw_member(c, v, name, out);
        return BV_OK;
    }
    for (size_t k = 0; k < n; k++)
        if (list[k].name[0] == name[0] && strcmp(list[k].name, name) == 0) {
            collect_element(c, v, &list[k], out);
            return BV_OK;
        }
    if (strcmp(name, "resourceType") == 0 || it->loose) return BV_OK;
    return fp_fail(c, "unknown element '%s' on type %s", name, it->type ? it->type : "?");
}

static void mark_loose(fp_coll *out, size_t from)
{
    for (size_t i = from; i < out->n; i++) out->items[i].loose = true;
}

static void children_of(fp_ctx *c, const fp_item *it, fp_coll *out);

int fp_children(fp_ctx *c, const fp_item *it, fp_coll *out)
{
    size_t from = out->n;
    children_of(c, it, out);
    mark_loose(out, from);
    return BV_OK;
}

static void children_of(fp_ctx *c, const fp_item *it, fp_coll *out)
{
    if (it->kind != BV_FP_NODE) return;
    const json_value *v = it->node;
    if (!json_is(v, JSON_OBJECT)) {
        if (it->ext) push_values(c, json_get(it->ext, "extension"), NULL, "Extension", NULL, out);
        return;
    }
    size_t n;
    const fhir_element *list = elem_list(it, &n);
    for (size_t i = 0; i < v->u.obj.count; i++) {
        const json_member *m = &v->u.obj.members[i];
        const char *k = m->key;
        if (strcmp(k, "resourceType") == 0) continue;
        bool under = k[0] == '_';
        if (under && json_get(v, k + 1)) continue;   /* merged with its value */
        const char *key = under ? k + 1 : k;
        const fhir_element *e = NULL;
        const char *type = NULL;
        for (size_t j = 0; list && j < n && !e; j++) {
            const fhir_element *cand = &list[j];
            if (!cand->choice) {
                if (strcmp(cand->name, key) == 0) {
                    e = cand;
                    type = cand->n_types ? cand->types[0] : NULL;
                }
            } else {
                size_t nl = strlen(cand->name);
                if (strncmp(key, cand->name, nl) != 0) continue;
                for (unsigned t = 0; t < cand->n_types; t++)
                    if (suffix_is_type(key + nl, cand->types[t])) {
                        e = cand;
                        type = cand->types[t];
                        break;
                    }
            }
        }
        const fhir_element *inl = e && !e->choice && element_is_inline(e) ? e : NULL;
        if (under) {
            push_values(c, NULL, m->value, type, inl, out);
        } else {
            char xk[128];
            const json_value *x = ext_key(xk, sizeof xk, key) ? json_get(v, xk) : NULL;
            push_values(c, m->value, x, type, inl, out);
        }
    }
}

/* ---- Booleans ---- */

int fp_to_bool(fp_ctx *c, const fp_coll *v, int *out)
{
    if (v->n == 0) { *out = -1; return BV_OK; }
    if (v->n > 1) return fp_fail(c, "expected a single Boolean, got %zu items", v->n);
    fp_item s;
    if (fp_to_system(c->a, &v->items[0], &s) && s.kind == BV_FP_BOOLEAN) {
        *out = s.i ? 1 : 0;
        return BV_OK;
    }
    *out = 1;   /* a single non-Boolean item counts as true (singleton evaluation) */
    return BV_OK;
}

/* ---- Equality, equivalence, ordering ---- */

static bool is_num(const fp_item *s) { return s->kind == BV_FP_INTEGER || s->kind == BV_FP_DECIMAL; }
static double num_val(const fp_item *s) { return s->kind == BV_FP_INTEGER ? (double)s->i : s->d; }
static int num_prec(const fp_item *s) { return s->kind == BV_FP_INTEGER ? 0 : s->prec; }
static bool is_dt(const fp_item *s) { return s->kind == BV_FP_DATE || s->kind == BV_FP_DATETIME; }

static int dt_cmp_items(const fp_item *a, const fp_item *b, int *res)
{
    fp_dt da, db;
    if (!fp_dt_parse(a->str, a->kind == BV_FP_TIME, &da) || !fp_dt_parse(b->str, b->kind == BV_FP_TIME, &db)) return 2;
    return fp_dt_compare(&da, &db, res);
}

int fp_item_equal(fp_ctx *c, const fp_item *a, const fp_item *b)
{
    if (a->kind == BV_FP_NODE && b->kind == BV_FP_NODE && a->node == b->node && a->ext == b->ext) return 1;
    fp_item sa, sb;
    bool va = fp_to_system(c->a, a, &sa) && sa.kind != BV_FP_NODE;
    bool vb = fp_to_system(c->a, b, &sb) && sb.kind != BV_FP_NODE;
    if (va && vb) {
        if (is_num(&sa) && is_num(&sb)) return fp_dec_equal(num_val(&sa), num_prec(&sa), num_val(&sb), num_prec(&sb));
        if (sa.kind == BV_FP_STRING && sb.kind == BV_FP_STRING) return strcmp(sa.str, sb.str) == 0;
        if (sa.kind == BV_FP_BOOLEAN && sb.kind == BV_FP_BOOLEAN) return sa.i == sb.i;
        if ((is_dt(&sa) && is_dt(&sb)) || (sa.kind == BV_FP_TIME && sb.kind == BV_FP_TIME)) {
            int r, rc = dt_cmp_items(&sa, &sb, &r);
            if (rc == 1) return -1;
            if (rc == 2) return 0;
            return r == 0;
        }
        if (sa.kind == BV_FP_QUANTITY && sb.kind == BV_FP_QUANTITY) {
            int r;
            if (fp_qty_compare(&sa, &sb, &r) != 0) return -1;
            return r == 0;
        }
        return 0;
    }
    if (va != vb) return 0;
    if (a->kind == BV_FP_NODE && b->kind == BV_FP_NODE) {
        if (!a->node || !b->node) return a->node == b->node && json_equal(a->ext, b->ext);
        return json_equal(a->node, b->node);
    }
    return 0;
}

/* Equivalence of strings: ASCII case ignored, runs of whitespace equal to one space, ends trimmed. */
static const char *equiv_form(bv_arena *a, const char *s)
{
    size_t n = strlen(s), o = 0;
    char *r = bv_arena_alloc(a, n + 1);
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            space = o > 0;
            continue;
        }
        if (space) r[o++] = ' ';
        space = false;
        r[o++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    r[o] = '\0';
    return r;
}

static bool str_equiv(bv_arena *a, const char *x, const char *y)
{
    return strcmp(equiv_form(a, x), equiv_form(a, y)) == 0;
}

bool fp_item_equivalent(fp_ctx *c, const fp_item *a, const fp_item *b)
{
    fp_item sa, sb;
    bool va = fp_to_system(c->a, a, &sa) && sa.kind != BV_FP_NODE;
    bool vb = fp_to_system(c->a, b, &sb) && sb.kind != BV_FP_NODE;
    if (va && vb) {
        if (is_num(&sa) && is_num(&sb)) return fp_dec_equiv(num_val(&sa), num_prec(&sa), num_val(&sb), num_prec(&sb));
        if (sa.kind == BV_FP_STRING && sb.kind == BV_FP_STRING) return str_equiv(c->a, sa.str, sb.str);
        if (sa.kind == BV_FP_BOOLEAN && sb.kind == BV_FP_BOOLEAN) return sa.i == sb.i;
        if ((is_dt(&sa) && is_dt(&sb)) || (sa.kind == BV_FP_TIME && sb.kind == BV_FP_TIME)) {
            int r;
            return dt_cmp_items(&sa, &sb, &r) == 0 && r == 0;
        }
        if (sa.kind == BV_FP_QUANTITY && sb.kind == BV_FP_QUANTITY) return fp_qty_equivalent(&sa, &sb);
        return false;
    }
    if (va != vb) return false;
    if (a->kind == BV_FP_NODE && b->kind == BV_FP_NODE) {
        if (a->node == b->node && a->ext == b->ext) return true;
        if (!a->node || !b->node) return false;
        return json_equal(a->node, b->node);
    }
    return false;
}

int fp_item_compare(fp_ctx *c, const fp_item *a, const fp_item *b, int *res)
{
    fp_item sa, sb;
    bool va = fp_to_system(c->a, a, &sa) && sa.kind != BV_FP_NODE;
    bool vb = fp_to_system(c->a, b, &sb) && sb.kind != BV_FP_NODE;
    if (!va || !vb) return fp_fail(c, "cannot compare non-primitive values");
    if (is_num(&sa) && is_num(&sb)) {
        double x = num_val(&sa), y = num_val(&sb);
        if (fp_dec_equal(x, num_prec(&sa), y, num_prec(&sb))) *res = 0;
        else *res = x < y ? -1 : 1;
        return 0;
    }
    if (sa.kind == BV_FP_STRING && sb.kind == BV_FP_STRING) {
        int r = strcmp(sa.str, sb.str);
        *res = r < 0 ? -1 : r > 0;
        return 0;
    }
    if ((is_dt(&sa) && is_dt(&sb)) || (sa.kind == BV_FP_TIME && sb.kind == BV_FP_TIME)) {
        int rc = dt_cmp_items(&sa, &sb, res);
        if (rc == 2) return fp_fail(c, "cannot compare these date/time values");
        return rc;
    }
    if (sa.kind == BV_FP_QUANTITY && sb.kind == BV_FP_QUANTITY) return fp_qty_compare(&sa, &sb, res);
    return fp_fail(c, "cannot compare values of different types");
}

/* ---- Hash sets ---- */

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* Structural hash consistent with json_equal (members as an unordered set, numbers by value). */
static uint64_t json_hash(const json_value *v, int depth)
{
    const uint64_t basis = BV_HASH_BASIS;
    if (!v) return 1;
    switch (v->type) {
    case JSON_NULL: return 2;
    case JSON_FALSE: return 3;
    case JSON_TRUE: return 4;
    case JSON_NUMBER: {
        double d = strtod(v->u.num.text, NULL);   /* JSON-validated text */
        if (d == 0) d = 0;
        return mix(bv_hash(basis, &d, sizeof d));
    }
    case JSON_STRING: return bv_hash(basis, v->u.str.s, v->u.str.len);
    case JSON_ARRAY: {
        uint64_t h = 5;
        for (size_t i = 0; i < v->u.arr.count && depth < 64; i++) h = mix(h * 31 + json_hash(v->u.arr.items[i], depth + 1));
        return h;
    }
    case JSON_OBJECT: {
        uint64_t h = 6;
        for (size_t i = 0; i < v->u.obj.count && depth < 64; i++) {
            const json_member *m = &v->u.obj.members[i];
            h += mix(bv_hash(basis, m->key, m->key_len) ^ json_hash(m->value, depth + 1));
        }
        return h;
    }
    }
    return 0;
}

static uint64_t item_hash(fp_ctx *c, const fp_item *it)
{
    const uint64_t basis = BV_HASH_BASIS;
    fp_item s;
    if (fp_to_system(c->a, it, &s) && s.kind != BV_FP_NODE) {
        switch (s.kind) {
        case BV_FP_STRING: return bv_hash(basis ^ 'S', s.str, strlen(s.str));
        case BV_FP_BOOLEAN: return 7 + (uint64_t)s.i;
        case BV_FP_INTEGER: case BV_FP_DECIMAL: {
            double d = s.kind == BV_FP_INTEGER ? (double)s.i : s.d;
            double r = round(d * 1e6);
            if (r == 0) r = 0;
            return mix(bv_hash(basis ^ 'N', &r, sizeof r));
        }
        default: return 9 + (uint64_t)s.kind;   /* dates, times, quantities: compared pairwise */
        }
    }
    if (it->kind == BV_FP_NODE) return json_hash(it->node ? it->node : it->ext, 0);
    return 0;
}

struct fp_set {
    fp_item *items;
    uint64_t *hashes;
    bool *used;
    size_t n, cap;
};

fp_set *fp_set_new(fp_ctx *c)
{
    bv_arena *t = fp_tmp(c);
    fp_set *s = bv_arena_calloc(t, 1, sizeof *s);
    s->cap = 16;
    s->items = bv_arena_alloc(t, s->cap * sizeof *s->items);
    s->hashes = bv_arena_alloc(t, s->cap * sizeof *s->hashes);
    s->used = bv_arena_calloc(t, s->cap, sizeof *s->used);
    return s;
}

static bool set_find(fp_ctx *c, const fp_set *s, const fp_item *it, uint64_t h, size_t *slot)
{
    size_t i = (size_t)h & (s->cap - 1);
    while (s->used[i]) {
        if (s->hashes[i] == h) {
            fp_charge(c, 1);
            const fp_item *o = &s->items[i];
            if ((o->kind == BV_FP_NODE && it->kind == BV_FP_NODE && o->node == it->node && o->ext == it->ext) ||
                fp_item_equal(c, o, it) == 1)
                return true;
        }
        i = (i + 1) & (s->cap - 1);
    }
    *slot = i;
    return false;
}

bool fp_set_has(fp_ctx *c, const fp_set *s, const fp_item *it)
{
    size_t slot;
    return set_find(c, s, it, item_hash(c, it), &slot);
}

bool fp_set_add(fp_ctx *c, fp_set *s, const fp_item *it)
{
    uint64_t h = item_hash(c, it);
    size_t slot;
    if (set_find(c, s, it, h, &slot)) return false;
    if ((s->n + 1) * 2 > s->cap) {
        fp_set big = {.cap = s->cap * 2};
        bv_arena *t = fp_tmp(c);
        big.items = bv_arena_alloc(t, big.cap * sizeof *big.items);
        big.hashes = bv_arena_alloc(t, big.cap * sizeof *big.hashes);
        big.used = bv_arena_calloc(t, big.cap, sizeof *big.used);
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->used[i]) continue;
            size_t j = (size_t)s->hashes[i] & (big.cap - 1);
            while (big.used[j]) j = (j + 1) & (big.cap - 1);
            big.used[j] = true;
            big.hashes[j] = s->hashes[i];
            big.items[j] = s->items[i];
        }
        big.n = s->n;
        *s = big;
        slot = (size_t)h & (s->cap - 1);
        while (s->used[slot]) slot = (slot + 1) & (s->cap - 1);
    }
    s->used[slot] = true;
    s->hashes[slot] = h;
    s->items[slot] = *it;
    s->n++;
    return true;
}

/* ---- References ---- */

bool fp_ref_parse(bv_arena *a, const char *ref, const char **type, const char **id, const char **version)
{
    *type = *id = NULL;
    if (version) *version = NULL;
    if (!ref || !*ref || ref[0] == '#') return false;
    if (strncmp(ref, "urn:", 4) == 0) return false;
    const char *q = strpbrk(ref, "?#");
    size_t len = q ? (size_t)(q - ref) : strlen(ref);
    /* split into segments from the end */
    const char *segs[6];
    size_t lens[6];
    int ns = 0;
    size_t end = len;
    while (end > 0 && ns < 6) {
        size_t b = end;
        while (b > 0 && ref[b - 1] != '/') b--;
        segs[ns] = ref + b;
        lens[ns] = end - b;
        ns++;
        if (b == 0) break;
        end = b - 1;
    }
    /* segs[0] is last. Forms: Type/id or Type/id/_history/v */
    int ti = 1, ii = 0;
    const char *ver = NULL;
    size_t verlen = 0;
    if (ns >= 4 && lens[1] == 8 && strncmp(segs[1], "_history", 8) == 0) {
        ver = segs[0];
        verlen = lens[0];
        ti = 3;
        ii = 2;
    }
    if (ns <= ti) return false;
    char tbuf[80];
    if (lens[ti] == 0 || lens[ti] >= sizeof tbuf || lens[ii] == 0 || lens[ii] > BV_MAX_ID_LEN) return false;
    memcpy(tbuf, segs[ti], lens[ti]);
    tbuf[lens[ti]] = '\0';
    if (!fhir_is_resource_type(tbuf)) return false;
    for (size_t k = 0; k < lens[ii]; k++) {
        char ch = segs[ii][k];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
        if (!ok) return false;
    }
    *type = canonical_type(tbuf);
    *id = bv_arena_strndup(a, segs[ii], lens[ii]);
    if (version && ver && verlen) *version = bv_arena_strndup(a, ver, verlen);
    return *type != NULL;
}

/* ---- Evaluation ---- */

static int eval_binary(fp_ctx *c, const fp_node *n, const fp_env *env, fp_coll *out);

static int ext_constant(fp_ctx *c, const char *name, fp_coll *out)
{
    fp_item it;
    if (strcmp(name, "resource") == 0 || strcmp(name, "context") == 0 || strcmp(name, "rootResource") == 0) {
        if (c->has_root) fp_push(c, out, &c->root);
        return BV_OK;
    }
    if (strcmp(name, "ucum") == 0) it = fp_mk_str("http://unitsofmeasure.org");
    else if (strcmp(name, "sct") == 0) it = fp_mk_str("http://snomed.info/sct");
    else if (strcmp(name, "loinc") == 0) it = fp_mk_str("http://loinc.org");
    else if (strncmp(name, "vs-", 3) == 0) it = fp_mk_str(bv_arena_printf(c->a, "http://hl7.org/fhir/ValueSet/%s", name + 3));
    else if (strncmp(name, "ext-", 4) == 0)
        it = fp_mk_str(bv_arena_printf(c->a, "http://hl7.org/fhir/StructureDefinition/%s", name + 4));
    else return fp_fail(c, "unknown external constant %%%s", name);
    fp_push(c, out, &it);
    return BV_OK;
}

static int ident_step(fp_ctx *c, const fp_node *n, const fp_item *it, bool term, fp_coll *out)
{
    if (term && n->is_type_name && it->kind == BV_FP_NODE && it->type) {
        if (fp_fhir_type_derives(it->type, n->name)) {
            fp_push(c, out, it);
            return BV_OK;
        }
        if (c->opts.strict) return fp_fail(c, "type %s does not match the context type %s", n->name, it->type);
        return BV_OK;
    }
    return fp_member(c, it, n->name, out);
}

static bool ordered_function(const char *name)
{
    static const char *const fns[] = {"first", "last", "tail", "skip", "take", "single"};
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++)
        if (strcmp(fns[k], name) == 0) return true;
    return false;
}

/* Does this expression end in children() or descendants() (an unordered collection)? */
static bool unordered_source(const fp_node *n)
{
    const fp_node *f = n->t == FPN_DOT ? n->r : n;
    return f->t == FPN_FUNC && (strcmp(f->name, "children") == 0 || strcmp(f->name, "descendants") == 0);
}

static int call_function(fp_ctx *c, const fp_node *n, const fp_coll *in, const fp_env *env, fp_coll *out)
{
    return fp_functions[n->fn].impl(c, n, in, env, out);
}

static int eval_node(fp_ctx *c, const fp_node *n, const fp_env *env, fp_coll *out)
{
    int rc = BV_OK;
    switch (n->t) {
    case FPN_LIT:
        fp_push(c, out, &n->lit);
        return BV_OK;
    case FPN_EMPTY:
        return BV_OK;
    case FPN_THIS:
        for (size_t i = 0; env->focus && i < env->focus->n; i++) fp_push(c, out, &env->focus->items[i]);
        return BV_OK;
    case FPN_INDEXVAR:
        if (env->has_index) {
            fp_item it = fp_mk_int(env->index);
            fp_push(c, out, &it);
        }
        return BV_OK;
    case FPN_TOTAL:
        for (size_t i = 0; env->total && i < env->total->n; i++) fp_push(c, out, &env->total->items[i]);
        return BV_OK;
    case FPN_EXT:
        return ext_constant(c, n->name, out);
    case FPN_IDENT:
        for (size_t i = 0; env->focus && i < env->focus->n && rc == BV_OK; i++)
            rc = ident_step(c, n, &env->focus->items[i], true, out);
        return rc;
    case FPN_FUNC: {
        static const fp_coll empty;
        return call_function(c, n, env->focus ? env->focus : &empty, env, out);
    }
    case FPN_DOT: {
        fp_coll l = {0};
        if (c->opts.strict && n->r->t == FPN_FUNC && ordered_function(n->r->name) && unordered_source(n->l))
            return fp_fail(c, "%s() on the unordered result of children()/descendants()", n->r->name);
        rc = fp_eval(c, n->l, env, &l);
        if (rc) return rc;
        if (n->r->t == FPN_IDENT) {
            for (size_t i = 0; i < l.n && rc == BV_OK; i++) rc = ident_step(c, n->r, &l.items[i], false, out);
            return rc;
        }
        return call_function(c, n->r, &l, env, out);
    }
    case FPN_INDEX: {
        fp_coll l = {0}, ix = {0};
        if ((rc = fp_eval(c, n->l, env, &l)) || (rc = fp_eval(c, n->r, env, &ix))) return rc;
        if (ix.n == 0) return BV_OK;
        fp_item s;
        if (ix.n != 1 || !fp_to_system(c->a, &ix.items[0], &s) || s.kind != BV_FP_INTEGER)
            return fp_fail(c, "an indexer needs a single Integer");
        if (s.i >= 0 && (uint64_t)s.i < l.n) fp_push(c, out, &l.items[s.i]);
        return BV_OK;
    }
    case FPN_NEG:
    case FPN_POS: {
        fp_coll l = {0};
        if ((rc = fp_eval(c, n->l, env, &l))) return rc;
        if (l.n == 0) return BV_OK;
        fp_item s;
        if (l.n > 1) return fp_fail(c, "unary %c needs a single value", n->t == FPN_NEG ? '-' : '+');
        if (!fp_to_system(c->a, &l.items[0], &s) ||
            (s.kind != BV_FP_INTEGER && s.kind != BV_FP_DECIMAL && s.kind != BV_FP_QUANTITY))
            return fp_fail(c, "unary %c needs a number or quantity", n->t == FPN_NEG ? '-' : '+');
        if (n->t == FPN_NEG) {
            if (s.kind == BV_FP_INTEGER) {
                if (s.i == INT64_MIN) return fp_fail(c, "integer overflow");
                s.i = -s.i;
            } else {
                s.d = -s.d;
                s.str = NULL;
            }
        }
        fp_push(c, out, &s);
        return BV_OK;
    }
    case FPN_IS:
    case FPN_AS: {
        fp_coll l = {0};
        if ((rc = fp_eval(c, n->l, env, &l))) return rc;
        if (l.n == 0) return BV_OK;
        if (n->t == FPN_IS) {
            if (l.n > 1) return fp_fail(c, "'is' needs a single item, got %zu", l.n);
            fp_item b = fp_mk_bool(fp_is_type(&l.items[0], &n->ts));
            fp_push(c, out, &b);
            return BV_OK;
        }
        if (l.n > 1 && !c->opts.lenient_as) return fp_fail(c, "'as' needs a single item, got %zu", l.n);
        for (size_t i = 0; i < l.n; i++)
            if (fp_is_exact_type(&l.items[i], &n->ts)) fp_push(c, out, &l.items[i]);
        return BV_OK;
    }
    case FPN_BIN:
        return eval_binary(c, n, env, out);
    }
    return fp_fail(c, "bad expression node");
}

int fp_eval(fp_ctx *c, const fp_node *n, const fp_env *env, fp_coll *out)
{
    if (++c->depth > FP_MAX_EVAL_DEPTH) {
        c->depth--;
        return fp_fail(c, "expression nested too deeply to evaluate");
    }
    int rc = eval_node(c, n, env, out);
    c->depth--;
    if (rc == BV_OK && c->too_costly) rc = fp_fail(c, "expression too costly (more than %u items)", FP_MAX_STEPS);
    return rc;
}

int fp_eval_on(fp_ctx *c, const fp_node *n, const fp_coll *focus, fp_coll *out)
{
    fp_env env = {.focus = focus};
    return fp_eval(c, n, &env, out);
}

/* ---- Binary operators ---- */

static int single_value(fp_ctx *c, const fp_coll *v, fp_item *s, const char *what)
{
    if (v->n != 1) return fp_fail(c, "%s needs a single value, got %zu", what, v->n);
    if (!fp_to_system(c->a, &v->items[0], s) || s->kind == BV_FP_NODE)
        return fp_fail(c, "%s needs a primitive value", what);
    return BV_OK;
}

static void push_bool(fp_ctx *c, fp_coll *out, bool b)
{
    fp_item it = fp_mk_bool(b);
    fp_push(c, out, &it);
}

static int coll_equal(fp_ctx *c, const fp_coll *l, const fp_coll *r, fp_coll *out, bool negate)
{
    if (l->n == 0 || r->n == 0) return BV_OK;
    if (l->n != r->n) {
        push_bool(c, out, negate);
        return BV_OK;
    }
    bool unknown = false;
    for (size_t i = 0; i < l->n; i++) {
        int e = fp_item_equal(c, &l->items[i], &r->items[i]);
        if (e == 0) {
            push_bool(c, out, negate);
            return BV_OK;
        }
        if (e < 0) unknown = true;
    }
    if (!unknown) push_bool(c, out, !negate);
    return BV_OK;
}

static bool coll_equivalent(fp_ctx *c, const fp_coll *l, const fp_coll *r)
{
    if (l->n != r->n) return false;
    if (l->n == 0) return true;
    bool *used = bv_arena_calloc(fp_tmp(c), r->n, sizeof *used);
    for (size_t i = 0; i < l->n; i++) {
        bool found = false;
        for (size_t j = 0; j < r->n && !found; j++)
            if (!used[j] && fp_item_equivalent(c, &l->items[i], &r->items[j])) used[j] = found = true;
        if (!found) return false;
    }
    return true;
}

static bool coll_contains(fp_ctx *c, const fp_coll *v, const fp_item *it)
{
    fp_charge(c, v->n);
    if (c->too_costly) return false;
    for (size_t i = 0; i < v->n; i++)
        if (fp_item_equal(c, &v->items[i], it) == 1) return true;
    return false;
}

/* Exact decimal digits needed (up to FP_DEC_DIGITS) to write d. */
static int needed_prec(double d)
{
    for (int k = 0; k < FP_DEC_DIGITS; k++) {
        double f = pow(10, k);
        if (fabs(round(d * f) - d * f) < 1e-9 * (fabs(d * f) > 1 ? fabs(d * f) : 1)) return k;
    }
    return FP_DEC_DIGITS;
}

static const char *unit_or_one(const char *u) { return u && *u ? u : "1"; }

static int arith(fp_ctx *c, fp_op op, const fp_item *a, const fp_item *b, fp_coll *out)
{
    fp_item r;
    if (a->kind == BV_FP_INTEGER && b->kind == BV_FP_INTEGER && op != FPO_DIV) {
        int64_t x = a->i, y = b->i, z;
        switch (op) {
        case FPO_ADD: if (__builtin_add_overflow(x, y, &z)) return fp_fail(c, "integer overflow"); break;
        case FPO_SUB: if (__builtin_sub_overflow(x, y, &z)) return fp_fail(c, "integer overflow"); break;
        case FPO_MUL: if (__builtin_mul_overflow(x, y, &z)) return fp_fail(c, "integer overflow"); break;
        case FPO_IDIV:
            if (y == 0 || (x == INT64_MIN && y == -1)) return BV_OK;
            z = x / y;
            break;
        case FPO_MOD:
            if (y == 0 || (x == INT64_MIN && y == -1)) return BV_OK;
            z = x % y;
            break;
        default: return fp_fail(c, "bad operator");
        }
        r = fp_mk_int(z);
        fp_push(c, out, &r);
        return BV_OK;
    }
    if (is_num(a) && is_num(b)) {
        double x = num_val(a), y = num_val(b), z;
        int pa = num_prec(a), pb = num_prec(b), p = pa > pb ? pa : pb;
        switch (op) {
        case FPO_ADD: z = x + y; break;
        case FPO_SUB: z = x - y; break;
        case FPO_MUL: z = x * y; p = pa + pb > 15 ? 15 : pa + pb; break;
        case FPO_DIV:
            if (y == 0) return BV_OK;
            z = x / y;
            p = needed_prec(z);
            break;
        case FPO_IDIV:
            if (y == 0) return BV_OK;
            z = trunc(x / y);
            if (fabs(z) > 9e18) return fp_fail(c, "integer overflow");
            r = fp_mk_int((int64_t)z);
            fp_push(c, out, &r);
            return BV_OK;
        case FPO_MOD:
            if (y == 0) return BV_OK;
            z = fmod(x, y);
            break;
        default: return fp_fail(c, "bad operator");
        }
        if (!isfinite(z)) return BV_OK;
        if (op != FPO_DIV) {
            double f = pow(10, p > 15 ? 15 : p);
            if (fabs(z) * f < 1e15) z = round(z * f) / f;
        }
        r = fp_mk_dec(z, p);
        fp_push(c, out, &r);
        return BV_OK;
    }
    if ((op == FPO_ADD || op == FPO_SUB) && (is_dt(a) || a->kind == BV_FP_TIME) && b->kind == BV_FP_QUANTITY) {
        fp_dt dt;
        if (!fp_dt_parse(a->str, a->kind == BV_FP_TIME, &dt)) return fp_fail(c, "bad date/time value");
        if (fp_dt_add(&dt, b->d, b->str, b->calendar, op == FPO_SUB) != 0)
            return fp_fail(c, "cannot add '%s' to a date/time", b->str ? b->str : "");
        r = *a;
        r.str = fp_dt_format(c->a, &dt);
        r.kind = a->kind == BV_FP_DATETIME && dt.is_date ? BV_FP_DATE : a->kind;
        fp_push(c, out, &r);
        return BV_OK;
    }
    if (op == FPO_ADD && a->kind == BV_FP_STRING && b->kind == BV_FP_STRING) {
        r = fp_mk_str(bv_arena_printf(c->a, "%s%s", a->str, b->str));
        fp_push(c, out, &r);
        return BV_OK;
    }
    if (a->kind == BV_FP_QUANTITY || b->kind == BV_FP_QUANTITY) {
        fp_item qa = *a, qb = *b;
        if (is_num(&qa)) qa = fp_mk_qty(num_val(a), num_prec(a), "1", false);
        if (is_num(&qb)) qb = fp_mk_qty(num_val(b), num_prec(b), "1", false);
        if (qa.kind != BV_FP_QUANTITY || qb.kind != BV_FP_QUANTITY) return fp_fail(c, "bad operands for arithmetic");
        if (op == FPO_ADD || op == FPO_SUB) {
            if (is_num(a) || is_num(b)) return fp_fail(c, "cannot add a number and a quantity");
            fp_unit ua, ub;
            fp_unit_parse(qa.str, qa.calendar, &ua);
            fp_unit_parse(qb.str, qb.calendar, &ub);
            double bv;
            if (qa.calendar == qb.calendar && strcmp(unit_or_one(qa.str), unit_or_one(qb.str)) == 0) bv = qb.d;
            else if (fp_unit_same_dims(&ua, &ub)) bv = qb.d * ub.factor / ua.factor;
            else return fp_fail(c, "incompatible units");
            int p = qa.prec > qb.prec ? qa.prec : qb.prec;
            r = fp_mk_qty(op == FPO_ADD ? qa.d + bv : qa.d - bv, p, qa.str, qa.calendar);
            fp_push(c, out, &r);
            return BV_OK;
        }
        if (qa.calendar || qb.calendar) return fp_fail(c, "cannot multiply calendar durations");
        const char *x = unit_or_one(qa.str), *y = unit_or_one(qb.str);
        const char *u;
        double z;
        if (op == FPO_MUL) {
            z = qa.d * qb.d;
            u = strcmp(x, "1") == 0 ? y : strcmp(y, "1") == 0 ? x : bv_arena_printf(c->a, "(%s).(%s)", x, y);
        } else if (op == FPO_DIV) {
            if (qb.d == 0) return BV_OK;
            z = qa.d / qb.d;
            u = strcmp(y, "1") == 0 ? x : strcmp(x, y) == 0 ? "1" : bv_arena_printf(c->a, "(%s)/(%s)", x, y);
        } else {
            return fp_fail(c, "bad operator for quantities");
        }
        fp_unit uu;
        if (fp_unit_parse(u, false, &uu) && !uu.opaque) {
            bool dimless = true;
            for (int k = 0; k < 8; k++) dimless = dimless && uu.dims[k] == 0;
            if (dimless) {
                z *= uu.factor;
                u = "1";
            }
        }
        r = fp_mk_qty(z, needed_prec(z), u, false);
        fp_push(c, out, &r);
        return BV_OK;
    }
    return fp_fail(c, "bad operands for arithmetic");
}

static void union_into(fp_ctx *c, fp_set *seen, fp_coll *out, const fp_coll *v)
{
    for (size_t i = 0; i < v->n; i++)
        if (fp_set_add(c, seen, &v->items[i])) fp_push(c, out, &v->items[i]);
}

static int eval_binary(fp_ctx *c, const fp_node *n, const fp_env *env, fp_coll *out)
{
    fp_coll l = {0}, r = {0};
    int rc = fp_eval(c, n->l, env, &l);
    if (rc) return rc;
    fp_op op = n->op;
    if (op == FPO_AND || op == FPO_OR || op == FPO_IMPLIES || op == FPO_XOR) {
        int lb = -1, rb = -1; /* empty until fp_to_bool says otherwise */
        if ((rc = fp_to_bool(c, &l, &lb))) return rc;
        if (op == FPO_AND && lb == 0) { push_bool(c, out, false); return BV_OK; }
        if (op == FPO_OR && lb == 1) { push_bool(c, out, true); return BV_OK; }
        if (op == FPO_IMPLIES && lb == 0) { push_bool(c, out, true); return BV_OK; }
        if ((rc = fp_eval(c, n->r, env, &r)) || (rc = fp_to_bool(c, &r, &rb))) return rc;
        switch (op) {
        case FPO_AND:
            if (rb == 0) push_bool(c, out, false);
            else if (lb == 1 && rb == 1) push_bool(c, out, true);
            return BV_OK;
        case FPO_OR:
            if (rb == 1) push_bool(c, out, true);
            else if (lb == 0 && rb == 0) push_bool(c, out, false);
            return BV_OK;
        case FPO_XOR:
            if (lb >= 0 && rb >= 0) push_bool(c, out, lb != rb);
            return BV_OK;
        default: /* implies, lb is true or empty */
            if (rb == 1) push_bool(c, out, true);
            else if (lb == 1 && rb == 0) push_bool(c, out, false);
            return BV_OK;
        }
    }
    if ((rc = fp_eval(c, n->r, env, &r))) return rc;
    switch (op) {
    case FPO_UNION: {
        fp_set *seen = fp_set_new(c);
        for (size_t i = 0; i < out->n; i++) fp_set_add(c, seen, &out->items[i]);
        union_into(c, seen, out, &l);
        union_into(c, seen, out, &r);
        return BV_OK;
    }
    case FPO_EQ: case FPO_NE:
        return coll_equal(c, &l, &r, out, op == FPO_NE);
    case FPO_EQUIV: case FPO_NEQUIV: {
        bool e = coll_equivalent(c, &l, &r);
        push_bool(c, out, op == FPO_EQUIV ? e : !e);
        return BV_OK;
    }
    case FPO_IN: case FPO_CONTAINS: {
        const fp_coll *item = op == FPO_IN ? &l : &r, *set = op == FPO_IN ? &r : &l;
        if (item->n == 0) return BV_OK;
        if (item->n > 1) return fp_fail(c, "'%s' needs a single item", op == FPO_IN ? "in" : "contains");
        push_bool(c, out, coll_contains(c, set, &item->items[0]));
        return BV_OK;
    }
    case FPO_LT: case FPO_LE: case FPO_GT: case FPO_GE: {
        if (l.n == 0 || r.n == 0) return BV_OK;
        if (l.n > 1 || r.n > 1) return fp_fail(c, "comparison needs single values");
        int res;
        rc = fp_item_compare(c, &l.items[0], &r.items[0], &res);
        if (rc < 0) return rc;
        if (rc == 1) return BV_OK;
        bool b = op == FPO_LT ? res < 0 : op == FPO_LE ? res <= 0 : op == FPO_GT ? res > 0 : res >= 0;
        push_bool(c, out, b);
        return BV_OK;
    }
    case FPO_CONCAT: {
        if (l.n > 1 || r.n > 1) return fp_fail(c, "'&' needs single values");
        fp_item a = fp_mk_str(""), b = fp_mk_str("");
        if (l.n && ((rc = single_value(c, &l, &a, "'&'")))) return rc;
        if (r.n && ((rc = single_value(c, &r, &b, "'&'")))) return rc;
        if (a.kind != BV_FP_STRING || b.kind != BV_FP_STRING) return fp_fail(c, "'&' needs strings");
        fp_item s = fp_mk_str(bv_arena_printf(c->a, "%s%s", a.str, b.str));
        fp_push(c, out, &s);
        return BV_OK;
    }
    default: {
        if (l.n == 0 || r.n == 0) return BV_OK;
        fp_item a, b;
        if ((rc = single_value(c, &l, &a, "arithmetic")) || (rc = single_value(c, &r, &b, "arithmetic"))) return rc;
        return arith(c, op, &a, &b, out);
    }
    }
}

/* ---- Public API ---- */

bv_fp_value fp_public_value(bv_arena *a, const fp_item *it)
{
    bv_fp_value v = {.kind = it->kind, .str = it->str, .i = it->i, .d = it->d};
    if (it->kind == BV_FP_NODE) {
        v.node = it->node ? it->node : it->ext;
        v.fhir_type = it->type;
    } else if (it->kind == BV_FP_DECIMAL && !it->str) {
        v.str = fp_format_decimal(a, it->d, it->prec);
    } else if (it->kind == BV_FP_QUANTITY) {
        v.str = it->str ? it->str : "1";
    }
    return v;
}

int fp_eval_items(bv_arena *a, bv_arena *tmp, const bv_fp_expr *e, const fp_item *root, const fp_item *focus,
                  size_t nfocus, const fp_opts *o, fp_coll *out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    fp_ctx c = {.a = a, .tmp = tmp, .err = err, .errlen = errlen};
    if (o) c.opts = *o;
    if (root) {
        c.root = *root;
        c.has_root = true;
    }
    fp_coll f = {.items = (fp_item *)focus, .n = nfocus, .cap = nfocus};
    memset(out, 0, sizeof *out);
    if (!e || !e->root) return fp_fail(&c, "no expression");
    int rc = fp_eval_on(&c, e->root, &f, out);
    if (rc && err && errlen && !err[0]) snprintf(err, errlen, "evaluation failed");
    return rc;
}

int bv_fhirpath_eval_opts(bv_arena *a, const bv_fp_expr *e, const json_value *resource,
                          const bv_fp_options *opt, bv_fp_collection *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    fp_item root;
    size_t nroot = 0;
    if (resource) {
        root = fp_resource_item(resource);
        nroot = 1;
    }
    fp_coll res;
    int rc = fp_eval_items(a, NULL, e, nroot ? &root : NULL, nroot ? &root : NULL, nroot, opt, &res, err, errlen);
    if (rc) return rc;
    if (res.n) {
        out->items = bv_arena_alloc(a, res.n * sizeof *out->items);
        for (size_t i = 0; i < res.n; i++) out->items[i] = fp_public_value(a, &res.items[i]);
    }
    out->n = out->cap = res.n;
    return BV_OK;
}

int bv_fhirpath_eval(bv_arena *a, const bv_fp_expr *e, const json_value *resource,
                     bv_fp_collection *out, char *err, size_t errlen)
{
    return bv_fhirpath_eval_opts(a, e, resource, NULL, out, err, errlen);
}

const char *bv_fhirpath_source(const bv_fp_expr *e) { return e ? e->src : NULL; }
