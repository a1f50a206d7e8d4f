/* Bevan JSON: a strict RFC 8259 parser into an arena DOM, and a serialiser.
 *
 * Why our own (see docs/json.md): json-c keeps decimal text but accepts duplicate keys,
 * NaN and lone surrogates; jansson is strict but loses decimals; cJSON is neither. A strict
 * pre-scan for json-c is already most of a parser, so Bevan owns one parser that is strict,
 * keeps every number's source text (1.50, 1E-17 and 10000000000000000 come back byte-identical),
 * allocates from the request arena and is fuzzed (fuzz/fuzz_json.c).
 *
 * Ownership: every node, key and string belongs to the arena passed in; nothing is freed singly. */
#ifndef BEVAN_JSON_H
#define BEVAN_JSON_H

#include "bevan/core.h"

typedef enum {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json_value json_value;

typedef struct {
    const char *key;      /* decoded UTF-8, NUL-terminated */
    size_t key_len;
    json_value *value;
} json_member;

struct json_value {
    json_type type;
    union {
        struct { const char *text; size_t len; } num;   /* verbatim source text, NUL-terminated */
        struct { const char *s; size_t len; } str;      /* decoded UTF-8, NUL-terminated (may hold \u0000) */
        struct { json_value **items; size_t count, cap; } arr;
        struct { json_member *members; size_t count, cap; } obj; /* in document order */
    } u;
};

typedef struct {
    size_t max_bytes;      /* 0 = BV_MAX_BODY_BYTES */
    size_t max_depth;      /* 0 = BV_MAX_JSON_DEPTH */
    size_t max_string;     /* 0 = BV_MAX_JSON_STRING */
} json_limits;

typedef struct {
    size_t offset;         /* byte offset of the problem */
    size_t line, column;   /* 1-based */
    char message[160];     /* e.g. "duplicate key \"id\"" */
    bool too_big;          /* a size cap was hit (caller answers 413 rather than 400) */
} json_error;

/* Parse text[0..len). Strict: one value only (surrounding whitespace allowed), no duplicate keys,
 * no NaN/Infinity, no leading zeros, no single quotes, no comments, valid UTF-8 only, no lone
 * surrogates, no control characters in strings. Returns BV_OK, BV_EINVAL or BV_ETOOBIG. */
int json_parse(bv_arena *a, const char *text, size_t len, const json_limits *lim,
               json_value **out, json_error *err);

/* Serialise. Numbers are written as their stored text. pretty: 2-space indent.
 * Non-ASCII is written as UTF-8; '/' is not escaped; control characters as \uXXXX. */
int json_write(bv_buf *out, const json_value *v, bool pretty);
/* Write a JSON string literal (with quotes) for s[0..len). */
int json_write_string(bv_buf *out, const char *s, size_t len);

/* ---- Accessors (NULL-safe: a NULL or wrong-typed v gives NULL / 0 / false) ---- */
json_value *json_get(const json_value *obj, const char *key);           /* object member */
json_value *json_at(const json_value *arr, size_t i);                   /* array item */
size_t json_count(const json_value *v);                                 /* array items or object members */
const char *json_str(const json_value *v);                              /* string value or NULL */
const char *json_get_str(const json_value *obj, const char *key);       /* json_str(json_get(...)) */
bool json_is(const json_value *v, json_type t);
/* Structural equality: same types, members compared as unordered sets, numbers compared by value
 * (1.0 == 1.00 == 1E0). */
bool json_equal(const json_value *a, const json_value *b);
/* Deep copy into arena a. */
json_value *json_clone(bv_arena *a, const json_value *v);

/* ---- Builders (all allocate in the arena) ---- */
json_value *json_new(bv_arena *a, json_type t);
json_value *json_new_string(bv_arena *a, const char *s);            /* copies s */
json_value *json_new_stringn(bv_arena *a, const char *s, size_t n); /* copies s[0..n) */
json_value *json_new_number_text(bv_arena *a, const char *text);    /* text must be a valid JSON number */
json_value *json_new_int(bv_arena *a, int64_t n);
json_value *json_new_bool(bv_arena *a, bool b);
/* Set (replace if present, else append) an object member; key copied. */
void json_set(bv_arena *a, json_value *obj, const char *key, json_value *v);
/* Insert a member at position pos (0 = first), replacing any member with the same key. */
void json_set_at(bv_arena *a, json_value *obj, size_t pos, const char *key, json_value *v);
bool json_remove(json_value *obj, const char *key);                 /* true if it was there */
void json_push(bv_arena *a, json_value *arr, json_value *v);
/* Remove array item i (shifting the rest). */
bool json_array_remove(json_value *arr, size_t i);
/* Insert array item at i (0..count). */
bool json_array_insert(bv_arena *a, json_value *arr, size_t i, json_value *v);

/* Number helpers */
bool json_number_to_double(const json_value *v, double *out);
bool json_number_to_i64(const json_value *v, int64_t *out);    /* false unless an exact integer in range */

/* Validate that s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool json_utf8_valid(const char *s, size_t len);

#endif
