/* libFuzzer target for the write path's pure logic: a JSON body is parsed, validated against the
 * generated R4 definitions and, when valid, its search-index rows are extracted. Invariants: no
 * crash or sanitizer report; the OperationOutcome of a rejected resource serialises as valid JSON
 * that parses back; a valid resource yields index rows without error. */
#include "bevan/fhir.h"
#include "bevan/json.h"

#include <stdlib.h>
#include <string.h>

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
        bv_validate_opts vo = {.allow_missing_id = true, .check_nhs_number = true};
        size_t errors = bv_fhir_validate(v, NULL, &vo, &oo);
        if (errors) {
            bv_buf b;
            bv_buf_init(&b, 0);
            if (json_write(&b, bv_outcome_to_json(&oo), false) != BV_OK) abort();
            json_value *back;
            if (json_parse(a, b.data, b.len, NULL, &back, &err) != BV_OK) abort();
            bv_buf_free(&b);
        } else {
            bv_index_row *rows;
            size_t n;
            if (bv_fhir_extract_index(a, v, &rows, &n) != BV_OK) abort();
        }
    }
    bv_arena_free(a);
    return 0;
}
