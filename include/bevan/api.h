/* Bevan API: the FHIR R4 RESTful interactions on top of the store. The HTTP layer calls
 * bv_api_handle for every request; `bevan import` and `bevan demo` call bv_api_process_bundle. */
#ifndef BEVAN_API_H
#define BEVAN_API_H

#include "bevan/auth.h"
#include "bevan/core.h"
#include "bevan/http.h"
#include "bevan/store.h"

typedef struct bv_api bv_api;

/* The operators' health route (not FHIR; docs/operations.md, "Health"). */
#define BV_API_HEALTH_PATH "/healthz"

typedef struct {
    bv_store *store;
    bool check_nhs_number;    /* UK Core NHS number check on Patient identifiers (default on) */
    const char *base_path;    /* "/fhir" */
} bv_api_options;

bv_api *bv_api_new(const bv_api_options *opt);
void bv_api_free(bv_api *api);

/* Switches authentication and authorization on (docs/security.md): every FHIR route but
 * /metadata then needs a bearer token verified by auth (owned by the api from now on), the
 * policy file (NULL = the built-in defaults) gives the staff roles, every access is audited, and
 * /.well-known/smart-configuration and /auth/... are served. The base URL (aud) is the auth's
 * (bv_auth_set_base). */
int bv_api_enable_auth(bv_api *api, bv_auth *auth, const char *policy_path, char *err, size_t errlen);
/* The built-in policy (JSON text): a starting point for a policy file. */
const char *bv_api_default_policy(void);

/* bv_http_handler: ctx is the bv_api. With req->can_defer, a plain create, update, delete or
 * patch returns deferred and is answered by the store's syncer once durable. */
void bv_api_handle(void *ctx, bv_request *req, bv_response *resp);
/* The writes bv_api_handle can defer (bv_http_options.write_inline): POST [type] and
 * PUT/DELETE/PATCH [type]/[id]; their handling before the write does not wait. */
bool bv_api_write_inline(const bv_api *api, const bv_request *req);

typedef struct {
    size_t bundles;
    size_t entries_ok;
    size_t entries_failed;
} bv_import_stats;

/* Processes one batch/transaction Bundle (JSON text) in-process, as POST /fhir would.
 * Returns the HTTP status; the response body (Bundle or OperationOutcome) is put in out when
 * out != NULL. Transaction: all-or-nothing. */
int bv_api_process_bundle(bv_api *api, const char *json, size_t len, bv_buf *out, bv_import_stats *stats);

#endif
