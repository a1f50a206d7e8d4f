/* libFuzzer target for src/json.
 * Invariants checked: a rejected input has a message, a position inside the input and a too_big
 * flag that matches the code; an accepted input writes without error, the compact text parses
 * back to an equal tree whose own compact text is byte-identical, the pretty text parses back
 * equal, a clone is equal, and the number helpers do not misbehave on any accepted number.
 * (Commands below are // comments because they contain slash-star.) */
// Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude fuzz/fuzz_json.c src/json/*.c src/core/*.c
//          -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -std=c11 -o /tmp/fuzz_json -lpthread
// Run:   /tmp/fuzz_json -max_total_time=60 fuzz/corpus/json
#include "bevan/json.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_numbers(bv_arena *a, const json_value *v, int depth)
{
    if (!v || depth > 64) return;
    switch (v->type) {
    case JSON_NUMBER: {
        int64_t i;
        double d;
        bool is_int = json_number_to_i64(v, &i), is_dbl = json_number_to_double(v, &d);
        /* Both conversions round the same exact value to nearest, so they must agree. */
        if (is_int && (!is_dbl || (double)i != d)) abort();
        /* The builder's grammar check must accept what the parser accepted (it panics if not). */
        if (!json_equal(v, json_new_number_text(a, v->u.num.text))) abort();
        break;
    }
    case JSON_ARRAY:
        for (size_t k = 0; k < v->u.arr.count; k++) check_numbers(a, v->u.arr.items[k], depth + 1);
        break;
    case JSON_OBJECT:
        for (size_t k = 0; k < v->u.obj.count; k++) {
            const json_member *m = &v->u.obj.members[k];
            if (m->key[m->key_len] != '\0') abort();
            if (!json_utf8_valid(m->key, m->key_len)) abort();
            check_numbers(a, m->value, depth + 1);
        }
        break;
    case JSON_STRING:
        if (v->u.str.s[v->u.str.len] != '\0') abort();
        if (!json_utf8_valid(v->u.str.s, v->u.str.len)) abort();
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bv_arena *a = bv_arena_new(4096);
    json_limits lim = {64 * 1024, 32, 4096};
    json_value *v, *v2, *v3;
    json_error err;
    int rc = json_parse(a, (const char *)data, size, &lim, &v, &err);
    if (rc != BV_OK) {
        if (rc != BV_EINVAL && rc != BV_ETOOBIG) abort();
        if ((rc == BV_ETOOBIG) != err.too_big || !err.message[0] || err.offset > size) abort();
        if (err.line < 1 || err.column < 1 || err.column > err.offset + 1) abort();
        bv_arena_free(a);
        return 0;
    }
    check_numbers(a, v, 0);

    bv_buf b1, b2, bp;
    bv_buf_init(&b1, 0);
    bv_buf_init(&b2, 0);
    bv_buf_init(&bp, 0);
    if (json_write(&b1, v, false) != BV_OK) abort();
    if (b1.len > size) abort();  /* compact output never grows: no escape is longer than its source */
    if (json_parse(a, b1.data, b1.len, &lim, &v2, &err) != BV_OK) abort();
    if (!json_equal(v, v2) || !json_equal(v2, v)) abort();
    if (json_write(&b2, v2, false) != BV_OK) abort();
    if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0) abort();

    json_limits big = {0, 32, 4096};  /* pretty text is longer than the input */
    if (json_write(&bp, v, true) != BV_OK) abort();
    if (json_parse(a, bp.data, bp.len, &big, &v3, &err) != BV_OK) abort();
    if (!json_equal(v, v3)) abort();

    bv_arena *c = bv_arena_new(0);
    json_value *cl = json_clone(c, v);
    if (!json_equal(v, cl)) abort();
    bv_arena_free(c);

    bv_buf_free(&b1);
    bv_buf_free(&b2);
    bv_buf_free(&bp);
    bv_arena_free(a);
    return 0;
}
