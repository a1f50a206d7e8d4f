/* FHIRPath value model: constructors, decimals, dates/times, a UCUM subset for quantities, and
 * the FHIR type model (System vs FHIR namespaces, inheritance from the generated definitions). */
#include "fhirpath_internal.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Constructors ---- */

fp_item fp_mk_bool(bool b) { return (fp_item){.kind = BV_FP_BOOLEAN, .i = b ? 1 : 0}; }
fp_item fp_mk_int(int64_t i) { return (fp_item){.kind = BV_FP_INTEGER, .i = i}; }
fp_item fp_mk_dec(double d, int prec) { return (fp_item){.kind = BV_FP_DECIMAL, .d = d, .prec = prec}; }
fp_item fp_mk_str(const char *s) { return (fp_item){.kind = BV_FP_STRING, .str = s}; }
fp_item fp_mk_qty(double d, int prec, const char *unit, bool calendar)
{
    return (fp_item){.kind = BV_FP_QUANTITY, .d = d, .prec = prec, .str = unit, .calendar = calendar};
}

/* ---- Decimals ---- */

int fp_decimal_prec(const char *text)
{
    if (!text) return 0;
    const char *dot = strchr(text, '.');
    int digits = 0;
    if (dot)
        for (const char *q = dot + 1; *q >= '0' && *q <= '9'; q++) digits++;
    const char *e = strpbrk(text, "eE");
    if (e) {
        int64_t ex = 0;
        const char *q = e + 1;
        if (bv_parse_i64(&q, q + strlen(q), &ex) == BV_OK) {
            int64_t p = digits - ex;
            digits = p < 0 ? 0 : p > 30 ? 30 : (int)p;
        }
    }
    return digits;
}

const char *fp_format_decimal(bv_arena *a, double d, int prec)
{
    if (prec < 0) prec = 0;
    if (prec > 17) prec = 17;
    if (d == 0) d = 0;   /* no "-0" */
    return bv_arena_printf(a, "%.*f", prec, d);
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

bool fp_parse_decimal(const char *s, double *d, int *prec)
{
    if (!s) return false;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    const char *dot = strchr(p, '.');
    size_t n = strlen(p);
    if (dot) {
        size_t il = (size_t)(dot - p);
        if (!all_digits(p, il) || !all_digits(dot + 1, n - il - 1)) return false;
        if (prec) *prec = (int)(n - il - 1);
    } else {
        if (!all_digits(p, n)) return false;
        if (prec) *prec = 0;
    }
    if (n > 64) return false;
    *d = strtod(s, NULL);   /* validated above */
    return isfinite(*d);
}

bool fp_parse_integer(const char *s, int64_t *out)
{
    if (!s) return false;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!all_digits(p, strlen(p))) return false;
    return bv_str_to_i64(s, strlen(s), out) == BV_OK;
}

static double pow10i(int p)
{
    double r = 1;
    if (p >= 0) while (p-- > 0) r *= 10;
    else while (p++ < 0) r /= 10;
    return r;
}

bool fp_dec_equal(double a, int pa, double b, int pb)
{
    int p = pa > pb ? pa : pb;
    if (p > 15) p = 15;
    double scale = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    double tol = 0.5 * pow10i(-p);
    double rel = scale * 1e-12;
    return fabs(a - b) < (tol < rel ? rel : tol) * 0.999;
}

bool fp_dec_equiv(double a, int pa, double b, int pb)
{
    int p = pa < pb ? pa : pb;
    if (p > 15) p = 15;
    double f = pow10i(p);
    if (fabs(a) * f < 1e15 && fabs(b) * f < 1e15) {
        double ra = round(a * f), rb = round(b * f);
        return ra == rb;
    }
    return fp_dec_equal(a, p, b, p);
}

/* ---- Dates and times ---- */

int64_t fp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void fp_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned dd = doy - (153 * mp + 2) / 5 + 1;
    unsigned mm = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (mm <= 2));
    *m = (int)mm;
    *d = (int)dd;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2) return (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : 28;
    return (m >= 1 && m <= 12) ? dm[m - 1] : 31;
}

static bool dig2(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return false;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

/* hh(:mm(:ss(.f+)?)?)? at *pp */
static bool parse_time_fields(const char **pp, fp_dt *dt)
{
    const char *p = *pp;
    if (!dig2(p, &dt->h) || dt->h > 23) return false;
    p += 2;
    dt->prec = FP_P_HOUR;
    if (*p == ':') {
        if (!dig2(p + 1, &dt->mi) || dt->mi > 59) return false;
        p += 3;
        dt->prec = FP_P_MINUTE;
        if (*p == ':') {
            if (!dig2(p + 1, &dt->s) || dt->s > 59) return false;
            p += 3;
            dt->prec = FP_P_SECOND;
            if (*p == '.') {
                p++;
                int n = 0, ms = 0;
                while (*p >= '0' && *p <= '9') {
                    if (n < 3) ms = ms * 10 + (*p - '0');
                    n++;
                    p++;
                }
                if (n == 0) return false;
                for (int k = n; k < 3; k++) ms *= 10;
                dt->ms = ms;
                dt->frac_digits = n;
                dt->prec = FP_P_MS;
            }
        }
    }
    *pp = p;
    return true;
}

bool fp_dt_parse(const char *s, bool time_only, fp_dt *dt)
{
    memset(dt, 0, sizeof *dt);
    if (!s) return false;
    const char *p = s;
    if (time_only || (p[0] == 'T' && p[1] >= '0' && p[1] <= '9')) {
        if (*p == 'T') p++;
        dt->is_time = true;
        if (!parse_time_fields(&p, dt)) return false;
        return *p == '\0';
    }
    for (int k = 0; k < 4; k++)
        if (p[k] < '0' || p[k] > '9') return false;
    dt->y = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    dt->mo = 1;
    dt->d = 1;
    p += 4;
    dt->prec = FP_P_YEAR;
    dt->is_date = true;
    if (*p == '-') {
        if (!dig2(p + 1, &dt->mo) || dt->mo < 1 || dt->mo > 12) return false;
        p += 3;
        dt->prec = FP_P_MONTH;
        if (*p == '-') {
            if (!dig2(p + 1, &dt->d) || dt->d < 1 || dt->d > days_in_month(dt->y, dt->mo)) return false;
            p += 3;
            dt->prec = FP_P_DAY;
        }
    }
    if (*p == 'T') {
        dt->is_date = false;
        p++;
        if (*p >= '0' && *p <= '9') {
            if (dt->prec != FP_P_DAY) return false;
            if (!parse_time_fields(&p, dt)) return false;
            if (*p == 'Z') {
                dt->has_tz = true;
                p++;
            } else if (*p == '+' || *p == '-') {
                int th, tm;
                if (!dig2(p + 1, &th) || p[3] != ':' || !dig2(p + 4, &tm) || th > 14 || tm > 59) return false;
                dt->has_tz = true;
                dt->tz_min = (th * 60 + tm) * (*p == '-' ? -1 : 1);
                p += 6;
            }
        }
    }
    return *p == '\0';
}

const char *fp_dt_format(bv_arena *a, const fp_dt *dt)
{
    char buf[64];
    size_t n = 0;
    if (!dt->is_time) {
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%04d", dt->y);
        if (dt->prec >= FP_P_MONTH) n += (size_t)snprintf(buf + n, sizeof buf - n, "-%02d", dt->mo);
        if (dt->prec >= FP_P_DAY) n += (size_t)snprintf(buf + n, sizeof buf - n, "-%02d", dt->d);
        if (dt->is_date || dt->prec < FP_P_HOUR) return bv_arena_strdup(a, buf);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "T");
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%02d", dt->h);
    if (dt->prec >= FP_P_MINUTE) n += (size_t)snprintf(buf + n, sizeof buf - n, ":%02d", dt->mi);
    if (dt->prec >= FP_P_SECOND) n += (size_t)snprintf(buf + n, sizeof buf - n, ":%02d", dt->s);
    if (dt->prec >= FP_P_MS) n += (size_t)snprintf(buf + n, sizeof buf - n, ".%03d", dt->ms);
    if (!dt->is_time && dt->has_tz) {
        if (dt->tz_min == 0) snprintf(buf + n, sizeof buf - n, "Z");
        else {
            int t = dt->tz_min < 0 ? -dt->tz_min : dt->tz_min;
            snprintf(buf + n, sizeof buf - n, "%c%02d:%02d", dt->tz_min < 0 ? '-' : '+', t / 60, t % 60);
        }
    }
    return bv_arena_strdup(a, buf);
}

static int64_t dt_to_ms(const fp_dt *dt)
{
    int64_t days = dt->is_time ? 0 : fp_days_from_civil(dt->y, (unsigned)dt->mo, (unsigned)dt->d);
    return ((days * 24 + dt->h) * 60 + dt->mi) * 60000 + (int64_t)dt->s * 1000 + dt->ms;
}

static void dt_from_ms(fp_dt *dt, int64_t ms)
{
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000;
    if (!dt->is_time) fp_civil_from_days(days, &dt->y, &dt->mo, &dt->d);
    dt->h = (int)(rem / 3600000);
    dt->mi = (int)(rem / 60000 % 60);
    dt->s = (int)(rem / 1000 % 60);
    dt->ms = (int)(rem % 1000);
}

int fp_dt_compare(const fp_dt *a0, const fp_dt *b0, int *res)
{
    if (a0->is_time != b0->is_time) return 2;
    fp_dt a = *a0, b = *b0;
    int la = a.prec >= FP_P_SECOND ? FP_P_SECOND : a.prec;
    int lb = b.prec >= FP_P_SECOND ? FP_P_SECOND : b.prec;
    if (la >= FP_P_HOUR && lb >= FP_P_HOUR && !a.is_time) {
        if (a.has_tz != b.has_tz) return 1;
        if (a.has_tz) {
            dt_from_ms(&a, dt_to_ms(&a) - (int64_t)a.tz_min * 60000);
            dt_from_ms(&b, dt_to_ms(&b) - (int64_t)b.tz_min * 60000);
        }
    }
    int fa[7] = {a.y, a.mo, a.d, a.h, a.mi, a.s * 1000 + a.ms, 0};
    int fb[7] = {b.y, b.mo, b.d, b.h, b.mi, b.s * 1000 + b.ms, 0};
    int first = a.is_time ? FP_P_HOUR : FP_P_YEAR;
    int common = la < lb ? la : lb;
    for (int lvl = first; lvl <= common; lvl++) {
        int x = fa[lvl - 1], y = fb[lvl - 1];
        if (x != y) {
            *res = x < y ? -1 : 1;
            return 0;
        }
    }
    if (la != lb) return 1;
    *res = 0;
    return 0;
}

bool fp_calendar_word(const char *s, size_t len, const char **canon)
{
    static const char *const words[] = {"year", "month", "week", "day", "hour", "minute", "second", "millisecond"};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
        size_t wl = strlen(words[k]);
        if ((len == wl || (len == wl + 1 && s[wl] == 's')) && strncmp(s, words[k], wl) == 0) {
            if (canon) *canon = words[k];
            return true;
        }
    }
    return false;
}

int fp_dt_add(fp_dt *dt, double value, const char *unit, bool calendar, bool subtract)
{
    const char *w = NULL;
    if (!unit) return -1;
    if (!fp_calendar_word(unit, strlen(unit), &w)) {
        (void)calendar;
        static const char *const ucum[][2] = {{"wk", "week"}, {"d", "day"}, {"h", "hour"}, {"min", "minute"},
                                              {"s", "second"}, {"ms", "millisecond"}};
        for (size_t k = 0; k < sizeof ucum / sizeof ucum[0]; k++)
            if (strcmp(unit, ucum[k][0]) == 0) w = ucum[k][1];
        if (!w) return -1;   /* 'a' and 'mo' are not calendar durations; other units make no sense */
    }
    double tv = trunc(value);
    if (fabs(tv) > 1e12) return -1;
    int64_t v = (int64_t)tv;
    if (subtract) v = -v;
    if (strcmp(w, "year") == 0 || strcmp(w, "month") == 0) {
        if (dt->is_time) return -1;
        int64_t months = (int64_t)dt->y * 12 + (dt->mo - 1) + (strcmp(w, "year") == 0 ? v * 12 : v);
        if (months < 0 || months > 9999 * 12 + 11) return -1;
        dt->y = (int)(months / 12);
        dt->mo = (int)(months % 12) + 1;
        int dim = days_in_month(dt->y, dt->mo);
        if (dt->d > dim) dt->d = dim;
        return 0;
    }
    int64_t ms;
    if (strcmp(w, "week") == 0) ms = v * 7 * 86400000;
    else if (strcmp(w, "day") == 0) ms = v * 86400000;
    else if (strcmp(w, "hour") == 0) ms = v * 3600000;
    else if (strcmp(w, "minute") == 0) ms = v * 60000;
    else if (strcmp(w, "second") == 0) ms = v * 1000;
    else ms = v;
    if (dt->is_date || (!dt->is_time && dt->prec < FP_P_HOUR)) ms = ms / 86400000 * 86400000;
    int64_t t = dt_to_ms(dt) + ms;
    if (dt->is_time) {
        t %= 86400000;
        if (t < 0) t += 86400000;
    }
    dt_from_ms(dt, t);
    if (!dt->is_time && (dt->y < 1 || dt->y > 9999)) return -1;
    return 0;
}

/* ---- UCUM subset ---- */

typedef struct {
    const char *sym;
    double factor;
    int8_t dims[8];
    bool metric;
} ucum_atom;

/* dims: m g s K mol cd A calendar-month */
static const ucum_atom atoms[] = {
    {"m", 1, {1, 0, 0, 0, 0, 0, 0, 0}, true},
    {"g", 1, {0, 1, 0, 0, 0, 0, 0, 0}, true},
    {"s", 1, {0, 0, 1, 0, 0, 0, 0, 0}, true},
    {"K", 1, {0, 0, 0, 1, 0, 0, 0, 0}, true},
    {"mol", 1, {0, 0, 0, 0, 1, 0, 0, 0}, true},
    {"cd", 1, {0, 0, 0, 0, 0, 1, 0, 0}, true},
    {"A", 1, {0, 0, 0, 0, 0, 0, 1, 0}, true},
    {"L", 0.001, {3, 0, 0, 0, 0, 0, 0, 0}, true},
    {"l", 0.001, {3, 0, 0, 0, 0, 0, 0, 0}, true},
    {"min", 60, {0, 0, 1, 0, 0, 0, 0, 0}, false},
    {"h", 3600, {0, 0, 1, 0, 0, 0, 0, 0}, false},
    {"d", 86400, {0, 0, 1, 0, 0, 0, 0, 0}, false},
    {"wk", 604800, {0, 0, 1, 0, 0, 0, 0, 0}, false},
    {"mo", 2629800, {0, 0, 1, 0, 0, 0, 0, 0}, false},
    {"a", 31557600, {0, 0, 1, 0, 0, 0, 0, 0}, false},
    {"Hz", 1, {0, 0, -1, 0, 0, 0, 0, 0}, true},
    {"N", 1000, {1, 1, -2, 0, 0, 0, 0, 0}, true},
    {"Pa", 1000, {-1, 1, -2, 0, 0, 0, 0, 0}, true},
    {"J", 1000, {2, 1, -2, 0, 0, 0, 0, 0}, true},
    {"W", 1000, {2, 1, -3, 0, 0, 0, 0, 0}, true},
    {"m[Hg]", 133322387.415, {-1, 1, -2, 0, 0, 0, 0, 0}, true},
    {"[in_i]", 0.0254, {1, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[ft_i]", 0.3048, {1, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[yd_i]", 0.9144, {1, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[mi_i]", 1609.344, {1, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[lb_av]", 453.59237, {0, 1, 0, 0, 0, 0, 0, 0}, false},
    {"[oz_av]", 28.349523125, {0, 1, 0, 0, 0, 0, 0, 0}, false},
    {"%", 0.01, {0, 0, 0, 0, 0, 0, 0, 0}, false},
};

static const struct { const char *p; double f; } prefixes[] = {
    {"da", 1e1}, {"Y", 1e24}, {"Z", 1e21}, {"E", 1e18}, {"P", 1e15}, {"T", 1e12}, {"G", 1e9},
    {"M", 1e6}, {"k", 1e3}, {"h", 1e2}, {"d", 1e-1}, {"c", 1e-2}, {"m", 1e-3}, {"u", 1e-6},
    {"n", 1e-9}, {"p", 1e-12}, {"f", 1e-15}, {"a", 1e-18}, {"z", 1e-21}, {"y", 1e-24},
};

static const ucum_atom *find_atom(const char *s, size_t n)
{
    for (size_t k = 0; k < sizeof atoms / sizeof atoms[0]; k++)
        if (strlen(atoms[k].sym) == n && strncmp(atoms[k].sym, s, n) == 0) return &atoms[k];
    return NULL;
}

typedef struct {
    const char *p, *end;
    int depth;
    bool opaque;
} uparse;

static bool unit_term(uparse *u, fp_unit *out);

static void unit_mul(fp_unit *a, const fp_unit *b, int sign)
{
    a->factor = sign > 0 ? a->factor * b->factor : a->factor / b->factor;
    for (int k = 0; k < 8; k++) a->dims[k] = (int8_t)(a->dims[k] + sign * b->dims[k]);
}

static bool unit_component(uparse *u, fp_unit *out)
{
    memset(out, 0, sizeof *out);
    out->factor = 1;
    const char *p = u->p;
    if (p >= u->end) return false;
    if (*p == '(') {
        if (++u->depth > 8) return false;
        u->p++;
        if (!unit_term(u, out)) return false;
        if (u->p >= u->end || *u->p != ')') return false;
        u->p++;
        u->depth--;
    } else if (*p == '{') {
        while (u->p < u->end && *u->p != '}') u->p++;
        if (u->p >= u->end) return false;
        u->p++;
        return true;
    } else if (*p >= '0' && *p <= '9') {
        double v = 0;
        while (p < u->end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
        if (p < u->end && (*p == '*' || *p == '^')) {
            p++;
            int sign = 1, e = 0;
            if (p < u->end && (*p == '-' || *p == '+')) sign = *p++ == '-' ? -1 : 1;
            while (p < u->end && *p >= '0' && *p <= '9' && e < 100) e = e * 10 + (*p++ - '0');
            v = pow(v, sign * e);
        }
        out->factor = v;
        u->p = p;
        return true;
    } else {
        const char *s = p;
        while (p < u->end && *p != '.' && *p != '/' && *p != '(' && *p != ')' && *p != '{') {
            if (*p == '[') {
                while (p < u->end && *p != ']') p++;
                if (p >= u->end) return false;
            }
            p++;
        }
        const char *symend = p;
        /* trailing exponent */
        const char *q = symend;
        while (q > s && q[-1] >= '0' && q[-1] <= '9') q--;
        int ex = 1;
        if (q < symend) {
            const char *digits = q;
            if (q > s && (q[-1] == '-' || q[-1] == '+')) q--;
            if (q == s) return false;
            ex = 0;
            for (const char *r = digits; r < symend; r++) ex = ex * 10 + (*r - '0');
            if (*q == '-') ex = -ex;
            if (ex > 10 || ex < -10) return false;
        }
        size_t n = (size_t)(q - s);
        const ucum_atom *at = find_atom(s, n);
        double pf = 1;
        if (!at) {
            for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0] && !at; k++) {
                size_t pl = strlen(prefixes[k].p);
                if (n > pl && strncmp(s, prefixes[k].p, pl) == 0) {
                    const ucum_atom *b = find_atom(s + pl, n - pl);
                    if (b && b->metric) {
                        at = b;
                        pf = prefixes[k].f;
                    }
                }
            }
        }
        if (!at) u->opaque = true;
        else {
            out->factor = pow(at->factor * pf, ex);
            for (int k = 0; k < 8; k++) out->dims[k] = (int8_t)(at->dims[k] * ex);
        }
        u->p = p;
        if (u->p < u->end && *u->p == '{') {
            while (u->p < u->end && *u->p != '}') u->p++;
            if (u->p < u->end) u->p++;
        }
        return true;
    }
    return true;
}

static bool unit_term(uparse *u, fp_unit *out)
{
    memset(out, 0, sizeof *out);
    out->factor = 1;
    int sign = 1;
    if (u->p < u->end && *u->p == '/') {
        sign = -1;
        u->p++;
    }
    for (;;) {
        fp_unit c;
        if (!unit_component(u, &c)) return false;
        unit_mul(out, &c, sign);
        if (u->p < u->end && (*u->p == '.' || *u->p == '/')) {
            sign = *u->p == '.' ? 1 : -1;
            u->p++;
            continue;
        }
        return true;
    }
}

bool fp_unit_parse(const char *unit, bool calendar, fp_unit *out)
{
    memset(out, 0, sizeof *out);
    out->factor = 1;
    if (!unit || !*unit) return true;   /* dimensionless */
    const char *w;
    if (calendar && fp_calendar_word(unit, strlen(unit), &w)) {
        if (strcmp(w, "year") == 0) { out->factor = 12; out->dims[7] = 1; }
        else if (strcmp(w, "month") == 0) { out->dims[7] = 1; }
        else {
            out->dims[2] = 1;
            out->factor = strcmp(w, "week") == 0 ? 604800 : strcmp(w, "day") == 0 ? 86400
                        : strcmp(w, "hour") == 0 ? 3600 : strcmp(w, "minute") == 0 ? 60
                        : strcmp(w, "second") == 0 ? 1 : 0.001;
        }
        return true;
    }
    if (strcmp(unit, "1") == 0) return true;
    uparse u = {.p = unit, .end = unit + strlen(unit)};
    if (!unit_term(&u, out) || u.p != u.end) {
        memset(out, 0, sizeof *out);
        out->factor = 1;
        out->opaque = true;
        return false;
    }
    out->opaque = u.opaque;
    return true;
}

bool fp_unit_same_dims(const fp_unit *a, const fp_unit *b)
{
    if (a->opaque || b->opaque) return false;
    return memcmp(a->dims, b->dims, sizeof a->dims) == 0;
}

/* value of b expressed in a's unit; false when not comparable */
static bool qty_align(const fp_item *a, const fp_item *b, double *bv)
{
    const char *ua = a->str ? a->str : "1", *ub = b->str ? b->str : "1";
    if (a->calendar == b->calendar && strcmp(ua, ub) == 0) {
        *bv = b->d;
        return true;
    }
    fp_unit fa, fb;
    fp_unit_parse(a->str, a->calendar, &fa);
    fp_unit_parse(b->str, b->calendar, &fb);
    if (!fp_unit_same_dims(&fa, &fb)) return false;
    *bv = b->d * fb.factor / fa.factor;
    return true;
}

int fp_qty_compare(const fp_item *a, const fp_item *b, int *res)
{
    double bv;
    if (!qty_align(a, b, &bv)) return 1;
    if (fp_dec_equal(a->d, 15, bv, 15)) *res = 0;
    else *res = a->d < bv ? -1 : 1;
    return 0;
}

bool fp_qty_equivalent(const fp_item *a, const fp_item *b)
{
    double bv;
    if (!qty_align(a, b, &bv)) return false;
    return fp_dec_equiv(a->d, a->prec, bv, b->prec);
}

/* ---- FHIR type model ---- */

const char *fp_primitive_system(const char *t)
{
    if (!t) return NULL;
    static const char *const map[][2] = {
        {"boolean", "Boolean"}, {"integer", "Integer"}, {"positiveInt", "Integer"}, {"unsignedInt", "Integer"},
        {"integer64", "Integer"}, {"decimal", "Decimal"}, {"date", "Date"}, {"dateTime", "DateTime"},
        {"instant", "DateTime"}, {"time", "Time"}, {"string", "String"}, {"code", "String"}, {"id", "String"},
        {"markdown", "String"}, {"uri", "String"}, {"url", "String"}, {"canonical", "String"}, {"oid", "String"},
        {"uuid", "String"}, {"base64Binary", "String"}, {"xhtml", "String"},
    };
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
        if (strcmp(map[k][0], t) == 0) return map[k][1];
    return NULL;
}

/* fhir_type_find through a hash table built once (open addressing, FNV-1a of the name): it is
 * called on nearly every navigation step. Read-only after pthread_once, so thread-safe. */
#define FP_TYPE_SLOTS 2048u
static const fhir_type *type_slots[FP_TYPE_SLOTS];
static pthread_once_t type_slots_once = PTHREAD_ONCE_INIT;

static uint32_t name_hash(const char *s) { return (uint32_t)bv_hash_str(s); }

static void build_type_slots(void)
{
    if (fhir_types_count * 2 > FP_TYPE_SLOTS) return;   /* too many types: fp_type_find falls back */
    for (size_t i = 0; i < fhir_types_count; i++) {
        uint32_t k = name_hash(fhir_types[i].name) & (FP_TYPE_SLOTS - 1);
        while (type_slots[k]) k = (k + 1) & (FP_TYPE_SLOTS - 1);
        type_slots[k] = &fhir_types[i];
    }
}

const fhir_type *fp_type_find(const char *name)
{
    if (!name) return NULL;
    pthread_once(&type_slots_once, build_type_slots);
    if (fhir_types_count * 2 > FP_TYPE_SLOTS) return fhir_type_find(name);
    uint32_t k = name_hash(name) & (FP_TYPE_SLOTS - 1);
    for (const fhir_type *t; (t = type_slots[k]) != NULL; k = (k + 1) & (FP_TYPE_SLOTS - 1))
        if (t->name == name || (t->name[0] == name[0] && strcmp(t->name, name) == 0)) return t;
    return NULL;
}

bool fp_fhir_type_derives(const char *type, const char *base)
{
    if (!type || !base) return false;
    for (int hops = 0; type && hops < 16; hops++) {
        if (type == base || (type[0] == base[0] && strcmp(type, base) == 0)) return true;
        const fhir_type *t = fp_type_find(type);
        type = t ? t->base : NULL;
    }
    return false;
}

static const char *const system_types[] = {"Boolean", "Integer", "Decimal", "String", "Date", "DateTime",
                                           "Time", "Quantity", "Long", "Any"};

static bool is_system_type(const char *n)
{
    for (size_t k = 0; k < sizeof system_types / sizeof system_types[0]; k++)
        if (strcmp(system_types[k], n) == 0) return true;
    return false;
}

bool fp_typespec_known(const fp_typespec *ts)
{
    if (!ts->name) return false;
    if (ts->ns != FP_NS_ANY) return true;    /* qualified names are accepted (and may match nothing) */
    return is_system_type(ts->name) || fhir_type_find(ts->name) != NULL;
}

const char *fp_item_type_name(const fp_item *it, fp_ns *ns)
{
    *ns = FP_NS_SYSTEM;
    switch (it->kind) {
    case BV_FP_BOOLEAN: return "Boolean";
    case BV_FP_INTEGER: return "Integer";
    case BV_FP_DECIMAL: return "Decimal";
    case BV_FP_STRING: return "String";
    case BV_FP_DATE: return "Date";
    case BV_FP_DATETIME: return "DateTime";
    case BV_FP_TIME: return "Time";
    case BV_FP_QUANTITY: return "Quantity";
    case BV_FP_NODE: break;
    }
    *ns = FP_NS_FHIR;
    return it->type;
}

static bool type_match(const fp_item *it, const fp_typespec *ts, bool exact)
{
    fp_ns ns;
    const char *name = fp_item_type_name(it, &ns);
    if (!name || !ts->name) return false;
    if (ts->ns != FP_NS_ANY && ts->ns != ns) return false;
    if (ns == FP_NS_SYSTEM) return strcmp(name, ts->name) == 0 || strcmp(ts->name, "Any") == 0;
    if (exact) {
        /* as()/ofType(): primitives must match exactly (code is not returned as string); complex
         * types and resources also match a base type (Age as Quantity, Patient as Resource). */
        if (fp_primitive_system(name)) return strcmp(name, ts->name) == 0;
    }
    return fp_fhir_type_derives(name, ts->name);
}

bool fp_is_type(const fp_item *it, const fp_typespec *ts) { return type_match(it, ts, false); }
bool fp_is_exact_type(const fp_item *it, const fp_typespec *ts) { return type_match(it, ts, true); }

/* ---- System conversions ---- */

static bool is_ucum_system(const char *s) { return s && strcmp(s, "http://unitsofmeasure.org") == 0; }

bool fp_to_system(bv_arena *a, const fp_item *in, fp_item *out)
{
    (void)a;
    *out = *in;
    if (in->kind != BV_FP_NODE) return true;
    const json_value *v = in->node;
    if (!v) return false;
    const char *sys = fp_primitive_system(in->type);
    if (!in->type) {
        switch (v->type) {
        case JSON_STRING: *out = fp_mk_str(v->u.str.s); return true;
        case JSON_TRUE: case JSON_FALSE: *out = fp_mk_bool(v->type == JSON_TRUE); return true;
        case JSON_NUMBER: {
            int64_t iv;
            if (!strpbrk(v->u.num.text, ".eE") && json_number_to_i64(v, &iv)) *out = fp_mk_int(iv);
            else {
                *out = fp_mk_dec(strtod(v->u.num.text, NULL), fp_decimal_prec(v->u.num.text));
                out->str = v->u.num.text;
            }
            return true;
        }
        default: return false;
        }
    }
    if (sys) {
        if (strcmp(sys, "Boolean") == 0) {
            if (v->type != JSON_TRUE && v->type != JSON_FALSE) return false;
            *out = fp_mk_bool(v->type == JSON_TRUE);
            return true;
        }
        if (strcmp(sys, "Integer") == 0) {
            int64_t iv;
            if (!json_number_to_i64(v, &iv)) return false;
            *out = fp_mk_int(iv);
            return true;
        }
        if (strcmp(sys, "Decimal") == 0) {
            if (v->type != JSON_NUMBER) return false;
            *out = fp_mk_dec(strtod(v->u.num.text, NULL), fp_decimal_prec(v->u.num.text));   /* JSON-validated */
            out->str = v->u.num.text;
            return true;
        }
        if (v->type != JSON_STRING) return false;
        if (strcmp(sys, "Date") == 0) { *out = (fp_item){.kind = BV_FP_DATE, .str = v->u.str.s}; return true; }
        if (strcmp(sys, "DateTime") == 0) {
            *out = (fp_item){.kind = BV_FP_DATETIME, .str = v->u.str.s};
            return true;
        }
        if (strcmp(sys, "Time") == 0) { *out = (fp_item){.kind = BV_FP_TIME, .str = v->u.str.s}; return true; }
        *out = fp_mk_str(v->u.str.s);
        return true;
    }
    if (fp_fhir_type_derives(in->type, "Quantity") && v->type == JSON_OBJECT) {
        const json_value *val = json_get(v, "value");
        if (!json_is(val, JSON_NUMBER)) return false;
        const char *code = json_get_str(v, "code"), *unit = json_get_str(v, "unit");
        const char *system = json_get_str(v, "system");
        const char *u = code && (is_ucum_system(system) || !system) ? code : code ? code : unit;
        *out = fp_mk_qty(strtod(val->u.num.text, NULL), fp_decimal_prec(val->u.num.text), u ? u : "1", false);
        return true;
    }
    return false;
}

static const char *format_number(bv_arena *a, double d, int prec)
{
    return fp_format_decimal(a, d, prec);
}

const char *fp_to_string(bv_arena *a, const fp_item *it)
{
    switch (it->kind) {
    case BV_FP_BOOLEAN: return it->i ? "true" : "false";
    case BV_FP_INTEGER: return bv_arena_printf(a, "%" PRId64, it->i);
    case BV_FP_DECIMAL: return it->str ? it->str : format_number(a, it->d, it->prec);
    case BV_FP_STRING: return it->str;
    case BV_FP_DATE: case BV_FP_DATETIME: case BV_FP_TIME: return it->str;
    case BV_FP_QUANTITY: {
        const char *num = format_number(a, it->d, it->prec);
        if (it->calendar) return bv_arena_printf(a, "%s %s", num, it->str);
        return bv_arena_printf(a, "%s '%s'", num, it->str ? it->str : "1");
    }
    case BV_FP_NODE: {
        fp_item s;
        if (fp_to_system(a, it, &s) && s.kind != BV_FP_NODE) return fp_to_string(a, &s);
        return NULL;
    }
    }
    return NULL;
}

/* ---- UTF-8 ---- */

size_t fp_utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

const char *fp_utf8_at(const char *s, size_t cp)
{
    while (*s && cp > 0) {
        s++;
        while (((unsigned char)*s & 0xC0) == 0x80) s++;
        cp--;
    }
    return s;
}
