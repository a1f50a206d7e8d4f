/* Hand-written format checks for the string-valued FHIR R4 primitives (the regexes in the type
 * definitions, written out as loops) and for integer number text. */
#include "bevan/fhir.h"
#include "validate_internal.h"

#include <string.h>

static bool is_xml_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static bool is_control(unsigned char c) { return c < 0x20 && c != '\t' && c != '\r' && c != '\n'; }

bool fhir__valid_string(const char *s, size_t len)
{
    if (!s || len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (is_control((unsigned char)s[i])) return false;
    return true;
}

bool fhir__valid_code(const char *s, size_t len)
{
    if (!s || len == 0) return false;
    if (is_xml_ws((unsigned char)s[0]) || is_xml_ws((unsigned char)s[len - 1])) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && !is_xml_ws(c)) return false;
        if (is_xml_ws(c) && i + 1 < len && is_xml_ws((unsigned char)s[i + 1])) return false;
    }
    return true;
}

bool fhir__valid_id(const char *s, size_t len)
{
    if (!s || len == 0 || len > BV_MAX_ID_LEN) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        if (!ok) return false;
    }
    return true;
}

bool bv_fhir_valid_id(const char *id)
{
    return id && fhir__valid_id(id, strlen(id));
}

bool fhir__valid_uri(const char *s, size_t len)
{
    if (!s || len == 0) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7F) return false;
    }
    return true;
}

bool fhir__valid_oid(const char *s, size_t len)
{
    static const char pfx[] = "urn:oid:";
    size_t pl = sizeof pfx - 1;
    if (!s || len < pl + 3 || memcmp(s, pfx, pl) != 0) return false;
    size_t i = pl;
    if (s[i] < '0' || s[i] > '2') return false;
    i++;
    int arcs = 0;
    while (i < len) {
        if (s[i] != '.') return false;
        i++;
        if (i >= len || s[i] < '0' || s[i] > '9') return false;
        if (s[i] == '0') {
            i++;
            if (i < len && s[i] >= '0' && s[i] <= '9') return false; /* no leading zeros */
        } else {
            while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        }
        arcs++;
    }
    return arcs >= 1;
}

bool fhir__valid_uuid(const char *s, size_t len)
{
    static const char pfx[] = "urn:uuid:";
    size_t pl = sizeof pfx - 1;
    if (!s || len != pl + 36 || memcmp(s, pfx, pl) != 0) return false;
    for (size_t i = 0; i < 36; i++) {
        char c = s[pl + i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

static bool is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

bool fhir__valid_base64(const char *s, size_t len)
{
    if (!s) return false;
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_xml_ws(c)) continue;
        if (c == '=') {
            pad++;
            if (pad > 2) return false;
        } else if (is_b64(c)) {
            if (pad) return false; /* data after padding */
        } else {
            return false;
        }
        n++;
    }
    return n > 0 && n % 4 == 0;
}

bool fhir__valid_integer_text(const char *text, int64_t min, int64_t max)
{
    if (!text) return false;
    const char *p = text;
    bool neg = false;
    if (*p == '-') {
        if (min >= 0) return false; /* unsignedInt/positiveInt have no sign, not even "-0" */
        neg = true;
        p++;
    }
    if (*p < '0' || *p > '9') return false;
    if (*p == '0' && p[1] != '\0') return false;
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
        if (v > (int64_t)1 << 40) return false; /* far outside any FHIR integer range */
    }
    if (neg) v = -v;
    return v >= min && v <= max;
}
