/* FHIRPath engine internals shared by fhirpath*.c and extract.c. Private to src/fhir.
 *
 * Pipeline: fhirpath_parse.c tokenises and parses an expression into an immutable AST
 * (fp_node, arena-owned); fhirpath.c evaluates an AST over the JSON DOM, collection at a time;
 * fhirpath_funcs.c holds the function library; fhirpath_types.c holds the value model (dates,
 * decimals, UCUM-lite quantities, the FHIR type model). A compiled expression is never written
 * after compile, so one can be evaluated from many threads at once (each with its own arena). */
#ifndef BEVAN_FHIRPATH_INTERNAL_H
#define BEVAN_FHIRPATH_INTERNAL_H

#include "bevan/fhir.h"

#define FP_MAX_EXPR_LEN   4096        /* compile: longer expressions are refused */
#define FP_MAX_NESTING    64          /* compile: nesting of parentheses/arguments/operators */
#define FP_MAX_STEPS      2000000u    /* eval: budget of items produced (repeat/descendants bombs) */
#define FP_DEC_DIGITS     8           /* default decimal precision for computed decimals */

/* ---- Values ---- */
enum { FP_P_YEAR = 1, FP_P_MONTH, FP_P_DAY, FP_P_HOUR, FP_P_MINUTE, FP_P_SECOND, FP_P_MS };

typedef struct {
    int y, mo, d, h, mi, s, ms;
    int prec;          /* FP_P_*: the last field present */
    bool is_time;      /* a Time (no date part) */
    bool is_date;      /* a Date (no 'T'); else DateTime or Time */
    bool has_tz;
    int tz_min;        /* offset east of UTC in minutes (Z = 0) */
    int frac_digits;   /* digits written after the seconds' point (0 = none) */
} fp_dt;

typedef struct fp_item {
    bv_fp_kind kind;
    const json_value *node;    /* NODE: the JSON value (NULL for a primitive that only has extensions) */
    const json_value *ext;     /* NODE primitive: its "_name" companion object (id/extension), or NULL */
    const char *type;          /* NODE: FHIR type name, NULL when unknown */
    const fhir_element *elem;  /* NODE: element definition of an inline structure (BackboneElement), or NULL */
    const char *str;           /* STRING text; DATE/DATETIME/TIME text (no '@'); QUANTITY unit; DECIMAL text or NULL */
    int64_t i;                 /* INTEGER, BOOLEAN */
    double d;                  /* DECIMAL, QUANTITY value */
    int prec;                  /* DECIMAL/QUANTITY: digits after the point */
    bool calendar;             /* QUANTITY: unit is a calendar duration keyword (year, month, ...) */
    bool loose;                /* NODE: came from children()/descendants(): unknown names give empty */
} fp_item;

typedef struct {
    fp_item *items;
    size_t n, cap;
} fp_coll;

/* ---- AST ---- */
typedef enum {
    FPN_LIT, FPN_EMPTY, FPN_IDENT, FPN_FUNC, FPN_DOT, FPN_INDEX, FPN_NEG, FPN_POS, FPN_BIN,
    FPN_IS, FPN_AS, FPN_THIS, FPN_INDEXVAR, FPN_TOTAL, FPN_EXT
} fp_ntype;

typedef enum {
    FPO_MUL, FPO_DIV, FPO_IDIV, FPO_MOD, FPO_ADD, FPO_SUB, FPO_CONCAT, FPO_UNION,
    FPO_LT, FPO_LE, FPO_GT, FPO_GE, FPO_EQ, FPO_NE, FPO_EQUIV, FPO_NEQUIV,
    FPO_IN, FPO_CONTAINS, FPO_AND, FPO_OR, FPO_XOR, FPO_IMPLIES
} fp_op;

typedef enum { FP_NS_ANY, FP_NS_SYSTEM, FP_NS_FHIR } fp_ns;

typedef struct {
    fp_ns ns;
    const char *name;          /* "Patient", "string", "Integer" */
} fp_typespec;

typedef struct fp_node fp_node;
struct fp_node {
    fp_ntype t;
    fp_op op;                  /* BIN */
    fp_node *l, *r;            /* DOT: l . r (r is IDENT or FUNC); INDEX: l[r]; BIN; NEG/POS/IS/AS: l */
    fp_node **args;            /* FUNC */
    int nargs;
    int fn;                    /* FUNC: index into fp_functions */
    const char *name;          /* IDENT, FUNC, EXT */
    bool is_type_name;         /* IDENT: name is a known FHIR type (may select the focus by type) */
    fp_item lit;               /* LIT */
    fp_typespec ts;            /* IS/AS, and FUNC is/as/ofType (their argument) */
};

struct bv_fp_expr {
    const fp_node *root;
    const char *src;
};

/* ---- Evaluation ---- */
typedef bv_fp_options fp_opts;

typedef struct fp_env {
    const fp_coll *focus;      /* what a term (identifier/function without a focus) applies to; $this */
    int64_t index;             /* $index */
    bool has_index;
    const fp_coll *total;      /* $total (aggregate) or NULL */
} fp_env;

typedef struct fp_ctx {
    bv_arena *a;               /* values: strings, JSON stubs (may end up in results) */
    bv_arena *tmp;             /* collection arrays and hash sets (scratch), or NULL: a */
    fp_item root;              /* %resource / %context (kind NODE; node NULL when there is none) */
    bool has_root;
    fp_opts opts;
    char *err;
    size_t errlen;
    size_t steps;
    bool too_costly;           /* the step budget ran out (reported by fp_eval) */
    int depth;
} fp_ctx;

/* The arena for collection arrays and sets: items point into the resource or into c->a, never into
 * tmp, so extraction can drop tmp after each resource while keeping the values it turned into rows. */
static inline bv_arena *fp_tmp(const fp_ctx *c) { return c->tmp ? c->tmp : c->a; }

#define FP_MAX_EVAL_DEPTH 400  /* AST recursion during evaluation (long operator/path chains) */

/* fhirpath_parse.c */
fp_node *fp_parse(bv_arena *a, const char *src, char *err, size_t errlen);
bool fp_typespec_from_node(const fp_node *n, fp_typespec *ts);
/* Two compiled expressions (sub)trees that are written the same (literals compared by value). */
bool fp_node_equal(const fp_node *a, const fp_node *b);

/* fhirpath.c */
int fp_fail(fp_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fp_push(fp_ctx *c, fp_coll *out, const fp_item *it);
/* Charge n units of work against the step budget (quadratic set operations). */
void fp_charge(fp_ctx *c, size_t n);
int fp_eval(fp_ctx *c, const fp_node *n, const fp_env *env, fp_coll *out);
int fp_eval_on(fp_ctx *c, const fp_node *n, const fp_coll *focus, fp_coll *out);
int fp_member(fp_ctx *c, const fp_item *it, const char *name, fp_coll *out);
int fp_children(fp_ctx *c, const fp_item *it, fp_coll *out);
/* Evaluate an expression with a given focus (extraction: composite components). root: the item
 * of %resource (fp_resource_item), NULL when there is none. tmp (NULL: a) holds collection arrays
 * and sets, including out's array; values are allocated from a. */
int fp_eval_items(bv_arena *a, bv_arena *tmp, const bv_fp_expr *e, const fp_item *root, const fp_item *focus,
                  size_t nfocus, const fp_opts *o, fp_coll *out, char *err, size_t errlen);
/* Singleton-boolean rule: 1 true, 0 false, -1 empty; BV_EINVAL (error set) when not convertible. */
int fp_to_bool(fp_ctx *c, const fp_coll *v, int *out);
/* A typed node item for a JSON value. */
fp_item fp_node_item(const json_value *v, const json_value *ext, const char *type, const fhir_element *elem);
/* Make the item for a resource (type taken from resourceType). */
fp_item fp_resource_item(const json_value *res);
/* Equality of two items: 1 equal, 0 not, -1 unknown (different date precision, incomparable units). */
int fp_item_equal(fp_ctx *c, const fp_item *a, const fp_item *b);
bool fp_item_equivalent(fp_ctx *c, const fp_item *a, const fp_item *b);
/* Ordering: 0 with *res, 1 = unknown (empty result), BV_EINVAL (error set) when not comparable. */
int fp_item_compare(fp_ctx *c, const fp_item *a, const fp_item *b, int *res);
/* Hash set of items with FHIRPath equality (for union, distinct, repeat, intersect, exclude):
 * items are bucketed by a hash consistent with fp_item_equal == 1 and compared within a bucket. */
typedef struct fp_set fp_set;
fp_set *fp_set_new(fp_ctx *c);
bool fp_set_add(fp_ctx *c, fp_set *s, const fp_item *it);        /* true if it was not there */
bool fp_set_has(fp_ctx *c, const fp_set *s, const fp_item *it);
/* Parses a reference: "Type/id", "Type/id/_history/v", "http://base/Type/id[/_history/v]".
 * Returns false for "#contained", urn: references and anything without a known resource type. */
bool fp_ref_parse(bv_arena *a, const char *ref, const char **type, const char **id, const char **version);
/* Public value of an internal item. */
bv_fp_value fp_public_value(bv_arena *a, const fp_item *it);

/* extract.c: extraction with a count of parameters whose evaluation failed (those are logged and
 * skipped, not fatal); and the number of search expressions that did not compile (0 expected). */
int bv__fhir_extract_index_ex(bv_arena *a, const json_value *resource, bv_index_row **rows, size_t *n,
                              size_t *n_errors);
size_t bv__fhir_extract_compile_errors(void);

/* fhirpath_funcs.c */
typedef int (*fp_fn_impl)(fp_ctx *c, const fp_node *call, const fp_coll *in, const fp_env *env, fp_coll *out);
typedef struct {
    const char *name;
    int min_args, max_args;
    fp_fn_impl impl;
} fp_function;
extern const fp_function fp_functions[];
int fp_function_find(const char *name);

/* fhirpath_types.c: values */
fp_item fp_mk_bool(bool b);
fp_item fp_mk_int(int64_t i);
fp_item fp_mk_dec(double d, int prec);
fp_item fp_mk_str(const char *s);
fp_item fp_mk_qty(double d, int prec, const char *unit, bool calendar);
/* Converts a FHIR primitive node (or a FHIR Quantity) to its System value. Other items are copied.
 * Returns false for a node without a primitive value. */
bool fp_to_system(bv_arena *a, const fp_item *in, fp_item *out);
/* Type of an item: namespace + name (System.Integer, FHIR.Patient); NULL name when unknown. */
const char *fp_item_type_name(const fp_item *it, fp_ns *ns);
bool fp_is_type(const fp_item *it, const fp_typespec *ts);     /* is: subtypes match */
bool fp_is_exact_type(const fp_item *it, const fp_typespec *ts); /* as/ofType: exact */
bool fp_typespec_known(const fp_typespec *ts);
bool fp_fhir_type_derives(const char *type, const char *base);
const fhir_type *fp_type_find(const char *name);      /* fhir_type_find through a hash table */
const char *fp_primitive_system(const char *fhir_type); /* "Integer", "String", ... or NULL */
/* Text of a System value for toString(); NULL if the item has no string form. */
const char *fp_to_string(bv_arena *a, const fp_item *it);

/* decimals */
int fp_decimal_prec(const char *text);                 /* digits after '.', honours exponents */
const char *fp_format_decimal(bv_arena *a, double d, int prec);
bool fp_parse_decimal(const char *s, double *d, int *prec); /* strict [+-]?digits[.digits] */
bool fp_parse_integer(const char *s, int64_t *out);        /* strict [+-]?digits */

/* dates */
bool fp_dt_parse(const char *s, bool time_only, fp_dt *out);
const char *fp_dt_format(bv_arena *a, const fp_dt *dt);
/* Compare: 0 ok with *res in {-1,0,1}; 1 = not comparable (different precision/timezone presence). */
int fp_dt_compare(const fp_dt *a, const fp_dt *b, int *res);
int fp_dt_add(fp_dt *dt, double value, const char *unit, bool calendar, bool subtract); /* 0 or -1 */
int64_t fp_days_from_civil(int64_t y, unsigned m, unsigned d);
void fp_civil_from_days(int64_t z, int *y, int *m, int *d);

/* quantities (UCUM subset) */
typedef struct {
    double factor;     /* value in canonical units = value * factor */
    int8_t dims[8];    /* m g s K mol cd A, [7] = calendar months */
    bool opaque;       /* unknown unit: comparable only with the identical unit string */
} fp_unit;
bool fp_unit_parse(const char *unit, bool calendar, fp_unit *u);
bool fp_unit_same_dims(const fp_unit *a, const fp_unit *b);
bool fp_calendar_word(const char *s, size_t len, const char **canon); /* "days" -> "day" */
/* Quantity compare: 0 with *res, or 1 when not comparable. equiv: precision-tolerant. */
int fp_qty_compare(const fp_item *a, const fp_item *b, int *res);
bool fp_qty_equivalent(const fp_item *a, const fp_item *b);

/* Decimal equality at max(prec) (equal) or rounding to min(prec) (equivalent). */
bool fp_dec_equal(double a, int pa, double b, int pb);
bool fp_dec_equiv(double a, int pa, double b, int pb);

/* UTF-8 helpers */
size_t fp_utf8_len(const char *s);
const char *fp_utf8_at(const char *s, size_t cp);   /* pointer to code point cp (or end) */

#endif
