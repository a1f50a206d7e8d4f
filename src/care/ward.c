/* The ward service: follows committed changes and the clock; writes NEWS2 Observations and alert
 * Flags/Tasks in its own write units (docs/ward.md). Never on a client's request path.
 *
 * State in the store's kv table (written in the same unit as the resources it describes):
 *   ward.cursor                 last change seq processed
 *   ward.patient.{pid}          the patient's active virtual-ward CarePlan id
 *   ward.plan.{planId}          the plan's patient id
 *   ward.last.{planId}          latest reading time (ms) seen for the plan
 *   ward.spo2.{planId}          the previous SpO2 value (for the sustained baseline drop)
 *   ward.news2.{planId}         the reading ids of the last NEWS2 computed (no duplicates)
 *   ward.alert.{planId}.{fam}   "taskId flagId" of the alert of that family (0 oximetry, 1 NEWS2, 2 overdue)
 *   ward.overdue.{planId}       "slotMs level" of the last overdue alert raised */
#include "bevan/care.h"

#include <stdatomic.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 32

struct bv_ward {
    bv_ward_options o;
    pthread_t changes, timer;
    bool changes_running, timer_running;
};

/* The commit listener cannot be unregistered from the store, so what it touches is static. */
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sig_cv;     /* the change thread: new commits */
static pthread_cond_t timer_cv;   /* the timer thread: stop only */
static bool sig_init;
static bool sig_stop;
static uint64_t sig_gen;
static bv_store *sig_store;
/* Highest seq handled, including batches with nothing for the ward that were not written back
 * (a Patient import must not cost a ward write unit per batch); ward.cursor may lag behind it. */
static int64_t mem_cursor;

static int64_t cursor_now(int64_t persisted)
{
    pthread_mutex_lock(&sig_mu);
    int64_t c = mem_cursor > persisted ? mem_cursor : persisted;
    pthread_mutex_unlock(&sig_mu);
    return c;
}

static void cursor_skip_to(int64_t seq)
{
    pthread_mutex_lock(&sig_mu);
    if (seq > mem_cursor) mem_cursor = seq;
    pthread_mutex_unlock(&sig_mu);
}

/* The resource types the change feed acts on. */
static const char *const ward_types[] = {"Observation", "CarePlan", "Task"};
#define N_WARD_TYPES (sizeof ward_types / sizeof ward_types[0])

static bool ward_relevant(const char *type)
{
    for (size_t i = 0; i < N_WARD_TYPES; i++)
        if (strcmp(type, ward_types[i]) == 0) return true;
    return false;
}

static void on_commit(void *ctx, int64_t last_seq, uint64_t types)
{
    (void)last_seq;
    /* Versions of other types wait for the feed's next round (at most a second): most writes are
     * not the ward's, and waking for each group cost about 7 us of CPU per create. */
    uint64_t relevant = 0;
    for (size_t i = 0; i < N_WARD_TYPES; i++) relevant |= bv_store_type_bit(ward_types[i]);
    if (!(types & relevant)) return;
    pthread_mutex_lock(&sig_mu);
    if (sig_store == ctx) {
        sig_gen++;
        pthread_cond_signal(&sig_cv);
    }
    pthread_mutex_unlock(&sig_mu);
}

/* ---- the clock (test override: docs/ward.md) ---- */
static int64_t test_start_wall, test_start_now;

int64_t bv_ward_now_ms(void)
{
    static _Atomic int64_t last_file_now;
    const char *file = getenv("BEVAN_TEST_NOW_FILE");
    int64_t lo, hi;
    if (file && *file) {
        size_t len;
        char *txt = bv_read_text_file(file, 256, &len);
        if (txt) {
            while (len && (txt[len - 1] == '\n' || txt[len - 1] == ' ' || txt[len - 1] == '\r')) txt[--len] = '\0';
            int rc = bv_fhir_date_range(txt, &lo, &hi);
            free(txt);
            if (rc == BV_OK) {
                last_file_now = lo;
                return lo;
            }
        }
        if (last_file_now) return last_file_now;   /* being rewritten: keep the last good value */
    }
    const char *fixed = getenv("BEVAN_TEST_NOW");
    if (fixed && *fixed && bv_fhir_date_range(fixed, &lo, &hi) == BV_OK) {
        static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&mu);
        if (!test_start_wall) { test_start_wall = bv_now_ms(); test_start_now = lo; }
        int64_t r = test_start_now + (bv_now_ms() - test_start_wall);
        pthread_mutex_unlock(&mu);
        return r;
    }
    return bv_now_ms();
}

/* ---- helpers ---- */
typedef struct {
    bv_ward *w;
    bv_store_txn *t;
    bv_arena *a;
    int64_t now;
} wctx;

static const char *kv_get(wctx *c, const char *key)
{
    const char *v = NULL;
    if (bv_txn_kv_get(c->t, c->a, key, &v) != BV_OK) return NULL;
    return v;
}

static int kv_set(wctx *c, const char *key, const char *value) { return bv_txn_kv_set(c->t, key, value); }

static int64_t kv_int(wctx *c, const char *key, int64_t dflt)
{
    const char *v = kv_get(c, key);
    int64_t n;
    if (!v || bv_str_to_i64(v, strlen(v), &n)) return dflt;
    return n;
}

static int kv_set_int(wctx *c, const char *key, int64_t n)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, n);
    return kv_set(c, key, buf);
}

static const char *instant(bv_arena *a, int64_t ms)
{
    char buf[40];
    bv_format_instant(ms, buf, sizeof buf);
    return bv_arena_strdup(a, buf);
}

static json_value *parse_text(bv_arena *a, const char *text, size_t len)
{
    json_value *v = NULL;
    json_error err;
    if (json_parse(a, text, len, NULL, &v, &err)) return NULL;
    return v;
}

/* Write res as version `version` of type/id (id, meta stamped here), with its index rows. */
static int put_resource(wctx *c, const char *type, const char *id, json_value *res, int64_t version)
{
    bv_arena *a = c->a;
    int64_t now = bv_txn_now_ms(c->t);
    json_remove(res, "id");
    json_set_at(a, res, 1, "id", json_new_string(a, id));
    json_remove(res, "meta");
    json_value *meta = json_new(a, JSON_OBJECT);
    json_set(a, meta, "versionId", json_new_string(a, bv_arena_printf(a, "%" PRId64, version)));
    json_set(a, meta, "lastUpdated", json_new_string(a, instant(a, now)));
    json_set_at(a, res, 2, "meta", meta);
    bv_outcome oo;
    bv_outcome_init(&oo, a);
    bv_validate_opts vo = {0};
    if (bv_fhir_validate(res, type, &vo, &oo) > 0) {
        for (size_t i = 0; i < oo.n; i++)
            bv_log(BV_LOG_ERROR, "ward: generated %s is not valid: %s: %s", type,
                   oo.issues[i].expression ? oo.issues[i].expression : "", oo.issues[i].diagnostics);
        return BV_EINTERNAL;
    }
    bv_index_row *rows = NULL;
    size_t n_rows = 0;
    if (bv_fhir_extract_index(a, res, &rows, &n_rows)) return BV_EINTERNAL;
    bv_buf b;
    bv_buf_init(&b, 0);
    json_write(&b, res, false);
    const char *body = bv_arena_strndup(a, b.data ? b.data : "", b.len);
    size_t len = b.len;
    bv_buf_free(&b);
    bv_put p = {.type = type, .id = id, .version = version, .last_updated_ms = now, .method = version == 1 ? "POST" : "PUT",
                .body = body, .body_len = len, .rows = rows, .n_rows = n_rows};
    return bv_txn_put(c->t, &p);
}

/* Current live version of type/id, parsed; NULL if absent or deleted. */
static json_value *read_current(wctx *c, const char *type, const char *id, int64_t *version)
{
    bv_record r;
    if (!id || bv_txn_read(c->t, c->a, type, id, &r) != BV_OK || r.deleted) return NULL;
    *version = r.version;
    return parse_text(c->a, r.body, r.body_len);
}

static json_value *coding_concept(bv_arena *a, const char *system, const char *code, const char *display)
{
    json_value *cc = json_new(a, JSON_OBJECT), *arr = json_new(a, JSON_ARRAY), *cd = json_new(a, JSON_OBJECT);
    json_set(a, cd, "system", json_new_string(a, system));
    json_set(a, cd, "code", json_new_string(a, code));
    if (display) json_set(a, cd, "display", json_new_string(a, display));
    json_push(a, arr, cd);
    json_set(a, cc, "coding", arr);
    if (display) json_set(a, cc, "text", json_new_string(a, display));
    return cc;
}

static json_value *reference(bv_arena *a, const char *type, const char *id)
{
    json_value *r = json_new(a, JSON_OBJECT);
    json_set(a, r, "reference", json_new_string(a, bv_arena_printf(a, "%s/%s", type, id)));
    return r;
}

static void add_note(wctx *c, json_value *task, const char *text)
{
    json_value *notes = json_get(task, "note");
    if (!json_is(notes, JSON_ARRAY)) {
        notes = json_new(c->a, JSON_ARRAY);
        json_set(c->a, task, "note", notes);
    }
    json_value *n = json_new(c->a, JSON_OBJECT);
    json_set(c->a, n, "time", json_new_string(c->a, instant(c->a, c->now)));
    json_set(c->a, n, "text", json_new_string(c->a, text));
    json_push(c->a, notes, n);
}

static bool task_open(const char *status)
{
    return bv_streq(status, "requested") || bv_streq(status, "accepted") || bv_streq(status, "received") ||
           bv_streq(status, "ready") || bv_streq(status, "in-progress") || bv_streq(status, "on-hold") ||
           bv_streq(status, "draft");
}

static const char *alert_key(wctx *c, const char *plan_id, bv_alert_family f)
{
    return bv_arena_printf(c->a, "ward.alert.%s.%d", plan_id, (int)f);
}

/* The open alert of a family: Task (parsed) and ids; false when none is open. */
static bool open_alert(wctx *c, const char *plan_id, bv_alert_family f, json_value **task, int64_t *tver,
                       const char **task_id, const char **flag_id)
{
    const char *v = kv_get(c, alert_key(c, plan_id, f));
    if (!v) return false;
    size_t cut = strcspn(v, " "); /* "TASK-ID FLAG-ID" */
    if (!v[cut]) return false;
    *task_id = bv_arena_strndup(c->a, v, cut);
    *flag_id = v + cut + 1;
    *task = read_current(c, "Task", *task_id, tver);
    return *task && task_open(json_get_str(*task, "status"));
}

static int set_flag_inactive(wctx *c, const char *flag_id)
{
    int64_t ver;
    json_value *flag = read_current(c, "Flag", flag_id, &ver);
    if (!flag || !bv_streq(json_get_str(flag, "status"), "active")) return 0;
    json_set(c->a, flag, "status", json_new_string(c->a, "inactive"));
    json_value *period = json_get(flag, "period");
    if (!json_is(period, JSON_OBJECT)) {
        period = json_new(c->a, JSON_OBJECT);
        json_set(c->a, flag, "period", period);
    }
    json_set(c->a, period, "end", json_new_string(c->a, instant(c->a, c->now)));
    return put_resource(c, "Flag", flag_id, flag, ver + 1);
}

/* Closes the open alert of a family (Task status `status`, a note; Flag inactive). */
static int close_alert(wctx *c, const char *plan_id, bv_alert_family f, const char *status, const char *why)
{
    json_value *task;
    int64_t tver;
    const char *tid, *fid;
    if (!open_alert(c, plan_id, f, &task, &tver, &tid, &fid)) return 0;
    json_set(c->a, task, "status", json_new_string(c->a, status));
    json_set(c->a, task, "lastModified", json_new_string(c->a, instant(c->a, c->now)));
    add_note(c, task, why);
    int rc = put_resource(c, "Task", tid, task, tver + 1);
    if (!rc) rc = set_flag_inactive(c, fid);
    if (!rc) rc = kv_set(c, alert_key(c, plan_id, f), NULL);
    return rc;
}

/* Raise (or update, or escalate) the alert of kind k for the plan. */
static int raise_alert(wctx *c, const bv_care_plan *p, bv_alert_kind k, const char *description)
{
    bv_arena *a = c->a;
    bv_alert_family f = bv_alert_family_of(k);
    json_value *task;
    int64_t tver;
    const char *tid, *fid;
    const char *now = instant(a, c->now);
    if (open_alert(c, p->id, f, &task, &tver, &tid, &fid)) {
        const json_value *cd = json_at(json_get(json_get(task, "code"), "coding"), 0);
        int old = bv_alert_from_code(json_get_str(cd, "code"));
        if (old >= 0 && bv_alert_rank(k) < bv_alert_rank((bv_alert_kind)old)) {
            /* better: no change, except that an open overdue alert says which reading is missing now */
            if (f != BV_FAMILY_OVERDUE) return 0;
            json_set(a, task, "description", json_new_string(a, description));
            json_set(a, task, "lastModified", json_new_string(a, now));
            return put_resource(c, "Task", tid, task, tver + 1);
        }
        json_set(a, task, "description", json_new_string(a, description));
        json_set(a, task, "lastModified", json_new_string(a, now));
        if (old < 0 || bv_alert_rank(k) > bv_alert_rank((bv_alert_kind)old)) {
            /* worse: escalate the same alert (new code and priority, back to "requested") */
            json_set(a, task, "code", coding_concept(a, BV_CARE_SYS_ALERT, bv_alert_code(k), bv_alert_display(k)));
            json_set(a, task, "priority", json_new_string(a, bv_alert_priority(k)));
            json_set(a, task, "status", json_new_string(a, "requested"));
            json_remove(task, "businessStatus");   /* e.g. the board's "acknowledged" no longer holds */
            add_note(c, task, bv_arena_printf(a, "Escalated from %s to %s: %s", old >= 0 ? bv_alert_code(old) : "?",
                                              bv_alert_code(k), description));
            int64_t fver;
            json_value *flag = read_current(c, "Flag", fid, &fver);
            if (flag) {
                json_set(a, flag, "code", coding_concept(a, BV_CARE_SYS_ALERT, bv_alert_code(k), bv_alert_display(k)));
                json_set(a, flag, "status", json_new_string(a, "active"));
                int rc = put_resource(c, "Flag", fid, flag, fver + 1);
                if (rc) return rc;
            }
        }
        return put_resource(c, "Task", tid, task, tver + 1);
    }
    char task_id[40], flag_id[40];
    bv_uuid7(flag_id);
    bv_uuid7(task_id);
    json_value *flag = json_new(a, JSON_OBJECT);
    json_set(a, flag, "resourceType", json_new_string(a, "Flag"));
    json_value *exts = json_new(a, JSON_ARRAY), *ext = json_new(a, JSON_OBJECT);
    json_set(a, ext, "url", json_new_string(a, BV_CARE_EXT_CAREPLAN));
    json_set(a, ext, "valueReference", reference(a, "CarePlan", p->id));
    json_push(a, exts, ext);
    json_set(a, flag, "extension", exts);
    json_set(a, flag, "status", json_new_string(a, "active"));
    json_set(a, flag, "code", coding_concept(a, BV_CARE_SYS_ALERT, bv_alert_code(k), bv_alert_display(k)));
    json_set(a, flag, "subject", reference(a, "Patient", p->patient_id));
    json_value *period = json_new(a, JSON_OBJECT);
    json_set(a, period, "start", json_new_string(a, now));
    json_set(a, flag, "period", period);
    int rc = put_resource(c, "Flag", flag_id, flag, 1);
    if (rc) return rc;

    task = json_new(a, JSON_OBJECT);
    json_set(a, task, "resourceType", json_new_string(a, "Task"));
    json_value *based = json_new(a, JSON_ARRAY);
    json_push(a, based, reference(a, "CarePlan", p->id));
    json_set(a, task, "basedOn", based);
    json_set(a, task, "status", json_new_string(a, "requested"));
    json_set(a, task, "intent", json_new_string(a, "order"));
    json_set(a, task, "priority", json_new_string(a, bv_alert_priority(k)));
    json_set(a, task, "code", coding_concept(a, BV_CARE_SYS_ALERT, bv_alert_code(k), bv_alert_display(k)));
    json_set(a, task, "description", json_new_string(a, description));
    json_set(a, task, "focus", reference(a, "Flag", flag_id));
    json_set(a, task, "for", reference(a, "Patient", p->patient_id));
    json_set(a, task, "authoredOn", json_new_string(a, now));
    json_set(a, task, "lastModified", json_new_string(a, now));
    if (p->ward_id) json_set(a, task, "owner", reference(a, "CareTeam", p->ward_id));
    rc = put_resource(c, "Task", task_id, task, 1);
    if (rc) return rc;
    return kv_set(c, alert_key(c, p->id, f), bv_arena_printf(a, "%s %s", task_id, flag_id));
}

/* The patient's active ward plan (parsed), or false. */
static bool active_plan(wctx *c, const char *patient_id, bv_care_plan *p)
{
    const char *plan_id = kv_get(c, bv_arena_printf(c->a, "ward.patient.%s", patient_id));
    int64_t ver;
    json_value *cp = plan_id ? read_current(c, "CarePlan", plan_id, &ver) : NULL;
    if (!cp) return false;
    if (bv_care_plan_parse(c->a, cp, p, NULL) || !p->virtual_ward || !bv_streq(p->status, "active")) return false;
    if (!bv_streq(p->patient_id, patient_id)) return false;
    p->id = plan_id;
    return true;
}

static const char *ref_local(const json_value *ref, const char *type)
{
    const char *r = json_get_str(ref, "reference");
    size_t tl = strlen(type);
    if (!r || strncmp(r, type, tl) != 0 || r[tl] != '/' || !r[tl + 1] || strchr(r + tl + 1, '/')) return NULL;
    return r + tl + 1;
}

/* ---- NEWS2 ---- */
static int search(wctx *c, const char *type, const bv_param *params, size_t n, bv_record **out, size_t *nout)
{
    bv_search_request req;
    bv_outcome oo;
    bv_outcome_init(&oo, c->a);
    if (bv_fhir_parse_search(c->a, type, params, n, true, &req, &oo)) {
        bv_log(BV_LOG_ERROR, "ward: search on %s: %s", type, oo.n ? oo.issues[0].diagnostics : "?");
        return BV_EINTERNAL;
    }
    return bv_txn_search(c->t, c->a, &req.search, out, nout, NULL);
}

static int param_slot(bv_reading_kind k)
{
    switch (k) {
    case BV_RD_RR: return BV_N2_RR;
    case BV_RD_SPO2: return BV_N2_SPO2;
    case BV_RD_AIR_O2: return BV_N2_AIR_O2;
    case BV_RD_BP: case BV_RD_SBP: return BV_N2_SBP;
    case BV_RD_PULSE: return BV_N2_PULSE;
    case BV_RD_ACVPU: return BV_N2_ACVPU;
    case BV_RD_TEMP: return BV_N2_TEMP;
    default: return -1;
    }
}

/* NEWS2 as of time `at` (the triggering reading's time): the latest reading of each parameter at or
 * before it, all within the window ending at the latest of them. */
static int evaluate_news2(wctx *c, const bv_care_plan *p, int64_t at)
{
    bv_arena *a = c->a;
    bv_param q[] = {{"subject", bv_arena_printf(a, "Patient/%s", p->patient_id)}, {"_sort", "-date"}, {"_count", "60"},
                    {"date", bv_arena_printf(a, "le%s", instant(a, at + 60000))}};   /* slack: a value with seconds
                                                                                  precision ends at .999 */
    bv_record *recs;
    size_t n;
    int rc = search(c, "Observation", q, 4, &recs, &n);
    if (rc) return rc;
    /* latest reading of each parameter within the window ending at the latest reading */
    const bv_record *used[BV_N2_NPARAMS] = {0};
    bv_reading got[BV_N2_NPARAMS];
    int64_t latest = 0;
    for (size_t i = 0; i < n; i++) {
        json_value *obs = parse_text(a, recs[i].body, recs[i].body_len);
        bv_reading r;
        if (!obs || bv_care_reading(obs, &r) || !r.has_value) continue;
        int64_t t = r.effective_ms ? r.effective_ms : recs[i].last_updated_ms;
        r.effective_ms = t;
        if (t > at) continue;
        if (!latest || t > latest) latest = t;
        int slot = param_slot(r.kind);
        if (slot < 0) continue;
        if (!used[slot] || t > got[slot].effective_ms) {
            used[slot] = &recs[i];
            got[slot] = r;
        }
    }
    for (int i = 0; i < BV_N2_NPARAMS; i++)
        if (!used[i] || got[i].effective_ms < latest - c->w->o.news2_window_ms) return 0;   /* no full set */
    bv_buf key;
    bv_buf_init(&key, 0);
    for (int i = 0; i < BV_N2_NPARAMS; i++) bv_buf_printf(&key, "%s%s/%" PRId64, i ? "," : "", used[i]->id, used[i]->version);
    const char *kkey = bv_arena_printf(a, "ward.news2.%s", p->id);
    const char *prev = kv_get(c, kkey);
    bool same = prev && strcmp(prev, bv_buf_cstr(&key)) == 0;
    rc = same ? 0 : kv_set(c, kkey, bv_buf_cstr(&key));
    bv_buf_free(&key);
    if (same || rc) return rc;

    bv_news2_input in = {.rr = (int)(got[BV_N2_RR].value + 0.5), .spo2 = (int)(got[BV_N2_SPO2].value + 0.5),
                         .sbp = (int)(got[BV_N2_SBP].value + 0.5), .pulse = (int)(got[BV_N2_PULSE].value + 0.5),
                         .on_oxygen = got[BV_N2_AIR_O2].on_oxygen, .acvpu = got[BV_N2_ACVPU].acvpu,
                         .temp_c = got[BV_N2_TEMP].value, .scale = p->scale};
    bv_news2_result res;
    bv_news2_score(&in, &res);

    json_value *o = json_new(a, JSON_OBJECT);
    json_set(a, o, "resourceType", json_new_string(a, "Observation"));
    json_set(a, o, "status", json_new_string(a, "final"));
    json_value *cats = json_new(a, JSON_ARRAY);
    json_push(a, cats, coding_concept(a, "http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey"));
    json_set(a, o, "category", cats);
    json_set(a, o, "code", coding_concept(a, BV_SNOMED, BV_CARE_NEWS2_CODE,
                                          "Royal College of Physicians National Early Warning Score 2 (NEWS2) total score"));
    json_set(a, o, "subject", reference(a, "Patient", p->patient_id));
    json_set(a, o, "effectiveDateTime", json_new_string(a, instant(a, latest)));
    json_set(a, o, "valueInteger", json_new_int(a, res.total));
    json_value *interp = json_new(a, JSON_ARRAY);
    json_value *icc = coding_concept(a, BV_CARE_SYS_BAND, bv_news2_band_code(res.band), bv_news2_band_code(res.band));
    json_set(a, icc, "text", json_new_string(a, bv_news2_response(res.band, res.total)));
    json_push(a, interp, icc);
    json_set(a, o, "interpretation", interp);
    json_value *notes = json_new(a, JSON_ARRAY), *note = json_new(a, JSON_OBJECT);
    json_set(a, note, "text", json_new_string(a, p->scale == 2 ? "NEWS2 SpO2 Scale 2 (decided by the plan's clinician)"
                                                              : "NEWS2 SpO2 Scale 1"));
    json_push(a, notes, note);
    json_set(a, o, "note", notes);
    json_value *derived = json_new(a, JSON_ARRAY), *comps = json_new(a, JSON_ARRAY);
    for (int i = 0; i < BV_N2_NPARAMS; i++) {
        json_push(a, derived, reference(a, "Observation", used[i]->id));
        json_value *comp = json_new(a, JSON_OBJECT);
        const char *pc = bv_news2_param_code((bv_news2_param)i, p->scale);
        json_set(a, comp, "code", pc ? coding_concept(a, BV_SNOMED, pc, bv_news2_param_name((bv_news2_param)i))
                                     : coding_concept(a, BV_CARE_SYS_PARAM, "spo2-scale-2", "SpO2 Scale 2"));
        json_set(a, comp, "valueInteger", json_new_int(a, res.sub[i]));
        json_push(a, comps, comp);
    }
    json_set(a, o, "derivedFrom", derived);
    json_set(a, o, "component", comps);
    char oid[40];
    bv_uuid7(oid);
    rc = put_resource(c, "Observation", oid, o, 1);
    if (rc) return rc;
    bv_alert_kind k;
    switch (res.band) {
    case BV_BAND_HIGH: k = BV_ALERT_NEWS2_HIGH; break;
    case BV_BAND_MEDIUM: k = BV_ALERT_NEWS2_MEDIUM; break;
    case BV_BAND_LOW_MEDIUM: k = BV_ALERT_NEWS2_LOW_MEDIUM; break;
    default: return 0;
    }
    return raise_alert(c, p, k,
                       bv_arena_printf(a, "NEWS2 %d (%s) at %s, Observation/%s: %s", res.total,
                                       bv_news2_band_code(res.band), instant(a, latest), oid,
                                       bv_news2_response(res.band, res.total)));
}

/* ---- change handlers ---- */
typedef struct {
    const char *plan_ids[BATCH];
    int64_t at[BATCH];
    bv_care_plan plans[BATCH];
    size_t n;
} news2_queue;

static int on_careplan(wctx *c, const bv_record *r)
{
    const char *pkey = bv_arena_printf(c->a, "ward.plan.%s", r->id);
    bv_care_plan p;
    json_value *res = r->deleted ? NULL : parse_text(c->a, r->body, r->body_len);
    if (res) bv_care_plan_parse(c->a, res, &p, NULL);
    /* the version in the feed may be old: act on the current one */
    int64_t ver;
    json_value *cur = read_current(c, "CarePlan", r->id, &ver);
    if (cur) bv_care_plan_parse(c->a, cur, &p, NULL);
    else memset(&p, 0, sizeof p);
    p.id = r->id;
    const char *known_pid = kv_get(c, pkey);
    if (!cur && !known_pid) return 0;
    if (cur && !p.virtual_ward && !known_pid) return 0;
    if (cur && p.virtual_ward && bv_streq(p.status, "active") && p.patient_id) {
        int rc = kv_set(c, pkey, p.patient_id);
        if (!rc) rc = kv_set(c, bv_arena_printf(c->a, "ward.patient.%s", p.patient_id), r->id);
        return rc;
    }
    /* discharged (or no longer a ward plan / deleted): close its alerts, stop monitoring */
    const char *why = bv_arena_printf(c->a, "Monitoring ended: CarePlan/%s is %s", r->id,
                                      cur ? (p.status ? p.status : "not a ward plan") : "deleted");
    for (int f = 0; f <= BV_FAMILY_OVERDUE; f++) {
        int rc = close_alert(c, r->id, (bv_alert_family)f, "cancelled", why);
        if (rc) return rc;
    }
    const char *pid = known_pid ? known_pid : p.patient_id;
    if (pid) {
        const char *patkey = bv_arena_printf(c->a, "ward.patient.%s", pid);
        if (bv_streq(kv_get(c, patkey), r->id) && kv_set(c, patkey, NULL)) return BV_EIO;
    }
    return 0;
}

static int on_task(wctx *c, const bv_record *r)
{
    json_value *task;
    if (r->deleted) {
        /* an alert Task deleted instead of closed: its Flag must not stay active (the board and
         * the patient's record would show an alert nobody owns); the version before the deletion
         * names it */
        bv_record prev;
        if (r->version < 2 || bv_txn_vread(c->t, c->a, "Task", r->id, r->version - 1, &prev) != BV_OK || prev.deleted)
            return 0;
        task = parse_text(c->a, prev.body, prev.body_len);
    } else {
        int64_t ver;
        task = read_current(c, "Task", r->id, &ver);
    }
    if (!task) return 0;
    const json_value *cd = json_at(json_get(json_get(task, "code"), "coding"), 0);
    if (!bv_streq(json_get_str(cd, "system"), BV_CARE_SYS_ALERT)) return 0;
    if (!r->deleted && task_open(json_get_str(task, "status"))) return 0;
    const char *fid = ref_local(json_get(task, "focus"), "Flag");
    return fid ? set_flag_inactive(c, fid) : 0;
}

static int on_observation(wctx *c, const bv_record *r, news2_queue *q)
{
    if (r->deleted) return 0;
    json_value *obs = parse_text(c->a, r->body, r->body_len);
    bv_reading rd;
    if (!obs || bv_care_reading(obs, &rd)) return 0;
    const char *pid = ref_local(json_get(obs, "subject"), "Patient");
    if (!pid) return 0;
    bv_care_plan p;
    if (!active_plan(c, pid, &p)) return 0;
    int64_t t = rd.effective_ms ? rd.effective_ms : r->last_updated_ms;
    const char *lkey = bv_arena_printf(c->a, "ward.last.%s", p.id);
    int rc = 0;
    /* a device clock ahead of ours must not make later readings look already taken: for the
     * overdue schedule a reading counts at most from when it reached the server */
    int64_t t_last = t < r->last_updated_ms ? t : r->last_updated_ms;
    if (t_last > kv_int(c, lkey, 0)) rc = kv_set_int(c, lkey, t_last);
    if (!rc) rc = close_alert(c, p.id, BV_FAMILY_OVERDUE, "completed",
                              bv_arena_printf(c->a, "Reading received: Observation/%s", r->id));
    if (rc) return rc;
    if (rd.kind == BV_RD_SPO2 && rd.has_value) {
        int spo2 = (int)(rd.value + 0.5);
        const char *skey = bv_arena_printf(c->a, "ward.spo2.%s", p.id);
        int prev = (int)kv_int(c, skey, -1);
        rc = kv_set_int(c, skey, spo2);
        if (rc) return rc;
        bv_oxi_band b = bv_care_oximetry(&p, spo2, prev);
        if (b != BV_OXI_GREEN) {
            bv_alert_kind k = b == BV_OXI_RED ? BV_ALERT_SPO2_RED : b == BV_OXI_AMBER ? BV_ALERT_SPO2_AMBER
                                                                                     : BV_ALERT_SPO2_DROP;
            const char *desc = b == BV_OXI_DROP
                                   ? bv_arena_printf(c->a, "SpO2 %d%% at %s (previous %d%%, baseline %d%%), Observation/%s",
                                                     spo2, instant(c->a, t), prev, p.baseline, r->id)
                                   : bv_arena_printf(c->a, "SpO2 %d%% at %s (amber at or below %d%%, red at or below "
                                                           "%d%%), Observation/%s",
                                                     spo2, instant(c->a, t), p.amber_at_or_below, p.red_at_or_below, r->id);
            rc = raise_alert(c, &p, k, desc);
            if (rc) return rc;
        }
    }
    /* Cheap pre-check before the NEWS2 search: the latest time seen for each of the 7 parameters
     * (kv ward.seen.{plan}); most home sittings (SpO2 + pulse) never make a full set. */
    int slot = param_slot(rd.kind);
    if (slot < 0 || !rd.has_value) return 0;
    const char *seen_key = bv_arena_printf(c->a, "ward.seen.%s", p.id);
    int64_t seen[BV_N2_NPARAMS] = {0};
    const char *sv = kv_get(c, seen_key);
    for (int i = 0; sv && i < BV_N2_NPARAMS; i++) {
        const char *comma = strchr(sv, ',');
        size_t len = comma ? (size_t)(comma - sv) : strlen(sv);
        if (bv_str_to_i64(sv, len, &seen[i])) seen[i] = 0;
        sv = comma ? comma + 1 : NULL;
    }
    if (t > seen[slot]) {
        seen[slot] = t;
        char buf[BV_N2_NPARAMS * 24];
        size_t bl = 0;
        for (int i = 0; i < BV_N2_NPARAMS; i++) {
            int w = snprintf(buf + bl, sizeof buf - bl, "%s%" PRId64, i ? "," : "", seen[i]);
            if (w > 0 && (size_t)w < sizeof buf - bl) bl += (size_t)w;
        }
        rc = kv_set(c, seen_key, buf);
        if (rc) return rc;
    }
    for (int i = 0; i < BV_N2_NPARAMS; i++)
        if (!seen[i] || seen[i] < t - c->w->o.news2_window_ms) return 0;
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->plan_ids[i], p.id) == 0 && q->at[i] == t) return 0;
    if (q->n < BATCH) {
        q->plans[q->n] = p;
        q->at[q->n] = t;
        q->plan_ids[q->n++] = p.id;
    }
    return 0;
}

typedef struct {
    bv_ward *w;
    bv_arena *a;
    const bv_record *recs;
    size_t n;
    int64_t cursor_to;
    int64_t unit_us;
} batch_ctx;

static int batch_unit(bv_store_txn *t, void *ctxp)
{
    batch_ctx *b = ctxp;
    int64_t t0 = bv_mono_ns();
    wctx c = {.w = b->w, .t = t, .a = b->a, .now = bv_ward_now_ms()};
    news2_queue q = {.n = 0};
    int rc = 0;
    for (size_t i = 0; i < b->n && !rc; i++) {
        const bv_record *r = &b->recs[i];
        if (strcmp(r->type, "Observation") == 0) rc = on_observation(&c, r, &q);
        else if (strcmp(r->type, "CarePlan") == 0) rc = on_careplan(&c, r);
        else if (strcmp(r->type, "Task") == 0) rc = on_task(&c, r);
    }
    for (size_t i = 0; i < q.n && !rc; i++) rc = evaluate_news2(&c, &q.plans[i], q.at[i]);
    if (!rc) rc = kv_set_int(&c, "ward.cursor", b->cursor_to);
    b->unit_us = (bv_mono_ns() - t0) / 1000;
    return rc;
}

static int cursor_unit(bv_store_txn *t, void *ctxp)
{
    return bv_txn_kv_set(t, "ward.cursor", bv_arena_printf(((batch_ctx *)ctxp)->a, "%" PRId64,
                                                          ((batch_ctx *)ctxp)->cursor_to));
}

/* Processes the change feed until caught up (or stopping). */
static void process_changes(bv_ward *w, bv_arena *a)
{
    for (;;) {
        pthread_mutex_lock(&sig_mu);
        bool stop = sig_stop;
        pthread_mutex_unlock(&sig_mu);
        if (stop) return;
        bv_arena_reset(a);
        const char *cur = NULL;
        int64_t cursor = 0;
        if (bv_store_kv_get(w->o.store, a, "ward.cursor", &cur) == BV_OK && cur)
            (void)bv_str_to_i64(cur, strlen(cur), &cursor);
        bv_record *recs;
        size_t n;
        int64_t persisted = cursor;
        cursor = cursor_now(persisted);
        if (bv_store_changes(w->o.store, a, cursor, BATCH, &recs, &n) != BV_OK || n == 0) return;
        batch_ctx b = {.w = w, .a = a, .recs = recs, .n = n, .cursor_to = recs[n - 1].seq};
        bool relevant = false;
        for (size_t i = 0; i < n && !relevant; i++) relevant = ward_relevant(recs[i].type);
        if (!relevant) {
            /* nothing for the ward: move on in memory; write the cursor back now and then so a
             * restart does not re-read a long import */
            cursor_skip_to(b.cursor_to);
            if (b.cursor_to - persisted >= 50000 && bv_store_write(w->o.store, cursor_unit, &b) != 0 &&
                !bv_store_healthy(w->o.store))
                return;
            continue;
        }
        int64_t T0 = bv_now_ms();
        int rc = bv_store_write(w->o.store, batch_unit, &b);
        bv_log(BV_LOG_DEBUG, "ward: batch of %zu in %lld ms (unit %lld us)", n, (long long)(bv_now_ms() - T0), (long long)b.unit_us);
        if (rc == 0) continue;
        if (!bv_store_healthy(w->o.store)) return;
        /* one record at a time; a record that cannot be processed is logged and skipped */
        for (size_t i = 0; i < n; i++) {
            batch_ctx one = {.w = w, .a = a, .recs = &recs[i], .n = 1, .cursor_to = recs[i].seq};
            if (bv_store_write(w->o.store, batch_unit, &one) != 0) {
                bv_log(BV_LOG_ERROR, "ward: could not process %s/%s (seq %" PRId64 "); skipped", recs[i].type,
                       recs[i].id, recs[i].seq);
                if (bv_store_write(w->o.store, cursor_unit, &one) != 0) return;
            }
        }
    }
}

/* Waits on cv for at most wait_ms or until signalled; sig_mu held. */
static void timed_wait(pthread_cond_t *cv, int64_t wait_ms)
{
    if (wait_ms <= 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (wait_ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(wait_ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_cond_timedwait(cv, &sig_mu, &ts);
}

/* ---- overdue readings (the timer) ---- */
static int level_of(const char *s)
{
    int64_t v;
    return s && bv_str_to_i64(s, strlen(s), &v) == 0 ? (int)v : 0;
}

/* What the plan needs now: 0 nothing, 1 overdue, 2 escalated; *slot the reading time missed.
 * last/done are the kv values (NULL when absent). */
static int overdue_level(const bv_ward *w, const bv_care_plan *p, int64_t now, const char *last_s, const char *done,
                         int64_t *slot_out, int64_t *last_out)
{
    int64_t slot = bv_care_plan_slot_before(p, now);
    if (!slot) return 0;
    int64_t grace = w->o.overdue_grace_ms;
    int64_t last = 0;
    if (last_s) (void)bv_str_to_i64(last_s, strlen(last_s), &last);
    if (last >= slot - grace) return 0;
    int64_t late = now - slot;
    int level = late > w->o.overdue_escalate_ms ? 2 : late > grace ? 1 : 0;
    if (!level) return 0;
    if (done) {
        const char *sp = strchr(done, ' ');
        int64_t ds;
        if (sp && bv_str_to_i64(done, (size_t)(sp - done), &ds) == 0 && ds == slot && level_of(sp + 1) >= level)
            return 0;
    }
    *slot_out = slot;
    *last_out = last;
    return level;
}
typedef struct {
    bv_ward *w;
    bv_arena *a;
    const char *plan_id;
    int64_t now;
} tick_ctx;

static int overdue_unit(bv_store_txn *t, void *ctxp)
{
    tick_ctx *k = ctxp;
    wctx c = {.w = k->w, .t = t, .a = k->a, .now = k->now};
    int64_t ver;
    json_value *cp = read_current(&c, "CarePlan", k->plan_id, &ver);
    bv_care_plan p;
    if (!cp || bv_care_plan_parse(c.a, cp, &p, NULL) || !p.virtual_ward || !bv_streq(p.status, "active") ||
        !p.patient_id)
        return 0;
    p.id = k->plan_id;
    const char *okey = bv_arena_printf(c.a, "ward.overdue.%s", p.id);
    int64_t slot = 0, last = 0;
    int level = overdue_level(k->w, &p, k->now, kv_get(&c, bv_arena_printf(c.a, "ward.last.%s", p.id)),
                              kv_get(&c, okey), &slot, &last);
    if (!level) return 0;
    char want[64];
    snprintf(want, sizeof want, "%" PRId64 " %d", slot, level);
    const char *done = kv_get(&c, okey);
    if (done && level == 2) {
        /* the alert for this slot was closed by a clinician before it escalated: it was dealt with */
        const char *sp = strchr(done, ' ');
        int64_t ds;
        json_value *task;
        int64_t tver;
        const char *tid, *fid;
        if (sp && bv_str_to_i64(done, (size_t)(sp - done), &ds) == 0 && ds == slot &&
            !open_alert(&c, p.id, BV_FAMILY_OVERDUE, &task, &tver, &tid, &fid))
            return kv_set(&c, okey, want);
    }
    const char *desc = bv_arena_printf(
        c.a, "No reading for the reading due at %s; last reading %s", instant(c.a, slot),
        last ? instant(c.a, last) : "never");
    int rc = raise_alert(&c, &p, level == 2 ? BV_ALERT_OVERDUE_ESCALATED : BV_ALERT_OVERDUE, desc);
    if (!rc) rc = kv_set(&c, okey, want);
    return rc;
}

/* True once the change thread has processed every change committed before this call (so the
 * overdue checks see every reading already stored); false if stopping or still behind after 10 s. */
static bool changes_caught_up(bv_ward *w, bv_arena *a)
{
    int64_t target = bv_store_last_seq(w->o.store);
    for (int i = 0; i < 200; i++) {
        bv_arena_reset(a);
        const char *cur = NULL;
        int64_t cursor = 0;
        if (bv_store_kv_get(w->o.store, a, "ward.cursor", &cur) == BV_OK && cur)
            (void)bv_str_to_i64(cur, strlen(cur), &cursor);
        if (cursor_now(cursor) >= target) return true;
        pthread_mutex_lock(&sig_mu);
        if (!sig_stop) timed_wait(&timer_cv, 50);
        bool stop = sig_stop;
        pthread_mutex_unlock(&sig_mu);
        if (stop) return false;
    }
    bv_log(BV_LOG_WARN, "ward: the change feed is more than 10 s behind; overdue checks wait");
    return false;
}

static void tick(bv_ward *w, bv_arena *a)
{
    if (!changes_caught_up(w, a)) return;
    bv_arena_reset(a);
    bv_param q[] = {{"category", BV_CARE_SYS_CP_CATEGORY "|" BV_CARE_VIRTUAL_WARD}, {"status", "active"},
                    {"_count", "1000"}};
    bv_search_request req;
    bv_outcome oo;
    bv_outcome_init(&oo, a);
    if (bv_fhir_parse_search(a, "CarePlan", q, 3, true, &req, &oo)) return;
    int64_t now = bv_ward_now_ms();
    for (size_t off = 0;; off += 1000) {
        req.search.offset = off;
        bv_record *recs;
        size_t n;
        if (bv_store_search(w->o.store, a, &req.search, &recs, &n, NULL) != BV_OK || n == 0) return;
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(&sig_mu);
            bool stop = sig_stop;
            pthread_mutex_unlock(&sig_mu);
            if (stop) return;
            json_value *cp = parse_text(a, recs[i].body, recs[i].body_len);
            bv_care_plan p;
            if (!cp || bv_care_plan_parse(a, cp, &p, NULL) || !p.patient_id) continue;
            const char *last = NULL, *done = NULL;
            (void)bv_store_kv_get(w->o.store, a, bv_arena_printf(a, "ward.last.%s", recs[i].id), &last);
            (void)bv_store_kv_get(w->o.store, a, bv_arena_printf(a, "ward.overdue.%s", recs[i].id), &done);
            int64_t slot, lastv;
            if (!overdue_level(w, &p, now, last, done, &slot, &lastv)) continue;
            bv_arena *ua = bv_arena_new(16384);
            tick_ctx k = {.w = w, .a = ua, .plan_id = recs[i].id, .now = now};
            if (bv_store_write(w->o.store, overdue_unit, &k) != 0)
                bv_log(BV_LOG_WARN, "ward: overdue check of CarePlan/%s failed", recs[i].id);
            bv_arena_free(ua);
        }
        if (n < 1000) return;
    }
}

/* ---- the thread ---- */

/* The change thread: woken by the commit listener (and every second, as a safety net). */
static void *changes_main(void *arg)
{
    bv_thread_name("bv-ward-feed");
    bv_ward *w = arg;
    bv_arena *a = bv_arena_new(1 << 16);
    uint64_t seen = (uint64_t)-1;
    for (;;) {
        pthread_mutex_lock(&sig_mu);
        bool stop = sig_stop;
        uint64_t gen = sig_gen;
        pthread_mutex_unlock(&sig_mu);
        if (stop) break;
        if (gen != seen) {
            seen = gen;
            process_changes(w, a);
        }
        pthread_mutex_lock(&sig_mu);
        if (!sig_stop && sig_gen == seen) timed_wait(&sig_cv, 1000);
        pthread_mutex_unlock(&sig_mu);
    }
    bv_arena_free(a);
    return NULL;
}

/* The timer thread (overdue readings): its own thread, so a long pass over many plans never
 * delays the alerts of new readings. */
static void *timer_main(void *arg)
{
    bv_thread_name("bv-ward-timer");
    bv_ward *w = arg;
    bv_arena *a = bv_arena_new(1 << 16);
    for (;;) {
        pthread_mutex_lock(&sig_mu);
        bool stop = sig_stop;
        pthread_mutex_unlock(&sig_mu);
        if (stop) break;
        int64_t next = bv_now_ms() + w->o.tick_ms;
        tick(w, a);
        pthread_mutex_lock(&sig_mu);
        if (!sig_stop) timed_wait(&timer_cv, next - bv_now_ms());
        pthread_mutex_unlock(&sig_mu);
    }
    bv_arena_free(a);
    return NULL;
}

static int64_t env_ms(const char *name, int64_t dflt)
{
    const char *v = getenv(name);
    int64_t n;
    if (v && *v && bv_str_to_i64(v, strlen(v), &n) == 0 && n > 0) return n;
    return dflt;
}

int bv_ward_start(const bv_ward_options *opt, bv_ward **out)
{
    *out = NULL;
    if (!opt || !opt->store) return BV_EINVAL;
    pthread_mutex_lock(&sig_mu);
    bool busy = sig_store != NULL;
    pthread_mutex_unlock(&sig_mu);
    if (busy) return BV_EINVAL;   /* one ward service per process */
    bv_ward *w = bv_calloc(1, sizeof *w);
    w->o = *opt;
    if (w->o.news2_window_ms <= 0) w->o.news2_window_ms = 60 * 60000LL;
    if (w->o.overdue_grace_ms <= 0) w->o.overdue_grace_ms = 60 * 60000LL;
    if (w->o.overdue_escalate_ms <= 0) w->o.overdue_escalate_ms = 4 * 3600000LL;
    if (w->o.tick_ms <= 0) w->o.tick_ms = env_ms("BEVAN_WARD_TICK_MS", 30000);
    pthread_mutex_lock(&sig_mu);
    if (!sig_init) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_cond_init(&sig_cv, &ca);
        pthread_cond_init(&timer_cv, &ca);
        pthread_condattr_destroy(&ca);
        sig_init = true;
    }
    sig_store = opt->store;
    sig_stop = false;
    mem_cursor = 0;   /* a new store: its own ward.cursor counts */
    sig_gen++;
    pthread_mutex_unlock(&sig_mu);
    static bv_store *registered[8];
    static size_t n_registered;
    bool known = false;
    for (size_t i = 0; i < n_registered; i++) known |= registered[i] == opt->store;
    if (!known) {
        if (bv_store_on_commit(opt->store, on_commit, opt->store) != BV_OK) {
            pthread_mutex_lock(&sig_mu);
            sig_store = NULL;
            pthread_mutex_unlock(&sig_mu);
            free(w);
            return BV_EINVAL;
        }
        if (n_registered < 8) registered[n_registered++] = opt->store;
    }
    if (pthread_create(&w->changes, NULL, changes_main, w) != 0) {
        pthread_mutex_lock(&sig_mu);
        sig_store = NULL;
        pthread_mutex_unlock(&sig_mu);
        free(w);
        return BV_EIO;
    }
    w->changes_running = true;
    if (pthread_create(&w->timer, NULL, timer_main, w) != 0) {
        bv_ward_stop(w);
        return BV_EIO;
    }
    w->timer_running = true;
    *out = w;
    bv_log(BV_LOG_INFO, "ward service started (NEWS2 window %" PRId64 " min, overdue after %" PRId64
                        " min, escalated after %" PRId64 " min)",
           w->o.news2_window_ms / 60000, w->o.overdue_grace_ms / 60000, w->o.overdue_escalate_ms / 60000);
    return BV_OK;
}

void bv_ward_stop(bv_ward *w)
{
    if (!w) return;
    pthread_mutex_lock(&sig_mu);
    sig_stop = true;
    pthread_cond_broadcast(&sig_cv);
    pthread_cond_broadcast(&timer_cv);
    pthread_mutex_unlock(&sig_mu);
    if (w->changes_running) pthread_join(w->changes, NULL);
    if (w->timer_running) pthread_join(w->timer, NULL);
    pthread_mutex_lock(&sig_mu);
    sig_store = NULL;
    pthread_mutex_unlock(&sig_mu);
    free(w);
}
