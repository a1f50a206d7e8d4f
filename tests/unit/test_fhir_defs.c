/* Unit tests for the generated FHIR R4 definition tables and their lookups (bevan/fhir_defs.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "bevan/fhir_defs.h"

static bool has_str(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return true;
    return false;
}

static void test_resource_names(void **state)
{
    (void)state;
    /* R4 4.0.1 defines 148 resource-types codes: 146 concrete + Resource, DomainResource. */
    assert_int_equal(fhir_resource_names_count, 146);
    for (size_t i = 1; i < fhir_resource_names_count; i++)
        assert_true(strcmp(fhir_resource_names[i - 1], fhir_resource_names[i]) < 0);
    assert_true(fhir_is_resource_type("Patient"));
    assert_true(fhir_is_resource_type("Account"));
    assert_true(fhir_is_resource_type("VisionPrescription"));
    assert_true(fhir_is_resource_type("Bundle"));
    assert_true(fhir_is_resource_type("Parameters"));
    assert_false(fhir_is_resource_type("Resource"));
    assert_false(fhir_is_resource_type("DomainResource"));
    assert_false(fhir_is_resource_type("HumanName"));
    assert_false(fhir_is_resource_type("patient"));
    assert_false(fhir_is_resource_type(""));
    assert_false(fhir_is_resource_type(NULL));
}

static void test_types(void **state)
{
    (void)state;
    for (size_t i = 1; i < fhir_types_count; i++)
        assert_true(strcmp(fhir_types[i - 1].name, fhir_types[i].name) < 0);

    const fhir_type *p = fhir_type_find("Patient");
    assert_non_null(p);
    assert_int_equal(p->kind, FHIR_KIND_RESOURCE);
    assert_false(p->abstract);
    assert_string_equal(p->base, "DomainResource");
    assert_null(p->regex);

    const fhir_type *dr = fhir_type_find("DomainResource");
    assert_non_null(dr);
    assert_true(dr->abstract);
    assert_string_equal(dr->base, "Resource");
    const fhir_type *r = fhir_type_find("Resource");
    assert_non_null(r);
    assert_true(r->abstract);
    assert_null(r->base);

    const fhir_type *hn = fhir_type_find("HumanName");
    assert_non_null(hn);
    assert_int_equal(hn->kind, FHIR_KIND_COMPLEX);
    assert_string_equal(hn->base, "Element");

    const fhir_type *d = fhir_type_find("date");
    assert_non_null(d);
    assert_int_equal(d->kind, FHIR_KIND_PRIMITIVE);
    assert_non_null(d->regex);
    assert_non_null(strstr(d->regex, "[0-9]"));
    const fhir_type *b = fhir_type_find("boolean");
    assert_non_null(b);
    assert_string_equal(b->regex, "true|false");
    assert_string_equal(fhir_type_find("id")->regex, "[A-Za-z0-9\\-\\.]{1,64}");
    assert_string_equal(fhir_type_find("code")->base, "string");

    /* Profiles and logical models are not types. */
    assert_null(fhir_type_find("SimpleQuantity"));
    assert_null(fhir_type_find("MetadataResource"));
    assert_null(fhir_type_find("Nope"));
    assert_null(fhir_type_find(NULL));

    /* Every element range is in bounds. */
    for (size_t i = 0; i < fhir_types_count; i++) {
        assert_true(fhir_types[i].first_element >= 0);
        assert_true((size_t)fhir_types[i].first_element + fhir_types[i].n_elements <= fhir_elements_count);
    }
    for (size_t i = 0; i < fhir_elements_count; i++) {
        const fhir_element *e = &fhir_elements[i];
        if (e->first_child >= 0)
            assert_true((size_t)e->first_child + e->n_children <= fhir_elements_count);
        if (e->content_ref >= 0) {
            assert_true((size_t)e->content_ref < fhir_elements_count);
            assert_int_equal(e->first_child, -1);
        }
        for (unsigned k = 0; k < e->n_types; k++)
            assert_null(strchr(e->types[k], '/')); /* no System.* type codes left */
    }
}

static void test_patient_elements(void **state)
{
    (void)state;
    const fhir_type *p = fhir_type_find("Patient");
    const char *ct = "junk";

    const fhir_element *bd = fhir_type_element(p, "birthDate", &ct);
    assert_non_null(bd);
    assert_null(ct);
    assert_string_equal(bd->path, "Patient.birthDate");
    assert_int_equal(bd->n_types, 1);
    assert_string_equal(bd->types[0], "date");
    assert_int_equal(bd->min, 0);
    assert_int_equal(bd->max, 1);
    assert_false(bd->choice);
    assert_true(bd->is_summary);

    const fhir_element *name = fhir_type_element(p, "name", NULL);
    assert_non_null(name);
    assert_int_equal(name->max, FHIR_MAX_UNBOUNDED);
    assert_string_equal(name->types[0], "HumanName");

    /* Inherited elements come from the snapshot; a resource id is typed "id". */
    const fhir_element *id = fhir_type_element(p, "id", NULL);
    assert_non_null(id);
    assert_string_equal(id->types[0], "id");
    assert_non_null(fhir_type_element(p, "meta", NULL));
    assert_non_null(fhir_type_element(p, "text", NULL));
    assert_non_null(fhir_type_element(p, "contained", NULL));
    const fhir_element *mx = fhir_type_element(p, "modifierExtension", NULL);
    assert_non_null(mx);
    assert_true(mx->is_modifier);
    assert_true(fhir_type_element(p, "active", NULL)->is_modifier);
    assert_null(fhir_type_element(p, "resourceType", NULL));
    assert_null(fhir_type_element(p, "_birthDate", NULL));
    assert_null(fhir_type_element(p, "birthdate", NULL));

    /* Choice: deceased[x] = boolean | dateTime. */
    const fhir_element *dec = fhir_type_element(p, "deceasedDateTime", &ct);
    assert_non_null(dec);
    assert_true(dec->choice);
    assert_string_equal(dec->name, "deceased");
    assert_string_equal(ct, "dateTime");
    assert_ptr_equal(fhir_type_element(p, "deceasedBoolean", &ct), dec);
    assert_string_equal(ct, "boolean");
    assert_null(fhir_type_element(p, "deceased", NULL));
    assert_null(fhir_type_element(p, "deceasedString", NULL));
    assert_null(fhir_type_element(p, "deceaseddateTime", NULL));

    /* Backbone children: Patient.contact.name. */
    const fhir_element *contact = fhir_type_element(p, "contact", NULL);
    assert_non_null(contact);
    assert_string_equal(contact->types[0], "BackboneElement");
    assert_true(contact->first_child >= 0);
    assert_true(contact->n_children > 0);
    const fhir_element *cn = fhir_element_child(contact, "name", NULL);
    assert_non_null(cn);
    assert_string_equal(cn->path, "Patient.contact.name");
    assert_string_equal(cn->types[0], "HumanName");
    assert_int_equal(cn->max, 1);
    assert_non_null(fhir_element_child(contact, "modifierExtension", NULL));
    assert_null(fhir_element_child(contact, "birthDate", NULL));
    assert_null(fhir_element_child(bd, "id", NULL));

    /* Required binding: Patient.gender. */
    const fhir_element *g = fhir_type_element(p, "gender", NULL);
    assert_non_null(g);
    assert_string_equal(g->types[0], "code");
    assert_string_equal(g->binding_valueset, "http://hl7.org/fhir/ValueSet/administrative-gender");
    assert_int_equal(g->n_required_codes, 4);
    assert_true(has_str(g->required_codes, g->n_required_codes, "male"));
    assert_true(has_str(g->required_codes, g->n_required_codes, "female"));
    assert_true(has_str(g->required_codes, g->n_required_codes, "other"));
    assert_true(has_str(g->required_codes, g->n_required_codes, "unknown"));
    assert_true(fhir_element_code_allowed(g, "female"));
    assert_true(fhir_element_code_allowed(g, "unknown"));
    assert_false(fhir_element_code_allowed(g, "Female"));
    assert_false(fhir_element_code_allowed(g, "f"));
    assert_false(fhir_element_code_allowed(g, ""));
    assert_true(fhir_element_code_allowed(bd, "anything")); /* no binding: nothing to check */
}

static void test_observation_choice(void **state)
{
    (void)state;
    const fhir_type *o = fhir_type_find("Observation");
    assert_non_null(o);
    const char *ct = NULL;
    const fhir_element *v = fhir_type_element(o, "valueQuantity", &ct);
    assert_non_null(v);
    assert_true(v->choice);
    assert_string_equal(v->name, "value");
    assert_string_equal(v->path, "Observation.value[x]");
    assert_string_equal(ct, "Quantity");
    assert_ptr_equal(fhir_type_element(o, "valueString", &ct), v);
    assert_string_equal(ct, "string");
    assert_ptr_equal(fhir_type_element(o, "valueCodeableConcept", &ct), v);
    assert_string_equal(ct, "CodeableConcept");
    assert_ptr_equal(fhir_type_element(o, "valueDateTime", &ct), v);
    assert_string_equal(ct, "dateTime");
    assert_null(fhir_type_element(o, "value", NULL));
    assert_null(fhir_type_element(o, "valueMoney", NULL));
    assert_null(fhir_type_element(o, "valuequantity", NULL));
    /* another choice element: effective[x] */
    const fhir_element *e = fhir_type_element(o, "effectivePeriod", &ct);
    assert_non_null(e);
    assert_string_equal(ct, "Period");

    /* Required binding on Observation.status (code). */
    const fhir_element *st = fhir_type_element(o, "status", NULL);
    assert_non_null(st);
    assert_int_equal(st->min, 1);
    assert_true(st->is_modifier);
    assert_true(fhir_element_code_allowed(st, "final"));
    assert_false(fhir_element_code_allowed(st, "done"));

    /* Observation.component.referenceRange is a contentReference to Observation.referenceRange. */
    const fhir_element *comp = fhir_type_element(o, "component", NULL);
    const fhir_element *crr = fhir_element_child(comp, "referenceRange", NULL);
    assert_non_null(crr);
    assert_true(crr->content_ref >= 0);
    assert_string_equal(fhir_elements[crr->content_ref].path, "Observation.referenceRange");
    assert_non_null(fhir_element_child(crr, "low", NULL));
}

static void test_content_ref(void **state)
{
    (void)state;
    const fhir_type *q = fhir_type_find("Questionnaire");
    assert_non_null(q);
    const fhir_element *item = fhir_type_element(q, "item", NULL);
    assert_non_null(item);
    assert_int_equal(item->content_ref, -1);
    const fhir_element *item2 = fhir_element_child(item, "item", NULL);
    assert_non_null(item2);
    assert_string_equal(item2->path, "Questionnaire.item.item");
    assert_true(item2->content_ref >= 0);
    assert_ptr_equal(&fhir_elements[item2->content_ref], item);
    assert_int_equal(item2->n_types, 1);
    assert_string_equal(item2->types[0], "BackboneElement");
    assert_int_equal(item2->max, FHIR_MAX_UNBOUNDED);

    /* Resolve through the reference, twice deep. */
    const fhir_element *link = fhir_element_child(item2, "linkId", NULL);
    assert_non_null(link);
    assert_string_equal(link->path, "Questionnaire.item.linkId");
    const fhir_element *item3 = fhir_element_child(item2, "item", NULL);
    assert_ptr_equal(item3, item2);
    const char *ct = NULL;
    const fhir_element *ans = fhir_element_child(item3, "enableWhen", NULL);
    assert_non_null(ans);
    const fhir_element *aw = fhir_element_child(ans, "answerCoding", &ct);
    assert_non_null(aw);
    assert_string_equal(ct, "Coding");

    /* Questionnaire.item.type: required binding whose abstract "question" code is left out. */
    const fhir_element *ty = fhir_element_child(item, "type", NULL);
    assert_non_null(ty);
    assert_true(fhir_element_code_allowed(ty, "group"));
    assert_true(fhir_element_code_allowed(ty, "open-choice"));
    assert_false(fhir_element_code_allowed(ty, "question"));
}

static void test_complex_and_primitive(void **state)
{
    (void)state;
    const fhir_type *ext = fhir_type_find("Extension");
    const fhir_element *url = fhir_type_element(ext, "url", NULL);
    assert_non_null(url);
    assert_string_equal(url->types[0], "uri");
    assert_int_equal(url->min, 1);
    const fhir_element *eid = fhir_type_element(ext, "id", NULL);
    assert_string_equal(eid->types[0], "string");
    const char *ct = NULL;
    assert_non_null(fhir_type_element(ext, "valueBase64Binary", &ct));
    assert_string_equal(ct, "base64Binary");
    assert_non_null(fhir_type_element(ext, "valueUuid", &ct));
    assert_string_equal(ct, "uuid");

    /* Element-typed inline structure in a complex type: Timing.repeat.bounds[x]. */
    const fhir_type *tm = fhir_type_find("Timing");
    const fhir_element *rep = fhir_type_element(tm, "repeat", NULL);
    assert_non_null(rep);
    assert_string_equal(rep->types[0], "Element");
    assert_non_null(fhir_element_child(rep, "boundsDuration", &ct));
    assert_string_equal(ct, "Duration");

    /* Primitive types are leaves: only id and extension. */
    const fhir_type *s = fhir_type_find("string");
    assert_int_equal(s->n_elements, 2);
    assert_non_null(fhir_type_element(s, "extension", NULL));
    assert_null(fhir_type_element(s, "value", NULL));

    /* Skipped expansion: mime types are external, so no codes but the value set is known. */
    const fhir_type *att = fhir_type_find("Attachment");
    const fhir_element *mime = fhir_type_element(att, "contentType", NULL);
    assert_non_null(mime);
    assert_string_equal(mime->binding_valueset, "http://hl7.org/fhir/ValueSet/mimetypes");
    assert_null(mime->required_codes);
    assert_int_equal(mime->n_required_codes, 0);
    assert_true(fhir_element_code_allowed(mime, "application/fhir+json"));
}

static void test_search_params(void **state)
{
    (void)state;
    /* 1,375 SearchParameter definitions, one entry per (base, code). */
    assert_int_equal(fhir_search_params_count, 1706);
    for (size_t i = 1; i < fhir_search_params_count; i++) {
        int c = strcmp(fhir_search_params[i - 1].resource, fhir_search_params[i].resource);
        assert_true(c < 0 || (c == 0 && strcmp(fhir_search_params[i - 1].code, fhir_search_params[i].code) < 0));
    }

    const fhir_search_param *bd = fhir_search_param_find("Patient", "birthdate");
    assert_non_null(bd);
    assert_int_equal(bd->type, FHIR_SP_DATE);
    assert_string_equal(bd->resource, "Patient");
    assert_string_equal(bd->expression, "Patient.birthDate | Person.birthDate | RelatedPerson.birthDate");
    assert_string_equal(bd->url, "http://hl7.org/fhir/SearchParameter/individual-birthdate");
    assert_string_equal(bd->xpath_usage, "normal");
    const fhir_search_param *pbd = fhir_search_param_find("Person", "birthdate");
    assert_non_null(pbd);
    assert_string_equal(pbd->resource, "Person");
    assert_ptr_not_equal(pbd, bd);

    const fhir_search_param *cvq = fhir_search_param_find("Observation", "code-value-quantity");
    assert_non_null(cvq);
    assert_int_equal(cvq->type, FHIR_SP_COMPOSITE);
    assert_int_equal(cvq->n_components, 2);
    assert_string_equal(cvq->components[0].definition, "http://hl7.org/fhir/SearchParameter/clinical-code");
    assert_string_equal(cvq->components[0].expression, "code");
    assert_string_equal(cvq->components[1].definition,
                        "http://hl7.org/fhir/SearchParameter/Observation-value-quantity");
    assert_string_equal(cvq->components[1].expression, "value.as(Quantity)");

    const fhir_search_param *subj = fhir_search_param_find("Observation", "subject");
    assert_non_null(subj);
    assert_int_equal(subj->type, FHIR_SP_REFERENCE);
    assert_true(subj->n_targets >= 1);
    assert_true(has_str(subj->targets, subj->n_targets, "Patient"));
    assert_true(has_str(subj->targets, subj->n_targets, "Group"));
    assert_null(subj->modifiers);

    /* Inherited parameters. */
    const fhir_search_param *id = fhir_search_param_find("Patient", "_id");
    assert_non_null(id);
    assert_string_equal(id->resource, "Resource");
    assert_int_equal(id->type, FHIR_SP_TOKEN);
    const fhir_search_param *lu = fhir_search_param_find("Bundle", "_lastUpdated");
    assert_non_null(lu);
    assert_int_equal(lu->type, FHIR_SP_DATE);
    const fhir_search_param *txt = fhir_search_param_find("Observation", "_text");
    assert_non_null(txt);
    assert_string_equal(txt->resource, "DomainResource");
    assert_null(fhir_search_param_find("Bundle", "_text")); /* Bundle is not a DomainResource */
    assert_null(fhir_search_param_find("Patient", "nope"));
    assert_null(fhir_search_param_find("Nope", "_id"));

    size_t n = 0;
    const fhir_search_param *ps = fhir_search_params_of("Patient", &n);
    assert_non_null(ps);
    assert_true(n > 20);
    for (size_t i = 0; i < n; i++) assert_string_equal(ps[i].resource, "Patient");
    assert_null(fhir_search_params_of("Nope", &n));
    assert_int_equal(n, 0);
    ps = fhir_search_params_of("Resource", &n);
    assert_non_null(ps);
    assert_true(n >= 8);
}

static void test_compartment(void **state)
{
    (void)state;
    assert_true(fhir_patient_compartment_count > 60);
    for (size_t i = 1; i < fhir_patient_compartment_count; i++)
        assert_true(strcmp(fhir_patient_compartment[i - 1].resource, fhir_patient_compartment[i].resource) < 0);
    const fhir_compartment_entry *o = fhir_patient_compartment_find("Observation");
    assert_non_null(o);
    assert_true(has_str(o->params, o->n_params, "subject"));
    assert_true(has_str(o->params, o->n_params, "performer"));
    const fhir_compartment_entry *p = fhir_patient_compartment_find("Patient");
    assert_non_null(p);
    assert_true(has_str(p->params, p->n_params, "link"));
    /* Resources listed without params are not in the compartment. */
    assert_null(fhir_patient_compartment_find("ActivityDefinition"));
    assert_null(fhir_patient_compartment_find("Nope"));
    /* Every compartment param is a search parameter of that resource. */
    for (size_t i = 0; i < fhir_patient_compartment_count; i++) {
        const fhir_compartment_entry *c = &fhir_patient_compartment[i];
        assert_true(fhir_is_resource_type(c->resource));
        for (unsigned k = 0; k < c->n_params; k++)
            if (strcmp(c->params[k], "{def}") != 0)
                assert_non_null(fhir_search_param_find(c->resource, c->params[k]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resource_names),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_patient_elements),
        cmocka_unit_test(test_observation_choice),
        cmocka_unit_test(test_content_ref),
        cmocka_unit_test(test_complex_and_primitive),
        cmocka_unit_test(test_search_params),
        cmocka_unit_test(test_compartment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
