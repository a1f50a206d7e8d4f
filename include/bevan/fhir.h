/* Bevan FHIR logic: OperationOutcomes, validation, FHIRPath, search-index extraction and search
 * parsing. Pure logic: no sockets, no SQL, no files. Everything allocates from the arena given. */
#ifndef BEVAN_FHIR_H
#define BEVAN_FHIR_H

#include "bevan/core.h"
#include "bevan/json.h"
#include "bevan/store.h"
#include "bevan/fhir_defs.h"

/* ---- OperationOutcome ---- */
typedef enum { BV_SEV_FATAL, BV_SEV_ERROR, BV_SEV_WARNING, BV_SEV_INFORMATION } bv_severity;

typedef struct {
    bv_severity severity;
    const char *code;         /* IssueType code: "invalid", "structure", "required", "value", "invariant",
                                 "security", "not-found", "deleted", "conflict", "too-costly", "not-supported",
                                 "processing", "exception", "duplicate", "business-rule", "informational" */
    const char *expression;   /* FHIRPath-style location, e.g. "Patient.birthDate" or "Bundle.entry[2].resource"; NULL ok */
    const char *diagnostics;
} bv_issue;

typedef struct {
    bv_arena *arena;
    bv_issue *issues;
    size_t n, cap;
    size_t n_errors;          /* fatal + error */
} bv_outcome;

void bv_outcome_init(bv_outcome *oo, bv_arena *a);
void bv_outcome_add(bv_outcome *oo, bv_severity sev, const char *code, const char *expression,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* {"resourceType":"OperationOutcome","issue":[...]}; an empty outcome gets one information issue "All OK". */
json_value *bv_outcome_to_json(const bv_outcome *oo);

/* ---- Validation ---- */
typedef struct {
    bool allow_missing_id;    /* create: id may be absent (the server assigns it) */
    bool check_nhs_number;    /* UK Core: identifier system https://fhir.nhs.uk/Id/nhs-number must pass Modulus 11 */
} bv_validate_opts;

/* Validates a resource (a parsed JSON object) against the generated R4 definitions: resourceType
 * known (and equal to expected_type when not NULL); unknown elements; primitive formats and
 * ranges; cardinality; choice types; required code bindings; contained resources; unknown
 * modifierExtension; narrative XHTML without active content; NHS number check digit.
 * Adds issues to oo with FHIRPath-style expressions; returns the number of errors added. */
size_t bv_fhir_validate(const json_value *resource, const char *expected_type, const bv_validate_opts *opt,
                        bv_outcome *oo);
bool bv_fhir_valid_id(const char *id);                 /* [A-Za-z0-9\-\.]{1,64} */
bool bv_nhs_number_valid(const char *s);               /* 10 digits, Modulus 11 check digit */
/* Primitive format checks, shared with search parsing. */
bool bv_fhir_valid_date(const char *s);                /* YYYY, YYYY-MM, YYYY-MM-DD */
bool bv_fhir_valid_datetime(const char *s);
bool bv_fhir_valid_instant(const char *s);
bool bv_fhir_valid_time(const char *s);

/* Date/dateTime/instant (any precision, optional timezone) -> inclusive range [lo, hi] in ms since
 * epoch. A value without a timezone is taken in the server's zone (bv_tz_set: `--tz`, default UTC).
 * Returns BV_EINVAL if s is not a valid FHIR date/dateTime/instant. */
int bv_fhir_date_range(const char *s, int64_t *lo, int64_t *hi);

/* ---- FHIRPath (src/fhir/fhirpath*.c) ---- */
typedef struct bv_fp_expr bv_fp_expr;       /* compiled expression (arena-owned) */

typedef enum {
    BV_FP_BOOLEAN, BV_FP_INTEGER, BV_FP_DECIMAL, BV_FP_STRING, BV_FP_DATE, BV_FP_DATETIME, BV_FP_TIME,
    BV_FP_QUANTITY, BV_FP_NODE   /* a JSON node of the resource (element), with its FHIR type name */
} bv_fp_kind;

typedef struct {
    bv_fp_kind kind;
    const json_value *node;   /* BV_FP_NODE: the element's JSON (object, or primitive value) */
    const char *fhir_type;    /* BV_FP_NODE: FHIR type name when known ("HumanName", "date", "Reference") */
    const char *str;          /* STRING/DATE/DATETIME/TIME text; DECIMAL text; QUANTITY unit */
    int64_t i;                /* INTEGER, BOOLEAN (0/1) */
    double d;                 /* DECIMAL, QUANTITY value */
} bv_fp_value;

typedef struct {
    bv_fp_value *items;
    size_t n, cap;
} bv_fp_collection;

/* Compile an expression. On error returns NULL and writes a message into err. */
bv_fp_expr *bv_fhirpath_compile(bv_arena *a, const char *expr, char *err, size_t errlen);
/* Evaluate against a resource (root type taken from resourceType). resolve() returns references
 * as typed stubs (enough for `resolve() is Patient`). Returns BV_OK or BV_EINVAL with err set. */
int bv_fhirpath_eval(bv_arena *a, const bv_fp_expr *e, const json_value *resource,
                     bv_fp_collection *out, char *err, size_t errlen);

/* Evaluation options (bv_fhirpath_eval uses all-false). */
typedef struct {
    bool strict;      /* FHIRPath strict mode: a leading type name that does not match the context
                         (Encounter.name on a Patient) is an error instead of empty; iif() criteria
                         must be Boolean */
    bool lenient_as;  /* `x as T` / x.as(T) on several items filters like ofType(T) instead of failing
                         (what search-parameter extraction needs for e.g. useContext.value as Quantity) */
} bv_fp_options;
/* As bv_fhirpath_eval with options; resource may be NULL (then the context is empty).
 * A BV_FP_NODE of a primitive that has only extensions (no value) has node = its "_name" object. */
int bv_fhirpath_eval_opts(bv_arena *a, const bv_fp_expr *e, const json_value *resource,
                          const bv_fp_options *opt, bv_fp_collection *out, char *err, size_t errlen);
/* The source text a compiled expression was made from. */
const char *bv_fhirpath_source(const bv_fp_expr *e);

/* FHIRPath Patch (R4, "FHIRPath Patch"): applies the "operation" parameters of a Parameters
 * resource (add, insert, delete, replace, move) to doc in place, in order. Returns BV_OK;
 * BV_EINVAL for a malformed Parameters (unknown type, missing part, invalid FHIRPath: a 400);
 * BV_ECONFLICT for an operation that cannot be applied to this resource (path selects nothing or
 * several elements, index out of range, unknown element name: a 422). err says which operation
 * and why. On failure doc may be partly changed: patch a copy. The result needs validating. */
int bv_fhirpath_patch(bv_arena *a, json_value *doc, const json_value *params, char *err, size_t errlen);

/* ---- Search-index extraction (src/fhir/extract.c) ---- */
/* Evaluates every search parameter of the resource's type and produces index rows. */
int bv_fhir_extract_index(bv_arena *a, const json_value *resource, bv_index_row **rows, size_t *n);
/* Normalises a string for string search: lower-case, accents folded, whitespace collapsed. */
char *bv_fhir_normalize_string(bv_arena *a, const char *s);

/* ---- UCUM (src/fhir/ucum.c) ---- */
#define BV_UCUM_SYSTEM "http://unitsofmeasure.org"
/* A common clinical UCUM unit converted to the canonical unit of its dimension (mg -> g,
 * [degF] -> K, mm[Hg] -> Pa, mg/dL -> g/L, mmol/L -> mol/L, ...). False when code is not one
 * Bevan converts. Quantity rows of UCUM values get a second row "<param>:ucum" in the canonical
 * unit, and a query in a convertible unit is matched against those rows. */
bool bv_ucum_canonical(const char *code, double value, double *out, const char **canon);

/* ---- Search parsing (src/fhir/search_parse.c) ---- */
typedef bv_pair bv_param;     /* name as given ("name:exact"), value decoded */

/* Splits and form-decodes a query string ("a=1&b=x%20y", no '?') into params (arena).
 * BV_ETOOBIG past BV_MAX_QUERY_PARAMS pieces, BV_EINVAL for a bad %-escape. */
int bv_fhir_parse_query_string(bv_arena *a, const char *qs, bv_param **out, size_t *n);

/* One _include / _revinclude value. */
typedef struct {
    bool rev;                 /* _revinclude */
    bool iterate;             /* :iterate: applied to included resources too */
    const char *type;         /* source type (_include) / referring type (_revinclude); NULL for "*" */
    const char *param;        /* reference parameter of type; NULL for "*" (every reference parameter) */
    const char *target;       /* optional target type */
} bv_include;

typedef struct {
    bv_search search;         /* what the store runs */
    /* result-shaping parameters */
    const char *summary;      /* _summary value or NULL */
    const char *elements;     /* _elements value or NULL */
    const char *total;        /* _total value or NULL */
    const char *const *includes; size_t n_includes;       /* _include values */
    const char *const *revincludes; size_t n_revincludes; /* _revinclude values */
    const bv_include *incs; size_t n_incs;                /* both, parsed, in order */
    bv_param *applied;        /* parameters applied, in order, for the self link */
    size_t n_applied;
} bv_search_request;

/* Parses query parameters for a search on `type` (NULL for system-level) into req.
 * strict: unknown/unsupported parameters are errors (400); lenient: ignored (not in applied).
 * Returns BV_OK or BV_EINVAL with issues in oo. */
int bv_fhir_parse_search(bv_arena *a, const char *type, const bv_param *params, size_t n_params,
                         bool strict, bv_search_request *req, bv_outcome *oo);

#endif
