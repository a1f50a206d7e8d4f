/* Unit tests: the demo data generator (src/demo/). Determinism, well-formed transaction Bundles,
 * every resource valid against the R4 definitions, valid and unique NHS numbers, references that
 * resolve, plausible counts, argument checks and emit's early stop. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bevan/demo.h"
#include "bevan/json.h"
#include "bevan/fhir.h"
#include "bevan/care.h"

/* ---- hashing emitter ---- */

typedef struct {
    size_t bundles, bytes;
    uint64_t hash;
} hash_ctx;

static int hash_emit(void *ctx, const char *json, size_t len)
{
    hash_ctx *h = ctx;
    h->bundles++;
    h->bytes += len;
    for (size_t i = 0; i < len; i++) {
        h->hash ^= (unsigned char)json[i];
        h->hash *= 1099511628211ull; /* FNV-1a */
    }
    assert_int_equal(json[len], '\0');
    return 0;
}

static hash_ctx run_hash(uint64_t seed, unsigned patients, unsigned practices)
{
    hash_ctx h = {0, 0, 1469598103934665603ull};
    bv_demo_options o = {.seed = seed, .patients = patients, .practices = practices};
    assert_int_equal(bv_demo_generate(&o, hash_emit, &h), 0);
    return h;
}

static void test_deterministic(void **state)
{
    (void)state;
    hash_ctx a = run_hash(42, 60, 0), b = run_hash(42, 60, 0), c = run_hash(43, 60, 0);
    assert_int_equal(a.bundles, 61);
    assert_int_equal(a.bytes, b.bytes);
    assert_true(a.hash == b.hash);
    assert_true(a.hash != c.hash);
    /* Also with several practices. */
    hash_ctx d = run_hash(7, 25, 4), e = run_hash(7, 25, 4);
    assert_true(d.hash == e.hash && d.bytes == e.bytes);
}

/* ---- full check: parse, validate, resolve references, count ---- */

enum { T_PATIENT, T_CONDITION, T_OBSERVATION, T_ENCOUNTER, T_MEDREQ, T_ALLERGY, T_ORG, T_LOC, T_PRAC, T_ROLE,
       N_TYPES };
static const char *const TYPES[N_TYPES] = { "Patient", "Condition", "Observation", "Encounter",
                                            "MedicationRequest", "AllergyIntolerance", "Organization",
                                            "Location", "Practitioner", "PractitionerRole" };

typedef struct {
    unsigned bundles;
    size_t counts[N_TYPES];
    char (*nhs)[11];
    size_t n_nhs, cap_nhs;
    char **shared;            /* "Type/id" of every shared resource, sorted */
    size_t n_shared;
    const char **urls;        /* fullUrls of the current patient bundle */
    size_t n_urls;
    size_t refs_checked;
    size_t obs_min, obs_max;
} check_ctx;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int type_index(const char *t)
{
    for (int i = 0; i < N_TYPES; i++)
        if (t && strcmp(t, TYPES[i]) == 0) return i;
    return -1;
}

static void check_refs(check_ctx *c, const json_value *v)
{
    if (json_is(v, JSON_ARRAY)) {
        for (size_t i = 0; i < json_count(v); i++) check_refs(c, json_at(v, i));
        return;
    }
    if (!json_is(v, JSON_OBJECT)) return;
    for (size_t i = 0; i < v->u.obj.count; i++) {
        const json_member *m = &v->u.obj.members[i];
        if (strcmp(m->key, "reference") == 0 && json_is(m->value, JSON_STRING)) {
            const char *ref = json_str(m->value);
            bool found = false;
            if (strncmp(ref, "urn:uuid:", 9) == 0) {
                for (size_t k = 0; k < c->n_urls && !found; k++) found = strcmp(c->urls[k], ref) == 0;
            } else {
                found = bsearch(&ref, c->shared, c->n_shared, sizeof(char *), cmp_str) != NULL;
            }
            if (!found) fail_msg("unresolved reference %s in bundle %u", ref, c->bundles);
            c->refs_checked++;
        } else {
            check_refs(c, m->value);
        }
    }
}

static void fail_with_outcome(const bv_outcome *oo, const char *type, unsigned bundle, size_t entry)
{
    for (size_t i = 0; i < oo->n; i++)
        print_error("  %s: %s\n", oo->issues[i].expression ? oo->issues[i].expression : "-",
                    oo->issues[i].diagnostics ? oo->issues[i].diagnostics : "-");
    fail_msg("%s in bundle %u entry %zu is invalid", type, bundle, entry);
}

static int check_emit(void *ctx, const char *json, size_t len)
{
    check_ctx *c = ctx;
    bv_arena *a = bv_arena_new(1 << 16);
    json_value *doc = NULL;
    json_error err;
    json_limits lim = {0};
    if (json_parse(a, json, len, &lim, &doc, &err) != BV_OK)
        fail_msg("bundle %u does not parse: %s at %zu:%zu", c->bundles, err.message, err.line, err.column);
    bool shared = c->bundles == 0;
    assert_string_equal(json_get_str(doc, "resourceType"), "Bundle");
    assert_string_equal(json_get_str(doc, "type"), "transaction");
    bv_outcome oo;
    bv_outcome_init(&oo, a);
    bv_validate_opts vo = {.allow_missing_id = !shared, .check_nhs_number = true};
    if (bv_fhir_validate(doc, "Bundle", &vo, &oo)) fail_with_outcome(&oo, "Bundle", c->bundles, 0);

    const json_value *entries = json_get(doc, "entry");
    size_t n = json_count(entries), n_obs = 0;
    assert_true(n >= 1 && n <= BV_MAX_BUNDLE_ENTRIES);
    c->urls = realloc(c->urls, n * sizeof(char *));
    c->n_urls = 0;
    for (size_t i = 0; i < n; i++) {
        const json_value *e = json_at(entries, i), *res = json_get(e, "resource"), *req = json_get(e, "request");
        const char *type = json_get_str(res, "resourceType");
        int t = type_index(type);
        assert_true(t >= 0);
        c->counts[t]++;
        if (t == T_OBSERVATION) n_obs++;
        if (shared) {
            /* PUT Type/id with the id in the resource */
            char url[128];
            snprintf(url, sizeof url, "%s/%s", type, json_get_str(res, "id"));
            assert_string_equal(json_get_str(req, "method"), "PUT");
            assert_string_equal(json_get_str(req, "url"), url);
            assert_true(t >= T_ORG);
            c->shared = realloc(c->shared, (c->n_shared + 1) * sizeof(char *));
            c->shared[c->n_shared++] = strdup(url);
        } else {
            assert_string_equal(json_get_str(req, "method"), "POST");
            assert_string_equal(json_get_str(req, "url"), type);
            assert_null(json_get(res, "id"));
            const char *fu = json_get_str(e, "fullUrl");
            assert_non_null(fu);
            assert_int_equal(strlen(fu), 9 + 36);
            assert_memory_equal(fu, "urn:uuid:", 9);
            for (size_t k = 0; k < c->n_urls; k++) assert_string_not_equal(c->urls[k], fu);
            c->urls[c->n_urls++] = fu;
            assert_true(t < T_ORG);
            assert_true((t == T_PATIENT) == (i == 0)); /* the Patient comes first */
        }
        bv_outcome_init(&oo, a);
        if (bv_fhir_validate(res, type, &vo, &oo)) fail_with_outcome(&oo, type, c->bundles, i);
        if (t == T_PATIENT) {
            const json_value *id = json_at(json_get(res, "identifier"), 0);
            assert_string_equal(json_get_str(id, "system"), "https://fhir.nhs.uk/Id/nhs-number");
            const char *nhs = json_get_str(id, "value");
            assert_true(bv_nhs_number_valid(nhs));
            assert_memory_equal(nhs, "999", 3);
            char want[96];
            snprintf(want, sizeof want, "identifier=https://fhir.nhs.uk/Id/nhs-number|%s", nhs);
            assert_string_equal(json_get_str(req, "ifNoneExist"), want);
            if (c->n_nhs == c->cap_nhs) {
                c->cap_nhs = c->cap_nhs ? c->cap_nhs * 2 : 256;
                c->nhs = realloc(c->nhs, c->cap_nhs * sizeof *c->nhs);
            }
            memcpy(c->nhs[c->n_nhs++], nhs, 11);
        }
    }
    if (shared) {
        qsort(c->shared, c->n_shared, sizeof(char *), cmp_str);
    } else {
        check_refs(c, entries);
        if (n_obs < c->obs_min) c->obs_min = n_obs;
        if (n_obs > c->obs_max) c->obs_max = n_obs;
    }
    c->bundles++;
    bv_arena_free(a);
    return 0;
}

static int cmp_nhs(const void *a, const void *b) { return memcmp(a, b, 10); }

static void check_ctx_free(check_ctx *c)
{
    for (size_t i = 0; i < c->n_shared; i++) free(c->shared[i]);
    free(c->shared);
    free(c->urls);
    free(c->nhs);
}

static void run_check(uint64_t seed, unsigned patients, unsigned practices, check_ctx *c)
{
    memset(c, 0, sizeof *c);
    c->obs_min = SIZE_MAX;
    bv_demo_options o = {.seed = seed, .patients = patients, .practices = practices};
    assert_int_equal(bv_demo_generate(&o, check_emit, c), 0);
    assert_int_equal(c->bundles, patients + 1);
    assert_int_equal(c->n_nhs, patients);
    if (c->n_nhs) qsort(c->nhs, c->n_nhs, sizeof *c->nhs, cmp_nhs);
    for (size_t i = 1; i < c->n_nhs; i++)
        if (memcmp(c->nhs[i - 1], c->nhs[i], 10) == 0) fail_msg("duplicate NHS number %s", c->nhs[i]);
}

static void test_valid_and_plausible(void **state)
{
    (void)state;
    check_ctx c;
    const unsigned np = 300;
    run_check(2026, np, 0, &c);
    print_message("demo, %u patients: %zu Patient, %zu Condition, %zu Observation (%zu-%zu per patient), "
                  "%zu Encounter, %zu MedicationRequest, %zu AllergyIntolerance, %zu Organization, "
                  "%zu Location, %zu Practitioner, %zu PractitionerRole; %zu references resolved\n",
                  np, c.counts[T_PATIENT], c.counts[T_CONDITION], c.counts[T_OBSERVATION], c.obs_min, c.obs_max,
                  c.counts[T_ENCOUNTER], c.counts[T_MEDREQ], c.counts[T_ALLERGY], c.counts[T_ORG], c.counts[T_LOC],
                  c.counts[T_PRAC], c.counts[T_ROLE], c.refs_checked);
    assert_int_equal(c.counts[T_PATIENT], np);
    assert_int_equal(c.counts[T_ORG], 1); /* 300 / 500 + 1 */
    assert_int_equal(c.counts[T_LOC], 1);
    assert_true(c.counts[T_PRAC] >= 3 && c.counts[T_PRAC] <= 13);
    assert_int_equal(c.counts[T_ROLE], c.counts[T_PRAC]);
    /* Per patient, on average: 25-60 observations, 0.5-3 conditions, 2-10 encounters,
     * 0.2-2 repeat prescriptions, and an allergy for 2-35%. */
    assert_in_range(c.counts[T_OBSERVATION], 25 * np, 60 * np);
    assert_in_range(c.counts[T_CONDITION], np / 2, 3 * np);
    assert_in_range(c.counts[T_ENCOUNTER], 2 * np, 10 * np);
    assert_in_range(c.counts[T_MEDREQ], np / 5, 2 * np);
    assert_in_range(c.counts[T_ALLERGY], np / 50, np * 35 / 100);
    assert_true(c.obs_max <= 130);
    check_ctx_free(&c);
}

static void test_practices(void **state)
{
    (void)state;
    check_ctx c;
    run_check(5, 40, 3, &c);
    assert_int_equal(c.counts[T_ORG], 3);
    assert_int_equal(c.counts[T_LOC], 3);
    assert_true(c.counts[T_PRAC] >= 9);
    check_ctx_free(&c);

    run_check(5, 0, 0, &c); /* shared bundle only */
    assert_int_equal(c.counts[T_ORG], 1);
    assert_int_equal(c.counts[T_PATIENT], 0);
    check_ctx_free(&c);

    run_check(5, 3, 80, &c); /* capped */
    assert_int_equal(c.counts[T_ORG], BV_DEMO_MAX_PRACTICES);
    check_ctx_free(&c);
}

/* NHS numbers over a bigger population, found by scanning the text (no parsing). */
typedef struct {
    char (*nhs)[11];
    size_t n;
} nhs_ctx;

static int nhs_emit(void *ctx, const char *json, size_t len)
{
    nhs_ctx *c = ctx;
    static const char key[] = "\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"";
    const char *p = strstr(json, key);
    if (!p) return 0; /* shared bundle */
    p += sizeof key - 1;
    assert_true(p + 10 < json + len);
    memcpy(c->nhs[c->n], p, 10);
    c->nhs[c->n][10] = '\0';
    assert_true(bv_nhs_number_valid(c->nhs[c->n]));
    c->n++;
    return 0;
}

static void test_nhs_numbers_unique(void **state)
{
    (void)state;
    const unsigned np = 5000;
    nhs_ctx c = {calloc(np, 11), 0};
    bv_demo_options o = {.seed = 99, .patients = np};
    assert_int_equal(bv_demo_generate(&o, nhs_emit, &c), 0);
    assert_int_equal(c.n, np);
    qsort(c.nhs, c.n, 11, cmp_nhs);
    for (size_t i = 1; i < c.n; i++)
        if (memcmp(c.nhs[i - 1], c.nhs[i], 10) == 0) fail_msg("duplicate NHS number %s", c.nhs[i]);
    free(c.nhs);
}

static int stop_emit(void *ctx, const char *json, size_t len)
{
    (void)json;
    (void)len;
    unsigned *calls = ctx;
    return ++*calls == 3 ? 7 : 0;
}

static int never_emit(void *ctx, const char *json, size_t len)
{
    (void)ctx;
    (void)json;
    (void)len;
    fail_msg("emit called");
    return 0;
}

static void test_emit_stop_and_args(void **state)
{
    (void)state;
    unsigned calls = 0;
    bv_demo_options o = {.seed = 1, .patients = 10};
    assert_int_equal(bv_demo_generate(&o, stop_emit, &calls), 7);
    assert_int_equal(calls, 3);

    assert_int_equal(bv_demo_generate(NULL, never_emit, NULL), BV_EINVAL);
    assert_int_equal(bv_demo_generate(&o, NULL, NULL), BV_EINVAL);
    bv_demo_options big = {.seed = 1, .patients = BV_DEMO_MAX_PATIENTS + 1};
    assert_int_equal(bv_demo_generate(&big, never_emit, NULL), BV_EINVAL);
}

/* ---- the demo virtual ward (docs/ward.md) ---- */
typedef struct {
    unsigned bundles, careplans, careteams, ward_obs;
    char nhs[64][11];
    unsigned n_nhs;
} ward_ctx;

static int ward_emit(void *ctx, const char *json, size_t len)
{
    ward_ctx *w = ctx;
    bv_arena *a = bv_arena_new(1 << 16);
    json_value *doc;
    json_error err;
    assert_int_equal(json_parse(a, json, len, NULL, &doc, &err), BV_OK);
    const json_value *entries = json_get(doc, "entry");
    bool ward_bundle = false;
    for (size_t i = 0; i < json_count(entries); i++) {
        const json_value *res = json_get(json_at(entries, i), "resource");
        const char *type = json_get_str(res, "resourceType");
        bv_outcome oo;
        bv_outcome_init(&oo, a);
        bv_validate_opts vo = {.allow_missing_id = true, .check_nhs_number = true};
        if (bv_fhir_validate(res, type, &vo, &oo) || bv_care_check_write(a, res, &oo))
            fail_with_outcome(&oo, type, w->bundles, i);
        if (strcmp(type, "CareTeam") == 0) w->careteams++;
        if (strcmp(type, "CarePlan") == 0) {
            bv_care_plan p;
            assert_int_equal(bv_care_plan_parse(a, res, &p, NULL), 0);
            assert_true(p.virtual_ward);
            assert_string_equal(p.ward_id, "demo-ward-1");
            w->careplans++;
            ward_bundle = true;
        }
        if (strcmp(type, "Patient") == 0 && w->n_nhs < 64)
            memcpy(w->nhs[w->n_nhs++], json_get_str(json_at(json_get(res, "identifier"), 0), "value"), 11);
        bv_reading r;
        if (ward_bundle && strcmp(type, "Observation") == 0 && bv_care_reading(res, &r) == 0) w->ward_obs++;
    }
    w->bundles++;
    bv_arena_free(a);
    return 0;
}

static void test_ward(void **state)
{
    (void)state;
    const int64_t now = 1773176400000LL;   /* 2026-03-10T21:00:00Z */
    ward_ctx w;
    memset(&w, 0, sizeof w);
    bv_demo_options o = {.seed = 9, .patients = 5, .ward_patients = 12, .ward_now_ms = now};
    assert_int_equal(bv_demo_generate(&o, ward_emit, &w), 0);
    assert_int_equal(w.bundles, 1 + 5 + 12);
    assert_int_equal(w.careteams, 1);
    assert_int_equal(w.careplans, 12);
    /* 14 days x 3 sittings x SpO2 + pulse, plus 5 more each morning, except those who stopped */
    assert_in_range(w.ward_obs, 9 * 14 * 11, 12 * 14 * 11);
    assert_int_equal(w.n_nhs, 17);
    qsort(w.nhs, w.n_nhs, sizeof w.nhs[0], cmp_nhs);
    for (unsigned i = 1; i < w.n_nhs; i++) assert_memory_not_equal(w.nhs[i - 1], w.nhs[i], 10);
    /* deterministic for the same options */
    hash_ctx h1 = {0, 0, 1469598103934665603ull}, h2 = h1;
    assert_int_equal(bv_demo_generate(&o, hash_emit, &h1), 0);
    assert_int_equal(bv_demo_generate(&o, hash_emit, &h2), 0);
    assert_true(h1.hash == h2.hash);
    bv_demo_options too_many = {.seed = 1, .ward_patients = BV_DEMO_MAX_WARD + 1};
    assert_int_equal(bv_demo_generate(&too_many, hash_emit, &h1), BV_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_valid_and_plausible),
        cmocka_unit_test(test_practices),
        cmocka_unit_test(test_nhs_numbers_unique),
        cmocka_unit_test(test_emit_stop_and_args),
        cmocka_unit_test(test_ward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
