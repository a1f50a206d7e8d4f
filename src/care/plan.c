/* Monitoring plans: the virtual-ward CarePlan convention (docs/ward.md) parsed and validated. */
#include "bevan/care.h"

#include <string.h>

#define DAY_MS 86400000LL

static bool has_coding(const json_value *concepts, const char *system, const char *code)
{
    for (size_t i = 0; json_is(concepts, JSON_ARRAY) && i < json_count(concepts); i++) {
        const json_value *coding = json_get(json_at(concepts, i), "coding");
        for (size_t j = 0; json_is(coding, JSON_ARRAY) && j < json_count(coding); j++) {
            const json_value *c = json_at(coding, j);
            if (bv_streq(json_get_str(c, "system"), system) && bv_streq(json_get_str(c, "code"), code)) return true;
        }
    }
    return false;
}

/* "Type/id" -> id when the reference is a local one of that type. */
static const char *ref_id(bv_arena *a, const json_value *ref, const char *type)
{
    const char *r = json_get_str(ref, "reference");
    /* inside a transaction Bundle the reference is still the entry's fullUrl; it is rewritten to
     * Type/id before it is stored, which is what the ward service reads */
    if (r && bv_starts_with(r, "urn:uuid:")) return r;
    size_t tl = strlen(type);
    if (!r || strncmp(r, type, tl) != 0 || r[tl] != '/' || !r[tl + 1]) return NULL;
    const char *id = r + tl + 1;
    const char *slash = strchr(id, '/');   /* Type/id/_history/n */
    return slash ? bv_arena_strndup(a, id, (size_t)(slash - id)) : id;
}

/* "HH:MM[:SS]" -> minutes; -1 if invalid. */
static int parse_time(const char *s)
{
    if (!s || !bv_fhir_valid_time(s)) return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    return h * 60 + m;
}

static bool int_value(const json_value *ext, int64_t *v)
{
    return json_number_to_i64(json_get(ext, "valueInteger"), v);
}

#define ADD(...) do { n++; if (oo) bv_outcome_add(oo, BV_SEV_ERROR, "business-rule", __VA_ARGS__); } while (0)

static void sort_ints(int *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            int t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

int bv_care_plan_parse(bv_arena *a, const json_value *res, bv_care_plan *p, bv_outcome *oo)
{
    memset(p, 0, sizeof *p);
    p->readings_per_day = 3;
    p->duration_days = 14;
    p->scale = 1;
    p->baseline = -1;
    p->amber_at_or_below = 94;
    p->red_at_or_below = 92;
    p->id = json_get_str(res, "id");
    p->status = json_get_str(res, "status");
    p->virtual_ward = has_coding(json_get(res, "category"), BV_CARE_SYS_CP_CATEGORY, BV_CARE_VIRTUAL_WARD);
    if (!p->virtual_ward) return 0;
    int n = 0;
    p->patient_id = ref_id(a, json_get(res, "subject"), "Patient");
    if (!p->patient_id) ADD("CarePlan.subject", "a virtual-ward plan's subject must be a Patient reference (Patient/{id})");
    const json_value *teams = json_get(res, "careTeam");
    if (json_is(teams, JSON_ARRAY) && json_count(teams) > 0) p->ward_id = ref_id(a, json_at(teams, 0), "CareTeam");
    if (!p->ward_id) ADD("CarePlan.careTeam", "a virtual-ward plan needs careTeam[0] = the ward's CareTeam/{id}");
    const json_value *period = json_get(res, "period");
    const char *start = json_get_str(period, "start"), *end = json_get_str(period, "end");
    int64_t lo, hi;
    if (start && bv_fhir_date_range(start, &lo, &hi) == BV_OK) p->start_ms = lo;
    else ADD("CarePlan.period.start", "a virtual-ward plan needs period.start (the admission time)");
    if (end && bv_fhir_date_range(end, &lo, &hi) == BV_OK) p->end_ms = lo;
    if (bv_streq(p->status, "active") && p->end_ms) {
        /* an active plan with an end date is allowed (planned discharge); monitoring stops at it */
    }

    const json_value *exts = json_get(res, "extension");
    bool per_day_given = false, decider_ref_bad = false;
    for (size_t i = 0; json_is(exts, JSON_ARRAY) && i < json_count(exts); i++) {
        const json_value *e = json_at(exts, i);
        if (!bv_streq(json_get_str(e, "url"), BV_CARE_EXT_PLAN)) continue;
        const json_value *subs = json_get(e, "extension");
        for (size_t j = 0; json_is(subs, JSON_ARRAY) && j < json_count(subs); j++) {
            const json_value *s = json_at(subs, j);
            const char *url = json_get_str(s, "url");
            const char *path = bv_arena_printf(a, "CarePlan.extension[%zu].extension[%zu]", i, j);
            int64_t v;
            if (bv_streq(url, "readingsPerDay")) {
                if (!int_value(s, &v) || v < 1 || v > BV_CARE_MAX_TIMES)
                    ADD(path, "readingsPerDay must be a valueInteger 1..%d", BV_CARE_MAX_TIMES);
                else { p->readings_per_day = (int)v; per_day_given = true; }
            } else if (bv_streq(url, "readingTime")) {
                int m = parse_time(json_get_str(s, "valueTime"));
                if (m < 0) ADD(path, "readingTime must be a valueTime (hh:mm:ss)");
                else if (p->n_times >= BV_CARE_MAX_TIMES) ADD(path, "at most %d readingTime values", BV_CARE_MAX_TIMES);
                else p->times[p->n_times++] = m;
            } else if (bv_streq(url, "durationDays")) {
                if (!int_value(s, &v) || v < 1 || v > 366) ADD(path, "durationDays must be a valueInteger 1..366");
                else p->duration_days = (int)v;
            } else if (bv_streq(url, "news2Scale")) {
                if (!int_value(s, &v) || (v != 1 && v != 2)) ADD(path, "news2Scale must be valueInteger 1 or 2");
                else p->scale = (int)v;
            } else if (bv_streq(url, "scale2DecidedBy")) {
                p->scale2_decided_by = json_get_str(json_get(s, "valueReference"), "reference");
                if (!p->scale2_decided_by || (!bv_starts_with(p->scale2_decided_by, "Practitioner/") &&
                                              !bv_starts_with(p->scale2_decided_by, "urn:uuid:"))) {
                    decider_ref_bad = true;
                    p->scale2_decided_by = NULL;
                    ADD(path, "scale2DecidedBy must be a valueReference to a Practitioner (Practitioner/{id})");
                }
            } else if (bv_streq(url, "spo2Baseline")) {
                if (!int_value(s, &v) || v < 50 || v > 100) ADD(path, "spo2Baseline must be a valueInteger 50..100");
                else p->baseline = (int)v;
            } else if (bv_streq(url, "spo2AmberAtOrBelow")) {
                if (!int_value(s, &v) || v < 50 || v > 100) ADD(path, "spo2AmberAtOrBelow must be a valueInteger 50..100");
                else p->amber_at_or_below = (int)v;
            } else if (bv_streq(url, "spo2RedAtOrBelow")) {
                if (!int_value(s, &v) || v < 50 || v > 100) ADD(path, "spo2RedAtOrBelow must be a valueInteger 50..100");
                else p->red_at_or_below = (int)v;
            } else if (bv_streq(url, "escalationContact")) {
                if (!json_is(json_get(s, "valueContactPoint"), JSON_OBJECT))
                    ADD(path, "escalationContact must be a valueContactPoint");
            }
            /* other sub-extensions are kept and ignored */
        }
    }
    if (p->scale == 2 && !p->scale2_decided_by && !decider_ref_bad)
        ADD("CarePlan.extension", "NEWS2 Scale 2 needs scale2DecidedBy: the Practitioner who confirmed hypercapnic "
                                  "respiratory failure and decided on Scale 2 (domain.md §1.1)");
    if (p->red_at_or_below >= p->amber_at_or_below)
        ADD("CarePlan.extension", "thresholds out of order: spo2RedAtOrBelow (%d) must be below spo2AmberAtOrBelow (%d)",
            p->red_at_or_below, p->amber_at_or_below);
    if (p->n_times) {
        sort_ints(p->times, p->n_times);
        for (int i = 1; i < p->n_times; i++)
            if (p->times[i] == p->times[i - 1]) { ADD("CarePlan.extension", "readingTime values repeat"); break; }
        if (per_day_given && p->readings_per_day != p->n_times)
            ADD("CarePlan.extension", "readingsPerDay (%d) differs from the number of readingTime values (%d)",
                p->readings_per_day, p->n_times);
        p->readings_per_day = p->n_times;
    } else if (!per_day_given || p->readings_per_day == 3) {
        p->times[0] = 8 * 60;
        p->times[1] = 14 * 60;
        p->times[2] = 20 * 60;
        p->n_times = 3;
    } else {
        /* k readings a day without times: 08:00..20:00 evenly (k <= 13), else evenly over 24 h */
        int k = p->readings_per_day;
        for (int i = 0; i < k; i++)
            p->times[i] = k == 1 ? 8 * 60 : k <= 13 ? 8 * 60 + i * 720 / (k - 1) : i * 1440 / k;
        p->n_times = k;
    }
    return n;
}

int64_t bv_care_plan_slot_before(const bv_care_plan *p, int64_t now_ms)
{
    if (!p->start_ms || p->n_times == 0) return 0;
    int64_t stop = p->start_ms + (int64_t)p->duration_days * DAY_MS;
    if (p->end_ms && p->end_ms < stop) stop = p->end_ms;
    if (now_ms >= stop) now_ms = stop - 1;
    int64_t best = 0;
    /* local days around now (any UTC offset within +-14 h) */
    int64_t day0 = (now_ms + 14 * 3600000LL) / DAY_MS;
    for (int64_t d = day0; d >= day0 - 3; d--)
        for (int i = 0; i < p->n_times; i++) {
            int64_t slot = bv_tz_local_to_utc(d * DAY_MS + (int64_t)p->times[i] * 60000);
            if (slot <= now_ms && slot >= p->start_ms && slot < stop && slot > best) best = slot;
        }
    return best;
}
