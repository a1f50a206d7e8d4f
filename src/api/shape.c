/* _summary and _elements: reshape a resource, marking it SUBSETTED as the specification asks. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static bool is_mandatory(const char *k)
{
    return strcmp(k, "resourceType") == 0 || strcmp(k, "id") == 0 || strcmp(k, "meta") == 0;
}

static void mark_subsetted(bv_arena *a, json_value *res)
{
    json_value *meta = json_get(res, "meta");
    if (!json_is(meta, JSON_OBJECT)) {
        meta = json_new(a, JSON_OBJECT);
        json_set_at(a, res, 2, "meta", meta);
    }
    json_value *tags = json_get(meta, "tag");
    if (!json_is(tags, JSON_ARRAY)) { tags = json_new(a, JSON_ARRAY); json_set(a, meta, "tag", tags); }
    json_value *t = json_new(a, JSON_OBJECT);
    json_set(a, t, "system", json_new_string(a, "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"));
    json_set(a, t, "code", json_new_string(a, "SUBSETTED"));
    json_set(a, t, "display", json_new_string(a, "As requested, resource is not fully detailed."));
    json_push(a, tags, t);
}

/* Base element name of a JSON key: "_birthDate" -> "birthDate". */
static const char *base_key(const char *k) { return k[0] == '_' ? k + 1 : k; }

json_value *api_shape_resource(bv_arena *a, const json_value *src, const char *summary, const char *elements,
                               char *err, size_t errlen)
{
    json_value *res = json_clone(a, src);
    const char *type = json_get_str(res, "resourceType");
    const fhir_type *ft = type ? fhir_type_find(type) : NULL;
    if (summary && strcmp(summary, "false") != 0) {
        if (strcmp(summary, "true") != 0 && strcmp(summary, "text") != 0 && strcmp(summary, "data") != 0 &&
            strcmp(summary, "count") != 0) {
            snprintf(err, errlen, "_summary must be true, false, text, data or count");
            return NULL;
        }
        for (size_t i = res->u.obj.count; i-- > 0;) {
            const char *k = res->u.obj.members[i].key;
            if (is_mandatory(k)) continue;
            bool keep;
            if (strcmp(summary, "text") == 0) keep = strcmp(k, "text") == 0;
            else if (strcmp(summary, "data") == 0) keep = strcmp(k, "text") != 0;
            else {
                const char *ct;
                const fhir_element *e = ft ? fhir_type_element(ft, base_key(k), &ct) : NULL;
                keep = e && e->is_summary;
            }
            if (!keep) json_remove(res, k);
        }
        mark_subsetted(a, res);
        return res;
    }
    if (elements) {
        /* keep listed top-level elements (comma separated) plus the mandatory ones */
        char *list = bv_arena_strdup(a, elements);
        for (size_t i = res->u.obj.count; i-- > 0;) {
            const char *k = base_key(res->u.obj.members[i].key);
            if (is_mandatory(k)) continue;
            bool keep = false;
            const char *p = list;
            size_t kl = strlen(k);
            while (*p) {
                size_t n = strcspn(p, ",");
                const char *item = p;
                while (n && *item == ' ') { item++; n--; }
                const char *dot = memchr(item, '.', n);
                size_t nn = dot ? (size_t)(dot - item) : n;
                if (nn == kl && memcmp(item, k, kl) == 0) keep = true;
                p += strcspn(p, ",");
                if (*p == ',') p++;
            }
            if (!keep) json_remove(res, res->u.obj.members[i].key);
        }
        mark_subsetted(a, res);
    }
    return res;
}
