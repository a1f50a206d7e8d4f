/* Demo data generator: a synthetic UK primary-care population as FHIR R4 transaction Bundles.
 *
 * Written straight into a bv_buf as JSON text (no DOM): ~47 KB per patient, ~0.5 GB for 10,000
 * patients, so the writer avoids printf and uses json_write_string only for free text (names,
 * addresses). Codes, units and identifiers come from the tables below and need no escaping.
 *
 * Determinism: every random choice comes from bv_rng. The shared bundle has its own stream; each
 * patient has a stream seeded from (seed, patient index), so patient i depends only on the seed, i
 * and the practice count. The one sequential piece is the NHS-number cursor (numbers must be
 * unique): patient i gets the i-th valid number of the seed's permutation.
 * Values are integers scaled by 10 (no floating point), dates are days relative to 2026-01-01.
 * Docs: docs/demo-data.md. */
#include "bevan/demo.h"
#include "bevan/core.h"
#include "bevan/json.h"
#include "demo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Text output
 * ------------------------------------------------------------------------------------------- */

/* The buffers have no cap, so appends fail only on address-space overflow (OOM is fatal). */
static void put(bv_buf *b, const char *s, size_t n) { (void)bv_buf_append(b, s, n); }
#define P(b, lit) put((b), "" lit, sizeof(lit) - 1)
static void put_s(bv_buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_c(bv_buf *b, char c) { put(b, &c, 1); }

/* A quoted string that needs no escaping (table text, codes, ids). */
static void put_q(bv_buf *b, const char *s)
{
    put_c(b, '"');
    put_s(b, s);
    put_c(b, '"');
}

/* A quoted, escaped string (names, addresses). */
static void put_js(bv_buf *b, const char *s) { (void)json_write_string(b, s, strlen(s)); }

static void put_u(bv_buf *b, uint64_t v)
{
    char t[24];
    size_t i = sizeof t;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, t + i, sizeof t - i);
}

/* v zero-padded to width digits */
static void put_pad(bv_buf *b, unsigned v, unsigned width)
{
    char t[16];
    for (unsigned i = width; i-- > 0;) {
        t[i] = (char)('0' + v % 10);
        v /= 10;
    }
    put(b, t, width);
}

/* v / 10^dec as a decimal with exactly dec fraction digits (v >= 0) */
static void put_fixed(bv_buf *b, int v, unsigned dec)
{
    unsigned scale = 1;
    for (unsigned i = 0; i < dec; i++) scale *= 10;
    if (v < 0) { put_c(b, '-'); v = -v; }
    put_u(b, (unsigned)v / scale);
    if (dec) {
        put_c(b, '.');
        put_pad(b, (unsigned)v % scale, dec);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Dates: days since 1970-01-01 (UTC); times: minutes since the epoch.
 * ------------------------------------------------------------------------------------------- */

static int64_t days_from_civil(int y, unsigned m, unsigned d) /* H. Hinnant's algorithm */
{
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400) + (*m <= 2);
}

static void put_date_raw(bv_buf *b, int64_t day)
{
    int y;
    unsigned m, d;
    civil_from_days(day, &y, &m, &d);
    put_pad(b, (unsigned)y, 4);
    put_c(b, '-');
    put_pad(b, m, 2);
    put_c(b, '-');
    put_pad(b, d, 2);
}

static void put_date(bv_buf *b, int64_t day)
{
    put_c(b, '"');
    put_date_raw(b, day);
    put_c(b, '"');
}

static void put_datetime(bv_buf *b, int64_t minutes)
{
    int64_t day = minutes / 1440;
    unsigned mod = (unsigned)(minutes % 1440);
    put_c(b, '"');
    put_date_raw(b, day);
    put_c(b, 'T');
    put_pad(b, mod / 60, 2);
    put_c(b, ':');
    put_pad(b, mod % 60, 2);
    P(b, ":00Z\"");
}

/* Monday = 0 .. Sunday = 6 (1970-01-01 was a Thursday). */
static unsigned weekday(int64_t day) { return (unsigned)(((day % 7) + 7 + 3) % 7); }

/* Surgeries are shut at weekends: move Saturday back to Friday and Sunday on to Monday. */
static int64_t working_day(int64_t day, int64_t max_day)
{
    unsigned wd = weekday(day);
    if (wd == 5) return day - 1;
    if (wd == 6) return day + 1 <= max_day ? day + 1 : day - 2;
    return day;
}

/* ---------------------------------------------------------------------------------------------
 * Randomness (integer only, so output is identical on every platform)
 * ------------------------------------------------------------------------------------------- */

static unsigned rnd(bv_rng *r, unsigned n) { return bv_rng_below(r, n); }
static bool chance(bv_rng *r, unsigned per_mille) { return bv_rng_below(r, 1000) < per_mille; }
static int rrange(bv_rng *r, int lo, int hi) { return lo + (int)bv_rng_below(r, (uint32_t)(hi - lo + 1)); }

/* Approximately normal (Irwin-Hall, four uniforms): mean +- sd, never beyond 3.46 sd. */
static int rnorm(bv_rng *r, int mean, int sd)
{
    int s = 0;
    for (int i = 0; i < 4; i++) s += (int)bv_rng_below(r, 1000);
    return mean + (int)((int64_t)(s - 1998) * sd / 577);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Index in [0, n) skewed towards the front (lists are ordered most common first). */
static size_t pick_skewed(bv_rng *r, size_t n)
{
    uint32_t a = bv_rng_below(r, (uint32_t)n), c = bv_rng_below(r, (uint32_t)n);
    return a < c ? a : c;
}

static const char *pick(bv_rng *r, const demo__list *l) { return l->items[rnd(r, (unsigned)l->n)]; }

static void make_uuid(bv_rng *r, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t hi = bv_rng_next(r), lo = bv_rng_next(r);
    hi = (hi & ~(uint64_t)0xF000) | 0x4000;                      /* version 4 */
    lo = (lo & ~((uint64_t)3 << 62)) | ((uint64_t)2 << 62);       /* RFC 4122 variant */
    size_t j = 0;
    for (int i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20) out[j++] = '-';
        uint64_t w = i < 16 ? hi : lo;
        out[j++] = hex[(w >> (60 - 4 * (i % 16))) & 0xF];
    }
    out[j] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * Code tables
 * ------------------------------------------------------------------------------------------- */

#define SCT "http://snomed.info/sct"
#define LOINC "http://loinc.org"
#define UCUM "http://unitsofmeasure.org"

enum { BAND_CHILD, BAND_18, BAND_40, BAND_60, BAND_75, N_BANDS };
static unsigned age_band(int age)
{
    return age < 18 ? BAND_CHILD : age < 40 ? BAND_18 : age < 60 ? BAND_40 : age < 75 ? BAND_60 : BAND_75;
}

enum {
    C_T2DM, C_HT, C_ASTHMA, C_COPD, C_AF, C_CHD, C_CKD, C_DEPRESSION, C_ANXIETY, C_HYPOTHYROID,
    C_OA, N_CHRONIC
};

typedef struct {
    const char *code, *display, *text;
    unsigned short prev[N_BANDS];  /* per-mille prevalence by age band (rough QOF/HSE figures) */
    unsigned char female_pct, male_pct; /* prevalence multiplier by sex, percent */
    unsigned char min_onset;       /* youngest onset age */
    bool review;                   /* reviewed in its own appointments (chronic disease clinic) */
} cond_def;

static const cond_def CHRONIC[N_CHRONIC] = {
    [C_T2DM] = { "44054006", "Type 2 diabetes mellitus", "Type 2 diabetes",
                 { 1, 12, 70, 140, 170 }, 85, 115, 25, true },
    [C_HT] = { "38341003", "Hypertensive disorder, systemic arterial", "Hypertension",
               { 0, 30, 150, 350, 550 }, 95, 105, 25, true },
    [C_ASTHMA] = { "195967001", "Asthma", "Asthma", { 90, 80, 70, 70, 65 }, 105, 95, 2, true },
    [C_COPD] = { "13645005", "Chronic obstructive lung disease", "COPD",
                 { 0, 1, 20, 60, 90 }, 95, 105, 40, true },
    [C_AF] = { "49436004", "Atrial fibrillation", "Atrial fibrillation",
               { 0, 2, 10, 50, 120 }, 75, 125, 35, true },
    [C_CHD] = { "53741008", "Coronary arteriosclerosis", "Coronary heart disease",
                { 0, 2, 25, 80, 140 }, 70, 130, 35, true },
    [C_CKD] = { "709044004", "Chronic kidney disease", "Chronic kidney disease stage 3",
                { 0, 3, 15, 60, 180 }, 110, 90, 30, true },
    [C_DEPRESSION] = { "35489007", "Depressive disorder", "Depression",
                       { 10, 130, 140, 110, 90 }, 130, 70, 12, false },
    [C_ANXIETY] = { "197480006", "Anxiety disorder", "Anxiety", { 20, 80, 60, 40, 30 }, 130, 70, 10, false },
    [C_HYPOTHYROID] = { "40930008", "Hypothyroidism", "Hypothyroidism",
                        { 1, 15, 35, 60, 80 }, 170, 30, 15, false },
    [C_OA] = { "396275006", "Osteoarthritis", "Osteoarthritis", { 0, 10, 80, 200, 300 }, 115, 85, 35, false },
};

static const cond_def ACUTE[] = { /* one resolved episode, seen at one appointment */
    { "444814009", "Viral sinusitis", "Sinusitis", { 0 }, 100, 100, 0, false },
    { "195662009", "Acute viral pharyngitis", "Sore throat (viral)", { 0 }, 100, 100, 0, false },
    { "10509002", "Acute bronchitis", "Acute bronchitis", { 0 }, 100, 100, 0, false },
};
#define N_ACUTE (sizeof ACUTE / sizeof ACUTE[0])

enum { F_TABLET, F_CAPSULE, F_INHALER };

/* dm+d virtual medicinal products (VMP ids are SNOMED CT ids); see docs/demo-data.md. */
typedef struct {
    const char *code, *display, *dose_text;
    unsigned char form, per_day; /* per_day 0 = when required */
    unsigned char dose;          /* units per dose (tablets, capsules, inhaler doses) */
    unsigned short qty, days;    /* quantity per issue, days it lasts */
} med_def;

enum {
    M_AMLODIPINE, M_RAMIPRIL, M_METFORMIN, M_ATORVASTATIN, M_SALBUTAMOL, M_BECLOMETASONE, M_APIXABAN,
    M_BISOPROLOL, M_SERTRALINE, M_CITALOPRAM, M_LEVOTHYROXINE, N_MEDS
};

static const med_def MEDS[N_MEDS] = {
    [M_AMLODIPINE] = { "319283006", "Amlodipine 5mg tablets", "Take one tablet once a day",
                       F_TABLET, 1, 1, 28, 28 },
    [M_RAMIPRIL] = { "318902004", "Ramipril 5mg capsules", "Take one capsule once a day",
                     F_CAPSULE, 1, 1, 28, 28 },
    [M_METFORMIN] = { "325278007", "Metformin 500mg tablets", "Take one tablet twice a day with food",
                      F_TABLET, 2, 1, 56, 28 },
    [M_ATORVASTATIN] = { "39733011000001106", "Atorvastatin 20mg tablets", "Take one tablet at night",
                         F_TABLET, 1, 1, 28, 28 },
    [M_SALBUTAMOL] = { "39113611000001102", "Salbutamol 100micrograms/dose inhaler CFC free",
                       "Inhale two doses when required for wheeze or breathlessness",
                       F_INHALER, 0, 2, 200, 30 },
    [M_BECLOMETASONE] = { "35908111000001105", "Beclometasone 100micrograms/dose inhaler CFC free",
                          "Inhale two doses twice a day, rinse mouth after use", F_INHALER, 2, 2, 200, 50 },
    [M_APIXABAN] = { "703908001", "Apixaban 5mg tablets", "Take one tablet twice a day",
                     F_TABLET, 2, 1, 56, 28 },
    [M_BISOPROLOL] = { "318590006", "Bisoprolol 5mg tablets", "Take one tablet once a day",
                       F_TABLET, 1, 1, 28, 28 },
    [M_SERTRALINE] = { "321959007", "Sertraline 50mg tablets", "Take one tablet once a day",
                       F_TABLET, 1, 1, 28, 28 },
    [M_CITALOPRAM] = { "321987003", "Citalopram 20mg tablets", "Take one tablet once a day",
                       F_TABLET, 1, 1, 28, 28 },
    [M_LEVOTHYROXINE] = { "374295007", "Levothyroxine sodium 50microgram tablets",
                          "Take one tablet each morning before breakfast", F_TABLET, 1, 1, 28, 28 },
};

enum { CAT_MEDICATION, CAT_FOOD, CAT_ENVIRONMENT };
static const char *const ALLERGY_CATEGORY[] = { "medication", "food", "environment" };

typedef struct {
    const char *code, *display, *text;
    unsigned char category;
    unsigned short per_mille;
    bool high;                                 /* criticality high */
    const char *reaction_code, *reaction_display, *severity;
} allergy_def;

static const allergy_def ALLERGIES[] = {
    { "91936005", "Allergy to penicillin", "Penicillin allergy", CAT_MEDICATION, 60, false,
      "271807003", "Eruption of skin", "moderate" },
    { "418689008", "Allergy to grass pollen", "Grass pollen allergy (hay fever)", CAT_ENVIRONMENT, 40, false,
      "76067001", "Sneezing", "mild" },
    { "91935009", "Allergy to peanuts", "Peanut allergy", CAT_FOOD, 12, true,
      "39579001", "Anaphylaxis", "severe" },
    { "300913006", "Shellfish allergy", "Shellfish allergy", CAT_FOOD, 10, false,
      "247472004", "Wheal", "moderate" },
    { "232347008", "Dander (animal) allergy", "Cat and dog dander allergy", CAT_ENVIRONMENT, 15, false,
      "49727002", "Cough", "mild" },
    { "91930004", "Allergy to eggs", "Egg allergy", CAT_FOOD, 6, false, "247472004", "Wheal", "mild" },
    { "300916003", "Latex allergy", "Latex allergy", CAT_ENVIRONMENT, 5, false,
      "271807003", "Eruption of skin", "mild" },
};
#define N_ALLERGIES (sizeof ALLERGIES / sizeof ALLERGIES[0])

typedef struct {
    const char *loinc, *loinc_display;
    const char *loinc2, *loinc2_display;       /* extra LOINC coding or NULL */
    const char *sct, *sct_display;             /* UK Core SNOMED coding or NULL */
    const char *text, *unit, *ucum;
    unsigned char dec;                         /* decimals in the value (values are scaled) */
    bool lab;                                  /* category laboratory rather than vital-signs */
    short ref_low, ref_high;                   /* reference range, scaled like the value; -1 = none */
} obs_def;

enum {
    O_HR, O_RR, O_SPO2, O_TEMP, O_WEIGHT, O_HEIGHT, O_BMI, O_BP, O_SYS, O_DIA,
    O_HBA1C, O_EGFR, O_CREAT, O_CHOL, N_OBS
};

static const obs_def OBS[N_OBS] = {
    [O_HR] = { "8867-4", "Heart rate", NULL, NULL, "364075005", "Heart rate", "Heart rate",
               "beats/minute", "/min", 0, false, -1, -1 },
    [O_RR] = { "9279-1", "Respiratory rate", NULL, NULL, "86290005", "Respiratory rate", "Respiratory rate",
               "breaths/minute", "/min", 0, false, -1, -1 },
    [O_SPO2] = { "2708-6", "Oxygen saturation in Arterial blood",
                 "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry",
                 "431314004", "Peripheral oxygen saturation", "Oxygen saturation", "%", "%", 0, false, -1, -1 },
    [O_TEMP] = { "8310-5", "Body temperature", NULL, NULL, "386725007", "Body temperature",
                 "Body temperature", "°C", "Cel", 1, false, -1, -1 },
    [O_WEIGHT] = { "29463-7", "Body weight", NULL, NULL, "27113001", "Body weight", "Body weight",
                   "kg", "kg", 1, false, -1, -1 },
    [O_HEIGHT] = { "8302-2", "Body height", NULL, NULL, "50373000", "Body height measure", "Body height",
                   "cm", "cm", 1, false, -1, -1 },
    [O_BMI] = { "39156-5", "Body mass index (BMI) [Ratio]", NULL, NULL, "60621009", "Body mass index",
                "Body mass index", "kg/m2", "kg/m2", 1, false, -1, -1 },
    [O_BP] = { "85354-9", "Blood pressure panel with all children optional", NULL, NULL,
               "75367002", "Blood pressure", "Blood pressure", NULL, NULL, 0, false, -1, -1 },
    [O_SYS] = { "8480-6", "Systolic blood pressure", NULL, NULL, "271649006", "Systolic blood pressure",
                "Systolic blood pressure", "mmHg", "mm[Hg]", 0, false, -1, -1 },
    [O_DIA] = { "8462-4", "Diastolic blood pressure", NULL, NULL, "271650006", "Diastolic blood pressure",
                "Diastolic blood pressure", "mmHg", "mm[Hg]", 0, false, -1, -1 },
    [O_HBA1C] = { "59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol", NULL, NULL,
                  NULL, NULL, "HbA1c (IFCC)", "mmol/mol", "mmol/mol", 0, true, 20, 41 },
    [O_EGFR] = { "33914-3", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or "
                            "Plasma by Creatinine-based formula (MDRD)", NULL, NULL, NULL, NULL,
                 "eGFR", "mL/min/1.73m2", "mL/min/{1.73_m2}", 0, true, 60, -1 },
    [O_CREAT] = { "14682-9", "Creatinine [Moles/volume] in Serum or Plasma", NULL, NULL, NULL, NULL,
                  "Serum creatinine", "umol/L", "umol/L", 0, true, 45, 110 },
    [O_CHOL] = { "14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", NULL, NULL, NULL, NULL,
                 "Total cholesterol", "mmol/L", "mmol/L", 1, true, -1, 50 },
};

/* Median height (mm) and weight (kg x 10) by year of age 0..18 (UK-WHO charts, rounded);
 * index 18 holds the adult median. */
static const short HEIGHT_MM[2][19] = {
    { 495, 740, 860, 950, 1020, 1090, 1150, 1210, 1270, 1330, 1380, 1440, 1510, 1560, 1590, 1610, 1620,
      1625, 1630 },
    { 500, 760, 870, 960, 1030, 1100, 1160, 1220, 1280, 1330, 1380, 1430, 1490, 1560, 1630, 1690, 1730,
      1750, 1760 },
};
static const short WEIGHT_X10[2][19] = {
    { 33, 89, 115, 140, 160, 180, 200, 225, 250, 280, 315, 355, 405, 455, 500, 530, 560, 580, 600 },
    { 35, 96, 122, 143, 163, 183, 205, 229, 254, 281, 312, 350, 398, 450, 510, 560, 610, 640, 680 },
};

/* England's age structure, 5-year bands from 0-4 to 90-95, per mille (ONS 2021, rounded). */
static const unsigned short AGE_PER_MILLE[19] = {
    54, 59, 60, 56, 59, 66, 69, 66, 63, 64, 70, 68, 59, 51, 50, 36, 25, 15, 10,
};

/* ---------------------------------------------------------------------------------------------
 * Generator state
 * ------------------------------------------------------------------------------------------- */

enum { ROLE_GP, ROLE_NURSE, ROLE_PHARMACIST };

typedef struct {
    unsigned practice;
    unsigned char role;
    bool male;
    const char *given, *family;
} staff;

typedef struct {
    char name[64];
    char ods[8];
    char postcode[12];
    unsigned town, district, house, phone;
    const char *street;
    unsigned first_staff;      /* 0-based index into staff[] */
    unsigned n_gp, n_nurse, n_pharm;
} practice;

typedef struct {
    bv_buf buf;
    uint64_t seed;
    unsigned n_practices;
    practice *practices;
    staff *staff;
    unsigned n_staff;
    int64_t ref_day;           /* 2026-01-01 */
    uint32_t nhs_cursor, nhs_a, nhs_b;
    unsigned entries;          /* entries written in the current bundle */
} gen;

#define NHS_SPACE 1000000u     /* 999 + six digits + check digit */
#define WINDOW_DAYS 1095       /* activity over the three years before the reference date */

/* ---------------------------------------------------------------------------------------------
 * Bundle and entry framing
 * ------------------------------------------------------------------------------------------- */

static void bundle_begin(gen *g)
{
    bv_buf_reset(&g->buf);
    g->entries = 0;
    P(&g->buf, "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[");
}

static void bundle_end(gen *g) { P(&g->buf, "]}"); }

static void entry_sep(gen *g)
{
    if (g->entries++) put_c(&g->buf, ',');
}

/* {"fullUrl":"urn:uuid:U","resource":{"resourceType":"T"   ... closed by entry_post_end */
static void entry_post_begin(gen *g, const char *type, const char *uuid)
{
    bv_buf *b = &g->buf;
    entry_sep(g);
    P(b, "{\"fullUrl\":\"urn:uuid:");
    put_s(b, uuid);
    P(b, "\",\"resource\":{\"resourceType\":");
    put_q(b, type);
}

static void entry_post_end(gen *g, const char *type)
{
    bv_buf *b = &g->buf;
    P(b, "},\"request\":{\"method\":\"POST\",\"url\":");
    put_q(b, type);
    P(b, "}}");
}

/* PUT entries carry client ids (prefix-N) and no fullUrl. */
static void entry_put_begin(gen *g, const char *type, const char *prefix, unsigned n)
{
    bv_buf *b = &g->buf;
    entry_sep(g);
    P(b, "{\"resource\":{\"resourceType\":");
    put_q(b, type);
    P(b, ",\"id\":\"");
    put_s(b, prefix);
    put_u(b, n);
    put_c(b, '"');
}

static void entry_put_end(gen *g, const char *type, const char *prefix, unsigned n)
{
    bv_buf *b = &g->buf;
    P(b, "},\"request\":{\"method\":\"PUT\",\"url\":\"");
    put_s(b, type);
    put_c(b, '/');
    put_s(b, prefix);
    put_u(b, n);
    P(b, "\"}}");
}

/* ,"key":{"reference":"urn:uuid:U"} */
static void ref_uuid(bv_buf *b, const char *key, const char *uuid)
{
    P(b, ",\"");
    put_s(b, key);
    P(b, "\":{\"reference\":\"urn:uuid:");
    put_s(b, uuid);
    P(b, "\"}");
}

/* {"reference":"Type/prefixN"} */
static void ref_literal(bv_buf *b, const char *type_prefix, unsigned n)
{
    P(b, "{\"reference\":\"");
    put_s(b, type_prefix);
    put_u(b, n);
    P(b, "\"}");
}

static void ref_practitioner(bv_buf *b, unsigned staff_index)
{
    ref_literal(b, "Practitioner/demo-prac-", staff_index + 1);
}

static void ref_org(bv_buf *b, const gen *g, unsigned p)
{
    P(b, "{\"reference\":\"Organization/demo-org-");
    put_u(b, p + 1);
    P(b, "\",\"display\":");
    put_js(b, g->practices[p].name);
    put_c(b, '}');
}

/* {"coding":[{"system":S,"code":C,"display":D}]} with an optional "text" */
static void codeable(bv_buf *b, const char *system, const char *code, const char *display, const char *text)
{
    P(b, "{\"coding\":[{\"system\":");
    put_q(b, system);
    P(b, ",\"code\":");
    put_q(b, code);
    P(b, ",\"display\":");
    put_q(b, display);
    P(b, "}]");
    if (text) {
        P(b, ",\"text\":");
        put_q(b, text);
    }
    put_c(b, '}');
}

static void put_postcode(bv_rng *r, char *out, size_t cap, const demo__town *t, unsigned district)
{
    static const char letters[] = "ABDEFGHJLNPQRSTUWXYZ"; /* inward-code letters (no C I K M O V) */
    snprintf(out, cap, "%s%u %u%c%c", t->area, district, rnd(r, 10), letters[rnd(r, 20)], letters[rnd(r, 20)]);
}

/* {"use":U,"line":["N Street"],"city":..,"district":..,"postalCode":..} */
static void put_address(bv_buf *b, const char *use, unsigned house, const char *street, const demo__town *t,
                        const char *postcode)
{
    char line[96];
    snprintf(line, sizeof line, "%u %s", house, street);
    P(b, "{\"use\":");
    put_q(b, use);
    P(b, ",\"line\":[");
    put_js(b, line);
    P(b, "],\"city\":");
    put_js(b, t->town);
    P(b, ",\"district\":");
    put_js(b, t->county);
    P(b, ",\"postalCode\":");
    put_q(b, postcode);
    put_c(b, '}');
}

/* Ofcom reserves 01632 960000-960999 and 07700 900000-900999 for fiction. */
static void put_phone(bv_buf *b, bool mobile, unsigned last3, const char *use)
{
    P(b, "{\"system\":\"phone\",\"value\":\"");
    if (mobile) P(b, "07700 900");
    else P(b, "01632 960");
    put_pad(b, last3 % 1000, 3);
    P(b, "\",\"use\":");
    put_q(b, use);
    put_c(b, '}');
}

/* ---------------------------------------------------------------------------------------------
 * Shared bundle: practices, their buildings and staff
 * ------------------------------------------------------------------------------------------- */

static void staff_display(const staff *s, char *out, size_t cap)
{
    if (s->role == ROLE_GP) snprintf(out, cap, "Dr %s %s", s->given, s->family);
    else snprintf(out, cap, "%s %s", s->given, s->family);
}

static void plan_practices(gen *g, bv_rng *r, unsigned patients)
{
    unsigned np = g->n_practices;
    g->practices = bv_calloc(np, sizeof(practice));
    g->staff = bv_calloc((size_t)np * 14, sizeof(staff));
    unsigned list = patients / np;
    size_t npre = demo__practice_prefix.n, nsuf = demo__practice_suffix.n;
    /* Name = prefix x suffix through an affine permutation: unique for every practice. */
    size_t combos = npre * nsuf, name_off = rnd(r, (unsigned)combos);
    unsigned town_off = rnd(r, (unsigned)demo__n_towns);
    for (unsigned i = 0; i < np; i++) {
        practice *p = &g->practices[i];
        size_t k = (i * (size_t)97 + name_off) % combos; /* 97 is coprime to 180 */
        snprintf(p->name, sizeof p->name, "%s %s", demo__practice_prefix.items[k % npre],
                 demo__practice_suffix.items[k / npre]);
        snprintf(p->ods, sizeof p->ods, "ZZ%04u", 1001 + i);
        p->town = (town_off + i * 7) % (unsigned)demo__n_towns;
        const demo__town *t = &demo__towns[p->town];
        p->district = 1 + rnd(r, t->max_district);
        p->house = 1 + rnd(r, 120);
        p->street = pick(r, &demo__streets);
        put_postcode(r, p->postcode, sizeof p->postcode, t, p->district);
        p->phone = 100 + i;
        p->n_gp = (unsigned)clampi(2 + (int)(list / 2500) + (int)rnd(r, 2), 2, 8);
        p->n_nurse = (unsigned)clampi(1 + (int)(list / 4000) + (int)rnd(r, 2), 1, 4);
        p->n_pharm = chance(r, 400) ? 1 : 0;
        p->first_staff = g->n_staff;
        unsigned n = p->n_gp + p->n_nurse + p->n_pharm;
        for (unsigned j = 0; j < n; j++) {
            staff *s = &g->staff[g->n_staff++];
            s->practice = i;
            s->role = j < p->n_gp ? ROLE_GP : j < p->n_gp + p->n_nurse ? ROLE_NURSE : ROLE_PHARMACIST;
            s->male = s->role == ROLE_NURSE ? chance(r, 120) : chance(r, 480);
            s->given = pick(r, &demo__given[1 + rnd(r, 2)][s->male]);
            s->family = demo__surnames.items[pick_skewed(r, demo__surnames.n)];
        }
    }
}

static void write_org(gen *g, unsigned i)
{
    bv_buf *b = &g->buf;
    const practice *p = &g->practices[i];
    entry_put_begin(g, "Organization", "demo-org-", i + 1);
    P(b, ",\"identifier\":[{\"system\":\"https://fhir.nhs.uk/Id/ods-organization-code\",\"value\":");
    put_q(b, p->ods);
    P(b, "}],\"active\":true,\"type\":[");
    codeable(b, "http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider", NULL);
    P(b, "],\"name\":");
    put_js(b, p->name);
    P(b, ",\"telecom\":[");
    put_phone(b, false, p->phone, "work");
    P(b, "],\"address\":[");
    put_address(b, "work", p->house, p->street, &demo__towns[p->town], p->postcode);
    put_c(b, ']');
    entry_put_end(g, "Organization", "demo-org-", i + 1);
}

static void write_location(gen *g, unsigned i)
{
    bv_buf *b = &g->buf;
    const practice *p = &g->practices[i];
    entry_put_begin(g, "Location", "demo-loc-", i + 1);
    P(b, ",\"status\":\"active\",\"name\":");
    put_js(b, p->name);
    P(b, ",\"mode\":\"instance\",\"telecom\":[");
    put_phone(b, false, p->phone, "work");
    P(b, "],\"address\":");
    put_address(b, "work", p->house, p->street, &demo__towns[p->town], p->postcode);
    P(b, ",\"physicalType\":");
    codeable(b, "http://terminology.hl7.org/CodeSystem/location-physical-type", "bu", "Building", NULL);
    P(b, ",\"managingOrganization\":");
    ref_org(b, g, i);
    entry_put_end(g, "Location", "demo-loc-", i + 1);
}

static void write_practitioner(gen *g, unsigned k)
{
    bv_buf *b = &g->buf;
    const staff *s = &g->staff[k];
    entry_put_begin(g, "Practitioner", "demo-prac-", k + 1);
    P(b, ",\"identifier\":[{\"system\":");
    /* Registration numbers: synthetic (docs/demo-data.md), unique per staff index. */
    char reg[16];
    if (s->role == ROLE_GP) {
        P(b, "\"https://fhir.hl7.org.uk/Id/gmc-number\"");
        snprintf(reg, sizeof reg, "%07u", 9000000u + (k * 7919u + 1234u) % 1000000u);
    } else if (s->role == ROLE_NURSE) {
        P(b, "\"https://fhir.hl7.org.uk/Id/nmc-number\"");
        snprintf(reg, sizeof reg, "%02uZ%04uE", (85u + k * 3u) % 100u, (k * 37u + 11u) % 10000u);
    } else {
        P(b, "\"https://fhir.hl7.org.uk/Id/gphc-number\"");
        snprintf(reg, sizeof reg, "%07u", 9000000u + (k * 6007u + 4321u) % 1000000u);
    }
    P(b, ",\"value\":");
    put_q(b, reg);
    P(b, "}],\"active\":true,\"name\":[{\"use\":\"official\",\"family\":");
    put_js(b, s->family);
    P(b, ",\"given\":[");
    put_js(b, s->given);
    put_c(b, ']');
    if (s->role == ROLE_GP) P(b, ",\"prefix\":[\"Dr\"]");
    P(b, "}],\"telecom\":[");
    put_phone(b, false, g->practices[s->practice].phone, "work");
    P(b, "],\"gender\":");
    put_q(b, s->male ? "male" : "female");
    entry_put_end(g, "Practitioner", "demo-prac-", k + 1);
}

static void write_role(gen *g, unsigned k)
{
    static const char *const role_code[] = { "62247001", "224535009", "46255001" };
    static const char *const role_display[] = { "General practitioner", "Registered nurse", "Pharmacist" };
    bv_buf *b = &g->buf;
    const staff *s = &g->staff[k];
    char disp[96];
    staff_display(s, disp, sizeof disp);
    entry_put_begin(g, "PractitionerRole", "demo-role-", k + 1);
    P(b, ",\"active\":true,\"practitioner\":{\"reference\":\"Practitioner/demo-prac-");
    put_u(b, k + 1);
    P(b, "\",\"display\":");
    put_js(b, disp);
    P(b, "},\"organization\":");
    ref_org(b, g, s->practice);
    P(b, ",\"code\":[");
    codeable(b, SCT, role_code[s->role], role_display[s->role], NULL);
    P(b, "],\"specialty\":[");
    codeable(b, SCT, "394814009", "General practice", NULL);
    P(b, "],\"location\":[");
    ref_literal(b, "Location/demo-loc-", s->practice + 1);
    P(b, "],\"telecom\":[");
    put_phone(b, false, g->practices[s->practice].phone, "work");
    put_c(b, ']');
    entry_put_end(g, "PractitionerRole", "demo-role-", k + 1);
}

static void write_shared(gen *g)
{
    bundle_begin(g);
    for (unsigned i = 0; i < g->n_practices; i++) write_org(g, i);
    for (unsigned i = 0; i < g->n_practices; i++) write_location(g, i);
    for (unsigned k = 0; k < g->n_staff; k++) write_practitioner(g, k);
    for (unsigned k = 0; k < g->n_staff; k++) write_role(g, k);
    bundle_end(g);
}

/* ---------------------------------------------------------------------------------------------
 * Patients
 * ------------------------------------------------------------------------------------------- */

enum { V_CHECKUP, V_REVIEW, V_ACUTE, V_PHONE };
enum { CS_ACTIVE, CS_REMISSION, CS_RESOLVED };

#define MAX_CONDS (N_CHRONIC + 1)
#define MAX_VISITS 14
#define MAX_LABS 32
#define MAX_RX 12

typedef struct {
    const cond_def *def;
    unsigned id;               /* C_* for chronic, N_CHRONIC + i for acute */
    char uuid[37];
    int64_t onset, abated;     /* days; abated < 0: not abated */
    unsigned char status;      /* CS_* */
    int visit;                 /* acute: the visit that diagnosed it */
} pcond;

typedef struct {
    int64_t start;             /* minutes since the epoch */
    unsigned char kind;        /* V_* */
    int cond;                  /* index into conds, or -1 */
    unsigned performer;        /* staff index */
    char uuid[37];
} pvisit;

typedef struct {
    int64_t at;                /* minutes */
    unsigned char obs;         /* O_* */
    int value;                 /* scaled like OBS[obs].dec */
} plab;

typedef struct {
    unsigned char med;
    int cond;
} prx;

typedef struct {
    bv_rng r;
    char uuid[37];
    char nhs[11];
    bool male;
    int64_t birth;             /* day */
    int age;                   /* years at the reference date */
    const char *given, *given2, *family;
    unsigned practice, gp;     /* gp: staff index of the usual GP */
    /* per-person physiology */
    int hf, wf;                /* height and weight factors, per mille of the median */
    int bmi;                   /* adult BMI x 10 */
    int sys, hr;               /* baseline systolic and heart rate offsets */
    pcond conds[MAX_CONDS];
    unsigned n_conds;
    bool has[N_CHRONIC];       /* active chronic conditions */
    pvisit visits[MAX_VISITS];
    unsigned n_visits;
    plab labs[MAX_LABS];
    unsigned n_labs;
    prx rx[MAX_RX];
    unsigned n_rx;
} patient;

static int age_years(int64_t birth, int64_t day) { return (int)((day - birth) * 100 / 36525); }

/* The next NHS number: 999 followed by six digits taken through an affine permutation of
 * [0, 10^6) (so numbers never repeat), plus the Modulus 11 check digit; numbers whose check
 * digit would be 10 are skipped. */
static bool next_nhs(gen *g, char out[11])
{
    while (g->nhs_cursor < NHS_SPACE) {
        uint32_t j = g->nhs_cursor++;
        uint32_t v = (uint32_t)(((uint64_t)g->nhs_a * j + g->nhs_b) % NHS_SPACE);
        char d[10] = { '9', '9', '9' };
        for (int i = 8; i >= 3; i--) {
            d[i] = (char)('0' + v % 10);
            v /= 10;
        }
        unsigned sum = 0;
        for (int i = 0; i < 9; i++) sum += (unsigned)(d[i] - '0') * (unsigned)(10 - i);
        unsigned check = 11 - sum % 11;
        if (check == 10) continue;
        if (check == 11) check = 0;
        memcpy(out, d, 9);
        out[9] = (char)('0' + check);
        out[10] = '\0';
        return true;
    }
    return false;
}

static unsigned practice_staff(const gen *g, bv_rng *r, unsigned p, unsigned role)
{
    const practice *pr = &g->practices[p];
    if (role == ROLE_NURSE && pr->n_nurse) return pr->first_staff + pr->n_gp + rnd(r, pr->n_nurse);
    return pr->first_staff + rnd(r, pr->n_gp);
}

static void add_rx(patient *pt, unsigned med, int cond)
{
    for (unsigned i = 0; i < pt->n_rx; i++)
        if (pt->rx[i].med == med) return;
    if (pt->n_rx < MAX_RX) pt->rx[pt->n_rx++] = (prx){ (unsigned char)med, cond };
}

static int cond_index(const patient *pt, unsigned id)
{
    for (unsigned i = 0; i < pt->n_conds; i++)
        if (pt->conds[i].id == id) return (int)i;
    return -1;
}

static void plan_conditions(gen *g, patient *pt)
{
    bv_rng *r = &pt->r;
    unsigned band = age_band(pt->age);
    for (unsigned c = 0; c < N_CHRONIC; c++) {
        const cond_def *d = &CHRONIC[c];
        if (pt->age < d->min_onset) continue;
        unsigned pm = d->prev[band] * (pt->male ? d->male_pct : d->female_pct) / 100;
        /* Multimorbidity clusters: diabetes raises the odds of hypertension, CKD and CHD. */
        if (pt->has[C_T2DM] && (c == C_HT || c == C_CHD)) pm = pm * 3 / 2;
        if ((pt->has[C_T2DM] || pt->has[C_HT]) && c == C_CKD) pm = pm * 3 / 2;
        if (pt->has[C_DEPRESSION] && c == C_ANXIETY) pm *= 3;
        if (!chance(r, pm)) continue;
        pcond *pc = &pt->conds[pt->n_conds++];
        pc->def = d;
        pc->id = c;
        make_uuid(r, pc->uuid);
        int onset_age = rrange(r, d->min_onset, pt->age);
        int64_t onset = pt->birth + (int64_t)onset_age * 36525 / 100 + rnd(r, 365);
        if (onset > g->ref_day - 30) onset = g->ref_day - 30 - rnd(r, 300);
        if (onset <= pt->birth) onset = pt->birth + 1;
        pc->onset = onset;
        pc->abated = -1;
        pc->status = CS_ACTIVE;
        pc->visit = -1;
        if ((c == C_DEPRESSION || c == C_ANXIETY) && chance(r, 300)) pc->status = CS_REMISSION;
        if (pc->status == CS_ACTIVE) pt->has[c] = true;
    }
}

/* Order the visits by start time (insertion sort: at most a dozen). */
static void sort_visits(patient *pt)
{
    for (unsigned i = 1; i < pt->n_visits; i++) {
        pvisit v = pt->visits[i];
        unsigned j = i;
        for (; j > 0 && pt->visits[j - 1].start > v.start; j--) pt->visits[j] = pt->visits[j - 1];
        pt->visits[j] = v;
    }
    for (unsigned i = 0; i < pt->n_conds; i++) pt->conds[i].visit = -1;
    for (unsigned i = 0; i < pt->n_visits; i++)
        if (pt->visits[i].kind == V_ACUTE) pt->conds[pt->visits[i].cond].visit = (int)i;
}

/* A visit on a working day in [from, to] during surgery hours; false if the window is empty. */
static bool add_visit(gen *g, patient *pt, int64_t from, int64_t to, unsigned kind, int cond)
{
    bv_rng *r = &pt->r;
    if (from > to || pt->n_visits >= MAX_VISITS) return false;
    int64_t day = working_day(from + rnd(r, (unsigned)(to - from + 1)), g->ref_day - 1);
    if (day <= pt->birth) day = pt->birth + 1;
    pvisit *v = &pt->visits[pt->n_visits++];
    v->start = day * 1440 + 8 * 60 + 10 * rnd(r, 57); /* 08:00-17:20 */
    v->kind = (unsigned char)kind;
    v->cond = cond;
    bool nurse = kind == V_REVIEW ? chance(r, 600) : false;
    v->performer = practice_staff(g, r, pt->practice, nurse ? ROLE_NURSE : ROLE_GP);
    if (!nurse && chance(r, 600)) v->performer = pt->gp;
    make_uuid(r, v->uuid);
    return true;
}

static void plan_visits(gen *g, patient *pt)
{
    bv_rng *r = &pt->r;
    int64_t last = g->ref_day - 2;
    int64_t first = g->ref_day - WINDOW_DAYS;
    if (first < pt->birth + 10) first = pt->birth + 10;
    unsigned n_base = 4 + (pt->age >= 65) + (pt->age < 5);
    for (unsigned i = 0; i < n_base; i++) add_visit(g, pt, first, last, V_CHECKUP, -1);
    unsigned chronic = 0;
    for (unsigned i = 0; i < pt->n_conds; i++) {
        const pcond *pc = &pt->conds[i];
        if (pc->status != CS_ACTIVE || !pc->def->review || chronic >= 3) continue;
        chronic++;
        int64_t from = pc->onset > first ? pc->onset : first;
        for (int k = 0; k < 2; k++) add_visit(g, pt, from, last, V_REVIEW, (int)i);
    }
    /* One acute, self-limiting episode for 35%, or 50% of young children and older adults. */
    if (chance(r, pt->age < 10 || pt->age >= 70 ? 500 : 350) && pt->n_conds < MAX_CONDS) {
        unsigned a = rnd(r, (unsigned)N_ACUTE);
        if (add_visit(g, pt, first, last - 1, V_ACUTE, (int)pt->n_conds)) {
            pcond *pc = &pt->conds[pt->n_conds++];
            pvisit *v = &pt->visits[pt->n_visits - 1];
            pc->def = &ACUTE[a];
            pc->id = N_CHRONIC + a;
            make_uuid(r, pc->uuid);
            pc->onset = v->start / 1440 - rrange(r, 1, 5);
            if (pc->onset <= pt->birth) pc->onset = pt->birth + 1;
            pc->abated = v->start / 1440 + rrange(r, 5, 21);
            pc->status = pc->abated < g->ref_day ? CS_RESOLVED : CS_ACTIVE;
            if (pc->status != CS_RESOLVED) pc->abated = -1;
        }
    }
    sort_visits(pt);
}

static void plan_meds(patient *pt)
{
    bv_rng *r = &pt->r;
    for (unsigned i = 0; i < pt->n_conds; i++) {
        const pcond *pc = &pt->conds[i];
        if (pc->status != CS_ACTIVE || pc->id >= N_CHRONIC) continue;
        int ci = (int)i;
        switch (pc->id) {
        case C_HT:
            if (pt->age >= 55 || chance(r, 400)) add_rx(pt, M_AMLODIPINE, ci);
            else add_rx(pt, M_RAMIPRIL, ci);
            if (chance(r, 300)) add_rx(pt, pt->age >= 55 ? M_RAMIPRIL : M_AMLODIPINE, ci);
            break;
        case C_T2DM:
            add_rx(pt, M_METFORMIN, ci);
            if (pt->age >= 40 && chance(r, 750)) add_rx(pt, M_ATORVASTATIN, ci);
            break;
        case C_ASTHMA:
            add_rx(pt, M_SALBUTAMOL, ci);
            if (chance(r, 700)) add_rx(pt, M_BECLOMETASONE, ci);
            break;
        case C_COPD: add_rx(pt, M_SALBUTAMOL, ci); break;
        case C_AF:
            add_rx(pt, M_APIXABAN, ci);
            if (chance(r, 600)) add_rx(pt, M_BISOPROLOL, ci);
            break;
        case C_CHD: add_rx(pt, M_ATORVASTATIN, ci); break;
        case C_CKD:
            if (chance(r, 600)) add_rx(pt, M_RAMIPRIL, ci);
            if (chance(r, 500)) add_rx(pt, M_ATORVASTATIN, ci);
            break;
        case C_DEPRESSION:
            if (pt->age >= 18 && chance(r, 850)) add_rx(pt, chance(r, 650) ? M_SERTRALINE : M_CITALOPRAM, ci);
            break;
        case C_HYPOTHYROID: add_rx(pt, M_LEVOTHYROXINE, ci); break;
        default: break;
        }
    }
}

static void add_lab(patient *pt, int64_t day, unsigned obs, int value)
{
    if (pt->n_labs >= MAX_LABS || day <= pt->birth) return;
    pt->labs[pt->n_labs++] = (plab){ day * 1440 + 9 * 60 + 5 * rnd(&pt->r, 24), (unsigned char)obs, value };
}

/* Blood tests every six months for diabetes and CKD, yearly for other long-term conditions and
 * statins, and the odd screening test from 40. */
static void plan_labs(gen *g, patient *pt)
{
    bv_rng *r = &pt->r;
    int64_t first = g->ref_day - WINDOW_DAYS;
    bool statin = false;
    for (unsigned i = 0; i < pt->n_rx; i++) statin |= pt->rx[i].med == M_ATORVASTATIN;
    if (pt->has[C_T2DM]) {
        int base = rnorm(r, 56, 8);
        int64_t onset = pt->conds[cond_index(pt, C_T2DM)].onset;
        for (int k = 0; k < 6; k++) {
            int64_t day = working_day(g->ref_day - 20 - k * 182 - rnd(r, 40), g->ref_day - 1);
            if (day > onset && day >= first) add_lab(pt, day, O_HBA1C, clampi(base + rnorm(r, 0, 5), 40, 110));
        }
    } else if (pt->age >= 40 && chance(r, 350)) {
        add_lab(pt, working_day(first + rnd(r, WINDOW_DAYS - 2), g->ref_day - 1), O_HBA1C, rrange(r, 30, 41));
    }
    unsigned renal = pt->has[C_CKD] ? 6 : (pt->has[C_T2DM] || pt->has[C_HT] || pt->has[C_AF]) ? 3
                   : (pt->age >= 40 && chance(r, 250)) ? 1 : 0;
    int egfr_base = pt->has[C_CKD] ? rrange(r, 32, 58) : clampi(115 - pt->age * 2 / 3 + rnorm(r, 0, 8), 62, 120);
    for (unsigned k = 0; k < renal; k++) {
        int64_t day = renal == 1 ? first + rnd(r, WINDOW_DAYS - 30)
                                 : g->ref_day - 25 - (int64_t)k * (renal == 6 ? 182 : 365) - rnd(r, 30);
        day = working_day(day, g->ref_day - 1);
        if (day < first) continue;
        int egfr = clampi(egfr_base + rnorm(r, 0, 3), 15, 120);
        int creat = clampi((pt->male ? 95 : 75) * 90 / egfr + rnorm(r, 0, 4), 40, 400);
        add_lab(pt, day, O_EGFR, egfr);
        add_lab(pt, day, O_CREAT, creat);
    }
    unsigned lipids = (statin || pt->has[C_T2DM]) ? 3 : (pt->age >= 40 && chance(r, 300)) ? 1 : 0;
    for (unsigned k = 0; k < lipids; k++) {
        int64_t day = working_day(g->ref_day - 40 - (int64_t)k * 365 - rnd(r, 60), g->ref_day - 1);
        if (day < first) continue;
        add_lab(pt, day, O_CHOL, statin ? rrange(r, 34, 49) : rnorm(r, 52, 7));
    }
}

/* Height in mm and weight in kg x 10 at a given age in days. */
static int height_at(const patient *pt, int64_t age_days)
{
    int64_t y = age_days / 365;
    if (y >= 18) return HEIGHT_MM[pt->male][18] * pt->hf / 1000;
    int64_t frac = age_days - y * 365;
    int h = HEIGHT_MM[pt->male][y] + (int)((HEIGHT_MM[pt->male][y + 1] - HEIGHT_MM[pt->male][y]) * frac / 365);
    return h * pt->hf / 1000;
}

static int child_weight_at(const patient *pt, int64_t age_days)
{
    int64_t y = age_days / 365;
    if (y >= 18) y = 17;
    int64_t frac = age_days - y * 365;
    if (frac > 365) frac = 365;
    int w = WEIGHT_X10[pt->male][y] + (int)((WEIGHT_X10[pt->male][y + 1] - WEIGHT_X10[pt->male][y]) * frac / 365);
    return w * pt->wf / 1000;
}

/* ---- resource writers ---- */

static void write_patient(gen *g, patient *pt)
{
    bv_buf *b = &g->buf;
    bv_rng *r = &pt->r;
    entry_post_begin(g, "Patient", pt->uuid);
    P(b, ",\"identifier\":[{\"extension\":[{\"url\":\"https://fhir.hl7.org.uk/StructureDefinition/"
         "Extension-UKCore-NHSNumberVerificationStatus\",\"valueCodeableConcept\":");
    codeable(b, "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "01",
             "Number present and verified", NULL);
    P(b, "}],\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"");
    put_s(b, pt->nhs);
    P(b, "\"}],\"active\":true,\"name\":[{\"use\":\"official\",\"family\":");
    put_js(b, pt->family);
    P(b, ",\"given\":[");
    put_js(b, pt->given);
    if (pt->given2) {
        put_c(b, ',');
        put_js(b, pt->given2);
    }
    put_c(b, ']');
    if (pt->age >= 18) {
        const char *prefix = pt->male ? "Mr" : pt->age < 30 ? "Miss" : chance(r, 600) ? "Mrs" : "Ms";
        P(b, ",\"prefix\":[");
        put_q(b, prefix);
        put_c(b, ']');
    }
    P(b, "}],\"telecom\":[");
    put_phone(b, false, rnd(r, 1000), "home");
    if (pt->age >= 12) {
        put_c(b, ',');
        put_phone(b, true, rnd(r, 1000), "mobile");
    }
    if (pt->age >= 18 && pt->age < 80 && chance(r, 500)) {
        /* given.family@example.com from the ASCII letters of the names (RFC 2606 domain). */
        char email[96];
        size_t n = 0;
        for (const char *s = pt->given; *s && n < 40; s++)
            if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) email[n++] = (char)(*s | 0x20);
        email[n++] = '.';
        for (const char *s = pt->family; *s && n < 80; s++)
            if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) email[n++] = (char)(*s | 0x20);
        email[n] = '\0';
        P(b, ",{\"system\":\"email\",\"value\":\"");
        put_s(b, email);
        P(b, "@example.com\",\"use\":\"home\"}");
    }
    P(b, "],\"gender\":");
    put_q(b, pt->male ? "male" : "female");
    P(b, ",\"birthDate\":");
    put_date(b, pt->birth);
    /* Most people live in their practice's town and postcode district. */
    const practice *pr = &g->practices[pt->practice];
    unsigned town = chance(r, 900) ? pr->town : rnd(r, (unsigned)demo__n_towns);
    const demo__town *t = &demo__towns[town];
    unsigned district = town == pr->town && chance(r, 700) ? pr->district : 1 + rnd(r, t->max_district);
    char postcode[12];
    put_postcode(r, postcode, sizeof postcode, t, district);
    P(b, ",\"address\":[");
    put_address(b, "home", 1 + rnd(r, 180), pick(r, &demo__streets), t, postcode);
    P(b, "],\"generalPractitioner\":[");
    ref_org(b, g, pt->practice);
    char disp[96];
    staff_display(&g->staff[pt->gp], disp, sizeof disp);
    P(b, ",{\"reference\":\"Practitioner/demo-prac-");
    put_u(b, pt->gp + 1);
    P(b, "\",\"display\":");
    put_js(b, disp);
    P(b, "}],\"managingOrganization\":");
    ref_org(b, g, pt->practice);
    /* Conditional create: re-importing the same seed finds the patient instead of duplicating. */
    P(b, "},\"request\":{\"method\":\"POST\",\"url\":\"Patient\",\"ifNoneExist\":"
         "\"identifier=https://fhir.nhs.uk/Id/nhs-number|");
    put_s(b, pt->nhs);
    P(b, "\"}}");
}

static void write_condition(gen *g, const patient *pt, const pcond *pc)
{
    static const char *const status_code[] = { "active", "remission", "resolved" };
    static const char *const status_display[] = { "Active", "Remission", "Resolved" };
    bv_buf *b = &g->buf;
    bool acute = pc->id >= N_CHRONIC;
    entry_post_begin(g, "Condition", pc->uuid);
    P(b, ",\"clinicalStatus\":");
    codeable(b, "http://terminology.hl7.org/CodeSystem/condition-clinical", status_code[pc->status],
             status_display[pc->status], NULL);
    P(b, ",\"verificationStatus\":");
    codeable(b, "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed", NULL);
    P(b, ",\"category\":[");
    if (acute)
        codeable(b, "http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis",
                 "Encounter Diagnosis", NULL);
    else
        codeable(b, "http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item",
                 "Problem List Item", NULL);
    P(b, "],\"code\":");
    codeable(b, SCT, pc->def->code, pc->def->display, pc->def->text);
    ref_uuid(b, "subject", pt->uuid);
    if (pc->visit >= 0) ref_uuid(b, "encounter", pt->visits[pc->visit].uuid);
    P(b, ",\"onsetDateTime\":");
    put_date(b, pc->onset);
    if (pc->abated >= 0) {
        P(b, ",\"abatementDateTime\":");
        put_date(b, pc->abated);
    }
    /* Recorded when first coded: at the diagnosing visit, or a few days after onset. */
    int64_t recorded = pc->visit >= 0 ? pt->visits[pc->visit].start / 1440 : pc->onset + (pc->onset % 13 + 13) % 13;
    if (recorded >= g->ref_day) recorded = g->ref_day - 1;
    P(b, ",\"recordedDate\":");
    put_date(b, recorded);
    P(b, ",\"recorder\":");
    ref_practitioner(b, pc->visit >= 0 ? pt->visits[pc->visit].performer : pt->gp);
    entry_post_end(g, "Condition");
}

static void write_encounter(gen *g, const patient *pt, const pvisit *v)
{
    static const char *const type_code[] = { "185349003", "390906007", "185345009", "185317003" };
    static const char *const type_display[] = { "Encounter for check up", "Follow-up encounter",
                                                "Encounter for symptom", "Telephone encounter" };
    bv_buf *b = &g->buf;
    entry_post_begin(g, "Encounter", v->uuid);
    P(b, ",\"status\":\"finished\",\"class\":");
    if (v->kind == V_PHONE)
        P(b, "{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"VR\","
             "\"display\":\"virtual\"}");
    else
        P(b, "{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"AMB\","
             "\"display\":\"ambulatory\"}");
    P(b, ",\"type\":[");
    codeable(b, SCT, type_code[v->kind], type_display[v->kind], NULL);
    put_c(b, ']');
    ref_uuid(b, "subject", pt->uuid);
    P(b, ",\"participant\":[{\"type\":[");
    codeable(b, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer", NULL);
    P(b, "],\"individual\":");
    ref_practitioner(b, v->performer);
    P(b, "}],\"period\":{\"start\":");
    put_datetime(b, v->start);
    P(b, ",\"end\":");
    put_datetime(b, v->start + (v->kind == V_PHONE ? 10 : 15));
    put_c(b, '}');
    if (v->kind == V_PHONE) {
        P(b, ",\"reasonCode\":[");
        codeable(b, SCT, "182836005", "Review of medication", NULL);
        put_c(b, ']');
    } else if (v->cond >= 0) {
        P(b, ",\"reasonReference\":[{\"reference\":\"urn:uuid:");
        put_s(b, pt->conds[v->cond].uuid);
        P(b, "\"}]");
    }
    if (v->kind != V_PHONE) {
        P(b, ",\"location\":[{\"location\":");
        ref_literal(b, "Location/demo-loc-", pt->practice + 1);
        P(b, "}]");
    }
    P(b, ",\"serviceProvider\":");
    ref_org(b, g, pt->practice);
    entry_post_end(g, "Encounter");
}

/* "code":{"coding":[LOINC(, LOINC2)(, SNOMED)],"text":T} */
static void obs_code(bv_buf *b, const obs_def *d)
{
    P(b, "\"code\":{\"coding\":[{\"system\":\"" LOINC "\",\"code\":");
    put_q(b, d->loinc);
    P(b, ",\"display\":");
    put_q(b, d->loinc_display);
    put_c(b, '}');
    if (d->loinc2) {
        P(b, ",{\"system\":\"" LOINC "\",\"code\":");
        put_q(b, d->loinc2);
        P(b, ",\"display\":");
        put_q(b, d->loinc2_display);
        put_c(b, '}');
    }
    if (d->sct) {
        P(b, ",{\"system\":\"" SCT "\",\"code\":");
        put_q(b, d->sct);
        P(b, ",\"display\":");
        put_q(b, d->sct_display);
        put_c(b, '}');
    }
    P(b, "],\"text\":");
    put_q(b, d->text);
    put_c(b, '}');
}

static void quantity(bv_buf *b, const obs_def *d, int value)
{
    P(b, "{\"value\":");
    put_fixed(b, value, d->dec);
    P(b, ",\"unit\":");
    put_q(b, d->unit);
    P(b, ",\"system\":\"" UCUM "\",\"code\":");
    put_q(b, d->ucum);
    put_c(b, '}');
}

/* Start of an Observation entry up to and including effectiveDateTime and performer. */
static void obs_begin(gen *g, patient *pt, const obs_def *d, const pvisit *v, int64_t at)
{
    bv_buf *b = &g->buf;
    char uuid[37];
    make_uuid(&pt->r, uuid);
    entry_post_begin(g, "Observation", uuid);
    P(b, ",\"status\":\"final\",\"category\":[");
    if (d->lab)
        codeable(b, "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory", NULL);
    else
        codeable(b, "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs",
                 NULL);
    P(b, "],");
    obs_code(b, d);
    ref_uuid(b, "subject", pt->uuid);
    if (v) ref_uuid(b, "encounter", v->uuid);
    P(b, ",\"effectiveDateTime\":");
    put_datetime(b, at);
    if (v) {
        P(b, ",\"performer\":[");
        ref_practitioner(b, v->performer);
        put_c(b, ']');
    }
}

static void write_simple_obs(gen *g, patient *pt, unsigned o, const pvisit *v, int64_t at, int value)
{
    bv_buf *b = &g->buf;
    const obs_def *d = &OBS[o];
    obs_begin(g, pt, d, v, at);
    P(b, ",\"valueQuantity\":");
    quantity(b, d, value);
    if (d->ref_low >= 0 || d->ref_high >= 0) {
        P(b, ",\"referenceRange\":[{");
        if (d->ref_low >= 0) {
            P(b, "\"low\":");
            quantity(b, d, d->ref_low);
        }
        if (d->ref_high >= 0) {
            if (d->ref_low >= 0) put_c(b, ',');
            P(b, "\"high\":");
            quantity(b, d, d->ref_high);
        }
        P(b, "}]");
    }
    entry_post_end(g, "Observation");
}

static void write_bp(gen *g, patient *pt, const pvisit *v, int64_t at, int sys, int dia)
{
    bv_buf *b = &g->buf;
    obs_begin(g, pt, &OBS[O_BP], v, at);
    P(b, ",\"component\":[{");
    obs_code(b, &OBS[O_SYS]);
    P(b, ",\"valueQuantity\":");
    quantity(b, &OBS[O_SYS], sys);
    P(b, "},{");
    obs_code(b, &OBS[O_DIA]);
    P(b, ",\"valueQuantity\":");
    quantity(b, &OBS[O_DIA], dia);
    P(b, "}]");
    entry_post_end(g, "Observation");
}

/* Vital signs taken at a face-to-face visit. */
static void write_vitals(gen *g, patient *pt, const pvisit *v, bool first_visit)
{
    bv_rng *r = &pt->r;
    int64_t day = v->start / 1440, age_days = day - pt->birth;
    int age = (int)(age_days * 100 / 36525);
    bool acute = v->kind == V_ACUTE;
    int64_t t = v->start + 3;
    /* Heart and breathing rates by age (APLS ranges), temperature, SpO2. */
    int hr0 = age < 1 ? 130 : age < 3 ? 115 : age < 6 ? 100 : age < 12 ? 88 : age < 18 ? 78 : 72;
    int rr0 = age < 1 ? 40 : age < 3 ? 30 : age < 6 ? 24 : age < 12 ? 20 : age < 18 ? 16 : 15;
    int hr = hr0 + pt->hr + rnorm(r, 0, 5) + (acute ? rrange(r, 5, 20) : 0);
    if (pt->has[C_AF]) hr += rrange(r, -5, 25);
    int rr = rr0 + rnorm(r, 0, 2) + (acute ? rrange(r, 1, 5) : 0) + (pt->has[C_COPD] ? 3 : 0);
    int spo2 = (pt->has[C_COPD] ? 94 : 97) + rrange(r, -1, 2) - (acute ? rrange(r, 0, 3) : 0);
    int temp = acute ? rrange(r, 372, 389) : rnorm(r, 366, 3);
    write_simple_obs(g, pt, O_HR, v, t, clampi(hr, 40, 200));
    write_simple_obs(g, pt, O_RR, v, t, clampi(rr, 8, 60));
    write_simple_obs(g, pt, O_SPO2, v, t, clampi(spo2, 85, 100));
    write_simple_obs(g, pt, O_TEMP, v, t, clampi(temp, 350, 405));
    if (age >= 16) {
        int sys = 112 + (age > 20 ? (age - 20) / 2 : 0) + pt->sys + rnorm(r, 0, 6) + (pt->has[C_HT] ? 10 : 0);
        int dia = sys * 6 / 10 + 8 + rnorm(r, 0, 4);
        write_bp(g, pt, v, t + 2, clampi(sys, 85, 210), clampi(dia, 45, 125));
    }
    /* Height: every visit while growing, once for adults; weight every visit; BMI for adults. */
    int h = height_at(pt, age_days);
    if (age < 18 || first_visit) write_simple_obs(g, pt, O_HEIGHT, v, t + 5, h);
    int w;
    if (age < 18) {
        w = child_weight_at(pt, age_days);
    } else {
        int bmi = clampi(pt->bmi + rnorm(r, 0, 4), 160, 520);
        w = (int)((int64_t)bmi * h * h / 1000000); /* bmi x10 * mm^2 -> kg x10 */
    }
    write_simple_obs(g, pt, O_WEIGHT, v, t + 5, w);
    if (age >= 18) write_simple_obs(g, pt, O_BMI, v, t + 6, (int)((int64_t)w * 1000000 / ((int64_t)h * h)));
}

static void write_medication(gen *g, patient *pt, const prx *rx)
{
    static const char *const unit[] = { "tablet", "capsule", "dose" };
    bv_buf *b = &g->buf;
    bv_rng *r = &pt->r;
    const med_def *m = &MEDS[rx->med];
    char uuid[37];
    make_uuid(r, uuid);
    entry_post_begin(g, "MedicationRequest", uuid);
    P(b, ",\"status\":\"active\",\"intent\":\"order\",\"category\":[");
    codeable(b, "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "community", "Community", NULL);
    P(b, "],\"medicationCodeableConcept\":");
    codeable(b, SCT, m->code, m->display, m->display);
    ref_uuid(b, "subject", pt->uuid);
    /* The latest issue: within the last 80 days, and not before the diagnosis. */
    int64_t authored = working_day(g->ref_day - rrange(r, 3, 80), g->ref_day - 1);
    if (rx->cond >= 0 && authored < pt->conds[rx->cond].onset) authored = pt->conds[rx->cond].onset;
    P(b, ",\"authoredOn\":");
    put_date(b, authored);
    P(b, ",\"requester\":");
    ref_practitioner(b, pt->gp);
    if (rx->cond >= 0) {
        P(b, ",\"reasonReference\":[{\"reference\":\"urn:uuid:");
        put_s(b, pt->conds[rx->cond].uuid);
        P(b, "\"}]");
    }
    P(b, ",\"courseOfTherapyType\":");
    codeable(b, "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy", "continuous",
             "Continuous long term therapy", NULL);
    P(b, ",\"dosageInstruction\":[{\"text\":");
    put_q(b, m->dose_text);
    if (m->per_day) {
        P(b, ",\"timing\":{\"repeat\":{\"frequency\":");
        put_u(b, m->per_day);
        P(b, ",\"period\":1,\"periodUnit\":\"d\"}}");
    } else {
        P(b, ",\"asNeededBoolean\":true");
    }
    if (m->form != F_INHALER) {
        P(b, ",\"route\":");
        codeable(b, SCT, "26643006", "Oral route", NULL);
    }
    P(b, ",\"doseAndRate\":[{\"doseQuantity\":{\"value\":");
    put_u(b, m->dose);
    P(b, ",\"unit\":");
    put_q(b, unit[m->form]);
    P(b, "}}]}],\"dispenseRequest\":{\"numberOfRepeatsAllowed\":");
    put_u(b, 5 + rnd(r, 8));
    P(b, ",\"quantity\":{\"value\":");
    put_u(b, m->qty);
    P(b, ",\"unit\":");
    put_q(b, unit[m->form]);
    P(b, "},\"expectedSupplyDuration\":{\"value\":");
    put_u(b, m->days);
    P(b, ",\"unit\":\"days\",\"system\":\"" UCUM "\",\"code\":\"d\"}}");
    entry_post_end(g, "MedicationRequest");
}

static void write_allergy(gen *g, patient *pt, const allergy_def *a)
{
    bv_buf *b = &g->buf;
    bv_rng *r = &pt->r;
    char uuid[37];
    make_uuid(r, uuid);
    entry_post_begin(g, "AllergyIntolerance", uuid);
    P(b, ",\"clinicalStatus\":");
    codeable(b, "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active", NULL);
    P(b, ",\"verificationStatus\":");
    codeable(b, "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed",
             "Confirmed", NULL);
    P(b, ",\"type\":\"allergy\",\"category\":[");
    put_q(b, ALLERGY_CATEGORY[a->category]);
    P(b, "],\"criticality\":");
    put_q(b, a->high ? "high" : "low");
    P(b, ",\"code\":");
    codeable(b, SCT, a->code, a->display, a->text);
    ref_uuid(b, "patient", pt->uuid);
    int64_t span = g->ref_day - 30 - (pt->birth + 365);
    int64_t recorded = span > 0 ? pt->birth + 365 + rnd(r, (unsigned)span) : g->ref_day - 1;
    P(b, ",\"recordedDate\":");
    put_date(b, recorded);
    P(b, ",\"recorder\":");
    ref_practitioner(b, pt->gp);
    P(b, ",\"reaction\":[{\"manifestation\":[");
    codeable(b, SCT, a->reaction_code, a->reaction_display, NULL);
    P(b, "],\"severity\":");
    put_q(b, a->severity);
    P(b, "}]");
    entry_post_end(g, "AllergyIntolerance");
}

/* ---------------------------------------------------------------------------------------------
 * Virtual ward (docs/ward.md): a CareTeam and enrolled patients with 14 days of home readings
 * ------------------------------------------------------------------------------------------- */

enum { WP_STABLE, WP_DETERIORATING, WP_SILENT_HYPOXIA, WP_SCALE2, WP_STOPPED };

static unsigned ward_profile(unsigned k)
{
    static const unsigned first[] = {WP_DETERIORATING, WP_SILENT_HYPOXIA, WP_SCALE2, WP_STOPPED};
    if (k < 4) return first[k];
    if (k % 10 == 4) return WP_DETERIORATING;
    if (k % 10 == 7) return WP_STOPPED;
    return WP_STABLE;
}

static void write_ward_team(gen *g)
{
    bv_buf *b = &g->buf;
    entry_put_begin(g, "CareTeam", "demo-ward-", 1);
    P(b, ",\"status\":\"active\",\"category\":[");
    codeable(b, "http://bevan.dev/fhir/CodeSystem/care-team-category", "virtual-ward", "Virtual ward", NULL);
    P(b, "],\"name\":\"Riverside Virtual Ward (respiratory)\",\"participant\":[{\"member\":");
    ref_practitioner(b, 0);
    P(b, "}]");
    entry_put_end(g, "CareTeam", "demo-ward-", 1);
}

static void ward_obs_begin(gen *g, patient *pt, int64_t minute)
{
    bv_buf *b = &g->buf;
    char uuid[37];
    make_uuid(&pt->r, uuid);
    entry_post_begin(g, "Observation", uuid);
    P(b, ",\"status\":\"final\",\"category\":[");
    codeable(b, "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs", NULL);
    P(b, "],\"code\":");
}

static void ward_obs_end(gen *g, patient *pt, int64_t minute, bool device)
{
    bv_buf *b = &g->buf;
    ref_uuid(b, "subject", pt->uuid);
    P(b, ",\"effectiveDateTime\":");
    put_datetime(b, minute);
    P(b, ",\"performer\":[{\"reference\":\"urn:uuid:");
    put_s(b, pt->uuid);
    P(b, "\"}]");
    if (device) P(b, ",\"device\":{\"display\":\"Home pulse oximeter (ISO 80601-2-61)\"}");
}

/* ,"valueQuantity":{...} with v / 10^dec */
static void ward_qty(bv_buf *b, int v, unsigned dec, const char *unit, const char *code)
{
    P(b, "\"valueQuantity\":{\"value\":");
    put_fixed(b, v, dec);
    P(b, ",\"unit\":");
    put_q(b, unit);
    P(b, ",\"system\":\"http://unitsofmeasure.org\",\"code\":");
    put_q(b, code);
    put_c(b, '}');
}

static void ward_simple(gen *g, patient *pt, int64_t minute, const char *loinc, const char *display, int v,
                        unsigned dec, const char *unit, const char *code, bool device)
{
    bv_buf *b = &g->buf;
    ward_obs_begin(g, pt, minute);
    if (strcmp(loinc, "2708-6") == 0) {
        P(b, "{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"2708-6\",\"display\":\"Oxygen saturation in "
             "Arterial blood\"},{\"system\":\"http://loinc.org\",\"code\":\"59408-5\",\"display\":\"Oxygen saturation "
             "in Arterial blood by Pulse oximetry\"}],\"text\":\"SpO2\"}");
    } else {
        codeable(b, "http://loinc.org", loinc, display, NULL);
    }
    ward_obs_end(g, pt, minute, device);
    put_c(b, ',');
    ward_qty(b, v, dec, unit, code);
    entry_post_end(g, "Observation");
}

static void ward_sitting(gen *g, patient *pt, unsigned profile, int64_t minute, unsigned step, unsigned steps,
                         bool full)
{
    bv_buf *b = &g->buf;
    bv_rng *r = &pt->r;
    int f = (int)(step * 1000 / (steps ? steps : 1));        /* progress through the 14 days, per mille */
    int spo2, pulse, rr, sbp, temp;                           /* temp in tenths of a degree */
    switch (profile) {
    case WP_DETERIORATING:
        spo2 = 97 - 6 * f * f / 1000000 - rrange(r, 0, 1);
        pulse = 74 + 32 * f / 1000 + rrange(r, -3, 3);
        rr = 15 + 8 * f / 1000 + rrange(r, 0, 1);
        sbp = 128 - 18 * f / 1000 + rrange(r, -4, 4);
        temp = 369 + 14 * f / 1000 + rrange(r, -1, 1);
        break;
    case WP_SILENT_HYPOXIA:   /* low SpO2, normal pulse and breathing */
        spo2 = f < 700 ? 96 + rrange(r, 0, 2) : 94 - (f - 700) * 14 / 1000 - rrange(r, 0, 1);
        pulse = 72 + rrange(r, -4, 6);
        rr = 16 + rrange(r, 0, 2);
        sbp = 124 + rrange(r, -6, 6);
        temp = 368 + rrange(r, -2, 3);
        break;
    case WP_SCALE2:           /* chronic hypercapnic respiratory failure: target 88-92% */
        spo2 = 88 + rrange(r, 0, 4);
        pulse = 84 + rrange(r, -5, 8);
        rr = 19 + rrange(r, 0, 2);
        sbp = 132 + rrange(r, -8, 8);
        temp = 367 + rrange(r, -2, 3);
        break;
    default:
        spo2 = 96 + rrange(r, 0, 3);
        pulse = 62 + rrange(r, 0, 22);
        rr = 14 + rrange(r, 0, 4);
        sbp = 116 + rrange(r, 0, 20);
        temp = 365 + rrange(r, 0, 7);
        break;
    }
    ward_simple(g, pt, minute, "2708-6", NULL, clampi(spo2, 70, 100), 0, "%", "%", true);
    ward_simple(g, pt, minute, "8867-4", "Heart rate", pulse, 0, "beats/minute", "/min", true);
    if (!full) return;
    ward_simple(g, pt, minute, "9279-1", "Respiratory rate", rr, 0, "breaths/minute", "/min", false);
    ward_simple(g, pt, minute, "8310-5", "Body temperature", temp, 1, "Cel", "Cel", false);
    /* blood pressure panel */
    ward_obs_begin(g, pt, minute);
    codeable(b, "http://loinc.org", "85354-9", "Blood pressure panel with all children optional", NULL);
    ward_obs_end(g, pt, minute, false);
    P(b, ",\"component\":[{\"code\":");
    codeable(b, "http://loinc.org", "8480-6", "Systolic blood pressure", NULL);
    put_c(b, ',');
    ward_qty(b, sbp, 0, "mmHg", "mm[Hg]");
    P(b, "},{\"code\":");
    codeable(b, "http://loinc.org", "8462-4", "Diastolic blood pressure", NULL);
    put_c(b, ',');
    ward_qty(b, sbp * 6 / 10 + rrange(r, -3, 5), 0, "mmHg", "mm[Hg]");
    P(b, "}]");
    entry_post_end(g, "Observation");
    /* consciousness (ACVPU): alert */
    ward_obs_begin(g, pt, minute);
    codeable(b, "http://snomed.info/sct", "1104441000000107", "ACVPU (Alert Confusion Voice Pain Unresponsive) scale score", NULL);
    ward_obs_end(g, pt, minute, false);
    P(b, ",\"valueCodeableConcept\":");
    codeable(b, "http://snomed.info/sct", "248234008", "Mentally alert", NULL);
    entry_post_end(g, "Observation");
    /* breathing room air */
    ward_obs_begin(g, pt, minute);
    codeable(b, "http://snomed.info/sct", "722742002", "Breathing room air", NULL);
    ward_obs_end(g, pt, minute, false);
    entry_post_end(g, "Observation");
}

/* The enrolment CarePlan and 14 days of readings up to now (3 a day, a full NEWS2 set each morning). */
static void write_ward_entries(gen *g, patient *pt, unsigned k, int64_t now_min)
{
    bv_buf *b = &g->buf;
    bv_rng *r = &pt->r;
    unsigned profile = ward_profile(k);
    int64_t start_day = now_min / 1440 - 13;
    int64_t start = start_day * 1440 + 7 * 60;
    char uuid[37];
    make_uuid(r, uuid);
    entry_post_begin(g, "CarePlan", uuid);
    P(b, ",\"extension\":[{\"url\":\"http://bevan.dev/fhir/StructureDefinition/monitoring-plan\",\"extension\":["
         "{\"url\":\"readingsPerDay\",\"valueInteger\":3},{\"url\":\"readingTime\",\"valueTime\":\"08:00:00\"},"
         "{\"url\":\"readingTime\",\"valueTime\":\"14:00:00\"},{\"url\":\"readingTime\",\"valueTime\":\"20:00:00\"},"
         "{\"url\":\"durationDays\",\"valueInteger\":14}");
    if (profile == WP_SCALE2) {
        P(b, ",{\"url\":\"news2Scale\",\"valueInteger\":2},{\"url\":\"scale2DecidedBy\",\"valueReference\":");
        ref_practitioner(b, 0);
        P(b, "},{\"url\":\"spo2Baseline\",\"valueInteger\":90},{\"url\":\"spo2AmberAtOrBelow\",\"valueInteger\":87},"
             "{\"url\":\"spo2RedAtOrBelow\",\"valueInteger\":85}");
    } else {
        P(b, ",{\"url\":\"news2Scale\",\"valueInteger\":1},{\"url\":\"spo2Baseline\",\"valueInteger\":");
        put_u(b, profile == WP_STABLE ? 96 + rnd(r, 3) : 97);
        P(b, "},{\"url\":\"spo2AmberAtOrBelow\",\"valueInteger\":94},{\"url\":\"spo2RedAtOrBelow\",\"valueInteger\":92}");
    }
    P(b, ",{\"url\":\"escalationContact\",\"valueContactPoint\":{\"system\":\"phone\",\"value\":\"0113 496 0");
    put_pad(b, rnd(r, 1000), 3);
    P(b, "\",\"use\":\"work\"}}]}],\"status\":\"active\",\"intent\":\"plan\",\"category\":[");
    codeable(b, "http://bevan.dev/fhir/CodeSystem/care-plan-category", "virtual-ward", "Virtual ward", NULL);
    P(b, "],\"title\":\"Virtual ward: remote pulse oximetry\"");
    ref_uuid(b, "subject", pt->uuid);
    P(b, ",\"period\":{\"start\":");
    put_datetime(b, start);
    P(b, "},\"careTeam\":[{\"reference\":\"CareTeam/demo-ward-1\"}],\"author\":");
    ref_practitioner(b, 0);
    entry_post_end(g, "CarePlan");

    static const int slots[3] = {8 * 60, 14 * 60, 20 * 60};
    const unsigned steps = 14 * 3;
    int64_t stop = profile == WP_STOPPED ? now_min - 30 * 60 - (int64_t)rnd(r, 12 * 60) : now_min;
    for (unsigned d = 0; d < 14; d++)
        for (unsigned s = 0; s < 3; s++) {
            int64_t t = (start_day + d) * 1440 + slots[s] + rrange(r, -10, 25);
            if (t > stop || t < start) continue;
            ward_sitting(g, pt, profile, t, d * 3 + s, steps, s == 0);
        }
}

/* ward_k >= 0: a virtual-ward patient (adult; the ward's CarePlan and readings are added). */
static int write_patient_bundle(gen *g, unsigned idx, int ward_k, int64_t ward_now_min)
{
    patient *pt = bv_calloc(1, sizeof *pt);
    bv_rng *r = &pt->r;
    bv_rng_seed(r, g->seed ^ (0x9E3779B97F4A7C15ull * ((uint64_t)idx + 1)));
    if (!next_nhs(g, pt->nhs)) {
        free(pt);
        return BV_EINVAL;
    }
    make_uuid(r, pt->uuid);
    pt->male = chance(r, 490);
    /* Age from England's age pyramid; birth dates spread over the year. */
    unsigned u = rnd(r, 1000), band = 0, acc = 0;
    while (band < 18 && (acc += AGE_PER_MILLE[band]) <= u) band++;
    int age = (int)band * 5 + rrange(r, 0, band == 18 ? 5 : 4);
    if (ward_k >= 0 && age < 40) age = 40 + rrange(r, 0, 45);   /* NEWS2 is for adults */
    pt->birth = g->ref_day - (int64_t)age * 36525 / 100 - rnd(r, 365) - 1;
    pt->age = age_years(pt->birth, g->ref_day);
    int by;
    unsigned bm, bd;
    civil_from_days(pt->birth, &by, &bm, &bd);
    unsigned era = by < 1960 ? 0 : by < 1990 ? 1 : 2;
    const demo__list *names = &demo__given[era][pt->male];
    pt->given = names->items[pick_skewed(r, names->n)];
    pt->given2 = chance(r, 450) ? names->items[rnd(r, (unsigned)names->n)] : NULL;
    if (pt->given2 == pt->given) pt->given2 = NULL;
    pt->family = demo__surnames.items[pick_skewed(r, demo__surnames.n)];
    pt->practice = rnd(r, g->n_practices);
    pt->gp = practice_staff(g, r, pt->practice, ROLE_GP);
    pt->hf = rnorm(r, 1000, 38);
    pt->wf = rnorm(r, 1000, 110);
    pt->bmi = clampi(rnorm(r, 272, 45), 175, 480);
    pt->sys = rnorm(r, 0, 9);
    pt->hr = rnorm(r, 0, 6);

    plan_conditions(g, pt);
    if (pt->has[C_T2DM]) pt->bmi += 30;
    if (pt->age >= 85) pt->bmi -= 20;
    plan_visits(g, pt);
    plan_meds(pt);
    if (pt->n_rx && chance(r, 600)) {
        int64_t from = g->ref_day - 300, to = g->ref_day - 20;
        if (add_visit(g, pt, from, to, V_PHONE, -1)) sort_visits(pt);
    }
    plan_labs(g, pt);

    bundle_begin(g);
    write_patient(g, pt);
    for (unsigned i = 0; i < pt->n_conds; i++) write_condition(g, pt, &pt->conds[i]);
    for (unsigned i = 0; i < pt->n_visits; i++) write_encounter(g, pt, &pt->visits[i]);
    bool first = true;
    for (unsigned i = 0; i < pt->n_visits; i++) {
        if (pt->visits[i].kind == V_PHONE) continue;
        write_vitals(g, pt, &pt->visits[i], first);
        first = false;
    }
    for (unsigned i = 0; i < pt->n_labs; i++)
        write_simple_obs(g, pt, pt->labs[i].obs, NULL, pt->labs[i].at, pt->labs[i].value);
    for (unsigned i = 0; i < pt->n_rx; i++) write_medication(g, pt, &pt->rx[i]);
    for (unsigned i = 0; i < N_ALLERGIES; i++)
        if (chance(r, ALLERGIES[i].per_mille)) write_allergy(g, pt, &ALLERGIES[i]);
    if (ward_k >= 0) write_ward_entries(g, pt, (unsigned)ward_k, ward_now_min);
    bundle_end(g);
    free(pt);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------------------------- */

int bv_demo_generate(const bv_demo_options *opt, int (*emit)(void *ctx, const char *json, size_t len), void *ctx)
{
    if (!opt || !emit || opt->patients > BV_DEMO_MAX_PATIENTS || opt->ward_patients > BV_DEMO_MAX_WARD ||
        opt->patients + opt->ward_patients > BV_DEMO_MAX_PATIENTS)
        return BV_EINVAL;
    gen g;
    memset(&g, 0, sizeof g);
    bv_buf_init(&g.buf, 0);
    g.seed = opt->seed;
    g.ref_day = days_from_civil(2026, 1, 1);
    g.n_practices = opt->practices ? opt->practices : opt->patients / 500 + 1;
    if (g.n_practices > BV_DEMO_MAX_PRACTICES) g.n_practices = BV_DEMO_MAX_PRACTICES;

    bv_rng shared;
    bv_rng_seed(&shared, opt->seed ^ 0xB5AD4ECEDA1CE2A9ull);
    g.nhs_a = 387743;                                /* odd, not a multiple of 5: a bijection mod 10^6 */
    g.nhs_b = bv_rng_below(&shared, NHS_SPACE);
    plan_practices(&g, &shared, opt->patients);

    write_shared(&g);
    if (opt->ward_patients) {
        /* the ward's CareTeam joins the shared bundle */
        g.buf.len -= 2;   /* "]}" */
        write_ward_team(&g);
        bundle_end(&g);
    }
    int rc = emit(ctx, g.buf.data, g.buf.len);
    for (unsigned i = 0; !rc && i < opt->patients; i++) {
        rc = write_patient_bundle(&g, i, -1, 0);
        if (!rc) rc = emit(ctx, g.buf.data, g.buf.len);
    }
    /* 2026-01-01T12:00Z unless the caller gives the ward's "now" */
    int64_t ward_now_min = opt->ward_now_ms > 0 ? opt->ward_now_ms / 60000 : g.ref_day * 1440 + 12 * 60;
    for (unsigned k = 0; !rc && k < opt->ward_patients; k++) {
        rc = write_patient_bundle(&g, opt->patients + k, (int)k, ward_now_min);
        if (!rc) rc = emit(ctx, g.buf.data, g.buf.len);
    }
    bv_buf_free(&g.buf);
    free(g.practices);
    free(g.staff);
    return rc;
}
