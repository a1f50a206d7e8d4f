/* Shared by fuzz_http and fuzz_bundle: one temporary store and API for the whole fuzzing process
 * (a fresh folder under $TMPDIR, synchronous=NORMAL for speed; removed at exit). */
#ifndef FUZZ_STORE_ENV_H
#define FUZZ_STORE_ENV_H

#include "bevan/api.h"
#include "bevan/core.h"
#include "bevan/json.h"
#include "bevan/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bv_store *fz_store;
static bv_api *fz_api;
static char fz_dir[256];

static void fz_cleanup(void)
{
    if (fz_api) bv_api_free(fz_api);
    if (fz_store) bv_store_close(fz_store);
    char p[300];
    const char *names[] = {"bevan.db", "bevan.db-wal", "bevan.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, names[i]);
        unlink(p);
    }
    rmdir(fz_dir);
}

static bv_api *fz_env(void)
{
    if (fz_api) return fz_api;
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/bevan-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fz_dir)) abort();
    char err[256];
    bv_store_options so = {.dir = fz_dir, .sync_normal = true};
    if (bv_store_open(&so, &fz_store, err, sizeof err)) {
        fprintf(stderr, "fuzz: cannot open a store in %s: %s\n", fz_dir, err);
        abort();
    }
    bv_api_options ao = {.store = fz_store, .check_nhs_number = true, .base_path = "/fhir"};
    fz_api = bv_api_new(&ao);
    if (!fz_api) abort();
    bv_log_set_level(BV_LOG_ERROR); /* quiet: the inputs make many warnings */
    atexit(fz_cleanup);
    return fz_api;
}

/* A response body must be JSON whenever it is not empty (every answer is FHIR JSON). */
static void fz_check_response(int status, const char *body, size_t len)
{
    if (status < 100 || status > 599) abort();
    if (status == 500) {
        fprintf(stderr, "fuzz: 500 for client input: %.*s\n", (int)(len > 2000 ? 2000 : len), body);
        abort(); /* bad client input must be a 4xx, never a 500 */
    }
    if (len) {
        bv_arena *a = bv_arena_new(1 << 14);
        json_value *v;
        json_error e;
        json_limits lim = {0, 256, 0};
        if (json_parse(a, body, len, &lim, &v, &e) != BV_OK) {
            fprintf(stderr, "fuzz: response is not JSON (%s): %.*s\n", e.message, (int)(len > 2000 ? 2000 : len), body);
            abort();
        }
        if (status >= 400 && strcmp(json_get_str(v, "resourceType") ? json_get_str(v, "resourceType") : "", "OperationOutcome") != 0) {
            fprintf(stderr, "fuzz: a %d without an OperationOutcome: %.*s\n", status, (int)(len > 2000 ? 2000 : len), body);
            abort();
        }
        bv_arena_free(a);
    }
}

#endif
