/* Readings: classifying vital-sign Observations (domain.md §3.1) and the plausibility table. */
#include "bevan/care.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UCUM BV_UCUM_SYSTEM

/* ---- which code means what ---- */
static const struct {
    const char *system, *code;
    bv_reading_kind kind;
    const char *what;
} codes[] = {
    {BV_LOINC, "2708-6", BV_RD_SPO2, "SpO2"},
    {BV_LOINC, "59408-5", BV_RD_SPO2, "SpO2"},
    {BV_SNOMED, "431314004", BV_RD_SPO2, "SpO2"},
    {BV_LOINC, "8867-4", BV_RD_PULSE, "pulse"},
    {BV_SNOMED, "364075005", BV_RD_PULSE, "pulse"},
    {BV_LOINC, "9279-1", BV_RD_RR, "respiratory rate"},
    {BV_SNOMED, "86290005", BV_RD_RR, "respiratory rate"},
    {BV_LOINC, "8310-5", BV_RD_TEMP, "temperature"},
    {BV_SNOMED, "386725007", BV_RD_TEMP, "temperature"},
    {BV_LOINC, "85354-9", BV_RD_BP, "blood pressure"},
    {BV_SNOMED, "75367002", BV_RD_BP, "blood pressure"},
    {BV_LOINC, "8480-6", BV_RD_SBP, "systolic blood pressure"},
    {BV_SNOMED, "271649006", BV_RD_SBP, "systolic blood pressure"},
    {BV_LOINC, "8462-4", BV_RD_DBP, "diastolic blood pressure"},
    {BV_SNOMED, "271650006", BV_RD_DBP, "diastolic blood pressure"},
    {BV_SNOMED, "1104441000000107", BV_RD_ACVPU, "consciousness (ACVPU)"},
    {BV_SNOMED, "722742002", BV_RD_AIR_O2, "air or oxygen"},
    {BV_SNOMED, "371825009", BV_RD_AIR_O2, "air or oxygen"},
};

static const struct {
    const char *code;
    bv_acvpu v;
} acvpu_codes[] = {
    {"248234008", BV_ACVPU_A}, {"130987000", BV_ACVPU_C}, {"300202002", BV_ACVPU_V},
    {"450847001", BV_ACVPU_P}, {"422768004", BV_ACVPU_U},
};

/* The kind of a CodeableConcept (first coding that is known). */
static bv_reading_kind concept_kind(const json_value *cc, const char **system, const char **code)
{
    const json_value *coding = json_get(cc, "coding");
    for (size_t i = 0; i < json_count(coding) && json_is(coding, JSON_ARRAY); i++) {
        const json_value *c = json_at(coding, i);
        const char *s = json_get_str(c, "system"), *k = json_get_str(c, "code");
        for (size_t j = 0; j < sizeof codes / sizeof codes[0]; j++)
            if (bv_streq(s, codes[j].system) && bv_streq(k, codes[j].code)) {
                if (system) *system = s;
                if (code) *code = k;
                return codes[j].kind;
            }
    }
    return BV_RD_NONE;
}

static bool concept_has(const json_value *cc, const char *system, const char *code)
{
    const json_value *coding = json_get(cc, "coding");
    for (size_t i = 0; json_is(coding, JSON_ARRAY) && i < json_count(coding); i++) {
        const json_value *c = json_at(coding, i);
        if (bv_streq(json_get_str(c, "system"), system) && bv_streq(json_get_str(c, "code"), code)) return true;
    }
    return false;
}

static int acvpu_of(const json_value *cc, bv_acvpu *out)
{
    for (size_t i = 0; i < sizeof acvpu_codes / sizeof acvpu_codes[0]; i++)
        if (concept_has(cc, BV_SNOMED, acvpu_codes[i].code)) {
            *out = acvpu_codes[i].v;
            return 0;
        }
    return -1;
}

static const char *unit_of(const json_value *q)
{
    const char *u = json_get_str(q, "code");
    return u ? u : json_get_str(q, "unit");
}

static bool quantity_value(const json_value *q, double *v)
{
    return json_is(q, JSON_OBJECT) && json_number_to_double(json_get(q, "value"), v);
}

int bv_care_reading(const json_value *obs, bv_reading *out)
{
    memset(out, 0, sizeof *out);
    if (!bv_streq(json_get_str(obs, "resourceType"), "Observation")) return -1;
    const char *status = json_get_str(obs, "status");
    if (bv_streq(status, "entered-in-error") || bv_streq(status, "cancelled")) return -1;
    const json_value *code = json_get(obs, "code");
    bv_reading_kind k = concept_kind(code, NULL, NULL);
    const json_value *vcc = json_get(obs, "valueCodeableConcept");
    if (k == BV_RD_NONE && vcc &&
        (concept_has(vcc, BV_SNOMED, "722742002") || concept_has(vcc, BV_SNOMED, "371825009")))
        k = BV_RD_AIR_O2;
    if (k == BV_RD_NONE) return -1;
    out->kind = k;
    const char *eff = json_get_str(obs, "effectiveDateTime");
    if (!eff) eff = json_get_str(obs, "effectiveInstant");
    if (!eff) eff = json_get_str(json_get(obs, "effectivePeriod"), "start");
    int64_t lo, hi;
    if (eff && bv_fhir_date_range(eff, &lo, &hi) == BV_OK) out->effective_ms = lo;
    const json_value *q = json_get(obs, "valueQuantity");
    double v;
    switch (k) {
    case BV_RD_ACVPU:
        out->has_value = vcc && acvpu_of(vcc, &out->acvpu) == 0;
        break;
    case BV_RD_AIR_O2:
        out->has_value = true;
        out->on_oxygen = concept_has(code, BV_SNOMED, "371825009") || (vcc && concept_has(vcc, BV_SNOMED, "371825009"));
        break;
    case BV_RD_BP: {
        const json_value *comps = json_get(obs, "component");
        for (size_t i = 0; json_is(comps, JSON_ARRAY) && i < json_count(comps); i++) {
            const json_value *c = json_at(comps, i);
            if (concept_kind(json_get(c, "code"), NULL, NULL) == BV_RD_SBP &&
                quantity_value(json_get(c, "valueQuantity"), &v)) {
                out->has_value = true;
                out->value = v;
            }
        }
        break;
    }
    default:
        if (quantity_value(q, &v)) {
            if (k == BV_RD_TEMP && bv_streq(unit_of(q), "[degF]")) v = (v - 32.0) * 5.0 / 9.0;
            out->has_value = true;
            out->value = v;
        }
        break;
    }
    return 0;
}

/* ---- plausibility table [D]: limits are a design choice (docs/hazard-log.md WARD-1) ---- */
static bv_care_limit limits[] = {
    {BV_LOINC, "2708-6", "%", 50, 100, "SpO2"},
    {BV_LOINC, "59408-5", "%", 50, 100, "SpO2"},
    {BV_SNOMED, "431314004", "%", 50, 100, "SpO2"},
    {BV_LOINC, "8867-4", "/min", 20, 250, "pulse"},
    {BV_LOINC, "8867-4", "{beats}/min", 20, 250, "pulse"},
    {BV_SNOMED, "364075005", "/min", 20, 250, "pulse"},
    {BV_SNOMED, "364075005", "{beats}/min", 20, 250, "pulse"},
    {BV_LOINC, "9279-1", "/min", 3, 70, "respiratory rate"},
    {BV_LOINC, "9279-1", "{breaths}/min", 3, 70, "respiratory rate"},
    {BV_SNOMED, "86290005", "/min", 3, 70, "respiratory rate"},
    {BV_SNOMED, "86290005", "{breaths}/min", 3, 70, "respiratory rate"},
    {BV_LOINC, "8310-5", "Cel", 30, 43, "temperature"},
    {BV_LOINC, "8310-5", "[degF]", 86, 109.4, "temperature"},
    {BV_SNOMED, "386725007", "Cel", 30, 43, "temperature"},
    {BV_SNOMED, "386725007", "[degF]", 86, 109.4, "temperature"},
    {BV_LOINC, "8480-6", "mm[Hg]", 50, 300, "systolic blood pressure"},
    {BV_SNOMED, "271649006", "mm[Hg]", 50, 300, "systolic blood pressure"},
    {BV_LOINC, "8462-4", "mm[Hg]", 20, 200, "diastolic blood pressure"},
    {BV_SNOMED, "271650006", "mm[Hg]", 20, 200, "diastolic blood pressure"},
};
#define N_LIMITS (sizeof limits / sizeof limits[0])

const bv_care_limit *bv_care_limits(size_t *n)
{
    *n = N_LIMITS;
    return limits;
}

int bv_care_set_limit(const char *code, const char *unit, double min, double max)
{
    if (!code || !(min <= max)) return BV_EINVAL;
    int found = 0;
    for (size_t i = 0; i < N_LIMITS; i++)
        if (strcmp(limits[i].code, code) == 0 && (!unit || strcmp(limits[i].unit, unit) == 0)) {
            limits[i].min = min;
            limits[i].max = max;
            found++;
        }
    return found ? BV_OK : BV_ENOTFOUND;
}

int bv_care_set_limit_text(const char *spec)
{
    char buf[128];
    if (!spec || strlen(spec) >= sizeof buf) return BV_EINVAL;
    memcpy(buf, spec, strlen(spec) + 1);
    char *eq = strchr(buf, '=');
    if (!eq) return BV_EINVAL;
    *eq = '\0';
    char *range = eq + 1;
    char *dots = strstr(range, "..");
    if (!dots) return BV_EINVAL;
    *dots = '\0';
    char *colon = strchr(buf, ':');
    if (colon) *colon = '\0';
    char *e1, *e2;
    double lo = strtod(range, &e1), hi = strtod(dots + 2, &e2);
    if (e1 == range || *e1 || e2 == dots + 2 || *e2 || !isfinite(lo) || !isfinite(hi)) return BV_EINVAL;
    return bv_care_set_limit(buf, colon ? colon + 1 : NULL, lo, hi);
}

/* Checks one Quantity against the rows for the concept's codes; adds issues. */
static int check_quantity(bv_arena *a, const json_value *cc, const json_value *q, const char *path, bv_outcome *oo)
{
    const json_value *coding = json_get(cc, "coding");
    const bv_care_limit *first = NULL;
    for (size_t i = 0; json_is(coding, JSON_ARRAY) && i < json_count(coding); i++) {
        const json_value *c = json_at(coding, i);
        const char *s = json_get_str(c, "system"), *k = json_get_str(c, "code");
        for (size_t j = 0; j < N_LIMITS; j++)
            if (bv_streq(s, limits[j].system) && bv_streq(k, limits[j].code)) { first = &limits[j]; break; }
        if (first) break;
    }
    if (!first) return 0;
    double v;
    if (!quantity_value(q, &v)) return 0;   /* no value: dataAbsentReason or a structural matter */
    const char *unit = unit_of(q);
    const char *qsys = json_get_str(q, "system");
    const bv_care_limit *row = NULL;
    char expected[96] = "";
    size_t el = 0;
    for (size_t j = 0; j < N_LIMITS; j++) {
        if (strcmp(limits[j].system, first->system) != 0 || strcmp(limits[j].code, first->code) != 0) continue;
        if (bv_streq(unit, limits[j].unit)) row = &limits[j];
        int w = snprintf(expected + el, sizeof expected - el, "%s'%s'", el ? " or " : "", limits[j].unit);
        if (w > 0 && (size_t)w < sizeof expected - el) el += (size_t)w;
    }
    if (!row || (qsys && strcmp(qsys, UCUM) != 0)) {
        bv_outcome_add(oo, BV_SEV_ERROR, "business-rule", bv_arena_printf(a, "%s.code", path),
                       "wrong unit '%s'%s for %s (%s): expected UCUM %s", unit ? unit : "(none)",
                       qsys && strcmp(qsys, UCUM) != 0 ? " (not a UCUM unit)" : "", first->what, first->code,
                       expected);
        return 1;
    }
    if (!isfinite(v) || v < row->min || v > row->max) {
        bv_outcome_add(oo, BV_SEV_ERROR, "business-rule", bv_arena_printf(a, "%s.value", path),
                       "implausible %s: %s %s is outside the plausible range %g..%g %s", row->what,
                       json_is(json_get(q, "value"), JSON_NUMBER) ? json_get(q, "value")->u.num.text : "?", row->unit,
                       row->min, row->max, row->unit);
        return 1;
    }
    return 0;
}

static int check_observation(bv_arena *a, const json_value *res, bv_outcome *oo)
{
    int n = 0;
    const json_value *code = json_get(res, "code");
    n += check_quantity(a, code, json_get(res, "valueQuantity"), "Observation.valueQuantity", oo);
    if (concept_kind(code, NULL, NULL) == BV_RD_ACVPU) {
        const json_value *vcc = json_get(res, "valueCodeableConcept");
        bv_acvpu c;
        if (vcc && acvpu_of(vcc, &c) != 0) {
            bv_outcome_add(oo, BV_SEV_ERROR, "business-rule", "Observation.valueCodeableConcept",
                           "consciousness (ACVPU) needs a SNOMED CT value: 248234008 alert, 130987000 new confusion, "
                           "300202002 voice, 450847001 pain or 422768004 unresponsive");
            n++;
        }
    }
    const json_value *comps = json_get(res, "component");
    double sbp = NAN, dbp = NAN;
    for (size_t i = 0; json_is(comps, JSON_ARRAY) && i < json_count(comps); i++) {
        const json_value *c = json_at(comps, i);
        char *path = bv_arena_printf(a, "Observation.component[%zu].valueQuantity", i);
        int bad = check_quantity(a, json_get(c, "code"), json_get(c, "valueQuantity"), path, oo);
        n += bad;
        double v;
        bv_reading_kind k = concept_kind(json_get(c, "code"), NULL, NULL);
        if (!bad && quantity_value(json_get(c, "valueQuantity"), &v)) {
            if (k == BV_RD_SBP) sbp = v;
            if (k == BV_RD_DBP) dbp = v;
        }
    }
    if (!isnan(sbp) && !isnan(dbp) && dbp >= sbp) {
        bv_outcome_add(oo, BV_SEV_ERROR, "business-rule", "Observation.component",
                       "implausible blood pressure: diastolic %g mm[Hg] is not below systolic %g mm[Hg]", dbp, sbp);
        n++;
    }
    return n;
}

int bv_care_check_write(bv_arena *a, const json_value *res, bv_outcome *oo)
{
    const char *rt = json_get_str(res, "resourceType");
    if (bv_streq(rt, "Observation")) return check_observation(a, res, oo);
    if (bv_streq(rt, "CarePlan")) {
        bv_care_plan p;
        return bv_care_plan_parse(a, res, &p, oo);
    }
    return 0;
}
