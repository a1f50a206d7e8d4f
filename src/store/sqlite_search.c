/* SQLite store, search: one bv_search becomes one SELECT over resources r, with every value bound.
 * Table and column names come from the fixed tables below, never from the query.
 *
 * Shape: r.deleted = 0 AND r.type = ? AND (group 1) AND (group 2) ...
 * An index predicate is a set of rids: "SELECT x.rid FROM ix_<kind> x WHERE x.param = ? AND ...".
 * A group (OR) tests r.rid IN (set UNION ALL set ...) for its positive predicates, and
 * r.rid NOT IN (set) for negated ones (:not, ne, :missing=true). These subqueries are not
 * correlated, so SQLite evaluates each once and can drive the scan from the most selective
 * one through the rid primary key; a correlated EXISTS per row would scan every resource of
 * the type instead. Chains and _has are nested searches of the same shape. */
#include "internal.h"

#include <sqlite3.h>

#include <math.h>
#include <stdio.h>
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
} sctx;

static int emit_where(bv__qb *w, sctx *cx, const bv_search *q, const char *R);

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
 * both inclusive. NE is emitted as EQ and negated by the caller. */
static int date_cond(bv__qb *w, const char *lo, const char *hi, bv_op op, int64_t plo, int64_t phi)
{
    switch (op) {
    case BV_OP_EQ:
    case BV_OP_NE: /* the parameter range fully contains the target */
        bv__qb_sqlf(w, "%s >= ", lo), bv__qb_int(w, plo);
        bv__qb_sqlf(w, " AND %s <= ", hi), bv__qb_int(w, phi);
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
    bool base = p->op == BV_OP_NE || (p->op == BV_OP_MISSING && p->missing);
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
        bv__qb_sqlf(w, "%s.id %s ", R, p->negate ? "<>" : "=");
        bv__qb_text(w, v);
        return BV_OK;
    }
    if (p->op == BV_OP_MISSING) {
        bv__qb_sql(w, p->missing != p->negate ? "0" : "1");
        return BV_OK;
    }
    if (!is_ordered_op(p->op) || p->lo > p->hi) return BV_EINVAL;
    char col[32];
    snprintf(col, sizeof col, "%s.last_updated", R);
    bv__qb_sql(w, is_negative(p) ? "NOT (" : "(");
    int rc = date_cond(w, col, col, p->op, p->lo, p->hi);
    bv__qb_sql(w, ")");
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
                " FROM ix_reference x%d WHERE +x%d.param = ", /* "+": drive by rid (below), not param */
                t, t, t, t, x, x, x, x);
    bv__qb_text(w, p->param);
    bv__qb_sqlf(w, " AND x%d.rid IN (SELECT %s.rid FROM resources %s WHERE ", x, H, H);
    cx->nest++;
    int rc = emit_where(w, cx, p->has, H);
    cx->nest--;
    bv__qb_sql(w, "))");
    return rc;
}

/* The set of rids with an index row matching p (before negation). */
static int pred_set(bv__qb *w, sctx *cx, const bv_pred *p)
{
    if (p->has) return has_set(w, cx, p);
    if (!p->param || (unsigned)p->kind >= BV__N_KINDS) return BV_EINVAL;
    int a = cx->alias++;
    char X[16], col[32], col2[32];
    snprintf(X, sizeof X, "x%d", a);
    bv__qb_sqlf(w, "SELECT %s.rid FROM %s %s WHERE %s.param = ", X, ix_table[p->kind], X, X);
    bv__qb_text(w, p->param);
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
            /* The target must be a current resource matching the chained search. */
            bv__qb_sqlf(w, " AND (%s.ref_type, %s.ref_id) IN (SELECT %s.type, %s.id FROM resources %s WHERE ", X, X, C,
                        C, C);
            cx->nest++;
            int rc = emit_where(w, cx, p->chain, C);
            cx->nest--;
            if (rc) return rc;
            bv__qb_sql(w, ")");
        }
        return BV_OK;
    case BV_IX_DATE:
        if (!is_ordered_op(p->op) || p->lo > p->hi) return BV_EINVAL;
        snprintf(col, sizeof col, "%s.lo", X);
        snprintf(col2, sizeof col2, "%s.hi", X);
        bv__qb_sql(w, " AND ");
        return date_cond(w, col, col2, p->op, p->lo, p->hi);
    case BV_IX_NUMBER:
    case BV_IX_QUANTITY: {
        if (!is_ordered_op(p->op)) return BV_EINVAL;
        snprintf(col, sizeof col, "%s.num", X);
        bv__qb_sql(w, " AND ");
        int rc = num_cond(w, col, p);
        if (rc) return rc;
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
            snprintf(col, sizeof col, "%s.text", X);
            prefix_range(w, cx, col, p->text);
        } else if (p->op == BV_OP_URI_ABOVE) { /* the stored uri is a prefix of the value */
            bv__qb_sql(w, " AND instr(");
            bv__qb_text(w, p->text);
            bv__qb_sqlf(w, ", %s.text) = 1 AND %s.text <> ''", X, X);
        } else {
            return BV_EINVAL;
        }
        return BV_OK;
    }
    return BV_EINVAL;
}

static int emit_group(bv__qb *w, sctx *cx, const bv_or *g, const char *R)
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
    if (npos) {
        size_t k = 0;
        for (size_t i = 0; i < g->n && !rc; i++) {
            const bv_pred *p = &g->preds[i];
            if (is_direct(p) || is_negative(p)) continue;
            if (k % BV__MAX_UNION == 0) /* a new IN every BV__MAX_UNION sets (compound limit) */
                bv__qb_sqlf(w, "%s%s.rid IN (", k ? ") OR " : "", R);
            else
                bv__qb_sql(w, " UNION ALL ");
            k++;
            rc = pred_set(w, cx, p);
        }
        bv__qb_sql(w, ")");
        first = false;
    }
    for (size_t i = 0; i < g->n && !rc; i++) {
        const bv_pred *p = &g->preds[i];
        bool direct = is_direct(p);
        if (!direct && !is_negative(p)) continue;
        if (!first) bv__qb_sql(w, " OR ");
        first = false;
        if (direct) {
            rc = pred_direct(w, p, R);
        } else {
            bv__qb_sqlf(w, "%s.rid NOT IN (", R);
            rc = pred_set(w, cx, p);
            bv__qb_sql(w, ")");
        }
    }
    bv__qb_sql(w, ")");
    return rc;
}

/* Whether some AND group is a plain "rid IN (positive sets)", able to drive the scan. */
static bool has_driver(const bv_search *q)
{
    for (size_t i = 0; i < q->n_ands; i++) {
        const bv_or *g = &q->ands[i];
        bool all = g->n > 0 && g->preds;
        for (size_t j = 0; all && j < g->n; j++)
            all = !is_direct(&g->preds[j]) && !is_negative(&g->preds[j]);
        if (all) return true;
    }
    return false;
}

static int emit_where(bv__qb *w, sctx *cx, const bv_search *q, const char *R)
{
    if (!q) return BV_EINVAL;
    if (q->n_ands && !q->ands) return BV_EINVAL;
    /* Without statistics SQLite would walk every resource of the type through the type index
     * and probe the rid sets; the unary + takes the type term out of index selection, so the
     * rid set drives through the primary key instead. */
    const char *plus = has_driver(q) ? "+" : "";
    bv__qb_sqlf(w, "%s.deleted = 0", R);
    if (q->type) {
        bv__qb_sqlf(w, " AND %s%s.type = ", plus, R);
        bv__qb_text(w, q->type);
    } else if (q->types) {
        if (!q->n_types) {
            bv__qb_sql(w, " AND 0");
        } else {
            bv__qb_sqlf(w, " AND %s%s.type IN (", plus, R);
            for (size_t i = 0; i < q->n_types; i++) {
                if (i) bv__qb_sql(w, ", ");
                bv__qb_text(w, q->types[i]);
            }
            bv__qb_sql(w, ")");
        }
    }
    for (size_t i = 0; i < q->n_ands; i++) {
        bv__qb_sql(w, " AND ");
        int rc = emit_group(w, cx, &q->ands[i], R);
        if (rc) return rc;
    }
    return w->err;
}

/* Sort keys: columns added to the select list (s0, s1, ...) and the ORDER BY clause. */
static int emit_sort(bv__qb *sel, bv_buf *order, const bv_search *q)
{
    for (size_t i = 0; i < q->n_sort; i++) {
        const bv_sort *k = &q->sort[i];
        const char *dir = k->desc ? "DESC" : "ASC";
        if (!k->param) return BV_EINVAL;
        if (strcmp(k->param, "_id") == 0) {
            bv_buf_printf(order, "r.id %s, ", dir);
            continue;
        }
        if (strcmp(k->param, "_lastUpdated") == 0) {
            bv_buf_printf(order, "r.last_updated %s, ", dir);
            continue;
        }
        const char *agg;
        switch (k->kind) {
        case BV_IX_STRING: agg = "min(sx.norm)"; break;
        case BV_IX_TOKEN: agg = "min(sx.code)"; break;
        case BV_IX_REFERENCE: agg = "min(sx.text)"; break;
        case BV_IX_DATE: agg = k->desc ? "max(sx.hi)" : "min(sx.lo)"; break;
        case BV_IX_NUMBER:
        case BV_IX_QUANTITY: agg = "min(sx.num)"; break;
        case BV_IX_URI: agg = "min(sx.text)"; break;
        default: return BV_EINVAL;
        }
        /* "+" keeps SQLite on the (rid, ord) primary key: through the param index this
         * correlated subquery would scan every row of the parameter for each resource. */
        bv__qb_sqlf(sel, ", (SELECT %s FROM %s sx WHERE sx.rid = r.rid AND +sx.param = ", agg, ix_table[k->kind]);
        bv__qb_text(sel, k->param);
        bv__qb_sqlf(sel, ") AS s%zu", i);
        bv_buf_printf(order, "s%zu %s NULLS LAST, ", i, dir); /* resources without the value go last */
    }
    /* Ties by row order, in the direction of the last key: an index on (type, last_updated)
     * then serves _sort=-_lastUpdated with no sort step. */
    bv_buf_puts(order, q->n_sort && q->sort[q->n_sort - 1].desc ? "r.rid DESC" : "r.rid");
    return sel->err;
}

int bv__search(bv__conn *c, bool in_txn, bv_arena *a, const bv_search *q, bv_record **out, size_t *n,
               int64_t *total)
{
    if (!q || !out || !n || !a || (q->n_sort && !q->sort)) return BV_EINVAL;
    *out = NULL;
    *n = 0;
    if (total) *total = -1;
    sctx cx = {.a = a, .alias = 0, .nest = 0};
    bv__qb where, sel, rows, cnt;
    bv_buf order;
    bv__qb_init(&where);
    bv__qb_init(&sel);
    bv__qb_init(&rows);
    bv__qb_init(&cnt);
    bv_buf_init(&order, 4096);
    bool txn = false;
    int rc = emit_where(&where, &cx, q, "r");
    if (rc) goto out;
    if (q->max_seq > 0) {
        /* Best-effort snapshot: leave out resources created after max_seq (their version 1 is
         * newer). Resources updated since still match on their current version. */
        bv__qb_sql(&where, " AND (r.seq <= ");
        bv__qb_int(&where, q->max_seq);
        bv__qb_sql(&where, " OR EXISTS (SELECT 1 FROM history hs WHERE hs.type = r.type AND hs.id = r.id"
                           " AND hs.version = 1 AND hs.seq <= ");
        bv__qb_int(&where, q->max_seq);
        bv__qb_sql(&where, "))");
    }
    if ((rc = emit_sort(&sel, &order, q))) goto out;
    if (where.err || order.len == 0) {
        rc = where.err ? where.err : BV_EINVAL;
        goto out;
    }
    bool want_total = q->want_total && total;
    if (want_total && q->count > 0 && !in_txn) {
        /* One snapshot for the page and the total. */
        if ((rc = bv__step_simple(c, ST_BEGIN))) goto out;
        txn = true;
    }
    if (want_total) {
        bv__qb_sql(&cnt, "SELECT count(*) FROM resources r WHERE ");
        bv__qb_append(&cnt, &where);
        if ((rc = bv__query_count(c, &cnt, total))) goto out;
    }
    if (q->count > 0) {
        bv__qb_sql(&rows, "SELECT r.type, r.id, r.version, r.last_updated, r.deleted, r.method, r.body, r.seq");
        bv__qb_append(&rows, &sel);
        bv__qb_sql(&rows, " FROM resources r WHERE ");
        bv__qb_append(&rows, &where);
        bv__qb_sql(&rows, " ORDER BY ");
        bv__qb_sql(&rows, bv_buf_cstr(&order));
        bv__qb_sql(&rows, " LIMIT ");
        bv__qb_int(&rows, q->count > INT64_MAX ? INT64_MAX : (int64_t)q->count);
        bv__qb_sql(&rows, " OFFSET ");
        bv__qb_int(&rows, q->offset > INT64_MAX ? INT64_MAX : (int64_t)q->offset);
        rc = bv__query_records(c, a, &rows, 0, out, n);
    }
out:
    if (txn) bv__step_simple(c, rc ? ST_ROLLBACK : ST_COMMIT);
    bv__qb_free(&where);
    bv__qb_free(&sel);
    bv__qb_free(&rows);
    bv__qb_free(&cnt);
    bv_buf_free(&order);
    if (rc) {
        *out = NULL;
        *n = 0;
    }
    return rc;
}
