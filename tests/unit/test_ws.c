/* Unit tests for the WebSocket pieces of src/http (ws.c): frame header parsing at every length
 * boundary and rule of RFC 6455 5.2, server frame headers, and the opening handshake check
 * (the RFC's own example key). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "bevan/http.h"
#include "../../src/http/ws_internal.h"

static void test_parse_small(void **state)
{
    (void)state;
    bv__ws_frame f;
    const uint8_t masked_hi[] = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
    assert_int_equal(bv__ws_parse_header(masked_hi, 0, 100, &f), 0);
    assert_int_equal(bv__ws_parse_header(masked_hi, 1, 100, &f), 0);
    assert_int_equal(bv__ws_parse_header(masked_hi, 5, 100, &f), 0);   /* mask incomplete */
    assert_int_equal(bv__ws_parse_header(masked_hi, sizeof masked_hi, 100, &f), 1);
    assert_true(f.fin);
    assert_int_equal(f.opcode, 1);
    assert_int_equal(f.len, 2);
    assert_int_equal(f.header_len, 6);
    assert_int_equal(f.mask[3], 4);
    /* unmasked client frame, reserved bits, unknown opcodes */
    const uint8_t unmasked[] = {0x81, 0x02, 'h', 'i'};
    assert_int_equal(bv__ws_parse_header(unmasked, sizeof unmasked, 100, &f), -1002);
    const uint8_t rsv[] = {0xC1, 0x80, 0, 0, 0, 0};
    assert_int_equal(bv__ws_parse_header(rsv, sizeof rsv, 100, &f), -1002);
    for (unsigned op = 3; op <= 7; op++) {
        const uint8_t b[] = {(uint8_t)(0x80 | op), 0x80, 0, 0, 0, 0};
        assert_int_equal(bv__ws_parse_header(b, sizeof b, 100, &f), -1002);
    }
    const uint8_t b11[] = {0x8B, 0x80, 0, 0, 0, 0};
    assert_int_equal(bv__ws_parse_header(b11, sizeof b11, 100, &f), -1002);
}

static void test_parse_control(void **state)
{
    (void)state;
    bv__ws_frame f;
    const uint8_t ping125[] = {0x89, 0x80 | 125, 0, 0, 0, 0};
    assert_int_equal(bv__ws_parse_header(ping125, sizeof ping125, 1000, &f), 1);
    const uint8_t ping126[] = {0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0};
    assert_int_equal(bv__ws_parse_header(ping126, sizeof ping126, 1000, &f), -1002);
    const uint8_t frag_close[] = {0x08, 0x80, 0, 0, 0, 0};
    assert_int_equal(bv__ws_parse_header(frag_close, sizeof frag_close, 1000, &f), -1002);
}

static void test_parse_lengths(void **state)
{
    (void)state;
    bv__ws_frame f;
    const uint8_t l126[] = {0x81, 0x80 | 126, 0x00, 126, 9, 9, 9, 9};
    assert_int_equal(bv__ws_parse_header(l126, sizeof l126, 70000, &f), 1);
    assert_int_equal(f.len, 126);
    assert_int_equal(f.header_len, 8);
    const uint8_t l125_long[] = {0x81, 0x80 | 126, 0x00, 125, 9, 9, 9, 9};   /* not minimal */
    assert_int_equal(bv__ws_parse_header(l125_long, sizeof l125_long, 70000, &f), -1002);
    const uint8_t l65535[] = {0x81, 0x80 | 126, 0xff, 0xff, 9, 9, 9, 9};
    assert_int_equal(bv__ws_parse_header(l65535, sizeof l65535, 70000, &f), 1);
    assert_int_equal(f.len, 65535);
    const uint8_t l65536[] = {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9};
    assert_int_equal(bv__ws_parse_header(l65536, sizeof l65536, 70000, &f), 1);
    assert_int_equal(f.len, 65536);
    assert_int_equal(f.header_len, 14);
    assert_int_equal(bv__ws_parse_header(l65536, sizeof l65536, 65535, &f), -1009);   /* over the cap */
    const uint8_t l64_short[] = {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 9, 9, 9, 9};
    assert_int_equal(bv__ws_parse_header(l64_short, sizeof l64_short, 70000, &f), -1002);
    const uint8_t l64_msb[] = {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9};
    assert_int_equal(bv__ws_parse_header(l64_msb, sizeof l64_msb, 70000, &f), -1002);
    assert_int_equal(bv__ws_parse_header(l64_msb, 9, 70000, &f), 0);   /* length incomplete */
}

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[10];
    assert_int_equal(bv__ws_frame_header(h, 1, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(bv__ws_frame_header(h, 1, 125), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(bv__ws_frame_header(h, 1, 126), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[3], 126);
    assert_int_equal(bv__ws_frame_header(h, 8, 65536), 10);
    assert_int_equal(h[0], 0x88);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1);
    assert_int_equal(h[9], 0);
}

static void test_handshake(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    bv_kv h[] = {{"Host", "x"}, {"Upgrade", "WebSocket"}, {"Connection", "keep-alive, Upgrade"},
                 {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, {"Sec-WebSocket-Version", "13"}};
    bv_request r = {.arena = a, .method = "GET", .path = "/ws", .headers = h, .n_headers = 5};
    char accept[40];
    const char *msg = NULL;
    assert_int_equal(bv__ws_handshake(&r, accept, sizeof accept, &msg), 0);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");   /* RFC 6455 1.3 */
    h[4].value = "8";
    assert_int_equal(bv__ws_handshake(&r, accept, sizeof accept, &msg), 426);
    h[4].value = "13";
    h[3].value = "c2hvcnQ=";
    assert_int_equal(bv__ws_handshake(&r, accept, sizeof accept, &msg), 400);
    h[3].value = "dGhlIHNhbXBsZSBub25jZQ==";
    h[2].value = "keep-alive";
    assert_int_equal(bv__ws_handshake(&r, accept, sizeof accept, &msg), 426);
    h[2].value = "Upgrade";
    r.method = "POST";
    assert_int_equal(bv__ws_handshake(&r, accept, sizeof accept, &msg), 400);
    bv_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_small),
        cmocka_unit_test(test_parse_control),
        cmocka_unit_test(test_parse_lengths),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_handshake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
