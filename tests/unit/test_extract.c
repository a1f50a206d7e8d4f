/* Search-index extraction tests: known rows from the R4 examples (npm package
 * hl7.fhir.r4.examples in node_modules), string normalisation, and a sweep over every example in
 * the package (no evaluation errors, no crashes; prints the row count and the time taken). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bevan/fhir.h"
#include "fhir/fhirpath_internal.h"

static char examples_dir[1024];

static bool have_examples(void)
{
    const char *src = getenv("BEVAN_SOURCE_DIR");
    snprintf(examples_dir, sizeof examples_dir, "%s/node_modules/hl7.fhir.r4.examples", src && *src ? src : ".");
    struct stat st;
    return stat(examples_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

static json_value *load(bv_arena *a, const char *path, size_t max_bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || (max_bytes && (size_t)n > max_bytes)) { fclose(f); return NULL; }
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    json_value *v = NULL;
    json_error je;
    json_limits lim = {.max_bytes = 64u << 20};
    int rc = json_parse(a, b, got, &lim, &v, &je);
    free(b);
    return rc == BV_OK ? v : NULL;
}

static json_value *example(bv_arena *a, const char *name)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", examples_dir, name);
    return load(a, path, 0);
}

static size_t count_rows(const bv_index_row *r, size_t n, const char *param, bv_index_kind kind)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == kind && !strcmp(r[i].param, param)) k++;
    return k;
}

static const bv_index_row *find_token(const bv_index_row *r, size_t n, const char *param, const char *system,
                                      const char *code)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == BV_IX_TOKEN && !strcmp(r[i].param, param) && r[i].code && !strcmp(r[i].code, code) &&
            (!system || (r[i].system && !strcmp(r[i].system, system))))
            return &r[i];
    return NULL;
}

static const bv_index_row *find_string(const bv_index_row *r, size_t n, const char *param, const char *norm)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == BV_IX_STRING && !strcmp(r[i].param, param) && !strcmp(r[i].norm, norm)) return &r[i];
    return NULL;
}

static const bv_index_row *find_kind(const bv_index_row *r, size_t n, const char *param, bv_index_kind kind)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == kind && !strcmp(r[i].param, param)) return &r[i];
    return NULL;
}

static void test_normalize(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(4096);
    assert_string_equal(bv_fhir_normalize_string(a, "  Chalmers  "), "chalmers");
    assert_string_equal(bv_fhir_normalize_string(a, "du Marché"), "du marche");
    assert_string_equal(bv_fhir_normalize_string(a, "Straße\t\n Nº 5"), "strasse nº 5");
    assert_string_equal(bv_fhir_normalize_string(a, "Ñandú ØRSTED Łódź Œuvre"), "nandu orsted lodz oeuvre");
    assert_string_equal(bv_fhir_normalize_string(a, "ÀÉÎÕÜ àéîõü çÇ ÿ Ý"), "aeiou aeiou cc y y");
    assert_string_equal(bv_fhir_normalize_string(a, "Dvořák\xc2\xa0Škoda"), "dvorak skoda");
    assert_string_equal(bv_fhir_normalize_string(a, ""), "");
    bv_arena_free(a);
}

static void test_patient_example(void **state)
{
    (void)state;
    if (!have_examples()) { printf("skipped: node_modules/hl7.fhir.r4.examples absent\n"); return; }
    bv_arena *a = bv_arena_new(1 << 16);
    json_value *p = example(a, "Patient-example.json");
    assert_non_null(p);
    bv_index_row *r;
    size_t n, errs = 9;
    assert_int_equal(bv__fhir_extract_index_ex(a, p, &r, &n, &errs), BV_OK);
    assert_int_equal(errs, 0);
    assert_non_null(find_string(r, n, "family", "chalmers"));
    assert_non_null(find_string(r, n, "family", "windsor"));
    assert_non_null(find_string(r, n, "given", "peter"));
    assert_non_null(find_string(r, n, "given", "jim"));
    assert_non_null(find_string(r, n, "address-city", "pleasantville"));
    /* name's family and given parts are family's and given's rows (part_rows): not stored twice */
    assert_null(find_string(r, n, "name", "chalmers"));
    assert_null(find_string(r, n, "name", "peter"));
    assert_null(find_string(r, n, "address", "pleasantville"));
    assert_non_null(find_string(r, n, "address", "534 erewhon st")); /* a line: no parameter of its own */
    const bv_index_row *id = find_token(r, n, "identifier", "urn:oid:1.2.36.146.595.217.0.1", "12345");
    assert_non_null(id);
    assert_non_null(find_token(r, n, "gender", NULL, "male"));
    assert_non_null(find_token(r, n, "active", NULL, "true"));
    assert_non_null(find_token(r, n, "deceased", NULL, "false"));
    assert_non_null(find_token(r, n, "phone", NULL, "(03) 5555 6473"));
    const bv_index_row *bd = find_kind(r, n, "birthdate", BV_IX_DATE);
    assert_non_null(bd);
    int64_t lo, hi;
    assert_int_equal(bv_fhir_date_range("1974-12-25", &lo, &hi), BV_OK);
    assert_true(bd->lo == lo && bd->hi == hi);
    assert_true(hi - lo == 86400000 - 1);
    const bv_index_row *org = find_kind(r, n, "organization", BV_IX_REFERENCE);
    assert_non_null(org);
    assert_string_equal(org->ref_type, "Organization");
    assert_string_equal(org->ref_id, "1");
    assert_string_equal(org->text, "Organization/1");
    for (size_t i = 0; i < n; i++) assert_int_equal(r[i].group, 0);
    /* phonetic selects the same elements as name: its rows are name's, not stored twice */
    assert_null(find_string(r, n, "phonetic", "chalmers"));
    for (size_t i = 0; i < n; i++) assert_string_not_equal(r[i].param, "phonetic");

    json_value *g = example(a, "Patient-glossy.json");
    assert_non_null(g);
    assert_int_equal(bv__fhir_extract_index_ex(a, g, &r, &n, &errs), BV_OK);
    assert_int_equal(errs, 0);
    const bv_index_row *gp = find_kind(r, n, "general-practitioner", BV_IX_REFERENCE);
    assert_non_null(gp);
    assert_string_equal(gp->ref_type, "Practitioner");
    assert_string_equal(gp->ref_id, "example");
    bv_arena_free(a);
}

/* Whether (resource, code, rows) is one of the n pinned triples. */
static bool pinned(const char *const (*table)[3], size_t n, const char *resource, const char *code, const char *rows)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(table[k][0], resource) == 0 && strcmp(table[k][1], code) == 0 && strcmp(table[k][2], rows) == 0)
            return true;
    return false;
}

/* How a parameter's rows are stored: its own code alone; its own and its parts' (part_rows,
 * "name|family|given"); an earlier parameter's (shared, whatever those are); or a union of others'. */
typedef enum { ROWS_OWN, ROWS_PARTS, ROWS_SHARED, ROWS_UNION } rows_kind;

static rows_kind rows_kind_of(const fhir_search_param *sp, const char **first_out)
{
    const char *rows = fhir_search_param_rows(sp);
    static char first[128];
    size_t len = strcspn(rows, "|");
    assert_true(len < sizeof first);
    memcpy(first, rows, len);
    first[len] = '\0';
    *first_out = first;
    if (rows == sp->code) return ROWS_OWN;
    if (strcmp(first, sp->code) == 0) return ROWS_PARTS;
    const fhir_search_param *st = fhir_search_param_find(sp->resource, first);
    if (st && strcmp(fhir_search_param_rows(st), rows) == 0 && st != sp) return ROWS_SHARED;
    return ROWS_UNION;
}

/* Exactly the parameters whose rows are of this kind are the n pinned (resource, code, rows). */
static void assert_exactly(rows_kind kind, const char *const (*table)[3], size_t n)
{
    size_t found = 0;
    for (size_t i = 0; i < fhir_search_params_count; i++) {
        const fhir_search_param *sp = &fhir_search_params[i];
        const char *first, *rows = fhir_search_param_rows(sp);
        if (rows_kind_of(sp, &first) != kind) continue;
        found++;
        bool listed = pinned(table, n, sp->resource, sp->code, rows);
        if (!listed) fprintf(stderr, "unexpected: %s.%s searches %s\n", sp->resource, sp->code, rows);
        assert_true(listed);
    }
    assert_int_equal(found, n);
}

/* Parameters that share their rows: exactly the pairs whose expressions select the same
 * elements of one type, never a reference or a composite. */
static void test_stored_params(void **state)
{
    (void)state;
    static const char *const shared[][3] = {
        {"Patient", "phonetic", "name"},           {"Person", "phonetic", "name"},
        {"Practitioner", "phonetic", "name"},      {"RelatedPerson", "phonetic", "name"},
        {"CodeSystem", "url", "system"},           {"CapabilityStatement", "version", "fhirversion"},
    };
    size_t n_shared = 0;
    for (size_t i = 0; i < fhir_search_params_count; i++) {
        const fhir_search_param *sp = &fhir_search_params[i];
        const char *rows;
        if (rows_kind_of(sp, &rows) != ROWS_SHARED) continue;
        n_shared++;
        const fhir_search_param *st = fhir_search_param_find(sp->resource, rows);
        assert_non_null(st);
        assert_string_equal(st->resource, sp->resource);
        assert_int_equal(st->type, sp->type);
        assert_true(sp->type != FHIR_SP_REFERENCE && sp->type != FHIR_SP_COMPOSITE);
        const char *own;
        assert_true(rows_kind_of(st, &own) == ROWS_OWN || rows_kind_of(st, &own) == ROWS_PARTS);
        bool listed = pinned(shared, sizeof shared / sizeof shared[0], sp->resource, sp->code, st->code);
        if (!listed) fprintf(stderr, "unexpected: %s.%s stored as %s\n", sp->resource, sp->code, st->code);
        assert_true(listed);
    }
    assert_int_equal(n_shared, sizeof shared / sizeof shared[0]);
    const fhir_search_param *code = fhir_search_param_find("Observation", "code");
    assert_true(fhir_search_param_rows(code) == code->code);
    const fhir_search_param *combo = fhir_search_param_find("Observation", "combo-code");
    assert_string_equal(fhir_search_param_rows(combo), "code|component-code"); /* a union, not shared */
}

/* Parameters that are the union of others store no rows and search theirs: exactly these. */
static void test_union_params(void **state)
{
    (void)state;
    static const char *const unions[][3] = {
        {"Observation", "combo-code", "code|component-code"},
        {"Observation", "combo-data-absent-reason", "component-data-absent-reason|data-absent-reason"},
        {"Observation", "combo-value-concept", "component-value-concept|value-concept"},
        {"Observation", "combo-value-quantity", "component-value-quantity|value-quantity"},
        {"Observation", "combo-code-value-concept", "code-value-concept|component-code-value-concept"},
        {"Observation", "combo-code-value-quantity", "code-value-quantity|component-code-value-quantity"},
    };
    assert_exactly(ROWS_UNION, unions, sizeof unions / sizeof unions[0]);
    const fhir_search_param *cvq = fhir_search_param_find("Observation", "combo-code-value-quantity");
    assert_string_equal(fhir_search_param_component_rows(cvq, 0), "code-value-quantity#0|component-code-value-quantity#0");
    assert_string_equal(fhir_search_param_component_rows(cvq, 1), "code-value-quantity#1|component-code-value-quantity#1");
    const fhir_search_param *own = fhir_search_param_find("Observation", "code-value-quantity");
    assert_string_equal(fhir_search_param_component_rows(own, 1), "code-value-quantity#1");
    assert_null(fhir_search_param_component_rows(fhir_search_param_find("Observation", "code"), 0));
}

/* HumanName and Address parameters whose parts are parameters of their own: exactly these, and
 * their rows leave those parts to them. */
static void test_part_params(void **state)
{
    (void)state;
    static const char *const parts[][3] = {
        {"Patient", "name", "name|family|given"},
        {"Practitioner", "name", "name|family|given"},
        {"Patient", "address", "address|address-city|address-country|address-postalcode|address-state"},
        {"Practitioner", "address", "address|address-city|address-country|address-postalcode|address-state"},
        {"Person", "address", "address|address-city|address-country|address-postalcode|address-state"},
        {"RelatedPerson", "address", "address|address-city|address-country|address-postalcode|address-state"},
        {"Organization", "address", "address|address-city|address-country|address-postalcode|address-state"},
        {"Location", "address", "address|address-city|address-country|address-postalcode|address-state"},
    };
    assert_exactly(ROWS_PARTS, parts, sizeof parts / sizeof parts[0]);
    /* phonetic shares name's rows, and so its parts too */
    assert_string_equal(fhir_search_param_rows(fhir_search_param_find("Patient", "phonetic")), "name|family|given");
    assert_string_equal(fhir_search_param_rows(fhir_search_param_find("Person", "phonetic")), "name");

    bv_arena *a = bv_arena_new(1 << 14);
    const char *j = "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Smith\",\"given\":[\"Ann\",\"Rose\"],"
                    "\"prefix\":[\"Dr\"],\"suffix\":[\"PhD\"],\"text\":\"Dr Ann Smith\"}],"
                    "\"address\":[{\"line\":[\"1 High St\"],\"city\":\"Leeds\",\"district\":\"West\","
                    "\"postalCode\":\"LS1 1AA\",\"country\":\"UK\",\"text\":\"1 High St, Leeds\"}]}";
    json_value *o;
    json_error je;
    assert_int_equal(json_parse(a, j, strlen(j), NULL, &o, &je), BV_OK);
    bv_index_row *r;
    size_t n, errs = 9;
    assert_int_equal(bv__fhir_extract_index_ex(a, o, &r, &n, &errs), BV_OK);
    assert_int_equal(errs, 0);
    size_t n_name = 0, n_address = 0;
    for (size_t i = 0; i < n; i++) {
        n_name += strcmp(r[i].param, "name") == 0;
        n_address += strcmp(r[i].param, "address") == 0;
    }
    /* name: prefix, suffix, text; address: line, district, text */
    assert_int_equal(n_name, 3);
    assert_non_null(find_string(r, n, "name", "dr"));
    assert_non_null(find_string(r, n, "name", "phd"));
    assert_non_null(find_string(r, n, "name", "dr ann smith"));
    assert_null(find_string(r, n, "name", "smith"));
    assert_non_null(find_string(r, n, "family", "smith"));
    assert_non_null(find_string(r, n, "given", "rose"));
    assert_int_equal(n_address, 3);
    assert_non_null(find_string(r, n, "address", "1 high st"));
    assert_non_null(find_string(r, n, "address", "west"));
    assert_non_null(find_string(r, n, "address", "1 high st, leeds"));
    assert_null(find_string(r, n, "address", "leeds"));
    assert_non_null(find_string(r, n, "address-city", "leeds"));
    assert_non_null(find_string(r, n, "address-postalcode", "ls1 1aa"));
    assert_non_null(find_string(r, n, "address-country", "uk"));
    bv_arena_free(a);
}

static void test_observation_example(void **state)
{
    (void)state;
    if (!have_examples()) { printf("skipped: node_modules/hl7.fhir.r4.examples absent\n"); return; }
    bv_arena *a = bv_arena_new(1 << 16);
    json_value *o = example(a, "Observation-example.json");
    assert_non_null(o);
    bv_index_row *r;
    size_t n, errs = 9;
    assert_int_equal(bv__fhir_extract_index_ex(a, o, &r, &n, &errs), BV_OK);
    assert_int_equal(errs, 0);
    const bv_index_row *code = find_token(r, n, "code", "http://loinc.org", "29463-7");
    assert_non_null(code);
    assert_non_null(find_token(r, n, "code", "http://snomed.info/sct", "27113001"));
    assert_non_null(find_token(r, n, "category", NULL, "vital-signs"));
    assert_non_null(find_token(r, n, "status", NULL, "final"));
    const bv_index_row *vq = find_kind(r, n, "value-quantity", BV_IX_QUANTITY);
    assert_non_null(vq);
    assert_true(vq->num == 185.0);
    assert_true(vq->num_lo == 184.5 && vq->num_hi == 185.5);
    assert_string_equal(vq->code, "[lb_av]");
    assert_string_equal(vq->system, "http://unitsofmeasure.org");
    const bv_index_row *subj = find_kind(r, n, "subject", BV_IX_REFERENCE);
    assert_non_null(subj);
    assert_string_equal(subj->ref_type, "Patient");
    assert_string_equal(subj->ref_id, "example");
    const bv_index_row *pat = find_kind(r, n, "patient", BV_IX_REFERENCE);
    assert_non_null(pat);
    assert_string_equal(pat->ref_id, "example");
    const bv_index_row *date = find_kind(r, n, "date", BV_IX_DATE);
    assert_non_null(date);
    int64_t lo, hi;
    assert_int_equal(bv_fhir_date_range("2016-03-28", &lo, &hi), BV_OK);
    assert_true(date->lo == lo && date->hi == hi);
    /* combo-* parameters are unions of others (union_rows): no rows of their own */
    assert_int_equal(count_rows(r, n, "combo-code", BV_IX_TOKEN), 0);
    assert_int_equal(count_rows(r, n, "combo-value-quantity", BV_IX_QUANTITY), 0);
    assert_int_equal(count_rows(r, n, "combo-code-value-quantity#0", BV_IX_TOKEN), 0);
    /* composite code-value-quantity: one group holding the codes and the quantity */
    size_t n0 = count_rows(r, n, "code-value-quantity#0", BV_IX_TOKEN);
    size_t n1 = count_rows(r, n, "code-value-quantity#1", BV_IX_QUANTITY);
    assert_int_equal(n0, 4);
    assert_int_equal(n1, 1);
    int32_t grp = -1;
    for (size_t i = 0; i < n; i++)
        if (!strncmp(r[i].param, "code-value-quantity#", 20)) {
            assert_true(r[i].group > 0);
            if (grp < 0) grp = r[i].group;
            assert_int_equal(r[i].group, grp);
        }
    /* groups are unique across composites */
    for (size_t i = 0; i < n; i++)
        if (r[i].group == grp) assert_true(!strncmp(r[i].param, "code-value-quantity#", 20));
    /* no value-concept/value-string rows for a quantity observation */
    assert_int_equal(count_rows(r, n, "value-concept", BV_IX_TOKEN), 0);
    assert_int_equal(count_rows(r, n, "code-value-concept#0", BV_IX_TOKEN), 0);
    bv_arena_free(a);
}

static void test_special_forms(void **state)
{
    (void)state;
    bv_arena *a = bv_arena_new(1 << 16);
    const char *j = "{\"resourceType\":\"Observation\",\"id\":\"x\",\"status\":\"final\","
                    "\"meta\":{\"profile\":[\"http://example.org/p\"],\"tag\":[{\"system\":\"s\",\"code\":\"t\"}],"
                    "\"source\":\"http://src\"},"
                    "\"code\":{\"text\":\"only text\"},"
                    "\"subject\":{\"reference\":\"http://other.org/fhir/Patient/p9/_history/3\"},"
                    "\"performer\":[{\"reference\":\"#c\"},{\"reference\":\"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0\"},"
                    "{\"identifier\":{\"value\":\"x\"}}],"
                    "\"effectivePeriod\":{\"start\":\"2020-01-01\"},"
                    "\"valueQuantity\":{\"value\":1.50,\"unit\":\"mmol/L\"}}";
    json_value *o;
    json_error je;
    assert_int_equal(json_parse(a, j, strlen(j), NULL, &o, &je), BV_OK);
    bv_index_row *r;
    size_t n, errs = 9;
    assert_int_equal(bv__fhir_extract_index_ex(a, o, &r, &n, &errs), BV_OK);
    assert_int_equal(errs, 0);
    const bv_index_row *s = find_kind(r, n, "subject", BV_IX_REFERENCE);
    assert_non_null(s);
    assert_string_equal(s->ref_type, "Patient");
    assert_string_equal(s->ref_id, "p9");
    assert_string_equal(s->ref_version, "3");
    assert_string_equal(s->text, "http://other.org/fhir/Patient/p9/_history/3");
    assert_int_equal(count_rows(r, n, "performer", BV_IX_REFERENCE), 1);   /* urn:uuid only; #c and identifier skipped */
    const bv_index_row *perf = find_kind(r, n, "performer", BV_IX_REFERENCE);
    assert_null(perf->ref_type);
    const bv_index_row *d = find_kind(r, n, "date", BV_IX_DATE);
    assert_non_null(d);
    assert_true(d->hi > 253402300000000LL);   /* open end */
    const bv_index_row *q = find_kind(r, n, "value-quantity", BV_IX_QUANTITY);
    assert_non_null(q);
    assert_true(q->num == 1.5 && q->num_lo > 1.4949 && q->num_lo < 1.4951 && q->num_hi > 1.5049 && q->num_hi < 1.5051);
    assert_string_equal(q->code, "mmol/L");
    const bv_index_row *t = NULL;
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == BV_IX_TOKEN && !strcmp(r[i].param, "code") && r[i].text && !strcmp(r[i].text, "only text")) t = &r[i];
    assert_non_null(t);
    assert_null(t->code);
    const bv_index_row *pr = find_kind(r, n, "_profile", BV_IX_URI);
    assert_non_null(pr);
    assert_string_equal(pr->text, "http://example.org/p");
    assert_non_null(find_token(r, n, "_tag", "s", "t"));
    assert_non_null(find_kind(r, n, "_source", BV_IX_URI));
    assert_int_equal(count_rows(r, n, "_id", BV_IX_TOKEN), 0);
    /* not a resource */
    const char *bad = "{\"resourceType\":\"DomainResource\"}";
    json_value *b;
    assert_int_equal(json_parse(a, bad, strlen(bad), NULL, &b, &je), BV_OK);
    assert_int_equal(bv_fhir_extract_index(a, b, &r, &n), BV_EINVAL);
    bv_arena_free(a);
}

/* Many threads extracting at once share the compiled-expression cache (built by whichever
 * thread comes first) and must all get the same rows. */
typedef struct {
    const char *text;
    size_t len;
    size_t expect_rows;
    int bad;
} mt_job;

static void *mt_worker(void *arg)
{
    mt_job *j = arg;
    for (int k = 0; k < 50; k++) {
        bv_arena *a = bv_arena_new(1 << 16);
        json_value *v;
        json_error je;
        bv_index_row *r;
        size_t n, errs;
        if (json_parse(a, j->text, j->len, NULL, &v, &je) != BV_OK ||
            bv__fhir_extract_index_ex(a, v, &r, &n, &errs) != BV_OK || errs || (j->expect_rows && n != j->expect_rows)) {
            if (j->bad++ == 0) fprintf(stderr, "extraction gave %zu rows, %zu errors\n", n, errs);
        }
        bv_arena_free(a);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    if (!have_examples()) { printf("skipped: node_modules/hl7.fhir.r4.examples absent\n"); return; }
    char path[1200];
    snprintf(path, sizeof path, "%s/Observation-blood-pressure.json", examples_dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    mt_job jobs[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (mt_job){.text = buf, .len = len, .expect_rows = 27};   /* Observation-blood-pressure: 27 rows (incl. based-on:identifier, 2 display-only :text rows, 4 :ucum rows; no combo-* rows: unions) */
        assert_int_equal(pthread_create(&th[i], NULL, mt_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_all_examples(void **state)
{
    (void)state;
    if (!have_examples()) { printf("skipped: node_modules/hl7.fhir.r4.examples absent\n"); return; }
    assert_int_equal(bv__fhir_extract_compile_errors(), 0);
    DIR *d = opendir(examples_dir);
    assert_non_null(d);
    size_t files = 0, extracted = 0, skipped_big = 0, skipped_type = 0, unparsable = 0, rows_total = 0, errors = 0;
    size_t by_kind[7] = {0};
    double t_extract = 0, t0 = now_s();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".json") != 0) continue;
        if (!strcmp(de->d_name, "package.json") || de->d_name[0] == '.') continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", examples_dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        files++;
        if (st.st_size > 8 * 1024 * 1024) { skipped_big++; continue; }
        bv_arena *a = bv_arena_new(1 << 16);
        json_value *res = load(a, path, 0);
        if (!res) { unparsable++; bv_arena_free(a); continue; }
        const char *type = json_get_str(res, "resourceType");
        if (!type || !fhir_is_resource_type(type)) { skipped_type++; bv_arena_free(a); continue; }
        bv_index_row *rows;
        size_t n, errs = 0;
        double t1 = now_s();
        int rc = bv__fhir_extract_index_ex(a, res, &rows, &n, &errs);
        t_extract += now_s() - t1;
        assert_int_equal(rc, BV_OK);
        if (errs) printf("  %s: %zu parameter(s) failed to evaluate\n", de->d_name, errs);
        errors += errs;
        for (size_t i = 0; i < n; i++) {
            const bv_index_row *r = &rows[i];
            assert_non_null(r->param);
            if (r->kind == BV_IX_STRING) assert_non_null(r->norm);
            if (r->kind == BV_IX_URI) assert_non_null(r->text);
            if (r->kind == BV_IX_DATE) assert_true(r->lo <= r->hi);
            if ((unsigned)r->kind < 7) by_kind[r->kind]++;
        }
        rows_total += n;
        extracted++;
        bv_arena_free(a);
    }
    closedir(d);
    double total = now_s() - t0;
    printf("extraction: %zu files, %zu resources extracted, %zu rows (string %zu, token %zu, reference %zu, date %zu, "
           "number %zu, quantity %zu, uri %zu); skipped %zu > 8 MB, %zu not a concrete resource type, %zu unparsable; "
           "%zu evaluation errors; extract time %.2f s (%.0f us/resource), total with parsing %.2f s\n",
           files, extracted, rows_total, by_kind[0], by_kind[1], by_kind[2], by_kind[3], by_kind[4], by_kind[5],
           by_kind[6], skipped_big, skipped_type, unparsable, errors, t_extract,
           extracted ? t_extract * 1e6 / (double)extracted : 0.0, total);
    assert_int_equal(errors, 0);
    assert_int_equal(unparsable, 0);
    assert_true(extracted > 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),   /* first: the threads race to build the expression cache */
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_patient_example),
        cmocka_unit_test(test_stored_params),
        cmocka_unit_test(test_union_params),
        cmocka_unit_test(test_part_params),
        cmocka_unit_test(test_observation_example),
        cmocka_unit_test(test_special_forms),
        cmocka_unit_test(test_all_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
