/* Search parameters that share their index rows: two parameters of one resource type whose
 * expressions select exactly the same elements on that type have identical rows, so only the
 * first (in the table's order) stores them and both are searched through it. In R4: Patient,
 * Person, Practitioner and RelatedPerson `phonetic` = `name` ("Patient.name | Person.name | ..."
 * on a Patient is "Patient.name"; Bevan matches phonetic like name), CodeSystem `url` = `system`,
 * CapabilityStatement `version` = `fhirversion`. References (whose targets can differ) and
 * composites keep their own rows. Derived at start from the generated definitions. */
#include "bevan/fhir_defs.h"
#include "bevan/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static bool kind_shares(fhir_sp_type t)
{
    return t == FHIR_SP_STRING || t == FHIR_SP_TOKEN || t == FHIR_SP_URI || t == FHIR_SP_DATE || t == FHIR_SP_NUMBER ||
           t == FHIR_SP_QUANTITY;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The union terms of expr that apply to resource, sorted and joined by '\n' (malloc'd), or NULL
 * when the expression cannot be split safely (unbalanced parentheses or quotes) or selects nothing
 * of the type. */
static char *terms_key(const char *resource, const char *expr)
{
    size_t len = strlen(expr), rlen = strlen(resource), n = 0;
    char *copy = bv_malloc(len + 1);
    memcpy(copy, expr, len + 1);
    const char **terms = bv_malloc((len / 2 + 2) * sizeof *terms);
    int depth = 0;
    bool quoted = false;
    char *start = copy;
    for (char *p = copy;; p++) {
        if (*p == '\'' && (p == copy || p[-1] != '\\')) quoted = !quoted;
        else if (!quoted && *p == '(') depth++;
        else if (!quoted && *p == ')' && --depth < 0) break;
        if (*p == '\0' || (!quoted && depth == 0 && *p == '|')) {
            bool end = *p == '\0';
            *p = '\0';
            char *t = start, *e = p;
            while (*t == ' ') t++;
            while (e > t && e[-1] == ' ') *--e = '\0';
            const char *core = t;
            while (*core == '(') core++;
            if (strncmp(core, resource, rlen) == 0 && (core[rlen] == '.' || core[rlen] == '\0' || core[rlen] == ' ' ||
                                                       core[rlen] == ')'))
                terms[n++] = t;
            if (end) break;
            start = p + 1;
        }
    }
    char *key = NULL;
    if (depth == 0 && !quoted && n > 0) {
        qsort(terms, n, sizeof *terms, cmp_str);
        size_t total = 0;
        for (size_t i = 0; i < n; i++) total += strlen(terms[i]) + 1;
        key = bv_malloc(total + 1);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(terms[i]);
            memcpy(key + o, terms[i], l);
            o += l;
            key[o++] = '\n';
        }
        key[o] = '\0';
    }
    free(terms);
    free(copy);
    return key;
}

static size_t *stored_index; /* per fhir_search_params entry: the index of the entry storing its rows */

static void build_stored(void)
{
    size_t n = fhir_search_params_count;
    stored_index = bv_malloc((n ? n : 1) * sizeof *stored_index);
    char **keys = bv_calloc(n ? n : 1, sizeof *keys);
    for (size_t i = 0; i < n; i++) {
        const fhir_search_param *sp = &fhir_search_params[i];
        stored_index[i] = i;
        if (!sp->expression || !kind_shares(sp->type) || !fhir_is_resource_type(sp->resource)) continue;
        keys[i] = terms_key(sp->resource, sp->expression);
        if (!keys[i]) continue;
        /* the table is sorted by resource: look back over this resource's entries */
        for (size_t j = i; j-- > 0 && strcmp(fhir_search_params[j].resource, sp->resource) == 0;) {
            if (keys[j] && fhir_search_params[j].type == sp->type && stored_index[j] == j && strcmp(keys[j], keys[i]) == 0) {
                stored_index[i] = j;
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++) free(keys[i]);
    free(keys);
}

const fhir_search_param *fhir_search_param_stored(const fhir_search_param *sp)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!sp || sp < fhir_search_params || sp >= fhir_search_params + fhir_search_params_count) return sp;
    pthread_once(&once, build_stored);
    return &fhir_search_params[stored_index[sp - fhir_search_params]];
}
