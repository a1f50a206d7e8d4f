/* Narrative XHTML check (Narrative.div): a small scanner, not an XML library.
 *
 * Accepts: one <div> root (the value must start with "<div"), optional whitespace after it;
 * elements from the FHIR narrative whitelist (R4 txt-1: the HTML 4 formatting, list, table, link and
 * image elements); balanced, properly nested tags with exact-case names; attributes as
 * name="value" or name='value'; text and attribute values with XML entities only (&amp; &lt; &gt;
 * &quot; &apos; and &#N; / &#xH;); comments without "--".
 * Rejects active content: any element outside the whitelist (script, iframe, object, embed, form,
 * input, button, link, meta, style, base, svg, ...), attributes named on* (event handlers),
 * javascript:/vbscript:/livescript: URLs and data: URLs in URL-valued attributes (except
 * data:image/{png,gif,jpeg,jpg,webp,bmp} in <img src>, which the official examples use), CSS
 * expression()/behavior/-moz-binding/@import/javascript: in style attributes, CDATA sections,
 * processing instructions and DOCTYPEs. URL and style checks run on the entity-decoded value with
 * whitespace and control characters removed and ASCII lower-cased, so "&#106;ava&#x0A;script:"
 * is caught. */
#include "validate_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define XHTML_MAX_DEPTH 256
#define XHTML_NAME_MAX 64

/* FHIR narrative whitelist (sorted). */
static const char *const allowed_elements[] = {
    "a", "abbr", "acronym", "address", "b", "bdo", "big", "blockquote", "br", "caption", "cite", "code", "col",
    "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "ol", "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "tt", "ul", "var",
};

/* Attributes whose value is a URL (local name, lower case). */
static const char *const url_attributes[] = {
    "action", "background", "cite", "classid", "codebase", "data", "dynsrc", "formaction", "href", "longdesc",
    "lowsrc", "poster", "profile", "src", "srcset", "usemap",
};

typedef struct {
    const char *p, *end;
    char *why;
    size_t whylen;
} xscan;

static bool fail(xscan *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(xscan *x, const char *fmt, ...)
{
    if (x->why && x->whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->why, x->whylen, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return is_alpha(c) || c == '_' || c == ':'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c) || c == '-' || c == '.'; }
static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static bool starts(const xscan *x, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(x->end - x->p) >= n && memcmp(x->p, lit, n) == 0;
}

static void skip_ws(xscan *x)
{
    while (x->p < x->end && is_ws(*x->p)) x->p++;
}

/* An XML name (ASCII subset) at x->p; returns its length (0 if none) and advances. */
static size_t scan_name(xscan *x, const char **name)
{
    const char *s = x->p;
    if (s >= x->end || !is_name_start(*s)) return 0;
    while (x->p < x->end && is_name_char(*x->p)) x->p++;
    *name = s;
    return (size_t)(x->p - s);
}

/* "%.*s" argument for a name in a message, capped. */
static int show(size_t n) { return n > 32 ? 32 : (int)n; }

static bool in_list(const char *const *list, size_t count, const char *s, size_t n)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(list[mid], s, n);
        if (c == 0 && list[mid][n] != '\0') c = 1;
        if (c == 0) return true;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

/* Entity reference at x->p ('&'). Validates it and returns the code point in *cp. */
static bool scan_entity(xscan *x, unsigned long *cp)
{
    const char *s = x->p + 1;
    const char *semi = NULL;
    for (const char *q = s; q < x->end && q - s <= 12; q++)
        if (*q == ';') {
            semi = q;
            break;
        }
    if (!semi || semi == s) return fail(x, "'&' must start an entity reference such as &amp;");
    size_t n = (size_t)(semi - s);
    unsigned long v = 0;
    if (s[0] == '#') {
        bool hex = n > 1 && s[1] == 'x';
        size_t i = hex ? 2 : 1;
        if (i >= n) return fail(x, "malformed character reference");
        for (; i < n; i++) {
            char c = s[i];
            unsigned d;
            if (is_digit(c)) d = (unsigned)(c - '0');
            else if (hex && lower(c) >= 'a' && lower(c) <= 'f') d = (unsigned)(lower(c) - 'a' + 10);
            else return fail(x, "malformed character reference");
            v = v * (hex ? 16 : 10) + d;
            if (v > 0x10FFFF) return fail(x, "character reference out of range");
        }
        bool xml_char = v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v <= 0xD7FF) ||
                        (v >= 0xE000 && v <= 0xFFFD) || v >= 0x10000;
        if (!xml_char) return fail(x, "character reference to a disallowed character");
    } else if (n == 3 && memcmp(s, "amp", 3) == 0) v = '&';
    else if (n == 2 && memcmp(s, "lt", 2) == 0) v = '<';
    else if (n == 2 && memcmp(s, "gt", 2) == 0) v = '>';
    else if (n == 4 && memcmp(s, "quot", 4) == 0) v = '"';
    else if (n == 4 && memcmp(s, "apos", 4) == 0) v = '\'';
    else return fail(x, "unknown entity '&%.*s;' (only the XML entities are allowed)", show(n), s);
    x->p = semi + 1;
    *cp = v;
    return true;
}

/* Decodes an attribute value, drops whitespace/control characters (code points <= 0x20), lower-
 * cases ASCII, maps other non-ASCII to '?', and (for CSS) removes comments. Keeps at most cap-1. */
static size_t normalise(const char *v, size_t n, char *out, size_t cap, bool css)
{
    xscan x = {v, v + n, NULL, 0};
    size_t k = 0;
    while (x.p < x.end && k + 1 < cap) {
        unsigned long cp;
        if (*x.p == '&') {
            if (!scan_entity(&x, &cp)) break; /* already validated by the caller */
        } else {
            cp = (unsigned char)*x.p++;
        }
        if (cp <= 0x20) continue;
        char c = cp >= 0x80 ? '?' : lower((char)cp);
        if (css && c == '*' && k > 0 && out[k - 1] == '/') { /* drop a CSS comment */
            k--;
            const char *q = x.p;
            while (q + 1 < x.end && !(q[0] == '*' && q[1] == '/')) q++;
            x.p = q + 1 < x.end ? q + 2 : x.end;
            continue;
        }
        out[k++] = c;
    }
    out[k] = '\0';
    return k;
}

static bool check_url(xscan *x, const char *elem, size_t elen, const char *attr, size_t alen, const char *v,
                      size_t vn)
{
    char norm[64];
    normalise(v, vn, norm, sizeof norm, false);
    static const char *const bad[] = {"javascript:", "vbscript:", "livescript:", "mocha:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (strncmp(norm, bad[i], strlen(bad[i])) == 0)
            return fail(x, "%s URL in attribute '%.*s'", bad[i], show(alen), attr);
    if (strncmp(norm, "data:", 5) == 0) {
        bool img_src = elen == 3 && memcmp(elem, "img", 3) == 0 && alen == 3 && memcmp(attr, "src", 3) == 0;
        static const char *const ok[] = {"data:image/png", "data:image/gif", "data:image/jpeg", "data:image/jpg",
                                         "data:image/webp", "data:image/bmp"};
        if (img_src)
            for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
                size_t l = strlen(ok[i]);
                if (strncmp(norm, ok[i], l) == 0 && (norm[l] == ';' || norm[l] == ',')) return true;
            }
        return fail(x, "data: URL in attribute '%.*s' (only raster images in <img src> are allowed)",
                    show(alen), attr);
    }
    return true;
}

static bool check_style(xscan *x, const char *v, size_t vn)
{
    char norm[8192];
    size_t k = normalise(v, vn, norm, sizeof norm, true);
    if (k + 1 >= sizeof norm) return fail(x, "style attribute too long");
    static const char *const bad[] = {"expression(", "javascript:", "vbscript:", "behavior:", "behaviour:",
                                      "-moz-binding", "@import", "\\"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (strstr(norm, bad[i])) return fail(x, "style attribute contains '%s'", bad[i]);
    return true;
}

static bool check_attribute(xscan *x, const char *elem, size_t elen, const char *name, size_t n, const char *v,
                            size_t vn)
{
    char lname[XHTML_NAME_MAX + 1];
    if (n > XHTML_NAME_MAX) return fail(x, "attribute name too long");
    for (size_t i = 0; i < n; i++) lname[i] = lower(name[i]);
    lname[n] = '\0';
    const char *local = strrchr(lname, ':');
    local = local ? local + 1 : lname;
    size_t ln = strlen(local);
    if (ln >= 2 && local[0] == 'o' && local[1] == 'n')
        return fail(x, "event handler attribute '%.*s' is not allowed", show(n), name);
    if (strcmp(lname, "xmlns") == 0) {
        static const char ns[] = "http://www.w3.org/1999/xhtml";
        if (vn != sizeof ns - 1 || memcmp(v, ns, vn) != 0)
            return fail(x, "the narrative must be in the XHTML namespace");
        return true;
    }
    if (in_list(url_attributes, sizeof url_attributes / sizeof url_attributes[0], local, ln))
        return check_url(x, elem, elen, local, ln, v, vn);
    if (strcmp(local, "style") == 0) return check_style(x, v, vn);
    return true;
}

/* Attributes of a start tag up to and including '>' or '/>'. */
static bool scan_attributes(xscan *x, const char *elem, size_t elen, bool *self_closing)
{
    for (;;) {
        bool had_ws = x->p < x->end && is_ws(*x->p);
        skip_ws(x);
        if (x->p >= x->end) return fail(x, "unterminated tag <%.*s>", show(elen), elem);
        if (*x->p == '>') {
            x->p++;
            *self_closing = false;
            return true;
        }
        if (starts(x, "/>")) {
            x->p += 2;
            *self_closing = true;
            return true;
        }
        if (!had_ws) return fail(x, "malformed tag <%.*s>", show(elen), elem);
        const char *name;
        size_t n = scan_name(x, &name);
        if (!n) return fail(x, "malformed attribute in <%.*s>", show(elen), elem);
        skip_ws(x);
        if (x->p >= x->end || *x->p != '=') return fail(x, "attribute '%.*s' has no value", show(n), name);
        x->p++;
        skip_ws(x);
        if (x->p >= x->end || (*x->p != '"' && *x->p != '\'')) return fail(x, "attribute '%.*s' is not quoted", show(n), name);
        char q = *x->p++;
        const char *v = x->p;
        while (x->p < x->end && *x->p != q) {
            if (*x->p == '<') return fail(x, "'<' in the value of attribute '%.*s'", show(n), name);
            if (*x->p == '&') {
                unsigned long cp;
                if (!scan_entity(x, &cp)) return false;
            } else {
                x->p++;
            }
        }
        if (x->p >= x->end) return fail(x, "unterminated value of attribute '%.*s'", show(n), name);
        size_t vn = (size_t)(x->p - v);
        x->p++;
        if (!check_attribute(x, elem, elen, name, n, v, vn)) return false;
    }
}

static bool scan_comment(xscan *x)
{
    const char *s = x->p + 4;
    const char *e = NULL;
    for (const char *q = s; q + 2 < x->end; q++)
        if (q[0] == '-' && q[1] == '-' && q[2] == '>') {
            e = q;
            break;
        }
    if (!e) return fail(x, "unterminated comment");
    size_t n = (size_t)(e - s);
    if ((n >= 1 && s[0] == '>') || (n >= 2 && s[0] == '-' && s[1] == '>') || (n >= 1 && s[n - 1] == '-'))
        return fail(x, "malformed comment");
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '-' && s[i + 1] == '-') return fail(x, "'--' inside a comment");
    x->p = e + 3;
    return true;
}

bool fhir__xhtml_check(const char *s, size_t len, char *why, size_t whylen)
{
    xscan x = {s, s + len, why, whylen};
    struct { const char *name; size_t n; } stack[XHTML_MAX_DEPTH];
    size_t depth = 0;
    bool root_closed = false;
    if (why && whylen) why[0] = '\0';
    if (len < 5 || memcmp(s, "<div", 4) != 0 || !(is_ws(s[4]) || s[4] == '>' || s[4] == '/'))
        return fail(&x, "the narrative must be an XHTML <div> element");
    while (x.p < x.end) {
        char c = *x.p;
        if (c == '<') {
            if (root_closed) return fail(&x, "content after the closing </div>");
            if (starts(&x, "<!--")) {
                if (!scan_comment(&x)) return false;
            } else if (starts(&x, "<!") || starts(&x, "<?")) {
                return fail(&x, "CDATA sections, DOCTYPEs and processing instructions are not allowed");
            } else if (starts(&x, "</")) {
                x.p += 2;
                const char *name;
                size_t n = scan_name(&x, &name);
                if (!n) return fail(&x, "malformed closing tag");
                skip_ws(&x);
                if (x.p >= x.end || *x.p != '>') return fail(&x, "malformed closing tag </%.*s>", show(n), name);
                x.p++;
                if (depth == 0) return fail(&x, "unexpected closing tag </%.*s>", show(n), name);
                if (stack[depth - 1].n != n || memcmp(stack[depth - 1].name, name, n) != 0)
                    return fail(&x, "mismatched closing tag </%.*s> (expected </%.*s>)", show(n), name,
                                show(stack[depth - 1].n), stack[depth - 1].name);
                if (--depth == 0) root_closed = true;
            } else {
                x.p++;
                const char *name;
                size_t n = scan_name(&x, &name);
                if (!n) return fail(&x, "'<' must start a tag (write &lt; for a literal '<')");
                if (!in_list(allowed_elements, sizeof allowed_elements / sizeof allowed_elements[0], name, n))
                    return fail(&x, "element <%.*s> is not allowed in a narrative", show(n), name);
                bool self_closing = false;
                if (!scan_attributes(&x, name, n, &self_closing)) return false;
                if (self_closing) {
                    if (depth == 0) root_closed = true;
                } else {
                    if (depth == XHTML_MAX_DEPTH) return fail(&x, "narrative nested too deeply");
                    stack[depth].name = name;
                    stack[depth].n = n;
                    depth++;
                }
            }
        } else if (c == '&') {
            unsigned long cp;
            if (depth == 0) return fail(&x, "content after the closing </div>");
            if (!scan_entity(&x, &cp)) return false;
        } else {
            if (depth == 0 && !is_ws(c)) return fail(&x, "content after the closing </div>");
            x.p++;
        }
    }
    if (depth > 0) return fail(&x, "unclosed tag <%.*s>", show(stack[depth - 1].n), stack[depth - 1].name);
    return true;
}
