/* Unit tests for src/care: NEWS2 at every boundary of every parameter in both scales (domain.md
 * §1.1), bands, the worked examples, temperature rounding, oximetry bands incl. the baseline drop,
 * plausibility limits, monitoring-plan validation and scheduling. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bevan/care.h"

typedef struct {
    double v;
    int want;
} vec;

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_rr(void **state)
{
    (void)state;
    static const vec t[] = {{0, 3}, {8, 3}, {9, 1}, {11, 1}, {12, 0}, {20, 0}, {21, 2}, {24, 2}, {25, 3}, {60, 3}};
    for (size_t i = 0; i < N(t); i++) {
        if (bv_news2_rr((int)t[i].v) != t[i].want) fail_msg("RR %g", t[i].v);
    }
}

static void test_spo2_scale1(void **state)
{
    (void)state;
    static const vec t[] = {{50, 3}, {91, 3}, {92, 2}, {93, 2}, {94, 1}, {95, 1}, {96, 0}, {100, 0}};
    for (size_t i = 0; i < N(t); i++) {
        /* Scale 1 does not depend on oxygen (oxygen scores separately) */
        if (bv_news2_spo2((int)t[i].v, 1, false) != t[i].want) fail_msg("S1 air %g", t[i].v);
        if (bv_news2_spo2((int)t[i].v, 1, true) != t[i].want) fail_msg("S1 O2 %g", t[i].v);
    }
}

static void test_spo2_scale2(void **state)
{
    (void)state;
    static const vec both[] = {{50, 3}, {83, 3}, {84, 2}, {85, 2}, {86, 1}, {87, 1}, {88, 0}, {92, 0}};
    for (size_t i = 0; i < N(both); i++) {
        if (bv_news2_spo2((int)both[i].v, 2, false) != both[i].want) fail_msg("S2 air %g", both[i].v);
        if (bv_news2_spo2((int)both[i].v, 2, true) != both[i].want) fail_msg("S2 O2 %g", both[i].v);
    }
    static const vec air[] = {{93, 0}, {94, 0}, {95, 0}, {96, 0}, {97, 0}, {100, 0}};
    for (size_t i = 0; i < N(air); i++)
        if (bv_news2_spo2((int)air[i].v, 2, false) != air[i].want) fail_msg("S2 air %g", air[i].v);
    static const vec o2[] = {{93, 1}, {94, 1}, {95, 2}, {96, 2}, {97, 3}, {100, 3}};
    for (size_t i = 0; i < N(o2); i++)
        if (bv_news2_spo2((int)o2[i].v, 2, true) != o2[i].want) fail_msg("S2 O2 %g", o2[i].v);
}

static void test_air_sbp_pulse_acvpu(void **state)
{
    (void)state;
    assert_int_equal(bv_news2_air_o2(false), 0);
    assert_int_equal(bv_news2_air_o2(true), 2);
    static const vec sbp[] = {{40, 3}, {90, 3}, {91, 2}, {100, 2}, {101, 1}, {110, 1}, {111, 0}, {219, 0}, {220, 3}, {300, 3}};
    for (size_t i = 0; i < N(sbp); i++)
        if (bv_news2_sbp((int)sbp[i].v) != sbp[i].want) fail_msg("SBP %g", sbp[i].v);
    static const vec hr[] = {{20, 3}, {40, 3}, {41, 1}, {50, 1}, {51, 0}, {90, 0}, {91, 1},
                             {110, 1}, {111, 2}, {130, 2}, {131, 3}, {250, 3}};
    for (size_t i = 0; i < N(hr); i++)
        if (bv_news2_pulse((int)hr[i].v) != hr[i].want) fail_msg("pulse %g", hr[i].v);
    assert_int_equal(bv_news2_acvpu(BV_ACVPU_A), 0);
    assert_int_equal(bv_news2_acvpu(BV_ACVPU_C), 3);
    assert_int_equal(bv_news2_acvpu(BV_ACVPU_V), 3);
    assert_int_equal(bv_news2_acvpu(BV_ACVPU_P), 3);
    assert_int_equal(bv_news2_acvpu(BV_ACVPU_U), 3);
}

static void test_temperature(void **state)
{
    (void)state;
    static const vec t[] = {{30.0, 3}, {35.0, 3}, {35.1, 1}, {36.0, 1}, {36.1, 0}, {38.0, 0},
                            {38.1, 1}, {39.0, 1}, {39.1, 2}, {42.0, 2},
                            /* rounded to 1 dp first (half away from zero) */
                            {35.04, 3}, {35.05, 1}, {36.04, 1}, {36.05, 0}, {38.04, 0}, {38.05, 1},
                            {39.04, 1}, {39.05, 2}, {36.95, 0}, {34.99, 3}};
    for (size_t i = 0; i < N(t); i++)
        if (bv_news2_temp(t[i].v) != t[i].want) fail_msg("temperature %g: got %d want %d", t[i].v, bv_news2_temp(t[i].v), t[i].want);
}

static void test_bands(void **state)
{
    (void)state;
    assert_int_equal(bv_news2_band_of(0, false), BV_BAND_LOW);
    assert_int_equal(bv_news2_band_of(1, false), BV_BAND_LOW);
    assert_int_equal(bv_news2_band_of(4, false), BV_BAND_LOW);
    assert_int_equal(bv_news2_band_of(3, true), BV_BAND_LOW_MEDIUM);
    assert_int_equal(bv_news2_band_of(4, true), BV_BAND_LOW_MEDIUM);
    assert_int_equal(bv_news2_band_of(5, false), BV_BAND_MEDIUM);
    assert_int_equal(bv_news2_band_of(5, true), BV_BAND_MEDIUM);   /* medium outranks a single 3 */
    assert_int_equal(bv_news2_band_of(6, true), BV_BAND_MEDIUM);
    assert_int_equal(bv_news2_band_of(7, false), BV_BAND_HIGH);
    assert_int_equal(bv_news2_band_of(20, true), BV_BAND_HIGH);
    assert_string_equal(bv_news2_band_code(BV_BAND_LOW_MEDIUM), "low-medium");
    assert_string_equal(bv_news2_band_code(BV_BAND_HIGH), "high");
    assert_string_equal(bv_news2_response(BV_BAND_LOW, 0), "Continue routine NEWS monitoring");
    assert_non_null(strstr(bv_news2_response(BV_BAND_LOW, 2), "registered nurse"));
    assert_non_null(strstr(bv_news2_response(BV_BAND_HIGH, 9), "critical-care"));
}

/* domain.md §1.1 worked test vectors */
static void test_worked_examples(void **state)
{
    (void)state;
    static const struct {
        bv_news2_input in;
        int sub[BV_N2_NPARAMS];   /* RR, SpO2, air/O2, SBP, pulse, ACVPU, temp */
        int total;
        bv_news2_band band;
    } t[] = {
        {{26, 88, 86, 132, true, BV_ACVPU_V, 39.5, 1}, {3, 3, 2, 3, 3, 3, 2}, 19, BV_BAND_HIGH},
        {{16, 97, 120, 70, false, BV_ACVPU_A, 36.8, 1}, {0, 0, 0, 0, 0, 0, 0}, 0, BV_BAND_LOW},
        {{22, 94, 105, 95, false, BV_ACVPU_A, 38.4, 1}, {2, 1, 0, 1, 1, 0, 1}, 6, BV_BAND_MEDIUM},
        {{18, 95, 125, 80, true, BV_ACVPU_A, 37.0, 2}, {0, 2, 2, 0, 0, 0, 0}, 4, BV_BAND_LOW},
        {{7, 96, 120, 70, false, BV_ACVPU_A, 37.0, 1}, {3, 0, 0, 0, 0, 0, 0}, 3, BV_BAND_LOW_MEDIUM},
        /* Scale 2 on air at 95%: 0 for SpO2 (not 2 as on oxygen) */
        {{18, 95, 125, 80, false, BV_ACVPU_A, 37.0, 2}, {0, 0, 0, 0, 0, 0, 0}, 0, BV_BAND_LOW},
        /* Scale 2 on oxygen at 97%: 3 -> a red single parameter plus oxygen 2 = 5 -> medium */
        {{18, 97, 125, 80, true, BV_ACVPU_A, 37.0, 2}, {0, 3, 2, 0, 0, 0, 0}, 5, BV_BAND_MEDIUM},
    };
    for (size_t i = 0; i < N(t); i++) {
        bv_news2_result r;
        bv_news2_score(&t[i].in, &r);
        for (int k = 0; k < BV_N2_NPARAMS; k++)
            if (r.sub[k] != t[i].sub[k]) fail_msg("vector %zu parameter %d: got %d want %d", i, k, r.sub[k], t[i].sub[k]);
        assert_int_equal(r.total, t[i].total);
        assert_int_equal(r.band, t[i].band);
    }
    assert_string_equal(bv_news2_param_code(BV_N2_RR, 1), "1104301000000104");
    assert_null(bv_news2_param_code(BV_N2_SPO2, 2));
}

/* Every boundary of the scale-independent parameters, through bv_news2_score in both scales (the
 * other parameters held at 0-scoring values), and the SpO2 boundaries of each scale in context. */
static void test_boundaries_in_both_scales(void **state)
{
    (void)state;
    static const vec rr[] = {{8, 3}, {9, 1}, {11, 1}, {12, 0}, {20, 0}, {21, 2}, {24, 2}, {25, 3}};
    static const vec sbp[] = {{90, 3}, {91, 2}, {100, 2}, {101, 1}, {110, 1}, {111, 0}, {219, 0}, {220, 3}};
    static const vec hr[] = {{40, 3}, {41, 1}, {50, 1}, {51, 0}, {90, 0}, {91, 1}, {110, 1}, {111, 2}, {130, 2}, {131, 3}};
    static const vec temp[] = {{35.0, 3}, {35.1, 1}, {36.0, 1}, {36.1, 0}, {38.0, 0}, {38.1, 1}, {39.0, 1}, {39.1, 2}};
    for (int scale = 1; scale <= 2; scale++) {
        const bv_news2_input base = {.rr = 16, .spo2 = scale == 1 ? 97 : 90, .sbp = 120, .pulse = 70,
                                     .on_oxygen = false, .acvpu = BV_ACVPU_A, .temp_c = 37.0, .scale = scale};
        bv_news2_result r;
        bv_news2_score(&base, &r);
        assert_int_equal(r.total, 0);
        assert_int_equal(r.band, BV_BAND_LOW);
        for (size_t i = 0; i < N(rr); i++) {
            bv_news2_input in = base;
            in.rr = (int)rr[i].v;
            bv_news2_score(&in, &r);
            if (r.sub[BV_N2_RR] != rr[i].want || r.total != rr[i].want) fail_msg("scale %d RR %g", scale, rr[i].v);
            assert_int_equal(r.band, rr[i].want == 3 ? BV_BAND_LOW_MEDIUM : BV_BAND_LOW);
        }
        for (size_t i = 0; i < N(sbp); i++) {
            bv_news2_input in = base;
            in.sbp = (int)sbp[i].v;
            bv_news2_score(&in, &r);
            if (r.sub[BV_N2_SBP] != sbp[i].want || r.total != sbp[i].want) fail_msg("scale %d SBP %g", scale, sbp[i].v);
        }
        for (size_t i = 0; i < N(hr); i++) {
            bv_news2_input in = base;
            in.pulse = (int)hr[i].v;
            bv_news2_score(&in, &r);
            if (r.sub[BV_N2_PULSE] != hr[i].want || r.total != hr[i].want) fail_msg("scale %d pulse %g", scale, hr[i].v);
        }
        for (size_t i = 0; i < N(temp); i++) {
            bv_news2_input in = base;
            in.temp_c = temp[i].v;
            bv_news2_score(&in, &r);
            if (r.sub[BV_N2_TEMP] != temp[i].want || r.total != temp[i].want) fail_msg("scale %d temp %g", scale, temp[i].v);
        }
        for (int c = BV_ACVPU_A; c <= BV_ACVPU_U; c++) {
            bv_news2_input in = base;
            in.acvpu = (bv_acvpu)c;
            bv_news2_score(&in, &r);
            assert_int_equal(r.sub[BV_N2_ACVPU], c == BV_ACVPU_A ? 0 : 3);
            assert_int_equal(r.band, c == BV_ACVPU_A ? BV_BAND_LOW : BV_BAND_LOW_MEDIUM);
        }
        /* oxygen: +2 for air/O2 in both scales; in Scale 2 it also changes the SpO2 score at >= 93 */
        bv_news2_input o2 = base;
        o2.on_oxygen = true;
        bv_news2_score(&o2, &r);
        assert_int_equal(r.sub[BV_N2_AIR_O2], 2);
        assert_int_equal(r.total, 2);
    }
    /* Scale 2 at 93: 0 on air, 1 on oxygen (plus 2 for oxygen) */
    bv_news2_input s2 = {.rr = 16, .spo2 = 93, .sbp = 120, .pulse = 70, .acvpu = BV_ACVPU_A, .temp_c = 37.0, .scale = 2};
    bv_news2_result r;
    bv_news2_score(&s2, &r);
    assert_int_equal(r.total, 0);
    s2.on_oxygen = true;
    bv_news2_score(&s2, &r);
    assert_int_equal(r.sub[BV_N2_SPO2], 1);
    assert_int_equal(r.total, 3);
    assert_int_equal(r.band, BV_BAND_LOW);
    /* ... and Scale 1 at 93 scores 2 whether on air or oxygen */
    s2.scale = 1;
    bv_news2_score(&s2, &r);
    assert_int_equal(r.sub[BV_N2_SPO2], 2);
    assert_int_equal(r.total, 4);
}

static bv_care_plan default_plan(void)
{
    bv_care_plan p;
    memset(&p, 0, sizeof p);
    p.amber_at_or_below = 94;
    p.red_at_or_below = 92;
    p.baseline = -1;
    p.scale = 1;
    return p;
}

static void test_oximetry(void **state)
{
    (void)state;
    bv_care_plan p = default_plan();
    assert_int_equal(bv_care_oximetry(&p, 100, -1), BV_OXI_GREEN);
    assert_int_equal(bv_care_oximetry(&p, 95, -1), BV_OXI_GREEN);
    assert_int_equal(bv_care_oximetry(&p, 94, -1), BV_OXI_AMBER);
    assert_int_equal(bv_care_oximetry(&p, 93, -1), BV_OXI_AMBER);
    assert_int_equal(bv_care_oximetry(&p, 92, -1), BV_OXI_RED);
    assert_int_equal(bv_care_oximetry(&p, 91, -1), BV_OXI_RED);
    /* the patient's own thresholds */
    p.amber_at_or_below = 90;
    p.red_at_or_below = 88;
    assert_int_equal(bv_care_oximetry(&p, 91, -1), BV_OXI_GREEN);
    assert_int_equal(bv_care_oximetry(&p, 90, -1), BV_OXI_AMBER);
    assert_int_equal(bv_care_oximetry(&p, 89, -1), BV_OXI_AMBER);
    assert_int_equal(bv_care_oximetry(&p, 88, -1), BV_OXI_RED);
    /* sustained drop against the baseline: 3 points in this and the previous reading */
    p = default_plan();
    p.baseline = 98;
    assert_int_equal(bv_care_oximetry(&p, 96, 96), BV_OXI_GREEN);     /* drop 2 */
    assert_int_equal(bv_care_oximetry(&p, 95, 95), BV_OXI_DROP);      /* drop 3, sustained */
    assert_int_equal(bv_care_oximetry(&p, 95, -1), BV_OXI_GREEN);     /* one reading is not sustained */
    assert_int_equal(bv_care_oximetry(&p, 95, 96), BV_OXI_GREEN);     /* previous dropped only 2 */
    assert_int_equal(bv_care_oximetry(&p, 96, 95), BV_OXI_GREEN);     /* now only 2 */
    assert_int_equal(bv_care_oximetry(&p, 94, 95), BV_OXI_AMBER);     /* amber wins over drop */
    p.baseline = -1;
    assert_int_equal(bv_care_oximetry(&p, 95, 95), BV_OXI_GREEN);
    assert_string_equal(bv_oxi_band_name(BV_OXI_RED), "spo2-red");
    assert_non_null(strstr(bv_oxi_advice(BV_OXI_RED), "999"));
    assert_non_null(strstr(bv_oxi_advice(BV_OXI_AMBER), "111"));
}

/* ---- plausibility (the API hook) ---- */
static int check(const char *json)
{
    bv_arena *a = bv_arena_new(4096);
    json_value *v;
    json_error err;
    assert_int_equal(json_parse(a, json, strlen(json), NULL, &v, &err), 0);
    bv_outcome oo;
    bv_outcome_init(&oo, a);
    int n = bv_care_check_write(a, v, &oo);
    for (size_t i = 0; i < oo.n; i++) assert_string_equal(oo.issues[i].code, "business-rule");
    bv_arena_free(a);
    return n;
}

#define OBS(code, value, unit) \
    "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\"," \
    "\"code\":\"" code "\"}]},\"valueQuantity\":{\"value\":" value ",\"system\":\"http://unitsofmeasure.org\",\"code\":\"" unit "\"}}"

static void test_plausibility(void **state)
{
    (void)state;
    assert_int_equal(check(OBS("2708-6", "100", "%")), 0);
    assert_int_equal(check(OBS("2708-6", "101", "%")), 1);
    assert_int_equal(check(OBS("2708-6", "50", "%")), 0);
    assert_int_equal(check(OBS("2708-6", "49", "%")), 1);
    assert_int_equal(check(OBS("2708-6", "96", "mm[Hg]")), 1);   /* wrong unit for the code */
    assert_int_equal(check(OBS("59408-5", "96", "%")), 0);
    assert_int_equal(check(OBS("8867-4", "0", "/min")), 1);      /* pulse 0 */
    assert_int_equal(check(OBS("8867-4", "20", "/min")), 0);
    assert_int_equal(check(OBS("8867-4", "72", "{beats}/min")), 0);
    assert_int_equal(check(OBS("8867-4", "251", "/min")), 1);
    assert_int_equal(check(OBS("8867-4", "72", "Cel")), 1);
    assert_int_equal(check(OBS("8310-5", "60", "Cel")), 1);      /* 60 degrees C */
    assert_int_equal(check(OBS("8310-5", "43", "Cel")), 0);
    assert_int_equal(check(OBS("8310-5", "29.9", "Cel")), 1);
    assert_int_equal(check(OBS("8310-5", "98.6", "[degF]")), 0);
    assert_int_equal(check(OBS("9279-1", "2", "/min")), 1);
    assert_int_equal(check(OBS("9279-1", "16", "/min")), 0);
    assert_int_equal(check(OBS("1234-5", "9999", "kg")), 0);      /* not a vital sign we check */
    /* not UCUM */
    assert_int_equal(check("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
                           "\"http://loinc.org\",\"code\":\"2708-6\"}]},\"valueQuantity\":{\"value\":97,\"system\":"
                           "\"http://example.org/units\",\"code\":\"%\"}}"), 1);
    /* blood pressure panel components */
#define BP(S, D) "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":" \
                     "\"http://loinc.org\",\"code\":\"85354-9\"}]},\"component\":[" \
                     "{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\"}]},\"valueQuantity\":" \
                     "{\"value\":" S ",\"system\":\"http://unitsofmeasure.org\",\"code\":\"mm[Hg]\"}}," \
                     "{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8462-4\"}]},\"valueQuantity\":" \
                     "{\"value\":" D ",\"system\":\"http://unitsofmeasure.org\",\"code\":\"mm[Hg]\"}}]}"
    assert_int_equal(check(BP("120", "80")), 0);
    assert_int_equal(check(BP("301", "80")), 1);
    assert_int_equal(check(BP("120", "120")), 1);   /* diastolic not below systolic */
    /* ACVPU value must be one of the five codes */
    assert_int_equal(check("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
                           "\"http://snomed.info/sct\",\"code\":\"1104441000000107\"}]},\"valueCodeableConcept\":"
                           "{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"248234008\"}]}}"), 0);
    assert_int_equal(check("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
                           "\"http://snomed.info/sct\",\"code\":\"1104441000000107\"}]},\"valueCodeableConcept\":"
                           "{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"12345\"}]}}"), 1);
    /* configurable */
    assert_int_equal(bv_care_set_limit_text("2708-6=70..100"), BV_OK);
    assert_int_equal(check(OBS("2708-6", "69", "%")), 1);
    assert_int_equal(bv_care_set_limit_text("2708-6:%=50..100"), BV_OK);
    assert_int_equal(check(OBS("2708-6", "69", "%")), 0);
    assert_int_not_equal(bv_care_set_limit_text("9999-9=1..2"), BV_OK);
    assert_int_not_equal(bv_care_set_limit_text("2708-6=100..50"), BV_OK);
    assert_int_not_equal(bv_care_set_limit_text("2708-6=x..50"), BV_OK);
}

static void test_readings(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    json_value *v;
    json_error err;
    bv_reading r;
    const char *t = OBS("8310-5", "98.6", "[degF]");
    assert_int_equal(json_parse(a, t, strlen(t), NULL, &v, &err), 0);
    assert_int_equal(bv_care_reading(v, &r), 0);
    assert_int_equal(r.kind, BV_RD_TEMP);
    assert_true(r.value > 36.99 && r.value < 37.01);
    const char *o2 = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"effectiveDateTime\":\"2026-01-01T08:00:00Z\","
                     "\"code\":{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"371825009\"}]}}";
    assert_int_equal(json_parse(a, o2, strlen(o2), NULL, &v, &err), 0);
    assert_int_equal(bv_care_reading(v, &r), 0);
    assert_int_equal(r.kind, BV_RD_AIR_O2);
    assert_true(r.on_oxygen);
    assert_true(r.effective_ms == 1767254400000LL);
    const char *gone = "{\"resourceType\":\"Observation\",\"status\":\"entered-in-error\",\"code\":{\"coding\":["
                       "{\"system\":\"http://loinc.org\",\"code\":\"2708-6\"}]}}";
    assert_int_equal(json_parse(a, gone, strlen(gone), NULL, &v, &err), 0);
    assert_int_not_equal(bv_care_reading(v, &r), 0);
    bv_arena_free(a);
}

/* ---- plans ---- */
static int plan(bv_arena *a, const char *ext, bv_care_plan *p)
{
    const char *json = bv_arena_printf(
        a,
        "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\",\"category\":[{\"coding\":[{\"system\":"
        "\"http://bevan.dev/fhir/CodeSystem/care-plan-category\",\"code\":\"virtual-ward\"}]}],\"subject\":{\"reference\":"
        "\"Patient/p1\"},\"careTeam\":[{\"reference\":\"CareTeam/w1\"}],\"period\":{\"start\":\"2026-01-01T00:00:00Z\"}"
        "%s%s%s}",
        ext ? ",\"extension\":[{\"url\":\"http://bevan.dev/fhir/StructureDefinition/monitoring-plan\",\"extension\":[" : "",
        ext ? ext : "", ext ? "]}]" : "");
    json_value *v;
    json_error err;
    assert_int_equal(json_parse(a, json, strlen(json), NULL, &v, &err), 0);
    bv_outcome oo;
    bv_outcome_init(&oo, a);
    return bv_care_plan_parse(a, v, p, &oo);
}

static void test_plans(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    bv_care_plan p;
    assert_int_equal(plan(a, NULL, &p), 0);
    assert_true(p.virtual_ward);
    assert_string_equal(p.patient_id, "p1");
    assert_string_equal(p.ward_id, "w1");
    assert_int_equal(p.readings_per_day, 3);
    assert_int_equal(p.n_times, 3);
    assert_int_equal(p.times[0], 480);
    assert_int_equal(p.times[2], 1200);
    assert_int_equal(p.duration_days, 14);
    assert_int_equal(p.scale, 1);
    assert_int_equal(p.amber_at_or_below, 94);
    assert_int_equal(p.red_at_or_below, 92);
    /* Scale 2 needs who decided */
    assert_int_equal(plan(a, "{\"url\":\"news2Scale\",\"valueInteger\":2}", &p), 1);
    assert_int_equal(plan(a, "{\"url\":\"news2Scale\",\"valueInteger\":2},{\"url\":\"scale2DecidedBy\",\"valueReference\":"
                             "{\"reference\":\"Practitioner/d1\"}}", &p), 0);
    assert_int_equal(p.scale, 2);
    assert_int_equal(plan(a, "{\"url\":\"news2Scale\",\"valueInteger\":3}", &p), 1);
    /* thresholds in order */
    assert_int_equal(plan(a, "{\"url\":\"spo2AmberAtOrBelow\",\"valueInteger\":90},{\"url\":\"spo2RedAtOrBelow\","
                             "\"valueInteger\":90}", &p), 1);
    assert_int_equal(plan(a, "{\"url\":\"spo2AmberAtOrBelow\",\"valueInteger\":90},{\"url\":\"spo2RedAtOrBelow\","
                             "\"valueInteger\":89},{\"url\":\"spo2Baseline\",\"valueInteger\":93}", &p), 0);
    assert_int_equal(p.baseline, 93);
    assert_int_equal(plan(a, "{\"url\":\"spo2Baseline\",\"valueInteger\":101}", &p), 1);
    /* times: sorted; count must agree with readingsPerDay when both are given */
    assert_int_equal(plan(a, "{\"url\":\"readingTime\",\"valueTime\":\"15:00:00\"},{\"url\":\"readingTime\",\"valueTime\":"
                             "\"09:00:00\"}", &p), 0);
    assert_int_equal(p.n_times, 2);
    assert_int_equal(p.times[0], 540);
    assert_int_equal(p.readings_per_day, 2);
    assert_int_equal(plan(a, "{\"url\":\"readingsPerDay\",\"valueInteger\":3},{\"url\":\"readingTime\",\"valueTime\":"
                             "\"09:00:00\"}", &p), 1);
    assert_int_equal(plan(a, "{\"url\":\"readingsPerDay\",\"valueInteger\":2}", &p), 0);
    assert_int_equal(p.times[0], 480);
    assert_int_equal(p.times[1], 1200);
    assert_int_equal(plan(a, "{\"url\":\"readingsPerDay\",\"valueInteger\":0}", &p), 1);
    assert_int_equal(plan(a, "{\"url\":\"durationDays\",\"valueInteger\":0}", &p), 1);
    /* not a ward plan: nothing checked */
    json_value *v;
    json_error err;
    const char *other = "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"plan\"}";
    assert_int_equal(json_parse(a, other, strlen(other), NULL, &v, &err), 0);
    assert_int_equal(bv_care_plan_parse(a, v, &p, NULL), 0);
    assert_false(p.virtual_ward);
    bv_arena_free(a);
}

static void test_schedule(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    bv_care_plan p;
    assert_int_equal(plan(a, NULL, &p), 0);   /* start 2026-01-01T00:00Z, 08/14/20 (TZ UTC) */
    const int64_t day0 = 1767225600000LL, H = 3600000LL;
    assert_true(bv_care_plan_slot_before(&p, day0 + 7 * H) == 0);            /* before the first slot */
    assert_true(bv_care_plan_slot_before(&p, day0 + 8 * H) == day0 + 8 * H); /* at the slot */
    assert_true(bv_care_plan_slot_before(&p, day0 + 13 * H) == day0 + 8 * H);
    assert_true(bv_care_plan_slot_before(&p, day0 + 24 * H + 7 * H) == day0 + 20 * H);
    /* after the 14 days: the last slot inside them */
    assert_true(bv_care_plan_slot_before(&p, day0 + 20 * 24 * H) == day0 + 13 * 24 * H + 20 * H);
    bv_arena_free(a);
}

static void test_alert_kinds(void **state)
{
    (void)state;
    for (int k = 0; k < BV_ALERT_N; k++) assert_int_equal(bv_alert_from_code(bv_alert_code((bv_alert_kind)k)), k);
    assert_int_equal(bv_alert_from_code("nope"), -1);
    assert_string_equal(bv_alert_priority(BV_ALERT_SPO2_RED), "stat");
    assert_string_equal(bv_alert_priority(BV_ALERT_NEWS2_MEDIUM), "asap");
    assert_true(bv_alert_rank(BV_ALERT_SPO2_RED) > bv_alert_rank(BV_ALERT_SPO2_AMBER));
    assert_true(bv_alert_rank(BV_ALERT_SPO2_AMBER) > bv_alert_rank(BV_ALERT_SPO2_DROP));
    assert_true(bv_alert_rank(BV_ALERT_NEWS2_HIGH) > bv_alert_rank(BV_ALERT_NEWS2_MEDIUM));
    assert_true(bv_alert_rank(BV_ALERT_OVERDUE_ESCALATED) > bv_alert_rank(BV_ALERT_OVERDUE));
    assert_int_equal(bv_alert_family_of(BV_ALERT_SPO2_DROP), BV_FAMILY_OXIMETRY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rr),           cmocka_unit_test(test_spo2_scale1),
        cmocka_unit_test(test_spo2_scale2),  cmocka_unit_test(test_air_sbp_pulse_acvpu),
        cmocka_unit_test(test_temperature),  cmocka_unit_test(test_bands),
        cmocka_unit_test(test_worked_examples), cmocka_unit_test(test_boundaries_in_both_scales),
        cmocka_unit_test(test_oximetry),
        cmocka_unit_test(test_plausibility), cmocka_unit_test(test_readings),
        cmocka_unit_test(test_plans),        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_alert_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
