/* Authorization: every FHIR interaction is checked here before (or inside) the query.
 *
 * Who: a verified bearer token (src/auth) gives the principal and its SMART scopes. A request is
 * decided per resource type and permission (c r u d s) in one of three modes:
 *   system  - a system/ scope (backend services): no compartment restriction;
 *   patient - a patient/ scope, or a user/ scope whose fhirUser is a Patient: only that
 *             patient's compartment (and resources outside every compartment, read-only);
 *   staff   - a user/ scope with a Practitioner/PractitionerRole/... fhirUser: the role's policy
 *             (types, hidden sensitivity labels) and a legitimate relationship with the patient
 *             (registered GP organisation, CareTeam, EpisodeOfCare, referral) or break-glass.
 * Restrictions are predicates added to the search itself (paging and totals stay correct);
 * named resources and included resources are checked record by record; writes are checked inside
 * the write unit, on the old and the new version. Denial style (docs/security.md): a patient
 * asking for another patient's data gets 404 (its existence is not revealed) and searches are
 * filtered; a missing scope or role gives 403; staff without a relationship get 403 naming
 * break-glass. Every access, allowed or denied, is audited (audit.c). */
#include "internal.h"
#include "authz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ policy */
static const char DEFAULT_POLICY[] =
    "{\"default_role\":\"clinician\",\"break_glass_minutes\":30,"
    "\"roles\":{"
    "\"clinician\":{\"types\":[\"*\"],\"relationship\":true,\"hidden_labels\":[],\"may_label\":true},"
    "\"care-worker\":{\"types\":[\"*\"],\"relationship\":true,"
    "\"hidden_labels\":[\"R\",\"V\",\"HIV\",\"PSY\",\"SEX\",\"SDV\",\"STD\",\"ETH\",\"GDIS\",\"SCA\"],\"may_label\":false},"
    "\"administrative\":{\"types\":[\"Patient\",\"Appointment\",\"AppointmentResponse\",\"Schedule\",\"Slot\","
    "\"Practitioner\",\"PractitionerRole\",\"Organization\",\"Location\",\"HealthcareService\",\"Endpoint\"],"
    "\"relationship\":true,\"hidden_labels\":[\"R\",\"V\"],\"may_label\":false},"
    "\"privacy-officer\":{\"types\":[\"AuditEvent\",\"Consent\",\"Task\",\"Patient\",\"Practitioner\","
    "\"PractitionerRole\",\"Organization\",\"Provenance\"],\"relationship\":false,\"hidden_labels\":[],"
    "\"may_label\":false}},"
    "\"patient\":{\"hidden_labels\":[],\"may_label\":false}}";

static int load_strs(const json_value *arr, char ***out, size_t *n)
{
    *n = json_count(arr);
    *out = bv_calloc(*n + 1, sizeof **out);
    for (size_t i = 0; i < *n; i++) {
        const char *s = json_str(json_at(arr, i));
        if (!s) return -1;
        (*out)[i] = bv_strdup(s);
    }
    return 0;
}

static int policy_parse(az_policy *p, const char *text, size_t len, char *err, size_t errlen)
{
    bv_arena *a = bv_arena_new(1 << 14);
    json_value *doc;
    json_error jerr;
    int rc = -1;
    if (json_parse(a, text, len, NULL, &doc, &jerr) || !json_is(doc, JSON_OBJECT)) {
        snprintf(err, errlen, "policy is not a JSON object: %s", jerr.message);
        goto out;
    }
    const char *dr = json_get_str(doc, "default_role");
    p->default_role = dr && *dr ? bv_strdup(dr) : NULL;
    json_value *bg = json_get(doc, "break_glass_minutes");
    int64_t mins = 30;
    if (bg && (!json_number_to_i64(bg, &mins) || mins < 1 || mins > 24 * 60)) {
        snprintf(err, errlen, "policy break_glass_minutes must be 1..1440");
        goto out;
    }
    p->btg_minutes = (int)mins;
    json_value *roles = json_get(doc, "roles");
    if (!json_is(roles, JSON_OBJECT)) {
        snprintf(err, errlen, "policy has no roles object");
        goto out;
    }
    p->n_roles = roles->u.obj.count;
    p->roles = bv_calloc(p->n_roles + 1, sizeof *p->roles);
    for (size_t i = 0; i < p->n_roles; i++) {
        az_role *r = &p->roles[i];
        const json_member *m = &roles->u.obj.members[i];
        r->name = bv_strdup(m->key);
        json_value *rel = json_get(m->value, "relationship"), *ml = json_get(m->value, "may_label");
        r->relationship = !json_is(rel, JSON_FALSE);
        r->may_label = json_is(ml, JSON_TRUE);
        if (load_strs(json_get(m->value, "types"), &r->types, &r->n_types) ||
            load_strs(json_get(m->value, "hidden_labels"), &r->hidden, &r->n_hidden)) {
            snprintf(err, errlen, "policy role '%s': types and hidden_labels are arrays of strings", r->name);
            goto out;
        }
        for (size_t k = 0; k < r->n_types; k++)
            if (strcmp(r->types[k], "*") != 0 && !fhir_is_resource_type(r->types[k])) {
                snprintf(err, errlen, "policy role '%s': unknown resource type '%s'", r->name, r->types[k]);
                goto out;
            }
    }
    json_value *pat = json_get(doc, "patient");
    if (load_strs(json_get(pat, "hidden_labels"), &p->patient_hidden, &p->n_patient_hidden)) {
        snprintf(err, errlen, "policy patient.hidden_labels must be an array of strings");
        goto out;
    }
    p->patient_may_label = json_is(json_get(pat, "may_label"), JSON_TRUE);
    rc = 0;
out:
    bv_arena_free(a);
    return rc;
}

static void free_strs(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

void az_policy_free(az_policy *p)
{
    for (size_t i = 0; i < p->n_roles; i++) {
        free(p->roles[i].name);
        free_strs(p->roles[i].types, p->roles[i].n_types);
        free_strs(p->roles[i].hidden, p->roles[i].n_hidden);
    }
    free(p->roles);
    free_strs(p->patient_hidden, p->n_patient_hidden);
    free(p->default_role);
    memset(p, 0, sizeof *p);
}

int az_policy_load(az_policy *p, const char *path, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!path) return policy_parse(p, DEFAULT_POLICY, sizeof DEFAULT_POLICY - 1, err, errlen);
    size_t len;
    char *text = bv_read_text_file(path, 1 << 20, &len);
    if (!text) {
        snprintf(err, errlen, "cannot read the policy file %s", path);
        return -1;
    }
    char sub[300];
    int rc = policy_parse(p, text, len, sub, sizeof sub);
    free(text);
    if (rc) snprintf(err, errlen, "%s: %s", path, sub);
    return rc;
}

const char *az_default_policy(void) { return DEFAULT_POLICY; }

static void deny(api_ctx *c, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The Patient compartment as access control sees it: R4's CompartmentDefinition plus resources it
 * leaves out that carry one patient's clinical data here (a ward alert Task describes a reading:
 * docs/ward.md). Without this a patient token could read every patient's Tasks. */
static const char *const TASK_PARAMS[] = {"patient"};
static const fhir_compartment_entry EXTRA_COMPARTMENT[] = {{"Task", 1, TASK_PARAMS}};

/* Types outside the compartment that may hold any patient's data whole (stored Bundles, Binary
 * payloads, Subscription criteria): never readable with a patient-context token. */
static bool patient_opaque(const char *type)
{
    return type && (strcmp(type, "Bundle") == 0 || strcmp(type, "Binary") == 0 || strcmp(type, "Subscription") == 0);
}

static const fhir_compartment_entry *az_compartment_find(const char *type)
{
    const fhir_compartment_entry *e = fhir_patient_compartment_find(type);
    if (e || !type) return e;
    for (size_t i = 0; i < sizeof EXTRA_COMPARTMENT / sizeof EXTRA_COMPARTMENT[0]; i++)
        if (strcmp(EXTRA_COMPARTMENT[i].resource, type) == 0) return &EXTRA_COMPARTMENT[i];
    return NULL;
}

/* ------------------------------------------------------------------ store access (outside or inside a unit) */
typedef struct {
    bv_store *s;
    bv_store_txn *t;
    bv_arena *a;
} az_rd;

static int rd_read(az_rd *r, const char *type, const char *id, bv_record *out)
{
    return r->t ? bv_txn_read(r->t, r->a, type, id, out) : bv_store_read(r->s, r->a, type, id, out);
}

static int rd_kv(az_rd *r, const char *key, const char **v)
{
    return r->t ? bv_txn_kv_get(r->t, r->a, key, v) : bv_store_kv_get(r->s, r->a, key, v);
}

/* Does any resource of type match these parameters? */
static bool rd_anyn(az_rd *r, const char *type, const bv_param *ps, size_t np)
{
    bv_search_request sr;
    memset(&sr, 0, sizeof sr);
    bv_outcome oo;
    bv_outcome_init(&oo, r->a);
    if (bv_fhir_parse_search(r->a, type, ps, np, true, &sr, &oo)) return false;
    sr.search.count = 1;
    bv_record *recs;
    size_t n = 0;
    int rc = r->t ? bv_txn_search(r->t, r->a, &sr.search, &recs, &n, NULL)
                  : bv_store_search(r->s, r->a, &sr.search, &recs, &n, NULL);
    return rc == BV_OK && n > 0;
}

static bool rd_any(az_rd *r, const char *type, const char *p1, const char *v1, const char *p2, const char *v2)
{
    bv_param ps[2] = {{p1, v1}, {p2, v2}};
    return rd_anyn(r, type, ps, 2);
}

/* ------------------------------------------------------------------ national data opt-out */
/* A system client whose token states a secondary-use purpose (research, planning, ...) never sees
 * patients with an active opt-out Consent (domain.md §5.4); direct care is never filtered. */
#define OPTOUT_PURPOSES "HRESCH,CLINTRCH,HOPERAT,PUBHLTH,HMARKT"

static bool is_secondary(const char *code)
{
    static const char *const sec[] = {"HRESCH", "CLINTRCH", "HOPERAT", "PUBHLTH", "HMARKT", "research", "planning"};
    for (size_t i = 0; code && i < sizeof sec / sizeof *sec; i++)
        if (strcmp(code, sec[i]) == 0) return true;
    return false;
}

static bool secondary_use(const api_az *z)
{
    const json_value *pu = json_get(z->p.claims, "purpose_of_use");
    if (json_is(pu, JSON_STRING)) return is_secondary(json_str(pu));
    for (size_t i = 0; i < json_count(pu) && i < 16; i++)
        if (is_secondary(json_str(json_at(pu, i)))) return true;
    return false;
}

static const bv_param OPTOUT_PARAMS[] = {
    {"status", "active"},
    {"scope", "http://terminology.hl7.org/CodeSystem/consentscope|patient-privacy"},
    {"purpose", OPTOUT_PURPOSES},
};

/* Patient?_has:Consent:patient:(opt-out) as a nested search, for a negated predicate. */
static bv_search *optout_patients(api_ctx *c)
{
    bv_search_request cs;
    memset(&cs, 0, sizeof cs);
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    if (bv_fhir_parse_search(c->a, "Consent", OPTOUT_PARAMS, 3, true, &cs, &oo)) return NULL;
    bv_search *consents = bv_arena_calloc(c->a, 1, sizeof *consents);
    *consents = cs.search;
    bv_pred *hp = bv_arena_calloc(c->a, 1, sizeof *hp);
    hp->kind = BV_IX_REFERENCE;
    hp->op = BV_OP_REF;
    hp->param = "patient";
    hp->has = consents;
    bv_or *ands = bv_arena_calloc(c->a, 1, sizeof *ands);
    ands[0].preds = hp;
    ands[0].n = 1;
    bv_search *pats = bv_arena_calloc(c->a, 1, sizeof *pats);
    pats->type = "Patient";
    pats->ands = ands;
    pats->n_ands = 1;
    return pats;
}

static int restrict_optout(api_ctx *c, bv_search *s, const char *type)
{
    if (!type) {
        deny(c, 403, "forbidden", "secondary-use searches must name one resource type");
        return -1;
    }
    bv_search *pats = optout_patients(c);
    if (!pats) {
        deny(c, 500, "exception", "opt-out filter unavailable");
        return -1;
    }
    if (strcmp(type, "Patient") == 0) {
        bv_pred *p = bv_arena_calloc(c->a, 1, sizeof *p);
        *p = pats->ands[0].preds[0];
        p->negate = true;
        api_search_add_and(c->a, s, p, 1);
        return 0;
    }
    const fhir_compartment_entry *e = az_compartment_find(type);
    for (size_t j = 0; e && j < e->n_params; j++) {
        bv_pred *p = bv_arena_calloc(c->a, 1, sizeof *p);
        p->kind = BV_IX_REFERENCE;
        p->op = BV_OP_REF;
        p->param = e->params[j];
        p->ref_type = "Patient";
        p->chain = pats;
        p->negate = true;
        api_search_add_and(c->a, s, p, 1);
    }
    return 0;
}

static bool opted_out(az_rd *rd, api_ctx *c, const char *pid)
{
    bv_param ps[4] = {OPTOUT_PARAMS[0], OPTOUT_PARAMS[1], OPTOUT_PARAMS[2],
                      {"patient", bv_arena_printf(c->a, "Patient/%s", pid)}};
    return rd_anyn(rd, "Consent", ps, 4);
}

/* ------------------------------------------------------------------ grants */
static const char *const PATIENT_PARAMS[] = {"patient", "subject"};

static bool type_in_compartment(const char *type)
{
    return az_compartment_find(type) != NULL;
}

/* The principal's decision for (type, perm): mode and granular queries of the granting scopes. */
static void grant_for(const api_az *z, const char *type, unsigned perm, az_grant *g)
{
    memset(g, 0, sizeof *g);
    bool sys = false, usr = false, pat = false;
    bool sys_free = false, usr_free = false, pat_free = false;
    const bv_principal *p = &z->p;
    for (size_t i = 0; i < p->n_scopes; i++) {
        const bv_scope *s = &p->scopes[i];
        if (!(s->perms & perm)) continue;
        if (strcmp(s->type, "*") != 0 && !bv_streq(s->type, type)) continue;
        /* a wildcard never reaches the audit trail: AuditEvent needs its own scope or role */
        bool *m = s->ctx == BV_SCOPE_SYSTEM ? &sys : s->ctx == BV_SCOPE_USER ? &usr : &pat;
        bool *f = s->ctx == BV_SCOPE_SYSTEM ? &sys_free : s->ctx == BV_SCOPE_USER ? &usr_free : &pat_free;
        *m = true;
        if (!s->query) *f = true;
    }
    bv_scope_ctx want;
    if (sys) { g->mode = AZ_SYSTEM; want = BV_SCOPE_SYSTEM; g->free = sys_free; }
    else if (usr) { g->mode = z->self_patient ? AZ_PATIENT : AZ_STAFF; want = BV_SCOPE_USER; g->free = usr_free; }
    else if (pat) { g->mode = AZ_PATIENT; want = BV_SCOPE_PATIENT; g->free = pat_free; }
    else return;
    if (g->free) return;
    for (size_t i = 0; i < p->n_scopes && g->nq < AZ_MAX_QUERIES; i++) {
        const bv_scope *s = &p->scopes[i];
        if (s->ctx != want || !(s->perms & perm) || !s->query) continue;
        if (strcmp(s->type, "*") != 0 && !bv_streq(s->type, type)) continue;
        g->queries[g->nq++] = s->query;
    }
}

static const char *perm_name(unsigned perm)
{
    switch (perm) {
    case BV_PERM_C: return "create (c)";
    case BV_PERM_R: return "read (r)";
    case BV_PERM_U: return "update (u)";
    case BV_PERM_D: return "delete (d)";
    default: return "search (s)";
    }
}

/* Staff role checks on a type; patients and systems pass. */
static bool role_allows_type(const api_az *z, const char *type)
{
    if (!z->role) return true;
    for (size_t i = 0; i < z->role->n_types; i++) {
        if (strcmp(z->role->types[i], type ? type : "") == 0) return true;
        /* "*" covers every type except the audit trail, which a role must name */
        if (strcmp(z->role->types[i], "*") == 0 && !bv_streq(type, "AuditEvent")) return true;
    }
    return false;
}

static void deny(api_ctx *c, int status, const char *code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->az->denied = true;
    if (status == 403 && !c->az->reason) c->az->reason = bv_arena_strdup(c->a, msg);
    api_error(c, status, code, NULL, "%s", msg);
}

/* Grant for a request on type; sends 403 and returns -1 when there is none. */
static int need(api_ctx *c, const char *type, unsigned perm, az_grant *g)
{
    api_az *z = c->az;
    if (bv_streq(type, "AuditEvent") && perm != BV_PERM_R && perm != BV_PERM_S) {
        deny(c, 403, "forbidden", "AuditEvents are written by the server only: they cannot be created, changed or deleted");
        return -1;
    }
    grant_for(z, type, perm, g);
    if (g->mode == AZ_DENY) {
        deny(c, 403, "forbidden", "the token's scopes do not allow %s on %s", perm_name(perm), type ? type : "this server");
        return -1;
    }
    if (g->mode == AZ_STAFF && !role_allows_type(z, type)) {
        deny(c, 403, "forbidden", "the role '%s' does not reach %s", z->role ? z->role->name : "?", type);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ records */
typedef struct {
    const char *ids[AZ_MAX_PATIENTS];
    size_t n;
    bool more;
} patient_set;

static bool is_compartment_param(const char *type, const char *param)
{
    const fhir_compartment_entry *e = az_compartment_find(type);
    if (!e) return false;
    for (size_t j = 0; j < e->n_params; j++)
        if (strcmp(e->params[j], param) == 0) return true;
    return false;
}

static void patients_of(const char *type, const char *id, const bv_index_row *rows, size_t n, patient_set *ps)
{
    memset(ps, 0, sizeof *ps);
    if (bv_streq(type, "Patient")) {
        ps->ids[ps->n++] = id;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const bv_index_row *r = &rows[i];
        if (r->kind != BV_IX_REFERENCE || !bv_streq(r->ref_type, "Patient") || !r->ref_id) continue;
        if (!is_compartment_param(type, r->param)) continue;
        bool dup = false;
        for (size_t k = 0; k < ps->n; k++) dup |= strcmp(ps->ids[k], r->ref_id) == 0;
        if (dup) continue;
        if (ps->n == AZ_MAX_PATIENTS) { ps->more = true; continue; }
        ps->ids[ps->n++] = r->ref_id;
    }
}

static bool has_label(const json_value *res, char *const *labels, size_t n, const char **which)
{
    json_value *sec = json_get(json_get(res, "meta"), "security");
    for (size_t i = 0; i < json_count(sec); i++) {
        const char *code = json_get_str(json_at(sec, i), "code");
        for (size_t k = 0; code && k < n; k++)
            if (strcmp(code, labels[k]) == 0) { *which = labels[k]; return true; }
    }
    return false;
}

/* A granular scope restriction "param=v1,v2" (token values "system|code", "code", "system|")
 * matched against a record's index rows. Only token and reference parameters can be checked
 * record by record; anything else is refused (the record is treated as not matching). */
static bool query_matches(bv_arena *a, const char *type, const char *query, const bv_index_row *rows, size_t n)
{
    bv_param *ps;
    size_t np;
    if (bv_fhir_parse_query_string(a, query, &ps, &np) || np == 0) return false;
    for (size_t i = 0; i < np; i++) {
        const fhir_search_param *sp = fhir_search_param_find(type, ps[i].name);
        if (!sp || (sp->type != FHIR_SP_TOKEN && sp->type != FHIR_SP_REFERENCE)) return false;
        bool any = false;
        const char *v = ps[i].value;
        while (*v && !any) {
            size_t l = strcspn(v, ",");
            char *val = bv_arena_strndup(a, v, l);
            char *bar = strchr(val, '|');
            for (size_t k = 0; k < n && !any; k++) {
                const bv_index_row *r = &rows[k];
                /* the rows the parameter's searches read: its own, a sharing one's, a union's */
                if (!fhir_search_rows_include(fhir_search_param_rows(sp), r->param)) continue;
                if (sp->type == FHIR_SP_TOKEN) {
                    if (bar) {
                        *bar = '\0';
                        bool sys_ok = !*val ? !r->system : bv_streq(r->system, val);
                        bool code_ok = !bar[1] || bv_streq(r->code, bar + 1);
                        *bar = '|';
                        any = sys_ok && code_ok;
                    } else {
                        any = bv_streq(r->code, val);
                    }
                } else {
                    const char *slash = strchr(val, '/');
                    any = slash ? (r->ref_type && strncmp(r->ref_type, val, (size_t)(slash - val)) == 0 &&
                                   bv_streq(r->ref_id, slash + 1))
                                : bv_streq(r->ref_id, val);
                }
            }
            v += l;
            if (*v == ',') v++;
        }
        if (!any) return false;
    }
    return true;
}

static const char *who_key(const api_az *z)
{
    return z->p.fhir_user ? z->p.fhir_user : z->p.sub ? z->p.sub : "?";
}

/* Legitimate relationship of the staff principal with patient pid (or an active break-glass grant). */
static bool relationship(api_ctx *c, az_rd *rd, const char *pid)
{
    api_az *z = c->az;
    for (size_t i = 0; i < z->n_rel; i++)
        if (strcmp(z->rel[i].pid, pid) == 0) return z->rel[i].ok;
    bool ok = false;
    const char *fu = z->p.fhir_user, *org = z->p.org;
    const char *v;
    if (rd_kv(rd, bv_arena_printf(c->a, "authz.btg.%s|%s", who_key(z), pid), &v) == BV_OK) {
        uint64_t until;
        if (bv_str_to_u64(v, strlen(v), INT64_MAX, &until) == BV_OK && (int64_t)until > bv_now_ms()) {
            ok = true;
            z->btg = true;
        }
    }
    if (!ok) {
        bv_record pr;
        if (rd_read(rd, "Patient", pid, &pr) == BV_OK && !pr.deleted) {
            json_value *pj;
            json_error je;
            if (json_parse(c->a, pr.body, pr.body_len, NULL, &pj, &je) == BV_OK) {
                json_value *gp = json_get(pj, "generalPractitioner");
                for (size_t i = 0; i < json_count(gp) && !ok; i++) {
                    const char *ref = json_get_str(json_at(gp, i), "reference");
                    if (!ref) continue;
                    ok = (org && (strcmp(ref, org) == 0 || (bv_starts_with(ref, "http") && strlen(ref) > strlen(org) &&
                                                            strcmp(ref + strlen(ref) - strlen(org), org) == 0 &&
                                                            ref[strlen(ref) - strlen(org) - 1] == '/'))) ||
                         (fu && strcmp(ref, fu) == 0);
                }
            }
        }
    }
    const char *pref = bv_arena_printf(c->a, "Patient/%s", pid);
    const char *who[2] = {fu, org};
    for (int k = 0; k < 2 && !ok; k++) {
        if (!who[k]) continue;
        ok = rd_any(rd, "CareTeam", "patient", pref, "participant", who[k]) ||
             rd_any(rd, "EpisodeOfCare", "patient", pref, k == 0 ? "care-manager" : "organization", who[k]) ||
             rd_any(rd, "ServiceRequest", "patient", pref, "performer", who[k]) ||
             rd_any(rd, "CarePlan", "patient", pref, "care-team.participant", who[k]);
    }
    if (z->n_rel < AZ_MAX_REL) z->rel[z->n_rel++] = (az_rel){bv_arena_strdup(c->a, pid), ok};
    return ok;
}

/* Break-glass: the request carries a reason; grant access to pid for the policy's minutes,
 * persisted (kv), with a Task for the privacy officer. Inside a unit when t is set. */
static int btg_write(bv_store_txn *t, api_ctx *c, const char *pid)
{
    api_az *z = c->az;
    int64_t until = bv_now_ms() + (int64_t)c->api->az->policy.btg_minutes * 60000;
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)until);
    if (bv_txn_kv_set(t, bv_arena_printf(c->a, "authz.btg.%s|%s", who_key(z), pid), v)) return -1;
    /* the Task for the privacy officer */
    bv_buf b;
    bv_buf_init(&b, 0);
    char ts[40];
    bv_format_instant(bv_now_ms(), ts, sizeof ts);
    bv_buf_puts(&b, "{\"resourceType\":\"Task\",\"status\":\"requested\",\"intent\":\"order\",\"priority\":\"urgent\","
                    "\"code\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActReason\","
                    "\"code\":\"BTG\",\"display\":\"break the glass\"}],\"text\":\"Review break-glass access\"},"
                    "\"description\":");
    char *desc = bv_arena_printf(c->a, "%s used break-glass to reach Patient/%s: %s", who_key(z), pid, z->btg_reason);
    json_write_string(&b, desc, strlen(desc));
    bv_buf_puts(&b, ",\"for\":{\"reference\":");
    char *pref = bv_arena_printf(c->a, "Patient/%s", pid);
    json_write_string(&b, pref, strlen(pref));
    bv_buf_printf(&b, "},\"authoredOn\":\"%s\",\"requester\":{", ts);
    if (z->p.fhir_user) {
        bv_buf_puts(&b, "\"reference\":");
        json_write_string(&b, z->p.fhir_user, strlen(z->p.fhir_user));
    } else {
        bv_buf_puts(&b, "\"display\":");
        json_write_string(&b, who_key(z), strlen(who_key(z)));
    }
    bv_buf_puts(&b, "},\"reasonCode\":{\"text\":");
    json_write_string(&b, z->btg_reason, strlen(z->btg_reason));
    bv_buf_puts(&b, "},\"performerType\":[{\"text\":\"privacy-officer\"}]}");
    int rc = az_put_json(t, c->a, "Task", bv_buf_cstr(&b), b.len);
    bv_buf_free(&b);
    return rc;
}

typedef struct {
    api_ctx *c;
    const char *pid;
} btg_unit;

static int btg_run(bv_store_txn *t, void *ctx)
{
    btg_unit *u = ctx;
    return btg_write(t, u->c, u->pid);
}

/* Staff access to patient pid: relationship, else break-glass when asked for. 0 = allowed. */
static int staff_reach(api_ctx *c, az_rd *rd, const char *pid, char *msg, size_t ml)
{
    api_az *z = c->az;
    if (!z->role || !z->role->relationship) return 0;
    if (relationship(c, rd, pid)) return 0;
    if (z->btg_reason) {
        int rc;
        if (rd->t) rc = btg_write(rd->t, c, pid);
        else {
            btg_unit u = {c, pid};
            rc = bv_store_write(c->api->store, btg_run, &u);
        }
        if (rc == 0) {
            z->btg = true;
            for (size_t i = 0; i < z->n_rel; i++)
                if (strcmp(z->rel[i].pid, pid) == 0) z->rel[i].ok = true;
            bv_log(BV_LOG_WARN, "authz: break-glass access by %s to Patient/%s", who_key(z), pid);
            return 0;
        }
    }
    snprintf(msg, ml,
             "no legitimate relationship with Patient/%s (registered GP organisation, care team, episode of care or "
             "referral); in an emergency repeat the request with an X-Break-Glass-Reason header",
             pid);
    return 403;
}

/* May the principal see (perm R) or write (C/U/D) this version? 0, or 404/403 with msg. */
static int record_check(api_ctx *c, az_rd *rd, const char *type, const char *id, const json_value *res,
                        const bv_index_row *rows, size_t nrows, unsigned perm, char *msg, size_t ml)
{
    api_az *z = c->az;
    az_grant g;
    grant_for(z, type, perm, &g);
    if (g.mode == AZ_DENY || (g.mode == AZ_STAFF && !role_allows_type(z, type))) {
        snprintf(msg, ml, "the token's scopes or role do not allow %s on %s", perm_name(perm), type);
        return 403;
    }
    bool hide = g.mode == AZ_PATIENT;   /* patients: other records are "not known" */
    const char *lab;
    if (z->role && has_label(res, z->role->hidden, z->role->n_hidden, &lab)) {
        snprintf(msg, ml, "%s/%s carries the sensitivity label %s, which the role '%s' does not see", type, id, lab,
                 z->role->name);
        return 403;
    }
    if (g.mode == AZ_PATIENT && has_label(res, c->api->az->policy.patient_hidden, c->api->az->policy.n_patient_hidden, &lab)) {
        snprintf(msg, ml, "%s/%s is not known", type, id);
        return 404;
    }
    if (!g.free && g.nq) {
        bool any = false;
        for (size_t i = 0; i < g.nq && !any; i++) any = query_matches(c->a, type, g.queries[i], rows, nrows);
        if (!any) {
            if (hide) snprintf(msg, ml, "%s/%s is not known", type, id);
            else snprintf(msg, ml, "%s/%s is outside the token's granular scope", type, id);
            return hide ? 404 : 403;
        }
    }
    patient_set ps;
    patients_of(type, id, rows, nrows, &ps);
    if (g.mode == AZ_SYSTEM) {
        if (!secondary_use(z)) return 0;
        for (size_t i = 0; i < ps.n; i++)
            if (opted_out(rd, c, ps.ids[i])) {
                snprintf(msg, ml, "%s/%s is not known", type, id);
                return 404;
            }
        return 0;
    }
    if (g.mode == AZ_PATIENT) {
        if (!type_in_compartment(type) && !bv_streq(type, "Patient")) {
            if (perm == BV_PERM_R && !patient_opaque(type)) return 0;
            if (perm == BV_PERM_R) {
                snprintf(msg, ml, "%s/%s is not known", type, id);
                return 404;
            }
            snprintf(msg, ml, "a patient-context token cannot write %s (outside the Patient compartment)", type);
            return 403;
        }
        for (size_t i = 0; i < ps.n; i++)
            if (strcmp(ps.ids[i], z->self_patient) == 0) return 0;
        /* never the other patient: the caller can search its own audit trail */
        z->audit_patient = z->self_patient;
        if (perm == BV_PERM_R || perm == BV_PERM_D || perm == BV_PERM_U) {
            snprintf(msg, ml, "%s/%s is not known", type, id);
            return 404;
        }
        snprintf(msg, ml, "a patient-context token can only write into its own patient's compartment (Patient/%s)",
                 z->self_patient);
        return 403;
    }
    /* staff: demographics (the Patient resource itself) are reachable without a relationship, as
     * in a national demographics trace; everything in the compartment needs one */
    if (bv_streq(type, "Patient")) {
        z->audit_patient = id;
        return 0;
    }
    if (ps.more) {
        snprintf(msg, ml, "%s/%s refers to too many patients to check", type, id);
        return 403;
    }
    for (size_t i = 0; i < ps.n; i++) {
        int st = staff_reach(c, rd, ps.ids[i], msg, ml);
        if (st) {
            z->audit_patient = ps.ids[i]; /* the privacy officer sees the refused attempt on this patient */
            return st;
        }
        if (!z->audit_patient) z->audit_patient = ps.ids[i];
    }
    return 0;
}

static int record_check_body(api_ctx *c, az_rd *rd, const bv_record *r, unsigned perm, char *msg, size_t ml)
{
    json_value *res;
    json_error je;
    if (!r->body || json_parse(c->a, r->body, r->body_len, NULL, &res, &je)) {
        snprintf(msg, ml, "stored resource unreadable");
        return 403;
    }
    bv_index_row *rows = NULL;
    size_t n = 0;
    if (bv_fhir_extract_index(c->a, res, &rows, &n)) {
        snprintf(msg, ml, "index extraction failed");
        return 403;
    }
    int st = record_check(c, rd, r->type, r->id, res, rows, n, perm, msg, ml);
    if (st == 0 && !c->az->audit_patient) {
        patient_set ps;
        patients_of(r->type, r->id, rows, n, &ps);
        if (ps.n) c->az->audit_patient = ps.ids[0];
    }
    return st;
}

/* ------------------------------------------------------------------ search restriction */
/* The patient's compartment as one AND group on s (type NULL = every member type and the
 * Patient itself). Non-member types: nothing (readable reference data). Returns false when a
 * typed search cannot hold any of the patient's data (never happens for members). */
static void restrict_compartment(bv_arena *a, bv_search *s, const char *type, const char *pid)
{
    if (bv_streq(type, "Patient")) {
        bv_pred *p = bv_arena_calloc(a, 1, sizeof *p);
        p->kind = BV_IX_TOKEN;
        p->op = BV_OP_TOKEN;
        p->param = "_id";
        p->code = pid;
        api_search_add_and(a, s, p, 1);
        return;
    }
    if (type && !type_in_compartment(type)) return;
    /* one type: its entry (the extra ones included); a system search: R4's table and the Patient */
    const fhir_compartment_entry *one = type ? az_compartment_find(type) : NULL;
    bv_pred *preds;
    size_t k = api_compartment_preds(a, one ? one : fhir_patient_compartment, one ? 1 : fhir_patient_compartment_count,
                                     type, "Patient", pid, !type, &preds);
    api_search_add_and(a, s, preds, k);
}

/* Negated _security predicates: resources carrying any of the labels are left out. */
static void restrict_labels(bv_arena *a, bv_search *s, char *const *labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bv_pred *p = bv_arena_calloc(a, 1, sizeof *p);
        p->kind = BV_IX_TOKEN;
        p->op = BV_OP_TOKEN;
        p->param = "_security";
        p->negate = true;
        p->code = labels[i];
        api_search_add_and(a, s, p, 1);
    }
}

/* Granular scope queries: one query = its AND groups; several single-parameter queries are
 * merged into one OR group (the union of the scopes); several multi-parameter queries are all
 * applied (their intersection: narrower than the union, never wider). */
static int restrict_queries(api_ctx *c, bv_search *s, const char *type, const az_grant *g)
{
    if (g->free || !g->nq) return 0;
    bv_search_request qs[AZ_MAX_QUERIES];
    bool all_single = true;
    for (size_t i = 0; i < g->nq; i++) {
        bv_param *ps;
        size_t np;
        bv_outcome oo;
        bv_outcome_init(&oo, c->a);
        memset(&qs[i], 0, sizeof qs[i]);
        if (bv_fhir_parse_query_string(c->a, g->queries[i], &ps, &np) ||
            bv_fhir_parse_search(c->a, type, ps, np, true, &qs[i], &oo) || qs[i].search.n_ands == 0) {
            deny(c, 403, "forbidden", "the token's granular scope for %s cannot be applied", type);
            return -1;
        }
        if (qs[i].search.n_ands != 1) all_single = false;
    }
    if (all_single) {
        size_t total = 0;
        for (size_t i = 0; i < g->nq; i++) total += qs[i].search.ands[0].n;
        bv_pred *preds = bv_arena_calloc(c->a, total + 1, sizeof *preds);
        size_t k = 0;
        for (size_t i = 0; i < g->nq; i++)
            for (size_t j = 0; j < qs[i].search.ands[0].n; j++) preds[k++] = qs[i].search.ands[0].preds[j];
        api_search_add_and(c->a, s, preds, k);
    } else {
        for (size_t i = 0; i < g->nq; i++)
            for (size_t j = 0; j < qs[i].search.n_ands; j++)
                api_search_add_and(c->a, s, (bv_pred *)qs[i].search.ands[j].preds, qs[i].search.ands[j].n);
    }
    return 0;
}

/* Chained and _has sub-searches of a patient-context search are restricted too, so a search can
 * never test another patient's data (the _has oracle). */
static void restrict_nested(api_ctx *c, const bv_search *s, const char *pid, int depth)
{
    if (!s || depth > 8) return;
    for (size_t i = 0; i < s->n_ands; i++)
        for (size_t k = 0; k < s->ands[i].n; k++) {
            const bv_pred *p = &s->ands[i].preds[k];
            const bv_search *subs[2] = {p->chain, p->has};
            for (int j = 0; j < 2; j++) {
                bv_search *sub = (bv_search *)subs[j];
                if (!sub) continue;
                restrict_nested(c, sub, pid, depth + 1);
                restrict_compartment(c->a, sub, sub->type, pid);
            }
        }
}

static bool search_has_has(const bv_search *s)
{
    for (size_t i = 0; i < s->n_ands; i++)
        for (size_t k = 0; k < s->ands[i].n; k++)
            if (s->ands[i].preds[k].has) return true;
    return false;
}

/* The one patient a staff search names: a single-valued patient/subject/compartment reference. */
static const char *named_patient(const bv_search *s, const char *type)
{
    if (bv_streq(type, "Patient")) {
        for (size_t i = 0; i < s->n_ands; i++)
            if (s->ands[i].n == 1 && bv_streq(s->ands[i].preds[0].param, "_id") && !s->ands[i].preds[0].negate)
                return s->ands[i].preds[0].code;
        return NULL;
    }
    /* one group: one id, as Patient/ID or bare (a bare id is one typed pred per target type) */
    for (size_t i = 0; i < s->n_ands; i++) {
        const bv_or *g = &s->ands[i];
        const char *id = NULL;
        bool ok = g->n > 0, patient = false;
        for (size_t k = 0; k < g->n && ok; k++) {
            const bv_pred *p = &g->preds[k];
            ok = p->kind == BV_IX_REFERENCE && p->op == BV_OP_REF && !p->negate && !p->chain && !p->has && p->ref_id &&
                 (!id || strcmp(id, p->ref_id) == 0) && strcmp(p->param, g->preds[0].param) == 0;
            if (!ok) break;
            id = p->ref_id;
            patient |= !p->ref_type || strcmp(p->ref_type, "Patient") == 0;
        }
        if (!ok || !patient) continue;
        const char *param = g->preds[0].param;
        bool pp = false;
        for (size_t k = 0; k < 2; k++) pp |= strcmp(param, PATIENT_PARAMS[k]) == 0;
        if (pp || is_compartment_param(type, param)) return id;
    }
    return NULL;
}

/* inline: inside (or before) a write unit, no store access of its own: staff relationship checks
 * are left to the unit (conditional writes) or refused (searches in a transaction). */
/* A patient's view of the audit trail leaves out its own accesses and system-internal ones
 * (domain.md §6.4): audit.c tags those events. */
static void restrict_audit_tags(api_ctx *c, bv_search *s, const char *type)
{
    if (type && strcmp(type, "AuditEvent") != 0) return;
    static char *const tags[] = {"patient-access", "system-access"};
    for (size_t i = 0; i < 2; i++) {
        bv_pred *p = bv_arena_calloc(c->a, 1, sizeof *p);
        p->kind = BV_IX_TOKEN;
        p->op = BV_OP_TOKEN;
        p->param = "_tag";
        p->negate = true;
        p->system_given = true;
        p->system = AZ_AUDIT_TAG_SYSTEM;
        p->code = tags[i];
        api_search_add_and(c->a, s, p, 1);
    }
}

/* One nested search of htype with a single parameter, as the has-search of a pred on "patient". */
static bool has_pred(api_ctx *c, const char *htype, const char *param, const char *value, bv_pred *out)
{
    bv_param ps[1] = {{param, value}};
    bv_search_request sr;
    memset(&sr, 0, sizeof sr);
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    if (bv_fhir_parse_search(c->a, htype, ps, 1, true, &sr, &oo) || !sr.search.n_ands) return false;
    bv_search *h = bv_arena_calloc(c->a, 1, sizeof *h);
    *h = sr.search;
    memset(out, 0, sizeof *out);
    out->kind = BV_IX_REFERENCE;
    out->op = BV_OP_REF;
    out->param = strcmp(htype, "CareTeam") == 0 || strcmp(htype, "ServiceRequest") == 0 ||
                         strcmp(htype, "EpisodeOfCare") == 0 || strcmp(htype, "CarePlan") == 0
                     ? "patient"
                     : "subject";
    out->has = h;
    return true;
}

/* The patients the staff member has a legitimate relationship with, as a Patient search (one OR
 * group): registered with their organisation (or them), or a CareTeam, EpisodeOfCare, referral or
 * care plan team naming them or their organisation. NULL when the token names nobody. */
static bv_search *related_patients(api_ctx *c)
{
    api_az *z = c->az;
    const char *who[2] = {z->p.fhir_user, z->p.org};
    bv_pred *preds = bv_arena_calloc(c->a, 12, sizeof *preds);
    size_t k = 0;
    for (int i = 0; i < 2; i++) {
        const char *w = who[i];
        const char *slash = w ? strchr(w, '/') : NULL;
        if (!slash || !slash[1]) continue;
        bv_pred *g = &preds[k++];
        g->kind = BV_IX_REFERENCE;
        g->op = BV_OP_REF;
        g->param = "general-practitioner";
        g->ref_type = bv_arena_strndup(c->a, w, (size_t)(slash - w));
        g->ref_id = slash + 1;
        if (has_pred(c, "CareTeam", "participant", w, &preds[k])) k++;
        if (has_pred(c, "EpisodeOfCare", i == 0 ? "care-manager" : "organization", w, &preds[k])) k++;
        if (has_pred(c, "ServiceRequest", "performer", w, &preds[k])) k++;
        if (has_pred(c, "CarePlan", "care-team.participant", w, &preds[k])) k++;
    }
    if (!k) return NULL;
    bv_or *ands = bv_arena_calloc(c->a, 1, sizeof *ands);
    ands[0].preds = preds;
    ands[0].n = k;
    bv_search *pats = bv_arena_calloc(c->a, 1, sizeof *pats);
    pats->type = "Patient";
    pats->ands = ands;
    pats->n_ands = 1;
    return pats;
}

/* p: "param refers to type/id" */
static void ref_pred(bv_pred *p, const char *param, const char *type, const char *id)
{
    p->kind = BV_IX_REFERENCE;
    p->op = BV_OP_REF;
    p->param = param;
    p->ref_type = type;
    p->ref_id = id;
}

/* A staff search of a compartment type that names no patient: only resources of related
 * patients match, inside the query (a filtered search, like a patient's). */
static int restrict_related(api_ctx *c, bv_search *s, const char *type)
{
    const fhir_compartment_entry *e = az_compartment_find(type);
    bv_search *pats = related_patients(c);
    if (!e || !pats) {
        deny(c, 403, "forbidden", "this token names no user or organisation with relationships to patients");
        return -1;
    }
    /* The related patients are resolved first and named (one OR list): chaining every compartment
     * parameter to the relationship search nests too deep for SQLite's parser. */
    enum { MAX_RELATED = 1000 };
    pats->count = MAX_RELATED + 1;
    bv_record *recs = NULL;
    size_t nr = 0;
    if (bv_store_search(c->api->store, c->a, pats, &recs, &nr, NULL) != BV_OK) {
        deny(c, 503, "transient", "the patients this user cares for could not be listed; try again");
        return -1;
    }
    if (nr > MAX_RELATED) {
        deny(c, 403, "forbidden", "this user has a relationship with more than 1,000 patients: name one patient "
                                  "(e.g. patient=...) in searches of %s", type);
        return -1;
    }
    api_az *z = c->az;
    bool team = strcmp(type, "CareTeam") == 0;   /* the teams (wards) the user is a member of */
    const char *who[2] = {z->p.fhir_user, z->p.org};
    bv_pred *preds = bv_arena_calloc(c->a, e->n_params * nr + 3, sizeof *preds);
    size_t k = 0;
    for (size_t j = 0; j < e->n_params; j++)
        for (size_t i = 0; i < nr; i++) ref_pred(&preds[k++], e->params[j], "Patient", recs[i].id);
    for (int i = 0; team && i < 2; i++) {
        const char *slash = who[i] ? strchr(who[i], '/') : NULL;
        if (!slash || !slash[1]) continue;
        ref_pred(&preds[k++], "participant", bv_arena_strndup(c->a, who[i], (size_t)(slash - who[i])), slash + 1);
    }
    /* no related patient: nothing matches (an impossible id keeps the query well-formed) */
    if (k == 0) ref_pred(&preds[k++], e->params[0], "Patient", "..");
    api_search_add_and(c->a, s, preds, k);
    return 0;
}

static int restrict_one(api_ctx *c, bv_search *s, const char *type, unsigned perm, bool inline_)
{
    api_az *z = c->az;
    az_grant g;
    if (need(c, type, perm, &g)) return -1;
    if (restrict_queries(c, s, type, &g)) return -1;
    if (g.mode == AZ_SYSTEM) return secondary_use(z) ? restrict_optout(c, s, type) : 0;
    if (g.mode == AZ_PATIENT) {
        if (patient_opaque(type)) {
            deny(c, 403, "forbidden", "a patient-context token cannot search %s", type);
            return -1;
        }
        restrict_compartment(c->a, s, type, z->self_patient);
        restrict_nested(c, s, z->self_patient, 0);
        restrict_audit_tags(c, s, type);
        if (!z->audit_patient) z->audit_patient = z->self_patient;
        restrict_labels(c->a, s, c->api->az->policy.patient_hidden, c->api->az->policy.n_patient_hidden);
        return 0;
    }
    /* staff */
    if (z->role) restrict_labels(c->a, s, z->role->hidden, z->role->n_hidden);
    if (!z->role || !z->role->relationship) return 0;
    if (inline_) {
        if (perm != BV_PERM_S) return 0; /* the unit checks the record it finds */
        deny(c, 403, "forbidden", "staff searches inside a transaction are not supported: use a batch or a plain search");
        return -1;
    }
    const char *pid = z->named_patient ? z->named_patient : named_patient(s, type);
    bool member = type_in_compartment(type) && strcmp(type, "Patient") != 0;
    if (!pid) {
        if (search_has_has(s)) {
            deny(c, 403, "forbidden", "_has is only available to staff on a search that names one patient");
            return -1;
        }
        if (member) return restrict_related(c, s, type);
        return 0; /* Patient demographics and reference data */
    }
    if (member || search_has_has(s)) {
        char msg[400];
        az_rd rd = {c->api->store, NULL, c->a};
        if (staff_reach(c, &rd, pid, msg, sizeof msg)) {
            deny(c, 403, "forbidden", "%s", msg);
            return -1;
        }
    }
    if (!z->audit_patient) z->audit_patient = pid;
    /* the search may name the patient in one group and reach others in none: pin it */
    if (member) restrict_compartment(c->a, s, type, pid);
    return 0;
}

int authz_search(api_ctx *c, bv_search_request *sr)
{
    if (!c->az) return 0;
    bv_search *s = &sr->search;
    api_az *z = c->az;
    z->audit_action = "E";
    if (!z->audit_subtype) z->audit_subtype = s->type ? "search-type" : "search-system";
    if (s->type) return restrict_one(c, s, s->type, BV_PERM_S, false);
    /* system search: the types the token may search */
    az_grant g;
    grant_for(z, NULL, BV_PERM_S, &g);
    bool wildcard = false;
    for (size_t i = 0; i < z->p.n_scopes; i++)
        wildcard |= (z->p.scopes[i].perms & BV_PERM_S) && strcmp(z->p.scopes[i].type, "*") == 0 && !z->p.scopes[i].query;
    if (!wildcard) {
        const char **types = bv_arena_calloc(c->a, z->p.n_scopes + 1, sizeof *types);
        size_t nt = 0;
        for (size_t i = 0; i < z->p.n_scopes; i++) {
            const bv_scope *sc = &z->p.scopes[i];
            if (!(sc->perms & BV_PERM_S) || sc->query || strcmp(sc->type, "*") == 0) continue;
            bool given = s->n_types == 0;
            for (size_t k = 0; k < s->n_types; k++) given |= strcmp(s->types[k], sc->type) == 0;
            if (given) types[nt++] = sc->type;
        }
        if (!nt) {
            deny(c, 403, "forbidden", "the token's scopes allow no search across types");
            return -1;
        }
        s->types = types;
        s->n_types = nt;
    }
    bool sys = false, usr = false;
    for (size_t i = 0; i < z->p.n_scopes; i++) {
        if (!(z->p.scopes[i].perms & BV_PERM_S)) continue;
        sys |= z->p.scopes[i].ctx == BV_SCOPE_SYSTEM;
        usr |= z->p.scopes[i].ctx == BV_SCOPE_USER;
    }
    if (sys) {
        if (secondary_use(z)) {
            deny(c, 403, "forbidden", "secondary-use searches must name one resource type");
            return -1;
        }
        return 0;
    }
    if (z->self_patient) {
        restrict_compartment(c->a, s, NULL, z->self_patient);
        restrict_nested(c, s, z->self_patient, 0);
        restrict_audit_tags(c, s, NULL);
        restrict_labels(c->a, s, c->api->az->policy.patient_hidden, c->api->az->policy.n_patient_hidden);
        if (!z->audit_patient) z->audit_patient = z->self_patient;
        return 0;
    }
    if (usr && z->role) {
        /* the role's types only (the audit trail only when named): compartment types are enough
         * for $everything and compartment searches, which are the system searches staff can make */
        const char **types = bv_arena_calloc(c->a, fhir_patient_compartment_count + 2, sizeof *types);
        size_t nt = 0;
        for (size_t i = 0; i <= fhir_patient_compartment_count; i++) {
            const char *t = i < fhir_patient_compartment_count ? fhir_patient_compartment[i].resource : "Patient";
            if (i == fhir_patient_compartment_count && az_compartment_find("Patient")) continue;
            if (!role_allows_type(z, t)) continue;
            bool given = s->n_types == 0;
            for (size_t k = 0; k < s->n_types; k++) given |= strcmp(s->types[k], t) == 0;
            if (given) types[nt++] = t;
        }
        if (!nt) {
            deny(c, 403, "forbidden", "the role '%s' reaches none of these types", z->role->name);
            return -1;
        }
        s->types = types;
        s->n_types = nt;
    }
    if (usr && z->named_patient) {
        char msg[400];
        az_rd rd = {c->api->store, NULL, c->a};
        if (z->role && z->role->relationship && staff_reach(c, &rd, z->named_patient, msg, sizeof msg)) {
            deny(c, 403, "forbidden", "%s", msg);
            return -1;
        }
        if (z->role) restrict_labels(c->a, s, z->role->hidden, z->role->n_hidden);
        return 0;
    }
    if (usr && z->role && !z->role->relationship) {
        restrict_labels(c->a, s, z->role->hidden, z->role->n_hidden);
        return 0;
    }
    deny(c, 403, "forbidden", "searches across all types need a system/ scope or a patient in context");
    return -1;
}

int authz_restrict(api_ctx *c, const char *type, bv_search *s, unsigned perm, bv_outcome *oo)
{
    if (!c->az) return 0;
    if (restrict_one(c, s, type, perm, true) == 0) return 0;
    bv_outcome_add(oo, BV_SEV_ERROR, "forbidden", NULL, "%s", c->az->reason ? c->az->reason : "not allowed");
    return -1;
}

bool authz_include_ok(api_ctx *c, const bv_record *r)
{
    if (!c->az) return true;
    char msg[400];
    az_rd rd = {c->api->store, NULL, c->a};
    const char *keep = c->az->btg_reason;
    c->az->btg_reason = NULL; /* break-glass is for the patient asked for, not for what an include drags in */
    int st = record_check_body(c, &rd, r, BV_PERM_R, msg, sizeof msg);
    c->az->btg_reason = keep;
    return st == 0;
}

bool authz_version_ok(api_ctx *c, const bv_record *r)
{
    if (!c->az || r->deleted) return true;
    return authz_include_ok(c, r);
}

/* ------------------------------------------------------------------ gates */
int authz_gate(api_ctx *c, az_op op, const char *type, const char *id)
{
    api_az *z = c->az;
    if (!z) return 0;
    static const char *const subtypes[] = {
        [AZ_READ] = "read", [AZ_VREAD] = "vread", [AZ_HISTORY_INSTANCE] = "history-instance",
        [AZ_HISTORY_TYPE] = "history-type", [AZ_HISTORY_SYSTEM] = "history-system", [AZ_COMPARTMENT] = "search-type",
        [AZ_EVERYTHING] = "operation", [AZ_CREATE] = "create", [AZ_UPDATE] = "update", [AZ_PATCH] = "patch",
        [AZ_DELETE] = "delete", [AZ_VALIDATE] = "operation",
    };
    static const char *const actions[] = {
        [AZ_READ] = "R", [AZ_VREAD] = "R", [AZ_HISTORY_INSTANCE] = "R", [AZ_HISTORY_TYPE] = "R",
        [AZ_HISTORY_SYSTEM] = "R", [AZ_COMPARTMENT] = "E", [AZ_EVERYTHING] = "E", [AZ_CREATE] = "C",
        [AZ_UPDATE] = "U", [AZ_PATCH] = "U", [AZ_DELETE] = "D", [AZ_VALIDATE] = "E",
    };
    z->audit_subtype = subtypes[op];
    z->audit_action = actions[op];
    if (type && id) z->audit_what = bv_arena_printf(c->a, "%s/%s", type, id);
    az_grant g;
    char msg[400];
    az_rd rd = {c->api->store, NULL, c->a};
    switch (op) {
    case AZ_READ:
    case AZ_VREAD:
    case AZ_HISTORY_INSTANCE: {
        if (need(c, type, BV_PERM_R, &g)) return -1;
        if (g.mode == AZ_SYSTEM && g.free && !secondary_use(z)) {
            /* a backend service with the whole type: no record check (its audit names the
             * resource; the patient entity only for Patient itself) */
            if (bv_streq(type, "Patient")) z->audit_patient = id;
            return 0;
        }
        bv_record r;
        int rc = bv_store_read(c->api->store, c->a, type, id, &r);
        if (rc == BV_ENOTFOUND) return 0; /* the handler says 404 */
        if (rc) { api_error(c, 500, "exception", NULL, "storage error"); return -1; }
        if (r.deleted) {
            /* a deleted resource: judge by its last live version */
            if (r.version < 2 || bv_store_vread(c->api->store, c->a, type, id, r.version - 1, &r) || r.deleted) {
                if (g.mode == AZ_SYSTEM) return 0;
                deny(c, 404, "not-found", "%s/%s is not known", type, id);
                return -1;
            }
        }
        int st = record_check_body(c, &rd, &r, BV_PERM_R, msg, sizeof msg);
        if (st) {
            deny(c, st, st == 404 ? "not-found" : "forbidden", "%s", msg);
            return -1;
        }
        return 0;
    }
    case AZ_HISTORY_TYPE:
    case AZ_HISTORY_SYSTEM:
        if (need(c, type, BV_PERM_S, &g)) return -1;
        if (secondary_use(z)) {
            deny(c, 403, "forbidden", "history is not available for secondary use (the opt-out cannot be applied)");
            return -1;
        }
        if (g.mode != AZ_SYSTEM && !(g.mode == AZ_STAFF && z->role && !z->role->relationship && !z->role->n_hidden)) {
            deny(c, 403, "forbidden", "type and system history need a system/ scope; use instance history");
            return -1;
        }
        if (!g.free) {
            deny(c, 403, "forbidden", "type and system history cannot apply a granular scope");
            return -1;
        }
        return 0;
    case AZ_COMPARTMENT:
    case AZ_EVERYTHING:
        /* named patient: a patient token only its own, staff with a relationship */
        z->named_patient = id;
        z->audit_patient = id;
        z->audit_what = bv_arena_printf(c->a, "Patient/%s", id);
        if (!bv_streq(type, "Patient")) return 0; /* the handler refuses other compartments */
        /* the mode of the caller's search scopes (each member type is checked by the search) */
        grant_for(z, NULL, BV_PERM_S, &g);
        if (g.mode == AZ_DENY) {
            for (size_t i = 0; i < z->p.n_scopes && g.mode == AZ_DENY; i++) {
                const bv_scope *sc = &z->p.scopes[i];
                if (!(sc->perms & (BV_PERM_S | BV_PERM_R))) continue;
                g.mode = sc->ctx == BV_SCOPE_SYSTEM ? AZ_SYSTEM
                       : sc->ctx == BV_SCOPE_USER ? (z->self_patient ? AZ_PATIENT : AZ_STAFF) : AZ_PATIENT;
            }
        }
        if (g.mode == AZ_DENY) {
            deny(c, 403, "forbidden", "the token's scopes allow no search");
            return -1;
        }
        if (g.mode == AZ_PATIENT && strcmp(id, z->self_patient) != 0) {
            deny(c, 404, "not-found", "Patient/%s is not known", id);
            return -1;
        }
        if (g.mode == AZ_STAFF) {
            int st = staff_reach(c, &rd, id, msg, sizeof msg);
            if (st) { deny(c, st, "forbidden", "%s", msg); return -1; }
        }
        return 0;
    case AZ_CREATE: return need(c, type, BV_PERM_C, &g);
    case AZ_UPDATE:
    case AZ_PATCH: return need(c, type, BV_PERM_U, &g);
    case AZ_DELETE: return need(c, type, BV_PERM_D, &g);
    case AZ_VALIDATE: return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ inside write units */
static unsigned perm_of(const api_unit *u)
{
    switch (u->kind) {
    case OP_CREATE: return BV_PERM_C;
    case OP_DELETE: return BV_PERM_D;
    default: return BV_PERM_U;
    }
}

static int unit_fail(api_unit *u, int status, const char *msg)
{
    u->status = status;
    u->code = status == 404 ? "not-found" : "forbidden";
    snprintf(u->msg, sizeof u->msg, "%s", msg);
    if (status == 403 && u->c->az && !u->c->az->reason) u->c->az->reason = bv_arena_strdup(u->c->a, msg);
    if (u->c->az) u->c->az->denied = true;
    return BV_EINVAL;
}

int authz_unit_old(api_unit *u, bv_store_txn *t, const bv_record *cur)
{
    api_ctx *c = u->c;
    if (!c->az) return 0;
    if (bv_streq(u->type, "AuditEvent")) return unit_fail(u, 403, "AuditEvents cannot be changed or deleted");
    az_grant g;
    grant_for(c->az, u->type, perm_of(u), &g);
    if (g.mode == AZ_DENY) return unit_fail(u, 403, "the token's scopes do not allow this write");
    az_rd rd = {c->api->store, t, c->a};
    char msg[400];
    int st = record_check_body(c, &rd, cur, perm_of(u), msg, sizeof msg);
    return st ? unit_fail(u, st, msg) : 0;
}

static bool same_labels(const json_value *a, const json_value *b)
{
    const json_value *sa = json_get(json_get(a, "meta"), "security"), *sb = json_get(json_get(b, "meta"), "security");
    if (!sa && !sb) return true;
    return sa && sb && json_equal(sa, sb);
}

int authz_unit_new(api_unit *u, bv_store_txn *t, const json_value *res, const bv_record *cur)
{
    api_ctx *c = u->c;
    if (!c->az) return 0;
    api_az *z = c->az;
    if (bv_streq(u->type, "AuditEvent")) return unit_fail(u, 403, "AuditEvents are written by the server only");
    az_grant g;
    unsigned perm = perm_of(u);
    if (u->kind == OP_UPDATE && !cur) perm = BV_PERM_U; /* update-as-create needs u (SMART) */
    grant_for(z, u->type, perm, &g);
    if (g.mode == AZ_DENY) return unit_fail(u, 403, "the token's scopes do not allow this write");
    /* security labels: only roles allowed to label may add, change or remove them */
    bool may_label = g.mode == AZ_SYSTEM || (g.mode == AZ_STAFF && z->role && z->role->may_label) ||
                     (g.mode == AZ_PATIENT && c->api->az->policy.patient_may_label);
    if (!may_label) {
        json_value *old = NULL;
        json_error je;
        if (cur && !cur->deleted && cur->body) json_parse(c->a, cur->body, cur->body_len, NULL, &old, &je);
        bool ok = old ? same_labels(old, res) : !json_count(json_get(json_get(res, "meta"), "security"));
        if (!ok) return unit_fail(u, 403, "this token may not set or change meta.security labels");
    }
    az_rd rd = {c->api->store, t, c->a};
    char msg[400];
    const char *id = u->id ? u->id : json_get_str(res, "id");
    int st = record_check(c, &rd, u->type, id ? id : "new", res, u->rows, u->n_rows, perm, msg, sizeof msg);
    if (st == 404) {
        /* writing into another patient's compartment: refused, never "not known" */
        snprintf(msg, sizeof msg, "a patient-context token can only write into its own patient's compartment (Patient/%s)",
                 z->self_patient ? z->self_patient : "?");
        st = 403;
    }
    if (st) return unit_fail(u, st, msg);
    patient_set ps;
    patients_of(u->type, id, u->rows, u->n_rows, &ps);
    if (ps.n) z->audit_patient = ps.ids[0];
    return 0;
}

int authz_unit_read(api_ctx *c, bv_store_txn *t, const bv_record *r)
{
    if (!c->az) return 0;
    az_rd rd = {c->api->store, t, c->a};
    char msg[400];
    return record_check_body(c, &rd, r, BV_PERM_R, msg, sizeof msg);
}
