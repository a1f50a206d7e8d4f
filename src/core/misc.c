/* Time formatting, logging, random ids. */
#include "bevan/core.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/random.h>

void bv_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

int64_t bv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bv_format_instant(int64_t ms, char *buf, size_t buflen)
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) { frac += 1000; secs -= 1; }
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void bv_format_http_date(int64_t ms, char *buf, size_t buflen)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, buflen, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int two_digits(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return -1;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

/* Accepts the IMF-fixdate form only ("Sun, 06 Nov 1994 08:49:37 GMT"), as RFC 7231 senders must use. */
int bv_parse_http_date(const char *s, int64_t *ms_out)
{
    if (!s || strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || s[25] != ' ' || strcmp(s + 26, "GMT") != 0)
        return BV_EINVAL;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int day, c1, c2, h, mi, se, mon = -1;
    if (two_digits(s + 5, &day) || two_digits(s + 12, &c1) || two_digits(s + 14, &c2) ||
        two_digits(s + 17, &h) || two_digits(s + 20, &mi) || two_digits(s + 23, &se))
        return BV_EINVAL;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, months[i], 3) == 0) mon = i;
    if (mon < 0 || day < 1 || day > 31 || h > 23 || mi > 59 || se > 60) return BV_EINVAL;
    tm.tm_year = c1 * 100 + c2 - 1900;
    tm.tm_mon = mon;
    tm.tm_mday = day;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *ms_out = (int64_t)timegm(&tm) * 1000;
    return BV_OK;
}

static bv_log_level log_level = BV_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void bv_log_set_level(bv_log_level lvl) { log_level = lvl; }

void bv_log(bv_log_level lvl, const char *fmt, ...)
{
    if (lvl < log_level) return;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char ts[64]; /* room for any int year, so the format never truncates */
    bv_format_instant(bv_now_ms(), ts, sizeof ts);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s %s ", ts, names[lvl]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
    va_end(ap);
}

static void getrandom_all(unsigned char *b, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(b + got, len - got, 0);
        if (n <= 0) bv_panic("getrandom failed");
        got += (size_t)n;
    }
}

/* The kernel's CSPRNG, read 256 bytes at a time per thread: one system call per 16 ids instead of
 * one per id (3 % of an HTTP thread's time per create). Bytes are used once and wiped. Bevan never
 * forks, so no two processes share a buffer. */
static void random_bytes(unsigned char *b, size_t len)
{
    static _Thread_local unsigned char pool[256];
    static _Thread_local size_t left;
    if (len > sizeof pool) {
        getrandom_all(b, len);
        return;
    }
    if (left < len) {
        getrandom_all(pool, sizeof pool);
        left = sizeof pool;
    }
    unsigned char *from = pool + sizeof pool - left;
    memcpy(b, from, len);
    memset(from, 0, len);
    left -= len;
}

static void uuid_format(const unsigned char b[16], char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void bv_uuid4(char *out)
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    uuid_format(b, out);
}

void bv_uuid7(char *out)
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    uint64_t ms = (uint64_t)bv_now_ms();
    for (int i = 0; i < 6; i++) b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x70);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    uuid_format(b, out);
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bv_rng_seed(bv_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bv_rng_next(bv_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t bv_rng_below(bv_rng *r, uint32_t n)
{
    if (n == 0) return 0;
    return (uint32_t)(((bv_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

char *bv_read_text_file(const char *path, size_t max, size_t *len)
{
    if (len) *len = 0;
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) return NULL;
    bv_buf b;
    bv_buf_init(&b, max);
    char chunk[65536];
    size_t n;
    bool ok = true;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (bv_buf_append(&b, chunk, n) != BV_OK) {
            ok = false;
            break;
        }
    if (ferror(f)) ok = false;
    fclose(f);
    if (!ok) {
        bv_buf_free(&b);
        return NULL;
    }
    bv_buf_cstr(&b);
    size_t got;
    char *data = bv_buf_steal(&b, &got);
    if (!data) data = bv_calloc(1, 1);
    if (len) *len = got;
    return data;
}
