/* Helpers shared by parse.c, write.c and dom.c. Private to src/json. */
#ifndef BEVAN_JSON_INTERNAL_H
#define BEVAN_JSON_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* 1 for bytes that may appear in a JSON string as themselves and need no further check:
 * 0x20..0x7F except '"' and '\\'. (Bytes >= 0x80 are UTF-8 and are validated separately.) */
extern const unsigned char jx_plain[256];

/* True if any of the 8 bytes in w is < 0x20, '"', '\\' or >= 0x80: the scanners' 8-at-a-time test.
 * Exact as a yes/no answer (the classic has-zero-byte trick). */
static inline bool jx_swar_special(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    uint64_t lt = (w - ones * 0x20) & ~w;
    uint64_t hq = (q - ones) & ~q, hb = (b - ones) & ~b;
    return ((lt | hq | hb) & high) != 0 || (w & high) != 0;
}

/* Length (1..4) of the well-formed UTF-8 sequence at s, or 0 if it is malformed: overlong,
 * a UTF-16 surrogate (U+D800..DFFF), above U+10FFFF, a stray continuation byte, or cut off by end. */
static inline size_t jx_utf8_seq(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t avail = (size_t)(end - s);
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return avail >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3) return 0;
        unsigned c1 = s[1];
        bool ok1 = c == 0xE0 ? (c1 >= 0xA0 && c1 <= 0xBF)
                 : c == 0xED ? (c1 >= 0x80 && c1 <= 0x9F)
                 : (c1 & 0xC0) == 0x80;
        return ok1 && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        if (avail < 4) return 0;
        unsigned c1 = s[1];
        bool ok1 = c == 0xF0 ? (c1 >= 0x90 && c1 <= 0xBF)
                 : c == 0xF4 ? (c1 >= 0x80 && c1 <= 0x8F)
                 : (c1 & 0xC0) == 0x80;
        return ok1 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Why jx_utf8_seq(s, end) returned 0, for error messages. */
const char *jx_utf8_why(const unsigned char *s, const unsigned char *end);

/* True if s[0..len) matches the RFC 8259 number grammar exactly. */
bool jx_number_valid(const char *s, size_t len);

#endif
