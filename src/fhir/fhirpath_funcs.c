/* FHIRPath function library. Each function gets its input collection (the focus left of the
 * dot, or the current $this collection when called as a term) and the environment in which its
 * arguments are evaluated. Iterating functions (where, select, all, exists, repeat, aggregate,
 * sort) evaluate their argument once per input item with $this/$index bound. */
#include "fhirpath_internal.h"

#include <inttypes.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FN(name) static int fn_##name(fp_ctx *c, const fp_node *call, const fp_coll *in, const fp_env *env, fp_coll *out)
#define UNUSED_FN_ARGS (void)c, (void)call, (void)in, (void)env, (void)out

/* ---- helpers ---- */

static void push(fp_ctx *c, fp_coll *out, fp_item it) { fp_push(c, out, &it); }
static void push_bool(fp_ctx *c, fp_coll *out, bool b) { push(c, out, fp_mk_bool(b)); }

/* Evaluate argument k in the caller's environment (non-iterating functions). */
static int arg(fp_ctx *c, const fp_node *call, int k, const fp_env *env, fp_coll *out)
{
    memset(out, 0, sizeof *out);
    return fp_eval(c, call->args[k], env, out);
}

/* Evaluate argument k with $this = item, $index = i. */
static int arg_on(fp_ctx *c, const fp_node *n, const fp_item *item, size_t i, const fp_env *env, fp_coll *out)
{
    fp_coll one = {.items = (fp_item *)item, .n = 1, .cap = 1};
    fp_env e = {.focus = &one, .index = (int64_t)i, .has_index = true, .total = env->total};
    memset(out, 0, sizeof *out);
    return fp_eval(c, n, &e, out);
}

/* A single System value from an argument; *present false when the argument is empty. */
static int arg_value(fp_ctx *c, const fp_node *call, int k, const fp_env *env, fp_item *v, bool *present)
{
    fp_coll r;
    int rc = arg(c, call, k, env, &r);
    if (rc) return rc;
    *present = r.n > 0;
    if (r.n == 0) return BV_OK;
    if (r.n > 1) return fp_fail(c, "%s(): argument %d must be a single value", call->name, k + 1);
    if (!fp_to_system(c->a, &r.items[0], v) || v->kind == BV_FP_NODE)
        return fp_fail(c, "%s(): argument %d must be a primitive value", call->name, k + 1);
    return BV_OK;
}

static int arg_string(fp_ctx *c, const fp_node *call, int k, const fp_env *env, const char **s)
{
    fp_item v;
    bool present;
    *s = NULL;
    int rc = arg_value(c, call, k, env, &v, &present);
    if (rc || !present) return rc;
    if (v.kind != BV_FP_STRING) return fp_fail(c, "%s(): argument %d must be a String", call->name, k + 1);
    *s = v.str;
    return BV_OK;
}

static int arg_int(fp_ctx *c, const fp_node *call, int k, const fp_env *env, int64_t *i, bool *present)
{
    fp_item v;
    int rc = arg_value(c, call, k, env, &v, present);
    if (rc || !*present) return rc;
    if (v.kind != BV_FP_INTEGER) return fp_fail(c, "%s(): argument %d must be an Integer", call->name, k + 1);
    *i = v.i;
    return BV_OK;
}

/* Single input value (System). *present false when the input is empty. */
static int in_value(fp_ctx *c, const fp_node *call, const fp_coll *in, fp_item *v, bool *present)
{
    *present = in->n > 0;
    if (in->n == 0) return BV_OK;
    if (in->n > 1) return fp_fail(c, "%s() needs a single input item, got %zu", call->name, in->n);
    if (!fp_to_system(c->a, &in->items[0], v) || v->kind == BV_FP_NODE) {
        if (in->items[0].kind == BV_FP_NODE && !in->items[0].node) { *present = false; return BV_OK; }
        return fp_fail(c, "%s() needs a primitive input, not %s", call->name,
                       in->items[0].type ? in->items[0].type : "an element");
    }
    return BV_OK;
}

/* Single input string (String, or the text of a date/time). */
static int in_string(fp_ctx *c, const fp_node *call, const fp_coll *in, const char **s)
{
    fp_item v;
    bool present;
    *s = NULL;
    int rc = in_value(c, call, in, &v, &present);
    if (rc || !present) return rc;
    if (v.kind == BV_FP_STRING || v.kind == BV_FP_DATE || v.kind == BV_FP_DATETIME || v.kind == BV_FP_TIME) {
        *s = v.str;
        return BV_OK;
    }
    return fp_fail(c, "%s() needs a String input", call->name);
}

static fp_set *set_of(fp_ctx *c, const fp_coll *v)
{
    fp_set *s = fp_set_new(c);
    for (size_t i = 0; i < v->n; i++) fp_set_add(c, s, &v->items[i]);
    return s;
}

/* ---- existence ---- */

FN(empty) { UNUSED_FN_ARGS; push_bool(c, out, in->n == 0); return BV_OK; }

FN(exists)
{
    if (call->nargs == 0) { push_bool(c, out, in->n > 0); return BV_OK; }
    for (size_t i = 0; i < in->n; i++) {
        fp_coll r;
        int b, rc = arg_on(c, call->args[0], &in->items[i], i, env, &r);
        if (rc || (rc = fp_to_bool(c, &r, &b))) return rc;
        if (b == 1) { push_bool(c, out, true); return BV_OK; }
    }
    push_bool(c, out, false);
    return BV_OK;
}

FN(all)
{
    for (size_t i = 0; i < in->n; i++) {
        fp_coll r;
        int b, rc = arg_on(c, call->args[0], &in->items[i], i, env, &r);
        if (rc || (rc = fp_to_bool(c, &r, &b))) return rc;
        if (b != 1) { push_bool(c, out, false); return BV_OK; }
    }
    push_bool(c, out, true);
    return BV_OK;
}

static int bools_check(fp_ctx *c, const fp_node *call, const fp_coll *in, int want, bool all_mode, fp_coll *out)
{
    bool result = all_mode;
    for (size_t i = 0; i < in->n; i++) {
        fp_item v;
        if (!fp_to_system(c->a, &in->items[i], &v) || v.kind != BV_FP_BOOLEAN)
            return fp_fail(c, "%s() needs Boolean items", call->name);
        bool match = (int)v.i == want;
        if (all_mode && !match) result = false;
        if (!all_mode && match) result = true;
    }
    push_bool(c, out, result);
    return BV_OK;
}

FN(allTrue) { (void)env; return bools_check(c, call, in, 1, true, out); }
FN(anyTrue) { (void)env; return bools_check(c, call, in, 1, false, out); }
FN(allFalse) { (void)env; return bools_check(c, call, in, 0, true, out); }
FN(anyFalse) { (void)env; return bools_check(c, call, in, 0, false, out); }

FN(subsetOf)
{
    fp_coll other;
    int rc = arg(c, call, 0, env, &other);
    if (rc) return rc;
    fp_set *os = set_of(c, &other);
    for (size_t i = 0; i < in->n; i++)
        if (!fp_set_has(c, os, &in->items[i])) { push_bool(c, out, false); return BV_OK; }
    push_bool(c, out, true);
    return BV_OK;
}

FN(supersetOf)
{
    fp_coll other;
    int rc = arg(c, call, 0, env, &other);
    if (rc) return rc;
    fp_set *is = set_of(c, in);
    for (size_t i = 0; i < other.n; i++)
        if (!fp_set_has(c, is, &other.items[i])) { push_bool(c, out, false); return BV_OK; }
    push_bool(c, out, true);
    return BV_OK;
}

FN(count) { UNUSED_FN_ARGS; push(c, out, fp_mk_int((int64_t)in->n)); return BV_OK; }

FN(distinct)
{
    UNUSED_FN_ARGS;
    fp_set *seen = fp_set_new(c);
    for (size_t i = 0; i < in->n; i++)
        if (fp_set_add(c, seen, &in->items[i])) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

FN(isDistinct)
{
    UNUSED_FN_ARGS;
    fp_set *seen = fp_set_new(c);
    for (size_t i = 0; i < in->n; i++)
        if (!fp_set_add(c, seen, &in->items[i])) { push_bool(c, out, false); return BV_OK; }
    push_bool(c, out, true);
    return BV_OK;
}

/* ---- filtering and projection ---- */

FN(where)
{
    for (size_t i = 0; i < in->n; i++) {
        fp_coll r;
        int b, rc = arg_on(c, call->args[0], &in->items[i], i, env, &r);
        if (rc || (rc = fp_to_bool(c, &r, &b))) return rc;
        if (b == 1) fp_push(c, out, &in->items[i]);
    }
    return BV_OK;
}

FN(select)
{
    for (size_t i = 0; i < in->n; i++) {
        fp_coll r;
        int rc = arg_on(c, call->args[0], &in->items[i], i, env, &r);
        if (rc) return rc;
        for (size_t k = 0; k < r.n; k++) fp_push(c, out, &r.items[k]);
    }
    return BV_OK;
}

FN(repeat)
{
    fp_coll level = *in;
    fp_coll result = {0};
    fp_set *seen = fp_set_new(c);
    while (level.n > 0) {
        fp_coll next = {0};
        for (size_t i = 0; i < level.n; i++) {
            fp_coll r;
            int rc = arg_on(c, call->args[0], &level.items[i], i, env, &r);
            if (rc) return rc;
            for (size_t k = 0; k < r.n; k++) {
                if (!fp_set_add(c, seen, &r.items[k])) continue;
                fp_push(c, &result, &r.items[k]);
                fp_push(c, &next, &r.items[k]);
            }
            if (c->too_costly) return fp_fail(c, "repeat() too costly");
        }
        level = next;
    }
    for (size_t i = 0; i < result.n; i++) fp_push(c, out, &result.items[i]);
    return BV_OK;
}

FN(ofType)
{
    (void)env;
    for (size_t i = 0; i < in->n; i++)
        if (fp_is_exact_type(&in->items[i], &call->ts)) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

FN(as)
{
    (void)env;
    if (in->n > 1 && !c->opts.lenient_as) return fp_fail(c, "as() needs a single item, got %zu", in->n);
    for (size_t i = 0; i < in->n; i++)
        if (fp_is_exact_type(&in->items[i], &call->ts)) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

FN(is)
{
    (void)env;
    if (in->n == 0) return BV_OK;
    if (in->n > 1) return fp_fail(c, "is() needs a single item, got %zu", in->n);
    push_bool(c, out, fp_is_type(&in->items[0], &call->ts));
    return BV_OK;
}

/* ---- subsetting ---- */

FN(single)
{
    UNUSED_FN_ARGS;
    if (in->n > 1) return fp_fail(c, "single() on %zu items", in->n);
    if (in->n == 1) fp_push(c, out, &in->items[0]);
    return BV_OK;
}

FN(first) { UNUSED_FN_ARGS; if (in->n) fp_push(c, out, &in->items[0]); return BV_OK; }
FN(last) { UNUSED_FN_ARGS; if (in->n) fp_push(c, out, &in->items[in->n - 1]); return BV_OK; }
FN(tail) { UNUSED_FN_ARGS; for (size_t i = 1; i < in->n; i++) fp_push(c, out, &in->items[i]); return BV_OK; }

FN(skip)
{
    int64_t k = 0;
    bool present;
    int rc = arg_int(c, call, 0, env, &k, &present);
    if (rc) return rc;
    if (!present) return fp_fail(c, "skip() needs a number");
    for (size_t i = k < 0 ? 0 : (size_t)k; i < in->n; i++) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

FN(take)
{
    int64_t k = 0;
    bool present;
    int rc = arg_int(c, call, 0, env, &k, &present);
    if (rc) return rc;
    if (!present) return fp_fail(c, "take() needs a number");
    for (size_t i = 0; k > 0 && i < in->n && i < (uint64_t)k; i++) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

FN(intersect)
{
    fp_coll other;
    int rc = arg(c, call, 0, env, &other);
    if (rc) return rc;
    fp_set *os = set_of(c, &other), *seen = fp_set_new(c);
    for (size_t i = 0; i < in->n; i++)
        if (fp_set_has(c, os, &in->items[i]) && fp_set_add(c, seen, &in->items[i])) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

FN(exclude)
{
    fp_coll other;
    int rc = arg(c, call, 0, env, &other);
    if (rc) return rc;
    fp_set *os = set_of(c, &other);
    for (size_t i = 0; i < in->n; i++)
        if (!fp_set_has(c, os, &in->items[i])) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

FN(union)
{
    fp_coll other;
    int rc = arg(c, call, 0, env, &other);
    if (rc) return rc;
    fp_set *seen = fp_set_new(c);
    for (size_t i = 0; i < in->n; i++)
        if (fp_set_add(c, seen, &in->items[i])) fp_push(c, out, &in->items[i]);
    for (size_t i = 0; i < other.n; i++)
        if (fp_set_add(c, seen, &other.items[i])) fp_push(c, out, &other.items[i]);
    return BV_OK;
}

FN(combine)
{
    fp_coll other;
    int rc = arg(c, call, 0, env, &other);
    if (rc) return rc;
    for (size_t i = 0; i < in->n; i++) fp_push(c, out, &in->items[i]);
    for (size_t i = 0; i < other.n; i++) fp_push(c, out, &other.items[i]);
    return BV_OK;
}

FN(iif)
{
    if (in->n > 1) return fp_fail(c, "iif() on %zu items", in->n);
    fp_env e = *env;
    e.focus = in;
    fp_coll r = {0};
    int b, rc = fp_eval(c, call->args[0], &e, &r);
    if (rc) return rc;
    if (r.n > 1) return fp_fail(c, "iif() criterion must be a single Boolean");
    if (c->opts.strict && r.n == 1) {
        fp_item v;
        if (!fp_to_system(c->a, &r.items[0], &v) || v.kind != BV_FP_BOOLEAN)
            return fp_fail(c, "iif() criterion must be a Boolean");
    }
    if ((rc = fp_to_bool(c, &r, &b))) return rc;
    if (b == 1) return fp_eval(c, call->args[1], &e, out);
    if (call->nargs > 2) return fp_eval(c, call->args[2], &e, out);
    return BV_OK;
}

/* ---- conversions ---- */

static bool str_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
        if (x != y) return false;
    }
    return *a == *b;
}

static bool conv_boolean(const fp_item *v, fp_item *r)
{
    switch (v->kind) {
    case BV_FP_BOOLEAN: *r = *v; return true;
    case BV_FP_INTEGER:
        if (v->i == 0 || v->i == 1) { *r = fp_mk_bool(v->i == 1); return true; }
        return false;
    case BV_FP_DECIMAL:
        if (v->d == 0.0 || v->d == 1.0) { *r = fp_mk_bool(v->d == 1.0); return true; }
        return false;
    case BV_FP_STRING: {
        static const char *const t[] = {"true", "t", "yes", "y", "1", "1.0"};
        static const char *const f[] = {"false", "f", "no", "n", "0", "0.0"};
        for (size_t k = 0; k < 6; k++) {
            if (str_ieq(v->str, t[k])) { *r = fp_mk_bool(true); return true; }
            if (str_ieq(v->str, f[k])) { *r = fp_mk_bool(false); return true; }
        }
        return false;
    }
    default: return false;
    }
}

static bool conv_integer(const fp_item *v, fp_item *r)
{
    switch (v->kind) {
    case BV_FP_INTEGER: *r = *v; return true;
    case BV_FP_BOOLEAN: *r = fp_mk_int(v->i); return true;
    case BV_FP_STRING: {
        int64_t i;
        if (!fp_parse_integer(v->str, &i) || i > INT32_MAX || i < INT32_MIN) return false;
        *r = fp_mk_int(i);
        return true;
    }
    default: return false;
    }
}

static bool conv_decimal(const fp_item *v, fp_item *r)
{
    switch (v->kind) {
    case BV_FP_DECIMAL: *r = *v; return true;
    case BV_FP_INTEGER: *r = fp_mk_dec((double)v->i, 0); return true;
    case BV_FP_BOOLEAN: *r = fp_mk_dec(v->i ? 1.0 : 0.0, 1); return true;
    case BV_FP_STRING: {
        double d;
        int p;
        if (!fp_parse_decimal(v->str, &d, &p)) return false;
        *r = fp_mk_dec(d, p);
        return true;
    }
    default: return false;
    }
}

static bool conv_date(bv_arena *a, const fp_item *v, fp_item *r)
{
    fp_dt dt;
    switch (v->kind) {
    case BV_FP_DATE: *r = *v; return true;
    case BV_FP_DATETIME:
    case BV_FP_STRING:
        if (!fp_dt_parse(v->str, false, &dt) || dt.is_time) return false;
        if (v->kind == BV_FP_STRING && !dt.is_date) return false;
        if (dt.prec > FP_P_DAY) dt.prec = FP_P_DAY;
        dt.is_date = true;
        *r = (fp_item){.kind = BV_FP_DATE, .str = fp_dt_format(a, &dt)};
        return true;
    default: return false;
    }
}

static bool conv_datetime(const fp_item *v, fp_item *r)
{
    fp_dt dt;
    switch (v->kind) {
    case BV_FP_DATETIME: *r = *v; return true;
    case BV_FP_DATE: *r = (fp_item){.kind = BV_FP_DATETIME, .str = v->str}; return true;
    case BV_FP_STRING:
        if (!fp_dt_parse(v->str, false, &dt) || dt.is_time) return false;
        *r = (fp_item){.kind = BV_FP_DATETIME, .str = v->str};
        return true;
    default: return false;
    }
}

static bool conv_time(const fp_item *v, fp_item *r)
{
    fp_dt dt;
    switch (v->kind) {
    case BV_FP_TIME: *r = *v; return true;
    case BV_FP_STRING:
        if (!fp_dt_parse(v->str, true, &dt)) return false;
        *r = (fp_item){.kind = BV_FP_TIME, .str = v->str};
        return true;
    default: return false;
    }
}

/* "4.5 'mg'", "4 days", "4" */
static bool conv_quantity(bv_arena *a, const fp_item *v, fp_item *r)
{
    switch (v->kind) {
    case BV_FP_QUANTITY: *r = *v; return true;
    case BV_FP_INTEGER: *r = fp_mk_qty((double)v->i, 0, "1", false); return true;
    case BV_FP_DECIMAL: *r = fp_mk_qty(v->d, v->prec, "1", false); return true;
    case BV_FP_BOOLEAN: *r = fp_mk_qty(v->i ? 1.0 : 0.0, 1, "1", false); return true;
    case BV_FP_STRING: {
        const char *s = v->str, *sp = strchr(s, ' ');
        size_t nl = sp ? (size_t)(sp - s) : strlen(s);
        if (nl == 0 || nl > 64) return false;
        char num[80];
        memcpy(num, s, nl);
        num[nl] = '\0';
        double d;
        int p;
        if (!fp_parse_decimal(num, &d, &p)) return false;
        if (!sp) { *r = fp_mk_qty(d, p, "1", false); return true; }
        const char *u = sp + 1;
        while (*u == ' ') u++;
        size_t ul = strlen(u);
        const char *w;
        if (ul >= 2 && u[0] == '\'' && u[ul - 1] == '\'') {
            *r = fp_mk_qty(d, p, bv_arena_strndup(a, u + 1, ul - 2), false);
            return true;
        }
        if (fp_calendar_word(u, ul, &w)) {
            *r = fp_mk_qty(d, p, bv_arena_strdup(a, u), true);
            return true;
        }
        return false;
    }
    default: return false;
    }
}

typedef enum { CV_BOOL, CV_INT, CV_DEC, CV_STR, CV_DATE, CV_DATETIME, CV_TIME, CV_QTY } conv_kind;

static int convert(fp_ctx *c, const fp_node *call, const fp_coll *in, conv_kind k, bool test, fp_coll *out)
{
    fp_item v, r = {0};
    bool present;
    if (in->n > 1) return fp_fail(c, "%s() needs a single input item", call->name);
    if (in->n == 0) return BV_OK;
    if (!fp_to_system(c->a, &in->items[0], &v) || v.kind == BV_FP_NODE) {
        if (test) push_bool(c, out, false);
        return BV_OK;
    }
    present = true;
    bool ok = false;
    switch (k) {
    case CV_BOOL: ok = conv_boolean(&v, &r); break;
    case CV_INT: ok = conv_integer(&v, &r); break;
    case CV_DEC: ok = conv_decimal(&v, &r); break;
    case CV_STR: {
        const char *s = fp_to_string(c->a, &v);
        ok = s != NULL;
        r = fp_mk_str(s);
        break;
    }
    case CV_DATE: ok = conv_date(c->a, &v, &r); break;
    case CV_DATETIME: ok = conv_datetime(&v, &r); break;
    case CV_TIME: ok = conv_time(&v, &r); break;
    case CV_QTY: ok = conv_quantity(c->a, &v, &r); break;
    }
    (void)present;
    if (test) push_bool(c, out, ok);
    else if (ok) fp_push(c, out, &r);
    return BV_OK;
}

FN(toBoolean) { (void)env; return convert(c, call, in, CV_BOOL, false, out); }
FN(convertsToBoolean) { (void)env; return convert(c, call, in, CV_BOOL, true, out); }
FN(toInteger) { (void)env; return convert(c, call, in, CV_INT, false, out); }
FN(convertsToInteger) { (void)env; return convert(c, call, in, CV_INT, true, out); }
FN(toDecimal) { (void)env; return convert(c, call, in, CV_DEC, false, out); }
FN(convertsToDecimal) { (void)env; return convert(c, call, in, CV_DEC, true, out); }
FN(toString) { (void)env; return convert(c, call, in, CV_STR, false, out); }
FN(convertsToString) { (void)env; return convert(c, call, in, CV_STR, true, out); }
FN(toDate) { (void)env; return convert(c, call, in, CV_DATE, false, out); }
FN(convertsToDate) { (void)env; return convert(c, call, in, CV_DATE, true, out); }
FN(toDateTime) { (void)env; return convert(c, call, in, CV_DATETIME, false, out); }
FN(convertsToDateTime) { (void)env; return convert(c, call, in, CV_DATETIME, true, out); }
FN(toTime) { (void)env; return convert(c, call, in, CV_TIME, false, out); }
FN(convertsToTime) { (void)env; return convert(c, call, in, CV_TIME, true, out); }

static int to_quantity(fp_ctx *c, const fp_node *call, const fp_coll *in, const fp_env *env, bool test, fp_coll *out)
{
    fp_coll tmp = {0};
    int rc = convert(c, call, in, CV_QTY, false, &tmp);
    if (rc) return rc;
    if (in->n == 0) return BV_OK;
    if (tmp.n && call->nargs == 1) {
        const char *unit;
        if ((rc = arg_string(c, call, 0, env, &unit))) return rc;
        if (unit) {
            fp_item q = tmp.items[0];
            fp_unit ua, ub;
            fp_unit_parse(q.str, q.calendar, &ua);
            fp_unit_parse(unit, false, &ub);
            if (strcmp(q.str ? q.str : "1", unit) == 0) {
                /* same unit */
            } else if (fp_unit_same_dims(&ua, &ub)) {
                q.d = q.d * ua.factor / ub.factor;
                q.str = unit;
                q.calendar = false;
                tmp.items[0] = q;
            } else {
                tmp.n = 0;
            }
        }
    }
    if (test) push_bool(c, out, tmp.n > 0);
    else if (tmp.n) fp_push(c, out, &tmp.items[0]);
    return BV_OK;
}

FN(toQuantity) { return to_quantity(c, call, in, env, false, out); }
FN(convertsToQuantity) { return to_quantity(c, call, in, env, true, out); }

/* ---- strings ---- */

FN(indexOf)
{
    const char *s, *sub;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &sub)) || !sub) return rc;
    const char *f = strstr(s, sub);
    int64_t idx = -1;
    if (f) {
        idx = 0;
        for (const char *p = s; p < f; p++)
            if (((unsigned char)*p & 0xC0) != 0x80) idx++;
    }
    push(c, out, fp_mk_int(idx));
    return BV_OK;
}

FN(lastIndexOf)
{
    const char *s, *sub;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &sub)) || !sub) return rc;
    const char *f = NULL;
    for (const char *p = s; (p = strstr(p, sub)) != NULL; p++) {
        f = p;
        if (!*p) break;
    }
    int64_t idx = -1;
    if (f) {
        idx = 0;
        for (const char *p = s; p < f; p++)
            if (((unsigned char)*p & 0xC0) != 0x80) idx++;
    }
    push(c, out, fp_mk_int(idx));
    return BV_OK;
}

FN(substring)
{
    const char *s;
    int64_t start = 0, len = -1;
    bool present, plen = false;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_int(c, call, 0, env, &start, &present)) || !present) return rc;
    if (call->nargs > 1 && ((rc = arg_int(c, call, 1, env, &len, &plen)))) return rc;
    size_t n = fp_utf8_len(s);
    if (start < 0 || (uint64_t)start >= n) return BV_OK;
    const char *b = fp_utf8_at(s, (size_t)start);
    const char *e = plen ? (len <= 0 ? b : fp_utf8_at(b, (size_t)len)) : b + strlen(b);
    push(c, out, fp_mk_str(bv_arena_strndup(c->a, b, (size_t)(e - b))));
    return BV_OK;
}

static int str2(fp_ctx *c, const fp_node *call, const fp_coll *in, const fp_env *env, const char **s, const char **t)
{
    int rc;
    if ((rc = in_string(c, call, in, s)) || !*s) return rc;
    if ((rc = arg_string(c, call, 0, env, t))) return rc;
    return BV_OK;
}

FN(startsWith)
{
    const char *s, *t = NULL;
    int rc = str2(c, call, in, env, &s, &t);
    if (rc || !s || !t) return rc;
    push_bool(c, out, strncmp(s, t, strlen(t)) == 0);
    return BV_OK;
}

FN(endsWith)
{
    const char *s, *t = NULL;
    int rc = str2(c, call, in, env, &s, &t);
    if (rc || !s || !t) return rc;
    size_t ls = strlen(s), lt = strlen(t);
    push_bool(c, out, lt <= ls && strcmp(s + ls - lt, t) == 0);
    return BV_OK;
}

FN(contains)
{
    const char *s, *t = NULL;
    int rc = str2(c, call, in, env, &s, &t);
    if (rc || !s || !t) return rc;
    push_bool(c, out, strstr(s, t) != NULL);
    return BV_OK;
}

static int change_case(fp_ctx *c, const fp_node *call, const fp_coll *in, bool up, fp_coll *out)
{
    const char *s;
    int rc = in_string(c, call, in, &s);
    if (rc || !s) return rc;
    char *r = bv_arena_strdup(c->a, s);
    for (char *p = r; *p; p++) {
        if (up && *p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
        if (!up && *p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    }
    push(c, out, fp_mk_str(r));
    return BV_OK;
}

FN(upper) { (void)env; return change_case(c, call, in, true, out); }
FN(lower) { (void)env; return change_case(c, call, in, false, out); }

FN(length)
{
    (void)env;
    const char *s;
    int rc = in_string(c, call, in, &s);
    if (rc || !s) return rc;
    push(c, out, fp_mk_int((int64_t)fp_utf8_len(s)));
    return BV_OK;
}

FN(toChars)
{
    (void)env;
    const char *s;
    int rc = in_string(c, call, in, &s);
    if (rc || !s) return rc;
    while (*s) {
        const char *e = fp_utf8_at(s, 1);
        push(c, out, fp_mk_str(bv_arena_strndup(c->a, s, (size_t)(e - s))));
        s = e;
    }
    return BV_OK;
}

FN(replace)
{
    const char *s, *pat, *rep;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &pat)) || !pat) return rc;
    if ((rc = arg_string(c, call, 1, env, &rep)) || !rep) return rc;
    bv_buf b;
    bv_buf_init(&b, 0);
    size_t pl = strlen(pat);
    if (pl == 0) {
        bv_buf_puts(&b, rep);
        while (*s) {
            const char *e = fp_utf8_at(s, 1);
            bv_buf_append(&b, s, (size_t)(e - s));
            bv_buf_puts(&b, rep);
            s = e;
        }
    } else {
        const char *p;
        while ((p = strstr(s, pat)) != NULL) {
            bv_buf_append(&b, s, (size_t)(p - s));
            bv_buf_puts(&b, rep);
            s = p + pl;
        }
        bv_buf_puts(&b, s);
    }
    push(c, out, fp_mk_str(bv_arena_strdup(c->a, bv_buf_cstr(&b))));
    bv_buf_free(&b);
    return BV_OK;
}

/* Translate the common PCRE shorthands to POSIX ERE (\d, \D, \w, \W, \s, \S). */
static const char *regex_to_posix(bv_arena *a, const char *re, bool full)
{
    bv_buf b;
    bv_buf_init(&b, 0);
    if (full) bv_buf_puts(&b, "^(");
    bool in_class = false;
    for (const char *p = re; *p; p++) {
        if (*p == '\\' && p[1]) {
            char e = p[1];
            const char *rep = NULL;
            if (e == 'd') rep = in_class ? "0-9" : "[0-9]";
            else if (e == 'D') rep = in_class ? NULL : "[^0-9]";
            else if (e == 'w') rep = in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]";
            else if (e == 'W') rep = in_class ? NULL : "[^A-Za-z0-9_]";
            else if (e == 's') rep = in_class ? "[:space:]" : "[[:space:]]";
            else if (e == 'S') rep = in_class ? NULL : "[^[:space:]]";
            if (rep) {
                bv_buf_puts(&b, rep);
                p++;
                continue;
            }
            bv_buf_append(&b, p, 2);
            p++;
            continue;
        }
        if (*p == '[' && !in_class) in_class = true;
        else if (*p == ']' && in_class) in_class = false;
        bv_buf_putc(&b, *p);
    }
    if (full) bv_buf_puts(&b, ")$");
    const char *r = bv_arena_strdup(a, bv_buf_cstr(&b));
    bv_buf_free(&b);
    return r;
}

static int compile_regex(fp_ctx *c, const char *pat, bool full, regex_t *re)
{
    if (strlen(pat) > 1024) return fp_fail(c, "regular expression too long");
    const char *p = regex_to_posix(c->a, pat, full);
    if (regcomp(re, p, REG_EXTENDED) != 0) return fp_fail(c, "invalid regular expression '%s'", pat);
    return BV_OK;
}

static int do_matches(fp_ctx *c, const fp_node *call, const fp_coll *in, const fp_env *env, bool full, fp_coll *out)
{
    const char *s, *pat;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &pat)) || !pat) return rc;
    regex_t re;
    if ((rc = compile_regex(c, pat, full, &re))) return rc;
    bool m = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    push_bool(c, out, m);
    return BV_OK;
}

FN(matches) { return do_matches(c, call, in, env, false, out); }
FN(matchesFull) { return do_matches(c, call, in, env, true, out); }

FN(replaceMatches)
{
    const char *s, *pat, *rep;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &pat)) || !pat) return rc;
    if ((rc = arg_string(c, call, 1, env, &rep)) || !rep) return rc;
    if (!*pat) { push(c, out, fp_mk_str(s)); return BV_OK; }
    regex_t re;
    if ((rc = compile_regex(c, pat, false, &re))) return rc;
    bv_buf b;
    bv_buf_init(&b, 0);
    regmatch_t m[10];
    const char *p = s;
    int flags = 0;
    while (*p && regexec(&re, p, 10, m, flags) == 0) {
        bv_buf_append(&b, p, (size_t)m[0].rm_so);
        for (const char *r = rep; *r; r++) {
            if (*r == '$' && r[1] >= '0' && r[1] <= '9') {
                int g = r[1] - '0';
                if (m[g].rm_so >= 0) bv_buf_append(&b, p + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
                r++;
            } else {
                bv_buf_putc(&b, *r);
            }
        }
        if (m[0].rm_eo == m[0].rm_so) {   /* empty match: copy one character and go on */
            const char *e = fp_utf8_at(p + m[0].rm_eo, 1);
            bv_buf_append(&b, p + m[0].rm_eo, (size_t)(e - (p + m[0].rm_eo)));
            p = e;
        } else {
            p += m[0].rm_eo;
        }
        flags = REG_NOTBOL;
    }
    bv_buf_puts(&b, p);
    regfree(&re);
    push(c, out, fp_mk_str(bv_arena_strdup(c->a, bv_buf_cstr(&b))));
    bv_buf_free(&b);
    return BV_OK;
}

FN(split)
{
    const char *s, *sep;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &sep)) || !sep) return rc;
    size_t sl = strlen(sep);
    if (sl == 0) return fn_toChars(c, call, in, env, out);
    const char *p;
    while ((p = strstr(s, sep)) != NULL) {
        push(c, out, fp_mk_str(bv_arena_strndup(c->a, s, (size_t)(p - s))));
        s = p + sl;
    }
    push(c, out, fp_mk_str(s));
    return BV_OK;
}

FN(join)
{
    const char *sep = "";
    int rc;
    if (call->nargs && ((rc = arg_string(c, call, 0, env, &sep)))) return rc;
    if (!sep) sep = "";
    bv_buf b;
    bv_buf_init(&b, 0);
    for (size_t i = 0; i < in->n; i++) {
        fp_item v;
        if (!fp_to_system(c->a, &in->items[i], &v) || v.kind != BV_FP_STRING) {
            bv_buf_free(&b);
            return fp_fail(c, "join() needs String items");
        }
        if (i) bv_buf_puts(&b, sep);
        bv_buf_puts(&b, v.str);
    }
    push(c, out, fp_mk_str(bv_arena_strdup(c->a, bv_buf_cstr(&b))));
    bv_buf_free(&b);
    return BV_OK;
}

FN(trim)
{
    (void)env;
    const char *s;
    int rc = in_string(c, call, in, &s);
    if (rc || !s) return rc;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    push(c, out, fp_mk_str(bv_arena_strndup(c->a, s, n)));
    return BV_OK;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(char ch, bool url)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == (url ? '-' : '+')) return 62;
    if (ch == (url ? '_' : '/')) return 63;
    return -1;
}

FN(encode)
{
    const char *s, *fmt;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &fmt)) || !fmt) return rc;
    bv_buf b;
    bv_buf_init(&b, 0);
    size_t n = strlen(s);
    const unsigned char *u = (const unsigned char *)s;
    if (strcmp(fmt, "hex") == 0) {
        for (size_t i = 0; i < n; i++) bv_buf_printf(&b, "%02x", u[i]);
    } else if (strcmp(fmt, "base64") == 0 || strcmp(fmt, "urlbase64") == 0) {
        bool url = fmt[0] == 'u';
        for (size_t i = 0; i < n; i += 3) {
            unsigned v = (unsigned)u[i] << 16 | (i + 1 < n ? (unsigned)u[i + 1] << 8 : 0) | (i + 2 < n ? u[i + 2] : 0);
            char q[4];
            for (int k = 0; k < 4; k++) {
                char ch = b64[(v >> (18 - 6 * k)) & 63];
                if (url && ch == '+') ch = '-';
                if (url && ch == '/') ch = '_';
                q[k] = ch;
            }
            if (i + 1 >= n) q[2] = '=';
            if (i + 2 >= n) q[3] = '=';
            bv_buf_append(&b, q, 4);
        }
    } else {
        bv_buf_free(&b);
        return fp_fail(c, "encode(): unknown format '%s'", fmt);
    }
    push(c, out, fp_mk_str(bv_arena_strdup(c->a, bv_buf_cstr(&b))));
    bv_buf_free(&b);
    return BV_OK;
}

FN(decode)
{
    const char *s, *fmt;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &fmt)) || !fmt) return rc;
    size_t n = strlen(s);
    char *r = bv_arena_alloc(c->a, n + 1);
    size_t o = 0;
    if (strcmp(fmt, "hex") == 0) {
        if (n % 2) return BV_OK;
        for (size_t i = 0; i < n; i += 2) {
            char x = s[i], y = s[i + 1];
            int a = (x >= '0' && x <= '9') ? x - '0' : (x >= 'a' && x <= 'f') ? x - 'a' + 10 : (x >= 'A' && x <= 'F') ? x - 'A' + 10 : -1;
            int d = (y >= '0' && y <= '9') ? y - '0' : (y >= 'a' && y <= 'f') ? y - 'a' + 10 : (y >= 'A' && y <= 'F') ? y - 'A' + 10 : -1;
            if (a < 0 || d < 0) return BV_OK;
            r[o++] = (char)(a * 16 + d);
        }
    } else if (strcmp(fmt, "base64") == 0 || strcmp(fmt, "urlbase64") == 0) {
        bool url = fmt[0] == 'u';
        unsigned acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '=') break;
            int v = b64val(s[i], url);
            if (v < 0) return BV_OK;
            acc = (acc << 6) | (unsigned)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                r[o++] = (char)((acc >> bits) & 0xFF);
            }
        }
    } else {
        return fp_fail(c, "decode(): unknown format '%s'", fmt);
    }
    r[o] = '\0';
    if (memchr(r, 0, o) || !json_utf8_valid(r, o)) return BV_OK;
    push(c, out, fp_mk_str(r));
    return BV_OK;
}

FN(escape)
{
    const char *s, *fmt;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &fmt)) || !fmt) return rc;
    bv_buf b;
    bv_buf_init(&b, 0);
    if (strcmp(fmt, "html") == 0) {
        for (const char *p = s; *p; p++) {
            switch (*p) {
            case '<': bv_buf_puts(&b, "&lt;"); break;
            case '>': bv_buf_puts(&b, "&gt;"); break;
            case '&': bv_buf_puts(&b, "&amp;"); break;
            case '"': bv_buf_puts(&b, "&quot;"); break;
            case '\'': bv_buf_puts(&b, "&#39;"); break;
            default: bv_buf_putc(&b, *p);
            }
        }
    } else if (strcmp(fmt, "json") == 0) {
        json_write_string(&b, s, strlen(s));
        /* strip the quotes */
        if (b.len >= 2) {
            memmove(b.data, b.data + 1, b.len - 2);
            b.len -= 2;
            b.data[b.len] = '\0';
        }
    } else {
        bv_buf_free(&b);
        return fp_fail(c, "escape(): unknown format '%s'", fmt);
    }
    push(c, out, fp_mk_str(bv_arena_strdup(c->a, bv_buf_cstr(&b))));
    bv_buf_free(&b);
    return BV_OK;
}

FN(unescape)
{
    const char *s, *fmt;
    int rc;
    if ((rc = in_string(c, call, in, &s)) || !s) return rc;
    if ((rc = arg_string(c, call, 0, env, &fmt)) || !fmt) return rc;
    bv_buf b;
    bv_buf_init(&b, 0);
    if (strcmp(fmt, "html") == 0) {
        static const char *const ent[][2] = {{"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}, {"&quot;", "\""},
                                             {"&#39;", "'"}, {"&apos;", "'"}};
        for (const char *p = s; *p;) {
            bool done = false;
            for (size_t k = 0; k < sizeof ent / sizeof ent[0] && *p == '&'; k++)
                if (strncmp(p, ent[k][0], strlen(ent[k][0])) == 0) {
                    bv_buf_puts(&b, ent[k][1]);
                    p += strlen(ent[k][0]);
                    done = true;
                    break;
                }
            if (!done) bv_buf_putc(&b, *p++);
        }
    } else if (strcmp(fmt, "json") == 0) {
        for (const char *p = s; *p; p++) {
            if (*p == '\\' && p[1]) {
                p++;
                switch (*p) {
                case 'n': bv_buf_putc(&b, '\n'); break;
                case 't': bv_buf_putc(&b, '\t'); break;
                case 'r': bv_buf_putc(&b, '\r'); break;
                case 'b': bv_buf_putc(&b, '\b'); break;
                case 'f': bv_buf_putc(&b, '\f'); break;
                default: bv_buf_putc(&b, *p);
                }
            } else {
                bv_buf_putc(&b, *p);
            }
        }
    } else {
        bv_buf_free(&b);
        return fp_fail(c, "unescape(): unknown format '%s'", fmt);
    }
    push(c, out, fp_mk_str(bv_arena_strdup(c->a, bv_buf_cstr(&b))));
    bv_buf_free(&b);
    return BV_OK;
}

/* ---- math ---- */

static int num_input(fp_ctx *c, const fp_node *call, const fp_coll *in, fp_item *v, bool *present)
{
    int rc = in_value(c, call, in, v, present);
    if (rc || !*present) return rc;
    if (v->kind != BV_FP_INTEGER && v->kind != BV_FP_DECIMAL && v->kind != BV_FP_QUANTITY)
        return fp_fail(c, "%s() needs a number", call->name);
    return BV_OK;
}

FN(abs)
{
    (void)env;
    fp_item v;
    bool present;
    int rc = num_input(c, call, in, &v, &present);
    if (rc || !present) return rc;
    if (v.kind == BV_FP_INTEGER) v.i = v.i < 0 ? -v.i : v.i;
    else {
        v.d = fabs(v.d);
        if (v.kind == BV_FP_DECIMAL) v.str = NULL;
    }
    fp_push(c, out, &v);
    return BV_OK;
}

static int rounding(fp_ctx *c, const fp_node *call, const fp_coll *in, double (*f)(double), fp_coll *out)
{
    fp_item v;
    bool present;
    int rc = num_input(c, call, in, &v, &present);
    if (rc || !present) return rc;
    if (v.kind == BV_FP_QUANTITY) return fp_fail(c, "%s() needs a number", call->name);
    double d = v.kind == BV_FP_INTEGER ? (double)v.i : f(v.d);
    if (fabs(d) > 9e18) return fp_fail(c, "integer overflow");
    push(c, out, fp_mk_int(v.kind == BV_FP_INTEGER ? v.i : (int64_t)d));
    return BV_OK;
}

FN(ceiling) { (void)env; return rounding(c, call, in, ceil, out); }
FN(floor) { (void)env; return rounding(c, call, in, floor, out); }
FN(truncate) { (void)env; return rounding(c, call, in, trunc, out); }

static int real_fn(fp_ctx *c, const fp_node *call, const fp_coll *in, const fp_env *env, int which, fp_coll *out)
{
    fp_item v;
    bool present;
    int rc = num_input(c, call, in, &v, &present);
    if (rc || !present) return rc;
    if (v.kind == BV_FP_QUANTITY) return fp_fail(c, "%s() needs a number", call->name);
    double x = v.kind == BV_FP_INTEGER ? (double)v.i : v.d, y = 0, r;
    if (call->nargs) {
        fp_item a;
        bool ap;
        if ((rc = arg_value(c, call, 0, env, &a, &ap)) || !ap) return rc;
        if (a.kind != BV_FP_INTEGER && a.kind != BV_FP_DECIMAL) return fp_fail(c, "%s() needs a number", call->name);
        y = a.kind == BV_FP_INTEGER ? (double)a.i : a.d;
        if (which == 3 && v.kind == BV_FP_INTEGER && a.kind == BV_FP_INTEGER && a.i >= 0) {
            double p = pow(x, y);
            if (fabs(p) < 9e15) { push(c, out, fp_mk_int((int64_t)p)); return BV_OK; }
        }
    }
    switch (which) {
    case 0: r = exp(x); break;
    case 1: if (x <= 0) return BV_OK; r = log(x); break;
    case 2: if (x <= 0 || y <= 0 || y == 1) return BV_OK; r = log(x) / log(y); break;
    case 3: r = pow(x, y); break;
    default: if (x < 0) return BV_OK; r = sqrt(x); break;
    }
    if (!isfinite(r)) return BV_OK;
    push(c, out, fp_mk_dec(r, FP_DEC_DIGITS));
    return BV_OK;
}

FN(exp) { return real_fn(c, call, in, env, 0, out); }
FN(ln) { return real_fn(c, call, in, env, 1, out); }
FN(log) { return real_fn(c, call, in, env, 2, out); }
FN(power) { return real_fn(c, call, in, env, 3, out); }
FN(sqrt) { return real_fn(c, call, in, env, 4, out); }

FN(round)
{
    fp_item v;
    bool present;
    int rc = num_input(c, call, in, &v, &present);
    if (rc || !present) return rc;
    if (v.kind == BV_FP_QUANTITY) return fp_fail(c, "round() needs a number");
    int64_t p = 0;
    bool pp = false;
    if (call->nargs && ((rc = arg_int(c, call, 0, env, &p, &pp)))) return rc;
    if (p < 0 || p > 15) return fp_fail(c, "round(): bad precision");
    double x = v.kind == BV_FP_INTEGER ? (double)v.i : v.d;
    double f = pow(10, (double)p);
    push(c, out, fp_mk_dec(round(x * f) / f, (int)p));
    return BV_OK;
}

/* ---- tree navigation ---- */

FN(children)
{
    (void)env, (void)call;
    for (size_t i = 0; i < in->n; i++) {
        int rc = fp_children(c, &in->items[i], out);
        if (rc) return rc;
    }
    return BV_OK;
}

FN(descendants)
{
    (void)env, (void)call;
    fp_coll level = *in;
    while (level.n) {
        fp_coll next = {0};
        for (size_t i = 0; i < level.n; i++) {
            int rc = fp_children(c, &level.items[i], &next);
            if (rc) return rc;
            if (c->too_costly) return fp_fail(c, "descendants() too costly");
        }
        for (size_t i = 0; i < next.n; i++) fp_push(c, out, &next.items[i]);
        level = next;
    }
    return BV_OK;
}

FN(trace)
{
    /* No output: Bevan never logs resource content. The projection is still checked. */
    fp_coll tmp;
    int rc = arg(c, call, 0, env, &tmp);
    if (rc) return rc;
    for (size_t i = 0; i < in->n; i++) fp_push(c, out, &in->items[i]);
    return BV_OK;
}

/* ---- utility ---- */

static int now_item(fp_ctx *c, int which, fp_coll *out)
{
    int64_t ms = bv_now_ms();
    int64_t days = ms / 86400000, rem = ms % 86400000;
    fp_dt dt = {0};
    fp_civil_from_days(days, &dt.y, &dt.mo, &dt.d);
    dt.h = (int)(rem / 3600000);
    dt.mi = (int)(rem / 60000 % 60);
    dt.s = (int)(rem / 1000 % 60);
    dt.ms = (int)(rem % 1000);
    dt.has_tz = true;
    fp_item it = {0};
    if (which == 0) {
        dt.prec = FP_P_MS;
        it.kind = BV_FP_DATETIME;
    } else if (which == 1) {
        dt.prec = FP_P_DAY;
        dt.is_date = true;
        it.kind = BV_FP_DATE;
    } else {
        dt.prec = FP_P_MS;
        dt.is_time = true;
        it.kind = BV_FP_TIME;
    }
    it.str = fp_dt_format(c->a, &dt);
    fp_push(c, out, &it);
    return BV_OK;
}

FN(now) { UNUSED_FN_ARGS; return now_item(c, 0, out); }
FN(today) { UNUSED_FN_ARGS; return now_item(c, 1, out); }
FN(timeOfDay) { UNUSED_FN_ARGS; return now_item(c, 2, out); }

FN(not)
{
    (void)env, (void)call;
    int b, rc = fp_to_bool(c, in, &b);
    if (rc) return rc;
    if (b >= 0) push_bool(c, out, b == 0);
    return BV_OK;
}

static const json_value *find_contained(const fp_ctx *c, const char *id)
{
    if (!c->has_root || !c->root.node) return NULL;
    const json_value *ct = json_get(c->root.node, "contained");
    for (size_t i = 0; i < json_count(ct); i++) {
        const json_value *r = json_at(ct, i);
        const char *rid = json_get_str(r, "id");
        if (rid && strcmp(rid, id) == 0) return r;
    }
    return NULL;
}

static const json_value *find_in_bundle(const fp_ctx *c, const char *ref)
{
    if (!c->has_root || !c->root.type || strcmp(c->root.type, "Bundle") != 0) return NULL;
    const json_value *entries = json_get(c->root.node, "entry");
    for (size_t i = 0; i < json_count(entries); i++) {
        const json_value *e = json_at(entries, i);
        const char *fu = json_get_str(e, "fullUrl");
        if (fu && strcmp(fu, ref) == 0) return json_get(e, "resource");
    }
    return NULL;
}

FN(resolve)
{
    (void)env, (void)call;
    for (size_t i = 0; i < in->n; i++) {
        const fp_item *it = &in->items[i];
        const char *ref = NULL;
        if (it->kind == BV_FP_NODE && it->type && fp_fhir_type_derives(it->type, "Reference"))
            ref = json_get_str(it->node, "reference");
        else {
            fp_item v;
            if (fp_to_system(c->a, it, &v) && v.kind == BV_FP_STRING) ref = v.str;
        }
        if (!ref) continue;
        const json_value *target = NULL;
        if (ref[0] == '#') target = find_contained(c, ref + 1);
        else target = find_in_bundle(c, ref);
        if (target) {
            fp_item r = fp_resource_item(target);
            fp_push(c, out, &r);
            continue;
        }
        const char *type, *id;
        if (!fp_ref_parse(c->a, ref, &type, &id, NULL)) continue;
        json_value *stub = json_new(c->a, JSON_OBJECT);
        json_set(c->a, stub, "resourceType", json_new_string(c->a, type));
        json_set(c->a, stub, "id", json_new_string(c->a, id));
        fp_item r = fp_node_item(stub, NULL, type, NULL);
        fp_push(c, out, &r);
    }
    return BV_OK;
}

FN(extension)
{
    const char *url;
    int rc = arg_string(c, call, 0, env, &url);
    if (rc || !url) return rc;
    for (size_t i = 0; i < in->n; i++) {
        const fp_item *it = &in->items[i];
        if (it->kind != BV_FP_NODE) continue;
        const json_value *list = json_is(it->node, JSON_OBJECT) ? json_get(it->node, "extension")
                               : it->ext ? json_get(it->ext, "extension") : NULL;
        for (size_t k = 0; k < json_count(list); k++) {
            const json_value *e = json_at(list, k);
            const char *u = json_get_str(e, "url");
            if (u && strcmp(u, url) == 0) {
                fp_item x = fp_node_item(e, NULL, "Extension", NULL);
                fp_push(c, out, &x);
            }
        }
    }
    return BV_OK;
}

FN(hasValue)
{
    UNUSED_FN_ARGS;
    bool hv = false;
    if (in->n == 1) {
        const fp_item *it = &in->items[0];
        if (it->kind != BV_FP_NODE) hv = false;
        else if (fp_primitive_system(it->type)) hv = it->node != NULL && it->node->type != JSON_NULL;
    }
    push_bool(c, out, hv);
    return BV_OK;
}

FN(getValue)
{
    UNUSED_FN_ARGS;
    if (in->n == 1 && in->items[0].kind == BV_FP_NODE && fp_primitive_system(in->items[0].type)) {
        fp_item v;
        if (fp_to_system(c->a, &in->items[0], &v) && v.kind != BV_FP_NODE) fp_push(c, out, &v);
    }
    return BV_OK;
}

FN(memberOf) { UNUSED_FN_ARGS; return BV_OK; }   /* no terminology service: always empty */

FN(htmlChecks) { UNUSED_FN_ARGS; push_bool(c, out, true); return BV_OK; }

FN(conformsTo)
{
    const char *url;
    int rc = arg_string(c, call, 0, env, &url);
    if (rc || !url) return rc;
    static const char base[] = "http://hl7.org/fhir/StructureDefinition/";
    if (strncmp(url, base, sizeof base - 1) != 0 || !fhir_type_find(url + sizeof base - 1))
        return fp_fail(c, "conformsTo(): unknown profile %s", url);
    for (size_t i = 0; i < in->n; i++)
        push_bool(c, out, in->items[i].kind == BV_FP_NODE &&
                              fp_fhir_type_derives(in->items[i].type, url + sizeof base - 1));
    return BV_OK;
}

FN(type)
{
    UNUSED_FN_ARGS;
    for (size_t i = 0; i < in->n; i++) {
        fp_ns ns;
        const char *name = fp_item_type_name(&in->items[i], &ns);
        if (!name) continue;
        json_value *o = json_new(c->a, JSON_OBJECT);
        json_set(c->a, o, "namespace", json_new_string(c->a, ns == FP_NS_SYSTEM ? "System" : "FHIR"));
        json_set(c->a, o, "name", json_new_string(c->a, name));
        fp_item it = fp_node_item(o, NULL, NULL, NULL);
        fp_push(c, out, &it);
    }
    return BV_OK;
}

FN(aggregate)
{
    fp_coll total = {0};
    int rc;
    if (call->nargs > 1 && ((rc = arg(c, call, 1, env, &total)))) return rc;
    for (size_t i = 0; i < in->n; i++) {
        fp_coll one = {.items = (fp_item *)&in->items[i], .n = 1, .cap = 1};
        fp_env e = {.focus = &one, .index = (int64_t)i, .has_index = true, .total = &total};
        fp_coll r = {0};
        if ((rc = fp_eval(c, call->args[0], &e, &r))) return rc;
        total = r;
    }
    for (size_t i = 0; i < total.n; i++) fp_push(c, out, &total.items[i]);
    return BV_OK;
}

FN(sort)
{
    size_t n = in->n;
    int na = call->nargs;
    if (n == 0) return BV_OK;
    size_t nk = na ? (size_t)na : 1;
    fp_item *keys = bv_arena_calloc(c->a, n * nk, sizeof *keys);
    bool *present = bv_arena_calloc(c->a, n * nk, sizeof *present);
    bool *desc = bv_arena_calloc(c->a, nk, sizeof *desc);
    size_t *order = bv_arena_alloc(c->a, n * sizeof *order);
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        for (size_t k = 0; k < nk; k++) {
            fp_coll r = {0};
            if (na == 0) {
                fp_push(c, &r, &in->items[i]);
            } else {
                const fp_node *ex = call->args[k];
                if (ex->t == FPN_NEG) {
                    desc[k] = true;
                    ex = ex->l;
                }
                int rc = arg_on(c, ex, &in->items[i], i, env, &r);
                if (rc) return rc;
            }
            if (r.n > 1) return fp_fail(c, "sort(): a key must be a single value");
            if (r.n == 1) {
                if (!fp_to_system(c->a, &r.items[0], &keys[i * nk + k]) || keys[i * nk + k].kind == BV_FP_NODE)
                    return fp_fail(c, "sort(): a key must be a primitive value");
                present[i * nk + k] = true;
            }
        }
    }
    /* insertion sort: stable, n is small in practice */
    for (size_t i = 1; i < n; i++) {
        size_t cur = order[i], j = i;
        while (j > 0) {
            size_t prev = order[j - 1];
            int cmp = 0;
            for (size_t k = 0; k < nk && cmp == 0; k++) {
                bool pa = present[prev * nk + k], pb = present[cur * nk + k];
                if (!pa || !pb) cmp = pa == pb ? 0 : pa ? -1 : 1;   /* an empty key sorts after values */
                else {
                    int r, rc = fp_item_compare(c, &keys[prev * nk + k], &keys[cur * nk + k], &r);
                    if (rc < 0) return rc;
                    cmp = rc == 1 ? 0 : r;
                }
                if (desc[k]) cmp = -cmp;
            }
            if (cmp <= 0) break;
            order[j] = prev;
            j--;
        }
        order[j] = cur;
    }
    for (size_t i = 0; i < n; i++) fp_push(c, out, &in->items[order[i]]);
    return BV_OK;
}

/* ---- boundaries and precision ---- */

static int dt_digits(const fp_dt *dt)
{
    static const int dd[] = {0, 4, 6, 8, 10, 12, 14, 17};
    static const int td[] = {0, 0, 0, 0, 2, 4, 6, 9};
    return dt->is_time ? td[dt->prec] : dd[dt->prec];
}

static int prec_from_digits(bool is_time, int64_t digits)
{
    if (is_time) {
        if (digits <= 2) return FP_P_HOUR;
        if (digits <= 4) return FP_P_MINUTE;
        if (digits <= 6) return FP_P_SECOND;
        return FP_P_MS;
    }
    if (digits <= 4) return FP_P_YEAR;
    if (digits <= 6) return FP_P_MONTH;
    if (digits <= 8) return FP_P_DAY;
    if (digits <= 10) return FP_P_HOUR;
    if (digits <= 12) return FP_P_MINUTE;
    if (digits <= 14) return FP_P_SECOND;
    return FP_P_MS;
}

static int boundary(fp_ctx *c, const fp_node *call, const fp_coll *in, const fp_env *env, bool high, fp_coll *out)
{
    fp_item v;
    bool present;
    int rc = in_value(c, call, in, &v, &present);
    if (rc || !present) return rc;
    int64_t p = -1;
    bool pp = false;
    if (call->nargs && ((rc = arg_int(c, call, 0, env, &p, &pp)))) return rc;
    if (v.kind == BV_FP_INTEGER || v.kind == BV_FP_DECIMAL || v.kind == BV_FP_QUANTITY) {
        if (!pp) p = FP_DEC_DIGITS;
        if (p < 0 || p > 28) return BV_OK;
        double x = v.kind == BV_FP_INTEGER ? (double)v.i : v.d;
        int vp = v.kind == BV_FP_INTEGER ? 0 : v.prec;
        /* the value stands for [x - half, x + half] at its precision; a negative value mirrors the
         * positive one (low(-x) = -high(x)). The low bound is truncated to p digits and the high
         * bound rounded, as the official suite expects. */
        bool neg = x < 0, hi = neg ? !high : high;
        double ax = fabs(x), half = 0.5 * pow(10, -vp);
        double b = hi ? ax + half : ax - half;
        double f = pow(10, (double)(p > 15 ? 15 : p));
        double r = hi ? round(b * f) / f : trunc(b * f + 1e-7) / f;
        if (neg) r = -r;
        if (v.kind == BV_FP_QUANTITY) push(c, out, fp_mk_qty(r, (int)p, v.str, v.calendar));
        else {
            fp_item d = fp_mk_dec(r, (int)p);
            fp_push(c, out, &d);
        }
        return BV_OK;
    }
    if (v.kind == BV_FP_DATE || v.kind == BV_FP_DATETIME || v.kind == BV_FP_TIME) {
        fp_dt dt;
        if (!fp_dt_parse(v.str, v.kind == BV_FP_TIME, &dt)) return BV_OK;
        if (!pp) p = dt.is_time ? 9 : v.kind == BV_FP_DATE ? 8 : 17;
        if (!dt.is_time && dt.prec == FP_P_HOUR) dt.prec = FP_P_MINUTE;   /* T08 is read as T08:00 (FHIR has no hour-only times) */
        if (dt.is_time ? (p < 2 || p > 9) : (p < 4 || p > 17)) return BV_OK;
        int np = prec_from_digits(dt.is_time, p);
        if (np < dt.prec) {
            dt.prec = np;
        } else {
            if (dt.prec < FP_P_MONTH) dt.mo = high ? 12 : 1;
            if (dt.prec < FP_P_DAY) dt.d = high ? 0 : 1;
            if (dt.prec < FP_P_HOUR) dt.h = high ? 23 : 0;
            if (dt.prec < FP_P_MINUTE) dt.mi = high ? 59 : 0;
            if (dt.prec < FP_P_SECOND) dt.s = high ? 59 : 0;
            if (dt.prec < FP_P_MS) dt.ms = high ? 999 : 0;
            if (!dt.is_time && dt.d == 0) {
                static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
                dt.d = dt.mo == 2 && (dt.y % 4 == 0 && (dt.y % 100 != 0 || dt.y % 400 == 0)) ? 29 : dm[dt.mo - 1];
            }
            if (!dt.is_time && np >= FP_P_HOUR && !dt.has_tz) {
                dt.has_tz = true;
                dt.tz_min = high ? -12 * 60 : 14 * 60;
            }
            dt.prec = np;
            if (np >= FP_P_HOUR) dt.is_date = false;
        }
        fp_item r = {.kind = dt.is_time ? BV_FP_TIME : dt.prec >= FP_P_HOUR ? BV_FP_DATETIME : v.kind};
        if (r.kind == BV_FP_DATETIME && dt.prec < FP_P_HOUR) dt.is_date = true;
        r.str = fp_dt_format(c->a, &dt);
        fp_push(c, out, &r);
        return BV_OK;
    }
    return fp_fail(c, "%s() needs a number or date/time", call->name);
}

FN(lowBoundary) { return boundary(c, call, in, env, false, out); }
FN(highBoundary) { return boundary(c, call, in, env, true, out); }

FN(precision)
{
    (void)env;
    fp_item v;
    bool present;
    int rc = in_value(c, call, in, &v, &present);
    if (rc || !present) return rc;
    if (v.kind == BV_FP_DECIMAL) { push(c, out, fp_mk_int(v.prec)); return BV_OK; }
    if (v.kind == BV_FP_INTEGER) { push(c, out, fp_mk_int(0)); return BV_OK; }
    if (v.kind == BV_FP_DATE || v.kind == BV_FP_DATETIME || v.kind == BV_FP_TIME) {
        fp_dt dt;
        if (!fp_dt_parse(v.str, v.kind == BV_FP_TIME, &dt)) return BV_OK;
        push(c, out, fp_mk_int(dt_digits(&dt)));
        return BV_OK;
    }
    return fp_fail(c, "precision() needs a decimal or date/time");
}

FN(comparable)
{
    fp_item v, w;
    bool present, wp;
    int rc = in_value(c, call, in, &v, &present);
    if (rc || !present) return rc;
    if ((rc = arg_value(c, call, 0, env, &w, &wp)) || !wp) return rc;
    if (v.kind != BV_FP_QUANTITY || w.kind != BV_FP_QUANTITY) return fp_fail(c, "comparable() needs quantities");
    fp_unit a, b;
    fp_unit_parse(v.str, v.calendar, &a);
    fp_unit_parse(w.str, w.calendar, &b);
    bool same = strcmp(v.str ? v.str : "1", w.str ? w.str : "1") == 0 && v.calendar == w.calendar;
    push_bool(c, out, same || fp_unit_same_dims(&a, &b));
    return BV_OK;
}

/* ---- table ---- */

#define F(name, lo, hi) {#name, lo, hi, fn_##name}
const fp_function fp_functions[] = {
    F(empty, 0, 0), F(exists, 0, 1), F(all, 1, 1), F(allTrue, 0, 0), F(anyTrue, 0, 0), F(allFalse, 0, 0),
    F(anyFalse, 0, 0), F(subsetOf, 1, 1), F(supersetOf, 1, 1), F(count, 0, 0), F(distinct, 0, 0),
    F(isDistinct, 0, 0), F(where, 1, 1), F(select, 1, 1), F(repeat, 1, 1), F(ofType, 1, 1), F(as, 1, 1),
    F(is, 1, 1), F(single, 0, 0), F(first, 0, 0), F(last, 0, 0), F(tail, 0, 0), F(skip, 1, 1), F(take, 1, 1),
    F(intersect, 1, 1), F(exclude, 1, 1), F(union, 1, 1), F(combine, 1, 1), F(iif, 2, 3),
    F(toBoolean, 0, 0), F(convertsToBoolean, 0, 0), F(toInteger, 0, 0), F(convertsToInteger, 0, 0),
    F(toDecimal, 0, 0), F(convertsToDecimal, 0, 0), F(toString, 0, 0), F(convertsToString, 0, 0),
    F(toDate, 0, 0), F(convertsToDate, 0, 0), F(toDateTime, 0, 0), F(convertsToDateTime, 0, 0),
    F(toTime, 0, 0), F(convertsToTime, 0, 0), F(toQuantity, 0, 1), F(convertsToQuantity, 0, 1),
    F(indexOf, 1, 1), F(lastIndexOf, 1, 1), F(substring, 1, 2), F(startsWith, 1, 1), F(endsWith, 1, 1),
    F(contains, 1, 1), F(upper, 0, 0), F(lower, 0, 0), F(replace, 2, 2), F(matches, 1, 1),
    F(matchesFull, 1, 1), F(replaceMatches, 2, 2), F(length, 0, 0), F(toChars, 0, 0), F(split, 1, 1),
    F(join, 0, 1), F(trim, 0, 0), F(encode, 1, 1), F(decode, 1, 1), F(escape, 1, 1), F(unescape, 1, 1),
    F(abs, 0, 0), F(ceiling, 0, 0), F(exp, 0, 0), F(floor, 0, 0), F(ln, 0, 0), F(log, 1, 1),
    F(power, 1, 1), F(round, 0, 1), F(sqrt, 0, 0), F(truncate, 0, 0), F(children, 0, 0),
    F(descendants, 0, 0), F(trace, 1, 2), F(now, 0, 0), F(today, 0, 0), F(timeOfDay, 0, 0), F(not, 0, 0),
    F(resolve, 0, 0), F(extension, 1, 1), F(hasValue, 0, 0), F(getValue, 0, 0), F(memberOf, 1, 1),
    F(htmlChecks, 0, 0), F(conformsTo, 1, 1), F(type, 0, 0), F(aggregate, 1, 2), F(sort, 0, 8),
    F(lowBoundary, 0, 1), F(highBoundary, 0, 1), F(precision, 0, 0), F(comparable, 1, 1),
    {NULL, 0, 0, NULL},
};

int fp_function_find(const char *name)
{
    for (int i = 0; fp_functions[i].name; i++)
        if (strcmp(fp_functions[i].name, name) == 0) return i;
    return -1;
}
