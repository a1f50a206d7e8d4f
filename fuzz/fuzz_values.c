/* libFuzzer target for the value parsers: FHIR date/dateTime/instant/time validation and ranges,
 * primitive formats (id, code, uri, oid, uuid, base64, integer), UCUM canonicalisation, and the
 * search value grammar of each parameter kind (date with prefixes, quantity number|system|code,
 * token system|code, reference, number, string, uri), all on the same input.
 * Invariants: no crash or sanitizer report; instant => dateTime; date => dateTime; every valid
 * date/dateTime/instant has a range with lo <= hi (and an invalid one has none); a rejected search
 * value always has an error issue. */
#include "bevan/fhir.h"
#include "fhir/validate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    bv_arena *a = bv_arena_new(1 << 13);
    char *s = bv_arena_strndup(a, (const char *)data, size);
    size_t len = strlen(s); /* up to the first NUL */

    bool d = bv_fhir_valid_date(s), dt = bv_fhir_valid_datetime(s), in = bv_fhir_valid_instant(s);
    if ((in && !dt) || (d && !dt)) {
        fprintf(stderr, "date=%d dateTime=%d instant=%d for '%s'\n", d, dt, in, s);
        abort();
    }
    int64_t lo = 0, hi = 0;
    int rc = bv_fhir_date_range(s, &lo, &hi);
    if (dt && (rc != BV_OK || lo > hi)) abort();
    if (rc == BV_OK && lo > hi) abort();

    (void)fhir__valid_string(s, len);
    (void)fhir__valid_code(s, len);
    if (fhir__valid_id(s, len) != bv_fhir_valid_id(s) && len == size) abort();
    (void)fhir__valid_uri(s, len);
    (void)fhir__valid_oid(s, len);
    (void)fhir__valid_uuid(s, len);
    (void)fhir__valid_base64(s, len);
    (void)fhir__valid_integer_text(s, INT32_MIN, INT32_MAX);
    double out;
    const char *canon;
    (void)bv_ucum_canonical(s, 1.5, &out, &canon);

    /* The same text as the value of one parameter of each kind, with and without modifiers. */
    static const char *const names[] = {
        "date", "date:missing", "value-quantity", "code", "code:text", "code:not", "code:of-type", "subject",
        "subject:Patient", "value-string", "value-string:contains", "value-string:exact", "_lastUpdated", "_id",
        "identifier", "identifier:of-type", "_count", "_sort", "_include", "_revinclude", "_summary", "_total",
        "patient.identifier", "_has:Observation:subject:code", "combo-code-value-quantity", "code-value-quantity",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        bv_param p = {names[i], s};
        bv_outcome oo;
        bv_outcome_init(&oo, a);
        bv_search_request sr;
        memset(&sr, 0, sizeof sr);
        if (bv_fhir_parse_search(a, "Observation", &p, 1, true, &sr, &oo) != BV_OK && oo.n_errors == 0) abort();
    }
    bv_arena_free(a);
    return 0;
}
