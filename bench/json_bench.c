/* JSON parse/write throughput. Each iteration parses the file into a reset arena, then writes it
 * compact into a reused buffer; parse and write are timed separately. One untimed warm-up
 * iteration first, so the file read and first-touch page faults are not counted.
 *
 * Build (from the repo root):
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude bench/json_bench.c \
 *      src/json/parse.c src/json/write.c src/json/dom.c src/core/mem.c src/core/misc.c src/core/parse.c \
 *      -o /tmp/json_bench -lm -lpthread
 * Run:
 *   /tmp/json_bench node_modules/hl7.fhir.r4.examples/Bundle-resources.json 5
 *   /tmp/json_bench node_modules/hl7.fhir.r4.examples/Bundle-bundle-references.json 10000 */
#include "bevan/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "node_modules/hl7.fhir.r4.examples/Bundle-resources.json";
    uint64_t n = 5;
    if (argc > 2 && (bv_str_to_u64(argv[2], strlen(argv[2]), 100000000, &n) != BV_OK || n == 0)) {
        fprintf(stderr, "usage: json_bench [file] [iterations]\n");
        return 2;
    }
    long iters = (long)n;
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    if (fseek(f, 0, SEEK_END) != 0) { perror(path); return 1; }
    long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    size_t len = fread(text, 1, (size_t)size, f);
    fclose(f);

    json_limits lim = {len + 1, 0, 0};   /* the bench file may exceed the request body cap */
    /* Size the arena's first block (kept by bv_arena_reset) from a trial parse, so the timing is of
     * the parser and not of the arena's 4 MB blocks being mmapped and faulted in again each time. */
    bv_arena *a = bv_arena_new(1 << 20);
    {
        json_value *v;
        if (json_parse(a, text, len, &lim, &v, NULL) == BV_OK) {
            size_t used = bv_arena_used(a);
            bv_arena_free(a);
            a = bv_arena_new(used + used / 8 + 4096);
        }
    }
    bv_buf out;
    bv_buf_init(&out, 0);
    double tp = 0, tw = 0;
    size_t out_len = 0, arena = 0;
    for (long i = -1; i < iters; i++) {
        bv_arena_reset(a);
        bv_buf_reset(&out);
        json_value *v;
        json_error err;
        double t0 = now_s();
        if (json_parse(a, text, len, &lim, &v, &err) != BV_OK) {
            fprintf(stderr, "%s: %s at line %zu column %zu\n", path, err.message, err.line, err.column);
            return 1;
        }
        double t1 = now_s();
        if (json_write(&out, v, false) != BV_OK) { fprintf(stderr, "write failed\n"); return 1; }
        double t2 = now_s();
        if (i < 0) continue;  /* warm-up */
        tp += t1 - t0;
        tw += t2 - t1;
        out_len = out.len;
        arena = bv_arena_used(a);
    }
    double mb = (double)len * (double)iters / 1e6;
    printf("%s: %zu bytes x %ld\n", path, len, iters);
    printf("  parse  %8.1f MB/s   (arena %.1fx input)\n", mb / tp, (double)arena / (double)len);
    printf("  write  %8.1f MB/s   (of input; compact output %zu bytes)\n", mb / tw, out_len);
    printf("  both   %8.1f MB/s\n", mb / (tp + tw));
    bv_buf_free(&out);
    bv_arena_free(a);
    free(text);
    return 0;
}
