/* SQLite store, search: one bv_search becomes one SELECT over resources r, with every value bound.
 * Table and column names come from the fixed tables below, never from the query.
 *
 * Shape: r.deleted = 0 AND r.type = ? AND (group 1) AND (group 2) ...
 * An index predicate is a set of rids: "SELECT x.rid FROM ix_<kind> x WHERE x.param = ? AND ...".
 * A group (OR) tests r.rid IN (set UNION ALL set ...) for its positive predicates, and
 * r.rid NOT IN (set) for negated ones (:not, :missing=true). One AND group drives: its rid set
 * (not correlated, evaluated once) feeds the rid primary key. Every other group is tested per
 * candidate row with correlated EXISTS / NOT EXISTS probes (x.rid = r.rid AND ...): SQLite
 * would otherwise build each IN set in full, and "code=<heart rate>" is 100,000 rows at a
 * million resources while the patient's own rows are 40. The driver is the group that looks
 * most selective (drive_score: a reference or identifier before a code, before a date...);
 * with no positive group the type is scanned and the sets are built once. Chains and _has are
 * nested searches of the same shape. */
#include "internal.h"

#include <sqlite3.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ix_table[BV__N_KINDS] = {
    [BV_IX_STRING] = "ix_string", [BV_IX_TOKEN] = "ix_token",       [BV_IX_REFERENCE] = "ix_reference",
    [BV_IX_DATE] = "ix_date",     [BV_IX_NUMBER] = "ix_number",     [BV_IX_QUANTITY] = "ix_quantity",
    [BV_IX_URI] = "ix_uri",
};

typedef struct {
    bv_arena *a;
    int alias;  /* next alias number: every nested table gets its own */
    int nest;   /* chain/_has nesting depth */
    bool plus_param; /* "+X.param": a correlated probe walks the row's own index rows (rid, ord) */
} sctx;

static int emit_where(bv__qb *w, sctx *cx, const bv_search *q, const char *R);

/* How the top-level search runs (plan_search); nested searches use the fixed ranking. */
typedef struct {
    long driver;  /* the group whose rid set (IN) drives, or -1 */
    long stream;  /* the group read in rid order from its index as "d", joined to r, or -1 */
    bool scan;    /* walk the type in rid order (resources_live); every group a correlated probe */
    bool count;   /* r is read through resources_live (type, rid): a count, a _has set */
    bool broad;   /* every estimated condition has at least BV__EST_BOUND index entries */
    const int64_t *est; /* per AND group: its estimate (plan_search), -1 when not counted; or NULL */
    long lead;    /* with a driver: the group whose own rows (by rid) are walked for the driver's
                   * rids before the type check (search_run), or -1 */
} splan;

static int emit_where_plan(bv__qb *w, sctx *cx, const bv_search *q, const char *R, const splan *pl);
static bool count_by_type_index(const bv_search *q);
static long driver_group(const bv_search *q);
static bool token_counted(const bv_pred *p);
static int count_token_value(bv__conn *c, const bv_search *q, const bv_pred *p, int64_t *out);

/* "%value%" with LIKE's metacharacters escaped by '\' (used with ESCAPE '\'). */
static char *like_contains(bv_arena *a, const char *s)
{
    size_t n = strlen(s);
    char *out = bv_arena_alloc(a, 2 * n + 3), *o = out;
    *o++ = '%';
    for (; *s; s++) {
        if (*s == '%' || *s == '_' || *s == '\\') *o++ = '\\';
        *o++ = *s;
    }
    *o++ = '%';
    *o = '\0';
    return out;
}

/* Smallest byte string greater than every string starting with s, or NULL if none (all 0xFF).
 * "starts with s" is then the index range s <= col < upper (BINARY collation compares bytes). */
static char *prefix_upper(bv_arena *a, const char *s)
{
    size_t n = strlen(s);
    while (n && (unsigned char)s[n - 1] == 0xff) n--;
    if (!n) return NULL;
    char *u = bv_arena_strndup(a, s, n);
    u[n - 1] = (char)((unsigned char)u[n - 1] + 1);
    return u;
}

static void prefix_range(bv__qb *w, sctx *cx, const char *col, const char *prefix)
{
    if (!*prefix) return; /* every value starts with "" */
    bv__qb_sqlf(w, " AND %s >= ", col);
    bv__qb_text(w, prefix);
    const char *up = prefix_upper(cx->a, prefix);
    if (up) {
        bv__qb_sqlf(w, " AND %s < ", col);
        bv__qb_text(w, up);
    }
}

/* FHIR range semantics (search.html#prefix): target [lo, hi] against the parameter [plo, phi],
 * both inclusive. NE is emitted as EQ and negated by the caller (per row: a resource matches ne
 * when one of its values is not equal, so a resource without a value never does). */
static int date_cond(bv__qb *w, const char *lo, const char *hi, bv_op op, int64_t plo, int64_t phi)
{
    switch (op) {
    case BV_OP_EQ:
    case BV_OP_NE: /* the parameter range fully contains the target */
        bv__qb_sqlf(w, "%s >= ", lo), bv__qb_int(w, plo);
        bv__qb_sqlf(w, " AND %s <= ", hi), bv__qb_int(w, phi);
        /* implied (lo <= hi <= phi), and it bounds lo on both sides: an index range over the
         * day's rows rather than every row below phi (birthdate=2017-01-08 read all of them) */
        if (op == BV_OP_EQ) bv__qb_sqlf(w, " AND %s <= ", lo), bv__qb_int(w, phi);
        return BV_OK;
    case BV_OP_GT: /* the range above the parameter overlaps the target */
        bv__qb_sqlf(w, "%s > ", hi), bv__qb_int(w, phi);
        return BV_OK;
    case BV_OP_LT: /* the range below the parameter overlaps the target */
        bv__qb_sqlf(w, "%s < ", lo), bv__qb_int(w, plo);
        return BV_OK;
    case BV_OP_GE: /* gt or eq, which reduces to: hi > phi OR lo >= plo. Both imply hi >= plo
                    * (lo <= hi): that redundant term gives SQLite an index range. */
        bv__qb_sqlf(w, "%s >= ", hi), bv__qb_int(w, plo);
        bv__qb_sqlf(w, " AND (%s > ", hi), bv__qb_int(w, phi);
        bv__qb_sqlf(w, " OR %s >= ", lo), bv__qb_int(w, plo);
        bv__qb_sql(w, ")");
        return BV_OK;
    case BV_OP_LE: /* lt or eq: lo < plo OR hi <= phi; both imply lo <= phi */
        bv__qb_sqlf(w, "%s <= ", lo), bv__qb_int(w, phi);
        bv__qb_sqlf(w, " AND (%s < ", lo), bv__qb_int(w, plo);
        bv__qb_sqlf(w, " OR %s <= ", hi), bv__qb_int(w, phi);
        bv__qb_sql(w, ")");
        return BV_OK;
    case BV_OP_SA: /* no overlap, target entirely above */
        bv__qb_sqlf(w, "%s > ", lo), bv__qb_int(w, phi);
        return BV_OK;
    case BV_OP_EB: /* no overlap, target entirely below */
        bv__qb_sqlf(w, "%s < ", hi), bv__qb_int(w, plo);
        return BV_OK;
    case BV_OP_AP: /* overlap; the caller widens [plo, phi] for "approximately" */
        bv__qb_sqlf(w, "%s <= ", lo), bv__qb_int(w, phi);
        bv__qb_sqlf(w, " AND %s >= ", hi), bv__qb_int(w, plo);
        return BV_OK;
    default:
        return BV_EINVAL;
    }
}

/* Number/quantity: the stored value is a point. eq: inside the parameter's implicit precision
 * range [num_lo, num_hi) (or exactly num when the range is empty); the other prefixes compare
 * with the value itself; ap: within 10% of it, or inside the precision range. */
static int num_cond(bv__qb *w, const char *col, const bv_pred *p)
{
    switch (p->op) {
    case BV_OP_EQ:
    case BV_OP_NE:
        if (p->num_lo < p->num_hi) {
            bv__qb_sqlf(w, "%s >= ", col), bv__qb_real(w, p->num_lo);
            bv__qb_sqlf(w, " AND %s < ", col), bv__qb_real(w, p->num_hi);
        } else {
            bv__qb_sqlf(w, "%s = ", col), bv__qb_real(w, p->num);
        }
        return BV_OK;
    case BV_OP_GT:
    case BV_OP_SA: bv__qb_sqlf(w, "%s > ", col), bv__qb_real(w, p->num); return BV_OK;
    case BV_OP_LT:
    case BV_OP_EB: bv__qb_sqlf(w, "%s < ", col), bv__qb_real(w, p->num); return BV_OK;
    case BV_OP_GE: bv__qb_sqlf(w, "%s >= ", col), bv__qb_real(w, p->num); return BV_OK;
    case BV_OP_LE: bv__qb_sqlf(w, "%s <= ", col), bv__qb_real(w, p->num); return BV_OK;
    case BV_OP_AP: {
        double d = fabs(p->num) * 0.1;
        double lo = p->num - d, hi = p->num + d;
        if (p->num_lo < p->num_hi) {
            lo = fmin(lo, p->num_lo);
            hi = fmax(hi, p->num_hi);
        }
        bv__qb_sqlf(w, "%s >= ", col), bv__qb_real(w, lo);
        bv__qb_sqlf(w, " AND %s <= ", col), bv__qb_real(w, hi);
        return BV_OK;
    }
    default:
        return BV_EINVAL;
    }
}

static bool is_ordered_op(bv_op op) { return op <= BV_OP_AP; }

static bool is_direct(const bv_pred *p)
{
    return !p->has && p->param && (strcmp(p->param, "_id") == 0 || strcmp(p->param, "_lastUpdated") == 0);
}

/* Whether the predicate selects resources *without* a matching row. */
static bool is_negative(const bv_pred *p)
{
    bool base = p->op == BV_OP_MISSING && p->missing;
    return base != p->negate;
}

/* _id and _lastUpdated: conditions on the resource row itself. */
static int pred_direct(bv__qb *w, const bv_pred *p, const char *R)
{
    if (strcmp(p->param, "_id") == 0) {
        const char *v = p->code ? p->code : p->text;
        if (p->op == BV_OP_MISSING) {
            bv__qb_sql(w, p->missing != p->negate ? "0" : "1");
            return BV_OK;
        }
        if ((p->op != BV_OP_TOKEN && p->op != BV_OP_STR_EXACT && p->op != BV_OP_URI_EQ) || !v) return BV_EINVAL;
        bv__qb_sqlf(w, "(%s.id %s ", R, p->negate ? "<>" : "=");
        bv__qb_text(w, v);
        if (p->res_type) {
            bv__qb_sqlf(w, " AND %s.type = ", R);
            bv__qb_text(w, p->res_type);
        }
        bv__qb_sql(w, ")");
        return BV_OK;
    }
    if (p->op == BV_OP_MISSING) {
        bv__qb_sql(w, p->missing != p->negate ? "0" : "1");
        return BV_OK;
    }
    if (!is_ordered_op(p->op) || p->lo > p->hi) return BV_EINVAL;
    char col[32];
    snprintf(col, sizeof col, "%s.last_updated", R);
    bv__qb_sql(w, (p->op == BV_OP_NE) != p->negate ? "NOT (" : "(");
    int rc = date_cond(w, col, col, p->op, p->lo, p->hi);
    bv__qb_sql(w, ")");
    return rc;
}

/* The WHERE of a _has's nested search over H, one level deeper; planned (its driver first) when
 * its rows are read through resources_live. */
static int has_where(bv__qb *w, sctx *cx, const bv_search *has, const char *H, bool live)
{
    cx->nest++;
    splan hp = {.driver = driver_group(has), .stream = -1, .lead = -1, .count = true};
    int rc = live ? emit_where_plan(w, cx, has, H, &hp) : emit_where(w, cx, has, H);
    cx->nest--;
    return rc;
}

/* _has: rids of resources that a matching resource of has->type refers to through `param`.
 * Nested so the inner search drives: matching h -> their reference rows -> the targets. */
static int has_set(bv__qb *w, sctx *cx, const bv_pred *p)
{
    if (!p->param || cx->nest >= BV__MAX_NEST) return BV_EINVAL;
    int t = cx->alias++, x = cx->alias++, h = cx->alias++;
    char H[16];
    snprintf(H, sizeof H, "h%d", h);
    bv__qb_sqlf(w,
                "SELECT t%d.rid FROM resources t%d WHERE (t%d.type, t%d.id) IN (SELECT x%d.ref_type, x%d.ref_id"
                " FROM ix_reference x%d WHERE +x%d.param", /* "+": drive by rid (below), not param */
                t, t, t, t, x, x, x, x);
    bv__qb_param(w, p->param);
    /* The matching resources' rids come from index sets (only live resources have index rows):
     * their type is checked in resources_live (type, rid), not in the table's large rows. */
    bool live = count_by_type_index(p->has);
    bv__qb_sqlf(w, " AND x%d.rid IN (SELECT %s.rid FROM resources %s%s WHERE ", x, H, H,
                live ? " INDEXED BY resources_live" : "");
    int rc = has_where(w, cx, p->has, H, live);
    bv__qb_sql(w, "))");
    return rc;
}

/* _has as a probe of one candidate R: its referrers through `param` (ix_reference_q: param,
 * ref_type, ref_id, about fifty rows for a patient) that are in the nested search's set (built
 * once per statement, then a lookup in memory: "+" keeps it out of the index seek). */
static int has_probe(bv__qb *w, sctx *cx, const bv_pred *p, const char *R)
{
    if (!p->param || cx->nest >= BV__MAX_NEST) return BV_EINVAL;
    int x = cx->alias++, h = cx->alias++;
    char H[16];
    snprintf(H, sizeof H, "h%d", h);
    bv__qb_sqlf(w, "SELECT 1 FROM ix_reference x%d WHERE x%d.param", x, x);
    bv__qb_param(w, p->param);
    bool live = count_by_type_index(p->has);
    bv__qb_sqlf(w, " AND x%d.ref_type = %s.type AND x%d.ref_id = %s.id AND +x%d.rid IN (SELECT %s.rid FROM resources %s%s WHERE ",
                x, R, x, R, x, H, H, live ? " INDEXED BY resources_live" : "");
    int rc = has_where(w, cx, p->has, H, live);
    bv__qb_sql(w, ")");
    return rc;
}

/* The conditions on index row X (of table ix_table[p->kind]) for p: "X.param = ? AND ...". */
static int pred_cond(bv__qb *w, sctx *cx, const bv_pred *p, const char *X)
{
    char col[32], col2[32];
    bv__qb_sqlf(w, "%s%s.param", cx->plus_param ? "+" : "", X);
    bv__qb_param(w, p->param);
    if (p->op == BV_OP_MISSING) return BV_OK; /* any row for the parameter */

    switch (p->kind) {
    case BV_IX_STRING:
        if (!p->text) return BV_EINVAL;
        if (p->op == BV_OP_STR_STARTS) {
            snprintf(col, sizeof col, "%s.norm", X);
            prefix_range(w, cx, col, p->text);
        } else if (p->op == BV_OP_STR_EXACT) {
            bv__qb_sqlf(w, " AND %s.text = ", X);
            bv__qb_text(w, p->text);
        } else if (p->op == BV_OP_STR_CONTAINS) {
            bv__qb_sqlf(w, " AND %s.norm LIKE ", X);
            bv__qb_text(w, like_contains(cx->a, p->text));
            bv__qb_sql(w, " ESCAPE '\\'");
        } else {
            return BV_EINVAL;
        }
        return BV_OK;
    case BV_IX_TOKEN:
        if (p->op == BV_OP_TOKEN) {
            if (p->system_given && p->system) {
                bv__qb_sqlf(w, " AND %s.system = ", X);
                bv__qb_text(w, p->system);
            } else if (p->system_given) {
                bv__qb_sqlf(w, " AND %s.system IS NULL", X);
            }
            if (p->code) {
                bv__qb_sqlf(w, " AND %s.code = ", X);
                bv__qb_text(w, p->code);
            }
        } else if (p->op == BV_OP_TOKEN_TEXT && p->text) {
            /* LIKE folds ASCII case: a case-insensitive "contains" on the display text. */
            bv__qb_sqlf(w, " AND %s.text LIKE ", X);
            bv__qb_text(w, like_contains(cx->a, p->text));
            bv__qb_sql(w, " ESCAPE '\\'");
        } else {
            return BV_EINVAL;
        }
        return BV_OK;
    case BV_IX_REFERENCE:
        if (p->op != BV_OP_REF) return BV_EINVAL;
        if (p->ref_type) {
            bv__qb_sqlf(w, " AND %s.ref_type = ", X);
            bv__qb_text(w, p->ref_type);
        }
        if (p->ref_id) {
            bv__qb_sqlf(w, " AND %s.ref_id = ", X);
            bv__qb_text(w, p->ref_id);
        }
        if (p->text) {
            bv__qb_sqlf(w, " AND %s.text = ", X);
            bv__qb_text(w, p->text);
        }
        if (p->chain) {
            if (cx->nest >= BV__MAX_NEST) return BV_EINVAL;
            int c = cx->alias++;
            char C[16];
            snprintf(C, sizeof C, "c%d", c);
            /* The target must be a current resource matching the chained search. With the
             * target type fixed (ref_type = the chained search's type) one column is enough: a
             * row-value IN is materialised once per use, and SQLite uses it twice. */
            bool typed = p->ref_type && p->chain->type && strcmp(p->ref_type, p->chain->type) == 0;
            /* the targets' ids from resources_ids (type, rid, id): no table row is read when every
             * condition of the chained search is on index rows (no _id, _lastUpdated) */
            bool ids = typed && count_by_type_index(p->chain);
            if (typed)
                bv__qb_sqlf(w, " AND %s.ref_id IN (SELECT %s.id FROM resources %s%s WHERE ", X, C, C,
                            ids ? " INDEXED BY resources_ids" : "");
            else
                bv__qb_sqlf(w, " AND (%s.ref_type, %s.ref_id) IN (SELECT %s.type, %s.id FROM resources %s WHERE ", X,
                            X, C, C, C);
            cx->nest++;
            splan ip = {.driver = driver_group(p->chain), .stream = -1, .lead = -1, .count = true};
            int rc = ids ? emit_where_plan(w, cx, p->chain, C, &ip) : emit_where(w, cx, p->chain, C);
            cx->nest--;
            if (rc) return rc;
            bv__qb_sql(w, ")");
        }
        return BV_OK;
    case BV_IX_DATE: {
        if (!is_ordered_op(p->op) || p->lo > p->hi) return BV_EINVAL;
        snprintf(col, sizeof col, "%s.lo", X);
        snprintf(col2, sizeof col2, "%s.hi", X);
        bv__qb_sql(w, p->op == BV_OP_NE ? " AND NOT (" : " AND (");
        int rc = date_cond(w, col, col2, p->op, p->lo, p->hi);
        bv__qb_sql(w, ")");
        return rc;
    }
    case BV_IX_NUMBER:
    case BV_IX_QUANTITY: {
        if (!is_ordered_op(p->op)) return BV_EINVAL;
        snprintf(col, sizeof col, "%s.num", X);
        bv__qb_sql(w, p->op == BV_OP_NE ? " AND NOT (" : " AND (");
        int rc = num_cond(w, col, p);
        if (rc) return rc;
        bv__qb_sql(w, ")");
        if (p->kind == BV_IX_QUANTITY) { /* an empty system or code means any */
            if (p->system && *p->system) {
                bv__qb_sqlf(w, " AND %s.system = ", X);
                bv__qb_text(w, p->system);
            }
            if (p->code && *p->code) {
                bv__qb_sqlf(w, " AND %s.code = ", X);
                bv__qb_text(w, p->code);
            }
        }
        return BV_OK;
    }
    case BV_IX_URI:
        if (!p->text) return BV_EINVAL;
        if (p->op == BV_OP_URI_EQ) {
            bv__qb_sqlf(w, " AND %s.text = ", X);
            bv__qb_text(w, p->text);
        } else if (p->op == BV_OP_URI_BELOW) {
            /* the value itself, or below it on a path-segment boundary: v, v/... */
            size_t n = strlen(p->text);
            bool slash = n && p->text[n - 1] == '/';
            const char *sub = slash ? p->text : bv_arena_printf(cx->a, "%s/", p->text);
            snprintf(col, sizeof col, "%s.text", X);
            bv__qb_sqlf(w, " AND (%s.text = ", X);
            bv__qb_text(w, p->text);
            bv__qb_sqlf(w, " OR (1");
            prefix_range(w, cx, col, sub);
            bv__qb_sql(w, "))");
        } else if (p->op == BV_OP_URI_ABOVE) {
            /* the stored uri is the value or one of its ancestors on a '/' boundary (after the
             * scheme's "//"): an IN list the text index answers */
            const char *v = p->text, *start = strstr(v, "://");
            start = start ? start + 3 : v;
            bv__qb_sqlf(w, " AND %s.text IN (", X);
            bv__qb_text(w, v);
            for (const char *q = v + strlen(v); q > start; q--) {
                if (q[-1] != '/' || q - 1 <= start) continue;
                bv__qb_sql(w, ", ");
                bv__qb_text(w, bv_arena_strndup(cx->a, v, (size_t)(q - 1 - v)));   /* ".../a" */
                bv__qb_sql(w, ", ");
                bv__qb_text(w, bv_arena_strndup(cx->a, v, (size_t)(q - v)));       /* ".../a/" */
            }
            bv__qb_sql(w, ")");
        } else {
            return BV_EINVAL;
        }
        return BV_OK;
    }
    return BV_EINVAL;
}

/* "p's conditions on index row d, and no earlier row (lower ord) of the same resource matches
 * them AND ": the first matching row of each resource, so that a walk over d yields each rid once. */
static int first_row_of_each(bv__qb *w, sctx *cx, const bv_pred *p)
{
    int rc = pred_cond(w, cx, p, "d");
    if (rc) return rc;
    bv__qb_sqlf(w, " AND NOT EXISTS (SELECT 1 FROM %s d2 WHERE d2.rid = d.rid AND d2.ord < d.ord AND ",
                ix_table[p->kind]);
    if ((rc = pred_cond(w, cx, p, "d2"))) return rc;
    bv__qb_sql(w, ") AND ");
    return BV_OK;
}


/* Equality on every column of the kind's query index: a correlated probe may use that index.
 * Any other probe walks the candidate's own rows by (rid, ord) ("+param"), never a range of the
 * parameter's rows. */
static bool probe_by_index(const bv_pred *p)
{
    if (p->op == BV_OP_MISSING || p->n_components || p->chain) return false;
    if (p->kind == BV_IX_TOKEN) return p->op == BV_OP_TOKEN && p->code && p->system_given;
    if (p->kind == BV_IX_REFERENCE) return p->ref_type && p->ref_id && !p->text;
    return false;
}

/* The set of rids with an index row matching p (before negation). corr: the candidate row's
 * alias; then it is a correlated probe "SELECT 1 ... WHERE X.rid = corr.rid AND ..." instead. */
static int pred_set(bv__qb *w, sctx *cx, const bv_pred *p, const char *corr)
{
    if (p->has) {
        if (!corr) return has_set(w, cx, p);
        bv__qb_sqlf(w, "SELECT 1 WHERE %s.rid IN (", corr);
        int rc = has_set(w, cx, p);
        bv__qb_sql(w, ")");
        return rc;
    }
    char X[16];
    int a = cx->alias++;
    snprintf(X, sizeof X, "x%d", a);
    bool saved_plus = cx->plus_param;
    cx->plus_param = corr && !probe_by_index(p);
    if (p->n_components) {
        /* composite: one row per component, all of one value (same rid, same group) */
        if (!p->components || p->n_components > 8) return BV_EINVAL;
        bv__qb_sqlf(w, "SELECT %s_0.rid FROM ", X);
        cx->plus_param = false; /* composite rows: the first component's index, checked below */
        for (size_t i = 0; i < p->n_components; i++) {
            const bv_pred *k = &p->components[i];
            if (!k->param || (unsigned)k->kind >= BV__N_KINDS || k->has || k->chain || k->n_components)
                return BV_EINVAL;
            bv__qb_sqlf(w, "%s%s %s_%zu", i ? ", " : "", ix_table[k->kind], X, i);
        }
        bv__qb_sql(w, " WHERE ");
        for (size_t i = 0; i < p->n_components; i++) {
            char Xi[48];
            snprintf(Xi, sizeof Xi, "%s_%zu", X, i);
            if (i) bv__qb_sqlf(w, " AND %s.rid = %s_0.rid AND %s.grp = %s_0.grp AND ", Xi, X, Xi, X);
            else if (corr) bv__qb_sqlf(w, "%s.rid = %s.rid AND %s.grp <> 0 AND ", Xi, corr, Xi);
            else bv__qb_sqlf(w, "%s.grp <> 0 AND ", Xi);
            int rc = pred_cond(w, cx, &p->components[i], Xi);
            if (rc) { cx->plus_param = saved_plus; return rc; }
        }
    } else {
        if (!p->param || (unsigned)p->kind >= BV__N_KINDS) return BV_EINVAL;
        bv__qb_sqlf(w, "SELECT %s.rid FROM %s %s WHERE ", X, ix_table[p->kind], X);
        if (corr) bv__qb_sqlf(w, "%s.rid = %s.rid AND ", X, corr);
        int rc = pred_cond(w, cx, p, X);
        if (rc) { cx->plus_param = saved_plus; return rc; }
    }
    cx->plus_param = saved_plus;
    if (p->res_type) {
        int t = cx->alias++;
        bv__qb_sqlf(w, " AND EXISTS (SELECT 1 FROM resources rt%d WHERE rt%d.rid = %s%s.rid AND rt%d.type = ", t, t, X,
                    p->n_components ? "_0" : "", t);
        bv__qb_text(w, p->res_type);
        bv__qb_sql(w, ")");
    }
    return w->err;
}

/* A plain token code match: runs of these on one parameter and system become one IN list. */
static bool simple_token(const bv_pred *p)
{
    return p->kind == BV_IX_TOKEN && p->op == BV_OP_TOKEN && !p->negate && p->code && !p->res_type && !p->has &&
           !p->chain && !p->n_components && p->param && strcmp(p->param, "_id") != 0;
}

static bool same_token_key(const bv_pred *a, const bv_pred *b)
{
    return strcmp(a->param, b->param) == 0 && a->system_given == b->system_given &&
           ((!a->system && !b->system) || (a->system && b->system && strcmp(a->system, b->system) == 0));
}

/* The rest of an ix_token probe (alias a) for a run of simple tokens on one param and system:
 * "<param> [AND system ...] AND code IN (...)"; the caller wrote up to "x<a>.param". */
static void token_run_sql(bv__qb *w, int a, const bv_pred *run, size_t n)
{
    bv__qb_param(w, run[0].param);
    if (run[0].system_given && run[0].system) {
        bv__qb_sqlf(w, " AND x%d.system = ", a);
        bv__qb_text(w, run[0].system);
    } else if (run[0].system_given) {
        bv__qb_sqlf(w, " AND x%d.system IS NULL", a);
    }
    bv__qb_sqlf(w, " AND x%d.code IN (", a);
    for (size_t j = 0; j < n; j++) {
        if (j) bv__qb_sql(w, ", ");
        bv__qb_text(w, run[j].code);
    }
    bv__qb_sql(w, ")");
}


/* A positive _id match that can join one "id IN (...)" list. */
static bool simple_id(const bv_pred *p)
{
    return is_direct(p) && strcmp(p->param, "_id") == 0 && !p->negate && !p->res_type && p->op == BV_OP_TOKEN &&
           p->code;
}

/* One AND group. corr: test it per candidate row with correlated probes on P.rid (not the
 * driver); R is the resource row (_id, _lastUpdated). */
static int emit_group(bv__qb *w, sctx *cx, const bv_or *g, const char *R, bool corr, const char *P)
{
    if (!g->n || !g->preds) { /* an OR of nothing is false */
        bv__qb_sql(w, "0");
        return BV_OK;
    }
    int rc = BV_OK;
    size_t npos = 0;
    for (size_t i = 0; i < g->n; i++)
        if (!is_direct(&g->preds[i]) && !is_negative(&g->preds[i])) npos++;
    bv__qb_sql(w, "(");
    bool first = true;
    if (npos && corr) {
        /* EXISTS per value (a run of plain codes is one probe with an IN list) */
        size_t k = 0;
        for (size_t i = 0; i < g->n && !rc; i++) {
            const bv_pred *p = &g->preds[i];
            if (is_direct(p) || is_negative(p)) continue;
            bv__qb_sql(w, k++ ? " OR EXISTS (" : "EXISTS (");
            size_t run = 1;
            while (simple_token(p) && i + run < g->n && simple_token(&g->preds[i + run]) &&
                   same_token_key(p, &g->preds[i + run]))
                run++;
            if (p->has) {
                rc = has_probe(w, cx, p, R);
            } else if (run > 1) {
                int a = cx->alias++;
                /* "+": the candidate's own rows by (rid, ord); through (param, code IN (...)) it
                 * would be one index seek per listed code for every candidate */
                bv__qb_sqlf(w, "SELECT 1 FROM ix_token x%d WHERE x%d.rid = %s.rid AND +x%d.param", a, a, P, a);
                token_run_sql(w, a, &g->preds[i], run);
                i += run - 1;
            } else {
                rc = pred_set(w, cx, p, P);
            }
            bv__qb_sql(w, ")");
        }
        first = false;
    } else if (npos) {
        size_t k = 0;
        for (size_t i = 0; i < g->n && !rc; i++) {
            const bv_pred *p = &g->preds[i];
            if (is_direct(p) || is_negative(p)) continue;
            if (k % BV__MAX_UNION == 0) /* a new IN every BV__MAX_UNION sets (compound limit) */
                bv__qb_sqlf(w, "%s%s.rid IN (", k ? ") OR " : "", R);
            else
                bv__qb_sql(w, " UNION ALL ");
            k++;
            size_t run = 1;
            while (simple_token(p) && i + run < g->n && simple_token(&g->preds[i + run]) &&
                   same_token_key(p, &g->preds[i + run]))
                run++;
            if (run > 1) { /* code=a,b,c... on one system: one index probe list */
                int a = cx->alias++;
                bv__qb_sqlf(w, "SELECT x%d.rid FROM ix_token x%d WHERE x%d.param", a, a, a);
                token_run_sql(w, a, &g->preds[i], run);
                i += run - 1;
                continue;
            }
            rc = pred_set(w, cx, p, NULL);
        }
        bv__qb_sql(w, ")");
        first = false;
    }
    size_t nid = 0;
    for (size_t i = 0; i < g->n; i++) nid += simple_id(&g->preds[i]);
    if (nid > 1) { /* _id=a,b,c...: one IN list on the (type, id) key */
        if (!first) bv__qb_sql(w, " OR ");
        first = false;
        bv__qb_sqlf(w, "%s.id IN (", R);
        size_t k = 0;
        for (size_t i = 0; i < g->n; i++) {
            if (!simple_id(&g->preds[i])) continue;
            if (k++) bv__qb_sql(w, ", ");
            bv__qb_text(w, g->preds[i].code);
        }
        bv__qb_sql(w, ")");
    }
    for (size_t i = 0; i < g->n && !rc; i++) {
        const bv_pred *p = &g->preds[i];
        bool direct = is_direct(p);
        if (!direct && !is_negative(p)) continue;
        if (nid > 1 && simple_id(p)) continue;
        if (!first) bv__qb_sql(w, " OR ");
        first = false;
        if (direct) {
            rc = pred_direct(w, p, R);
        } else if (corr) {
            bv__qb_sql(w, "NOT EXISTS (");
            rc = pred_set(w, cx, p, P);
            bv__qb_sql(w, ")");
        } else {
            bv__qb_sqlf(w, "%s.rid NOT IN (", R);
            rc = pred_set(w, cx, p, NULL);
            bv__qb_sql(w, ")");
        }
    }
    bv__qb_sql(w, ")");
    return rc;
}

/* How many rows a predicate's set may hold, as a rough rank (lower = more selective). There are
 * no statistics; this orders the usual clinical queries: a reference to one resource or an
 * identifier first, then names, codes, dates, and open conditions last. */
static unsigned long search_score(const bv_search *q, int depth);

static unsigned drive_score(const bv_pred *p)
{
    /* a chain or _has is as selective as its nested search, times a fan-out */
    if (p->has) return (unsigned)(10 + 2 * search_score(p->has, 1));
    if (p->chain) return (unsigned)(5 + search_score(p->chain, 1));
    if (p->n_components) return 60;
    if (p->op == BV_OP_MISSING) return 1000;
    switch (p->kind) {
    case BV_IX_REFERENCE: return p->ref_id ? 2 : 20;
    case BV_IX_TOKEN:
        if (p->op == BV_OP_TOKEN_TEXT) return 200;
        if (!p->code) return 500;                                   /* system| */
        return strstr(p->param, "identifier") ? 3 : 50;
    case BV_IX_STRING: return p->op == BV_OP_STR_EXACT ? 10 : p->op == BV_OP_STR_CONTAINS ? 250 : 15;
    case BV_IX_URI: return p->op == BV_OP_URI_EQ ? 10 : 100;
    case BV_IX_DATE: return p->op == BV_OP_EQ ? 80 : p->op == BV_OP_NE ? 900 : 150;
    case BV_IX_NUMBER:
    case BV_IX_QUANTITY: return p->op == BV_OP_EQ ? 80 : p->op == BV_OP_NE ? 900 : 150;
    default: return 800;
    }
}

/* The score of a nested search: its best driving group's (capped), or "broad" when it has none. */
static unsigned long search_score(const bv_search *q, int depth)
{
    unsigned long best = 1000;
    if (!q || depth > BV__MAX_NEST) return best;
    for (size_t i = 0; i < q->n_ands; i++) {
        const bv_or *g = &q->ands[i];
        bool all = g->n > 0 && g->preds;
        unsigned long score = 0;
        for (size_t j = 0; all && j < g->n && score < 100000; j++) {
            const bv_pred *p = &g->preds[j];
            all = !is_direct(p) && !is_negative(p);
            score += p->chain ? 5 + search_score(p->chain, depth + 1)
                   : p->has   ? 10 + 2 * search_score(p->has, depth + 1)
                              : drive_score(p);
        }
        if (all && score < best) best = score;
    }
    return best;
}

/* Whether a group can drive: every pred a positive index set. */
static bool driver_ok(const bv_or *g)
{
    if (!g->n || !g->preds) return false;
    for (size_t j = 0; j < g->n; j++)
        if (is_direct(&g->preds[j]) || is_negative(&g->preds[j])) return false;
    return true;
}

/* The AND group that drives the scan: a plain "rid IN (positive sets)" with the lowest summed
 * score (an OR of n values holds n sets), or -1 when none can. */
static long driver_group(const bv_search *q)
{
    long best = -1;
    unsigned long best_score = 0;
    for (size_t i = 0; i < q->n_ands; i++) {
        const bv_or *g = &q->ands[i];
        bool all = g->n > 0 && g->preds;
        unsigned long score = 0;
        for (size_t j = 0; all && j < g->n; j++) {
            all = !is_direct(&g->preds[j]) && !is_negative(&g->preds[j]);
            score += drive_score(&g->preds[j]);
        }
        if (all && (best < 0 || score < best_score)) {
            best = (long)i;
            best_score = score;
        }
    }
    return best;
}

static int emit_where_plan(bv__qb *w, sctx *cx, const bv_search *q, const char *R, const splan *pl)
{
    if (!q) return BV_EINVAL;
    if (q->n_ands && !q->ands) return BV_EINVAL;
    /* Without statistics SQLite would walk every resource of the type through the type index
     * and probe the rid sets; the unary + takes the type term out of index selection, so the
     * rid set drives through the primary key instead. A scan, and a count (which reads r
     * through resources_live), keep the type term usable. */
    long driver = pl ? pl->driver : driver_group(q);
    bool stream = pl && pl->stream >= 0, probe_all = pl && (pl->scan || stream);
    const char *plus = (driver >= 0 || probe_all) && !(pl && pl->count) ? "+" : "";
    bool lead = pl && pl->lead >= 0;
    const char *T = lead ? "t" : R; /* with a lead group, R is its index row and t the type's entry */
    bv__qb_sqlf(w, "%s.deleted = 0", T);
    if (q->type) {
        bv__qb_sqlf(w, " AND %s%s.type = ", plus, T);
        bv__qb_text(w, q->type);
    } else if (q->types) {
        if (!q->n_types) {
            bv__qb_sql(w, " AND 0");
        } else {
            bv__qb_sqlf(w, " AND %s%s.type IN (", plus, T);
            for (size_t i = 0; i < q->n_types; i++) {
                if (i) bv__qb_sql(w, ", ");
                bv__qb_text(w, q->types[i]);
            }
            bv__qb_sql(w, ")");
        }
    }
    /* The probes in order of their estimates, the smallest first (it rejects the most candidates
     * before the others are tried: a month's dates before a common code); groups that were not
     * counted keep their order after them. */
    size_t *order = NULL;
    if (pl && pl->est && q->n_ands > 1) {
        order = bv_arena_alloc(cx->a, q->n_ands * sizeof *order);
        for (size_t i = 0; i < q->n_ands; i++) {
            size_t j = i;
            int64_t ki = pl->est[i] < 0 ? INT64_MAX : pl->est[i];
            while (j > 0 && (pl->est[order[j - 1]] < 0 ? INT64_MAX : pl->est[order[j - 1]]) > ki) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
        }
    }
    for (size_t k = 0; k < q->n_ands; k++) {
        size_t i = order ? order[k] : k;
        if (stream && (long)i == pl->stream) continue; /* the join's own condition */
        if (lead && (long)i == pl->lead) continue;     /* likewise */
        bv__qb_sql(w, " AND ");
        /* a stream or scan probes on d.rid: tested before the resource row is read */
        int rc = emit_group(w, cx, &q->ands[i], R, probe_all || (driver >= 0 && (long)i != driver), probe_all ? "d" : R);
        if (rc) return rc;
    }
    return w->err;
}

static int emit_where(bv__qb *w, sctx *cx, const bv_search *q, const char *R)
{
    return emit_where_plan(w, cx, q, R, NULL);
}

/* ---------------------------------------------------------------- choosing the plan
 *
 * The fixed ranking (driver_group) knows the shape of a condition, not how many resources it
 * matches: "code=<heart rate>" is 111,000 rows at a million resources, a one-month date range
 * 3,000. So the top-level search counts the index entries of each candidate group up to
 * BV__EST_BOUND ("SELECT count(*) FROM (<the group's rid sets> LIMIT bound)": at most that many
 * index entries read, about a millisecond) and
 *  - a group below the bound drives as its IN set (the smallest one);
 *  - when every estimated group reaches it, the search is broad: without _sort the page is read
 *    in rid order and stops at its LIMIT, either joined from a group whose index yields rids in
 *    order (one token code with its system, one typed reference: "stream"), or walking the type
 *    (resources_live) with every group as a correlated probe ("scan"); with _sort every match is
 *    needed anyway and the ranked driver's set is built;
 *  - a reference to one resource or an identifier (score < 10) drives without estimating: the
 *    patient-scoped queries pay nothing.
 * _has groups are not estimated (their set is the nested search, built once in either role). */

/* BV__EST_BOUND, or BEVAN_SEARCH_BROAD from the environment (tests set a tiny bound so that
 * the oracle runs every search through the broad plans). */
static int64_t est_bound(void)
{
    const char *e = getenv("BEVAN_SEARCH_BROAD");
    int64_t v = 0;
    if (e && *e && bv_str_to_i64(e, strlen(e), &v) == BV_OK && v > 0 && v <= 10000000) return v;
    return BV__EST_BOUND;
}

static unsigned long group_score(const bv_or *g)
{
    unsigned long score = 0;
    for (size_t j = 0; j < g->n; j++) score += drive_score(&g->preds[j]);
    return score;
}

/* The group's index sets, counted up to bound; -1 when it cannot be (a _has, a condition on
 * the resource row, a negation, too many sets). */
static int64_t group_estimate(bv__conn *c, bv_arena *a, const bv_search *q, const bv_or *g, int64_t bound)
{
    if (!g->n || !g->preds) return -1;
    int64_t kept = 0;
    /* one system|code: its kept count (exact, for this type, however large) */
    if (g->n == 1 && token_counted(&g->preds[0]) && count_token_value(c, q, &g->preds[0], &kept) == BV_OK)
        return kept;
    if (g->n == 1 && g->preds[0].has && !is_negative(&g->preds[0])) {
        /* a _has: its nested search's driving group, four times (each match costs a type
         * check, its reference rows and the target's lookup) */
        const bv_search *h = g->preds[0].has;
        long d = driver_group(h);
        if (d < 0) return -1;
        int64_t n = group_estimate(c, a, h, &h->ands[d], bound / 4 + 1);
        return n < 0 ? -1 : 4 * n;
    }
    for (size_t i = 0; i < g->n; i++)
        if (is_direct(&g->preds[i]) || is_negative(&g->preds[i]) || g->preds[i].has) return -1;
    sctx cx = {.a = a, .alias = 0, .nest = 0};
    bv__qb w;
    bv__qb_init(&w);
    bv__qb_sql(&w, "SELECT count(*) FROM (");
    size_t k = 0;
    int rc = BV_OK;
    for (size_t i = 0; i < g->n && !rc; i++) {
        const bv_pred *p = &g->preds[i];
        if (k == BV__MAX_UNION) {
            rc = BV_ETOOBIG;
            break;
        }
        if (k++) bv__qb_sql(&w, " UNION ALL ");
        size_t run = 1;
        while (simple_token(p) && i + run < g->n && simple_token(&g->preds[i + run]) &&
               same_token_key(p, &g->preds[i + run]))
            run++;
        if (run > 1) {
            int al = cx.alias++;
            bv__qb_sqlf(&w, "SELECT x%d.rid FROM ix_token x%d WHERE x%d.param", al, al, al);
            token_run_sql(&w, al, p, run);
            i += run - 1;
            continue;
        }
        rc = pred_set(&w, &cx, p, NULL);
    }
    bv__qb_sql(&w, " LIMIT ");
    bv__qb_int(&w, bound);
    bv__qb_sql(&w, ")");
    int64_t n = -1;
    if (!rc && !w.err && bv__query_count(c, &w, &n) != BV_OK) n = -1;
    bv__qb_free(&w);
    return rc ? -1 : n;
}

/* A group of one plain condition whose query index holds its rows in rid order: all index
 * columns before rid are fixed (a token code with its system, a typed reference). */
static bool stream_group(const bv_or *g)
{
    if (g->n != 1 || !g->preds) return false;
    const bv_pred *p = &g->preds[0];
    if (p->negate || p->res_type || p->has || p->chain || p->n_components || is_direct(p) || !p->param ||
        strchr(p->param, '|')) /* a union's rows are two runs, each in rid order */
        return false;
    if (p->kind == BV_IX_TOKEN) return p->op == BV_OP_TOKEN && p->code && p->system_given;
    if (p->kind == BV_IX_REFERENCE) return p->op == BV_OP_REF && p->ref_type && p->ref_id && !p->text;
    return false;
}

static void plan_search(bv__conn *c, bv_arena *a, const bv_search *q, bool paged, splan *pl)
{
    memset(pl, 0, sizeof *pl);
    pl->driver = driver_group(q);
    pl->stream = -1;
    pl->lead = -1;
    int64_t bound = est_bound(), small = bound < BV__EST_SMALL ? bound : BV__EST_SMALL;
    if (pl->driver < 0) {
        /* no positive group: the type is walked; broad when it holds many resources */
        if (q->type && q->n_ands == 0) {
            bv__qb w;
            bv__qb_init(&w);
            bv__qb_sql(&w, "SELECT count(*) FROM (SELECT 1 FROM resources r WHERE r.deleted = 0 AND r.type = ");
            bv__qb_text(&w, q->type);
            bv__qb_sql(&w, " LIMIT ");
            bv__qb_int(&w, bound);
            bv__qb_sql(&w, ")");
            int64_t n = 0;
            if (bv__query_count(c, &w, &n) == BV_OK && n >= bound) pl->broad = true;
            bv__qb_free(&w);
        }
        return;
    }
    /* a reference to one resource, identifiers (an OR of 1,000 NHS numbers too): no counting */
    const bv_or *g0 = &q->ands[pl->driver];
    bool precise = true;
    for (size_t j = 0; j < g0->n && precise; j++) precise = drive_score(&g0->preds[j]) < 10;
    if (precise) return;
    long best = -1;
    int64_t best_n = 0;
    int64_t *est = bv_arena_alloc(a, q->n_ands * sizeof *est);
    for (size_t i = 0; i < q->n_ands; i++) est[i] = -1;
    pl->est = est;
    /* A ranked driver with a chain or _has costs most to count (its nested search is run). When it
     * would drive even if broad (two or more other positive groups, a _sort, a count) and every
     * other group is broad, its count decides nothing: the others are counted first and it is
     * not counted at all (the search is then taken as broad). */
    bool nested = false;
    for (size_t j = 0; j < g0->n; j++) nested = nested || g0->preds[j].chain || g0->preds[j].has;
    size_t npos_all = 0;
    for (size_t i = 0; i < q->n_ands; i++) npos_all += driver_ok(&q->ands[i]);
    bool last = nested && (npos_all >= 3 || q->n_sort || !paged || q->count == 0);
    for (size_t k = 0; k < q->n_ands; k++) {
        /* the ranked driver first: when it is small the others need not be counted */
        size_t i = last ? (k < q->n_ands - 1 ? (k < (size_t)pl->driver ? k : k + 1) : (size_t)pl->driver)
                        : k == 0 ? (size_t)pl->driver : k <= (size_t)pl->driver ? k - 1 : k;
        if (last && (long)i == pl->driver && best >= 0 && best_n >= bound) break;
        int64_t n = group_estimate(c, a, q, &q->ands[i], bound);
        est[i] = n;
        if (n < 0) continue;
        if (best < 0 || n < best_n) {
            best = (long)i;
            best_n = n;
        }
        if (n < small) break;
    }
    if (best < 0) return; /* nothing could be counted: the fixed ranking */
    if (last && est[pl->driver] < 0 && best_n >= bound) { /* the ranked driver, not counted */
        pl->broad = true;
        return;
    }
    if (best_n < bound) {
        pl->driver = best;
        return;
    }
    pl->broad = true;
    if (q->n_sort || !paged || q->count == 0) return;
    long s = -1;
    size_t npos = 0;
    for (size_t i = 0; i < q->n_ands; i++) {
        npos += driver_ok(&q->ands[i]);
        if (stream_group(&q->ands[i]) && (s < 0 || group_score(&q->ands[i]) < group_score(&q->ands[s]))) s = (long)i;
    }
    if (s < 0 && !q->type) return; /* a scan walks one type in rid order */
    /* Streaming pays when the other conditions keep a fair share of its rows: with two or more
     * other broad conditions their product is usually sparse (a practice's patients x a code x
     * a month), and the ranked driver's set is cheaper than a stream that does not fill. */
    if (npos - (s >= 0) > 1) return;
    pl->driver = -1;
    if (s >= 0) pl->stream = s;
    else pl->scan = true;
}

/* A stream or scan that did not fill its page within its budget: the matches are sparse among
 * its rows. The other group drives as its IN set (plan_search streams only with at most one
 * other positive group), else the ranked one. */
static void plan_fallback(const bv_search *q, splan *pl)
{
    long other = -1;
    size_t n_other = 0;
    for (size_t i = 0; i < q->n_ands; i++)
        if ((long)i != pl->stream && driver_ok(&q->ands[i])) other = (long)i, n_other++;
    pl->driver = n_other == 1 ? other : driver_group(q);
    pl->stream = -1;
    pl->scan = false;
    pl->lead = -1;
}

/* Rows a stream or scan may read for a page that needs `need` rows before it falls back. */
static int64_t stream_budget(int64_t need)
{
    int64_t bound = est_bound();
    if (bound < BV__EST_BOUND) return need + bound; /* the tests' tiny bound: fall back often */
    int64_t b = 50 * need;
    return b < 3000 ? 3000 : b > 100000 ? 100000 : b;
}

/* The rid `budget` rows on along the stream (or scan) in the page's direction, after the cursor
 * (has_cur); *found false when fewer rows remain (the stream then reads them all). */
static int stream_boundary(bv__conn *c, bv_arena *a, const bv_search *q, const splan *pl, bool backward,
                           bool has_cur, int64_t cur_rid, int64_t budget, int64_t *out, bool *found)
{
    sctx cx = {.a = a, .alias = 0, .nest = 0};
    bv__qb w;
    bv__qb_init(&w);
    int rc = BV_OK;
    if (pl->stream >= 0) {
        const bv_pred *sp = &q->ands[pl->stream].preds[0];
        bv__qb_sqlf(&w, "SELECT d.rid FROM %s d WHERE ", ix_table[sp->kind]);
        rc = pred_cond(&w, &cx, sp, "d");
    } else {
        bv__qb_sql(&w, "SELECT d.rid FROM resources d INDEXED BY resources_live WHERE d.deleted = 0 AND d.type = ");
        bv__qb_text(&w, q->type);
    }
    if (has_cur) {
        bv__qb_sql(&w, backward ? " AND d.rid < " : " AND d.rid > ");
        bv__qb_int(&w, cur_rid);
    }
    bv__qb_sql(&w, backward ? " ORDER BY d.rid DESC LIMIT 1 OFFSET " : " ORDER BY d.rid LIMIT 1 OFFSET ");
    bv__qb_int(&w, budget);
    *found = false;
    if (!rc && !w.err) {
        bool owned;
        sqlite3_stmt *st = bv__dyn_stmt(c, bv_buf_cstr(&w.sql), &owned);
        if (!st) rc = BV_EINTERNAL;
        else {
            rc = bv__qb_bind(&w, st);
            int src = rc ? SQLITE_DONE : sqlite3_step(st);
            if (src == SQLITE_ROW) {
                *out = sqlite3_column_int64(st, 0);
                *found = true;
            } else if (src != SQLITE_DONE) {
                rc = bv__fail(c, src, "search boundary");
            }
            if (owned) sqlite3_finalize(st);
            else bv__done(st);
        }
    }
    if (!rc) rc = w.err;
    bv__qb_free(&w);
    return rc;
}

/* ---------------------------------------------------------------- sort keys and keyset paging
 *
 * Every sort key is a column of the page query (k0, k1, ...; _id and _lastUpdated are the
 * resource's own columns, any other parameter a correlated subquery over its index rows: min of
 * the values ascending, max descending for dates), followed by the row id, the final tie-break.
 * A cursor is the position of a row in that order: each key's value and the rid, as text:
 *   "a" or "b" (after / before) then, per key, "~n" (NULL), "~i<int>", "~r<real>" or "~t<hex>",
 *   then "~<rid>".
 * The next page is "the rows after the cursor" in the same order; the previous page runs the order
 * backwards from the first row's cursor and reverses the rows. Resources without a value sort
 * last (NULLS LAST) in either direction. */

typedef struct {
    char expr[48];   /* SQL expression of the key in the page query */
    bool desc;
} sortkey;

static int sort_keys(bv__qb *sel, const bv_search *q, sortkey *keys)
{
    for (size_t i = 0; i < q->n_sort; i++) {
        const bv_sort *k = &q->sort[i];
        keys[i].desc = k->desc;
        if (!k->param) return BV_EINVAL;
        if (strcmp(k->param, "_id") == 0) {
            snprintf(keys[i].expr, sizeof keys[i].expr, "r.id");
            bv__qb_sql(sel, ", r.id");
        } else if (strcmp(k->param, "_lastUpdated") == 0) {
            snprintf(keys[i].expr, sizeof keys[i].expr, "r.last_updated");
            bv__qb_sql(sel, ", r.last_updated");
        } else {
            const char *agg;
            switch (k->kind) {
            case BV_IX_STRING: agg = k->desc ? "max(sx.norm)" : "min(sx.norm)"; break;
            case BV_IX_TOKEN: agg = k->desc ? "max(sx.code)" : "min(sx.code)"; break;
            case BV_IX_REFERENCE: /* a relative reference's text is not stored (schema 5) */
                agg = k->desc ? "max(coalesce(sx.text, sx.ref_type || '/' || sx.ref_id))"
                              : "min(coalesce(sx.text, sx.ref_type || '/' || sx.ref_id))";
                break;
            case BV_IX_DATE: agg = k->desc ? "max(sx.hi)" : "min(sx.lo)"; break;
            case BV_IX_NUMBER:
            case BV_IX_QUANTITY: agg = k->desc ? "max(sx.num)" : "min(sx.num)"; break;
            case BV_IX_URI: agg = k->desc ? "max(sx.text)" : "min(sx.text)"; break;
            default: return BV_EINVAL;
            }
            /* "+" keeps SQLite on the (rid, ord) primary key: through the param index this
             * correlated subquery would scan every row of the parameter for each resource. */
            bv__qb_sqlf(sel, ", (SELECT %s FROM %s sx WHERE sx.rid = r.rid AND +sx.param", agg,
                        ix_table[k->kind]);
            bv__qb_param(sel, k->param);
            bv__qb_sqlf(sel, ") AS s%zu", i);
            snprintf(keys[i].expr, sizeof keys[i].expr, "s%zu", i);
        }
    }
    return sel->err;
}

/* ORDER BY for the keys; backward reverses every direction (NULLs then come first). */
static void order_by(bv_buf *order, const sortkey *keys, size_t nk, bool backward, const char *ridx)
{
    for (size_t i = 0; i < nk; i++) {
        bool desc = keys[i].desc != backward;
        bv_buf_printf(order, "%s %s NULLS %s, ", keys[i].expr, desc ? "DESC" : "ASC", backward ? "FIRST" : "LAST");
    }
    /* Ties by row order, in the direction of the last key: an index on (type, last_updated)
     * then serves _sort=-_lastUpdated with no sort step. */
    bool rdesc = (nk && keys[nk - 1].desc) != backward;
    bv_buf_printf(order, "%s %s", ridx, rdesc ? "DESC" : "ASC");
}

typedef struct {
    int t;           /* SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT */
    int64_t i;
    double d;
    const char *s;
} curval;

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Parses a cursor for nk keys: values[0..nk-1] and the rid in values[nk]. */
static int cursor_parse(bv_arena *a, const char *cur, size_t nk, bool *backward, curval *vals)
{
    if (!cur || (cur[0] != 'a' && cur[0] != 'b')) return BV_EINVAL;
    *backward = cur[0] == 'b';
    const char *p = cur + 1;
    for (size_t i = 0; i <= nk; i++) {
        if (*p != '~') return BV_EINVAL;
        p++;
        size_t len = strcspn(p, "~");
        curval *v = &vals[i];
        memset(v, 0, sizeof *v);
        if (i == nk) { /* the rid */
            if (!len || bv_str_to_i64(p, len, &v->i) != BV_OK) return BV_EINVAL;
            v->t = SQLITE_INTEGER;
        } else if (len == 1 && *p == 'n') {
            v->t = SQLITE_NULL;
        } else if (len >= 2 && *p == 'i') {
            if (bv_str_to_i64(p + 1, len - 1, &v->i) != BV_OK) return BV_EINVAL;
            v->t = SQLITE_INTEGER;
        } else if (len >= 2 && *p == 'r') {
            char *tmp = bv_arena_strndup(a, p + 1, len - 1), *end = NULL;
            v->d = strtod(tmp, &end);
            if (!end || *end || !isfinite(v->d)) return BV_EINVAL;
            v->t = SQLITE_FLOAT;
        } else if (len >= 1 && *p == 't' && (len - 1) % 2 == 0) {
            size_t nb = (len - 1) / 2;
            char *s = bv_arena_alloc(a, nb + 1);
            for (size_t k = 0; k < nb; k++) {
                int h = hexval(p[1 + 2 * k]), l = hexval(p[2 + 2 * k]);
                if (h < 0 || l < 0) return BV_EINVAL;
                s[k] = (char)(h * 16 + l);
                if (!s[k]) return BV_EINVAL;
            }
            s[nb] = '\0';
            v->s = s;
            v->t = SQLITE_TEXT;
        } else {
            return BV_EINVAL;
        }
        p += len;
    }
    return *p ? BV_EINVAL : BV_OK;
}

static void bind_curval(bv__qb *w, const curval *v)
{
    if (v->t == SQLITE_INTEGER) bv__qb_int(w, v->i);
    else if (v->t == SQLITE_FLOAT) bv__qb_real(w, v->d);
    else bv__qb_text(w, v->s);
}

/* "the row comes after (or before) the cursor position" in the (forward) order of the keys. */
static void keyset_cond(bv__qb *w, const sortkey *keys, size_t nk, bool backward, const curval *vals,
                        const char *ridx)
{
    bv__qb_sql(w, " AND (0");
    for (size_t i = 0; i <= nk; i++) {
        bv__qb_sql(w, " OR (1");
        for (size_t j = 0; j < i; j++) { /* equal on the earlier keys */
            if (vals[j].t == SQLITE_NULL) {
                bv__qb_sqlf(w, " AND %s IS NULL", keys[j].expr);
            } else {
                bv__qb_sqlf(w, " AND %s = ", keys[j].expr);
                bind_curval(w, &vals[j]);
            }
        }
        if (i == nk) { /* the rid, in the direction of the last key */
            bool desc = nk && keys[nk - 1].desc;
            bv__qb_sqlf(w, " AND %s %s ", ridx, (desc != backward) ? "<" : ">");
            bind_curval(w, &vals[nk]);
        } else if (vals[i].t == SQLITE_NULL) {
            /* NULLs sort last: nothing non-NULL comes after a NULL; every non-NULL comes before */
            if (backward) bv__qb_sqlf(w, " AND %s IS NOT NULL", keys[i].expr);
            else bv__qb_sql(w, " AND 0");
        } else if (!backward) {
            bv__qb_sqlf(w, " AND (%s %s ", keys[i].expr, keys[i].desc ? "<" : ">");
            bind_curval(w, &vals[i]);
            bv__qb_sqlf(w, " OR %s IS NULL)", keys[i].expr);
        } else {
            bv__qb_sqlf(w, " AND %s %s ", keys[i].expr, keys[i].desc ? ">" : "<");
            bind_curval(w, &vals[i]);
        }
        bv__qb_sql(w, ")");
    }
    bv__qb_sql(w, ")");
}

static char *cursor_make(bv_arena *a, sqlite3_stmt *st, int col0, size_t nk, char dir)
{
    bv_buf b;
    bv_buf_init(&b, 0); /* no cap: a text key (an _id, a long name) is written whole */
    bv_buf_putc(&b, dir);
    for (size_t i = 0; i <= nk; i++) {
        int col = col0 + (int)i;
        bv_buf_putc(&b, '~');
        if (i == nk) {
            bv_buf_printf(&b, "%lld", (long long)sqlite3_column_int64(st, col));
            continue;
        }
        switch (sqlite3_column_type(st, col)) {
        case SQLITE_NULL: bv_buf_putc(&b, 'n'); break;
        case SQLITE_INTEGER: bv_buf_printf(&b, "i%lld", (long long)sqlite3_column_int64(st, col)); break;
        case SQLITE_FLOAT: bv_buf_printf(&b, "r%.17g", sqlite3_column_double(st, col)); break;
        default: {
            static const char hex[] = "0123456789abcdef";
            const unsigned char *t = sqlite3_column_text(st, col);
            int len = sqlite3_column_bytes(st, col);
            bv_buf_putc(&b, 't');
            for (int k = 0; t && k < len; k++) {
                bv_buf_putc(&b, hex[t[k] >> 4]);
                bv_buf_putc(&b, hex[t[k] & 15]);
            }
        }
        }
    }
    char *s = bv_arena_strndup(a, bv_buf_cstr(&b), b.len);
    bv_buf_free(&b);
    return s;
}

/* Runs the page query: records from column 0, the keys and rid from column 8. */
static int run_page(bv__conn *c, bv_arena *a, bv__qb *q, size_t nk, size_t limit, bv_search_page *pg,
                    char **first_pos, char **last_pos, bool backward)
{
    if (q->err) return q->err;
    bool owned;
    sqlite3_stmt *st = bv__dyn_stmt(c, bv_buf_cstr(&q->sql), &owned);
    if (!st) {
        int max_vars = sqlite3_limit(c->db, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
        return q->n > (size_t)max_vars || strstr(sqlite3_errmsg(c->db), "too ") ? BV_ETOOBIG : BV_EINTERNAL;
    }
    int rc = bv__qb_bind(q, st);
    if (rc) goto done;
    size_t cap = limit < 64 ? limit : 64, got = 0;
    bv_record *recs = cap ? bv_arena_alloc(a, cap * sizeof *recs) : NULL;
    char *firstc = NULL, *lastc = NULL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (got == limit) { /* the look-ahead row: there is more */
            pg->more = true;
            continue;
        }
        if (got == cap) {
            size_t ncap = cap * 2;
            bv_record *nr = bv_arena_alloc(a, ncap * sizeof *nr);
            memcpy(nr, recs, got * sizeof *nr);
            recs = nr;
            cap = ncap;
        }
        bv__record_from(a, st, 0, &recs[got]);
        if (got == 0) firstc = cursor_make(a, st, 8, nk, backward ? 'a' : 'b');
        lastc = NULL;
        got++;
        /* cheap enough: only the last row's cursor is kept */
        lastc = cursor_make(a, st, 8, nk, backward ? 'b' : 'a');
    }
    rc = rc == SQLITE_DONE ? BV_OK : bv__fail(c, rc, "search");
    if (!rc) {
        pg->recs = recs;
        pg->n = got;
        *first_pos = firstc;
        *last_pos = lastc;
    }
done:
    if (owned) sqlite3_finalize(st);
    else bv__done(st);
    return rc;
}

/* Best-effort snapshot: leave out resources created after max_seq (their version 1 is newer).
 * Resources updated since still match on their current version. */
static void snapshot_cond(bv__qb *w, const bv_search *q)
{
    if (q->max_seq <= 0) return;
    bv__qb_sql(w, " AND (r.seq <= ");
    bv__qb_int(w, q->max_seq);
    bv__qb_sql(w, " OR EXISTS (SELECT 1 FROM history hs WHERE hs.type = r.type AND hs.id = r.id"
                  " AND hs.version = 1 AND hs.seq <= ");
    bv__qb_int(w, q->max_seq);
    bv__qb_sql(w, "))");
}

/* Whether a count may read r through resources_live (type, rid) instead of the table: every
 * condition is then on r.rid (the index sets and probes), none on the row's own columns. */
static bool count_by_type_index(const bv_search *q)
{
    if (q->max_seq > 0 || !(q->type || (q->types && q->n_types))) return false;
    for (size_t i = 0; i < q->n_ands; i++)
        for (size_t j = 0; j < q->ands[i].n; j++)
            if (is_direct(&q->ands[i].preds[j])) return false;
    return true;
}

/* A condition "param=system|code" (no modifier, a system and a code, not a composite's
 * component): ix_token_count (schema 3) keeps, per type, the live resources with such a row. */
static bool token_counted(const bv_pred *p)
{
    return simple_token(p) && p->system_given && p->system && !strchr(p->param, '#') && !strchr(p->param, '|');
}

/* A search that is exactly one such condition: its count is the kept one. */
static bool count_by_token_table(const bv_search *q)
{
    if (q->max_seq > 0 || q->n_ands != 1 || !q->ands || q->ands[0].n != 1 || !q->ands[0].preds) return false;
    return token_counted(&q->ands[0].preds[0]);
}

/* The kept count of p on q's type(s). */
static int count_token_value(bv__conn *c, const bv_search *q, const bv_pred *p, int64_t *out)
{
    bv__qb w;
    bv__qb_init(&w);
    bv__qb_sql(&w, "SELECT coalesce(sum(n), 0) FROM ix_token_count WHERE param = ");
    bv__qb_text(&w, p->param);
    bv__qb_sql(&w, " AND code = ");
    bv__qb_text(&w, p->code);
    bv__qb_sql(&w, " AND system = ");
    bv__qb_text(&w, p->system);
    if (q->type) {
        bv__qb_sql(&w, " AND type = ");
        bv__qb_text(&w, q->type);
    } else if (q->types) {
        bv__qb_sql(&w, " AND type IN (");
        for (size_t i = 0; i < q->n_types; i++) {
            if (i) bv__qb_sql(&w, ", ");
            bv__qb_text(&w, q->types[i]);
        }
        bv__qb_sql(&w, q->n_types ? ")" : "NULL)");
    }
    int rc = bv__query_count(c, &w, out);
    bv__qb_free(&w);
    return rc;
}

/* The matches, counted: up to cap + 1 (cap > 0) or all. The count has its own plan: a streamed
 * or scanned page becomes the IN set of its group (a page stops early, a count does not). */
static int count_matches(bv__conn *c, bv_arena *a, const bv_search *q, const splan *pl, int64_t cap, int64_t *out)
{
    if (count_by_token_table(q)) return count_token_value(c, q, &q->ands[0].preds[0], out);
    splan cp = *pl;
    cp.lead = -1;
    cp.count = count_by_type_index(q);
    if (cp.stream >= 0) cp.driver = cp.stream;
    else if (cp.scan) cp.driver = driver_group(q);
    cp.stream = -1;
    cp.scan = false;
    sctx cx = {.a = a, .alias = 0, .nest = 0};
    bv__qb w;
    bv__qb_init(&w);
    bv__qb_sql(&w, cap > 0 ? "SELECT count(*) FROM (SELECT 1 FROM resources r" : "SELECT count(*) FROM resources r");
    if (cp.count) bv__qb_sql(&w, " INDEXED BY resources_live");
    bv__qb_sql(&w, " WHERE ");
    int rc = emit_where_plan(&w, &cx, q, "r", &cp);
    snapshot_cond(&w, q);
    if (!rc && cap > 0) {
        bv__qb_sql(&w, " LIMIT ");
        bv__qb_int(&w, cap + 1);
        bv__qb_sql(&w, ")");
    }
    if (!rc) rc = bv__query_count(c, &w, out);
    bv__qb_free(&w);
    return rc;
}

/* A broad driver's set (thousands of rids) is walked with the other groups as probes. When the
 * probe estimated smallest is one plain condition, its own index rows are the walk: for each of
 * the driver's rids in order, the resource's rows of that parameter by the (rid, ord) key, an
 * integer seek; resources_live (type, rid) is then looked up only for the resources they pass
 * (a month's dates keep 3% of a practice's observations), not for every rid of the set. */
static long lead_group(const bv_search *q, const splan *pl)
{
    if (!pl->broad || !pl->est || pl->driver < 0) return -1;
    long best = -1;
    for (size_t i = 0; i < q->n_ands; i++) {
        if ((long)i == pl->driver || pl->est[i] < 0) continue;
        if (best < 0 || pl->est[i] < pl->est[best]) best = (long)i;
    }
    if (best < 0) return -1;
    const bv_or *g = &q->ands[best];
    if (g->n != 1 || !g->preds) return -1;
    const bv_pred *p = &g->preds[0];
    if (p->negate || p->op == BV_OP_MISSING || p->has || p->chain || p->n_components || p->res_type || is_direct(p) ||
        !p->param || (unsigned)p->kind >= BV__N_KINDS)
        return -1;
    return best;
}

static int search_run(bv__conn *c, bool in_txn, bv_arena *a, const bv_search *q, bool paged, bv_search_page *pg)
{
    memset(pg, 0, sizeof *pg);
    pg->total = -1;
    if (!q || !a || (q->n_sort && !q->sort) || q->n_sort > 16) return BV_EINVAL;
    if (q->n_ands && !q->ands) return BV_EINVAL;
    bv__qb where, sel, rows;
    bv_buf order;
    bv__qb_init(&where);
    bv__qb_init(&sel);
    bv__qb_init(&rows);
    bv_buf_init(&order, 0);
    bool txn = false, backward = false;
    sortkey keys[16];
    curval vals[17];
    splan pl;
    int rc = BV_OK;
    if ((rc = sort_keys(&sel, q, keys))) goto out;
    if (paged && q->cursor && (rc = cursor_parse(a, q->cursor, q->n_sort, &backward, vals))) goto out;
    plan_search(c, a, q, paged, &pl);
    /* the default total (total_narrow_only) is left out of a broad search: counting up to the
     * cap would cost far more than the page */
    bool want_total = q->want_total && !(pl.broad && q->total_cap > 0 && q->total_narrow_only);
    if (want_total && q->count > 0 && !in_txn) {
        /* One snapshot for the page and the total. */
        if ((rc = bv__step_simple(c, ST_BEGIN))) goto out;
        txn = true;
    }
    for (int attempt = 0;; attempt++) {
        sctx cx = {.a = a, .alias = 0, .nest = 0};
        bv__qb_free(&where);
        bv__qb_free(&rows);
        bv__qb_init(&where);
        bv__qb_init(&rows);
        bv_buf_reset(&order);
        /* live: the IN set drives d, the type's entries in resources_live (type, rid), and the
         * other groups probe d.rid: the table's large row r is read for matches only */
        bool live = pl.driver >= 0 && pl.stream < 0 && !pl.scan && q->type && count_by_type_index(q);
        pl.lead = live ? lead_group(q, &pl) : -1;
        const char *ridx = pl.stream >= 0 || pl.scan || live ? "d.rid" : "r.rid";
        const bv_pred *sp = pl.stream >= 0 ? &q->ands[pl.stream].preds[0] : NULL;
        if (sp) {
            /* the streamed group's index rows in rid order, the first row of each resource only */
            bv__qb_sql(&where, "r.rid = d.rid AND ");
            if ((rc = first_row_of_each(&where, &cx, sp))) goto out;
        } else if (pl.scan) {
            bv__qb_sql(&where, "r.rid = d.rid AND d.deleted = 0 AND d.type = ");
            bv__qb_text(&where, q->type);
            bv__qb_sql(&where, " AND ");
        }
        const bv_pred *lead = pl.lead >= 0 ? &q->ands[pl.lead].preds[0] : NULL;
        if (lead) {
            /* d: the lead group's rows, the first matching one of each resource ("+param": by
             * the (rid, ord) key for each of the driver's rids, never the parameter's index) */
            cx.plus_param = true;
            bv__qb_sql(&where, "r.rid = d.rid AND t.rowid = d.rid AND ");
            if ((rc = first_row_of_each(&where, &cx, lead))) goto out;
            cx.plus_param = false;
        }
        if (live) {
            splan lp = pl;
            lp.count = true; /* the type term usable: resources_live (type=? AND rowid IN ...) */
            if (!lead) bv__qb_sql(&where, "r.rid = d.rid AND ");
            rc = emit_where_plan(&where, &cx, q, "d", &lp);
        } else {
            rc = emit_where_plan(&where, &cx, q, "r", &pl);
        }
        if (rc) goto out;
        snapshot_cond(&where, q);
        order_by(&order, keys, q->n_sort, backward, ridx);
        if (where.err) {
            rc = where.err;
            goto out;
        }
        if (q->count == 0) break;
        size_t limit = q->count;
        bool bounded = false;
        if (sp || pl.scan) {
            /* read at most a budget of the stream's rows: a page that does not fill within it
             * means sparse matches, and the search falls back to an IN set (plan_fallback) */
            int64_t need = (int64_t)(limit > 100000 ? 100000 : limit) + 1 +
                           (int64_t)(q->offset > 100000 ? 100000 : q->offset), edge = 0;
            if ((rc = stream_boundary(c, a, q, &pl, backward, paged && q->cursor,
                                      paged && q->cursor ? vals[q->n_sort].i : 0,
                                      stream_budget(need), &edge, &bounded)))
                goto out;
            if (bounded) {
                bv__qb_sql(&where, backward ? " AND d.rid >= " : " AND d.rid <= ");
                bv__qb_int(&where, edge);
            }
        }
        char *firstc = NULL, *lastc = NULL;
        bv__qb_sql(&rows, "SELECT r.type, r.id, r.version, r.last_updated, r.deleted, r.method, r.body, r.seq");
        bv__qb_append(&rows, &sel);
        if (sp) bv__qb_sqlf(&rows, ", r.rid FROM %s d CROSS JOIN resources r WHERE ", ix_table[sp->kind]);
        else if (lead)
            bv__qb_sqlf(&rows, ", r.rid FROM %s d NOT INDEXED CROSS JOIN resources t INDEXED BY resources_live"
                               " CROSS JOIN resources r WHERE ", ix_table[lead->kind]);
        else if (pl.scan || live)
            bv__qb_sql(&rows, ", r.rid FROM resources d INDEXED BY resources_live CROSS JOIN resources r WHERE ");
        else bv__qb_sql(&rows, ", r.rid FROM resources r WHERE ");
        bv__qb_append(&rows, &where);
        if (paged && q->cursor) keyset_cond(&rows, keys, q->n_sort, backward, vals, ridx);
        bv__qb_sql(&rows, " ORDER BY ");
        bv__qb_sql(&rows, bv_buf_cstr(&order));
        bv__qb_sql(&rows, " LIMIT ");
        bv__qb_int(&rows, (int64_t)(limit > INT32_MAX ? INT32_MAX : limit) + (paged ? 1 : 0));
        bv__qb_sql(&rows, " OFFSET ");
        bv__qb_int(&rows, q->offset > INT64_MAX ? INT64_MAX : (int64_t)q->offset);
        if ((rc = run_page(c, a, &rows, q->n_sort, paged ? limit : SIZE_MAX, pg, &firstc, &lastc, backward)))
            goto out;
        bv_log(BV_LOG_DEBUG, "store: search plan driver %ld stream %ld lead %ld scan %d broad %d bounded %d rows %zu more %d",
               pl.driver, pl.stream, pl.lead, pl.scan, pl.broad, bounded, pg->n, pg->more);
        if (bounded && !pg->more && attempt == 0) {
            /* the budget ran out before the page filled: the rows beyond it are unread */
            memset(pg, 0, sizeof *pg);
            pg->total = -1;
            plan_fallback(q, &pl);
            continue;
        }
        if (backward) { /* rows came in reverse order */
            for (size_t i = 0, j = pg->n ? pg->n - 1 : 0; i < j; i++, j--) {
                bv_record t = pg->recs[i];
                pg->recs[i] = pg->recs[j];
                pg->recs[j] = t;
            }
            pg->backward = true;
            pg->next = firstc;  /* firstc was made as an 'a' cursor: after the page's last row */
            pg->prev = lastc;
        } else {
            pg->next = lastc;
            pg->prev = firstc;
        }
        break;
    }
    if (q->want_total && paged && !q->cursor && !q->offset && !pg->more && q->count > 0) {
        pg->total = (int64_t)pg->n; /* the whole result is on this page */
    } else if (want_total) {
        int64_t got = 0;
        if ((rc = count_matches(c, a, q, &pl, q->total_cap, &got))) goto out;
        pg->total = q->total_cap > 0 && got > q->total_cap ? -1 : got;
    }
out:
    if (txn) bv__step_simple(c, rc ? ST_ROLLBACK : ST_COMMIT);
    bv__qb_free(&where);
    bv__qb_free(&sel);
    bv__qb_free(&rows);
    bv_buf_free(&order);
    if (rc) memset(pg, 0, sizeof *pg), pg->total = -1;
    return rc;
}

int bv__search(bv__conn *c, bool in_txn, bv_arena *a, const bv_search *q, bv_record **out, size_t *n,
               int64_t *total)
{
    if (!out || !n) return BV_EINVAL;
    bv_search_page pg;
    bv_search q2;
    if (q) {
        q2 = *q;
        q2.want_total = q->want_total && total;
        q2.cursor = NULL;
    }
    int rc = search_run(c, in_txn, a, q ? &q2 : NULL, false, &pg);
    *out = pg.recs;
    *n = pg.n;
    if (total) *total = pg.total;
    return rc;
}

int bv__search_page(bv__conn *c, bv_arena *a, const bv_search *q, bv_search_page *out)
{
    return search_run(c, false, a, q, true, out);
}

/* ---------------------------------------------------------------- _include / _revinclude */

int bv__include(bv__conn *c, bv_arena *a, const bv_include_query *q, bv_record **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!q || !q->n_from || !q->limit) return BV_OK;
    if (!q->from || (q->n_params && !q->params) || (q->rev && !q->rev_type)) return BV_EINVAL;
    bv__qb w;
    bv__qb_init(&w);
    bv__qb_sql(&w, "SELECT r.type, r.id, r.version, r.last_updated, r.deleted, r.method, r.body, r.seq"
                   " FROM resources r WHERE r.deleted = 0 AND ");
    /* The sources as a VALUES table joined first (CROSS JOIN fixes the order): a row-value
     * "(type, id) IN (VALUES ...)" of several rows is not an index lookup, and through the param
     * index SQLite would walk every row of the parameter (826,000 for Observation:patient at a
     * million resources). */
    bv__qb_sql(&w, q->rev ? "+r.type = " : "(r.type, r.id) IN (SELECT x.ref_type, x.ref_id FROM (VALUES ");
    if (q->rev) {
        bv__qb_text(&w, q->rev_type);
        bv__qb_sql(&w, " AND r.rid IN (SELECT x.rid FROM (VALUES ");
    }
    for (size_t i = 0; i < q->n_from; i++) {
        bv__qb_sql(&w, i ? ", (" : "(");
        bv__qb_text(&w, q->from[i].type);
        bv__qb_sql(&w, ", ");
        bv__qb_text(&w, q->from[i].id);
        bv__qb_sql(&w, ")");
    }
    if (!q->rev) {
        /* targets of the sources' reference rows: each source by (type, id), its rows by rid */
        bv__qb_sql(&w, ") v CROSS JOIN resources f CROSS JOIN ix_reference x WHERE f.type = v.column1 AND"
                       " f.id = v.column2 AND x.rid = f.rid");
        if (q->n_params) {
            bv__qb_sql(&w, " AND +x.param IN (");
            for (size_t i = 0; i < q->n_params; i++) {
                if (i) bv__qb_sql(&w, ", ");
                bv__qb_text(&w, q->params[i]);
            }
            bv__qb_sql(&w, ")");
        }
        if (q->target_type) {
            bv__qb_sql(&w, " AND x.ref_type = ");
            bv__qb_text(&w, q->target_type);
        }
        bv__qb_sql(&w, " AND x.ref_id IS NOT NULL)");
    } else {
        /* resources of rev_type whose reference rows point at a source: (param, ref_type, ref_id) */
        bv__qb_sql(&w, ") v CROSS JOIN ix_reference x WHERE x.param IN (");
        for (size_t i = 0; i < q->n_params; i++) {
            if (i) bv__qb_sql(&w, ", ");
            bv__qb_text(&w, q->params[i]);
        }
        if (!q->n_params) bv__qb_sql(&w, "NULL");
        bv__qb_sql(&w, ") AND x.ref_type = v.column1 AND x.ref_id = v.column2)");
    }
    bv__qb_sql(&w, " ORDER BY r.rid LIMIT ");
    bv__qb_int(&w, (int64_t)(q->limit > INT32_MAX ? INT32_MAX : q->limit) + 1);
    int rc = bv__query_records(c, a, &w, 0, out, n);
    bv__qb_free(&w);
    return rc;
}
