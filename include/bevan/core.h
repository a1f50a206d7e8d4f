/* Bevan core: arenas, capped buffers, cursor parsers, logging, limits.
 * Every other module may include this header. No third-party headers here. */
#ifndef BEVAN_CORE_H
#define BEVAN_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>
#include <string.h>

/* ---- Limits: every cap on peer input lives here (craft.md guideline 3). ---- */
#define BV_MAX_BODY_BYTES        (16u * 1024u * 1024u) /* request body; over -> 413 */
#define BV_MAX_JSON_DEPTH        64                    /* nesting depth of a resource */
#define BV_MAX_JSON_STRING       (4u * 1024u * 1024u)  /* one JSON string (e.g. base64 attachment) */
#define BV_MAX_URL_BYTES         8192                  /* path + query */
#define BV_MAX_QUERY_PARAMS      100                   /* query parameters per request */
#define BV_MAX_ID_LEN            64                    /* FHIR id */
#define BV_MAX_BUNDLE_ENTRIES    10000                 /* entries in one batch/transaction */
#define BV_MAX_PAGE_COUNT        1000                  /* _count cap */
#define BV_DEFAULT_PAGE_COUNT    20
#define BV_MAX_INCLUDED          1000                  /* _include/_revinclude resources per page */
#define BV_TOTAL_DEFAULT_CAP     1000                  /* no _total: count at most this many matches */
#define BV_TOTAL_ESTIMATE_CAP    10000                 /* _total=estimate: likewise */
#define BV_MAX_CONNECTIONS       1024
#define BV_CONNECTION_TIMEOUT_S  30
#define BV_RATE_PER_S            1000.0                /* default per-client request rate (burst 2x) */

/* ---- Error convention: 0 ok, negative bv_err on failure (craft.md guideline 2). ---- */
typedef enum {
    BV_OK = 0,
    BV_ENOMEM = -1,
    BV_EINVAL = -2,   /* client input is wrong */
    BV_ENOTFOUND = -3,
    BV_EGONE = -4,    /* deleted */
    BV_ECONFLICT = -5,
    BV_EPRECOND = -6, /* If-Match etc. failed */
    BV_ETOOBIG = -7,
    BV_EIO = -8,      /* storage failure: never acknowledge */
    BV_EINTERNAL = -9,
    BV_EBUSY = -10,
} bv_err;

/* Abort with a message: for broken invariants and out-of-memory (policy: OOM is fatal, like Redis/h2o). */
void bv_panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* The process heap of a long-running server (mem.c; docs/operations.md, "Memory").
 * bv_heap_tune, once at start: an allocator arena per CPU (at least 2) instead of glibc's 8 per CPU, and
 * freed blocks kept in the heap during load. bv_heap_idle_tick, from one thread about once a
 * second: returns the heap's free memory to the kernel once after each burst of requests, when
 * none started during the last tick (activity, a counter of requests, unchanged), none is in
 * flight (busy false) and the resident size grew by at least min_growth_kb (if > 0) since the
 * last trim (or since rss_after_trim_kb's first value).
 * Returns true when it trimmed. */
typedef struct {
    unsigned long activity_seen;
    bool active;               /* requests seen since the last trim */
    long rss_after_trim_kb;
} bv_heap_idle;
void bv_heap_tune(void);
bool bv_heap_idle_tick(bv_heap_idle *st, unsigned long activity, bool busy, long min_growth_kb);
unsigned long bv_heap_trims(void); /* trims done by bv_heap_idle_tick since start */
long bv_rss_kb(void);              /* resident set size of this process; -1 if unknown */
void *bv_malloc(size_t n);               /* never returns NULL */
void *bv_calloc(size_t n, size_t size);  /* never returns NULL */
void *bv_realloc(void *p, size_t n);     /* never returns NULL */
char *bv_strdup(const char *s);
char *bv_strndup(const char *s, size_t n);

/* ---- Arena: request-scoped memory, freed at once by bv_arena_free. Not thread-safe. ---- */
typedef struct bv_arena bv_arena;
bv_arena *bv_arena_new(size_t first_block);
void bv_arena_free(bv_arena *a);              /* frees the arena and everything in it; NULL ok */
void bv_arena_reset(bv_arena *a);             /* keeps the first block */
void *bv_arena_alloc(bv_arena *a, size_t n);  /* 16-byte aligned, uninitialised */
void *bv_arena_calloc(bv_arena *a, size_t n, size_t size);
char *bv_arena_strdup(bv_arena *a, const char *s);
char *bv_arena_strndup(bv_arena *a, const char *s, size_t n);
char *bv_arena_printf(bv_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t bv_arena_used(const bv_arena *a);

/* ---- Growable byte buffer with an optional hard cap (curl dynbuf style). Heap-owned. ---- */
typedef struct {
    char *data;    /* always NUL-terminated when len > 0 or after bv_buf_cstr */
    size_t len;
    size_t cap;
    size_t max;    /* 0 = no cap; appends past it fail with BV_ETOOBIG and leave the buffer as it was */
} bv_buf;
void bv_buf_init(bv_buf *b, size_t max);
void bv_buf_free(bv_buf *b);
void bv_buf_reset(bv_buf *b);
int bv_buf_append(bv_buf *b, const void *data, size_t n);
int bv_buf_puts(bv_buf *b, const char *s);
int bv_buf_putc(bv_buf *b, char c);
int bv_buf_printf(bv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int bv_buf_vprintf(bv_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
const char *bv_buf_cstr(bv_buf *b);   /* "" for an empty buffer */
/* Hand the bytes to the caller (free with free()); the buffer becomes empty. */
char *bv_buf_steal(bv_buf *b, size_t *len_out);

/* ---- Cursor parsers: advance *p on success, leave it untouched on failure. ---- */
int bv_parse_u64(const char **p, const char *end, uint64_t max, uint64_t *out);
int bv_parse_i64(const char **p, const char *end, int64_t *out);
/* Whole-string helpers built on the cursor parsers. */
int bv_str_to_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
int bv_str_to_i64(const char *s, size_t len, int64_t *out);

/* ---- Small string helpers ---- */
bool bv_streq(const char *a, const char *b);                 /* NULL-safe */
bool bv_strneq_lit(const char *s, size_t len, const char *lit); /* s[0..len) == lit */
bool bv_starts_with(const char *s, const char *prefix);
/* Percent-decode (and '+' -> ' ' when form is true) into the arena. NULL on a bad escape. */
char *bv_url_decode(bv_arena *a, const char *s, size_t len, bool form);
/* The same, also NULL when the result would hold a NUL (%00 or a raw NUL): for what the HTTP
 * layer hands on as C strings (the path, query parameters). */
char *bv_url_decode_nonul(bv_arena *a, const char *s, size_t len, bool form);

/* FNV-1a (64-bit) of n bytes, continued from h: start from BV_HASH_BASIS, chain for several parts.
 * For hash tables and bit masks, never for anything an attacker must not steer. */
#define BV_HASH_BASIS 0xcbf29ce484222325ull
static inline uint64_t bv_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}
static inline uint64_t bv_hash_str(const char *s) { return bv_hash(BV_HASH_BASIS, s, strlen(s)); }

/* A name and a value: a query or form parameter, a header. */
typedef struct {
    const char *name;
    const char *value;
} bv_pair;
/* Upper bound on the parameters of a query string: its '&'s plus one. */
size_t bv_query_pieces(const char *qs);
/* Splits "a=1&b=x%20y" (no '?') at '&' and form-decodes each piece ('+' is space) into out, in
 * order; empty pieces are skipped; out must have room for every non-empty piece
 * (bv_query_pieces(qs) is always enough). Returns how many, or -1 on a bad escape (with nonul, on
 * a decoded NUL too). */
long bv_query_split(bv_arena *a, const char *qs, bool nonul, bv_pair *out);

/* Decode standard base64 (RFC 4648, padding optional, whitespace ignored) into the arena; the
 * result is NUL-terminated. NULL when s is not valid base64. */
char *bv_base64_decode(bv_arena *a, const char *s, size_t len, size_t *out_len);

/* Names the calling thread (at most 15 characters shown) for top -H, perf and /proc/PID/task. */
void bv_thread_name(const char *name);

/* ---- Time ---- */
int64_t bv_now_ms(void);                       /* wall clock, ms since epoch */
int64_t bv_mono_ns(void);                      /* monotonic clock, ns: for intervals */
/* Formats ms-since-epoch as an xs:dateTime in UTC with ms: 2024-01-02T03:04:05.678Z (buf >= 32). */
void bv_format_instant(int64_t ms, char *buf, size_t buflen);
/* RFC 7231 HTTP-date: "Tue, 15 Nov 1994 08:12:31 GMT" (buf >= 32). */
void bv_format_http_date(int64_t ms, char *buf, size_t buflen);
int bv_parse_http_date(const char *s, int64_t *ms_out);
/* The server's time zone (`--tz`, default UTC) for dates and times written without one. Call
 * before starting threads (it sets the process's TZ). BV_ENOTFOUND for an unknown zone name. */
int bv_tz_set(const char *zone);
const char *bv_tz_name(void);
/* A wall-clock time in the configured zone (ms since epoch as if it were UTC) -> UTC ms. */
int64_t bv_tz_local_to_utc(int64_t local_ms);

/* ---- Logging to stderr: one line per event. Never log tokens or resource bodies. ---- */
typedef enum { BV_LOG_DEBUG, BV_LOG_INFO, BV_LOG_WARN, BV_LOG_ERROR } bv_log_level;
void bv_log_set_level(bv_log_level lvl);
void bv_log(bv_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Random ids ---- */
/* Fills out with a random UUID v4 string (buf >= 37). Uses getrandom(). */
void bv_uuid4(char *out);
/* A UUID v7 (RFC 9562): 48-bit Unix milliseconds, then random bits. Used for server-assigned
 * resource ids: ids made close in time sort together, so the store's (type, id) indexes take new
 * ids at their right edge (a few hot pages) instead of a random page per create. */
void bv_uuid7(char *out);

/* ---- Files ---- */
/* Reads a whole file (at most max bytes) into a NUL-terminated heap buffer (free()); NULL on any
 * error or when the file is larger than max. */
char *bv_read_text_file(const char *path, size_t max, size_t *len);
/* Deterministic PRNG (splitmix64/xoshiro) for demo data. */
typedef struct { uint64_t s[4]; } bv_rng;
void bv_rng_seed(bv_rng *r, uint64_t seed);
uint64_t bv_rng_next(bv_rng *r);
uint32_t bv_rng_below(bv_rng *r, uint32_t n); /* uniform in [0, n) */

#endif
