/* Resource validation driven only by the generated R4 definition tables (fhir_defs.h): no
 * hand-written per-resource rules. See docs/validation.md for the rules and the error format.
 *
 * The walk: a resource is an object whose members are looked up among its type's elements;
 * each element's JSON shape (array or not), JSON type and primitive format are checked, complex
 * values recurse into their datatype's elements (or the inline BackboneElement children, or a
 * contentReference target), Resource-typed values recurse as full resources. Issues carry a
 * FHIRPath-style expression built in a fixed path buffer as the walk descends. */
#include "bevan/fhir.h"
#include "validate_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALIDATE_MAX_ISSUES 100   /* then one "too many errors" issue and the walk stops */
#define VALIDATE_MAX_DEPTH 128    /* recursion guard; parsed JSON is capped at BV_MAX_JSON_DEPTH */
#define VALIDATE_PATH_CAP 1024
#define SEEN_LOCAL 64             /* elements per scope handled without allocation (R4 max is 54) */
#define NHS_NUMBER_SYSTEM "https://fhir.nhs.uk/Id/nhs-number"

typedef struct {
    bv_outcome *oo;
    bool check_nhs;
    size_t errors;       /* errors this call added */
    bool stop;           /* issue cap reached */
    int depth;
    size_t plen;
    char path[VALIDATE_PATH_CAP];
} vctx;

/* The elements an object's members are looked up in: a type's top-level elements, or the inline
 * children of a BackboneElement/Element-typed element (after following contentReference). */
typedef struct {
    const fhir_element *first;
    size_t n;
} scope;

/* ---- type caches (built once; the tables are constant) ---- */

typedef enum {
    P_NONE, P_BOOLEAN, P_INTEGER, P_POSITIVEINT, P_UNSIGNEDINT, P_DECIMAL, P_STRING, P_MARKDOWN, P_CODE, P_ID,
    P_URI, P_URL, P_CANONICAL, P_OID, P_UUID, P_BASE64, P_DATE, P_DATETIME, P_INSTANT, P_TIME, P_XHTML
} prim_kind;

static const char *const prim_names[] = {
    [P_BOOLEAN] = "boolean", [P_INTEGER] = "integer", [P_POSITIVEINT] = "positiveInt",
    [P_UNSIGNEDINT] = "unsignedInt", [P_DECIMAL] = "decimal", [P_STRING] = "string", [P_MARKDOWN] = "markdown",
    [P_CODE] = "code", [P_ID] = "id", [P_URI] = "uri", [P_URL] = "url", [P_CANONICAL] = "canonical",
    [P_OID] = "oid", [P_UUID] = "uuid", [P_BASE64] = "base64Binary", [P_DATE] = "date",
    [P_DATETIME] = "dateTime", [P_INSTANT] = "instant", [P_TIME] = "time", [P_XHTML] = "xhtml",
};

static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static uint8_t *type_prim;                 /* [fhir_types_count]: prim_kind of each type */
static const fhir_type **elem_type;        /* [fhir_elements_count]: type of a single-typed element */
static const fhir_element *patient_identifier; /* Patient.identifier, for the NHS number check */

static void cache_init(void)
{
    type_prim = bv_calloc(fhir_types_count ? fhir_types_count : 1, 1);
    for (size_t i = 0; i < fhir_types_count; i++) {
        if (fhir_types[i].kind != FHIR_KIND_PRIMITIVE) continue;
        for (size_t k = 1; k < sizeof prim_names / sizeof prim_names[0]; k++)
            if (strcmp(fhir_types[i].name, prim_names[k]) == 0) type_prim[i] = (uint8_t)k;
        if (!type_prim[i]) type_prim[i] = P_STRING; /* an unexpected primitive: string rules */
    }
    elem_type = bv_calloc(fhir_elements_count ? fhir_elements_count : 1, sizeof *elem_type);
    for (size_t i = 0; i < fhir_elements_count; i++)
        if (!fhir_elements[i].choice && fhir_elements[i].n_types >= 1)
            elem_type[i] = fhir_type_find(fhir_elements[i].types[0]);
    patient_identifier = fhir_type_element(fhir_type_find("Patient"), "identifier", NULL);
}

static prim_kind prim_of(const fhir_type *t) { return t ? (prim_kind)type_prim[t - fhir_types] : P_NONE; }

/* ---- paths ---- */

/* Appends s[0..n) to the path, cutting at a UTF-8 character boundary when the buffer is full. */
static void path_append(vctx *c, const char *s, size_t n)
{
    size_t room = VALIDATE_PATH_CAP - 1 - c->plen;
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    memcpy(c->path + c->plen, s, n);
    c->plen += n;
    c->path[c->plen] = '\0';
}

static size_t path_push(vctx *c, const char *seg)
{
    size_t old = c->plen;
    if (c->plen) path_append(c, ".", 1);
    path_append(c, seg, strlen(seg));
    return old;
}

static size_t path_push_index(vctx *c, size_t i)
{
    size_t old = c->plen;
    char buf[32], *p = buf + sizeof buf;
    *--p = ']';
    do {
        *--p = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    *--p = '[';
    path_append(c, p, (size_t)(buf + sizeof buf - p));
    return old;
}

static void path_pop(vctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

/* Copies peer text for a message: at most ~60 bytes, cut on a UTF-8 boundary, control
 * characters replaced, "..." when cut. */
static const char *clip(const char *s, size_t n, char *buf, size_t cap)
{
    size_t max = cap - 4, k = 0;
    size_t m = n < max ? n : max;
    while (m < n && m > 0 && ((unsigned char)s[m] & 0xC0) == 0x80) m--;
    for (; k < m; k++) buf[k] = ((unsigned char)s[k] < 0x20) ? '?' : s[k];
    if (m < n) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

/* ---- issues ---- */

static void issue(vctx *c, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void issue(vctx *c, const char *code, const char *fmt, ...)
{
    if (c->stop) return;
    if (c->errors >= VALIDATE_MAX_ISSUES) {
        bv_outcome_add(c->oo, BV_SEV_ERROR, "too-costly", NULL,
                       "too many errors; validation stopped after %d", VALIDATE_MAX_ISSUES);
        c->errors++;
        c->stop = true;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len >= (int)sizeof msg) { /* cut: drop the last, perhaps partial, UTF-8 sequence (valid JSON) */
        size_t m = sizeof msg - 1;
        while (m > 0 && ((unsigned char)msg[m - 1] & 0xC0) == 0x80) m--;
        if (m > 0 && (unsigned char)msg[m - 1] >= 0xC0) m--;
        msg[m] = '\0';
    }
    bv_outcome_add(c->oo, BV_SEV_ERROR, code, c->plen ? c->path : NULL, "%s", msg);
    c->errors++;
}

/* ---- scopes ---- */

static bool scope_of_type(const fhir_type *t, scope *s)
{
    if (!t || t->first_element < 0) return false;
    s->first = &fhir_elements[t->first_element];
    s->n = t->n_elements;
    return true;
}

static const fhir_element *resolve_content_ref(const fhir_element *e)
{
    for (int hops = 0; e->content_ref >= 0 && hops < 8; hops++) e = &fhir_elements[e->content_ref];
    return e;
}

static bool has_inline_children(const fhir_element *e)
{
    return e->content_ref >= 0 || e->first_child >= 0;
}

static bool scope_of_inline(const fhir_element *e, scope *s)
{
    const fhir_element *r = resolve_content_ref(e);
    if (r->first_child < 0) return false;
    s->first = &fhir_elements[r->first_child];
    s->n = r->n_children;
    return true;
}

/* The element named by a JSON member name (same rules as fhir_type_element: a choice element
 * "value" matches "valueQuantity" with *choice_type = "Quantity"), as a linear scan with a first-
 * character filter: scopes are small (R4 max 54 elements). */
static const fhir_element *scope_find(const scope *s, const char *name, const char **choice_type)
{
    char c0 = name[0];
    *choice_type = NULL;
    for (size_t i = 0; i < s->n; i++) {
        const fhir_element *e = &s->first[i];
        if (e->name[0] != c0) continue;
        if (!e->choice) {
            if (strcmp(e->name, name) == 0) return e;
            continue;
        }
        size_t n = strlen(e->name);
        if (strncmp(e->name, name, n) != 0) continue;
        const char *suffix = name + n;
        if (suffix[0] < 'A' || suffix[0] > 'Z') continue;
        for (unsigned k = 0; k < e->n_types; k++) {
            const char *code = e->types[k];
            char first = code[0];
            if (first >= 'a' && first <= 'z') first = (char)(first - 'a' + 'A');
            if (first == suffix[0] && strcmp(code + 1, suffix + 1) == 0) {
                *choice_type = code;
                return e;
            }
        }
    }
    return NULL;
}

/* ---- forward declarations ---- */

static void validate_resource(vctx *c, const json_value *res, const char *expected, bool contained);
static void validate_members(vctx *c, const json_value *obj, const scope *s, bool is_resource);

/* ---- primitives ---- */

static void check_required_code(vctx *c, const fhir_element *e, const char *code, size_t len)
{
    if (fhir_element_code_allowed(e, code)) return;
    char allowed[240];
    size_t k = 0;
    allowed[0] = '\0';
    for (uint16_t i = 0; i < e->n_required_codes; i++) {
        const char *rc = e->required_codes[i];
        size_t l = strlen(rc);
        if (k + l + 8 >= sizeof allowed) {
            memcpy(allowed + k, ", ...", 6);
            k += 5;
            break;
        }
        if (k) {
            memcpy(allowed + k, ", ", 2);
            k += 2;
        }
        memcpy(allowed + k, rc, l + 1);
        k += l;
    }
    char buf[80];
    issue(c, "code-invalid", "'%s' is not a valid code for %s (allowed: %s)", clip(code, len, buf, sizeof buf),
          e->binding_valueset ? e->binding_valueset : "the required value set", allowed);
}

/* Validates one primitive value (not null, not an array). */
static void check_primitive_value(vctx *c, const fhir_element *e, const fhir_type *t, const json_value *v)
{
    char buf[80];
    const char *tn = t->name;
    prim_kind pk = prim_of(t);
    switch (pk) {
    case P_BOOLEAN:
        if (v->type != JSON_TRUE && v->type != JSON_FALSE) issue(c, "structure", "expected a JSON boolean for type 'boolean'");
        return;
    case P_INTEGER:
    case P_POSITIVEINT:
    case P_UNSIGNEDINT: {
        if (v->type != JSON_NUMBER) {
            issue(c, "structure", "expected a JSON number for type '%s'", tn);
            return;
        }
        int64_t min = pk == P_POSITIVEINT ? 1 : pk == P_UNSIGNEDINT ? 0 : INT32_MIN;
        if (!fhir__valid_integer_text(v->u.num.text, min, INT32_MAX))
            issue(c, "value", "invalid %s %s (must be a whole number from %lld to %ld)", tn,
                  clip(v->u.num.text, v->u.num.len, buf, sizeof buf), (long long)min, (long)INT32_MAX);
        return;
    }
    case P_DECIMAL:
        if (v->type != JSON_NUMBER) issue(c, "structure", "expected a JSON number for type 'decimal'");
        return;
    default:
        break;
    }
    if (v->type != JSON_STRING) {
        issue(c, "structure", "expected a JSON string for type '%s'", tn);
        return;
    }
    const char *s = v->u.str.s;
    size_t len = v->u.str.len;
    if (len == 0) {
        issue(c, "value", "empty string (a %s must have a value; leave the element out instead)", tn);
        return;
    }
    if (!fhir__valid_string(s, len)) { /* also rejects NUL, so s is a C string from here on */
        issue(c, "value", "invalid %s: control characters are not allowed", tn);
        return;
    }
    bool ok = true;
    const char *what = tn;
    switch (pk) {
    case P_BASE64:
        ok = fhir__valid_base64(s, len), what = "base64Binary (base64 text)";
        break;
    case P_CODE:
        ok = fhir__valid_code(s, len), what = "code (no leading, trailing or repeated whitespace)";
        if (ok && e && e->n_required_codes) {
            check_required_code(c, e, s, len);
            return;
        }
        break;
    case P_URI:
    case P_URL:
    case P_CANONICAL:
        ok = fhir__valid_uri(s, len), what = pk == P_URI ? "uri (no whitespace)" : pk == P_URL ? "url (no whitespace)"
                                                                                                : "canonical (no whitespace)";
        break;
    case P_DATE:
        ok = bv_fhir_valid_date(s), what = "date (YYYY, YYYY-MM or YYYY-MM-DD)";
        break;
    case P_DATETIME:
        ok = bv_fhir_valid_datetime(s),
        what = "dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with Z or +hh:mm)";
        break;
    case P_INSTANT:
        ok = bv_fhir_valid_instant(s), what = "instant (YYYY-MM-DDThh:mm:ss[.fff] with Z or +hh:mm)";
        break;
    case P_TIME:
        ok = bv_fhir_valid_time(s), what = "time (hh:mm:ss[.fff])";
        break;
    case P_ID:
        ok = fhir__valid_id(s, len), what = "id (1-64 of A-Z a-z 0-9 - .)";
        break;
    case P_OID:
        ok = fhir__valid_oid(s, len), what = "oid (urn:oid:1.2.3)";
        break;
    case P_UUID:
        ok = fhir__valid_uuid(s, len), what = "uuid (urn:uuid: + lower-case UUID)";
        break;
    case P_XHTML: {
        char why[160];
        if (!fhir__xhtml_check(s, len, why, sizeof why)) issue(c, "invariant", "narrative XHTML rejected: %s", why);
        return;
    }
    default: /* string, markdown: the common checks above are the whole format */
        break;
    }
    if (!ok) issue(c, "value", "invalid %s '%s'", what, clip(s, len, buf, sizeof buf));
}

/* The _x sibling of a primitive: an object with id and extension only. */
static void check_primitive_ext(vctx *c, const fhir_type *t, const json_value *x)
{
    if (x->type != JSON_OBJECT) {
        issue(c, "structure", "the '_' sibling of a primitive must be an object with id and/or extension");
        return;
    }
    if (x->u.obj.count == 0) {
        issue(c, "structure", "empty object (an element must have a value or children)");
        return;
    }
    scope s;
    if (scope_of_type(t, &s)) validate_members(c, x, &s, false);
}

static bool is_null_or_absent(const json_value *v) { return !v || v->type == JSON_NULL; }

/* A primitive element: its value member val and/or its _ sibling ext (either may be NULL). The
 * path already names the element. */
static void validate_primitive(vctx *c, const fhir_element *e, const fhir_type *t, const json_value *val,
                               const json_value *ext)
{
    if (e->max > 1) {
        if (val && val->type != JSON_ARRAY) {
            issue(c, "structure", "must be a JSON array (the element repeats)");
            val = NULL;
        }
        if (ext && ext->type != JSON_ARRAY) {
            issue(c, "structure", "the '_' sibling must be a JSON array (the element repeats)");
            ext = NULL;
        }
        size_t nv = val ? val->u.arr.count : 0, ne = ext ? ext->u.arr.count : 0;
        if ((val && nv == 0) || (ext && ne == 0)) issue(c, "structure", "empty array (leave the element out instead)");
        if (val && ext && nv != ne)
            issue(c, "structure", "the value array and its '_' sibling array differ in length (%zu, %zu)", nv, ne);
        size_t n = nv > ne ? nv : ne;
        for (size_t i = 0; i < n && !c->stop; i++) {
            const json_value *vi = i < nv ? val->u.arr.items[i] : NULL;
            const json_value *xi = i < ne ? ext->u.arr.items[i] : NULL;
            size_t old = path_push_index(c, i);
            if (is_null_or_absent(vi) && is_null_or_absent(xi)) {
                if ((vi || xi) && !(val && ext && nv != ne)) issue(c, "structure", "null without an aligned '_' extension");
            } else {
                if (!is_null_or_absent(vi)) check_primitive_value(c, e, t, vi);
                if (!is_null_or_absent(xi)) check_primitive_ext(c, t, xi);
            }
            path_pop(c, old);
        }
        return;
    }
    if (val) {
        if (val->type == JSON_ARRAY) issue(c, "structure", "must not be an array (max cardinality 1)");
        else if (val->type == JSON_NULL) issue(c, "structure", "null is not allowed (leave the element out instead)");
        else check_primitive_value(c, e, t, val);
    }
    if (ext) {
        if (ext->type == JSON_ARRAY) issue(c, "structure", "the '_' sibling must not be an array (max cardinality 1)");
        else if (ext->type == JSON_NULL) issue(c, "structure", "null is not allowed in the '_' sibling");
        else check_primitive_ext(c, t, ext);
    }
}

/* ---- complex values ---- */

static void check_nhs_identifier(vctx *c, const json_value *ident)
{
    if (!bv_streq(json_get_str(ident, "system"), NHS_NUMBER_SYSTEM)) return;
    const json_value *v = json_get(ident, "value");
    if (!v || v->type != JSON_STRING) return; /* absent or wrong type: reported elsewhere if wrong */
    if (strlen(v->u.str.s) == v->u.str.len && bv_nhs_number_valid(v->u.str.s)) return;
    size_t old = path_push(c, "value");
    char buf[80];
    issue(c, "business-rule", "invalid NHS number '%s' (10 digits with a valid Modulus 11 check digit)",
          clip(v->u.str.s, v->u.str.len, buf, sizeof buf));
    path_pop(c, old);
}

static void check_modifier_extension(vctx *c, const json_value *item)
{
    const char *url = json_get_str(item, "url");
    char buf[80];
    issue(c, "not-supported", "unknown modifierExtension %s (this server understands no modifier extensions)",
          url ? clip(url, strlen(url), buf, sizeof buf) : "(no url)");
}

/* One object value of a complex element (path names it, with its index if any). */
static void validate_complex_item(vctx *c, const fhir_element *e, const fhir_type *t, const json_value *item)
{
    if (item->type == JSON_NULL) {
        issue(c, "structure", "null is not allowed");
        return;
    }
    if (item->type != JSON_OBJECT) {
        issue(c, "structure", "expected a JSON object for type '%s'", t ? t->name : "Element");
        return;
    }
    if (e->is_modifier && strcmp(e->name, "modifierExtension") == 0) check_modifier_extension(c, item);
    if (t && t->kind == FHIR_KIND_RESOURCE) {
        validate_resource(c, item, NULL, strcmp(e->name, "contained") == 0);
        return;
    }
    if (item->u.obj.count == 0) {
        issue(c, "structure", "empty object (an element must have a value or children)");
        return;
    }
    scope s;
    bool ok = has_inline_children(e) ? scope_of_inline(e, &s) : scope_of_type(t, &s);
    if (!ok) return;
    validate_members(c, item, &s, false);
    if (c->check_nhs && e == patient_identifier) check_nhs_identifier(c, item);
}

static void validate_complex(vctx *c, const fhir_element *e, const fhir_type *t, const json_value *v)
{
    if (e->max > 1) {
        if (v->type != JSON_ARRAY) {
            issue(c, "structure", "must be a JSON array (the element repeats)");
            return;
        }
        if (v->u.arr.count == 0) issue(c, "structure", "empty array (leave the element out instead)");
        for (size_t i = 0; i < v->u.arr.count && !c->stop; i++) {
            size_t old = path_push_index(c, i);
            validate_complex_item(c, e, t, v->u.arr.items[i]);
            path_pop(c, old);
        }
        return;
    }
    if (v->type == JSON_ARRAY) {
        issue(c, "structure", "must not be an array (max cardinality 1)");
        return;
    }
    validate_complex_item(c, e, t, v);
}

/* ---- objects ---- */

/* Path segment for an element: "birthDate", or "value.ofType(Quantity)" for a choice. */
static const char *segment(const fhir_element *e, const char *choice_type, char *buf, size_t cap)
{
    if (!choice_type) return e->name;
    snprintf(buf, cap, "%s.ofType(%s)", e->name, choice_type);
    return buf;
}

/* An unknown member: say so, with a better message for a wrong choice-type suffix or an '_'
 * sibling of a non-primitive element. */
static void report_unknown(vctx *c, const scope *s, const char *key, size_t key_len, bool non_primitive)
{
    char kb[80];
    clip(key, key_len, kb, sizeof kb);
    size_t old = path_push(c, kb);
    if (non_primitive) {
        issue(c, "structure", "unknown element '%s' ('_' siblings exist only for primitive elements)", kb);
        path_pop(c, old);
        return;
    }
    const char *name = key[0] == '_' ? key + 1 : key;
    for (size_t i = 0; i < s->n; i++) {
        const fhir_element *e = &s->first[i];
        size_t n = strlen(e->name);
        if (!e->choice || strncmp(name, e->name, n) != 0 || name[n] < 'A' || name[n] > 'Z') continue;
        char allowed[200];
        size_t k = 0;
        allowed[0] = '\0';
        for (unsigned j = 0; j < e->n_types; j++) {
            size_t l = strlen(e->types[j]);
            if (k + l + 8 >= sizeof allowed) {
                memcpy(allowed + k, ", ...", 6);
                break;
            }
            if (k) {
                memcpy(allowed + k, ", ", 2);
                k += 2;
            }
            memcpy(allowed + k, e->types[j], l + 1);
            k += l;
        }
        char sb[80]; /* the suffix is peer text too */
        clip(name + n, key_len - (size_t)(name - key) - n, sb, sizeof sb);
        issue(c, "structure", "unknown element '%s': '%s' is not an allowed type for %s[x] (allowed: %s)", kb, sb,
              e->name, allowed);
        path_pop(c, old);
        return;
    }
    issue(c, "structure", "unknown element '%s'", kb);
    path_pop(c, old);
}

static void validate_members(vctx *c, const json_value *obj, const scope *s, bool is_resource)
{
    if (c->stop) return;
    if (++c->depth > VALIDATE_MAX_DEPTH) {
        issue(c, "structure", "nested too deeply");
        c->depth--;
        return;
    }
    uint8_t seen_local[SEEN_LOCAL], chosen_local[SEEN_LOCAL];
    uint8_t *seen = seen_local, *chosen = chosen_local;
    if (s->n > SEEN_LOCAL) {
        seen = bv_arena_calloc(c->oo->arena, s->n, 1);
        chosen = bv_arena_calloc(c->oo->arena, s->n, 1);
    } else {
        memset(seen, 0, s->n);
        memset(chosen, 0, s->n);
    }
    bool any_underscore = false;
    for (size_t m = 0; m < obj->u.obj.count; m++)
        if (obj->u.obj.members[m].key[0] == '_') any_underscore = true;
    for (size_t m = 0; m < obj->u.obj.count && !c->stop; m++) {
        const json_member *mem = &obj->u.obj.members[m];
        const char *key = mem->key;
        if (is_resource && key[0] == 'r' && strcmp(key, "resourceType") == 0) continue;
        bool under = key[0] == '_';
        const char *name = under ? key + 1 : key;
        const char *ctype = NULL;
        /* A key with a NUL inside never names an element. */
        const fhir_element *e = memchr(key, '\0', mem->key_len) ? NULL : scope_find(s, name, &ctype);
        const fhir_type *t = NULL;
        if (e) t = e->choice ? fhir_type_find(ctype) : elem_type[e - fhir_elements];
        bool prim = prim_of(t) != P_NONE;
        if (!e || (under && !prim)) {
            report_unknown(c, s, key, mem->key_len, e != NULL);
            continue;
        }
        size_t idx = (size_t)(e - s->first);
        if (idx >= s->n) continue; /* cannot happen: lookups return elements of the scope */
        char segbuf[96];
        const char *seg = segment(e, ctype, segbuf, sizeof segbuf);
        if (e->choice) {
            uint8_t ci = 0;
            for (unsigned k = 0; k < e->n_types; k++)
                if (strcmp(e->types[k], ctype) == 0) {
                    ci = (uint8_t)(k + 1);
                    break;
                }
            if (chosen[idx] && chosen[idx] != ci) {
                size_t old = path_push(c, seg);
                issue(c, "structure", "only one type of %s[x] is allowed ('%s' conflicts with an earlier variant)",
                      e->name, key);
                path_pop(c, old);
                continue;
            }
            chosen[idx] = ci;
        }
        seen[idx] = 1;
        if (e->max == 0) {
            size_t old = path_push(c, seg);
            issue(c, "structure", "element '%s' is not allowed here", name);
            path_pop(c, old);
            continue;
        }
        size_t old = path_push(c, seg);
        if (prim) {
            char ukey[128];
            const json_value *val = NULL, *ext = NULL;
            if (under) {
                /* Handled together with the value member when that exists. */
                if (!json_get(obj, name)) validate_primitive(c, e, t, NULL, mem->value);
            } else {
                val = mem->value;
                if (any_underscore && mem->key_len + 2 <= sizeof ukey) {
                    ukey[0] = '_';
                    memcpy(ukey + 1, key, mem->key_len + 1);
                    ext = json_get(obj, ukey);
                }
                validate_primitive(c, e, t, val, ext);
            }
        } else {
            validate_complex(c, e, t, mem->value);
        }
        path_pop(c, old);
    }
    for (size_t i = 0; i < s->n && !c->stop; i++) {
        const fhir_element *e = &s->first[i];
        if (e->min == 0 || seen[i]) continue;
        char segbuf[96];
        if (e->choice) snprintf(segbuf, sizeof segbuf, "%s[x]", e->name);
        size_t old = path_push(c, e->choice ? segbuf : e->name);
        issue(c, "required", "missing required element '%s%s'", e->name, e->choice ? "[x]" : "");
        path_pop(c, old);
    }
    c->depth--;
}

/* ---- resources ---- */

static void validate_resource(vctx *c, const json_value *res, const char *expected, bool contained)
{
    if (c->stop) return;
    if (!res || res->type != JSON_OBJECT) {
        issue(c, "structure", "a resource must be a JSON object");
        return;
    }
    const json_value *rtv = json_get(res, "resourceType");
    size_t old = path_push(c, "resourceType");
    if (!rtv) {
        issue(c, "required", "resourceType is missing");
        path_pop(c, old);
        return;
    }
    char buf[80];
    if (rtv->type != JSON_STRING) {
        issue(c, "structure", "resourceType must be a string");
        path_pop(c, old);
        return;
    }
    const char *rt = rtv->u.str.s;
    if (strlen(rt) != rtv->u.str.len || !fhir_is_resource_type(rt)) {
        issue(c, "not-supported", "unknown resource type '%s'", clip(rt, rtv->u.str.len, buf, sizeof buf));
        path_pop(c, old);
        return;
    }
    if (expected && strcmp(rt, expected) != 0) {
        char eb[80];
        issue(c, "invalid", "resourceType '%s' does not match the expected type '%s'", rt,
              clip(expected, strlen(expected), eb, sizeof eb));
        path_pop(c, old);
        return;
    }
    path_pop(c, old);
    /* The top-level resource roots the path at its type name; nested ones continue the path
     * ("Bundle.entry[2].resource.subject"). */
    size_t root = c->plen;
    if (c->plen == 0) path_push(c, rt);
    if (contained) {
        const json_value *nested = json_get(res, "contained");
        if (nested) {
            size_t o2 = path_push(c, "contained");
            issue(c, "invariant", "a contained resource must not contain other resources (dom-2)");
            path_pop(c, o2);
        }
        const json_value *meta = json_get(res, "meta");
        if (json_get(meta, "versionId") || json_get(meta, "lastUpdated")) {
            size_t o2 = path_push(c, "meta");
            issue(c, "invariant", "a contained resource must not have meta.versionId or meta.lastUpdated (dom-4)");
            path_pop(c, o2);
        }
    }
    scope s;
    if (scope_of_type(fhir_type_find(rt), &s)) validate_members(c, res, &s, true);
    path_pop(c, root);
}

size_t bv_fhir_validate(const json_value *resource, const char *expected_type, const bv_validate_opts *opt,
                        bv_outcome *oo)
{
    pthread_once(&cache_once, cache_init);
    vctx *c = bv_arena_alloc(oo->arena, sizeof *c);
    c->oo = oo;
    c->check_nhs = opt && opt->check_nhs_number;
    c->errors = 0;
    c->stop = false;
    c->depth = 0;
    c->plen = 0;
    c->path[0] = '\0';
    validate_resource(c, resource, expected_type, false);
    return c->errors;
}
