/* The server's time zone for dates given without one (docs/search.md "Dates and time zones").
 * Set once at start-up, before any thread starts (bv_tz_set changes the process's TZ); read-only
 * afterwards. UTC unless configured. */
#include "bevan/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_bool tz_local;      /* false: UTC, no conversion */
static char tz_name[64] = "UTC";

int bv_tz_set(const char *zone)
{
    if (!zone || !*zone || strlen(zone) >= sizeof tz_name || strstr(zone, "..") || zone[0] == '/') return BV_EINVAL;
    for (const char *p = zone; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
            return BV_EINVAL;
    if (strcmp(zone, "UTC") == 0 || strcmp(zone, "Etc/UTC") == 0) {
        atomic_store(&tz_local, false);
        snprintf(tz_name, sizeof tz_name, "UTC");
        return BV_OK;
    }
    char path[128];
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", zone);
    if (access(path, R_OK) != 0) return BV_ENOTFOUND;   /* an unknown zone would silently be UTC */
    if (setenv("TZ", zone, 1) != 0) return BV_EINVAL;
    tzset();
    snprintf(tz_name, sizeof tz_name, "%s", zone);
    atomic_store(&tz_local, true);
    return BV_OK;
}

const char *bv_tz_name(void) { return tz_name; }

/* Offset of the configured zone from UTC at the instant utc_ms, in ms (east positive). */
static int64_t offset_at(int64_t utc_ms)
{
    time_t t = (time_t)(utc_ms >= 0 ? utc_ms / 1000 : -((-utc_ms + 999) / 1000));
    struct tm tm;
    if (!localtime_r(&t, &tm)) return 0;
    return (int64_t)tm.tm_gmtoff * 1000;
}

int64_t bv_tz_local_to_utc(int64_t local_ms)
{
    if (!atomic_load(&tz_local)) return local_ms;
    /* Two steps settle the offset; in a spring-forward gap the later offset is used (a local time
     * that does not exist maps just past the gap), in a fall-back overlap the first occurrence. */
    int64_t off1 = offset_at(local_ms);
    int64_t t = local_ms - off1;
    int64_t off2 = offset_at(t);
    if (off2 == off1) return t;
    int64_t t2 = local_ms - off2;
    return offset_at(t2) == off2 ? (t2 < t ? t2 : t) : t;
}
