/* FHIR R4 date, dateTime, instant and time: strict format checks with real calendar rules, and
 * the conversion of any-precision dates to an inclusive millisecond range (for search and
 * indexing). Hand-written cursor parsing, no sscanf/strptime/timegm.
 *
 * Formats (R4 regexes in the type definitions, plus calendar checks):
 *   date      YYYY | YYYY-MM | YYYY-MM-DD                        (year 0001..9999)
 *   dateTime  date | YYYY-MM-DDThh:mm:ss(.f+)?TZ                  (TZ required with a time)
 *   instant   YYYY-MM-DDThh:mm:ss(.f+)?TZ
 *   time      hh:mm:ss(.f+)?
 *   TZ        Z | (+|-)hh:mm with hh:mm <= 14:00
 * hh is 00..23 (no 24:00), mm 00..59, ss 00..59 or 60 (a leap second, as the R4 regex allows). */
#include "bevan/fhir.h"

#include <string.h>

enum { PREC_YEAR, PREC_MONTH, PREC_DAY, PREC_MINUTE, PREC_SECOND };

typedef struct {
    int year, month, day, hour, minute, second;
    int prec;            /* PREC_* */
    int frac_digits;     /* digits after the '.', 0 if none */
    int frac_ms;         /* the first three fraction digits as milliseconds (".5" -> 500) */
    bool has_tz;
    int tz_minutes;      /* offset east of UTC */
} dt_parts;

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads exactly n digits. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (!is_digit(c)) return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return (m == 2 && is_leap(y)) ? 29 : dim[m - 1];
}

/* hh:mm:ss(.f+)? (seconds optional when allow_minutes). */
static bool parse_time(const char **pp, dt_parts *d, bool allow_minutes)
{
    const char *p = *pp;
    if (!digits(&p, 2, &d->hour) || d->hour > 23) return false;
    if (*p++ != ':') return false;
    if (!digits(&p, 2, &d->minute) || d->minute > 59) return false;
    if (*p != ':') {
        if (!allow_minutes) return false;
        d->prec = PREC_MINUTE;
        *pp = p;
        return true;
    }
    p++;
    if (!digits(&p, 2, &d->second) || d->second > 60) return false;
    d->prec = PREC_SECOND;
    if (*p == '.') {
        p++;
        if (!is_digit(*p)) return false;
        int ms = 0, n = 0;
        while (is_digit(*p)) {
            if (n < 3) ms = ms * 10 + (*p - '0');
            n++;
            p++;
            if (n > 64) return false; /* absurd precision: refuse rather than count forever */
        }
        for (int k = n; k < 3; k++) ms *= 10;
        d->frac_digits = n;
        d->frac_ms = ms;
    }
    *pp = p;
    return true;
}

static bool parse_tz(const char **pp, dt_parts *d)
{
    const char *p = *pp;
    if (*p == 'Z') {
        d->has_tz = true;
        d->tz_minutes = 0;
        *pp = p + 1;
        return true;
    }
    if (*p != '+' && *p != '-') return false;
    int sign = *p == '-' ? -1 : 1;
    p++;
    int h, m;
    if (!digits(&p, 2, &h)) return false;
    if (*p++ != ':') return false;
    if (!digits(&p, 2, &m) || m > 59) return false;
    if (h > 14 || (h == 14 && m != 0)) return false;
    d->has_tz = true;
    d->tz_minutes = sign * (h * 60 + m);
    *pp = p;
    return true;
}

/* Parses a date or dateTime. time_mode: 0 = no time allowed (date), 1 = dateTime (time needs
 * seconds and a timezone), 2 = instant (time, seconds and timezone required), 3 = search-style
 * (minutes precision allowed, timezone optional). */
static bool parse_dt(const char *s, int time_mode, dt_parts *d)
{
    memset(d, 0, sizeof *d);
    d->month = 1;
    d->day = 1;
    if (!s) return false;
    const char *p = s;
    if (!digits(&p, 4, &d->year) || d->year < 1) return false;
    d->prec = PREC_YEAR;
    if (*p == '-') {
        p++;
        if (!digits(&p, 2, &d->month) || d->month < 1 || d->month > 12) return false;
        d->prec = PREC_MONTH;
        if (*p == '-') {
            p++;
            if (!digits(&p, 2, &d->day) || d->day < 1 || d->day > days_in_month(d->year, d->month)) return false;
            d->prec = PREC_DAY;
            if (*p == 'T' && time_mode != 0) {
                p++;
                if (!parse_time(&p, d, time_mode == 3)) return false;
                if (*p == 'Z' || *p == '+' || *p == '-') {
                    if (!parse_tz(&p, d)) return false;
                } else if (time_mode != 3) {
                    return false; /* a time needs a timezone */
                }
            }
        }
    }
    if (*p != '\0') return false;
    if (time_mode == 2 && d->prec != PREC_SECOND) return false;
    return true;
}

bool bv_fhir_valid_date(const char *s)
{
    dt_parts d;
    return parse_dt(s, 0, &d);
}

bool bv_fhir_valid_datetime(const char *s)
{
    dt_parts d;
    return parse_dt(s, 1, &d);
}

bool bv_fhir_valid_instant(const char *s)
{
    dt_parts d;
    return parse_dt(s, 2, &d);
}

bool bv_fhir_valid_time(const char *s)
{
    if (!s) return false;
    dt_parts d;
    memset(&d, 0, sizeof d);
    const char *p = s;
    return parse_time(&p, &d, false) && *p == '\0';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t to_ms(int y, int mo, int d, int h, int mi, int s, int ms)
{
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)s * 1000 + ms;
}

int bv_fhir_date_range(const char *s, int64_t *lo, int64_t *hi)
{
    dt_parts d;
    if (!parse_dt(s, 3, &d)) return BV_EINVAL;
    int64_t a, b;
    switch (d.prec) {
    case PREC_YEAR:
        a = to_ms(d.year, 1, 1, 0, 0, 0, 0);
        b = to_ms(d.year + 1, 1, 1, 0, 0, 0, 0) - 1;
        break;
    case PREC_MONTH:
        a = to_ms(d.year, d.month, 1, 0, 0, 0, 0);
        b = a + (int64_t)days_in_month(d.year, d.month) * 86400000 - 1;
        break;
    case PREC_DAY:
        a = to_ms(d.year, d.month, d.day, 0, 0, 0, 0);
        b = a + 86400000 - 1;
        break;
    case PREC_MINUTE:
        a = to_ms(d.year, d.month, d.day, d.hour, d.minute, 0, 0);
        b = a + 60000 - 1;
        break;
    default: { /* PREC_SECOND */
        a = to_ms(d.year, d.month, d.day, d.hour, d.minute, d.second, d.frac_ms);
        int64_t width = 1000;                        /* no fraction: the whole second */
        if (d.frac_digits == 1) width = 100;
        else if (d.frac_digits == 2) width = 10;
        else if (d.frac_digits >= 3) width = 1;      /* ms resolution: finer digits truncate */
        b = a + width - 1;
        break;
    }
    }
    if (d.has_tz) {
        a -= (int64_t)d.tz_minutes * 60000;
        b -= (int64_t)d.tz_minutes * 60000;
    } else {
        /* no zone: the server's configured zone (UTC by default); the range's end is the
         * start of the next local period, so a day across a DST change is 23 or 25 hours */
        int64_t a2 = bv_tz_local_to_utc(a), b2 = bv_tz_local_to_utc(b + 1) - 1;
        a = a2;
        b = b2 >= a2 ? b2 : a2;
    }
    if (lo) *lo = a;
    if (hi) *hi = b;
    return BV_OK;
}
