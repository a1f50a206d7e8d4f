/* GET /metadata: a CapabilityStatement listing exactly what is implemented, built once. */
#include "internal.h"
#include "bevan/notify.h"

#include <string.h>

static const char *const sp_type_names[] = {"number", "date", "string", "token", "reference",
                                            "composite", "quantity", "uri", "special"};

static json_value *code_obj(bv_arena *a, const char *key, const char *code)
{
    json_value *o = json_new(a, JSON_OBJECT);
    json_set(a, o, key, json_new_string(a, code));
    return o;
}

static void add_search_param(bv_arena *a, json_value *arr, const fhir_search_param *sp)
{
    if (sp->type == FHIR_SP_SPECIAL || sp->type == FHIR_SP_COMPOSITE) return; /* not supported yet */
    json_value *o = json_new(a, JSON_OBJECT);
    json_set(a, o, "name", json_new_string(a, sp->code));
    if (sp->url) json_set(a, o, "definition", json_new_string(a, sp->url));
    json_set(a, o, "type", json_new_string(a, sp_type_names[sp->type]));
    json_push(a, arr, o);
}

int api_build_capability(bv_api *api)
{
    bv_arena *a = bv_arena_new(1 << 20);
    json_value *cs = json_new(a, JSON_OBJECT);
    json_set(a, cs, "resourceType", json_new_string(a, "CapabilityStatement"));
    json_set(a, cs, "status", json_new_string(a, "active"));
    json_set(a, cs, "date", json_new_string(a, "2026-11-22"));
    json_set(a, cs, "publisher", json_new_string(a, "Bevan"));
    json_set(a, cs, "kind", json_new_string(a, "instance"));
    json_value *sw = json_new(a, JSON_OBJECT);
    json_set(a, sw, "name", json_new_string(a, "Bevan"));
    json_set(a, sw, "version", json_new_string(a, "0.1.0"));
    json_set(a, cs, "software", sw);
    json_set(a, cs, "fhirVersion", json_new_string(a, "4.0.1"));
    json_value *fmt = json_new(a, JSON_ARRAY);
    json_push(a, fmt, json_new_string(a, "application/fhir+json"));
    json_push(a, fmt, json_new_string(a, "json"));
    json_set(a, cs, "format", fmt);
    json_value *pf = json_new(a, JSON_ARRAY);
    json_push(a, pf, json_new_string(a, "application/json-patch+json"));
    json_push(a, pf, json_new_string(a, "application/fhir+json"));
    json_set(a, cs, "patchFormat", pf);
    json_value *rests = json_new(a, JSON_ARRAY), *rest = json_new(a, JSON_OBJECT);
    json_set(a, rest, "mode", json_new_string(a, "server"));
    {
        /* R4: where the websocket channel of Subscriptions is served (a path on this server) */
        json_value *exts = json_new(a, JSON_ARRAY), *ext = json_new(a, JSON_OBJECT);
        json_set(a, ext, "url", json_new_string(a, "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"));
        json_set(a, ext, "valueUri", json_new_string(a, BV_NOTIFY_WS_PATH));
        json_push(a, exts, ext);
        json_set(a, rest, "extension", exts);
    }
    json_value *resources = json_new(a, JSON_ARRAY);
    static const char *const interactions[] = {"read", "vread", "update", "patch", "delete", "history-instance",
                                               "history-type", "create", "search-type"};
    for (size_t i = 0; i < fhir_resource_names_count; i++) {
        const char *type = fhir_resource_names[i];
        json_value *r = json_new(a, JSON_OBJECT);
        json_set(a, r, "type", json_new_string(a, type));
        json_value *ints = json_new(a, JSON_ARRAY);
        for (size_t k = 0; k < sizeof interactions / sizeof *interactions; k++)
            json_push(a, ints, code_obj(a, "code", interactions[k]));
        json_set(a, r, "interaction", ints);
        json_set(a, r, "versioning", json_new_string(a, "versioned-update"));
        json_set(a, r, "readHistory", json_new_bool(a, true));
        json_set(a, r, "updateCreate", json_new_bool(a, true));
        json_set(a, r, "conditionalCreate", json_new_bool(a, true));
        json_set(a, r, "conditionalRead", json_new_string(a, "full-support"));
        json_set(a, r, "conditionalUpdate", json_new_bool(a, true));
        json_set(a, r, "conditionalDelete", json_new_string(a, "single"));
        json_value *sps = json_new(a, JSON_ARRAY);
        size_t n;
        const fhir_search_param *own = fhir_search_params_of(type, &n);
        for (size_t k = 0; k < n; k++) add_search_param(a, sps, &own[k]);
        static const char *const common[] = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"};
        for (size_t k = 0; k < sizeof common / sizeof *common; k++) {
            const fhir_search_param *sp = fhir_search_param_find("Resource", common[k]);
            if (sp) add_search_param(a, sps, sp);
        }
        json_set(a, r, "searchParam", sps);
        json_value *ops = json_new(a, JSON_ARRAY), *op = json_new(a, JSON_OBJECT);
        json_set(a, op, "name", json_new_string(a, "validate"));
        json_set(a, op, "definition", json_new_string(a, "http://hl7.org/fhir/OperationDefinition/Resource-validate"));
        json_push(a, ops, op);
        json_set(a, r, "operation", ops);
        json_push(a, resources, r);
    }
    json_set(a, rest, "resource", resources);
    json_value *sys = json_new(a, JSON_ARRAY);
    static const char *const sys_ints[] = {"transaction", "batch", "search-system", "history-system"};
    for (size_t k = 0; k < 4; k++) json_push(a, sys, code_obj(a, "code", sys_ints[k]));
    json_set(a, rest, "interaction", sys);
    json_push(a, rests, rest);
    json_set(a, cs, "rest", rests);
    bv_buf b;
    bv_buf_init(&b, 0);
    json_write(&b, cs, false);
    api->capability = bv_buf_steal(&b, &api->capability_len);
    bv_arena_free(a);
    return 0;
}

void api_capability(api_ctx *c)
{
    api_send_raw(c, 200, c->api->capability, c->api->capability_len);
}
