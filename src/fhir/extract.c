/* Search-index extraction: evaluates the FHIRPath expression of every search parameter of a
 * resource's type and turns each resulting element into bv_index_row(s).
 *
 * Parameters: those declared for the type (fhir_search_params_of) plus the inherited
 * Resource-level ones that are stored as rows: _profile (uri), _tag and _security (token),
 * _source (uri). _id and _lastUpdated are columns of the resource (not rows); _text, _content,
 * _query, _filter and other parameters without an expression are not indexed; special
 * parameters (Location near) are not indexed.
 *
 * Rows by parameter type and element type:
 *   string    string-like primitives: one row (text = value, norm = bv_fhir_normalize_string);
 *             HumanName: family, each given/prefix/suffix, text; Address: each line, city,
 *             district, state, postalCode, country, text (one row per part; none for the
 *             parts that parameters of their own store: part_rows); other complex
 *             types: one row per direct string-like child.
 *   token     Coding: system|code, text = display; CodeableConcept: one row per coding with
 *             text = CodeableConcept.text (else the coding's display) and a text-only row for a
 *             display that differs from the text, or a text-only row when it has no coding; Identifier: system|value, text = type.text, plus one row
 *             "<param>:of-type" per type coding (system = its system, code = "code|value") for
 *             :of-type; ContactPoint: code =
 *             value; code/string/id/uri/... primitives: code only; boolean: "true"/"false".
 *   reference Reference.reference: "Type/id", "Type/id/_history/v" and absolute
 *             ".../Type/id[/_history/v]" set ref_type/ref_id(/ref_version) and text = the
 *             reference as written (the API layer decides whether an absolute base is local);
 *             other forms (urn:uuid:...) set text only; "#contained" and identifier-only
 *             references give no reference row; Reference.identifier gives a token row
 *             "<param>:identifier" (system|value) for the :identifier modifier. canonical/uri
 *             values: text only. A resource element
 *             (Bundle.entry[0].resource) gives its type and id when its type is one of the
 *             parameter's targets (a searchset's first entry is not a "composition").
 *   date      date/dateTime/instant: [lo, hi] from bv_fhir_date_range; Period: start.lo ..
 *             end.hi with an open side at BV_EXTRACT_DATE_MIN/MAX; Timing: each event and
 *             repeat.boundsPeriod. Age, Duration, Range and strings are not indexed.
 *   number    decimal/integer primitives: num and the implicit precision range of the text
 *             (100 -> [99.5, 100.5], 1.50 -> [1.495, 1.505]). Range is not indexed.
 *   quantity  Quantity and its specialisations (Age, Duration, Count, Distance, SimpleQuantity):
 *             num + range as for number, system, code = code (or unit when there is no code);
 *             Money: system "urn:iso:std:iso:4217", code = currency. Range is not indexed.
 *             A UCUM quantity in a unit bv_ucum_canonical converts also gives a row
 *             "<param>:ucum" with the value, range and code in the canonical unit.
 *   uri       uri/url/canonical/oid/uuid (any string primitive): text.
 *   composite The composite's expression is evaluated, then each component's expression
 *             relative to each result. Every result whose components all produce rows becomes
 *             one group: its component rows get param "<composite code>#<i>" (i = the 0-based
 *             component index, kind = the component parameter's type) and one shared non-zero
 *             `group`, unique within the resource. A search for code-value-quantity=a$b joins a
 *             "code-value-quantity#0" row matching a and a "code-value-quantity#1" row matching b
 *             on (resource, group). Rows with group 0 are never composite parts.
 *
 * Compiled expressions are built once per process (pthread_once) into a table indexed like
 * fhir_search_params; they are read-only afterwards, so extraction is thread-safe. Each entry also
 * holds the expression's top-level union split into branches, minus those that start with a type
 * name the entry's (concrete) resource type is not: "AllergyIntolerance.code | Condition.code | ..."
 * evaluates one branch on a Condition. Kept branches are evaluated in order and, if the expression
 * was a union, deduplicated exactly as `|` does, so the rows are those of the whole expression.
 *
 * Performance: FHIRPath collections, hash sets and the growing row array live in a scratch arena
 * made and freed per call (malloc reuses its memory); the caller's arena only receives the final
 * rows and the strings they point to (about 1.5 KB per Synthea resource instead of 150 KB; fresh
 * arena pages cost a page fault each). */
#include "fhirpath_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BV_EXTRACT_DATE_MIN (-62135596800000LL)   /* 0001-01-01T00:00:00Z */
#define BV_EXTRACT_DATE_MAX (253402300799999LL)   /* 9999-12-31T23:59:59.999Z */

/* ---------------------------------------------------------------- expression cache */

typedef struct {
    const bv_fp_expr *expr;          /* NULL: no expression or it failed to compile */
    const bv_fp_expr **components;   /* composite: one per component */
    fhir_sp_type *component_types;
    const char **component_params;   /* composite: "<code>#<i>" */
    /* The expression's top-level union split into branches, without those that can only be empty
     * on a resource of the parameter's type (see prune_branches); evaluated in order, their
     * results concatenated and, when the expression was a union, deduplicated as `|` does. */
    const bv_fp_expr *const *branches;
    size_t n_branches;
    bool is_union;
    size_t stored;                   /* index of the parameter whose rows serve this one (share_rows) */
    /* A HumanName or Address parameter: bit k set when part k of the type's string parts
     * (string_parts) is another parameter's rows, so this one stores no row for it (part_rows). */
    unsigned covered_parts;
    /* The stored code of this parameter's rows: its own code; the sharing parameter's; or, for a
     * union of other parameters (union_rows), their codes joined by '|'. Composites: per component. */
    const char *rows;
    const char **component_rows;
} sp_compiled;

/* The string parts of a HumanName and of an Address, in the order their rows are made. */
static const char *const name_parts[] = {"family", "given", "prefix", "suffix", "text", NULL};
static const char *const address_parts[] = {"line", "city", "district", "state", "postalCode", "country", "text", NULL};

static const char *const *string_parts(const char *type)
{
    if (!type) return NULL;
    if (strcmp(type, "HumanName") == 0) return name_parts;
    if (strcmp(type, "Address") == 0) return address_parts;
    return NULL;
}

static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static sp_compiled *cache;
static bv_arena *cache_arena;
static size_t cache_compile_errors;

static fhir_sp_type type_of_definition(const char *url, bool *found)
{
    *found = false;
    for (size_t i = 0; url && i < fhir_search_params_count; i++)
        if (fhir_search_params[i].url && strcmp(fhir_search_params[i].url, url) == 0) {
            *found = true;
            return fhir_search_params[i].type;
        }
    return FHIR_SP_STRING;
}

/* Functions that give empty on an empty input without evaluating any argument (or only literal
 * arguments), so a path that goes through them from an empty start stays empty and cannot fail. */
static bool empty_preserving_call(const fp_node *f)
{
    static const char *const names[] = {"where", "select", "ofType", "as", "is", "first", "last", "tail", "single",
                                        "resolve", "extension"};
    if (f->t != FPN_FUNC || f->fn < 0) return false;
    const char *name = fp_functions[f->fn].name;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(names[k], name) == 0) {
            if (strcmp(name, "extension") == 0) return f->nargs == 1 && f->args[0]->t == FPN_LIT;
            return true;
        }
    return false;
}

/* The type name a path starts with ("Observation" in "(Observation.value as Quantity).value"), when
 * everything after it stays empty on an empty start; NULL otherwise. Evaluated on a resource, such a
 * leading type name selects the resource when its type is (derived from) that type and gives empty
 * otherwise (fhirpath.c ident_step, non-strict), so the whole path is empty for other types. */
static const char *leading_type(const fp_node *n)
{
    for (;;) {
        switch (n->t) {
        case FPN_IDENT: return n->is_type_name ? n->name : NULL;
        case FPN_AS: case FPN_IS: n = n->l; break;
        case FPN_INDEX:
            if (n->r->t != FPN_LIT || n->r->lit.kind != BV_FP_INTEGER) return NULL;
            n = n->l;
            break;
        case FPN_DOT:
            if (n->r->t != FPN_IDENT && !empty_preserving_call(n->r)) return NULL;
            n = n->l;
            break;
        default: return NULL;
        }
    }
}

typedef struct {
    const bv_fp_expr **v;
    size_t n, cap;
} branch_list;

/* Splits a top-level union a | b | c into its branches, dropping those that are empty on a resource
 * of type rtype (NULL: drop none). */
static void prune_branches(const fp_node *n, const char *rtype, branch_list *out, bool *is_union)
{
    if (n->t == FPN_BIN && n->op == FPO_UNION) {
        *is_union = true;
        prune_branches(n->l, rtype, out, is_union);
        prune_branches(n->r, rtype, out, is_union);
        return;
    }
    const char *lead = leading_type(n);
    if (rtype && lead && !fp_fhir_type_derives(rtype, lead)) return;
    if (out->n == out->cap) {
        size_t nc = out->cap ? out->cap * 2 : 4;
        const bv_fp_expr **nv = bv_arena_alloc(cache_arena, nc * sizeof *nv);
        if (out->n) memcpy(nv, out->v, out->n * sizeof *nv);
        out->v = nv;
        out->cap = nc;
    }
    bv_fp_expr *e = bv_arena_calloc(cache_arena, 1, sizeof *e);
    e->root = n;
    out->v[out->n++] = e;
}

/* A branch is one of b's. */
static bool has_branch(const sp_compiled *b, const bv_fp_expr *branch)
{
    for (size_t j = 0; j < b->n_branches; j++)
        if (fp_node_equal(branch->root, b->branches[j]->root)) return true;
    return false;
}

/* Every branch of a is one of b's: a selects a part of what b selects. */
static bool branches_within(const sp_compiled *a, const sp_compiled *b)
{
    for (size_t i = 0; i < a->n_branches; i++)
        if (!has_branch(b, a->branches[i])) return false;
    return true;
}

/* Parameters of one resource type and kind whose branches on that type are the same select the
 * same elements, so their rows are the same: only the first in the table's order stores them
 * (fhir_search_param_rows gives its code). In R4: Patient, Person, Practitioner and RelatedPerson `phonetic` =
 * `name` ("Patient.name | Person.name | ..." on a Patient is "Patient.name"; Bevan matches phonetic
 * like name), CodeSystem `url` = `system`, CapabilityStatement `version` = `fhirversion`. Never
 * references (whose targets can differ), composites or Resource-level parameters. */
static void share_rows(void)
{
    for (size_t i = 0; i < fhir_search_params_count; i++) {
        const fhir_search_param *sp = &fhir_search_params[i];
        cache[i].stored = i;
        bool kind_shares = sp->type == FHIR_SP_STRING || sp->type == FHIR_SP_TOKEN || sp->type == FHIR_SP_URI ||
                           sp->type == FHIR_SP_DATE || sp->type == FHIR_SP_NUMBER || sp->type == FHIR_SP_QUANTITY;
        if (!cache[i].expr || !cache[i].n_branches || !kind_shares || !fhir_is_resource_type(sp->resource)) continue;
        /* the table is sorted by resource: look back over this resource's entries */
        for (size_t j = i; j-- > 0 && strcmp(fhir_search_params[j].resource, sp->resource) == 0;)
            if (cache[j].expr && cache[j].stored == j && fhir_search_params[j].type == sp->type &&
                cache[j].n_branches == cache[i].n_branches && branches_within(&cache[i], &cache[j])) {
                cache[i].stored = j;
                break;
            }
    }
}

/* [*lo, *hi): the entries of parameter i's resource type (the table is sorted by resource). */
static void resource_span(size_t i, size_t *lo, size_t *hi)
{
    const char *r = fhir_search_params[i].resource;
    *lo = i;
    *hi = i + 1;
    while (*lo > 0 && strcmp(fhir_search_params[*lo - 1].resource, r) == 0) (*lo)--;
    while (*hi < fhir_search_params_count && strcmp(fhir_search_params[*hi].resource, r) == 0) (*hi)++;
}

/* The type of the element a branch "Resource.element" selects, when it is exactly that (one type,
 * no choice); NULL for any other shape. */
static const char *branch_element_type(const fp_node *n, const char *resource)
{
    if (n->t != FPN_DOT || n->l->t != FPN_IDENT || !n->l->is_type_name || strcmp(n->l->name, resource) != 0 ||
        n->r->t != FPN_IDENT)
        return NULL;
    const fhir_type *t = fhir_type_find(resource);
    const fhir_element *e = t ? fhir_type_element(t, n->r->name, NULL) : NULL;
    return e && !e->choice && e->n_types == 1 ? e->types[0] : NULL;
}

/* A string parameter on a HumanName or an Address (Patient `name` = Patient.name) whose parts are
 * also parameters of their own (`family` = Patient.name.family, `given` = Patient.name.given)
 * would store each such part twice, under both codes. It stores rows only for the parts no other
 * parameter covers (prefix, suffix, text), and its rows are its own and theirs ("name|family|given",
 * one IN in SQL, as for union_rows). In R4: Patient and Practitioner `name` (family, given) and
 * `address` (city, state, postalCode, country); Person, RelatedPerson, Organization and Location
 * `address` likewise. A part parameter must store its own rows from exactly
 * "<the parameter's path>.<part>". */
static void part_rows(void)
{
    for (size_t i = 0; i < fhir_search_params_count; i++) {
        const fhir_search_param *sp = &fhir_search_params[i];
        sp_compiled *cp = &cache[i];
        if (sp->type != FHIR_SP_STRING || !cp->expr || cp->n_branches != 1 || cp->stored != i ||
            !fhir_is_resource_type(sp->resource))
            continue;
        const fp_node *path = cp->branches[0]->root;
        const char *const *parts = string_parts(branch_element_type(path, sp->resource));
        if (!parts) continue;
        unsigned covered = 0;
        const char *rows = sp->code;
        size_t lo, hi;
        resource_span(i, &lo, &hi);
        for (size_t j = lo; j < hi; j++) {
            const fhir_search_param *sq = &fhir_search_params[j];
            const sp_compiled *cq = &cache[j];
            if (j == i || sq->type != FHIR_SP_STRING || !cq->expr || cq->n_branches != 1 || cq->stored != j)
                continue;
            const fp_node *n = cq->branches[0]->root;
            if (n->t != FPN_DOT || n->r->t != FPN_IDENT || !fp_node_equal(n->l, path)) continue;
            for (unsigned k = 0; parts[k]; k++)
                if (strcmp(parts[k], n->r->name) == 0 && !(covered & (1u << k))) {
                    covered |= 1u << k;
                    rows = bv_arena_printf(cache_arena, "%s|%s", rows, sq->code);
                }
        }
        if (covered) {
            cp->covered_parts = covered;
            cp->rows = rows;
        }
    }
}

/* q's index rows are p's for the elements q selects: the same kind and, for composites, the same
 * components (kinds and expressions), so a group of q's rows is a group of p's. */
static bool rows_compatible(size_t p, size_t q)
{
    const fhir_search_param *sp = &fhir_search_params[p], *sq = &fhir_search_params[q];
    if (sq->type != sp->type || !cache[q].expr || !cache[q].n_branches || cache[q].stored != q ||
        cache[q].covered_parts)
        return false;
    if (sp->type != FHIR_SP_COMPOSITE) return true;
    if (sq->n_components != sp->n_components || !cache[p].components || !cache[q].components) return false;
    for (unsigned k = 0; k < sp->n_components; k++)
        if (cache[p].component_types[k] != cache[q].component_types[k] ||
            !fp_node_equal(cache[p].components[k]->root, cache[q].components[k]->root))
            return false;
    return true;
}

#define MAX_UNION_PARTS 8

/* Whether parameter i selects exactly the union of two or more other parameters' elements (see
 * union_rows); their indexes in parts. Parameters flagged in skip (unions themselves) are no parts. */
static bool find_union(size_t i, const bool *skip, size_t *parts, size_t *n_parts)
{
    const fhir_search_param *sp = &fhir_search_params[i];
    const sp_compiled *cp = &cache[i];
    *n_parts = 0;
    bool covered[16] = {0};
    if (!cp->expr || cp->n_branches < 2 || cp->n_branches > sizeof covered / sizeof covered[0] || cp->stored != i ||
        sp->type == FHIR_SP_REFERENCE || sp->type == FHIR_SP_SPECIAL || !fhir_is_resource_type(sp->resource))
        return false;
    size_t lo, hi;
    resource_span(i, &lo, &hi);
    for (size_t j = lo; j < hi && *n_parts < MAX_UNION_PARTS; j++) {
        if (j == i || (skip && skip[j]) || !rows_compatible(i, j) || cache[j].n_branches >= cp->n_branches ||
            !branches_within(&cache[j], cp))
            continue;
        parts[(*n_parts)++] = j;
        for (size_t b = 0; b < cp->n_branches; b++) covered[b] |= has_branch(&cache[j], cp->branches[b]);
    }
    bool all = *n_parts >= 2;
    for (size_t b = 0; b < cp->n_branches && all; b++) all = covered[b];
    return all;
}

/* A parameter whose branches on its type are exactly those of two or more other parameters of
 * that type and kind selects the union of their elements, so its rows would be the union of
 * theirs under its own name: it stores none, and a search matches their rows ("a|b", one IN in
 * SQL). In R4 these are Observation's combo-* parameters: combo-code = code | component-code,
 * combo-code-value-quantity = code-value-quantity | component-code-value-quantity, and so on
 * (about a fifth of an Observation's rows). Never references or Resource-level parameters. Only
 * counts differ: a union has no kept token counts (its totals are counted from its rows).
 * Two passes: the parts of a union are parameters that store their own rows, never another
 * union (a part found to be a union itself is left out, and without it the first may not be one). */
static void union_rows(void)
{
    bool *candidate = bv_calloc(fhir_search_params_count ? fhir_search_params_count : 1, sizeof *candidate);
    size_t parts[MAX_UNION_PARTS], n_parts;
    for (size_t i = 0; i < fhir_search_params_count; i++) candidate[i] = find_union(i, NULL, parts, &n_parts);
    for (size_t i = 0; i < fhir_search_params_count; i++) {
        if (!candidate[i] || !find_union(i, candidate, parts, &n_parts)) continue;
        sp_compiled *cp = &cache[i];
        const char *rows = fhir_search_params[parts[0]].code;
        for (size_t k = 1; k < n_parts; k++) rows = bv_arena_printf(cache_arena, "%s|%s", rows, fhir_search_params[parts[k]].code);
        cp->rows = rows;
        if (fhir_search_params[i].type == FHIR_SP_COMPOSITE)
            for (unsigned c = 0; c < fhir_search_params[i].n_components; c++) {
                const char *cr = cache[parts[0]].component_params[c];
                for (size_t k = 1; k < n_parts; k++)
                    cr = bv_arena_printf(cache_arena, "%s|%s", cr, cache[parts[k]].component_params[c]);
                cp->component_rows[c] = cr;
            }
    }
    free(candidate);
    /* a parameter sharing a union's rows (none in R4) searches the union's */
    for (size_t i = 0; i < fhir_search_params_count; i++) {
        sp_compiled *cp = &cache[i];
        if (!cp->rows) cp->rows = cache[cp->stored].rows ? cache[cp->stored].rows : fhir_search_params[cp->stored].code;
        if (cp->component_params && !cp->component_rows[0])
            for (unsigned c = 0; c < fhir_search_params[i].n_components; c++)
                cp->component_rows[c] = cp->component_params[c];
    }
}

static void build_cache(void)
{
    cache_arena = bv_arena_new(1u << 20);
    cache = bv_calloc(fhir_search_params_count ? fhir_search_params_count : 1, sizeof *cache);
    char err[256];
    for (size_t i = 0; i < fhir_search_params_count; i++) {
        const fhir_search_param *sp = &fhir_search_params[i];
        if (!sp->expression) continue;
        /* one compile per distinct expression: "clinical-patient" (32 branches) serves 32 types */
        for (size_t j = i; j-- > 0 && !cache[i].expr;)
            if (fhir_search_params[j].expression == sp->expression) cache[i].expr = cache[j].expr;
        if (!cache[i].expr) cache[i].expr = bv_fhirpath_compile(cache_arena, sp->expression, err, sizeof err);
        if (!cache[i].expr) {
            cache_compile_errors++;
            bv_log(BV_LOG_ERROR, "search parameter %s.%s: cannot compile its expression: %s", sp->resource, sp->code, err);
            continue;
        }
        branch_list bl = {0};
        bool is_union = false;
        /* a concrete type's parameter is only evaluated on resources of exactly that type; the
         * Resource-level ones run on every type, so nothing is dropped from them */
        const char *rtype = fhir_is_resource_type(sp->resource) ? sp->resource : NULL;
        prune_branches(cache[i].expr->root, rtype, &bl, &is_union);
        cache[i].branches = bl.v;
        cache[i].n_branches = bl.n;
        cache[i].is_union = is_union;
        if (sp->type == FHIR_SP_COMPOSITE && sp->n_components) {
            cache[i].components = bv_arena_calloc(cache_arena, sp->n_components, sizeof *cache[i].components);
            cache[i].component_types = bv_arena_calloc(cache_arena, sp->n_components, sizeof *cache[i].component_types);
            cache[i].component_params = bv_arena_calloc(cache_arena, sp->n_components, sizeof *cache[i].component_params);
            cache[i].component_rows = bv_arena_calloc(cache_arena, sp->n_components, sizeof *cache[i].component_rows);
            for (unsigned k = 0; k < sp->n_components; k++) {
                bool found;
                cache[i].component_types[k] = type_of_definition(sp->components[k].definition, &found);
                cache[i].component_params[k] = bv_arena_printf(cache_arena, "%s#%u", sp->code, k);
                cache[i].components[k] = found ? bv_fhirpath_compile(cache_arena, sp->components[k].expression, err, sizeof err) : NULL;
                if (!cache[i].components[k]) {
                    cache_compile_errors++;
                    bv_log(BV_LOG_ERROR, "search parameter %s.%s: component %u unusable", sp->resource, sp->code, k);
                    cache[i].expr = NULL;
                }
            }
        }
    }
    share_rows();
    part_rows();
    union_rows();
}

static const sp_compiled *compiled_for(const fhir_search_param *sp)
{
    pthread_once(&cache_once, build_cache);
    size_t i = (size_t)(sp - fhir_search_params);
    return i < fhir_search_params_count ? &cache[i] : NULL;
}

const char *fhir_search_param_rows(const fhir_search_param *sp)
{
    const sp_compiled *cc = sp && sp >= fhir_search_params ? compiled_for(sp) : NULL;
    return cc && cc->rows ? cc->rows : sp->code;
}

/* Whether sp's rows are stored under its own code: not an earlier parameter's (share_rows), not the
 * union of others' (union_rows). A parameter with covered parts (part_rows) stores the rest. */
static bool stores_own_rows(const fhir_search_param *sp)
{
    const sp_compiled *cc = compiled_for(sp);
    if (!cc || cc->stored != (size_t)(sp - fhir_search_params)) return false;
    return cc->covered_parts || !cc->rows || cc->rows == sp->code;
}

bool fhir_search_rows_include(const char *rows, const char *param)
{
    if (!rows || !param) return false;
    size_t n = strlen(param);
    for (const char *s = rows;;) {
        const char *bar = strchr(s, '|');
        size_t len = bar ? (size_t)(bar - s) : strlen(s);
        if (len == n && memcmp(s, param, n) == 0) return true;
        if (!bar) return false;
        s = bar + 1;
    }
}

const char *fhir_search_param_component_rows(const fhir_search_param *sp, size_t k)
{
    const sp_compiled *cc = sp && sp >= fhir_search_params ? compiled_for(sp) : NULL;
    if (cc && cc->component_rows && k < sp->n_components && cc->component_rows[k]) return cc->component_rows[k];
    return NULL;
}

/* ---------------------------------------------------------------- string normalisation */

/* ASCII folding of U+00C0..U+017F ("" = keep the character as it is). */
static const char *const fold_latin1[64] = {
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",        /* C0 */
    "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "ss",       /* D0 */
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",        /* E0 */
    "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y",        /* F0 */
};
static const char *const fold_ext_a[128] = {
    "a", "a", "a", "a", "a", "a", "c", "c", "c", "c", "c", "c", "c", "c", "d", "d",          /* 100 */
    "d", "d", "e", "e", "e", "e", "e", "e", "e", "e", "e", "e", "g", "g", "g", "g",          /* 110 */
    "g", "g", "g", "g", "h", "h", "h", "h", "i", "i", "i", "i", "i", "i", "i", "i",          /* 120 */
    "i", "i", "ij", "ij", "j", "j", "k", "k", "k", "l", "l", "l", "l", "l", "l", "l",        /* 130 */
    "l", "l", "l", "n", "n", "n", "n", "n", "n", "n", "n", "n", "o", "o", "o", "o",          /* 140 */
    "o", "o", "oe", "oe", "r", "r", "r", "r", "r", "r", "s", "s", "s", "s", "s", "s",        /* 150 */
    "s", "s", "t", "t", "t", "t", "t", "t", "u", "u", "u", "u", "u", "u", "u", "u",          /* 160 */
    "u", "u", "u", "u", "w", "w", "y", "y", "y", "z", "z", "z", "z", "z", "z", "s",          /* 170 */
};

static bool is_space_cp(unsigned cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' || cp == 0xA0 ||
           cp == 0x2007 || cp == 0x202F || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x3000;
}

char *bv_fhir_normalize_string(bv_arena *a, const char *s)
{
    if (!s) return bv_arena_strdup(a, "");
    size_t n = strlen(s);
    char *out = bv_arena_alloc(a, n * 2 + 1);   /* a 2-byte character folds to at most 2 ASCII bytes */
    size_t o = 0;
    bool pending_space = false;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned cp;
        size_t len;
        if (p[0] < 0x80) { cp = p[0]; len = 1; }
        else if ((p[0] & 0xE0) == 0xC0 && p + 1 < end) { cp = (unsigned)(p[0] & 0x1F) << 6 | (p[1] & 0x3F); len = 2; }
        else if ((p[0] & 0xF0) == 0xE0 && p + 2 < end) {
            cp = (unsigned)(p[0] & 0x0F) << 12 | (unsigned)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
            len = 3;
        } else if ((p[0] & 0xF8) == 0xF0 && p + 3 < end) { cp = 0x10000; len = 4; }
        else { cp = 0xFFFD; len = 1; }
        if (is_space_cp(cp)) {
            pending_space = o > 0;
            p += len;
            continue;
        }
        if (pending_space) {
            out[o++] = ' ';
            pending_space = false;
        }
        const char *fold = NULL;
        if (cp >= 0xC0 && cp <= 0xFF) fold = fold_latin1[cp - 0xC0];
        else if (cp >= 0x100 && cp <= 0x17F) fold = fold_ext_a[cp - 0x100];
        if (cp < 0x80) {
            char ch = (char)cp;
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
            out[o++] = ch;
        } else if (fold && *fold) {
            size_t fl = strlen(fold);
            memcpy(out + o, fold, fl);
            o += fl;
        } else {
            memcpy(out + o, p, len);
            o += len;
        }
        p += len;
    }
    out[o] = '\0';
    return out;
}

/* ---------------------------------------------------------------- rows */

typedef struct {
    bv_arena *a;                /* the caller's arena: strings the rows point to */
    bv_arena *tmp;              /* scratch: FHIRPath collections, the growing row array */
    bv_index_row *rows;
    size_t n, cap;
} row_list;

static bv_index_row *new_row(row_list *rl, bv_index_kind kind, const char *param, int32_t group)
{
    if (rl->n == rl->cap) {
        size_t nc = rl->cap ? rl->cap * 2 : 32;
        bv_index_row *nr = bv_arena_alloc(rl->tmp, nc * sizeof *nr);
        if (rl->n) memcpy(nr, rl->rows, rl->n * sizeof *nr);
        rl->rows = nr;
        rl->cap = nc;
    }
    bv_index_row *r = &rl->rows[rl->n++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->param = param;
    r->group = group;
    return r;
}

static const char *prim_text(const json_value *v)
{
    if (!v) return NULL;
    if (v->type == JSON_STRING) return v->u.str.s;
    if (v->type == JSON_NUMBER) return v->u.num.text;
    if (v->type == JSON_TRUE) return "true";
    if (v->type == JSON_FALSE) return "false";
    return NULL;
}

/* A System value's text, or the primitive node's text; NULL for complex nodes. */
static const char *item_text(bv_arena *a, const fp_item *it)
{
    if (it->kind == BV_FP_NODE) return json_is(it->node, JSON_OBJECT) ? NULL : prim_text(it->node);
    return fp_to_string(a, it);
}

static bool is_type(const fp_item *it, const char *t)
{
    return it->kind == BV_FP_NODE && it->type && fp_fhir_type_derives(it->type, t);
}

static void add_string(row_list *rl, const char *param, int32_t g, const char *s)
{
    if (!s || !*s) return;
    bv_index_row *r = new_row(rl, BV_IX_STRING, param, g);
    r->text = s;
    r->norm = bv_fhir_normalize_string(rl->a, s);
}

/* Rows for each part of obj not in skip (bit k: keys[k]; part_rows). */
static void add_string_parts(row_list *rl, const char *param, int32_t g, const json_value *obj, const char *const *keys,
                             unsigned skip)
{
    for (size_t k = 0; keys[k]; k++) {
        if (skip & (1u << k)) continue;
        const json_value *v = json_get(obj, keys[k]);
        if (json_is(v, JSON_ARRAY))
            for (size_t i = 0; i < v->u.arr.count; i++) add_string(rl, param, g, json_str(v->u.arr.items[i]));
        else add_string(rl, param, g, json_str(v));
    }
}

static void rows_string(row_list *rl, const char *param, int32_t g, const fp_item *it, unsigned covered_parts)
{
    if (is_type(it, "HumanName")) { add_string_parts(rl, param, g, it->node, name_parts, covered_parts); return; }
    if (is_type(it, "Address")) { add_string_parts(rl, param, g, it->node, address_parts, covered_parts); return; }
    if (it->kind == BV_FP_NODE && json_is(it->node, JSON_OBJECT)) {
        const json_value *o = it->node;
        for (size_t i = 0; i < o->u.obj.count; i++)
            if (o->u.obj.members[i].key[0] != '_') add_string(rl, param, g, json_str(o->u.obj.members[i].value));
        return;
    }
    add_string(rl, param, g, item_text(rl->a, it));
}

static void add_token(row_list *rl, const char *param, int32_t g, const char *system, const char *code, const char *text)
{
    if ((!code || !*code) && (!text || !*text)) return;
    bv_index_row *r = new_row(rl, BV_IX_TOKEN, param, g);
    r->system = system && *system ? system : NULL;
    r->code = code && *code ? code : NULL;
    r->text = text && *text ? text : NULL;
}

static void rows_token(row_list *rl, const char *param, int32_t g, const fp_item *it)
{
    const json_value *o = it->node;
    if (is_type(it, "Coding")) {
        add_token(rl, param, g, json_get_str(o, "system"), json_get_str(o, "code"), json_get_str(o, "display"));
        return;
    }
    if (is_type(it, "CodeableConcept")) {
        const char *text = json_get_str(o, "text");
        const json_value *codings = json_get(o, "coding");
        size_t n = 0;
        for (size_t i = 0; i < json_count(codings); i++) {
            const json_value *cd = json_at(codings, i);
            const char *code = json_get_str(cd, "code");
            if (!code) continue;
            const char *display = json_get_str(cd, "display");
            add_token(rl, param, g, json_get_str(cd, "system"), code, text ? text : display);
            /* :text also matches a coding's display when the concept's text differs */
            if (text && display && strcmp(text, display) != 0) add_token(rl, param, g, NULL, NULL, display);
            n++;
        }
        if (n == 0 && text) add_token(rl, param, g, NULL, NULL, text);
        return;
    }
    if (is_type(it, "Identifier")) {
        const char *value = json_get_str(o, "value");
        add_token(rl, param, g, json_get_str(o, "system"), value, json_get_str(json_get(o, "type"), "text"));
        /* :of-type: "<param>:of-type" rows with the type coding's system and "code|value" */
        const json_value *tc = json_get(json_get(o, "type"), "coding");
        for (size_t i = 0; value && *value && i < json_count(tc); i++) {
            const char *tcode = json_get_str(json_at(tc, i), "code");
            if (!tcode || !*tcode) continue;
            add_token(rl, bv_arena_printf(rl->a, "%s:of-type", param), 0, json_get_str(json_at(tc, i), "system"),
                      bv_arena_printf(rl->a, "%s|%s", tcode, value), NULL);
        }
        return;
    }
    if (is_type(it, "ContactPoint")) {
        add_token(rl, param, g, NULL, json_get_str(o, "value"), NULL);
        return;
    }
    if (it->kind == BV_FP_NODE && json_is(o, JSON_OBJECT)) return;   /* Quantity, Reference, ...: not tokens */
    /* a bound `code` (Patient.gender) has its value set's code system as implied system */
    const char *implied = it->kind == BV_FP_NODE && it->elem ? fhir_binding_system_of(it->elem->binding_valueset) : NULL;
    add_token(rl, param, g, implied, item_text(rl->a, it), NULL);
}

static bool is_target(const fhir_search_param *sp, const char *type)
{
    if (!sp || sp->n_targets == 0) return true;
    for (unsigned k = 0; k < sp->n_targets; k++)
        if (strcmp(sp->targets[k], type) == 0) return true;
    return false;
}

static void rows_reference(row_list *rl, const fhir_search_param *sp, const char *param, int32_t g, const fp_item *it)
{
    const char *ref = NULL;
    bool is_ref = is_type(it, "Reference");
    if (is_ref) {
        ref = json_get_str(it->node, "reference");
        /* :identifier: a token row "<param>:identifier" for Reference.identifier */
        const json_value *ident = json_get(it->node, "identifier");
        if (json_is(ident, JSON_OBJECT) && json_get_str(ident, "value"))
            add_token(rl, bv_arena_printf(rl->a, "%s:identifier", param), 0, json_get_str(ident, "system"),
                      json_get_str(ident, "value"), NULL);
    }
    else if (it->kind == BV_FP_NODE && json_is(it->node, JSON_OBJECT) && it->type && fhir_is_resource_type(it->type)) {
        /* a resource element (Bundle.entry[0].resource): only when it is of a target type */
        const char *id = json_get_str(it->node, "id");
        if (!id || !is_target(sp, it->type)) return;
        bv_index_row *r = new_row(rl, BV_IX_REFERENCE, param, g);
        r->ref_type = it->type;
        r->ref_id = id;
        r->text = bv_arena_printf(rl->a, "%s/%s", it->type, id);
        return;
    } else ref = item_text(rl->a, it);
    if (!ref || !*ref || ref[0] == '#') return;
    bv_index_row *r = new_row(rl, BV_IX_REFERENCE, param, g);
    r->text = ref;
    if (is_ref) {
        const char *type, *id, *ver;
        if (fp_ref_parse(rl->a, ref, &type, &id, &ver)) {
            r->ref_type = type;
            r->ref_id = id;
            r->ref_version = ver;
        }
    }
}

static bool date_range(const char *s, int64_t *lo, int64_t *hi)
{
    return s && bv_fhir_date_range(s, lo, hi) == BV_OK;
}

static void add_period(row_list *rl, const char *param, int32_t g, const json_value *p)
{
    const char *st = json_get_str(p, "start"), *en = json_get_str(p, "end");
    int64_t lo = BV_EXTRACT_DATE_MIN, hi = BV_EXTRACT_DATE_MAX, x;
    bool ok_s = date_range(st, &lo, &x), ok_e = date_range(en, &x, &hi);
    if (!ok_s) lo = BV_EXTRACT_DATE_MIN;
    if (!ok_e) hi = BV_EXTRACT_DATE_MAX;
    if (!ok_s && !ok_e) return;
    if (lo > hi) return;
    bv_index_row *r = new_row(rl, BV_IX_DATE, param, g);
    r->lo = lo;
    r->hi = hi;
}

static void add_date(row_list *rl, const char *param, int32_t g, const char *s)
{
    int64_t lo, hi;
    if (!date_range(s, &lo, &hi)) return;
    bv_index_row *r = new_row(rl, BV_IX_DATE, param, g);
    r->lo = lo;
    r->hi = hi;
}

static void rows_date(row_list *rl, const char *param, int32_t g, const fp_item *it)
{
    if (is_type(it, "Period")) { add_period(rl, param, g, it->node); return; }
    if (is_type(it, "Timing")) {
        const json_value *ev = json_get(it->node, "event");
        for (size_t i = 0; i < json_count(ev); i++) add_date(rl, param, g, json_str(json_at(ev, i)));
        const json_value *bp = json_get(json_get(it->node, "repeat"), "boundsPeriod");
        if (bp) add_period(rl, param, g, bp);
        return;
    }
    if (it->kind == BV_FP_NODE) {
        const char *sys = fp_primitive_system(it->type);
        if (sys && (!strcmp(sys, "Date") || !strcmp(sys, "DateTime"))) add_date(rl, param, g, json_str(it->node));
        return;
    }
    if (it->kind == BV_FP_DATE || it->kind == BV_FP_DATETIME) add_date(rl, param, g, it->str);
}

/* num and its implicit precision range from a decimal's text */
static bool number_from_text(const char *text, double *num, double *lo, double *hi)
{
    if (!text) return false;
    char *endp;
    double d = strtod(text, &endp);   /* text comes from a validated JSON number or a System value */
    if (endp == text || !isfinite(d)) return false;
    int prec = fp_decimal_prec(text);
    double half = 0.5 * pow(10, -prec);
    *num = d;
    *lo = d - half;
    *hi = d + half;
    return true;
}

static void rows_number(row_list *rl, const char *param, int32_t g, const fp_item *it)
{
    const char *text = NULL;
    if (it->kind == BV_FP_NODE) {
        if (!json_is(it->node, JSON_NUMBER)) return;
        text = it->node->u.num.text;
    } else if (it->kind == BV_FP_INTEGER || it->kind == BV_FP_DECIMAL) {
        text = fp_to_string(rl->a, it);
    }
    double num, lo, hi;
    if (!number_from_text(text, &num, &lo, &hi)) return;
    bv_index_row *r = new_row(rl, BV_IX_NUMBER, param, g);
    r->num = num;
    r->num_lo = lo;
    r->num_hi = hi;
}

static void rows_quantity(row_list *rl, const char *param, int32_t g, const fp_item *it)
{
    const json_value *o = it->node;
    const char *system = NULL, *code = NULL, *text = NULL;
    if (is_type(it, "Quantity")) {
        const json_value *v = json_get(o, "value");
        if (!json_is(v, JSON_NUMBER)) return;
        text = v->u.num.text;
        system = json_get_str(o, "system");
        code = json_get_str(o, "code");
        if (!code) code = json_get_str(o, "unit");
    } else if (is_type(it, "Money")) {
        const json_value *v = json_get(o, "value");
        if (!json_is(v, JSON_NUMBER)) return;
        text = v->u.num.text;
        code = json_get_str(o, "currency");
        if (code) system = "urn:iso:std:iso:4217";
    } else if (it->kind == BV_FP_QUANTITY) {
        text = fp_format_decimal(rl->a, it->d, it->prec);
        code = it->str;
    } else if (it->kind == BV_FP_NODE && json_is(o, JSON_NUMBER)) {
        text = o->u.num.text;
    } else {
        return;
    }
    double num, lo, hi;
    if (!number_from_text(text, &num, &lo, &hi)) return;
    bv_index_row *r = new_row(rl, BV_IX_QUANTITY, param, g);
    r->num = num;
    r->num_lo = lo;
    r->num_hi = hi;
    r->system = system;
    r->code = code;
    /* a UCUM value Bevan can convert: a second row "<param>:ucum" in the canonical unit */
    const char *canon;
    double cn, clo, chi;
    if (system && strcmp(system, BV_UCUM_SYSTEM) == 0 && bv_ucum_canonical(code, num, &cn, &canon) &&
        bv_ucum_canonical(code, lo, &clo, NULL) && bv_ucum_canonical(code, hi, &chi, NULL)) {
        bv_index_row *u = new_row(rl, BV_IX_QUANTITY, bv_arena_printf(rl->a, "%s:ucum", param), g);
        u->num = cn;
        u->num_lo = clo;
        u->num_hi = chi;
        u->system = BV_UCUM_SYSTEM;
        u->code = canon;
    }
}

static void rows_uri(row_list *rl, const char *param, int32_t g, const fp_item *it)
{
    const char *t = item_text(rl->a, it);
    if (!t || !*t) return;
    bv_index_row *r = new_row(rl, BV_IX_URI, param, g);
    r->text = t;
}

/* covered_parts: string parts another parameter stores (part_rows); 0 for composite components. */
static void rows_for(row_list *rl, const fhir_search_param *sp, fhir_sp_type type, const char *param, int32_t g,
                     const fp_coll *vals, unsigned covered_parts)
{
    for (size_t i = 0; i < vals->n; i++) {
        const fp_item *it = &vals->items[i];
        switch (type) {
        case FHIR_SP_STRING: rows_string(rl, param, g, it, covered_parts); break;
        case FHIR_SP_TOKEN: rows_token(rl, param, g, it); break;
        case FHIR_SP_REFERENCE: rows_reference(rl, sp, param, g, it); break;
        case FHIR_SP_DATE: rows_date(rl, param, g, it); break;
        case FHIR_SP_NUMBER: rows_number(rl, param, g, it); break;
        case FHIR_SP_QUANTITY: rows_quantity(rl, param, g, it); break;
        case FHIR_SP_URI: rows_uri(rl, param, g, it); break;
        case FHIR_SP_COMPOSITE: case FHIR_SP_SPECIAL: break;
        }
    }
}

/* ---------------------------------------------------------------- driver */

static bool inherited_indexed(const char *code)
{
    return !strcmp(code, "_profile") || !strcmp(code, "_tag") || !strcmp(code, "_security") || !strcmp(code, "_source");
}

/* The parameter's expression on the resource: its kept branches in order, deduplicated like `|`
 * (first occurrences kept, FHIRPath equality) when the expression was a union. */
static int eval_branches(bv_arena *a, bv_arena *tmp, const sp_compiled *cc, const fp_item *root,
                         const fp_opts *opts, fp_coll *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = '\0';
    if (cc->n_branches == 1 && !cc->is_union)
        return fp_eval_items(a, tmp, cc->branches[0], root, root, 1, opts, out, err, errlen);
    fp_coll all = {0};
    for (size_t b = 0; b < cc->n_branches; b++) {
        fp_coll v;
        int rc = fp_eval_items(a, tmp, cc->branches[b], root, root, 1, opts, &v, err, errlen);
        if (rc != BV_OK) return rc;
        if (all.n == 0) {
            all = v;
            continue;
        }
        if (v.n == 0) continue;
        if (all.n + v.n > all.cap) {
            size_t nc = (all.n + v.n) * 2;
            fp_item *ni = bv_arena_alloc(tmp, nc * sizeof *ni);
            memcpy(ni, all.items, all.n * sizeof *ni);
            all.items = ni;
            all.cap = nc;
        }
        memcpy(all.items + all.n, v.items, v.n * sizeof *v.items);
        all.n += v.n;
    }
    if (all.n <= 1) {
        *out = all;
        return BV_OK;
    }
    fp_ctx c = {.a = a, .tmp = tmp, .err = err, .errlen = errlen, .opts = *opts};
    fp_set *seen = fp_set_new(&c);
    for (size_t i = 0; i < all.n; i++)
        if (fp_set_add(&c, seen, &all.items[i])) fp_push(&c, out, &all.items[i]);
    return BV_OK;
}

static int extract_param(bv_arena *a, const fp_item *root, const fhir_search_param *sp, row_list *rl,
                         int32_t *next_group, size_t *n_errors)
{
    const sp_compiled *cc = compiled_for(sp);
    if (!cc || !cc->expr) return BV_OK;
    fp_opts opts = {.lenient_as = true};
    fp_coll vals;
    char err[256];
    if (eval_branches(a, rl->tmp, cc, root, &opts, &vals, err, sizeof err) != BV_OK) {
        (*n_errors)++;
        bv_log(BV_LOG_WARN, "search parameter %s.%s: evaluation failed: %s", sp->resource, sp->code, err);
        return BV_OK;
    }
    if (sp->type != FHIR_SP_COMPOSITE) {
        rows_for(rl, sp, sp->type, sp->code, 0, &vals, cc->covered_parts);
        return BV_OK;
    }
    for (size_t i = 0; i < vals.n; i++) {
        int32_t g = *next_group;
        size_t mark = rl->n;
        bool complete = true;
        for (unsigned k = 0; k < sp->n_components && complete; k++) {
            fp_coll cv;
            if (fp_eval_items(a, rl->tmp, cc->components[k], root, &vals.items[i], 1, &opts, &cv, err, sizeof err) != BV_OK) {
                (*n_errors)++;
                bv_log(BV_LOG_WARN, "search parameter %s.%s component %u: evaluation failed: %s", sp->resource,
                       sp->code, k, err);
                complete = false;
                break;
            }
            size_t before = rl->n;
            rows_for(rl, NULL, cc->component_types[k], cc->component_params[k], g, &cv, 0);
            complete = rl->n > before;
        }
        if (!complete) rl->n = mark;   /* a composite value needs every component */
        else (*next_group)++;
    }
    return BV_OK;
}

size_t bv__fhir_extract_compile_errors(void)
{
    pthread_once(&cache_once, build_cache);
    return cache_compile_errors;
}

int bv__fhir_extract_index_ex(bv_arena *a, const json_value *resource, bv_index_row **rows, size_t *n,
                              size_t *n_errors)
{
    *rows = NULL;
    *n = 0;
    size_t errs = 0;
    const char *type = json_get_str(resource, "resourceType");
    if (!type || !fhir_is_resource_type(type)) return BV_EINVAL;
    /* FHIRPath collections and sets are temporary: a small scratch arena, freed here, keeps them
     * out of the caller's (often long-lived, request-wide) arena; its memory is reused by malloc. */
    row_list rl = {.a = a, .tmp = bv_arena_new(32u << 10)};
    fp_item root = fp_resource_item(resource);
    int32_t next_group = 1;
    size_t np;
    const fhir_search_param *ps = fhir_search_params_of(type, &np);
    for (size_t i = 0; i < np; i++) {
        if (ps[i].type == FHIR_SP_SPECIAL || !ps[i].expression) continue;
        if (!stores_own_rows(&ps[i])) continue; /* the same rows as an earlier one, or the union of others' */
        extract_param(a, &root, &ps[i], &rl, &next_group, &errs);
    }
    const fhir_search_param *base = fhir_search_params_of("Resource", &np);
    for (size_t i = 0; i < np; i++)
        if (inherited_indexed(base[i].code)) extract_param(a, &root, &base[i], &rl, &next_group, &errs);
    if (rl.n) {
        *rows = bv_arena_alloc(a, rl.n * sizeof **rows);
        memcpy(*rows, rl.rows, rl.n * sizeof **rows);
    }
    *n = rl.n;
    bv_arena_free(rl.tmp);
    if (n_errors) *n_errors = errs;
    return BV_OK;
}

int bv_fhir_extract_index(bv_arena *a, const json_value *resource, bv_index_row **rows, size_t *n)
{
    return bv__fhir_extract_index_ex(a, resource, rows, n, NULL);
}
