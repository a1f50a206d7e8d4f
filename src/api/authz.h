/* Private to src/api: authentication of requests, authorization decisions, audit and Bevan's own
 * authorization server. Hooked into the dispatcher by a few calls (api.c, crud.c, search.c,
 * bundle.c); everything else lives in authz.c, authn.c, audit.c and authsrv.c. */
#ifndef BEVAN_API_AUTHZ_H
#define BEVAN_API_AUTHZ_H

#include "internal.h"
#include "bevan/auth.h"

#include <pthread.h>

#define AZ_MAX_QUERIES 8
#define AZ_MAX_PATIENTS 8
#define AZ_MAX_REL 16

typedef struct {
    char *name;
    char **types;
    size_t n_types;
    char **hidden;            /* sensitivity label codes this role never sees */
    size_t n_hidden;
    bool relationship;        /* compartment data needs a legitimate relationship */
    bool may_label;           /* may set or change meta.security */
} az_role;

typedef struct {
    char *default_role;
    int btg_minutes;
    az_role *roles;
    size_t n_roles;
    char **patient_hidden;
    size_t n_patient_hidden;
    bool patient_may_label;
} az_policy;

int az_policy_load(az_policy *p, const char *path, char *err, size_t errlen); /* path NULL = defaults */
void az_policy_free(az_policy *p);
const char *az_default_policy(void);

typedef struct audit_item audit_item;

/* Per server: the verifier, the policy, the audit writer. */
typedef struct api_authz_cfg {
    bv_auth *auth;
    az_policy policy;
    /* audit queue: reads and denials are written by a thread within AZ_AUDIT_FLUSH_MS */
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    audit_item *head, *tail;
    size_t queued;
    uint64_t enq_seq, done_seq;
    bool stop;
    pthread_t thread;
} api_authz_cfg;

#define AZ_AUDIT_FLUSH_MS 1000
/* meta.tag system of AuditEvents: "patient-access" (the actor is a patient or proxy),
 * "system-access" (a backend client) - left out of a patient's view of its audit trail */
#define AZ_AUDIT_TAG_SYSTEM "https://bevan.example/fhir/audit-actor"

typedef enum { AZ_DENY, AZ_SYSTEM, AZ_STAFF, AZ_PATIENT } az_mode;

typedef struct {
    az_mode mode;
    bool free;                /* some granting scope has no granular restriction */
    const char *queries[AZ_MAX_QUERIES];
    size_t nq;
} az_grant;

typedef struct {
    const char *pid;
    bool ok;
} az_rel;

/* Per request (arena). */
typedef struct api_az {
    bv_principal p;
    const char *self_patient;  /* patient mode: the patient in context */
    const az_role *role;       /* staff: the role's policy */
    const char *named_patient; /* compartment / $everything patient of this request */
    const char *btg_reason;    /* X-Break-Glass-Reason */
    bool btg;                  /* access went through break-glass */
    bool denied;
    const char *reason;
    az_rel rel[AZ_MAX_REL];
    size_t n_rel;
    /* audit */
    const char *audit_action;  /* C R U D E */
    const char *audit_subtype; /* restful-interaction code */
    const char *audit_what;    /* Type/id */
    const char *audit_patient; /* patient id the access concerns */
    bool audited;              /* written in the write's own transaction */
} api_az;

typedef enum {
    AZ_READ, AZ_VREAD, AZ_HISTORY_INSTANCE, AZ_HISTORY_TYPE, AZ_HISTORY_SYSTEM, AZ_COMPARTMENT, AZ_EVERYTHING,
    AZ_CREATE, AZ_UPDATE, AZ_PATCH, AZ_DELETE, AZ_VALIDATE
} az_op;

/* authz.c */
int authz_gate(api_ctx *c, az_op op, const char *type, const char *id);     /* -1: response sent */
int authz_search(api_ctx *c, bv_search_request *sr);                        /* -1: response sent */
bool authz_include_ok(api_ctx *c, const bv_record *r);
bool authz_version_ok(api_ctx *c, const bv_record *r);
int authz_unit_old(api_unit *u, bv_store_txn *t, const bv_record *cur);    /* non-zero: u failed */
int authz_unit_new(api_unit *u, bv_store_txn *t, const json_value *res, const bv_record *cur);
int authz_unit_read(api_ctx *c, bv_store_txn *t, const bv_record *r);      /* 0 or 403/404 */

/* authn.c: 0 = go on (c->az set when the route is protected), -1 = response sent (401/400) */
int authn_begin(api_ctx *c);
void authn_end(api_ctx *c);

/* audit.c */
int az_put_json(bv_store_txn *t, bv_arena *a, const char *type, const char *json, size_t len);
void audit_start(api_authz_cfg *cfg, bv_store *s);
void audit_stop(api_authz_cfg *cfg, bv_store *s);
void audit_request(api_ctx *c);                                  /* queued (reads, denials, auth failures) */
int audit_unit(api_unit *u, bv_store_txn *t);                    /* in the write's transaction; non-zero: store error */
void audit_auth_failure(api_ctx *c, const char *why);

/* authsrv.c: /.well-known/smart-configuration and /auth/...; true when it answered */
bool authsrv_route(api_ctx *c);
void api_authz_free(bv_api *api);

#endif
