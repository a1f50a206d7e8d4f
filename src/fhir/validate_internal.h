/* Private to src/fhir: primitive format checks and the narrative XHTML scanner used by
 * validate.c. Not installed; names carry the fhir__ prefix. */
#ifndef BEVAN_FHIR_VALIDATE_INTERNAL_H
#define BEVAN_FHIR_VALIDATE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* String-valued primitive formats. s[0..len) is decoded UTF-8 (may hold NUL bytes, which every
 * check rejects). Each returns true when the value matches the R4 format. */
bool fhir__valid_string(const char *s, size_t len);       /* non-empty; no controls but TAB CR LF */
bool fhir__valid_code(const char *s, size_t len);         /* [^\s]+(\s[^\s]+)* */
bool fhir__valid_id(const char *s, size_t len);           /* [A-Za-z0-9\-\.]{1,64} */
bool fhir__valid_uri(const char *s, size_t len);          /* non-empty, no whitespace or controls */
bool fhir__valid_oid(const char *s, size_t len);          /* urn:oid:[0-2](\.(0|[1-9][0-9]*))+ */
bool fhir__valid_uuid(const char *s, size_t len);         /* urn:uuid: + lower-case 8-4-4-4-12 hex */
bool fhir__valid_base64(const char *s, size_t len);       /* RFC 4648 base64, whitespace ignored */
/* JSON number text checks for integer types: -?(0|[1-9][0-9]*) within [min, max]. */
bool fhir__valid_integer_text(const char *text, int64_t min, int64_t max);

/* Narrative XHTML: a <div> root, well-formed (balanced tags, quoted attributes, XML entities
 * only), elements from the FHIR narrative whitelist, no event-handler attributes, no
 * javascript:/vbscript:/data: URLs (except data:image/... in img src), no script-like CSS.
 * On failure writes a short reason (ASCII) into why and returns false. */
bool fhir__xhtml_check(const char *s, size_t len, char *why, size_t whylen);

#endif
