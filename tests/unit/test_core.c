/* Unit tests for src/core: capped buffers, arenas, cursor parsers, URL and base64 decoding, dates. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "bevan/core.h"

static void test_buf_cap(void **state)
{
    (void)state;
    bv_buf b;
    bv_buf_init(&b, 8);
    assert_int_equal(bv_buf_puts(&b, "12345678"), BV_OK);
    assert_int_equal(bv_buf_putc(&b, '9'), BV_ETOOBIG);      /* one past the cap */
    assert_string_equal(bv_buf_cstr(&b), "12345678");        /* left as it was */
    bv_buf_reset(&b);
    assert_int_equal(bv_buf_printf(&b, "%d-%s", 42, "x"), BV_OK);
    assert_string_equal(bv_buf_cstr(&b), "42-x");
    size_t n;
    char *s = bv_buf_steal(&b, &n);
    assert_int_equal(n, 4);
    assert_string_equal(s, "42-x");
    assert_int_equal(b.len, 0);
    free(s);
    bv_buf_free(&b);
}

static void test_arena(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(64);
    char *big = bv_arena_alloc(a, 100000);          /* larger than any block: its own block */
    memset(big, 'x', 100000);
    for (int i = 0; i < 1000; i++) {
        char *p = bv_arena_printf(a, "item %d", i);
        assert_true(((uintptr_t)p & 15u) == 0);     /* 16-byte aligned */
        assert_string_equal(p, bv_arena_printf(a, "item %d", i));
    }
    assert_true(bv_arena_used(a) >= 100000);
    bv_arena_reset(a);
    assert_int_equal(bv_arena_used(a), 0);
    assert_string_equal(bv_arena_strndup(a, "abcdef", 3), "abc");
    bv_arena_free(a);
}

static void test_parse_numbers(void **state)
{
    (void)state;
    uint64_t u;
    int64_t i;
    assert_int_equal(bv_str_to_u64("12345", 5, 100000, &u), BV_OK);
    assert_int_equal(u, 12345);
    assert_int_equal(bv_str_to_u64("100001", 6, 100000, &u), BV_ETOOBIG);
    assert_int_equal(bv_str_to_u64("12a", 3, 1000, &u), BV_EINVAL);
    assert_int_equal(bv_str_to_u64("", 0, 1000, &u), BV_EINVAL);
    assert_int_equal(bv_str_to_u64("18446744073709551616", 20, UINT64_MAX, &u), BV_ETOOBIG);
    assert_int_equal(bv_str_to_i64("-9223372036854775808", 20, &i), BV_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(bv_str_to_i64("9223372036854775808", 19, &i), BV_ETOOBIG);
    const char *p = "42rest", *end = p + 6;
    assert_int_equal(bv_parse_u64(&p, end, 1000, &u), BV_OK);
    assert_string_equal(p, "rest");                  /* the cursor advanced past the digits only */
}

static void test_url_decode(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(0);
    assert_string_equal(bv_url_decode(a, "a%20b+c", 7, true), "a b c");
    assert_string_equal(bv_url_decode(a, "a%20b+c", 7, false), "a b+c");
    assert_string_equal(bv_url_decode(a, "%7C%7c", 6, false), "||");
    assert_null(bv_url_decode(a, "bad%2", 5, false));
    assert_null(bv_url_decode(a, "bad%", 4, false));
    assert_null(bv_url_decode(a, "%zz", 3, false));
    assert_string_equal(bv_url_decode(a, "a%00b", 5, false), "a"); /* the plain decoder keeps the NUL */
    assert_null(bv_url_decode_nonul(a, "a%00b", 5, false));
    assert_string_equal(bv_url_decode_nonul(a, "a%2Fb", 5, false), "a/b");
    bv_arena_free(a);
}

static void test_query_split(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(0);
    const char *q = "a=1&&b=x%20y+z&c&=v&";
    assert_int_equal(bv_query_pieces(q), 6);
    assert_int_equal(bv_query_pieces(""), 1);
    bv_pair ps[6];
    assert_int_equal(bv_query_split(a, q, true, ps), 4);
    assert_string_equal(ps[0].name, "a");
    assert_string_equal(ps[0].value, "1");
    assert_string_equal(ps[1].name, "b");
    assert_string_equal(ps[1].value, "x y z");
    assert_string_equal(ps[2].name, "c");
    assert_string_equal(ps[2].value, "");
    assert_string_equal(ps[3].name, "");
    assert_string_equal(ps[3].value, "v");
    assert_int_equal(bv_query_split(a, "", true, ps), 0);
    assert_int_equal(bv_query_split(a, "a=%zz", false, ps), -1);
    assert_int_equal(bv_query_split(a, "a=%00", true, ps), -1);
    assert_int_equal(bv_query_split(a, "a=%00", false, ps), 1);
    bv_arena_free(a);
}

static void test_base64(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(0);
    size_t n;
    assert_string_equal(bv_base64_decode(a, "aGVsbG8=", 8, &n), "hello");
    assert_int_equal(n, 5);
    assert_string_equal(bv_base64_decode(a, "aGVsbG8", 7, &n), "hello");      /* padding optional */
    assert_string_equal(bv_base64_decode(a, "aGVs\nbG8=", 9, &n), "hello");   /* whitespace ignored */
    assert_string_equal(bv_base64_decode(a, "", 0, &n), "");
    assert_null(bv_base64_decode(a, "aGV*bG8=", 8, &n));                       /* bad character */
    assert_null(bv_base64_decode(a, "aG=Vs", 5, &n));                          /* data after padding */
    assert_null(bv_base64_decode(a, "a", 1, &n));                              /* 6 bits cannot be a byte */
    bv_arena_free(a);
}

static void test_dates(void **state)
{
    (void)state;
    char buf[40];
    bv_format_instant(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    bv_format_instant(1700000000123, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
    bv_format_http_date(1700000000123, buf, sizeof buf);
    assert_string_equal(buf, "Tue, 14 Nov 2023 22:13:20 GMT");
    int64_t ms;
    assert_int_equal(bv_parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT", &ms), BV_OK);
    assert_true(ms == 1700000000000);
    assert_int_equal(bv_parse_http_date("Tue, 14 Nov 2023 22:13:20 UTC", &ms), BV_EINVAL);
    assert_int_equal(bv_parse_http_date("Tue, 14 Foo 2023 22:13:20 GMT", &ms), BV_EINVAL);
    assert_int_equal(bv_parse_http_date("Tue, 14 Nov 2023 25:13:20 GMT", &ms), BV_EINVAL);
}

static void test_uuid_and_rng(void **state)
{
    (void)state;
    char u1[40], u2[40];
    bv_uuid4(u1);
    bv_uuid4(u2);
    assert_int_equal(strlen(u1), 36);
    assert_int_equal(u1[14], '4');                   /* version 4 */
    assert_true(strchr("89ab", u1[19]) != NULL);     /* RFC 4122 variant */
    assert_string_not_equal(u1, u2);
    /* ids drawn from the per-thread random pool across several refills: all distinct, and uuid7s
     * in time order */
    enum { N = 100 };
    static char ids[2 * N][40];
    for (int i = 0; i < N; i++) {
        bv_uuid7(ids[i]);
        bv_uuid4(ids[N + i]);
        assert_int_equal(ids[i][14], '7');
        assert_int_equal(ids[N + i][14], '4');
        if (i) assert_true(memcmp(ids[i - 1], ids[i], 13) <= 0); /* the 48-bit ms prefix */
    }
    for (int i = 0; i < 2 * N; i++)
        for (int j = i + 1; j < 2 * N; j++) assert_string_not_equal(ids[i], ids[j]);
    bv_rng r1, r2;
    bv_rng_seed(&r1, 7);
    bv_rng_seed(&r2, 7);
    for (int i = 0; i < 100; i++) assert_true(bv_rng_next(&r1) == bv_rng_next(&r2));
    for (int i = 0; i < 1000; i++) assert_true(bv_rng_below(&r1, 10) < 10);
}

/* The idle trim (bv_heap_idle_tick): once after each burst, never while busy or during activity,
 * and only when the resident size grew enough. */
static void test_heap_idle(void **state)
{
    (void)state;
    long rss = bv_rss_kb();
    assert_true(rss > 0);
    unsigned long trims = bv_heap_trims();
    bv_heap_idle st = {.rss_after_trim_kb = 0};
    assert_false(bv_heap_idle_tick(&st, 0, false, 0)); /* no request yet: nothing to give back */
    assert_false(bv_heap_idle_tick(&st, 5, false, 0)); /* requests started during this tick */
    assert_false(bv_heap_idle_tick(&st, 5, true, 0));  /* quiet, but one still in flight */
    assert_true(bv_heap_idle_tick(&st, 5, false, 0));  /* a quiet tick after the burst */
    assert_int_equal(bv_heap_trims(), trims + 1);
    assert_true(st.rss_after_trim_kb > 0);
    assert_false(bv_heap_idle_tick(&st, 5, false, 0)); /* once per burst */
    assert_false(bv_heap_idle_tick(&st, 9, false, 0));
    /* a burst that left the resident size where the last trim did: no trim, until it grows */
    assert_false(bv_heap_idle_tick(&st, 9, false, 1L << 30));
    assert_int_equal(bv_heap_trims(), trims + 1);
    assert_true(bv_heap_idle_tick(&st, 9, false, 0));
    assert_int_equal(bv_heap_trims(), trims + 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap),       cmocka_unit_test(test_arena),
        cmocka_unit_test(test_parse_numbers), cmocka_unit_test(test_url_decode), cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_base64),        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_uuid_and_rng),  cmocka_unit_test(test_heap_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
