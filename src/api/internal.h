/* Private to src/api: the request context and helpers shared by the interaction files. */
#ifndef BEVAN_API_INTERNAL_H
#define BEVAN_API_INTERNAL_H

#include "bevan/api.h"
#include "bevan/fhir.h"
#include "bevan/json.h"

struct api_authz_cfg;
struct api_az;

struct bv_api {
    bv_store *store;
    struct api_authz_cfg *az;  /* NULL = auth off (authz.h) */
    bool check_nhs_number;
    char base_path[64];
    char *capability;        /* CapabilityStatement JSON, built once */
    size_t capability_len;
};

typedef struct {
    bv_api *api;
    bv_request *req;
    bv_response *resp;
    bv_arena *a;
    const char *base;        /* absolute base of the FHIR API, e.g. http://127.0.0.1:8080/fhir */
    bool pretty;
    bool in_bundle;          /* processing a batch entry: no HTTP-level extras */
    struct api_az *az;       /* the authenticated caller; NULL when auth is off or the route is public */
} api_ctx;

/* A deferred write has its answer in c->resp: audit it and hand it to the HTTP layer. */
void api_deferred_done(api_ctx *c);

/* ---- responses (api.c) ---- */
void api_error(api_ctx *c, int status, const char *code, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void api_send_outcome(api_ctx *c, int status, const bv_outcome *oo);
void api_send_json(api_ctx *c, int status, const json_value *v);
/* Send stored JSON bytes as they are (pretty-printed only when _pretty=true). */
void api_send_raw(api_ctx *c, int status, const char *body, size_t len);
void api_version_headers(api_ctx *c, const bv_record *r);
/* 400 for structural problems, 422 for business rules (NHS number) — from the issues' codes. */
int api_status_for_outcome(const bv_outcome *oo);
const char *api_query(const api_ctx *c, const char *name);   /* first query value or NULL */
const char *api_header(const api_ctx *c, const char *name);
/* An ETag / If-Match value (W/"3", "3" or 3) -> version. NULL gives 0 (none); malformed or 0 is
 * BV_EINVAL. */
int api_parse_etag(const char *s, int64_t *version);
/* Parse request query parameters (excluding _format/_pretty) into params. */
void api_request_params(api_ctx *c, bv_param **out, size_t *n);

/* ---- resource preparation (write.c) ---- */
typedef struct {
    const char *type;
    const char *id;
    json_value *res;
    bv_index_row *rows;
    size_t n_rows;
} api_prepared;

/* Parse body as a resource; 400/413 sent on failure (returns non-zero). */
int api_parse_body(api_ctx *c, json_value **out);
/* Validate and extract; on failure sends the outcome and returns non-zero. */
int api_prepare(api_ctx *c, json_value *res, const char *expected_type, bool allow_missing_id,
                bv_outcome *oo);
/* Set id, meta.versionId and meta.lastUpdated on res and serialise it into the arena. */
const char *api_finalize(bv_arena *a, json_value *res, const char *id, int64_t version, int64_t last_updated_ms,
                         size_t *len_out);
/* api_finalize for version 1 done ahead, off the writer thread: the body with a placeholder
 * lastUpdated, and the offset of its 24 characters, which api_stamp fills in on the writer. */
typedef struct {
    char *body;
    size_t len;
    size_t lu_off;
} api_preserialized;
int api_preserialize(bv_arena *a, json_value *res, const char *id, api_preserialized *out);
/* Writes the time into p->body (in place: a body is stamped once, by its unit) and returns it. */
const char *api_stamp(api_preserialized *p, int64_t last_updated_ms);

/* ---- one write, as a unit on the writer thread (crud.c) ---- */
typedef enum { OP_CREATE, OP_UPDATE, OP_DELETE, OP_PATCH } api_op_kind;

typedef struct {
    api_ctx *c;
    api_op_kind kind;
    const char *type;
    const char *id;            /* NULL for conditional forms until resolved */
    json_value *res;
    bv_index_row *rows;
    size_t n_rows;
    int64_t if_match;          /* 0 = none */
    bv_search *cond;           /* If-None-Exist / conditional update / conditional delete */
    const json_value *patch;   /* JSON Patch array, or a FHIRPath Patch Parameters (fhirpath_patch) */
    bool fhirpath_patch;
    api_preserialized pre;     /* a create's body serialised before the writer (pre.body NULL: none) */
    /* results */
    int status;
    const char *code;
    char msg[400];
    bv_outcome oo;             /* validation issues found inside the unit (PATCH) */
    bv_record rec;
    bool wrote;
    const bv_record *cur;      /* the current version the unit replaces, if any (authz) */
} api_unit;

/* Conditional update: which id the write goes to, given the resources the criteria matched (n is
 * 0 or 1). One match: its id, and a body id that differs is a conflict (returns 409, message in
 * msg). No match: the body's id, else a new one. */
int api_conditional_update_id(bv_arena *a, const json_value *res, const bv_record *found, size_t n,
                              const char **id, char *msg, size_t msglen);

/* bv_store_write_fn: performs u (ctx) inside the writer's transaction. Non-zero = failed (status set). */
int api_unit_run(bv_store_txn *t, void *ctx);

/* ---- interactions ---- */
void api_read(api_ctx *c, const char *type, const char *id);
void api_vread(api_ctx *c, const char *type, const char *id, const char *vid);
void api_create(api_ctx *c, const char *type);
void api_update(api_ctx *c, const char *type, const char *id);
void api_conditional_update(api_ctx *c, const char *type);
void api_delete(api_ctx *c, const char *type, const char *id);
void api_conditional_delete(api_ctx *c, const char *type);
void api_patch(api_ctx *c, const char *type, const char *id);
void api_history(api_ctx *c, const char *type, const char *id);
void api_search(api_ctx *c, const char *type, const bv_param *params, size_t n);
/* [ctype]/[cid]/[type]?... (type "*" = every member type) and [ctype]/[cid]/$everything. */
/* Appends one AND group (an OR of preds) to s. */
void api_search_add_and(bv_arena *a, bv_search *s, bv_pred *preds, size_t n);
/* The predicates "a compartment parameter of a member type (from table) refers to ref_type/ref_id":
 * for one type its parameters; for a system search (type NULL) every member's, each restricted to
 * its type; with self, also the compartment's own resource. Returns how many (0: not a member). */
size_t api_compartment_preds(bv_arena *a, const fhir_compartment_entry *table, size_t count, const char *type,
                             const char *ref_type, const char *ref_id, bool self, bv_pred **out);
void api_compartment_search(api_ctx *c, const char *ctype, const char *cid, const char *type, const bv_param *params,
                            size_t n);
void api_everything(api_ctx *c, const char *ctype, const char *cid, const bv_param *params, size_t n);
void api_bundle(api_ctx *c);
void api_validate_op(api_ctx *c, const char *type, const char *id);
void api_capability(api_ctx *c);
int api_build_capability(bv_api *api);

/* ---- search helpers (search.c) ---- */
/* Parse a conditional query (If-None-Exist value, or conditional URL query) for type. */
int api_conditional_search(api_ctx *c, const char *type, const char *query, bv_search **out, bv_outcome *oo);
/* The caller's restrictions on a search of type for perm (BV_PERM_*), inside the query; on
 * denial an issue goes to oo and -1 is returned (authz.c). */
int authz_restrict(api_ctx *c, const char *type, bv_search *s, unsigned perm, bv_outcome *oo);

/* ---- JSON Patch (jsonpatch.c) ---- */
int api_json_patch(bv_arena *a, json_value **doc, const json_value *patch, char *err, size_t errlen);

/* ---- _summary / _elements (shape.c) ---- */
/* Returns a reshaped copy, or NULL when the parameters are invalid (message in err). */
json_value *api_shape_resource(bv_arena *a, const json_value *res, const char *summary, const char *elements,
                               char *err, size_t errlen);

#endif
