/* Unit tests for src/json: strict parsing, limits, round trips, equality, builders, and a round
 * trip over every official R4 example instance. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bevan/json.h"

static bv_arena *A;

static int setup(void **state)
{
    (void)state;
    A = bv_arena_new(0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bv_arena_free(A);
    A = NULL;
    return 0;
}

static json_value *parse_ok(const char *text)
{
    json_value *v = NULL;
    json_error err;
    int rc = json_parse(A, text, strlen(text), NULL, &v, &err);
    if (rc != BV_OK) fail_msg("parse of %s failed: %s at %zu", text, err.message, err.offset);
    assert_non_null(v);
    return v;
}

/* Compact output as an arena string. */
static const char *write_str(const json_value *v, bool pretty)
{
    bv_buf b;
    bv_buf_init(&b, 0);
    assert_int_equal(json_write(&b, v, pretty), BV_OK);
    char *s = bv_arena_strndup(A, bv_buf_cstr(&b), b.len);
    bv_buf_free(&b);
    return s;
}

static void assert_roundtrip_identical(const char *text)
{
    assert_string_equal(write_str(parse_ok(text), false), text);
}

/* ---- Rejections ---- */

typedef struct {
    const char *text;
    size_t len;            /* 0: strlen(text) */
    const char *msg;       /* substring the message must contain */
    long offset;           /* expected offset, or -1 to skip */
} reject_case;

static void check_rejects(const reject_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const reject_case *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        json_value *v = (json_value *)1;
        json_error err;
        int rc = json_parse(A, c->text, len, NULL, &v, &err);
        if (rc != BV_EINVAL) fail_msg("case %zu (%s): rc %d, expected BV_EINVAL", i, c->text, rc);
        assert_null(v);
        assert_false(err.too_big);
        if (!strstr(err.message, c->msg))
            fail_msg("case %zu (%s): message \"%s\" lacks \"%s\"", i, c->text, err.message, c->msg);
        if (c->offset >= 0 && err.offset != (size_t)c->offset)
            fail_msg("case %zu (%s): offset %zu, expected %ld (%s)", i, c->text, err.offset, c->offset,
                     err.message);
        assert_true(err.line >= 1 && err.column >= 1);
    }
}

#define CHECK_REJECTS(arr) check_rejects(arr, sizeof arr / sizeof arr[0])

static void test_reject_syntax(void **state)
{
    (void)state;
    static const reject_case cases[] = {
        {"", 0, "empty input", 0},
        {" \n\t\r ", 0, "empty input", 5},
        {"[1,]", 0, "trailing comma before ']'", 3},
        {"{\"a\":1,}", 0, "trailing comma before '}'", 7},
        {"{\"a\":1 , }", 0, "trailing comma", 9},
        {"[1,,2]", 0, "unexpected ','", 3},
        {"[,]", 0, "unexpected ','", 1},
        {"[1] x", 0, "unexpected data after the JSON value", 4},
        {"{} {}", 0, "unexpected data after", 3},
        {"1 2", 0, "unexpected data after", 2},
        {"0x10", 0, "unexpected data after", 1},
        {"'a'", 0, "single quotes", 0},
        {"{'a':1}", 0, "single quotes", 1},
        {"[\"a\",'b']", 0, "single quotes", 5},
        {"// c\n1", 0, "comments are not allowed", 0},
        {"/* c */ 1", 0, "comments are not allowed", 0},
        {"[1 /* c */]", 0, "comments are not allowed", 3},
        {"1 // c", 0, "comments are not allowed", 2},
        {"{/*c*/\"a\":1}", 0, "comments are not allowed", 1},
        {"tru", 0, "expected 'true'", 0},
        {"nul", 0, "expected 'null'", 0},
        {"fals", 0, "expected 'false'", 0},
        {"True", 0, "unexpected 'T'", 0},
        {"[1 2]", 0, "expected ',' or ']'", 3},
        {"{\"a\" 1}", 0, "expected ':'", 5},
        {"{\"a\":1 \"b\":2}", 0, "expected ',' or '}'", 7},
        {"{1:2}", 0, "object key", 1},
        {"[", 0, "unexpected end of input", 1},
        {"[1", 0, "unexpected end of input: expected ',' or ']'", 2},
        {"{\"a\":", 0, "unexpected end of input", 5},
        {"{\"a\"", 0, "unexpected end of input: expected ':'", 4},
        {"{", 0, "unexpected end of input: expected an object key", 1},
        {"[1,", 0, "unexpected end of input", 3},
        {"]", 0, "unexpected ']'", 0},
        {"[}", 0, "unexpected '}'", 1},
        {"{]", 0, "object key", 1},
        {"\xEF\xBB\xBF{}", 0, "byte order mark", 0},
        {"[1,\0]", 5, "byte 0x00", 3},
        {"\xFF", 0, "byte 0xFF", 0},
        {"{\"a\":1,\"a\":2}", 0, "duplicate key \"a\"", 7},
        {"{\"id\":\"x\",\"b\":{},\"id\":\"y\"}", 0, "duplicate key \"id\"", 17},
        {"{\"a\\u0062\":1,\"ab\":2}", 0, "duplicate key \"ab\"", 13},
    };
    CHECK_REJECTS(cases);
}

static void test_reject_numbers(void **state)
{
    (void)state;
    static const reject_case cases[] = {
        {"NaN", 0, "NaN is not allowed", 0},
        {"[NaN]", 0, "NaN is not allowed", 1},
        {"-NaN", 0, "NaN is not allowed", 0},
        {"Infinity", 0, "Infinity is not allowed", 0},
        {"-Infinity", 0, "Infinity is not allowed", 0},
        {"{\"a\":Infinity}", 0, "Infinity is not allowed", 5},
        {"01", 0, "leading zeros", 0},
        {"-01", 0, "leading zeros", 0},
        {"[00]", 0, "leading zeros", 1},
        {"+1", 0, "may not start with '+'", 0},
        {"[+1]", 0, "may not start with '+'", 1},
        {".5", 0, "digit before the decimal point", 0},
        {"-.5", 0, "expected a digit after '-'", 1},
        {"1.", 0, "expected a digit after the decimal point", 2},
        {"[1.]", 0, "expected a digit after the decimal point", 3},
        {"1.e5", 0, "expected a digit after the decimal point", 2},
        {"1e", 0, "expected a digit in the exponent", 2},
        {"1e+", 0, "expected a digit in the exponent", 3},
        {"1E-x", 0, "expected a digit in the exponent", 3},
        {"-", 0, "expected a digit after '-'", 1},
        {"--1", 0, "expected a digit after '-'", 1},
        {"- 1", 0, "expected a digit after '-'", 1},
        {"1e5.0", 0, "unexpected data after", 3},
    };
    CHECK_REJECTS(cases);
}

static void test_reject_strings(void **state)
{
    (void)state;
    static const reject_case cases[] = {
        /* unescaped control characters */
        {"\"a\x01" "b\"", 0, "unescaped control character U+0001", 2},
        {"\"a\nb\"", 0, "unescaped control character U+000A", 2},
        {"\"\t\"", 0, "unescaped control character U+0009", 1},
        {"{\"k\x1f\":1}", 0, "unescaped control character U+001F", 3},
        {"\"a\0b\"", 5, "unescaped control character U+0000", 2},
        /* bad escapes */
        {"\"\\x\"", 0, "invalid escape", 1},
        {"\"\\'\"", 0, "invalid escape", 1},
        {"\"\\U0041\"", 0, "invalid escape", 1},
        {"\"ab\\u12\"", 0, "four hex digits", 3},
        {"\"\\u12G4\"", 0, "four hex digits", 1},
        {"\"\\u\"", 0, "four hex digits", 1},
        {"\"\\\xC3\xA9\"", 0, "invalid escape", 1},
        /* unterminated */
        {"\"abc", 0, "unterminated string", 0},
        {"\"abc\\", 0, "unterminated string", 0},
        {"\"abc\\\"", 0, "unterminated string", 0},
        /* surrogates */
        {"\"\\uD800\"", 0, "lone high surrogate \\uD800", 1},
        {"\"x\\uD83Dy\"", 0, "lone high surrogate", 2},
        {"\"\\uDBFF\\n\"", 0, "lone high surrogate", 1},
        {"\"\\uDC00\"", 0, "unpaired low surrogate \\uDC00", 1},
        {"\"\\uDE00\\uD83D\"", 0, "unpaired low surrogate", 1},
        {"\"\\uD800\\u0041\"", 0, "not a low surrogate", 1},
        {"\"\\uD800\\uD800\"", 0, "not a low surrogate", 1},
        {"\"\\uD800\\uZZZZ\"", 0, "four hex digits", 7},
        /* invalid UTF-8 */
        {"\"\xC0\xAF\"", 0, "overlong", 1},
        {"\"\xC1\xBF\"", 0, "overlong", 1},
        {"\"\xE0\x80\xAF\"", 0, "overlong", 1},
        {"\"\xF0\x80\x80\xAF\"", 0, "overlong", 1},
        {"\"\xED\xA0\x80\"", 0, "surrogate", 1},
        {"\"\xED\xBF\xBF\"", 0, "surrogate", 1},
        {"\"\xF4\x90\x80\x80\"", 0, "above U+10FFFF", 1},
        {"\"\xF5\x80\x80\x80\"", 0, "above U+10FFFF", 1},
        {"\"\xE2\x82\"", 0, "truncated", 1},
        {"\"ab\xF0\x9F\x98\"", 0, "truncated", 3},
        {"\"\xE2\x82", 0, "truncated", 1},
        {"\"\x80\"", 0, "continuation byte", 1},
        {"\"abcdefgh\xBF\"", 0, "continuation byte", 9},
        {"\"\xFE\"", 0, "invalid byte", 1},
        {"{\"\xC3\":1}", 0, "invalid UTF-8", 2},
    };
    CHECK_REJECTS(cases);
}

static void test_error_position(void **state)
{
    (void)state;
    const char *t = "{\n  \"a\": 1,\n  \"a\": 2\n}";
    json_error err;
    json_value *v;
    assert_int_equal(json_parse(A, t, strlen(t), NULL, &v, &err), BV_EINVAL);
    assert_string_equal(err.message, "duplicate key \"a\"");
    assert_int_equal(err.offset, 14);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.column, 3);
    /* err may be NULL */
    assert_int_equal(json_parse(A, t, strlen(t), NULL, &v, NULL), BV_EINVAL);
}

static void test_long_key_message(void **state)
{
    (void)state;
    bv_buf b;
    bv_buf_init(&b, 0);
    char key[400];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    bv_buf_printf(&b, "{\"%s\":1,\"%s\":2}", key, key);
    json_error err;
    json_value *v;
    assert_int_equal(json_parse(A, b.data, b.len, NULL, &v, &err), BV_EINVAL);
    assert_non_null(strstr(err.message, "duplicate key \"kkkk"));
    assert_non_null(strstr(err.message, "...\""));
    assert_true(strlen(err.message) < sizeof err.message);
    bv_buf_free(&b);
}

static void test_duplicate_key_deep(void **state)
{
    (void)state;
    const char *t = "{\"resourceType\":\"Patient\",\"contact\":[{\"name\":{\"given\":[\"a\"],"
                    "\"extension\":[{\"url\":\"x\",\"valueString\":\"y\",\"url\":\"z\"}]}}]}";
    json_error err;
    json_value *v;
    assert_int_equal(json_parse(A, t, strlen(t), NULL, &v, &err), BV_EINVAL);
    assert_string_equal(err.message, "duplicate key \"url\"");
    assert_int_equal(err.offset, (size_t)(strstr(t, "\"url\":\"z\"") - t));
    /* The same key in sibling or nested objects is fine. */
    parse_ok("{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}");
}

static void test_duplicate_key_large_object(void **state)
{
    (void)state;
    enum { N = 200000 };
    bv_buf b;
    bv_buf_init(&b, 0);
    bv_buf_putc(&b, '{');
    for (int i = 0; i < N; i++) bv_buf_printf(&b, "%s\"key%d\":%d", i ? "," : "", i, i);
    bv_buf_putc(&b, '}');
    clock_t t0 = clock();
    json_value *v;
    json_error err;
    assert_int_equal(json_parse(A, b.data, b.len, NULL, &v, &err), BV_OK);
    assert_int_equal(json_count(v), N);
    assert_string_equal(json_get(v, "key123456")->u.num.text, "123456");
    /* Now a duplicate of an early key at the very end. */
    b.len--;
    bv_buf_puts(&b, ",\"key17\":0}");
    assert_int_equal(json_parse(A, b.data, b.len, NULL, &v, &err), BV_EINVAL);
    assert_string_equal(err.message, "duplicate key \"key17\"");
    /* Timing is reported, never asserted (bench/ measures speed). */
    printf("200,000-key object with a late duplicate: %.3f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
    bv_buf_free(&b);
}

static void test_depth(void **state)
{
    (void)state;
    enum { DEEP = 10000 };
    char *t = malloc(2 * DEEP + 1);
    for (int i = 0; i < DEEP; i++) { t[i] = '['; t[2 * DEEP - 1 - i] = ']'; }
    t[2 * DEEP] = '\0';
    json_value *v;
    json_error err;
    clock_t t0 = clock();
    assert_int_equal(json_parse(A, t, 2 * DEEP, NULL, &v, &err), BV_EINVAL);
    assert_non_null(strstr(err.message, "nesting too deep"));
    assert_false(err.too_big);
    assert_int_equal(err.offset, BV_MAX_JSON_DEPTH);
    (void)t0; /* the offset assertion above proves it stopped at the cap */

    /* Objects too, and exactly at the limit is fine. */
    json_limits lim = {0, 3, 0};
    const char *ok3 = "{\"a\":[{\"b\":1}]}", *bad4 = "{\"a\":[{\"b\":[]}]}";
    assert_int_equal(json_parse(A, ok3, strlen(ok3), &lim, &v, &err), BV_OK);
    assert_int_equal(json_parse(A, bad4, strlen(bad4), &lim, &v, &err), BV_EINVAL);
    assert_non_null(strstr(err.message, "nesting too deep (limit 3)"));

    /* With a raised cap the explicit stack copes with 10,000 levels (no C recursion). */
    json_limits deep = {0, DEEP, 0};
    assert_int_equal(json_parse(A, t, 2 * DEEP, &deep, &v, &err), BV_OK);
    bv_buf b;
    bv_buf_init(&b, 0);
    assert_int_equal(json_write(&b, v, false), BV_OK);
    assert_memory_equal(b.data, t, 2 * DEEP);
    bv_buf_free(&b);
    free(t);
}

static void test_size_caps(void **state)
{
    (void)state;
    json_value *v;
    json_error err;
    /* max_bytes */
    const char *doc = "{\"a\":\"0123456789012345678901234567890123456789\"}";
    json_limits small = {20, 0, 0};
    assert_int_equal(json_parse(A, doc, strlen(doc), &small, &v, &err), BV_ETOOBIG);
    assert_true(err.too_big);
    assert_null(v);
    assert_non_null(strstr(err.message, "exceeds the limit of 20"));

    /* a 1 MB string against a 512 KB cap, then under the default 4 MB cap */
    size_t n = 1024 * 1024;
    char *big = malloc(n + 3);
    big[0] = '"';
    memset(big + 1, 'x', n);
    big[n + 1] = '"';
    big[n + 2] = '\0';
    json_limits cap = {0, 0, 512 * 1024};
    assert_int_equal(json_parse(A, big, n + 2, &cap, &v, &err), BV_ETOOBIG);
    assert_true(err.too_big);
    assert_int_equal(err.offset, 0);
    assert_non_null(strstr(err.message, "string of 1048576 bytes exceeds the limit of 524288"));
    assert_int_equal(json_parse(A, big, n + 2, NULL, &v, &err), BV_OK);
    assert_int_equal(v->u.str.len, n);
    assert_false(err.too_big);

    /* the cap is on the decoded length: 6 escaped bytes that decode to 1 */
    json_limits tiny = {0, 0, 3};
    assert_int_equal(json_parse(A, "\"\\u0041\\u0042\\u0043\"", 20, &tiny, &v, &err), BV_OK);
    assert_string_equal(json_str(v), "ABC");
    assert_int_equal(json_parse(A, "\"\\u0041\\u0042\\u0043\\n\"", 22, &tiny, &v, &err), BV_ETOOBIG);
    assert_true(err.too_big);
    /* keys count as strings too */
    assert_int_equal(json_parse(A, "{\"abcd\":1}", 10, &tiny, &v, &err), BV_ETOOBIG);
    free(big);
}

/* ---- Values and round trips ---- */

static void test_parse_values(void **state)
{
    (void)state;
    json_value *v = parse_ok(" \t\r\n{\"s\":\"hi\",\"n\":-12.5e+3,\"t\":true,\"f\":false,\"z\":null,"
                             "\"a\":[],\"o\":{},\"e\":\"\"} \n");
    assert_int_equal(json_count(v), 8);
    assert_string_equal(json_get_str(v, "s"), "hi");
    assert_true(json_is(json_get(v, "n"), JSON_NUMBER));
    assert_string_equal(json_get(v, "n")->u.num.text, "-12.5e+3");
    assert_int_equal(json_get(v, "n")->u.num.len, 8);
    assert_true(json_is(json_get(v, "t"), JSON_TRUE));
    assert_true(json_is(json_get(v, "f"), JSON_FALSE));
    assert_true(json_is(json_get(v, "z"), JSON_NULL));
    assert_int_equal(json_count(json_get(v, "a")), 0);
    assert_true(json_is(json_get(v, "o"), JSON_OBJECT));
    assert_string_equal(json_get_str(v, "e"), "");
    /* document order is kept */
    assert_string_equal(v->u.obj.members[0].key, "s");
    assert_string_equal(v->u.obj.members[7].key, "e");
    /* bare scalars at the top level */
    assert_true(json_is(parse_ok("null"), JSON_NULL));
    assert_string_equal(parse_ok("0")->u.num.text, "0");
    assert_string_equal(parse_ok("-0.0E-0")->u.num.text, "-0.0E-0");
    assert_string_equal(json_str(parse_ok("\"a/b\\/c\"")), "a/b/c");
}

static void test_roundtrip_numbers(void **state)
{
    (void)state;
    assert_roundtrip_identical("{\"a\":[1.0,1.00,1E-17,10000000000000000,-1.00000000000000000E+245,1.50]}");
    assert_roundtrip_identical("[0,-0,0.0,1e400,-1E-400,123456789012345678901234567890.000000000000000001]");
    assert_roundtrip_identical("{\"b\":true,\"a\":false,\"c\":null,\"d\":\"\",\"e\":{},\"f\":[]}");
}

static void test_unicode(void **state)
{
    (void)state;
    json_value *v = parse_ok("\"\\u00e9\\u20AC\\ud83d\\ude00 \\u0041\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
    const char *want = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 A\"\\/\b\f\n\r\t";
    assert_int_equal(v->u.str.len, strlen(want));
    assert_memory_equal(v->u.str.s, want, strlen(want));
    /* written back as UTF-8, '/' not escaped, minimal escapes */
    assert_string_equal(write_str(v, false), "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 A\\\"\\\\/\\b\\f\\n\\r\\t\"");
    /* highest code point, raw UTF-8 passes straight through */
    v = parse_ok("[\"\\uDBFF\\uDFFF\",\"\xF4\x8F\xBF\xBF\",\"\xE6\x97\xA5\xE6\x9C\xAC\"]");
    assert_string_equal(json_str(json_at(v, 0)), "\xF4\x8F\xBF\xBF");
    assert_true(json_equal(json_at(v, 0), json_at(v, 1)));
    assert_string_equal(write_str(v, false), "[\"\xF4\x8F\xBF\xBF\",\"\xF4\x8F\xBF\xBF\",\"\xE6\x97\xA5\xE6\x9C\xAC\"]");
    /* \u0000 is kept, with its length */
    v = parse_ok("\"a\\u0000b\"");
    assert_int_equal(v->u.str.len, 3);
    assert_memory_equal(v->u.str.s, "a\0b", 4);
    assert_string_equal(write_str(v, false), "\"a\\u0000b\"");
    /* control characters written back */
    v = parse_ok("\"\\u0001\\u001f\\u007f\\u0020\"");
    assert_string_equal(write_str(v, false), "\"\\u0001\\u001f\x7f \"");
    /* keys are decoded too */
    v = parse_ok("{\"\\u00e9t\\u00e9\":1}");
    assert_non_null(json_get(v, "\xC3\xA9t\xC3\xA9"));
}

static void test_write_string(void **state)
{
    (void)state;
    bv_buf b;
    bv_buf_init(&b, 0);
    assert_int_equal(json_write_string(&b, "a\"b\\c/d\x01\xC3\xA9", 10), BV_OK);
    assert_string_equal(b.data, "\"a\\\"b\\\\c/d\\u0001\xC3\xA9\"");
    /* invalid UTF-8 is refused and the buffer left as it was */
    bv_buf_reset(&b);
    bv_buf_puts(&b, "keep");
    assert_int_equal(json_write_string(&b, "ab\xC3", 3), BV_EINVAL);
    assert_string_equal(bv_buf_cstr(&b), "keep");
    assert_int_equal(b.len, 4);
    json_value *s = json_new_stringn(A, "\xED\xA0\x80", 3);
    assert_int_equal(json_write(&b, s, false), BV_EINVAL);
    assert_int_equal(b.len, 4);
    bv_buf_free(&b);

    /* a capped buffer: BV_ETOOBIG, unchanged */
    bv_buf c;
    bv_buf_init(&c, 10);
    json_value *v = parse_ok("[\"0123456789\"]");
    assert_int_equal(json_write(&c, v, false), BV_ETOOBIG);
    assert_int_equal(c.len, 0);
    assert_int_equal(json_write(&c, parse_ok("[1,2]"), false), BV_OK);
    assert_string_equal(c.data, "[1,2]");
    bv_buf_free(&c);
}

static void test_pretty(void **state)
{
    (void)state;
    json_value *v = parse_ok("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"Ann\",\"B\"]}],"
                             "\"active\":true,\"extension\":[],\"meta\":{},\"x\":1.50}");
    const char *want =
        "{\n"
        "  \"resourceType\": \"Patient\",\n"
        "  \"name\": [\n"
        "    {\n"
        "      \"given\": [\n"
        "        \"Ann\",\n"
        "        \"B\"\n"
        "      ]\n"
        "    }\n"
        "  ],\n"
        "  \"active\": true,\n"
        "  \"extension\": [],\n"
        "  \"meta\": {},\n"
        "  \"x\": 1.50\n"
        "}";
    assert_string_equal(write_str(v, true), want);
    assert_string_equal(write_str(parse_ok("7"), true), "7");
    assert_string_equal(write_str(parse_ok("[]"), true), "[]");
    /* pretty output parses back to the same tree */
    assert_true(json_equal(parse_ok(want), v));
}

static void test_equal(void **state)
{
    (void)state;
    static const char *same[][2] = {
        {"1.0", "1.00"}, {"1", "1.0"}, {"1E0", "1"}, {"10E-1", "1"}, {"0.1e1", "1"},
        {"100", "1e2"}, {"1E+2", "100.000"}, {"0", "-0"}, {"0.0E5", "0"}, {"-0.000", "0e-7"},
        {"1.5", "15E-1"}, {"-2.50", "-0.25e1"}, {"123456789012345678901234567890", "1.2345678901234567890123456789E29"},
        {"1E999999999999999999999", "1E999999999999999999999"},
        {"{\"a\":1,\"b\":[1,2]}", "{\"b\":[1.0,2E0],\"a\":1}"},
        {"\"a\\u0000\"", "\"a\\u0000\""}, {"[]", "[]"}, {"{}", "{}"}, {"null", "null"},
    };
    static const char *differ[][2] = {
        {"10000000000000000", "10000000000000001"}, {"1", "-1"}, {"1", "10"}, {"0.1", "1"},
        {"1e2", "1e3"}, {"12", "21"}, {"1", "\"1\""}, {"true", "false"}, {"null", "false"},
        {"[1,2]", "[2,1]"}, {"[1]", "[1,1]"}, {"{\"a\":1}", "{\"a\":1,\"b\":1}"},
        {"{\"a\":1}", "{\"b\":1}"}, {"\"a\\u0000\"", "\"a\""}, {"{}", "[]"},
        {"1E999999999999999999999", "1E999999999999999999998"}, {"1E999999999999999999999", "1E99"},
        {"1E-999999999999999999999", "1E999999999999999999999"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (!json_equal(parse_ok(same[i][0]), parse_ok(same[i][1])))
            fail_msg("%s should equal %s", same[i][0], same[i][1]);
    for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++)
        if (json_equal(parse_ok(differ[i][0]), parse_ok(differ[i][1])))
            fail_msg("%s should differ from %s", differ[i][0], differ[i][1]);
    assert_true(json_equal(NULL, NULL));
    assert_false(json_equal(parse_ok("1"), NULL));
}

static void test_number_helpers(void **state)
{
    (void)state;
    int64_t i;
    double d;
    static const struct { const char *t; bool ok; int64_t v; } ints[] = {
        {"0", true, 0}, {"-0", true, 0}, {"42", true, 42}, {"-42", true, -42}, {"1.0", true, 1},
        {"1E2", true, 100}, {"12.5e1", true, 125}, {"1.5", false, 0}, {"1e-1", false, 0},
        {"9223372036854775807", true, INT64_MAX}, {"-9223372036854775808", true, INT64_MIN},
        {"9223372036854775808", false, 0}, {"-9223372036854775809", false, 0},
        {"1e19", false, 0}, {"18446744073709551616", false, 0}, {"1E999999999999999999999", false, 0},
        {"0.0000e99999999999999999999999", true, 0},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        bool ok = json_number_to_i64(parse_ok(ints[k].t), &i);
        if (ok != ints[k].ok || (ok && i != ints[k].v)) fail_msg("json_number_to_i64(%s)", ints[k].t);
    }
    assert_true(json_number_to_double(parse_ok("1.5e3"), &d));
    assert_true(d == 1500.0);
    assert_true(json_number_to_double(parse_ok("-1E-400"), &d));
    assert_false(json_number_to_double(parse_ok("1e400"), &d));
    assert_false(json_number_to_double(parse_ok("\"1\""), &d));
    assert_false(json_number_to_i64(NULL, &i));
}

static void test_builders(void **state)
{
    (void)state;
    json_value *o = json_new(A, JSON_OBJECT);
    json_set(A, o, "resourceType", json_new_string(A, "Patient"));
    json_set(A, o, "id", json_new_string(A, "p1"));
    json_set(A, o, "active", json_new_bool(A, true));
    json_set(A, o, "n", json_new_int(A, INT64_MIN));
    json_set(A, o, "d", json_new_number_text(A, "1.50"));
    assert_string_equal(write_str(o, false),
                        "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"active\":true,"
                        "\"n\":-9223372036854775808,\"d\":1.50}");
    /* set replaces in place */
    json_set(A, o, "id", json_new_string(A, "p2"));
    assert_int_equal(json_count(o), 5);
    assert_string_equal(o->u.obj.members[1].key, "id");
    assert_string_equal(json_get_str(o, "id"), "p2");
    /* set_at puts the member at pos, replacing any same-key member */
    json_set_at(A, o, 1, "meta", json_new(A, JSON_OBJECT));
    json_set_at(A, o, 0, "active", json_new_bool(A, false));
    json_set_at(A, o, 99, "z", NULL);
    assert_string_equal(write_str(o, false),
                        "{\"active\":false,\"resourceType\":\"Patient\",\"meta\":{},\"id\":\"p2\","
                        "\"n\":-9223372036854775808,\"d\":1.50,\"z\":null}");
    json_set_at(A, o, 3, "resourceType", json_new_string(A, "Observation"));
    assert_string_equal(o->u.obj.members[3].key, "resourceType");
    assert_int_equal(json_count(o), 7);
    /* remove */
    assert_true(json_remove(o, "meta"));
    assert_false(json_remove(o, "meta"));
    assert_null(json_get(o, "meta"));
    assert_int_equal(json_count(o), 6);
    /* arrays */
    json_value *arr = json_new(A, JSON_ARRAY);
    for (int k = 0; k < 10; k++) json_push(A, arr, json_new_int(A, k));
    assert_true(json_array_remove(arr, 0));
    assert_true(json_array_remove(arr, 8));
    assert_false(json_array_remove(arr, 8));
    assert_true(json_array_insert(A, arr, 0, json_new_string(A, "first")));
    assert_true(json_array_insert(A, arr, 9, json_new_string(A, "last")));
    assert_false(json_array_insert(A, arr, 11, json_new_int(A, 0)));
    assert_string_equal(write_str(arr, false), "[\"first\",1,2,3,4,5,6,7,8,\"last\"]");
    /* builders work on parsed values too (cap == count there) */
    json_value *p = parse_ok("{\"a\":[1],\"b\":2}");
    json_push(A, json_get(p, "a"), json_new_int(A, 2));
    json_set(A, p, "c", json_new(A, JSON_NULL));
    json_set_at(A, p, 0, "b", json_new(A, JSON_NUMBER));
    assert_string_equal(write_str(p, false), "{\"b\":0,\"a\":[1,2],\"c\":null}");
    /* defaults */
    assert_string_equal(json_str(json_new(A, JSON_STRING)), "");
    assert_string_equal(json_str(json_new_stringn(A, "abc", 2)), "ab");
}

static void test_accessors_null_safe(void **state)
{
    (void)state;
    json_value *arr = parse_ok("[1,\"x\"]");
    assert_null(json_get(NULL, "a"));
    assert_null(json_get(arr, "a"));
    assert_null(json_at(NULL, 0));
    assert_null(json_at(arr, 2));
    assert_string_equal(json_str(json_at(arr, 1)), "x");
    assert_null(json_str(json_at(arr, 0)));
    assert_int_equal(json_count(NULL), 0);
    assert_int_equal(json_count(json_at(arr, 0)), 0);
    assert_null(json_get_str(NULL, "x"));
    assert_false(json_is(NULL, JSON_NULL));
    assert_false(json_remove(arr, "a"));
    json_set(A, arr, "a", NULL);  /* wrong type: no effect */
    assert_int_equal(json_count(arr), 2);
}

static void test_clone(void **state)
{
    (void)state;
    json_value *v = parse_ok("{\"a\":[1.50,\"x\\u0000y\",{\"b\":null}],\"c\":true}");
    bv_arena *other = bv_arena_new(0);
    json_value *c = json_clone(other, v);
    assert_true(json_equal(v, c));
    json_set(other, c, "c", json_new_bool(other, false));
    assert_false(json_equal(v, c));
    assert_true(json_is(json_get(v, "c"), JSON_TRUE));
    json_value *c2 = json_clone(other, v);
    bv_arena_reset(A);  /* the clone must not point into the source arena */
    assert_string_equal(write_str(c2, false), "{\"a\":[1.50,\"x\\u0000y\",{\"b\":null}],\"c\":true}");
    assert_null(json_clone(other, NULL));
    bv_arena_free(other);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(json_utf8_valid("", 0));
    assert_true(json_utf8_valid("plain ascii text, long enough", 29));
    assert_true(json_utf8_valid("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\xEF\xBF\xBF", 16));
    assert_false(json_utf8_valid("\xC0\xAF", 2));
    assert_false(json_utf8_valid("\xED\xA0\x80", 3));
    assert_false(json_utf8_valid("\xF4\x90\x80\x80", 4));
    assert_false(json_utf8_valid("abcdefgh\xE2\x82", 10));
    assert_false(json_utf8_valid("\x80", 1));
}

/* ---- Every official R4 example instance ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) { fclose(f); return NULL; }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void test_examples_roundtrip(void **state)
{
    (void)state;
    const char *root = getenv("BEVAN_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/node_modules/hl7.fhir.r4.examples", root ? root : ".");
    DIR *d = opendir(dir);
    if (!d) {
        print_message("skipping: %s not found (run npm install)\n", dir);
        skip();
    }
    size_t files = 0, skipped = 0, bytes = 0;
    struct dirent *e;
    bv_buf out;
    bv_buf_init(&out, 0);
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 5, ".json") != 0 || strcmp(e->d_name, "package.json") == 0)
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (st.st_size > 8 * 1024 * 1024) { skipped++; continue; }
        size_t len = 0;
        char *text = read_file(path, &len);
        assert_non_null(text);
        bv_arena *a = bv_arena_new(64 * 1024);
        json_value *v1, *v2;
        json_error err;
        int rc = json_parse(a, text, len, NULL, &v1, &err);
        if (rc != BV_OK) fail_msg("%s: %s at line %zu column %zu", e->d_name, err.message, err.line, err.column);
        bv_buf_reset(&out);
        assert_int_equal(json_write(&out, v1, false), BV_OK);
        rc = json_parse(a, out.data, out.len, NULL, &v2, &err);
        if (rc != BV_OK) fail_msg("%s (rewritten): %s at %zu", e->d_name, err.message, err.offset);
        if (!json_equal(v1, v2)) fail_msg("%s: round trip differs", e->d_name);
        bv_arena_free(a);
        free(text);
        files++;
        bytes += len;
    }
    closedir(d);
    bv_buf_free(&out);
    print_message("round-tripped %zu example files (%zu MB), skipped %zu over 8 MB\n", files,
                  bytes >> 20, skipped);
    assert_true(files > 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reject_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_key_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key_deep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key_large_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unicode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pretty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_equal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accessors_null_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_utf8_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_examples_roundtrip, setup, teardown),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
