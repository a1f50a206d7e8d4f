/* Pure clinical logic: NEWS2 (RCP 2017, domain.md §1), oximetry bands (domain.md §2), alert kinds. */
#include "bevan/care.h"

#include <math.h>
#include <string.h>

int bv_news2_rr(int rr)
{
    if (rr <= 8) return 3;
    if (rr <= 11) return 1;
    if (rr <= 20) return 0;
    if (rr <= 24) return 2;
    return 3;
}

int bv_news2_spo2(int spo2, int scale, bool on_oxygen)
{
    if (scale != 2) {
        if (spo2 <= 91) return 3;
        if (spo2 <= 93) return 2;
        if (spo2 <= 95) return 1;
        return 0;
    }
    if (spo2 <= 83) return 3;
    if (spo2 <= 85) return 2;
    if (spo2 <= 87) return 1;
    if (spo2 <= 92) return 0;
    if (!on_oxygen) return 0;    /* >= 93 on air */
    if (spo2 <= 94) return 1;
    if (spo2 <= 96) return 2;
    return 3;
}

int bv_news2_air_o2(bool on_oxygen) { return on_oxygen ? 2 : 0; }

int bv_news2_sbp(int sbp)
{
    if (sbp <= 90) return 3;
    if (sbp <= 100) return 2;
    if (sbp <= 110) return 1;
    if (sbp <= 219) return 0;
    return 3;
}

int bv_news2_pulse(int pulse)
{
    if (pulse <= 40) return 3;
    if (pulse <= 50) return 1;
    if (pulse <= 90) return 0;
    if (pulse <= 110) return 1;
    if (pulse <= 130) return 2;
    return 3;
}

int bv_news2_acvpu(bv_acvpu c) { return c == BV_ACVPU_A ? 0 : 3; }

int bv_news2_temp(double celsius)
{
    /* Round to one decimal (tenths, half away from zero) and compare in integer tenths, so 35.05
     * scores as 35.1 and no binary-fraction noise decides a boundary. */
    long t = lround(celsius * 10.0);
    if (t <= 350) return 3;
    if (t <= 360) return 1;
    if (t <= 380) return 0;
    if (t <= 390) return 1;
    return 2;
}

bv_news2_band bv_news2_band_of(int total, bool any_three)
{
    if (total >= 7) return BV_BAND_HIGH;
    if (total >= 5) return BV_BAND_MEDIUM;
    if (any_three) return BV_BAND_LOW_MEDIUM;
    return BV_BAND_LOW;
}

void bv_news2_score(const bv_news2_input *in, bv_news2_result *out)
{
    out->sub[BV_N2_RR] = bv_news2_rr(in->rr);
    out->sub[BV_N2_SPO2] = bv_news2_spo2(in->spo2, in->scale, in->on_oxygen);
    out->sub[BV_N2_AIR_O2] = bv_news2_air_o2(in->on_oxygen);
    out->sub[BV_N2_SBP] = bv_news2_sbp(in->sbp);
    out->sub[BV_N2_PULSE] = bv_news2_pulse(in->pulse);
    out->sub[BV_N2_ACVPU] = bv_news2_acvpu(in->acvpu);
    out->sub[BV_N2_TEMP] = bv_news2_temp(in->temp_c);
    int total = 0;
    bool three = false;
    for (int i = 0; i < BV_N2_NPARAMS; i++) {
        total += out->sub[i];
        if (out->sub[i] == 3) three = true;
    }
    out->total = total;
    out->band = bv_news2_band_of(total, three);
}

const char *bv_news2_band_code(bv_news2_band b)
{
    switch (b) {
    case BV_BAND_LOW: return "low";
    case BV_BAND_LOW_MEDIUM: return "low-medium";
    case BV_BAND_MEDIUM: return "medium";
    case BV_BAND_HIGH: return "high";
    }
    return "low";
}

const char *bv_news2_response(bv_news2_band b, int total)
{
    switch (b) {
    case BV_BAND_HIGH:
        return "Registered nurse immediately informs the medical team (at least specialist registrar); emergency "
               "assessment by a team with critical-care competencies; consider transfer to level 2/3 care";
    case BV_BAND_MEDIUM:
        return "Registered nurse immediately informs the medical team; urgent assessment by a clinician with core "
               "competencies in the care of acutely ill patients; care in an environment with monitoring";
    case BV_BAND_LOW_MEDIUM:
        return "Registered nurse informs the medical team caring for the patient, who review and decide whether "
               "escalation of care is needed (urgent ward-based response)";
    case BV_BAND_LOW:
        break;
    }
    if (total == 0) return "Continue routine NEWS monitoring";
    return "Inform a registered nurse, who must assess the patient and decide whether to increase monitoring "
           "frequency and/or escalate care";
}

const char *bv_news2_param_code(bv_news2_param p, int scale)
{
    switch (p) {
    case BV_N2_RR: return "1104301000000104";
    case BV_N2_SPO2: return scale == 2 ? NULL : "1104311000000102";
    case BV_N2_AIR_O2: return "1104331000000105";
    case BV_N2_SBP: return "1104341000000101";
    case BV_N2_PULSE: return "1104351000000103";
    case BV_N2_ACVPU: return "1104361000000100";
    case BV_N2_TEMP: return "1104371000000107";
    case BV_N2_NPARAMS: break;
    }
    return NULL;
}

const char *bv_news2_param_name(bv_news2_param p)
{
    static const char *const names[] = {"respiration rate", "SpO2", "air or oxygen", "systolic blood pressure",
                                        "pulse", "consciousness", "temperature"};
    return (unsigned)p < BV_N2_NPARAMS ? names[p] : "?";
}

/* ---- oximetry ---- */
bv_oxi_band bv_care_oximetry(const bv_care_plan *p, int spo2, int prev_spo2)
{
    if (spo2 <= p->red_at_or_below) return BV_OXI_RED;
    if (spo2 <= p->amber_at_or_below) return BV_OXI_AMBER;
    if (p->baseline > 0 && p->baseline - spo2 >= 3 && prev_spo2 >= 0 && p->baseline - prev_spo2 >= 3)
        return BV_OXI_DROP;
    return BV_OXI_GREEN;
}

const char *bv_oxi_band_name(bv_oxi_band b)
{
    switch (b) {
    case BV_OXI_GREEN: return "green";
    case BV_OXI_DROP: return "spo2-drop";
    case BV_OXI_AMBER: return "spo2-amber";
    case BV_OXI_RED: return "spo2-red";
    }
    return "green";
}

const char *bv_oxi_advice(bv_oxi_band b)
{
    switch (b) {
    case BV_OXI_RED: return "Call 999 or go to A&E now.";
    case BV_OXI_AMBER: return "Contact your GP practice or NHS 111 today.";
    case BV_OXI_DROP: return "Your oxygen level is lower than your usual level: your care team has been told; "
                             "contact your GP practice or NHS 111 if you feel worse.";
    case BV_OXI_GREEN: break;
    }
    return "Keep monitoring as planned.";
}

/* ---- alerts ---- */
static const struct {
    const char *code, *display, *priority;
    bv_alert_family family;
    int rank;
} alerts[BV_ALERT_N] = {
    [BV_ALERT_SPO2_AMBER] = {"spo2-amber", "SpO2 in the amber band", "urgent", BV_FAMILY_OXIMETRY, 2},
    [BV_ALERT_SPO2_RED] = {"spo2-red", "SpO2 in the red band", "stat", BV_FAMILY_OXIMETRY, 3},
    [BV_ALERT_SPO2_DROP] = {"spo2-drop", "Sustained SpO2 drop of 3 or more against baseline", "urgent",
                            BV_FAMILY_OXIMETRY, 1},
    [BV_ALERT_NEWS2_LOW_MEDIUM] = {"news2-low-medium", "NEWS2 3 in a single parameter", "urgent", BV_FAMILY_NEWS2,
                                   1},
    [BV_ALERT_NEWS2_MEDIUM] = {"news2-medium", "NEWS2 5-6 (medium)", "asap", BV_FAMILY_NEWS2, 2},
    [BV_ALERT_NEWS2_HIGH] = {"news2-high", "NEWS2 7 or more (high)", "stat", BV_FAMILY_NEWS2, 3},
    [BV_ALERT_OVERDUE] = {"overdue", "Scheduled reading overdue", "routine", BV_FAMILY_OVERDUE, 1},
    [BV_ALERT_OVERDUE_ESCALATED] = {"overdue-escalated", "Scheduled reading overdue (escalated)", "urgent",
                                    BV_FAMILY_OVERDUE, 2},
};

const char *bv_alert_code(bv_alert_kind k) { return (unsigned)k < BV_ALERT_N ? alerts[k].code : "?"; }
const char *bv_alert_display(bv_alert_kind k) { return (unsigned)k < BV_ALERT_N ? alerts[k].display : "?"; }
const char *bv_alert_priority(bv_alert_kind k) { return (unsigned)k < BV_ALERT_N ? alerts[k].priority : "routine"; }
bv_alert_family bv_alert_family_of(bv_alert_kind k) { return (unsigned)k < BV_ALERT_N ? alerts[k].family : 0; }
int bv_alert_rank(bv_alert_kind k) { return (unsigned)k < BV_ALERT_N ? alerts[k].rank : 0; }

int bv_alert_from_code(const char *code)
{
    for (int i = 0; i < BV_ALERT_N; i++)
        if (bv_streq(code, alerts[i].code)) return i;
    return -1;
}
