/* Lookups over the generated FHIR definition tables (include/bevan/fhir_defs.h).
 * Hand-written (not generated); the tables next to it come from tools/gen_fhir_defs.py. */
#include "bevan/fhir_defs.h"

#include <string.h>

/* Index of the first entry in a sorted string table that is >= key (lower bound). */
#define LOWER_BOUND(arr, count, field_expr, key, out)                                      \
    do {                                                                                  \
        size_t lo_ = 0, hi_ = (count);                                                    \
        while (lo_ < hi_) {                                                               \
            size_t mid_ = lo_ + (hi_ - lo_) / 2;                                          \
            if (strcmp(field_expr(arr, mid_), (key)) < 0) lo_ = mid_ + 1;                 \
            else hi_ = mid_;                                                              \
        }                                                                                 \
        (out) = lo_;                                                                      \
    } while (0)

#define TYPE_NAME(a, i) ((a)[i].name)
#define PLAIN(a, i) ((a)[i])
#define COMP_RES(a, i) ((a)[i].resource)

const fhir_type *fhir_type_find(const char *name)
{
    if (!name) return NULL;
    size_t i;
    LOWER_BOUND(fhir_types, fhir_types_count, TYPE_NAME, name, i);
    if (i < fhir_types_count && strcmp(fhir_types[i].name, name) == 0) return &fhir_types[i];
    return NULL;
}

bool fhir_is_resource_type(const char *name)
{
    if (!name) return false;
    size_t i;
    LOWER_BOUND(fhir_resource_names, fhir_resource_names_count, PLAIN, name, i);
    return i < fhir_resource_names_count && strcmp(fhir_resource_names[i], name) == 0;
}

#define VALUESET(a, i) ((a)[i].valueset)

const char *fhir_binding_system_of(const char *valueset)
{
    if (!valueset) return NULL;
    size_t i;
    LOWER_BOUND(fhir_binding_systems, fhir_binding_systems_count, VALUESET, valueset, i);
    if (i < fhir_binding_systems_count && strcmp(fhir_binding_systems[i].valueset, valueset) == 0)
        return fhir_binding_systems[i].system;
    return NULL;
}

/* Does json_name name element e? For a choice element, *type_out gets the matching type code. */
static bool element_matches(const fhir_element *e, const char *json_name, const char **type_out)
{
    if (!e->choice) {
        if (strcmp(e->name, json_name) != 0) return false;
        *type_out = NULL;
        return true;
    }
    size_t n = strlen(e->name);
    if (strncmp(e->name, json_name, n) != 0) return false;
    const char *suffix = json_name + n;   /* "Quantity", "String", "DateTime" */
    if (suffix[0] < 'A' || suffix[0] > 'Z') return false;
    for (unsigned k = 0; k < e->n_types; k++) {
        const char *code = e->types[k];
        char first = code[0];
        if (first >= 'a' && first <= 'z') first = (char)(first - 'a' + 'A');
        if (first == suffix[0] && strcmp(code + 1, suffix + 1) == 0) {
            *type_out = code;
            return true;
        }
    }
    return false;
}

static const fhir_element *find_in(int32_t first, uint16_t n, const char *json_name,
                                   const char **choice_type_out)
{
    if (!json_name || first < 0) return NULL;
    const char *dummy;
    const char **out = choice_type_out ? choice_type_out : &dummy;
    for (uint16_t k = 0; k < n; k++) {
        const fhir_element *e = &fhir_elements[first + k];
        if (element_matches(e, json_name, out)) return e;
    }
    return NULL;
}

const fhir_element *fhir_type_element(const fhir_type *t, const char *json_name,
                                      const char **choice_type_out)
{
    if (choice_type_out) *choice_type_out = NULL;
    if (!t) return NULL;
    return find_in(t->first_element, t->n_elements, json_name, choice_type_out);
}

const fhir_element *fhir_element_child(const fhir_element *e, const char *json_name,
                                       const char **choice_type_out)
{
    if (choice_type_out) *choice_type_out = NULL;
    if (!e) return NULL;
    /* contentReference targets never have a content_ref themselves, but don't trust that blindly. */
    for (int hops = 0; e->content_ref >= 0 && hops < 8; hops++) e = &fhir_elements[e->content_ref];
    return find_in(e->first_child, e->n_children, json_name, choice_type_out);
}

/* Index range [*lo, *hi) of the parameters declared for exactly this resource type. */
static void sp_range(const char *resource, size_t *lo, size_t *hi)
{
    size_t a = 0, b = fhir_search_params_count;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (strcmp(fhir_search_params[m].resource, resource) < 0) a = m + 1;
        else b = m;
    }
    *lo = a;
    b = fhir_search_params_count;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (strcmp(fhir_search_params[m].resource, resource) <= 0) a = m + 1;
        else b = m;
    }
    *hi = a;
}

static const fhir_search_param *sp_exact(const char *resource, const char *code)
{
    size_t lo, hi;
    sp_range(resource, &lo, &hi);
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        int c = strcmp(fhir_search_params[m].code, code);
        if (c == 0) return &fhir_search_params[m];
        if (c < 0) lo = m + 1;
        else hi = m;
    }
    return NULL;
}

const fhir_search_param *fhir_search_param_find(const char *resource, const char *code)
{
    if (!resource || !code) return NULL;
    const fhir_search_param *p = sp_exact(resource, code);
    if (p) return p;
    /* Inherited parameters: walk the base chain (Patient -> DomainResource -> Resource). An
     * unknown type gets nothing inherited. */
    const fhir_type *t = fhir_type_find(resource);
    for (int depth = 0; t && t->base && depth < 8; depth++) {
        p = sp_exact(t->base, code);
        if (p) return p;
        t = fhir_type_find(t->base);
    }
    return NULL;
}

const fhir_search_param *fhir_search_params_of(const char *resource, size_t *n_out)
{
    size_t lo = 0, hi = 0;
    if (resource) sp_range(resource, &lo, &hi);
    if (n_out) *n_out = hi - lo;
    return hi > lo ? &fhir_search_params[lo] : NULL;
}

const fhir_compartment_entry *fhir_patient_compartment_find(const char *resource)
{
    if (!resource) return NULL;
    size_t i;
    LOWER_BOUND(fhir_patient_compartment, fhir_patient_compartment_count, COMP_RES, resource, i);
    if (i < fhir_patient_compartment_count && strcmp(fhir_patient_compartment[i].resource, resource) == 0)
        return &fhir_patient_compartment[i];
    return NULL;
}

bool fhir_element_code_allowed(const fhir_element *e, const char *code)
{
    if (!e || !e->required_codes || e->n_required_codes == 0) return true;
    if (!code) return false;
    size_t i;
    LOWER_BOUND(e->required_codes, (size_t)e->n_required_codes, PLAIN, code, i);
    return i < e->n_required_codes && strcmp(e->required_codes[i], code) == 0;
}
