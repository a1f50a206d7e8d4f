/* Unit tests for search parsing (bv_fhir_parse_search, src/fhir/search_parse.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bevan/fhir.h"

static bv_arena *A;

static int setup(void **state)
{
    (void)state;
    A = bv_arena_new(1 << 16);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bv_arena_free(A);
    A = NULL;
    return 0;
}

/* Parses "n1=v1&n2=v2" (already decoded: '&' and the first '=' split, nothing else). */
static int parse(const char *type, const char *q, bool strict, bv_search_request *req, bv_outcome *oo)
{
    bv_param ps[64];
    size_t n = 0;
    char *copy = bv_arena_strdup(A, q);
    for (char *p = copy; p && *p && n < 64;) {
        char *amp = strchr(p, '&');
        if (amp) *amp = '\0';
        char *eq = strchr(p, '=');
        if (eq) *eq = '\0';
        ps[n].name = p;
        ps[n].value = eq ? eq + 1 : "";
        n++;
        p = amp ? amp + 1 : NULL;
    }
    bv_outcome_init(oo, A);
    return bv_fhir_parse_search(A, type, ps, n, strict, req, oo);
}

/* Parses and expects success; returns the first pred of the first AND group. */
static const bv_pred *one(const char *type, const char *q, bv_search_request *req)
{
    bv_outcome oo;
    int rc = parse(type, q, true, req, &oo);
    if (rc != BV_OK)
        for (size_t i = 0; i < oo.n; i++) fprintf(stderr, "issue: %s\n", oo.issues[i].diagnostics);
    assert_int_equal(rc, BV_OK);
    assert_int_equal(oo.n_errors, 0);
    assert_true(req->search.n_ands >= 1);
    assert_true(req->search.ands[0].n >= 1);
    return &req->search.ands[0].preds[0];
}

/* Expects an error whose diagnostics contain `needle` (and the issue code when not NULL). */
static void bad(const char *type, const char *q, bool strict, const char *needle, const char *code)
{
    bv_search_request req;
    bv_outcome oo;
    int rc = parse(type, q, strict, &req, &oo);
    if (rc == BV_OK) fprintf(stderr, "unexpectedly accepted: %s\n", q);
    assert_int_equal(rc, BV_EINVAL);
    assert_true(oo.n_errors >= 1);
    if (!strstr(oo.issues[0].diagnostics, needle)) fprintf(stderr, "got: %s\n", oo.issues[0].diagnostics);
    assert_non_null(strstr(oo.issues[0].diagnostics, needle));
    if (code) assert_string_equal(oo.issues[0].code, code);
}

static void test_string(void **state)
{
    (void)state;
    bv_search_request r;
    const bv_pred *p = one("Patient", "name=Smith", &r);
    assert_int_equal(p->kind, BV_IX_STRING);
    assert_string_equal(p->param, "name|family|given"); /* name's own rows and its parts' (part_rows) */
    assert_int_equal(p->op, BV_OP_STR_STARTS);
    assert_string_equal(p->text, bv_fhir_normalize_string(A, "Smith"));
    assert_false(p->negate);

    p = one("Patient", "family:exact=Smith", &r);
    assert_int_equal(p->op, BV_OP_STR_EXACT);
    assert_string_equal(p->text, "Smith");
    p = one("Patient", "given:contains=OHN", &r);
    assert_int_equal(p->op, BV_OP_STR_CONTAINS);
    assert_string_equal(p->text, bv_fhir_normalize_string(A, "OHN"));

    /* comma = OR, "\," = literal comma; repeated = AND */
    p = one("Patient", "family:exact=a,b\\,c,,d&family=x", &r);
    assert_int_equal(r.search.n_ands, 2);
    assert_int_equal(r.search.ands[0].n, 3);   /* the empty value is ignored */
    assert_string_equal(r.search.ands[0].preds[0].text, "a");
    assert_string_equal(r.search.ands[0].preds[1].text, "b,c");
    assert_string_equal(r.search.ands[0].preds[2].text, "d");
    assert_int_equal(r.search.ands[1].preds[0].op, BV_OP_STR_STARTS);
    assert_int_equal(r.n_applied, 2);
    assert_string_equal(r.applied[0].name, "family:exact");
    assert_string_equal(r.applied[0].value, "a,b\\,c,,d");
    assert_string_equal(r.search.type, "Patient");
    assert_int_equal(r.search.count, BV_DEFAULT_PAGE_COUNT);

    bad("Patient", "name:text=x", true, "modifier ':text' does not apply to string", "invalid");
    bad("Patient", "name:foo=x", false, "unknown modifier ':foo'", NULL);
}

static void test_token(void **state)
{
    (void)state;
    bv_search_request r;
    const bv_pred *p = one("Patient", "gender=male", &r);
    assert_int_equal(p->kind, BV_IX_TOKEN);
    assert_int_equal(p->op, BV_OP_TOKEN);
    assert_false(p->system_given);
    assert_null(p->system);
    assert_string_equal(p->code, "male");

    p = one("Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", &r);
    assert_true(p->system_given);
    assert_string_equal(p->system, "https://fhir.nhs.uk/Id/nhs-number");
    assert_string_equal(p->code, "9000000009");

    p = one("Patient", "identifier=|123", &r);
    assert_true(p->system_given);
    assert_null(p->system);
    assert_string_equal(p->code, "123");

    p = one("Patient", "identifier=http://x|", &r);
    assert_true(p->system_given);
    assert_string_equal(p->system, "http://x");
    assert_null(p->code);

    p = one("Patient", "identifier=a\\|b", &r);   /* escaped bar: part of the code */
    assert_false(p->system_given);
    assert_string_equal(p->code, "a|b");

    p = one("Observation", "code:text=Blood Pressure", &r);
    assert_int_equal(p->op, BV_OP_TOKEN_TEXT);
    assert_string_equal(p->text, "Blood Pressure");

    p = one("Patient", "gender:not=male", &r);
    assert_int_equal(p->op, BV_OP_TOKEN);
    assert_true(p->negate);
    assert_string_equal(p->code, "male");

    p = one("Patient", "active:missing=true", &r);
    assert_int_equal(p->op, BV_OP_MISSING);
    assert_true(p->missing);
    assert_string_equal(p->param, "active");
    p = one("Patient", "active:missing=false", &r);
    assert_false(p->missing);
    bad("Patient", "active:missing=maybe", true, "true or false", "invalid");

    bad("Observation", "code:in=http://vs", true, "until terminology exists", "not-supported");
    bad("Observation", "code:not-in=http://vs", false, "until terminology exists", "not-supported");
    bad("Observation", "code:below=http://loinc.org|1", true, "until terminology exists", "not-supported");
    p = one("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|123", &r);
    assert_string_equal(p->param, "identifier:of-type");
    assert_string_equal(p->system, "http://terminology.hl7.org/CodeSystem/v2-0203");
    assert_string_equal(p->code, "MR|123");
    bad("Patient", "identifier:of-type=MR|123", true, "system|code|value", "invalid");
    bad("Observation", "code:exact=x", true, "does not apply to token", NULL);
    bad("Patient", "identifier=|", true, "'|' alone", NULL);
}

static void test_number_date_quantity(void **state)
{
    (void)state;
    bv_search_request r;
    const bv_pred *p = one("RiskAssessment", "probability=gt0.8", &r);
    assert_int_equal(p->kind, BV_IX_NUMBER);
    assert_int_equal(p->op, BV_OP_GT);
    assert_true(fabs(p->num - 0.8) < 1e-12);
    assert_true(fabs(p->num_lo - 0.75) < 1e-12 && fabs(p->num_hi - 0.85) < 1e-12);
    p = one("RiskAssessment", "probability=100", &r);
    assert_int_equal(p->op, BV_OP_EQ);
    assert_true(fabs(p->num_lo - 99.5) < 1e-9 && fabs(p->num_hi - 100.5) < 1e-9);
    p = one("RiskAssessment", "probability=100.00", &r);
    assert_true(fabs(p->num_lo - 99.995) < 1e-9 && fabs(p->num_hi - 100.005) < 1e-9);
    p = one("RiskAssessment", "probability=1e2", &r);
    assert_true(fabs(p->num - 100) < 1e-9 && fabs(p->num_lo - 50) < 1e-9);
    static const struct { const char *pre; bv_op op; } pre[] = {
        {"eq", BV_OP_EQ}, {"ne", BV_OP_NE}, {"gt", BV_OP_GT}, {"lt", BV_OP_LT}, {"ge", BV_OP_GE},
        {"le", BV_OP_LE}, {"sa", BV_OP_SA}, {"eb", BV_OP_EB}, {"ap", BV_OP_AP},
    };
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++) {
        char q[64];
        snprintf(q, sizeof q, "probability=%s-3.5", pre[i].pre);
        p = one("RiskAssessment", q, &r);
        assert_int_equal(p->op, pre[i].op);
        assert_false(p->negate);
        assert_true(fabs(p->num + 3.5) < 1e-12);
    }
    bad("RiskAssessment", "probability=xx5", true, "'probability'", "invalid");
    bad("RiskAssessment", "probability=5.", true, "not a number", NULL);
    bad("RiskAssessment", "probability=gt", true, "not a number", NULL);

    int64_t lo, hi;
    p = one("Patient", "birthdate=ge2020-01", &r);
    assert_int_equal(p->kind, BV_IX_DATE);
    assert_int_equal(p->op, BV_OP_GE);
    assert_int_equal(bv_fhir_date_range("2020-01", &lo, &hi), BV_OK);
    assert_true(p->lo == lo && p->hi == hi);
    p = one("Patient", "birthdate=1980-05-06", &r);
    assert_int_equal(p->op, BV_OP_EQ);
    /* an unencoded '+' in the timezone arrives as a space */
    p = one("Observation", "date=lt2020-01-01T10:00:00 01:00", &r);
    assert_int_equal(bv_fhir_date_range("2020-01-01T10:00:00+01:00", &lo, &hi), BV_OK);
    assert_true(p->lo == lo && p->hi == hi);
    assert_int_equal(p->op, BV_OP_LT);
    bad("Patient", "birthdate=2020-13-01", true, "'birthdate'", "invalid");
    bad("Patient", "birthdate=xx2020", true, "not a valid date", NULL);
    bad("Patient", "birthdate=yesterday", true, "not a valid date", NULL);

    p = one("Observation", "value-quantity=lt5.4|http://unitsofmeasure.org|mg", &r);
    assert_int_equal(p->kind, BV_IX_QUANTITY);
    assert_int_equal(p->op, BV_OP_LT);
    /* a convertible UCUM unit is matched in the canonical unit, on the "<param>:ucum" rows */
    assert_true(fabs(p->num - 0.0054) < 1e-12);
    assert_string_equal(p->param, "value-quantity:ucum");
    assert_string_equal(p->system, "http://unitsofmeasure.org");
    assert_string_equal(p->code, "g");
    p = one("Observation", "value-quantity=5.4||mg", &r);
    assert_string_equal(p->code, "g");
    p = one("Observation", "value-quantity=98.6||[degF]", &r);
    assert_string_equal(p->code, "K");
    assert_true(fabs(p->num - 310.15) < 1e-9);
    p = one("Observation", "value-quantity=5.4||{beats}/min", &r);   /* not converted */
    assert_null(p->system);
    assert_string_equal(p->param, "value-quantity");
    assert_string_equal(p->code, "{beats}/min");
    p = one("Observation", "value-quantity=5.4", &r);
    assert_null(p->system);
    assert_null(p->code);
    bad("Observation", "value-quantity=5.4|mg", true, "number|system|code", NULL);
    bad("Observation", "value-quantity=abc||mg", true, "'value-quantity'", NULL);
}

static void test_reference(void **state)
{
    (void)state;
    bv_search_request r;
    const bv_pred *p = one("Observation", "subject=Patient/123", &r);
    assert_int_equal(p->kind, BV_IX_REFERENCE);
    assert_int_equal(p->op, BV_OP_REF);
    assert_string_equal(p->ref_type, "Patient");
    assert_string_equal(p->ref_id, "123");
    assert_null(p->text);
    assert_null(p->chain);

    /* a bare id: one typed pred per target type, ORed, so the (param, ref_type, ref_id) index
     * answers it (Observation.subject: Patient, Group, Device, Location) */
    p = one("Observation", "subject=123", &r);
    assert_int_equal(r.search.ands[0].n, 4);
    bool patient = false;
    for (size_t i = 0; i < r.search.ands[0].n; i++) {
        const bv_pred *q = &r.search.ands[0].preds[i];
        assert_non_null(q->ref_type);
        assert_string_equal(q->ref_id, "123");
        assert_int_equal(q->op, BV_OP_REF);
        patient |= strcmp(q->ref_type, "Patient") == 0;
    }
    assert_true(patient);
    p = one("Observation", "patient=123,456", &r);   /* targets Group and Patient: 2 x 2 */
    assert_int_equal(r.search.ands[0].n, 4);
    assert_string_equal(p->ref_id, "123");
    assert_string_equal(r.search.ands[0].preds[3].ref_id, "456");
    assert_string_not_equal(r.search.ands[0].preds[2].ref_type, r.search.ands[0].preds[3].ref_type);

    p = one("Observation", "subject:Patient=123", &r);
    assert_string_equal(p->ref_type, "Patient");
    assert_string_equal(p->ref_id, "123");

    p = one("Observation", "subject=Patient/123/_history/2", &r);
    assert_string_equal(p->ref_id, "123");

    p = one("Observation", "subject=http://example.org/fhir/Patient/123", &r);
    assert_string_equal(p->text, "http://example.org/fhir/Patient/123");
    assert_string_equal(p->ref_type, "Patient");
    assert_string_equal(p->ref_id, "123");

    p = one("Observation", "subject=urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", &r);
    assert_string_equal(p->text, "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0");
    assert_null(p->ref_id);

    p = one("Observation", "subject:missing=true", &r);
    assert_int_equal(p->op, BV_OP_MISSING);
    assert_true(p->missing);

    p = one("Observation", "subject:identifier=http://x|1", &r);
    assert_int_equal(p->kind, BV_IX_TOKEN);
    assert_string_equal(p->param, "subject:identifier");
    assert_string_equal(p->system, "http://x");
    assert_string_equal(p->code, "1");
    bad("Observation", "subject:Medication=1", true, "not a target", NULL);
    bad("Observation", "subject:Foo=1", true, "unknown modifier ':Foo'", NULL);
    bad("Observation", "subject:Patient=Group/1", true, "not a Patient reference", NULL);
    bad("Observation", "subject=Patient/", true, "not a reference", NULL);
}

static void test_uri_and_common(void **state)
{
    (void)state;
    bv_search_request r;
    const bv_pred *p = one("ValueSet", "url=http://x.org/vs", &r);
    assert_int_equal(p->kind, BV_IX_URI);
    assert_int_equal(p->op, BV_OP_URI_EQ);
    assert_string_equal(p->text, "http://x.org/vs");
    assert_int_equal(one("ValueSet", "url:below=http://x.org/", &r)->op, BV_OP_URI_BELOW);
    assert_int_equal(one("ValueSet", "url:above=http://x.org/vs/1", &r)->op, BV_OP_URI_ABOVE);

    p = one("Patient", "_id=abc", &r);
    assert_int_equal(p->kind, BV_IX_TOKEN);
    assert_string_equal(p->param, "_id");
    assert_int_equal(p->op, BV_OP_TOKEN);
    assert_string_equal(p->code, "abc");
    assert_false(p->system_given);

    p = one("Patient", "_lastUpdated=gt2024-01-02T03:04:05Z", &r);
    assert_int_equal(p->kind, BV_IX_DATE);
    assert_string_equal(p->param, "_lastUpdated");
    assert_int_equal(p->op, BV_OP_GT);

    p = one("Patient", "_tag=http://s|c", &r);
    assert_int_equal(p->kind, BV_IX_TOKEN);
    assert_string_equal(p->param, "_tag");
    assert_string_equal(p->system, "http://s");
    p = one("Patient", "_security=R", &r);
    assert_string_equal(p->param, "_security");
    p = one("Patient", "_profile=https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient", &r);
    assert_int_equal(p->kind, BV_IX_URI);
    assert_string_equal(p->param, "_profile");
    p = one("Patient", "_source=http://src", &r);
    assert_int_equal(p->kind, BV_IX_URI);

    /* system-level search: common parameters only */
    p = one(NULL, "_id=1&_type=Patient,Observation", &r);
    assert_null(r.search.type);
    assert_int_equal(r.search.n_types, 2);
    assert_string_equal(r.search.types[1], "Observation");
    bad(NULL, "name=x", true, "unknown search parameter 'name'", "not-supported");
    bad(NULL, "_type=Patient,Nope", true, "'Nope' is not a resource type", NULL);
    bad("Nope", "_id=1", true, "not a resource type", NULL);
}

static void test_result_params(void **state)
{
    (void)state;
    bv_search_request r;
    bv_outcome oo;
    assert_int_equal(parse("Patient", "_count=50&_offset=40&_sort=-birthdate,name,_id&_summary=count&_total=accurate"
                                      "&_elements=id,name&_include=Patient:organization&_revinclude=Observation:subject"
                                      "&_include:iterate=Organization:partof&_format=application/fhir+json;fhirVersion=4.0"
                                      "&_pretty=true",
                           true, &r, &oo),
                     BV_OK);
    assert_int_equal(r.search.count, 50);
    assert_int_equal(r.search.offset, 40);
    assert_int_equal(r.search.n_sort, 3);
    assert_string_equal(r.search.sort[0].param, "birthdate");
    assert_int_equal(r.search.sort[0].kind, BV_IX_DATE);
    assert_true(r.search.sort[0].desc);
    assert_string_equal(r.search.sort[1].param, "name|family|given");
    assert_int_equal(r.search.sort[1].kind, BV_IX_STRING);
    assert_false(r.search.sort[1].desc);
    assert_string_equal(r.search.sort[2].param, "_id");
    assert_int_equal(r.search.sort[2].kind, BV_IX_TOKEN);
    assert_string_equal(r.summary, "count");
    assert_string_equal(r.total, "accurate");
    assert_true(r.search.want_total);
    assert_string_equal(r.elements, "id,name");
    assert_int_equal(r.n_includes, 2);
    assert_string_equal(r.includes[1], "Organization:partof");
    assert_int_equal(r.n_revincludes, 1);
    assert_string_equal(r.revincludes[0], "Observation:subject");
    assert_int_equal(r.search.n_ands, 0);
    assert_int_equal(r.n_applied, 9);   /* _format and _pretty are not repeated in links */
    assert_string_equal(r.applied[0].name, "_count");

    one("Patient", "name=x&_count=5000", &r);
    assert_int_equal(r.search.count, BV_MAX_PAGE_COUNT);
    one("Patient", "name=x&_count=0", &r);
    assert_int_equal(r.search.count, 0);
    one("Patient", "name=x&_sort=_lastUpdated&_total=none", &r);
    assert_int_equal(r.search.sort[0].kind, BV_IX_DATE);
    assert_false(r.search.want_total);
    bad("Patient", "_count=abc", true, "_count must be a non-negative integer", "invalid");
    bad("Patient", "_count=-1", false, "_count", NULL);
    bad("Patient", "_offset=-1", true, "_offset", NULL);
    bad("Patient", "_sort=foo", true, "'foo'", NULL);
}

static void test_sort_reference_ok(void **state)
{
    (void)state;
    bv_search_request r;
    bv_outcome oo;
    assert_int_equal(parse("Patient", "_sort=-organization", true, &r, &oo), BV_OK);
    assert_int_equal(r.search.sort[0].kind, BV_IX_REFERENCE);
    bad("Patient", "_summary=maybe", true, "_summary", NULL);
    bad("Patient", "_total=all", true, "_total", NULL);
    bad("Patient", "_format=xml", false, "JSON only", "not-supported");
    bad("Patient", "_sort=-phonetic,zzz", true, "'zzz'", NULL);
}

static void test_strict_lenient(void **state)
{
    (void)state;
    bv_search_request r;
    bv_outcome oo;
    bad("Patient", "foo=1", true, "unknown search parameter 'foo' for Patient", "not-supported");
    assert_int_equal(parse("Patient", "foo=1&name=x&_filter=a eq b&_text=x", false, &r, &oo), BV_OK);
    assert_int_equal(oo.n_errors, 0);
    assert_int_equal(r.search.n_ands, 1);
    assert_int_equal(r.n_applied, 1);
    assert_string_equal(r.applied[0].name, "name");
    bad("Patient", "_filter=x", true, "not supported", "not-supported");
    bad("Patient", "_content=x", true, "not supported", NULL);

    /* composite: one pred with a component pred per '$' part; special: an error even when lenient */
    assert_int_equal(parse("Observation", "code-value-quantity=http://loinc.org|2708-6$lt93", true, &r, &oo), BV_OK);
    assert_int_equal(r.search.n_ands, 1);
    const bv_pred *cp = &r.search.ands[0].preds[0];
    assert_int_equal(cp->n_components, 2);
    assert_string_equal(cp->components[0].param, "code-value-quantity#0");
    assert_string_equal(cp->components[0].code, "2708-6");
    assert_string_equal(cp->components[1].param, "code-value-quantity#1");
    assert_int_equal(cp->components[1].kind, BV_IX_QUANTITY);
    assert_int_equal(cp->components[1].op, BV_OP_LT);
    bad("Observation", "code-value-quantity=http://loinc.org|2708-6", true, "components", "invalid");
    bad("Location", "near=42.25|-83.69|11.2|km", true, "special", NULL);
    bad("Location", "near=42.25|-83.69|11.2|km", false, "special", NULL);

    /* bad values and unknown modifiers are errors even when lenient */
    bad("Patient", "birthdate=notadate", false, "'birthdate'", NULL);
    /* every error is reported */
    assert_int_equal(parse("Patient", "foo=1&birthdate=x&_count=y", true, &r, &oo), BV_EINVAL);
    assert_int_equal(oo.n_errors, 3);
    /* empty values are ignored */
    assert_int_equal(parse("Patient", "name=&gender=", true, &r, &oo), BV_OK);
    assert_int_equal(r.search.n_ands, 0);
}

static void test_chain(void **state)
{
    (void)state;
    bv_search_request r;
    const bv_pred *p = one("Observation", "subject:Patient.name=smith,jones", &r);
    assert_int_equal(r.search.ands[0].n, 1);
    assert_int_equal(p->kind, BV_IX_REFERENCE);
    assert_int_equal(p->op, BV_OP_REF);
    assert_string_equal(p->param, "subject");
    assert_string_equal(p->ref_type, "Patient");
    assert_null(p->ref_id);
    assert_non_null(p->chain);
    assert_string_equal(p->chain->type, "Patient");
    assert_int_equal(p->chain->n_ands, 1);
    assert_int_equal(p->chain->ands[0].n, 2);
    assert_string_equal(p->chain->ands[0].preds[0].param, "name|family|given");
    assert_int_equal(p->chain->ands[0].preds[1].op, BV_OP_STR_STARTS);
    assert_string_equal(r.applied[0].name, "subject:Patient.name");

    /* several targets: one pred per target type on which the chained parameter exists */
    p = one("Patient", "general-practitioner.name=x", &r);
    const bv_or *g = &r.search.ands[0];
    assert_int_equal(g->n, 2);   /* Organization and Practitioner have name; PractitionerRole has not */
    bool org = false, prac = false;
    for (size_t i = 0; i < g->n; i++) {
        assert_non_null(g->preds[i].chain);
        assert_string_equal(g->preds[i].chain->type, g->preds[i].ref_type);
        org |= strcmp(g->preds[i].ref_type, "Organization") == 0;
        prac |= strcmp(g->preds[i].ref_type, "Practitioner") == 0;
    }
    assert_true(org && prac);

    /* chain of chains, with a modifier at the end */
    p = one("Observation", "subject:Patient.organization.name:exact=Acme", &r);
    const bv_pred *q = &p->chain->ands[0].preds[0];
    assert_string_equal(q->param, "organization");
    assert_string_equal(q->chain->type, "Organization");
    assert_int_equal(q->chain->ands[0].preds[0].op, BV_OP_STR_EXACT);
    assert_string_equal(q->chain->ands[0].preds[0].text, "Acme");

    bad("Observation", "subject:Patient.foo=x", true, "unknown search parameter 'foo'", "not-supported");
    bad("Observation", "code.name=x", true, "only reference parameters can be chained", NULL);
    bad("Observation", "subject:missing.name=x", true, "takes no modifier", NULL);
    bad("Observation", "subject:Patient.birthdate=bad", true, "'birthdate'", NULL);
}

static void test_has(void **state)
{
    (void)state;
    bv_search_request r;
    const bv_pred *p = one("Patient", "_has:Observation:patient:code=1234-5", &r);
    assert_int_equal(p->kind, BV_IX_REFERENCE);
    assert_int_equal(p->op, BV_OP_REF);
    assert_string_equal(p->param, "patient");
    assert_null(p->chain);
    assert_non_null(p->has);
    assert_string_equal(p->has->type, "Observation");
    assert_int_equal(p->has->n_ands, 1);
    assert_int_equal(p->has->ands[0].preds[0].kind, BV_IX_TOKEN);
    assert_string_equal(p->has->ands[0].preds[0].param, "code");
    assert_string_equal(p->has->ands[0].preds[0].code, "1234-5");

    /* nested _has */
    p = one("Patient", "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/9", &r);
    const bv_pred *q = &p->has->ands[0].preds[0];
    assert_string_equal(q->param, "target");
    assert_string_equal(q->has->type, "Provenance");
    assert_string_equal(q->has->ands[0].preds[0].param, "agent");
    assert_string_equal(q->has->ands[0].preds[0].ref_id, "9");

    bad("Patient", "_has:Nope:patient:code=1", true, "not a resource type", NULL);
    bad("Patient", "_has:Observation:code:code=1", true, "not a reference parameter", NULL);
    bad("Patient", "_has:Observation:patient=1", true, "_has:Type:reference:parameter", NULL);
    bad("Organization", "_has:Observation:patient:code=1", true, "does not refer to Organization", NULL);
    bad("Patient", "_has:Observation:patient:nope=1", true, "unknown search parameter 'nope' for Observation", NULL);

    /* nesting: 4 levels are fine, 5 are refused */
    const char *four = "_has:Provenance:target:_has:Provenance:target:_has:Provenance:target:_has:Provenance:target:agent=x";
    one("Patient", four, &r);
    char five[256];
    snprintf(five, sizeof five, "_has:Provenance:target:%s", four);
    bad("Patient", five, true, "nest at most", "too-costly");
}

static void test_many_or_values(void **state)
{
    (void)state;
    char *q = bv_arena_alloc(A, 16 * 1024);
    size_t o = (size_t)snprintf(q, 32, "identifier=");
    for (int i = 0; i < 1000; i++) o += (size_t)snprintf(q + o, 32, "%ss|v%d", i ? "," : "", i);
    bv_search_request r;
    one("Patient", q, &r);
    assert_int_equal(r.search.ands[0].n, 1000);
    assert_string_equal(r.search.ands[0].preds[999].code, "v999");
    assert_string_equal(r.search.ands[0].preds[999].system, "s");

    /* a chain over a reference to any type: one pred per target (every type has _id) */
    one("Provenance", "target._id=1", &r);
    assert_true(r.search.ands[0].n > 100);

    /* a cap on the total number of values */
    size_t cap = 25000 * 8;
    char *big = bv_arena_alloc(A, cap);
    o = (size_t)snprintf(big, 32, "gender=");
    for (int i = 0; i < 25000; i++) o += (size_t)snprintf(big + o, cap - o, "%sm%d", i ? "," : "", i);
    bad("Patient", big, true, "more than 20000 values", "too-costly");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_number_date_quantity),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_uri_and_common),
        cmocka_unit_test(test_result_params),
        cmocka_unit_test(test_sort_reference_ok),
        cmocka_unit_test(test_strict_lenient),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_has),
        cmocka_unit_test(test_many_or_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
