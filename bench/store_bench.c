/* Store micro-benchmark (not a test): write throughput with group commit as concurrency rises,
 * point reads, and a few searches. Build and run commands are in docs/storage.md.
 *
 *   store_bench [-n PUTS] [-r READS] [--normal] [--dir DIR] [--keep]
 *
 * Every put is one write unit holding one Patient (~600 bytes, 8 index rows), as a FHIR
 * create is. "commits" counts group commits, i.e. durable syncs. */
#include "bevan/store.h"
#include "store/internal.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const families[] = {"smith", "jones", "taylor", "brown", "williams", "wilson", "johnson",
                                       "davies", "robinson", "wright", "thompson", "evans", "walker", "white"};
static const char *const cities[] = {"leeds", "york", "bristol", "cardiff", "glasgow", "belfast", "oxford"};

typedef struct {
    const char *id;
    int n;
} put_ctx;

static int put_fn(bv_store_txn *t, void *vctx)
{
    put_ctx *c = vctx;
    unsigned k = (unsigned)c->n;
    const char *fam = families[k % 14], *city = cities[k % 7];
    char body[1024], ident[32], phone[32];
    int64_t birth = (int64_t)(k % 30000) * 86400000LL - 946684800000LL; /* days from 1940 */
    snprintf(ident, sizeof ident, "MRN%08u", k);
    snprintf(phone, sizeof phone, "+44 113 %07u", k);
    int len = snprintf(body, sizeof body,
                       "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"meta\":{\"versionId\":\"1\"},"
                       "\"identifier\":[{\"system\":\"urn:oid:2.16.840.1.113883.2.1.4.1\",\"value\":\"%s\"}],"
                       "\"active\":true,\"name\":[{\"use\":\"official\",\"family\":\"%s\",\"given\":[\"Alex\",\"J\"]}],"
                       "\"telecom\":[{\"system\":\"phone\",\"value\":\"%s\",\"use\":\"home\"}],"
                       "\"gender\":\"%s\",\"birthDate\":\"1970-01-01\","
                       "\"address\":[{\"use\":\"home\",\"line\":[\"%u High Street\"],\"city\":\"%s\","
                       "\"postalCode\":\"LS1 4AP\",\"country\":\"GB\"}],"
                       "\"text\":{\"status\":\"generated\",\"div\":\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">"
                       "Alex J %s</div>\"}}",
                       c->id, ident, fam, phone, k % 2 ? "female" : "male", k % 500, city, fam);
    bv_index_row rows[] = {
        {.kind = BV_IX_STRING, .param = "family", .norm = fam, .text = fam},
        {.kind = BV_IX_STRING, .param = "name", .norm = fam, .text = fam},
        {.kind = BV_IX_STRING, .param = "name", .norm = "alex", .text = "Alex"},
        {.kind = BV_IX_TOKEN, .param = "identifier", .system = "urn:oid:2.16.840.1.113883.2.1.4.1", .code = ident},
        {.kind = BV_IX_TOKEN, .param = "gender", .system = "http://hl7.org/fhir/administrative-gender",
         .code = k % 2 ? "female" : "male"},
        {.kind = BV_IX_TOKEN, .param = "telecom", .system = "phone", .code = phone},
        {.kind = BV_IX_DATE, .param = "birthdate", .lo = birth, .hi = birth + 86400000 - 1},
        {.kind = BV_IX_STRING, .param = "address-city", .norm = city, .text = city},
    };
    bv_put p = {.type = "Patient", .id = c->id, .version = 1, .last_updated_ms = bv_txn_now_ms(t),
                .method = "POST", .body = body, .body_len = (size_t)len, .rows = rows,
                .n_rows = sizeof rows / sizeof rows[0]};
    return bv_txn_put(t, &p);
}

static int bench_patients; /* Observations refer to p0 .. p<bench_patients - 1> */

static const char *const loinc[] = {"29463-7", "8867-4", "8480-6", "8462-4", "2339-0", "718-7", "2093-3", "4548-4"};

/* An Observation of patient p<n % patients>. */
static int obs_fn(bv_store_txn *t, void *vctx)
{
    put_ctx *c = vctx;
    unsigned k = (unsigned)c->n;
    char body[768], ref[32];
    snprintf(ref, sizeof ref, "p%u", k % (unsigned)bench_patients);
    const char *code = loinc[k % 8];
    double value = 40.0 + (double)(k % 600) / 10.0;
    int64_t when = 1700000000000LL + (int64_t)k * 60000;
    int len = snprintf(body, sizeof body,
                       "{\"resourceType\":\"Observation\",\"id\":\"%s\",\"status\":\"final\","
                       "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"%s\"}]},"
                       "\"subject\":{\"reference\":\"Patient/%s\"},\"effectiveDateTime\":\"2023-11-14T22:13:20Z\","
                       "\"valueQuantity\":{\"value\":%.1f,\"unit\":\"kg\",\"system\":\"http://unitsofmeasure.org\","
                       "\"code\":\"kg\"}}",
                       c->id, code, ref, value);
    char text[40];
    snprintf(text, sizeof text, "Patient/%s", ref);
    bv_index_row rows[] = {
        {.kind = BV_IX_REFERENCE, .param = "subject", .ref_type = "Patient", .ref_id = ref, .text = text},
        {.kind = BV_IX_REFERENCE, .param = "patient", .ref_type = "Patient", .ref_id = ref, .text = text},
        {.kind = BV_IX_TOKEN, .param = "code", .system = "http://loinc.org", .code = code},
        {.kind = BV_IX_TOKEN, .param = "status", .system = "http://hl7.org/fhir/observation-status", .code = "final"},
        {.kind = BV_IX_DATE, .param = "date", .lo = when, .hi = when + 999},
        {.kind = BV_IX_QUANTITY, .param = "value-quantity", .num = value, .num_lo = value - 0.05,
         .num_hi = value + 0.05, .system = "http://unitsofmeasure.org", .code = "kg"},
    };
    bv_put p = {.type = "Observation", .id = c->id, .version = 1, .last_updated_ms = bv_txn_now_ms(t),
                .method = "POST", .body = body, .body_len = (size_t)len, .rows = rows,
                .n_rows = sizeof rows / sizeof rows[0]};
    return bv_txn_put(t, &p);
}

typedef struct {
    bv_store *s;
    bool obs;
    int from, to;
    int errors;
    unsigned seed;
    long reads;
    int n_ids;
} worker;

static void *put_worker(void *v)
{
    worker *w = v;
    char id[32];
    for (int i = w->from; i < w->to; i++) {
        snprintf(id, sizeof id, "%s%d", w->obs ? "o" : "p", i);
        put_ctx c = {.id = id, .n = i};
        if (bv_store_write(w->s, w->obs ? obs_fn : put_fn, &c) != 0) w->errors++;
    }
    return NULL;
}

static void *read_worker(void *v)
{
    worker *w = v;
    bv_arena *a = bv_arena_new(16384);
    bv_rng r;
    bv_rng_seed(&r, w->seed);
    char id[32];
    for (long i = 0; i < w->reads; i++) {
        snprintf(id, sizeof id, "p%u", bv_rng_below(&r, (uint32_t)w->n_ids));
        bv_record rec;
        if (bv_store_read(w->s, a, "Patient", id, &rec) != 0) w->errors++;
        bv_arena_reset(a);
    }
    bv_arena_free(a);
    return NULL;
}

static int next_id;

/* n puts spread over `threads` threads; prints units/s and commits/s. */
static int next_obs;

static void run_puts(bv_store *s, int threads, int n, bool obs)
{
    pthread_t th[64];
    worker w[64];
    uint64_t g0, u0, g1, u1;
    bv__store_stats(s, &g0, &u0, NULL);
    double t0 = now_s();
    int base = obs ? next_obs : next_id;
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.s = s, .obs = obs, .from = base + n * i / threads, .to = base + n * (i + 1) / threads};
        pthread_create(&th[i], NULL, put_worker, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        errors += w[i].errors;
    }
    double dt = now_s() - t0;
    if (obs) next_obs += n;
    else next_id += n;
    bv__store_stats(s, &g1, &u1, NULL);
    double units = (double)(u1 - u0), groups = (double)(g1 - g0);
    printf("%s threads=%-3d units=%-6.0f %9.0f units/s %8.0f commits/s  %6.1f units/commit%s\n", obs ? "obs    " : "puts   ", threads,
           units, units / dt, groups / dt, groups > 0 ? units / groups : 0, errors ? "  ERRORS" : "");
}

static void run_reads(bv_store *s, int threads, long reads)
{
    pthread_t th[64];
    worker w[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.s = s, .reads = reads / threads, .seed = 1234u + (unsigned)i, .n_ids = next_id};
        pthread_create(&th[i], NULL, read_worker, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        errors += w[i].errors;
    }
    double dt = now_s() - t0;
    printf("reads   threads=%-3d reads=%-6ld %9.0f reads/s%s\n", threads, reads, (double)reads / dt,
           errors ? "  ERRORS" : "");
}

static void run_search(bv_store *s, const char *name, const bv_search *q, int reps)
{
    bv_arena *a = bv_arena_new(65536);
    int64_t total = 0;
    size_t n = 0;
    double t0 = now_s();
    for (int i = 0; i < reps; i++) {
        bv_record *rs;
        if (bv_store_search(s, a, q, &rs, &n, &total) != 0) {
            printf("search  %-34s ERROR\n", name);
            break;
        }
        bv_arena_reset(a);
    }
    double dt = now_s() - t0;
    printf("search  %-34s %8.0f queries/s  (page %zu, total %lld)\n", name, reps / dt, n, (long long)total);
    bv_arena_free(a);
}

static void rm_flat(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    int n = 4000;
    long reads = 200000;
    bool normal = false, keep = false;
    char dir[256] = "";
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc && bv_str_to_u64(argv[i + 1], strlen(argv[i + 1]), 10000000, &v) == 0)
            n = (int)v, i++;
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc &&
                 bv_str_to_u64(argv[i + 1], strlen(argv[i + 1]), 100000000, &v) == 0)
            reads = (long)v, i++;
        else if (strcmp(argv[i], "--normal") == 0) normal = true;
        else if (strcmp(argv[i], "--keep") == 0) keep = true;
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) snprintf(dir, sizeof dir, "%s", argv[++i]);
        else {
            fprintf(stderr, "usage: %s [-n PUTS] [-r READS] [--normal] [--dir DIR] [--keep]\n", argv[0]);
            return 2;
        }
    }
    if (!*dir) {
        snprintf(dir, sizeof dir, "/tmp/bevan-bench-XXXXXX");
        if (!mkdtemp(dir)) return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    bv_log_set_level(getenv("BEVAN_STORE_DEBUG") ? BV_LOG_DEBUG : BV_LOG_WARN);
    bv_store_options o = {.dir = dir, .sync_normal = normal};
    bv_store *s;
    char err[256];
    if (bv_store_open(&o, &s, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    printf("store_bench: %s, synchronous=%s, %d puts per run\n", dir, normal ? "NORMAL" : "FULL", n);
    static const int threads[] = {1, 2, 4, 8, 16, 32};
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) run_puts(s, threads[i], n, false);
    bench_patients = next_id;
    run_puts(s, 8, 4 * n, true);
    run_reads(s, 1, reads);
    run_reads(s, 8, reads);

    bv_pred gender = {.kind = BV_IX_TOKEN, .param = "gender", .op = BV_OP_TOKEN, .code = "female"};
    bv_pred ident = {.kind = BV_IX_TOKEN, .param = "identifier", .op = BV_OP_TOKEN, .code = "MRN00001234"};
    bv_pred fam = {.kind = BV_IX_STRING, .param = "name", .op = BV_OP_STR_STARTS, .text = "wil"};
    bv_pred city = {.kind = BV_IX_STRING, .param = "address-city", .op = BV_OP_STR_STARTS, .text = "glasgow"};
    int64_t lo = -946684800000LL + 1000LL * 86400000LL;
    bv_pred birth = {.kind = BV_IX_DATE, .param = "birthdate", .op = BV_OP_GE, .lo = lo, .hi = lo + 86400000 - 1};
    bv_or g_gender = {&gender, 1}, g_ident = {&ident, 1}, g_fam = {&fam, 1}, g_city = {&city, 1}, g_birth = {&birth, 1};
    bv_or two[] = {g_fam, g_city};
    bv_sort by_birth = {.param = "birthdate", .kind = BV_IX_DATE};
    bv_search q1 = {.type = "Patient", .ands = &g_ident, .n_ands = 1, .count = 20};
    bv_search q2 = {.type = "Patient", .ands = &g_gender, .n_ands = 1, .count = 20};
    bv_search q3 = {.type = "Patient", .ands = &g_gender, .n_ands = 1, .count = 20, .want_total = true};
    bv_search q4 = {.type = "Patient", .ands = two, .n_ands = 2, .count = 20, .want_total = true};
    bv_search q5 = {.type = "Patient", .ands = &g_birth, .n_ands = 1, .count = 20, .sort = &by_birth, .n_sort = 1};
    run_search(s, "identifier=MRN00001234", &q1, 2000);
    run_search(s, "gender=female (page)", &q2, 2000);
    run_search(s, "gender=female (page+total)", &q3, 50);
    run_search(s, "name=wil&address-city=glasgow (+total)", &q4, 200);
    run_search(s, "birthdate=ge... _sort=birthdate", &q5, 50);

    bv_pred subj = {.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .ref_type = "Patient", .ref_id = "p77"};
    bv_pred code = {.kind = BV_IX_TOKEN, .param = "code", .op = BV_OP_TOKEN, .system_given = true,
                    .system = "http://loinc.org", .code = "8867-4"};
    bv_pred recent = {.kind = BV_IX_DATE, .param = "date", .op = BV_OP_GE, .lo = 1700000000000LL + 60000LL * 3 * n,
                      .hi = 1700000000000LL + 60000LL * 3 * n + 999};
    bv_or g_subj = {&subj, 1}, g_code = {&code, 1}, g_recent = {&recent, 1};
    bv_or subj_code[] = {g_subj, g_code}, code_recent[] = {g_code, g_recent};
    bv_sort by_date_desc = {.param = "date", .kind = BV_IX_DATE, .desc = true};
    bv_search o1 = {.type = "Observation", .ands = &g_subj, .n_ands = 1, .count = 20, .want_total = true};
    bv_search o2 = {.type = "Observation", .ands = subj_code, .n_ands = 2, .count = 20, .sort = &by_date_desc, .n_sort = 1};
    bv_search o3 = {.type = "Observation", .ands = code_recent, .n_ands = 2, .count = 20, .want_total = true};
    bv_search chain = {.type = "Patient", .ands = &g_ident, .n_ands = 1};
    bv_pred via = {.kind = BV_IX_REFERENCE, .param = "subject", .op = BV_OP_REF, .ref_type = "Patient", .chain = &chain};
    bv_or g_via = {&via, 1};
    bv_search o4 = {.type = "Observation", .ands = &g_via, .n_ands = 1, .count = 20};
    bv_search has = {.type = "Observation", .ands = code_recent, .n_ands = 2};
    bv_pred hp = {.kind = BV_IX_REFERENCE, .param = "subject", .has = &has};
    bv_or g_has = {&hp, 1};
    bv_search p6 = {.type = "Patient", .ands = &g_has, .n_ands = 1, .count = 20};
    run_search(s, "Obs subject=Patient/p77 (+total)", &o1, 2000);
    run_search(s, "Obs subject&code _sort=-date", &o2, 2000);
    run_search(s, "Obs code&date=ge(last 25%) (+total)", &o3, 50);
    run_search(s, "Obs subject:Patient.identifier=..", &o4, 2000);
    run_search(s, "Pat _has:Obs:subject:code&date", &p6, 50);

    char msg[256];
    double t0 = now_s();
    int rc = bv_store_check(s, msg, sizeof msg);
    printf("check   %s in %.2f s\n", rc ? msg : "ok", now_s() - t0);
    bv_store_close(s);
    if (!keep) rm_flat(dir);
    return 0;
}
