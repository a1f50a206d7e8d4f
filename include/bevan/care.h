/* Bevan care: virtual-ward clinical logic (issue 5). Conventions, algorithms and configuration:
 * docs/ward.md. Facts: ../shared/docs/domain.md §1-§3.
 *
 * Two halves:
 * - Pure functions (no I/O, no store): NEWS2 sub-scores, total, band and response; oximetry bands
 *   against the patient's plan (incl. a sustained drop against the baseline); plausibility of
 *   vital-sign readings; monitoring-plan parsing and validation. Unit-tested at every boundary.
 * - The ward service (bv_ward_start/stop): a thread that follows the store's committed-change
 *   feed and writes NEWS2 Observations, alert Flags and Tasks in its own write units, and raises
 *   "overdue" alerts from a timer. It never blocks or fails the client write that triggered it.
 *   Its cursor and per-plan state live in the store's kv table, so a restart resumes exactly. */
#ifndef BEVAN_CARE_H
#define BEVAN_CARE_H

#include "bevan/core.h"
#include "bevan/fhir.h"
#include "bevan/json.h"
#include "bevan/store.h"

/* ---- Codes and systems (fixed conventions; docs/ward.md) ---- */
#define BV_CARE_SYS_CT_CATEGORY   "http://bevan.dev/fhir/CodeSystem/care-team-category"
#define BV_CARE_SYS_CP_CATEGORY   "http://bevan.dev/fhir/CodeSystem/care-plan-category"
#define BV_CARE_VIRTUAL_WARD      "virtual-ward"
#define BV_CARE_EXT_PLAN          "http://bevan.dev/fhir/StructureDefinition/monitoring-plan"
#define BV_CARE_EXT_CAREPLAN      "http://bevan.dev/fhir/StructureDefinition/care-plan"
#define BV_CARE_SYS_BAND          "http://bevan.dev/fhir/CodeSystem/news2-band"
#define BV_CARE_SYS_ALERT         "http://bevan.dev/fhir/CodeSystem/ward-alert"
#define BV_CARE_SYS_PARAM         "http://bevan.dev/fhir/CodeSystem/news2-parameter"
#define BV_SNOMED                 "http://snomed.info/sct"
#define BV_LOINC                  "http://loinc.org"
#define BV_CARE_NEWS2_CODE        "1104051000000101"

/* ---- NEWS2 (domain.md §1) ---- */
typedef enum {
    BV_N2_RR, BV_N2_SPO2, BV_N2_AIR_O2, BV_N2_SBP, BV_N2_PULSE, BV_N2_ACVPU, BV_N2_TEMP, BV_N2_NPARAMS
} bv_news2_param;

typedef enum { BV_ACVPU_A, BV_ACVPU_C, BV_ACVPU_V, BV_ACVPU_P, BV_ACVPU_U } bv_acvpu;

int bv_news2_rr(int rr);
int bv_news2_spo2(int spo2, int scale, bool on_oxygen);   /* scale 1 or 2 */
int bv_news2_air_o2(bool on_oxygen);
int bv_news2_sbp(int sbp);
int bv_news2_pulse(int pulse);
int bv_news2_acvpu(bv_acvpu c);
/* Temperature is rounded to 1 dp (half away from zero) before scoring (domain.md §1.1 [D]). */
int bv_news2_temp(double celsius);

typedef struct {
    int rr, spo2, sbp, pulse;
    bool on_oxygen;
    bv_acvpu acvpu;
    double temp_c;
    int scale;                /* 1 or 2 */
} bv_news2_input;

typedef enum { BV_BAND_LOW, BV_BAND_LOW_MEDIUM, BV_BAND_MEDIUM, BV_BAND_HIGH } bv_news2_band;

typedef struct {
    int sub[BV_N2_NPARAMS];
    int total;
    bv_news2_band band;
} bv_news2_result;

void bv_news2_score(const bv_news2_input *in, bv_news2_result *out);
/* Chart 4 order: total >= 7 high; 5-6 medium; any single 3 low-medium; else low. */
bv_news2_band bv_news2_band_of(int total, bool any_three);
const char *bv_news2_band_code(bv_news2_band b);      /* "low", "low-medium", "medium", "high" */
const char *bv_news2_response(bv_news2_band b, int total); /* Chart 4 clinical response text */
/* The SNOMED sub-score code of a parameter (scale 2 SpO2 has none: NULL, see docs/ward.md). */
const char *bv_news2_param_code(bv_news2_param p, int scale);
const char *bv_news2_param_name(bv_news2_param p);

/* ---- Monitoring plan (CarePlan with the monitoring-plan extension) ---- */
#define BV_CARE_MAX_TIMES 24
typedef struct {
    const char *id;               /* CarePlan id (NULL when parsed from a body without one) */
    const char *status;
    const char *patient_id;       /* subject Patient/{id} */
    const char *ward_id;          /* careTeam[0] CareTeam/{id} */
    bool virtual_ward;            /* category has the virtual-ward coding */
    int64_t start_ms, end_ms;     /* period; end 0 = none */
    int readings_per_day;         /* default 3 */
    int times[BV_CARE_MAX_TIMES]; /* reading times, minutes after local midnight, ascending */
    int n_times;
    int duration_days;            /* default 14 */
    int scale;                    /* 1 (default) or 2 */
    const char *scale2_decided_by;/* reference text, e.g. "Practitioner/abc" */
    int baseline;                 /* -1 = none */
    int amber_at_or_below;        /* default 94 */
    int red_at_or_below;          /* default 92 */
} bv_care_plan;

/* Parses a CarePlan resource into p (strings point into res / the arena). Problems are added to oo
 * (code "business-rule", so the API answers 422) when oo != NULL. Returns the number of problems.
 * A CarePlan without the virtual-ward category is not a ward plan: returns 0 with
 * p->virtual_ward false and nothing checked. */
int bv_care_plan_parse(bv_arena *a, const json_value *res, bv_care_plan *p, bv_outcome *oo);
/* The scheduled reading time (UTC ms) at or before now, within the plan's period and duration;
 * 0 when none. Local times are in the server's zone (--tz). */
int64_t bv_care_plan_slot_before(const bv_care_plan *p, int64_t now_ms);

/* ---- Oximetry (domain.md §2) ---- */
typedef enum { BV_OXI_GREEN, BV_OXI_DROP, BV_OXI_AMBER, BV_OXI_RED } bv_oxi_band;
/* spo2 against the plan's thresholds (<= red: red; <= amber: amber). If neither and a baseline is
 * set: a drop of >= 3 points against the baseline in this reading and in the previous one
 * (prev_spo2, -1 = none: a single reading is not "sustained") is BV_OXI_DROP. */
bv_oxi_band bv_care_oximetry(const bv_care_plan *p, int spo2, int prev_spo2);
const char *bv_oxi_band_name(bv_oxi_band b);  /* "green", "spo2-drop", "spo2-amber", "spo2-red" */
/* Patient advice for a band (domain.md §2 action column). */
const char *bv_oxi_advice(bv_oxi_band b);

/* ---- Readings ---- */
typedef enum {
    BV_RD_NONE, BV_RD_SPO2, BV_RD_PULSE, BV_RD_RR, BV_RD_TEMP, BV_RD_BP, BV_RD_SBP, BV_RD_DBP,
    BV_RD_ACVPU, BV_RD_AIR_O2
} bv_reading_kind;

/* What one Observation carries for the ward (value fields set when present). */
typedef struct {
    bv_reading_kind kind;
    bool has_value;
    double value;                 /* SpO2 %, /min, Cel (converted from [degF]), SBP mmHg */
    bv_acvpu acvpu;
    bool on_oxygen;
    int64_t effective_ms;         /* effective[x] start; 0 if absent */
} bv_reading;

/* Classifies an Observation (any status except entered-in-error/cancelled counts). */
int bv_care_reading(const json_value *obs, bv_reading *out);

/* Plausibility limits, one row per code and unit (docs/ward.md has the table). */
typedef struct {
    const char *system;
    const char *code;
    const char *unit;             /* UCUM code */
    double min, max;              /* inclusive */
    const char *what;             /* "SpO2" */
} bv_care_limit;
const bv_care_limit *bv_care_limits(size_t *n);
/* Overrides min/max of every row for code (and unit when not NULL). BV_ENOTFOUND if none.
 * Call before serving (not thread-safe). `bevan serve --plausible CODE[:UNIT]=MIN..MAX`. */
int bv_care_set_limit(const char *code, const char *unit, double min, double max);
/* Parses "CODE[:UNIT]=MIN..MAX" and applies it. */
int bv_care_set_limit_text(const char *spec);

/* The API write hook: for an Observation, refuses implausible vital-sign values and wrong units;
 * for a CarePlan of the virtual-ward category, refuses an invalid monitoring plan. Issues are added
 * with code "business-rule" (422); returns the number added. Pure: no store access. */
int bv_care_check_write(bv_arena *a, const json_value *res, bv_outcome *oo);

/* ---- Alerts ---- */
typedef enum {
    BV_ALERT_SPO2_AMBER, BV_ALERT_SPO2_RED, BV_ALERT_SPO2_DROP, BV_ALERT_NEWS2_LOW_MEDIUM,
    BV_ALERT_NEWS2_MEDIUM, BV_ALERT_NEWS2_HIGH, BV_ALERT_OVERDUE, BV_ALERT_OVERDUE_ESCALATED, BV_ALERT_N
} bv_alert_kind;
typedef enum { BV_FAMILY_OXIMETRY, BV_FAMILY_NEWS2, BV_FAMILY_OVERDUE } bv_alert_family;
const char *bv_alert_code(bv_alert_kind k);
const char *bv_alert_display(bv_alert_kind k);
const char *bv_alert_priority(bv_alert_kind k);   /* Task.priority */
bv_alert_family bv_alert_family_of(bv_alert_kind k);
int bv_alert_rank(bv_alert_kind k);               /* severity within its family, 1.. */
int bv_alert_from_code(const char *code);         /* -1 when unknown */

/* ---- The ward service ---- */
typedef struct {
    bv_store *store;
    int64_t news2_window_ms;      /* full parameter set within this window (default 60 min) */
    int64_t overdue_grace_ms;     /* default 60 min */
    int64_t overdue_escalate_ms;  /* default 4 h */
    int64_t tick_ms;              /* timer period (default 30 s; env BEVAN_WARD_TICK_MS) */
} bv_ward_options;

typedef struct bv_ward bv_ward;
int bv_ward_start(const bv_ward_options *opt, bv_ward **out);
void bv_ward_stop(bv_ward *w);    /* NULL ok; finishes the unit in progress */

/* The ward's clock: wall clock, unless the TEST-ONLY environment variable BEVAN_TEST_NOW_FILE
 * names a file holding an instant (re-read on each call; the server's elapsed time since the file
 * changed is not added) or BEVAN_TEST_NOW holds one (then it advances with the wall clock). */
int64_t bv_ward_now_ms(void);

#endif
