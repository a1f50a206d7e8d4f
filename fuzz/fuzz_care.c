/* libFuzzer target for the virtual-ward logic on the request path (docs/ward.md): a JSON body goes
 * through bv_care_check_write (plausibility, monitoring-plan validation), bv_care_reading and
 * bv_care_plan_parse. Invariants: no crash or sanitizer report; issues are business-rule errors;
 * the schedule of a parsed plan is ascending and within a day. */
#include "bevan/care.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    bv_arena *a = bv_arena_new(1 << 16);
    json_value *v;
    json_error err;
    json_limits lim = {.max_bytes = 65536};
    if (json_parse(a, (const char *)data, size, &lim, &v, &err) == BV_OK && json_is(v, JSON_OBJECT)) {
        bv_outcome oo;
        bv_outcome_init(&oo, a);
        int n = bv_care_check_write(a, v, &oo);
        if (n < 0 || (size_t)n != oo.n_errors) abort();
        for (size_t i = 0; i < oo.n; i++)
            if (!bv_streq(oo.issues[i].code, "business-rule")) abort();
        bv_reading r;
        (void)bv_care_reading(v, &r);
        bv_care_plan p;
        bv_care_plan_parse(a, v, &p, NULL);
        if (p.n_times < 0 || p.n_times > BV_CARE_MAX_TIMES) abort();
        for (int i = 0; i < p.n_times; i++) {
            if (p.times[i] < 0 || p.times[i] >= 1440) abort();
            if (i && p.times[i] < p.times[i - 1]) abort();
        }
        (void)bv_care_plan_slot_before(&p, 1767225600000LL);
    }
    bv_arena_free(a);
    return 0;
}
