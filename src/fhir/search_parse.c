/* Search parsing: URL parameters -> bv_search (an AND of ORs of bv_pred), see docs/search.md.
 *
 *   name[:modifier]=v1,v2      one AND group; each comma-separated value is one OR branch
 *                              ("\," is a literal comma; "\|", "\$", "\\" likewise)
 *   ref[:Type].param=v         chaining: the pred's chain is a nested search on the target type
 *   _has:Type:ref:param=v      reverse chaining: the pred's has is a nested search on Type
 *   _count _offset _sort ...   result parameters, kept in bv_search_request
 *
 * Unknown or unsupported parameters are errors when strict and skipped when lenient; bad values
 * and unknown modifiers are always errors. Everything is allocated in the caller's arena. */
#include "bevan/fhir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_MAX_NEST 4         /* chain / _has nesting (the store's limit) */
#define SP_MAX_PREDS 20000    /* preds per search, nested ones included (chains over many targets) */

enum { P_OK = 0, P_SKIP = 1, P_ERR = -1 };

typedef struct {
    bv_arena *a;
    bv_outcome *oo;
    bool strict;
    int depth;
    size_t preds;   /* preds made so far */
} pctx;

__attribute__((format(printf, 3, 4)))
static int fail(pctx *c, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bv_outcome_add(c->oo, BV_SEV_ERROR, code, NULL, "%s", msg);
    return P_ERR;
}

/* Unknown or unsupported parameter: an error when strict, skipped when lenient. */
__attribute__((format(printf, 2, 3)))
static int unsupported(pctx *c, const char *fmt, ...)
{
    if (!c->strict) return P_SKIP;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bv_outcome_add(c->oo, BV_SEV_ERROR, "not-supported", NULL, "%s", msg);
    return P_ERR;
}

/* ---------------------------------------------------------------- tables */

static const int8_t kind_of[] = {
    [FHIR_SP_NUMBER] = BV_IX_NUMBER, [FHIR_SP_DATE] = BV_IX_DATE,         [FHIR_SP_STRING] = BV_IX_STRING,
    [FHIR_SP_TOKEN] = BV_IX_TOKEN,   [FHIR_SP_REFERENCE] = BV_IX_REFERENCE, [FHIR_SP_COMPOSITE] = -1,
    [FHIR_SP_QUANTITY] = BV_IX_QUANTITY, [FHIR_SP_URI] = BV_IX_URI,       [FHIR_SP_SPECIAL] = -1,
};
static const char *const type_name[] = {
    [FHIR_SP_NUMBER] = "number", [FHIR_SP_DATE] = "date",       [FHIR_SP_STRING] = "string",
    [FHIR_SP_TOKEN] = "token",   [FHIR_SP_REFERENCE] = "reference", [FHIR_SP_COMPOSITE] = "composite",
    [FHIR_SP_QUANTITY] = "quantity", [FHIR_SP_URI] = "uri",     [FHIR_SP_SPECIAL] = "special",
};

typedef enum {
    M_NONE, M_MISSING, M_EXACT, M_CONTAINS, M_TEXT, M_NOT, M_BELOW, M_ABOVE, M_TYPE, M_IDENTIFIER, M_OF_TYPE,
    M_TERMINOLOGY, M_UNSUPPORTED
} mod_id;

#define T(x) (1u << FHIR_SP_##x)
#define ALL_TYPES 0xFFFFu
static const struct {
    const char *name;
    mod_id id;
    unsigned types;       /* parameter types the modifier is valid for */
    unsigned unsupported; /* of those, the types Bevan does not implement yet */
} modifiers[] = {
    {"missing", M_MISSING, ALL_TYPES, 0},
    {"exact", M_EXACT, T(STRING), 0},
    {"contains", M_CONTAINS, T(STRING), 0},
    {"text", M_TEXT, T(TOKEN), 0},
    {"not", M_NOT, T(TOKEN), 0},
    {"below", M_BELOW, T(URI) | T(TOKEN) | T(REFERENCE), T(REFERENCE)},
    {"above", M_ABOVE, T(URI) | T(TOKEN) | T(REFERENCE), T(REFERENCE)},
    {"identifier", M_IDENTIFIER, T(REFERENCE), 0},
    {"in", M_TERMINOLOGY, T(TOKEN), 0},
    {"not-in", M_TERMINOLOGY, T(TOKEN), 0},
    {"of-type", M_OF_TYPE, T(TOKEN), 0},
};

static const struct { char s[3]; bv_op op; } prefixes[] = {
    {"eq", BV_OP_EQ}, {"ne", BV_OP_NE}, {"gt", BV_OP_GT}, {"lt", BV_OP_LT}, {"ge", BV_OP_GE},
    {"le", BV_OP_LE}, {"sa", BV_OP_SA}, {"eb", BV_OP_EB}, {"ap", BV_OP_AP},
};

/* Parameters from the specification that Bevan does not implement (yet). */
static const char *const unsupported_params[] = {
    "_contained", "_containedType", "_filter", "_list", "_query", "_text", "_content", "_graph",
};

/* ---------------------------------------------------------------- value helpers */

/* Splits v on commas not escaped by '\'; segments keep their escapes. */
static size_t split_or(bv_arena *a, const char *v, const char ***out)
{
    size_t n = 1;
    for (const char *p = v; *p; p++) {
        if (*p == '\\' && p[1]) p++;
        else if (*p == ',') n++;
    }
    const char **segs = bv_arena_alloc(a, n * sizeof *segs);
    size_t k = 0;
    const char *start = v;
    for (const char *p = v;; p++) {
        if (*p == '\\' && p[1]) { p++; continue; }
        if (*p == ',' || !*p) {
            segs[k++] = bv_arena_strndup(a, start, (size_t)(p - start));
            if (!*p) break;
            start = p + 1;
        }
    }
    *out = segs;
    return k;
}

/* Removes FHIR search escapes: \, \| \$ \\ become the character itself. */
static char *unescape(bv_arena *a, const char *s, size_t len)
{
    char *out = bv_arena_alloc(a, len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len && strchr(",|$\\", s[i + 1])) i++;
        *o++ = s[i];
    }
    *o = '\0';
    return out;
}

static char *unesc(bv_arena *a, const char *s) { return unescape(a, s, strlen(s)); }

/* The first '|' not escaped by '\', or NULL. */
static const char *find_bar(const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\' && p[1]) p++;
        else if (*p == '|') return p;
    }
    return NULL;
}

/* Strips an ordered-value prefix (eq, ne, gt, ...); eq when none. */
static const char *take_prefix(const char *v, bv_op *op)
{
    *op = BV_OP_EQ;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (v[0] == prefixes[i].s[0] && v[1] == prefixes[i].s[1]) {
            *op = prefixes[i].op;
            return v + 2;
        }
    return v;
}

/* A decimal: -?digits(.digits)?([eE][+-]?digits)?. *half is half a unit of the last given digit
 * (100 -> 0.5, 100.00 -> 0.005, 1e2 -> 50): the implicit precision range is value +- half. */
static bool parse_number(const char *s, double *val, double *half)
{
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (*p < '0' || *p > '9') return false;
    while (*p >= '0' && *p <= '9') p++;
    int decimals = 0;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return false;
        while (*p >= '0' && *p <= '9') { p++; decimals++; }
    }
    int64_t exp = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        bool neg = *p == '-';
        if (*p == '-' || *p == '+') p++;
        const char *d = p;
        while (*p >= '0' && *p <= '9') p++;
        if (p == d || p - d > 3 || bv_str_to_i64(d, (size_t)(p - d), &exp) != BV_OK) return false;
        if (neg) exp = -exp;
    }
    if (*p) return false;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || *end || !isfinite(v)) return false;
    *val = v;
    *half = 0.5 * pow(10.0, (double)(exp - decimals));
    return true;
}

/* ---------------------------------------------------------------- one value -> one pred */

typedef struct {
    const fhir_search_param *sp;
    const char *name;     /* as given, for messages */
    mod_id mod;
    const char *mod_type; /* M_TYPE: the resource type */
} pinfo;

/* A stored param code with a suffix (":ucum"), on each alternative of a union: "a|b" -> "a:ucum|b:ucum". */
static const char *with_suffix(bv_arena *a, const char *rows, const char *suffix)
{
    const char *bar = strchr(rows, '|');
    if (!bar) return bv_arena_printf(a, "%s%s", rows, suffix);
    return bv_arena_printf(a, "%.*s%s|%s", (int)(bar - rows), rows, suffix, with_suffix(a, bar + 1, suffix));
}

static int value_pred(pctx *c, const pinfo *pi, const char *raw, bv_pred *p)
{
    bv_arena *a = c->a;
    const char *nm = pi->name;
    if (pi->mod == M_MISSING) {
        p->op = BV_OP_MISSING;
        if (strcmp(raw, "true") == 0) p->missing = true;
        else if (strcmp(raw, "false") == 0) p->missing = false;
        else return fail(c, "invalid", "parameter '%s': :missing takes true or false, not '%s'", nm, raw);
        return P_OK;
    }
    bv_op op;
    switch (pi->sp->type) {
    case FHIR_SP_NUMBER: {
        const char *v = take_prefix(raw, &op);
        double val, half;
        if (!parse_number(v, &val, &half))
            return fail(c, "invalid", "parameter '%s': '%s' is not a number (with an optional prefix eq, ne, gt, "
                                      "lt, ge, le, sa, eb or ap)", nm, raw);
        p->op = op;
        p->num = val;
        p->num_lo = val - half;
        p->num_hi = val + half;
        return P_OK;
    }
    case FHIR_SP_DATE: {
        const char *v = take_prefix(raw, &op);
        /* An unencoded '+' in a timezone arrives as a space (form decoding): take it back. */
        char *d = bv_arena_strdup(a, v), *space = strchr(d, ' '), *tee = strchr(d, 'T');
        if (space && tee && space > tee) *space = '+';
        if (bv_fhir_date_range(d, &p->lo, &p->hi) != BV_OK)
            return fail(c, "invalid", "parameter '%s': '%s' is not a valid date, dateTime or instant (with an "
                                      "optional prefix eq, ne, gt, lt, ge, le, sa, eb or ap)", nm, raw);
        p->op = op;
        if (op == BV_OP_AP) {
            /* "approximately": the value's range widened by 10% of its distance from now (the
             * specification's suggestion), at least one day either side */
            int64_t now = bv_now_ms(), mid = p->lo / 2 + p->hi / 2;
            int64_t gap = (mid > now ? mid - now : now - mid) / 10;
            if (gap < 86400000) gap = 86400000;
            p->lo = p->lo > INT64_MIN + gap ? p->lo - gap : INT64_MIN;
            p->hi = p->hi < INT64_MAX - gap ? p->hi + gap : INT64_MAX;
        }
        return P_OK;
    }
    case FHIR_SP_QUANTITY: {
        const char *v = take_prefix(raw, &op);
        const char *bar = find_bar(v);
        char *num = bar ? bv_arena_strndup(a, v, (size_t)(bar - v)) : bv_arena_strdup(a, v);
        double val, half;
        if (!parse_number(num, &val, &half))
            return fail(c, "invalid", "parameter '%s': '%s' is not a quantity ([prefix]number[|system|code])", nm,
                        raw);
        p->op = op;
        p->num = val;
        p->num_lo = val - half;
        p->num_hi = val + half;
        if (bar) {
            const char *bar2 = find_bar(bar + 1);
            if (!bar2) return fail(c, "invalid", "parameter '%s': '%s' must be number|system|code", nm, raw);
            char *sys = unescape(a, bar + 1, (size_t)(bar2 - bar - 1)), *code = unesc(a, bar2 + 1);
            p->system_given = true;
            p->system = *sys ? sys : NULL;
            p->code = *code ? code : NULL;
            /* a convertible UCUM unit (system UCUM or none): match the canonical "<param>:ucum" rows */
            const char *canon;
            double cn, clo, chi;
            if (p->code && (!p->system || strcmp(p->system, BV_UCUM_SYSTEM) == 0) &&
                bv_ucum_canonical(p->code, p->num, &cn, &canon) && bv_ucum_canonical(p->code, p->num_lo, &clo, NULL) &&
                bv_ucum_canonical(p->code, p->num_hi, &chi, NULL)) {
                p->param = with_suffix(a, p->param ? p->param : fhir_search_param_rows(pi->sp), ":ucum");
                p->system = BV_UCUM_SYSTEM;
                p->code = canon;
                p->num = cn;
                p->num_lo = clo;
                p->num_hi = chi;
            }
        }
        return P_OK;
    }
    case FHIR_SP_STRING: {
        char *v = unesc(a, raw);
        if (pi->mod == M_EXACT) {
            p->op = BV_OP_STR_EXACT;
            p->text = v;
        } else {
            p->op = pi->mod == M_CONTAINS ? BV_OP_STR_CONTAINS : BV_OP_STR_STARTS;
            p->text = bv_fhir_normalize_string(a, v);
        }
        return P_OK;
    }
    case FHIR_SP_TOKEN: {
        if (pi->mod == M_OF_TYPE) {   /* system|code|value: the identifier's type coding and value */
            const char *b1 = find_bar(raw), *b2 = b1 ? find_bar(b1 + 1) : NULL;
            if (!b1 || !b2)
                return fail(c, "invalid", "parameter '%s': :of-type takes system|code|value, not '%s'", nm, raw);
            char *sys = unescape(a, raw, (size_t)(b1 - raw)), *code = unescape(a, b1 + 1, (size_t)(b2 - b1 - 1));
            char *val = unesc(a, b2 + 1);
            if (!*code || !*val)
                return fail(c, "invalid", "parameter '%s': :of-type needs a type code and a value ('%s')", nm, raw);
            p->op = BV_OP_TOKEN;
            p->param = with_suffix(a, fhir_search_param_rows(pi->sp), ":of-type");
            p->system_given = *sys != '\0';
            p->system = *sys ? sys : NULL;
            p->code = bv_arena_printf(a, "%s|%s", code, val);
            return P_OK;
        }
        if (pi->mod == M_TEXT) {   /* the store matches display text case-insensitively */
            p->op = BV_OP_TOKEN_TEXT;
            p->text = unesc(a, raw);
            return P_OK;
        }
        p->op = BV_OP_TOKEN;
        p->negate = pi->mod == M_NOT;
        const char *bar = strcmp(pi->sp->code, "_id") == 0 ? NULL : find_bar(raw);
        if (!bar) {
            p->code = unesc(a, raw);
        } else {
            char *sys = unescape(a, raw, (size_t)(bar - raw)), *code = unesc(a, bar + 1);
            p->system_given = true;
            p->system = *sys ? sys : NULL;
            p->code = *code ? code : NULL;
            if (!p->system && !p->code) return fail(c, "invalid", "parameter '%s': '|' alone is not a token", nm);
        }
        return P_OK;
    }
    case FHIR_SP_URI:
        p->op = pi->mod == M_BELOW ? BV_OP_URI_BELOW : pi->mod == M_ABOVE ? BV_OP_URI_ABOVE : BV_OP_URI_EQ;
        p->text = unesc(a, raw);
        return P_OK;
    case FHIR_SP_REFERENCE: {
        if (pi->mod == M_IDENTIFIER) {   /* Reference.identifier, as a token: [system|]value */
            p->kind = BV_IX_TOKEN;
            p->op = BV_OP_TOKEN;
            p->param = bv_arena_printf(a, "%s:identifier", pi->sp->code);
            const char *bar = find_bar(raw);
            if (!bar) {
                p->code = unesc(a, raw);
            } else {
                char *sys = unescape(a, raw, (size_t)(bar - raw)), *code = unesc(a, bar + 1);
                p->system_given = true;
                p->system = *sys ? sys : NULL;
                p->code = *code ? code : NULL;
                if (!p->system && !p->code) return fail(c, "invalid", "parameter '%s': '|' alone is not an identifier", nm);
            }
            return P_OK;
        }
        char *v = unesc(a, raw);
        p->op = BV_OP_REF;
        p->ref_type = pi->mod_type;
        if (strstr(v, "://") || bv_starts_with(v, "urn:")) {
            /* Absolute: kept as text; a trailing Type/id[/_history/v] is parsed too (the API layer
             * knows its own base and decides which to keep, see docs/search.md). */
            p->text = v;
            char *t = bv_arena_strdup(a, v);
            char *hist = strstr(t, "/_history/");
            if (hist) *hist = '\0';
            char *slash = strrchr(t, '/');
            if (slash && slash > t) {
                *slash = '\0';
                char *tslash = strrchr(t, '/');
                const char *ty = tslash ? tslash + 1 : NULL;
                if (ty && fhir_is_resource_type(ty) && slash[1] && (!pi->mod_type || strcmp(ty, pi->mod_type) == 0)) {
                    p->ref_type = ty;
                    p->ref_id = slash + 1;
                }
            }
            return P_OK;
        }
        char *slash = strchr(v, '/');
        if (slash) {
            *slash = '\0';
            if (!fhir_is_resource_type(v)) {   /* some other relative form: match as written */
                *slash = '/';
                p->text = v;
                return P_OK;
            }
            if (pi->mod_type && strcmp(pi->mod_type, v) != 0)
                return fail(c, "invalid", "parameter '%s': '%s' is not a %s reference", nm, raw, pi->mod_type);
            char *id = slash + 1, *hist = strstr(id, "/_history/");
            if (hist) *hist = '\0';
            if (!*id || strchr(id, '/'))
                return fail(c, "invalid", "parameter '%s': '%s' is not a reference (Type/id)", nm, raw);
            p->ref_type = v;
            p->ref_id = id;
            return P_OK;
        }
        p->ref_id = v;
        return P_OK;
    }
    case FHIR_SP_COMPOSITE:
    case FHIR_SP_SPECIAL:
        break;
    }
    return fail(c, "not-supported", "parameter '%s': %s search is not supported", nm, type_name[pi->sp->type]);
}

/* ---------------------------------------------------------------- one parameter -> one OR group */

static int parse_param(pctx *c, const char *type, const char *name, const char *value, bv_or *out);

static const char *lookup_type(const char *type) { return type ? type : "Resource"; }

static bool has_target(const fhir_search_param *sp, const char *type)
{
    for (unsigned i = 0; i < sp->n_targets; i++)
        if (strcmp(sp->targets[i], type) == 0) return true;
    return false;
}

static bv_search *nested(pctx *c, const char *type, const bv_or *group)
{
    bv_search *s = bv_arena_calloc(c->a, 1, sizeof *s);
    s->type = type;
    s->ands = group;
    s->n_ands = 1;
    return s;
}

/* _has:Type:refparam:rest=value */
static int parse_has(pctx *c, const char *type, const char *name, const char *value, bv_or *out)
{
    const char *t = name + 5, *c1 = strchr(t, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2 || c1 == t || c2 == c1 + 1 || !c2[1])
        return fail(c, "invalid", "parameter '%s': _has takes the form _has:Type:reference:parameter", name);
    char *htype = bv_arena_strndup(c->a, t, (size_t)(c1 - t));
    char *ref = bv_arena_strndup(c->a, c1 + 1, (size_t)(c2 - c1 - 1));
    if (!fhir_is_resource_type(htype))
        return fail(c, "invalid", "parameter '%s': '%s' is not a resource type", name, htype);
    const fhir_search_param *sp = fhir_search_param_find(htype, ref);
    if (!sp) return unsupported(c, "unknown search parameter '%s' for %s (in '%s')", ref, htype, name);
    if (sp->type != FHIR_SP_REFERENCE)
        return fail(c, "invalid", "parameter '%s': %s:%s is not a reference parameter", name, htype, ref);
    if (type && sp->n_targets && !has_target(sp, type))
        return fail(c, "invalid", "parameter '%s': %s:%s does not refer to %s", name, htype, ref, type);
    bv_or *inner = bv_arena_calloc(c->a, 1, sizeof *inner);
    int rc = parse_param(c, htype, c2 + 1, value, inner);
    if (rc != P_OK) return rc;
    bv_pred *p = bv_arena_calloc(c->a, 1, sizeof *p);
    p->kind = BV_IX_REFERENCE;
    p->param = ref;
    p->op = BV_OP_REF;
    p->has = nested(c, htype, inner);
    out->preds = p;
    out->n = 1;
    return P_OK;
}

/* ref[:Type].rest=value: one pred per target type on which `rest` exists, ORed. */
static int parse_chain(pctx *c, const pinfo *pi, const char *rest, const char *value, bv_or *out)
{
    const fhir_search_param *sp = pi->sp;
    if (sp->type != FHIR_SP_REFERENCE)
        return fail(c, "invalid", "parameter '%s': only reference parameters can be chained", pi->name);
    if (pi->mod != M_NONE && pi->mod != M_TYPE)
        return fail(c, "invalid", "parameter '%s': a chained parameter takes no modifier but a type", pi->name);
    const char *const *targets = pi->mod_type ? &pi->mod_type : sp->targets;
    size_t nt = pi->mod_type ? 1 : sp->n_targets;
    size_t rlen = strcspn(rest, ":.");
    char *rcode = bv_arena_strndup(c->a, rest, rlen);
    bv_pred *preds = bv_arena_calloc(c->a, nt ? nt : 1, sizeof *preds);
    size_t n = 0;
    for (size_t i = 0; i < nt; i++) {
        if (!bv_starts_with(rest, "_has:") && !fhir_search_param_find(targets[i], rcode)) continue;
        if (++c->preds > SP_MAX_PREDS)
            return fail(c, "too-costly", "parameter '%s': the chain expands to too many searches", pi->name);
        bv_or *inner = bv_arena_calloc(c->a, 1, sizeof *inner);
        int rc = parse_param(c, targets[i], rest, value, inner);
        if (rc != P_OK) return rc;
        bv_pred *p = &preds[n++];
        p->kind = BV_IX_REFERENCE;
        p->param = sp->code;
        p->op = BV_OP_REF;
        p->ref_type = targets[i];
        p->chain = nested(c, targets[i], inner);
    }
    if (n == 0) {
        if (nt == 0)
            return fail(c, "invalid", "parameter '%s': give the target type to chain (%s:Type.%s)", pi->name,
                        sp->code, rest);
        return unsupported(c, "unknown search parameter '%s' on the targets of '%s' (in '%s')", rcode, sp->code,
                           pi->name);
    }
    out->preds = preds;
    out->n = n;
    return P_OK;
}

/* The definition a composite's component points at (by canonical URL). */
static const fhir_search_param *param_by_url(const char *url)
{
    for (size_t i = 0; url && i < fhir_search_params_count; i++)
        if (fhir_search_params[i].url && strcmp(fhir_search_params[i].url, url) == 0) return &fhir_search_params[i];
    return NULL;
}

/* Splits v on '$' not escaped by '\'; segments keep their other escapes. */
static size_t split_dollar(bv_arena *a, const char *v, const char **segs, size_t max)
{
    size_t k = 0;
    const char *start = v;
    for (const char *p = v;; p++) {
        if (*p == '\\' && p[1]) { p++; continue; }
        if (*p == '$' || !*p) {
            if (k < max) segs[k] = bv_arena_strndup(a, start, (size_t)(p - start));
            k++;
            if (!*p) break;
            start = p + 1;
        }
    }
    return k;
}

/* composite: each OR value is "$"-joined component values; one pred per value with a component
 * pred per part (param "<code>#<i>"), matched by rows of one group (see extract.c). */
static int parse_composite(pctx *c, const pinfo *pi, const char *value, bv_or *out)
{
    const fhir_search_param *sp = pi->sp;
    size_t nc = sp->n_components;
    const fhir_search_param *csp[8];
    if (nc < 2 || nc > 8) return unsupported(c, "parameter '%s': this composite is not supported", pi->name);
    for (size_t i = 0; i < nc; i++) {
        csp[i] = param_by_url(sp->components[i].definition);
        if (!csp[i] || kind_of[csp[i]->type] < 0)
            return unsupported(c, "parameter '%s': a component of this composite is not supported", pi->name);
    }
    if (!fhir_search_param_component_rows(sp, 0))
        return unsupported(c, "parameter '%s': this composite is not supported", pi->name);
    if (pi->mod != M_NONE && pi->mod != M_MISSING)
        return fail(c, "invalid", "parameter '%s': composite parameters take no modifier but :missing", pi->name);
    const char **segs;
    size_t nseg = split_or(c->a, value, &segs), n = 0;
    if ((c->preds += nseg) > SP_MAX_PREDS)
        return fail(c, "too-costly", "parameter '%s': the search has more than %d values", pi->name, SP_MAX_PREDS);
    bv_pred *preds = bv_arena_calloc(c->a, nseg ? nseg : 1, sizeof *preds);
    for (size_t i = 0; i < nseg; i++) {
        if (!*segs[i]) continue;
        bv_pred *p = &preds[n++];
        p->param = sp->code;
        if (pi->mod == M_MISSING) {   /* no (or some) value: judged on the first component's rows */
            p->kind = (bv_index_kind)kind_of[csp[0]->type];
            p->param = fhir_search_param_component_rows(sp, 0);
            pinfo mi = {.sp = csp[0], .name = pi->name, .mod = M_MISSING};
            if (value_pred(c, &mi, segs[i], p) != P_OK) return P_ERR;
            continue;
        }
        const char *parts[8];
        size_t np = split_dollar(c->a, segs[i], parts, 8);
        if (np != nc)
            return fail(c, "invalid", "parameter '%s': '%s' needs %zu '$'-separated components", pi->name, segs[i],
                        nc);
        bv_pred *comp = bv_arena_calloc(c->a, nc, sizeof *comp);
        for (size_t k = 0; k < nc; k++) {
            pinfo ci = {.sp = csp[k], .name = pi->name, .mod = M_NONE};
            comp[k].kind = (bv_index_kind)kind_of[csp[k]->type];
            comp[k].param = fhir_search_param_component_rows(sp, k);   /* may gain ":ucum" */
            if (value_pred(c, &ci, parts[k], &comp[k]) != P_OK) return P_ERR;
            if (comp[k].op == BV_OP_NE || comp[k].negate)
                return fail(c, "invalid", "parameter '%s': 'ne' is not supported inside a composite value", pi->name);
        }
        p->kind = comp[0].kind;
        p->op = BV_OP_EQ;
        p->components = comp;
        p->n_components = nc;
    }
    if (n == 0) return P_SKIP;
    out->preds = preds;
    out->n = n;
    return P_OK;
}

static int parse_param(pctx *c, const char *type, const char *name, const char *value, bv_or *out)
{
    int rc;
    bool has = bv_starts_with(name, "_has:");
    if ((has || strchr(name, '.')) && c->depth >= SP_MAX_NEST)
        return fail(c, "too-costly", "parameter '%s': chains and _has nest at most %d deep", name, SP_MAX_NEST);
    if (has) {
        c->depth++;
        rc = parse_has(c, type, name, value, out);
        c->depth--;
        return rc;
    }

    const char *dot = strchr(name, '.');
    size_t hlen = dot ? (size_t)(dot - name) : strlen(name);
    const char *colon = memchr(name, ':', hlen);
    size_t clen = colon ? (size_t)(colon - name) : hlen;
    char *code = bv_arena_strndup(c->a, name, clen);
    char *mod = colon ? bv_arena_strndup(c->a, colon + 1, hlen - clen - 1) : NULL;

    for (size_t i = 0; i < sizeof unsupported_params / sizeof *unsupported_params; i++)
        if (strcmp(code, unsupported_params[i]) == 0)
            return unsupported(c, "search parameter '%s' is not supported", code);
    const fhir_search_param *sp = fhir_search_param_find(lookup_type(type), code);
    if (!sp) return unsupported(c, "unknown search parameter '%s' for %s", code, type ? type : "a system search");
    if (!sp->expression && strcmp(code, "_id") != 0 && strcmp(code, "_lastUpdated") != 0)
        return unsupported(c, "search parameter '%s' is not supported", code);

    pinfo pi = {.sp = sp, .name = name, .mod = M_NONE};
    if (mod) {
        size_t k, nmod = sizeof modifiers / sizeof *modifiers;
        for (k = 0; k < nmod && strcmp(modifiers[k].name, mod) != 0; k++) {}
        if (k < nmod) {
            unsigned bit = 1u << sp->type;
            if (!(modifiers[k].types & bit))
                return fail(c, "invalid", "parameter '%s': modifier ':%s' does not apply to %s parameters", name,
                            mod, type_name[sp->type]);
            if (modifiers[k].unsupported & bit)
                return fail(c, "not-supported", "parameter '%s': modifier ':%s' is not supported yet", name, mod);
            if (modifiers[k].id == M_TERMINOLOGY ||
                (sp->type == FHIR_SP_TOKEN && (modifiers[k].id == M_ABOVE || modifiers[k].id == M_BELOW)))
                return fail(c, "not-supported",
                            "parameter '%s': modifier ':%s' is not supported until terminology exists (Bevan has no "
                            "code systems or value sets loaded)", name, mod);
            pi.mod = modifiers[k].id;
        } else if (sp->type == FHIR_SP_REFERENCE && fhir_is_resource_type(mod)) {
            if (sp->n_targets && !has_target(sp, mod))
                return fail(c, "invalid", "parameter '%s': %s is not a target of '%s'", name, mod, sp->code);
            pi.mod = M_TYPE;
            pi.mod_type = mod;
        } else {
            return fail(c, "invalid", "parameter '%s': unknown modifier ':%s'", name, mod);
        }
    }
    if (sp->type == FHIR_SP_SPECIAL)   /* never silently ignored, even when lenient */
        return fail(c, "not-supported", "parameter '%s': special search parameters (%s) are not supported", name,
                    sp->code);
    if (sp->type == FHIR_SP_COMPOSITE) {
        if (dot) return fail(c, "invalid", "parameter '%s': a composite parameter cannot be chained", name);
        return parse_composite(c, &pi, value, out);
    }

    if (dot) {
        c->depth++;
        rc = parse_chain(c, &pi, dot + 1, value, out);
        c->depth--;
        return rc;
    }

    const char **segs;
    size_t nseg = split_or(c->a, value, &segs), n = 0;
    /* A bare id on a reference parameter (subject=123) is one typed pred per target type: the
     * index is (param, ref_type, ref_id), so an untyped ref_id would walk every row of the
     * parameter. Only for a short target list; stored references always carry their type. */
    size_t expand = sp->type == FHIR_SP_REFERENCE && sp->n_targets >= 1 && sp->n_targets <= 8 ? sp->n_targets : 1;
    if ((c->preds += nseg * expand) > SP_MAX_PREDS)
        return fail(c, "too-costly", "parameter '%s': the search has more than %d values", name, SP_MAX_PREDS);
    bv_pred *preds = bv_arena_calloc(c->a, nseg * expand, sizeof *preds);
    for (size_t i = 0; i < nseg; i++) {
        if (!*segs[i]) continue;   /* empty values are ignored */
        bv_pred *p = &preds[n];
        p->kind = (bv_index_kind)kind_of[sp->type];   /* composite/special were refused above */
        p->param = fhir_search_param_rows(sp); /* phonetic searches name's rows, combo-code code's and component-code's */
        rc = value_pred(c, &pi, segs[i], p);
        if (rc != P_OK) return rc;
        n++;
        if (sp->type == FHIR_SP_REFERENCE && expand == sp->n_targets && p->op == BV_OP_REF && p->ref_id &&
            !p->ref_type && !p->text && !p->chain) {
            bv_pred bare = *p;
            for (size_t k = 0; k < sp->n_targets; k++) {
                bv_pred *q = k ? &preds[n++] : p;
                *q = bare;
                q->ref_type = sp->targets[k];
            }
        }
    }
    if (n == 0) return P_SKIP;
    out->preds = preds;
    out->n = n;
    return P_OK;
}

/* ---------------------------------------------------------------- result parameters */

static bool one_of(const char *v, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(v, *list) == 0) return true;
    return false;
}

static int parse_count(pctx *c, const char *name, const char *v, uint64_t max, size_t *out)
{
    uint64_t n;
    if (bv_str_to_u64(v, strlen(v), UINT64_MAX, &n) != BV_OK)
        return fail(c, "invalid", "%s must be a non-negative integer, not '%s'", name, v);
    *out = (size_t)(n > max ? max : n);
    return P_OK;
}

static int parse_sort(pctx *c, const char *type, const char *v, bv_search *s)
{
    const char **keys;
    size_t nk = split_or(c->a, v, &keys);
    bv_sort *sort = bv_arena_calloc(c->a, nk, sizeof *sort);
    size_t n = 0;
    for (size_t i = 0; i < nk; i++) {
        const char *k = keys[i];
        if (!*k) continue;
        bool desc = k[0] == '-';
        if (desc) k++;
        const fhir_search_param *sp = fhir_search_param_find(lookup_type(type), k);
        if (!sp || kind_of[sp->type] < 0 || (!sp->expression && strcmp(k, "_id") && strcmp(k, "_lastUpdated")))
            return fail(c, "invalid", "_sort: '%s' is not a search parameter of %s that can be sorted on", k,
                        type ? type : "all resource types");
        sort[n].param = fhir_search_param_rows(sp);
        sort[n].kind = (bv_index_kind)kind_of[sp->type];
        sort[n].desc = desc;
        n++;
    }
    s->sort = sort;
    s->n_sort = n;
    return P_OK;
}

static int parse_types(pctx *c, const char *v, bv_search *s)
{
    const char **ts;
    size_t nt = split_or(c->a, v, &ts), n = 0;
    const char **types = bv_arena_alloc(c->a, nt * sizeof *types);
    for (size_t i = 0; i < nt; i++) {
        if (!*ts[i]) continue;
        if (!fhir_is_resource_type(ts[i])) return fail(c, "invalid", "_type: '%s' is not a resource type", ts[i]);
        types[n++] = ts[i];
    }
    s->types = types;
    s->n_types = n;
    return P_OK;
}

static void push_str(bv_arena *a, const char *const **list, size_t *n, const char *v)
{
    const char **l = bv_arena_alloc(a, (*n + 1) * sizeof *l);
    if (*n) memcpy(l, *list, *n * sizeof *l);
    l[(*n)++] = v;
    *list = l;
}

/* _include / _revinclude value: "*", "Type:*", "Type:param" or "Type:param:Target". */
static int parse_include(pctx *c, const char *name, const char *v, bool rev, bool iterate, bv_include *inc)
{
    memset(inc, 0, sizeof *inc);
    inc->rev = rev;
    inc->iterate = iterate;
    if (strcmp(v, "*") == 0) {
        if (rev) return fail(c, "invalid", "%s: give the referring type (%s=Type:param)", name, name);
        return P_OK;
    }
    const char *c1 = strchr(v, ':');
    if (!c1 || c1 == v || !c1[1])
        return fail(c, "invalid", "%s: '%s' is not of the form Type:parameter[:targetType]", name, v);
    char *t = bv_arena_strndup(c->a, v, (size_t)(c1 - v));
    const char *c2 = strchr(c1 + 1, ':');
    char *pname = bv_arena_strndup(c->a, c1 + 1, c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1));
    if (!fhir_is_resource_type(t)) return fail(c, "invalid", "%s: '%s' is not a resource type", name, t);
    inc->type = t;
    if (c2) {
        if (!fhir_is_resource_type(c2 + 1))
            return fail(c, "invalid", "%s: '%s' is not a resource type", name, c2 + 1);
        inc->target = c2 + 1;
    }
    if (strcmp(pname, "*") == 0) return P_OK;
    const fhir_search_param *sp = fhir_search_param_find(t, pname);
    if (!sp) return fail(c, "invalid", "%s: '%s' is not a search parameter of %s", name, pname, t);
    if (sp->type != FHIR_SP_REFERENCE)
        return fail(c, "invalid", "%s: %s:%s is not a reference parameter", name, t, pname);
    if (inc->target && sp->n_targets && !has_target(sp, inc->target))
        return fail(c, "invalid", "%s: %s:%s cannot refer to %s", name, t, pname, inc->target);
    inc->param = sp->code;
    return P_OK;
}

/* Returns P_OK (applied), P_SKIP (not a result parameter / ignored) or P_ERR. *handled says
 * whether the name was a result parameter at all. */
static int result_param(pctx *c, const char *type, const bv_param *pm, bv_search_request *req, bool *handled)
{
    static const char *const summary_values[] = {"true", "false", "text", "data", "count", NULL};
    static const char *const total_values[] = {"none", "estimate", "accurate", NULL};
    static const char *const formats[] = {"json", "application/json", "application/fhir+json", "fhir+json",
                                          "application/json+fhir", NULL};
    const char *n = pm->name, *v = pm->value;
    bv_search *s = &req->search;
    *handled = true;
    if (strcmp(n, "_count") == 0) return parse_count(c, n, v, BV_MAX_PAGE_COUNT, &s->count);
    if (strcmp(n, "_offset") == 0) return parse_count(c, n, v, UINT32_MAX, &s->offset);
    if (strcmp(n, "_cursor") == 0) { /* opaque paging position from a next/previous link (the store checks it) */
        if (!*v || strlen(v) > 8192) return fail(c, "invalid", "_cursor is not a paging position from this server");
        s->cursor = v;
        return P_OK;
    }
    if (strcmp(n, "_sort") == 0) return parse_sort(c, type, v, s);
    if (strcmp(n, "_summary") == 0) {
        if (!one_of(v, summary_values))
            return fail(c, "invalid", "_summary must be true, false, text, data or count, not '%s'", v);
        req->summary = v;
        return P_OK;
    }
    if (strcmp(n, "_total") == 0) {
        if (!one_of(v, total_values)) return fail(c, "invalid", "_total must be none, estimate or accurate, not '%s'", v);
        req->total = v;
        s->want_total = strcmp(v, "none") != 0;
        return P_OK;
    }
    if (strcmp(n, "_elements") == 0) {
        req->elements = v;
        return P_OK;
    }
    if (strcmp(n, "_include") == 0 || strcmp(n, "_include:iterate") == 0 || strcmp(n, "_revinclude") == 0 ||
        strcmp(n, "_revinclude:iterate") == 0) {
        bool rev = n[1] == 'r', iterate = strchr(n, ':') != NULL;
        const char **vals;
        size_t nv = split_or(c->a, v, &vals);
        for (size_t i = 0; i < nv; i++) {
            bv_include inc;
            if (parse_include(c, n, unesc(c->a, vals[i]), rev, iterate, &inc) != P_OK) return P_ERR;
            bv_include *l = bv_arena_alloc(c->a, (req->n_incs + 1) * sizeof *l);
            if (req->n_incs) memcpy(l, req->incs, req->n_incs * sizeof *l);
            l[req->n_incs++] = inc;
            req->incs = l;
            push_str(c->a, rev ? &req->revincludes : &req->includes, rev ? &req->n_revincludes : &req->n_includes,
                     vals[i]);
        }
        return P_OK;
    }
    if (strcmp(n, "_format") == 0) {
        char *f = bv_arena_strndup(c->a, v, strcspn(v, ";"));
        if (!one_of(f, formats)) return fail(c, "not-supported", "_format '%s' is not supported (JSON only)", v);
        return P_SKIP;
    }
    if (strcmp(n, "_pretty") == 0) return P_SKIP;
    if (strcmp(n, "_type") == 0 && !type) return parse_types(c, v, s);
    *handled = false;
    return P_SKIP;
}

/* ---------------------------------------------------------------- entry point */

int bv_fhir_parse_search(bv_arena *a, const char *type, const bv_param *params, size_t n_params, bool strict,
                         bv_search_request *req, bv_outcome *oo)
{
    memset(req, 0, sizeof *req);
    bv_search *s = &req->search;
    s->type = type;
    s->count = BV_DEFAULT_PAGE_COUNT;
    s->want_total = true;
    pctx c = {.a = a, .oo = oo, .strict = strict};
    if (type && !fhir_is_resource_type(type)) {
        fail(&c, "not-supported", "'%s' is not a resource type", type);
        return BV_EINVAL;
    }
    bv_or *ands = bv_arena_calloc(a, n_params ? n_params : 1, sizeof *ands);
    req->applied = bv_arena_calloc(a, n_params ? n_params : 1, sizeof *req->applied);
    bool failed = false;
    for (size_t i = 0; i < n_params; i++) {
        const bv_param *pm = &params[i];
        if (!pm->name || !pm->value) continue;
        bool handled;
        int rc = result_param(&c, type, pm, req, &handled);
        if (!handled) rc = parse_param(&c, type, pm->name, pm->value, &ands[s->n_ands]);
        if (rc == P_ERR) {
            failed = true;
            continue;
        }
        if (rc == P_SKIP) continue;
        if (!handled) s->n_ands++;
        req->applied[req->n_applied++] = *pm;
    }
    s->ands = ands;
    return failed ? BV_EINVAL : BV_OK;
}

/* "a=1&b=x%20y" -> params, form-decoded ("+" is space); empty pieces skipped. */
int bv_fhir_parse_query_string(bv_arena *a, const char *qs, bv_param **out, size_t *n)
{
    size_t cap = bv_query_pieces(qs);
    if (cap > BV_MAX_QUERY_PARAMS) return BV_ETOOBIG;
    bv_param *ps = bv_arena_calloc(a, cap, sizeof *ps);
    long k = bv_query_split(a, qs, false, ps);
    if (k < 0) return BV_EINVAL;
    *out = ps;
    *n = (size_t)k;
    return BV_OK;
}
