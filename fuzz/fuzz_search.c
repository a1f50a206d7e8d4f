/* libFuzzer target for search parsing: the input is a query string ("name=x&birthdate=ge2020"),
 * parsed for a handful of resource types in strict and lenient mode. Invariants: no crash, no
 * sanitizer report, and a rejected query always carries at least one error issue. */
#include "bevan/fhir.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_query(bv_arena *a, const char *qs, bv_param **out, size_t *n)
{
    size_t cap = 1;
    for (const char *p = qs; *p; p++) if (*p == '&') cap++;
    if (cap > BV_MAX_QUERY_PARAMS) return -1;
    bv_param *ps = bv_arena_calloc(a, cap, sizeof *ps);
    size_t k = 0;
    const char *p = qs;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nl = eq ? (size_t)(eq - p) : len;
        char *name = bv_url_decode(a, p, nl, true);
        char *val = eq ? bv_url_decode(a, eq + 1, len - nl - 1, true) : bv_arena_strdup(a, "");
        if (!name || !val) return -1;
        ps[k].name = name;
        ps[k].value = val;
        k++;
        if (!amp) break;
        p = amp + 1;
    }
    *out = ps;
    *n = k;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    static const char *const types[] = {"Patient", "Observation", "Encounter", NULL};
    bv_arena *a = bv_arena_new(1 << 14);
    char *qs = bv_arena_strndup(a, (const char *)data, size);
    bv_param *ps;
    size_t n;
    if (strlen(qs) == size && parse_query(a, qs, &ps, &n) == 0) {
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
