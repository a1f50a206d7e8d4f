/* Allocation policy: out-of-memory is fatal (log and abort), so callers never check for NULL. */
#include "bevan/core.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void bv_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bevan: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void *bv_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) bv_panic("out of memory (%zu bytes)", n);
    return p;
}

void *bv_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) bv_panic("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *bv_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) bv_panic("out of memory (%zu bytes)", n);
    return q;
}

char *bv_strndup(const char *s, size_t n)
{
    char *p = bv_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *bv_strdup(const char *s) { return bv_strndup(s, strlen(s)); }

/* ---- Arena: a chain of blocks; large requests get a block of their own. ---- */
typedef struct arena_block {
    struct arena_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} arena_block;

struct bv_arena {
    arena_block *head;
    size_t first_size;
    size_t total;
};

static arena_block *block_new(size_t size)
{
    arena_block *b = bv_malloc(sizeof(arena_block) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

bv_arena *bv_arena_new(size_t first_block)
{
    bv_arena *a = bv_malloc(sizeof *a);
    a->first_size = first_block ? first_block : 8192;
    a->head = block_new(a->first_size);
    a->total = 0;
    return a;
}

void bv_arena_free(bv_arena *a)
{
    if (!a) return;
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

void bv_arena_reset(bv_arena *a)
{
    arena_block *b = a->head, *first = NULL;
    while (b) {
        arena_block *next = b->next;
        if (!next) first = b; else free(b);
        b = next;
    }
    /* The last block in the chain is the first one allocated. */
    a->head = first;
    if (first) first->used = 0;
    a->total = 0;
}

void *bv_arena_alloc(bv_arena *a, size_t n)
{
    size_t need = (n + 15u) & ~(size_t)15u;
    if (need < n) bv_panic("arena allocation overflow");
    arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t size = a->head ? a->head->size * 2 : a->first_size;
        if (size > 4u * 1024u * 1024u) size = 4u * 1024u * 1024u;
        if (size < need) size = need;
        b = block_new(size);
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->total += need;
    return p;
}

void *bv_arena_calloc(bv_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) bv_panic("arena calloc overflow");
    void *p = bv_arena_alloc(a, n * size);
    memset(p, 0, n * size);
    return p;
}

char *bv_arena_strndup(bv_arena *a, const char *s, size_t n)
{
    char *p = bv_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *bv_arena_strdup(bv_arena *a, const char *s) { return bv_arena_strndup(a, s, strlen(s)); }

char *bv_arena_printf(bv_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) bv_panic("bad format");
    char *p = bv_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

size_t bv_arena_used(const bv_arena *a) { return a->total; }

/* ---- Capped buffer ---- */
void bv_buf_init(bv_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void bv_buf_free(bv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void bv_buf_reset(bv_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

static int buf_reserve(bv_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) return BV_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (b->max && need - 1 > b->max) return BV_ETOOBIG;
    if (need <= b->cap) return BV_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    b->data = bv_realloc(b->data, cap);
    b->cap = cap;
    return BV_OK;
}

int bv_buf_append(bv_buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return BV_OK;
}

int bv_buf_puts(bv_buf *b, const char *s) { return bv_buf_append(b, s, strlen(s)); }
int bv_buf_putc(bv_buf *b, char c) { return bv_buf_append(b, &c, 1); }

int bv_buf_vprintf(bv_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n < 0) { va_end(ap2); return BV_EINVAL; }
    int rc = buf_reserve(b, (size_t)n);
    if (rc) { va_end(ap2); return rc; }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
    return BV_OK;
}

int bv_buf_printf(bv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = bv_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *bv_buf_cstr(bv_buf *b) { return b->data ? b->data : ""; }

char *bv_buf_steal(bv_buf *b, size_t *len_out)
{
    char *p = b->data ? b->data : bv_strdup("");
    if (len_out) *len_out = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- the process heap (docs/operations.md, "Memory") ---- */

static atomic_ulong heap_trims;

void bv_heap_tune(void)
{
    /* glibc gives each thread an arena of its own, up to 8 per CPU, and each keeps its free top
     * resident. Measured after the Synthea ingest on 2 CPUs: 16 arenas, RSS 119-120 MB; an arena
     * per CPU, 88-95 MB, and ingest faster in 4 of 4 interleaved runs (bench/README.md, Run Q). */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    mallopt(M_ARENA_MAX, cpus > 2 ? (int)cpus : 2);
    /* Request arenas grow in large blocks: keep freed blocks in the heap during load instead of
     * returning them to the kernel, which would make every large request pay page faults again.
     * bv_heap_idle_tick returns them once the load is over. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

bool bv_heap_idle_tick(bv_heap_idle *st, unsigned long activity, bool busy, long min_growth_kb)
{
    if (activity != st->activity_seen) {
        st->activity_seen = activity;
        st->active = true;
        return false;
    }
    if (!st->active || busy) return false;
    if (min_growth_kb > 0) {
        long rss = bv_rss_kb();
        if (rss >= 0 && rss - st->rss_after_trim_kb < min_growth_kb) return false; /* little to give back */
    }
    malloc_trim(0);
    st->active = false;
    st->rss_after_trim_kb = bv_rss_kb();
    atomic_fetch_add(&heap_trims, 1);
    return true;
}

unsigned long bv_heap_trims(void) { return atomic_load(&heap_trims); }

long bv_rss_kb(void)
{
    /* /proc/self/statm: "size resident shared ..." in pages */
    char line[128];
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    const char *p = line, *end = line + strlen(line);
    uint64_t size = 0, resident = 0;
    if (bv_parse_u64(&p, end, UINT64_MAX, &size) != BV_OK || p == end || *p++ != ' ' ||
        bv_parse_u64(&p, end, UINT64_MAX, &resident) != BV_OK)
        return -1;
    return (long)(resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024);
}
