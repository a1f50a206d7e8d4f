/* libFuzzer target for search parsing: the input is a query string ("name=x&birthdate=ge2020"),
 * parsed for a handful of resource types in strict and lenient mode. Invariants: no crash, no
 * sanitizer report, and a rejected query always carries at least one error issue. */
#include "bevan/fhir.h"     /* bv_fhir_parse_query_string: the same query splitting as the server */

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    static const char *const types[] = {"Patient", "Observation", "Encounter", NULL};
    bv_arena *a = bv_arena_new(1 << 14);
    char *qs = bv_arena_strndup(a, (const char *)data, size);
    bv_param *ps;
    size_t n;
    if (strlen(qs) == size && bv_fhir_parse_query_string(a, qs, &ps, &n) == 0) {
        for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
            for (int strict = 0; strict < 2; strict++) {
                bv_outcome oo;
                bv_outcome_init(&oo, a);
                bv_search_request sr;
                memset(&sr, 0, sizeof sr);
                int rc = bv_fhir_parse_search(a, types[t], ps, n, strict, &sr, &oo);
                if (rc != BV_OK && oo.n_errors == 0) abort();
            }
        }
    }
    bv_arena_free(a);
    return 0;
}
