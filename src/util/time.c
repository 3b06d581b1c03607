/*
 * time.c — the clock and the text form of timestamps.
 *
 * A timestamp is int64 nanoseconds since 1970-01-01T00:00:00Z (DESIGN.md §2).
 * Its text form is RFC 3339 in UTC with exactly nine fraction digits and a
 * `Z`. kd_time_parse() also reads what people type on a command line:
 * RFC 3339 with any offset and any number of fraction digits, `@<ns>`,
 * `now`, and durations before now (`-90s`, `-5m`, `-1500ms`).
 *
 * The civil-calendar arithmetic (proleptic Gregorian, year 0 = 1 BC) is done
 * here with plain integers, so nothing depends on TZ, the locale, or the
 * range of the platform's time_t.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "korudelta.h"

#define NS_PER_SEC INT64_C(1000000000)
#define SEC_PER_DAY INT64_C(86400)
/* Days from 0000-01-01 to 1970-01-01. */
#define DAYS_0000_TO_1970 INT64_C(719528)
/* Days in 400 Gregorian years. */
#define DAYS_PER_400Y INT64_C(146097)

/* ------------------------------------------------------------------------
 * Calendar arithmetic
 * ---------------------------------------------------------------------- */

/* Floor division (rounds towards negative infinity); b > 0. */
static int64_t fdiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && a < 0)
        q--;
    return q;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Leap years in [0, y). */
static int64_t leaps_before(int64_t y)
{
    return fdiv(y + 3, 4) - fdiv(y + 99, 100) + fdiv(y + 399, 400);
}

/* Days from 0000-01-01 to y-01-01. */
static int64_t days_before_year(int64_t y)
{
    return 365 * y + leaps_before(y);
}

static const int days_in_month_tab[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
static const int days_before_month_tab[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};

static int days_in_month(int64_t y, int m)
{
    return m == 2 && is_leap(y) ? 29 : days_in_month_tab[m - 1];
}

/* Days since 1970-01-01 of the civil date y-m-d (m 1..12, d 1..31). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t days = days_before_year(y) + days_before_month_tab[m - 1] + (m > 2 && is_leap(y)) + (d - 1);
    return days - DAYS_0000_TO_1970;
}

/* Civil date of `days` since 1970-01-01. */
static void civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    int64_t n = days + DAYS_0000_TO_1970; /* days since 0000-01-01 */
    int64_t cycle = fdiv(n, DAYS_PER_400Y);
    int64_t rem = n - cycle * DAYS_PER_400Y; /* 0 .. 146096 */
    int64_t yy = rem * 400 / DAYS_PER_400Y;  /* an estimate, within one year */
    while (yy > 0 && days_before_year(yy) > rem)
        yy--;
    while (days_before_year(yy + 1) <= rem)
        yy++;
    int64_t doy = rem - days_before_year(yy); /* 0 .. 365 */
    int64_t year = cycle * 400 + yy;
    int month = 1;
    while (month < 12) {
        int64_t next = days_before_month_tab[month] + (month >= 2 && is_leap(year));
        if (doy < next)
            break;
        month++;
    }
    int64_t first = days_before_month_tab[month - 1] + (month > 2 && is_leap(year));
    *y = year;
    *m = month;
    *d = (int)(doy - first) + 1;
}

/* ------------------------------------------------------------------------
 * Clock and formatting
 * ---------------------------------------------------------------------- */

KD_EXPORT int64_t kd_now(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_REALTIME, &t) != 0)
        return 0;
    return (int64_t)t.tv_sec * NS_PER_SEC + (int64_t)t.tv_nsec;
}

/* v as exactly `width` decimal digits (v < 10^width), zero-padded; returns
 * the end. */
static char *put_digits(char *p, uint32_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

KD_EXPORT int kd_time_format(int64_t ts, char *buf, size_t buflen)
{
    /* "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" is 30 characters. */
    if (!buf || buflen < 31)
        return KD_EINVALID;
    int64_t nsec = ts % NS_PER_SEC; /* computed without overflow even for INT64_MIN */
    int64_t secs = ts / NS_PER_SEC;
    if (nsec < 0) {
        nsec += NS_PER_SEC;
        secs--;
    }
    int64_t days = fdiv(secs, SEC_PER_DAY);
    int64_t sod = secs - days * SEC_PER_DAY; /* 0 .. 86399 */
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999) {
        buf[0] = '\0';
        return KD_EINVALID;
    }
    /* Digits by hand, not snprintf: every version record carries a
     * timestamp (with the record's buffer reserved at once, formatting a
     * record went from 595 to 403 ns). */
    char *p = buf;
    p = put_digits(p, (uint32_t)y, 4);
    *p++ = '-';
    p = put_digits(p, (uint32_t)m, 2);
    *p++ = '-';
    p = put_digits(p, (uint32_t)d, 2);
    *p++ = 'T';
    p = put_digits(p, (uint32_t)(sod / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (uint32_t)(sod / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (uint32_t)(sod % 60), 2);
    *p++ = '.';
    p = put_digits(p, (uint32_t)nsec, 9);
    *p++ = 'Z';
    *p = '\0';
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------- */

#define TIME_EXPECTED "expected RFC 3339 like 2026-01-02T03:04:05Z, @<nanoseconds>, or -5m"

/* Write "invalid time '<text>': <why>" to errbuf. The echoed text is cut at
 * 80 bytes and control characters become '?', so the message stays one line. */
static int time_error(const char *text, char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int time_error(const char *text, char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return KD_EINVALID;
    char echo[96];
    size_t n = 0;
    size_t tlen = text ? strlen(text) : 0;
    for (size_t i = 0; i < tlen && n < 80; i++) {
        unsigned char c = (unsigned char)text[i];
        echo[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (tlen > 80) {
        memcpy(echo + n, "...", 3);
        n += 3;
    }
    echo[n] = '\0';
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(errbuf, errlen, "invalid time '%s': %s", echo, why);
    return KD_EINVALID;
}

/* Exactly `n` decimal digits at *p; advances *p. -1 if not digits. */
static int64_t fixed_digits(const char **p, int n)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    return v;
}

/* Optional sign and decimal digits (at least one), exact int64, no overflow.
 * Returns 0 on success, -1 if not a number, -2 on overflow. Advances *p. */
static int parse_int64(const char **p, int allow_sign, int64_t *out)
{
    const char *s = *p;
    int neg = 0;
    if (allow_sign && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
    }
    if (*s < '0' || *s > '9')
        return -1;
    int64_t v = 0; /* accumulated negatively so INT64_MIN fits */
    while (*s >= '0' && *s <= '9') {
        int digit = *s - '0';
        if (v < (INT64_MIN + digit) / 10)
            return -2;
        v = v * 10 - digit;
        s++;
    }
    if (!neg) {
        if (v == INT64_MIN)
            return -2;
        v = -v;
    }
    *out = v;
    *p = s;
    return 0;
}

static int parse_rfc3339(const char *text, int64_t *ts, char *errbuf, size_t errlen)
{
    const char *p = text;
    int64_t year = fixed_digits(&p, 4);
    if (year < 0 || *p++ != '-')
        return time_error(text, errbuf, errlen, TIME_EXPECTED);
    int64_t month = fixed_digits(&p, 2);
    if (month < 0 || *p++ != '-')
        return time_error(text, errbuf, errlen, TIME_EXPECTED);
    int64_t day = fixed_digits(&p, 2);
    if (day < 0)
        return time_error(text, errbuf, errlen, TIME_EXPECTED);
    if (*p != 'T' && *p != 't' && *p != ' ')
        return time_error(text, errbuf, errlen, "expected 'T' and a time of day after the date (%s)",
                          TIME_EXPECTED);
    p++;
    int64_t hour = fixed_digits(&p, 2);
    if (hour < 0 || *p++ != ':')
        return time_error(text, errbuf, errlen, TIME_EXPECTED);
    int64_t minute = fixed_digits(&p, 2);
    if (minute < 0 || *p++ != ':')
        return time_error(text, errbuf, errlen, TIME_EXPECTED);
    int64_t second = fixed_digits(&p, 2);
    if (second < 0)
        return time_error(text, errbuf, errlen, TIME_EXPECTED);

    int64_t frac = 0; /* nanoseconds; digits beyond the ninth are dropped */
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return time_error(text, errbuf, errlen, "expected digits after '.'");
        int ndigits = 0;
        while (*p >= '0' && *p <= '9') {
            if (ndigits < 9) {
                frac = frac * 10 + (*p - '0');
                ndigits++;
            }
            p++;
        }
        for (; ndigits < 9; ndigits++)
            frac *= 10;
    }

    int64_t offset = 0; /* seconds east of UTC */
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        int64_t oh = fixed_digits(&p, 2);
        if (oh < 0 || *p++ != ':')
            return time_error(text, errbuf, errlen, "expected a UTC offset like +02:00");
        int64_t om = fixed_digits(&p, 2);
        if (om < 0)
            return time_error(text, errbuf, errlen, "expected a UTC offset like +02:00");
        if (oh > 23 || om > 59)
            return time_error(text, errbuf, errlen, "UTC offset %+03d:%02d is out of range", (int)(sign * oh),
                              (int)om);
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return time_error(text, errbuf, errlen, "expected 'Z' or a UTC offset like +02:00 after the time");
    }
    if (*p != '\0')
        return time_error(text, errbuf, errlen, "unexpected text after the time");

    if (month < 1 || month > 12)
        return time_error(text, errbuf, errlen, "month %02d is out of range (01-12)", (int)month);
    if (day < 1 || day > days_in_month(year, (int)month))
        return time_error(text, errbuf, errlen, "day %02d is out of range for %04d-%02d (01-%02d)", (int)day,
                          (int)year, (int)month, days_in_month(year, (int)month));
    if (hour > 23)
        return time_error(text, errbuf, errlen, "hour %02d is out of range (00-23)", (int)hour);
    if (minute > 59)
        return time_error(text, errbuf, errlen, "minute %02d is out of range (00-59)", (int)minute);
    if (second > 59)
        return time_error(text, errbuf, errlen, "second %02d is out of range (00-59; leap seconds are not supported)",
                          (int)second);

    /* Years 0000-9999 keep every intermediate far inside int64 seconds. */
    int64_t secs = days_from_civil(year, (int)month, (int)day) * SEC_PER_DAY + hour * 3600 + minute * 60 + second -
                   offset;
    /* Before the epoch secs * 1e9 alone may overflow where the sum does not
     * (INT64_MIN is not a whole second), so borrow one second first. */
    if (secs < 0 && frac > 0) {
        secs += 1;
        frac -= NS_PER_SEC;
    }
    int64_t ns;
    if (__builtin_mul_overflow(secs, NS_PER_SEC, &ns) || __builtin_add_overflow(ns, frac, &ns))
        return time_error(text, errbuf, errlen,
                          "out of range (timestamps are 64-bit nanoseconds: 1677-09-21 to 2262-04-11)");
    *ts = ns;
    return KD_OK;
}

/* "-<n><unit>": that long before now; "+<n><unit>": that long after (an
 * expiry, say). */
static int parse_relative(const char *text, int64_t *ts, char *errbuf, size_t errlen)
{
    static const struct {
        const char *name;
        int64_t ns;
    } units[] = {
        {"ms", INT64_C(1000000)},          {"s", NS_PER_SEC},
        {"m", 60 * NS_PER_SEC},            {"h", 3600 * NS_PER_SEC},
        {"d", SEC_PER_DAY * NS_PER_SEC},   {"w", 7 * SEC_PER_DAY * NS_PER_SEC},
    };
    const char *p = text + 1;
    int64_t n;
    int rc = parse_int64(&p, 0, &n);
    if (rc == -1)
        return time_error(text, errbuf, errlen, TIME_EXPECTED);
    if (rc == -2)
        return time_error(text, errbuf, errlen, "duration is out of range");
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        int64_t delta, t;
        if (__builtin_mul_overflow(n, units[i].ns, &delta) ||
            (text[0] == '-' ? __builtin_sub_overflow(kd_now(), delta, &t) : __builtin_add_overflow(kd_now(), delta, &t)))
            return time_error(text, errbuf, errlen, "duration is out of range");
        *ts = t;
        return KD_OK;
    }
    return time_error(text, errbuf, errlen, "unknown duration unit '%s' (use ms, s, m, h, d or w)", p);
}

KD_EXPORT int kd_time_parse(const char *text, int64_t *ts, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!text || !ts)
        return time_error("", errbuf, errlen, "no time given");
    if (text[0] == '\0')
        return time_error(text, errbuf, errlen, "empty (%s)", TIME_EXPECTED);
    if (strcmp(text, "now") == 0) {
        *ts = kd_now();
        return KD_OK;
    }
    if (text[0] == '@') {
        const char *p = text + 1;
        int64_t v;
        int rc = parse_int64(&p, 1, &v);
        if (rc == -2)
            return time_error(text, errbuf, errlen, "nanoseconds out of the 64-bit range");
        if (rc != 0 || *p != '\0')
            return time_error(text, errbuf, errlen, "expected @ followed by an integer number of nanoseconds");
        *ts = v;
        return KD_OK;
    }
    if (text[0] == '-' || text[0] == '+')
        return parse_relative(text, ts, errbuf, errlen);
    return parse_rfc3339(text, ts, errbuf, errlen);
}

/* ------------------------------------------------------------------------
 * Durations ("7d"): retention policies, schedules
 * ---------------------------------------------------------------------- */

static const struct {
    char unit;
    int64_t sec;
} duration_units[] = {{'w', 7 * SEC_PER_DAY}, {'d', SEC_PER_DAY}, {'h', 3600}, {'m', 60}, {'s', 1}};

#define DURATION_MAX_SEC (100 * 366 * SEC_PER_DAY)

KD_EXPORT int kd_duration_parse(const char *text, int64_t *ns)
{
    if (!text || !ns || text[0] < '0' || text[0] > '9')
        return KD_EINVALID;
    int64_t n = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > DURATION_MAX_SEC)
            return KD_EINVALID;
    }
    int64_t unit = 1;
    if (*p) {
        size_t i = 0;
        while (i < sizeof duration_units / sizeof duration_units[0] && duration_units[i].unit != *p)
            i++;
        if (i == sizeof duration_units / sizeof duration_units[0] || p[1])
            return KD_EINVALID;
        unit = duration_units[i].sec;
    }
    if (n == 0 || n > DURATION_MAX_SEC / unit)
        return KD_EINVALID;
    *ns = n * unit * NS_PER_SEC;
    return KD_OK;
}

KD_EXPORT int kd_duration_format(int64_t ns, char *buf, size_t buflen)
{
    if (!buf || ns <= 0 || ns % NS_PER_SEC)
        return KD_EINVALID;
    int64_t sec = ns / NS_PER_SEC;
    size_t i = 0;
    while (sec % duration_units[i].sec)
        i++;
    int w = snprintf(buf, buflen, "%lld%c", (long long)(sec / duration_units[i].sec), duration_units[i].unit);
    return w < 0 || (size_t)w >= buflen ? KD_EINVALID : KD_OK;
}
