/* In-memory matching of simple criteria against a changed resource's own index rows, so the
 * common Subscriptions (token, reference, string, uri and _id parameters) need no search, and no
 * wait for the store's next sync. The rules mirror the store's SQL (src/store/sqlite_search.c,
 * pred_cond and pred_direct) for exactly these predicate forms; any other form (dates, numbers,
 * quantities, chains, _has, composites, :missing, _lastUpdated, compartment restrictions) makes
 * the Subscription "not simple" and it is matched by the search engine instead. */
#include "internal.h"

#include <string.h>

static bool pred_simple(const bv_pred *p)
{
    if (!p->param || p->has || p->chain || p->components || p->res_type || p->op == BV_OP_MISSING) return false;
    if (strcmp(p->param, "_id") == 0) return p->op == BV_OP_TOKEN && p->code;
    if (strcmp(p->param, "_lastUpdated") == 0) return false;
    switch (p->kind) {
    case BV_IX_TOKEN: return p->op == BV_OP_TOKEN;
    case BV_IX_REFERENCE: return p->op == BV_OP_REF;
    case BV_IX_STRING:
        return p->text && (p->op == BV_OP_STR_STARTS || p->op == BV_OP_STR_EXACT || p->op == BV_OP_STR_CONTAINS);
    case BV_IX_URI: return p->text && p->op == BV_OP_URI_EQ;
    default: return false;
    }
}

bool bv__match_is_simple(const bv_search *s)
{
    if (!s || s->types || s->n_types) return false;
    for (size_t i = 0; i < s->n_ands; i++)
        for (size_t k = 0; k < s->ands[i].n; k++)
            if (!pred_simple(&s->ands[i].preds[k])) return false;
    return true;
}

static bool row_matches(const bv_pred *p, const bv_index_row *r)
{
    /* p->param may name several parameters' rows ("code|component-code" for combo-code) */
    if (r->kind != p->kind || !fhir_search_rows_include(p->param, r->param)) return false;
    switch (p->kind) {
    case BV_IX_TOKEN:
        if (p->system_given && p->system && !bv_streq(r->system, p->system)) return false;
        if (p->system_given && !p->system && r->system) return false;
        if (p->code && !bv_streq(r->code, p->code)) return false;
        return true;
    case BV_IX_REFERENCE:
        if (p->ref_type && !bv_streq(r->ref_type, p->ref_type)) return false;
        if (p->ref_id && !bv_streq(r->ref_id, p->ref_id)) return false;
        if (p->text && !bv_streq(r->text, p->text)) return false;
        return true;
    case BV_IX_STRING:
        if (p->op == BV_OP_STR_EXACT) return bv_streq(r->text, p->text);
        if (!r->norm) return false;
        if (p->op == BV_OP_STR_STARTS) return strncmp(r->norm, p->text, strlen(p->text)) == 0;
        return strstr(r->norm, p->text) != NULL;
    case BV_IX_URI:
        return bv_streq(r->text, p->text);
    default:
        return false;
    }
}

static bool pred_matches(const bv_pred *p, const char *id, const bv_index_row *rows, size_t n)
{
    if (strcmp(p->param, "_id") == 0) return bv_streq(id, p->code) != p->negate;
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) any = row_matches(p, &rows[i]);
    return any != p->negate;   /* :not = no row matches */
}

bool bv__match_rows(const bv_search *s, const char *id, const bv_index_row *rows, size_t n)
{
    for (size_t i = 0; i < s->n_ands; i++) {
        bool any = false;
        for (size_t k = 0; k < s->ands[i].n && !any; k++) any = pred_matches(&s->ands[i].preds[k], id, rows, n);
        if (!any) return false;
    }
    return true;
}
