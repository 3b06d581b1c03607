/*
 * test_time.c — unit tests for kd_now, kd_time_format and kd_time_parse
 * (src/util/time.c): the RFC 3339 text form of timestamps, both ways.
 *
 * The formatter is checked against the C library's gmtime_r (an independent
 * implementation of the same calendar) over many random instants, including
 * instants before 1970; the parser by round trips, by fixed known values, and
 * by a list of inputs it must refuse with a useful message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "korudelta.h"

#define NS INT64_C(1000000000)

/* Small deterministic PRNG (xorshift64*), so failures reproduce. */
static uint64_t rng_state = UINT64_C(0x9E3779B97F4A7C15);
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static void test_format_known(void)
{
    char buf[40];
    CHECK_RC(kd_time_format(0, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "1970-01-01T00:00:00.000000000Z");
    CHECK_RC(kd_time_format(-1, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "1969-12-31T23:59:59.999999999Z");
    CHECK_RC(kd_time_format(1, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "1970-01-01T00:00:00.000000001Z");
    CHECK_RC(kd_time_format(INT64_C(1000000000000000000), buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "2001-09-09T01:46:40.000000000Z");
    CHECK_RC(kd_time_format(INT64_MAX, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "2262-04-11T23:47:16.854775807Z");
    CHECK_RC(kd_time_format(INT64_MIN, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "1677-09-21T00:12:43.145224192Z");
    /* 2000-02-29 (a leap day in a year divisible by 400) at 12:00. */
    CHECK_RC(kd_time_format(INT64_C(951825600) * NS + 5, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "2000-02-29T12:00:00.000000005Z");
    /* The last nanosecond of 1999 and the first of 2000. */
    CHECK_RC(kd_time_format(INT64_C(946684800) * NS - 1, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "1999-12-31T23:59:59.999999999Z");
    CHECK_RC(kd_time_format(INT64_C(946684800) * NS, buf, sizeof buf), KD_OK);
    CHECK_EQ_STR(buf, "2000-01-01T00:00:00.000000000Z");
    CHECK_EQ_INT(strlen(buf), 30);
}

static void test_format_small_buffer(void)
{
    char buf[40];
    CHECK_RC(kd_time_format(0, buf, 30), KD_EINVALID);
    CHECK_RC(kd_time_format(0, NULL, 40), KD_EINVALID);
    CHECK_RC(kd_time_format(0, buf, 31), KD_OK);
    CHECK_EQ_STR(buf, "1970-01-01T00:00:00.000000000Z");
}

/* Compare with gmtime_r on random instants across the whole int64 range. */
static void test_format_matches_gmtime(void)
{
    for (int i = 0; i < 200000; i++) {
        int64_t ts = (int64_t)rng();
        if (i < 1000) /* also dense around the epoch */
            ts = (int64_t)(rng() % (UINT64_C(400) * 86400 * 1000000000)) - INT64_C(200) * 86400 * NS;
        int64_t secs = ts / NS, nsec = ts % NS;
        if (nsec < 0) {
            secs--;
            nsec += NS;
        }
        time_t t = (time_t)secs;
        struct tm tm;
        CHECK(gmtime_r(&t, &tm) != NULL);
        char want[64], got[40];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)nsec);
        CHECK_RC(kd_time_format(ts, got, sizeof got), KD_OK);
        if (strcmp(want, got) != 0)
            fprintf(stderr, "ts=%" PRId64 "\n", ts);
        CHECK_EQ_STR(got, want);
    }
}

static void test_round_trip(void)
{
    int64_t edge[] = {0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, NS, -NS, NS - 1, -NS + 1,
                      INT64_C(951782400) * NS, INT64_C(-2208988800) * NS};
    char buf[40], err[256];
    int64_t back;
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        CHECK_RC(kd_time_format(edge[i], buf, sizeof buf), KD_OK);
        CHECK_RC(kd_time_parse(buf, &back, err, sizeof err), KD_OK);
        CHECK_EQ_INT(back, edge[i]);
    }
    for (int i = 0; i < 100000; i++) {
        int64_t ts = (int64_t)rng();
        CHECK_RC(kd_time_format(ts, buf, sizeof buf), KD_OK);
        CHECK_RC(kd_time_parse(buf, &back, err, sizeof err), KD_OK);
        CHECK_EQ_INT(back, ts);
    }
}

static int64_t parse_ok(const char *text)
{
    int64_t ts = 0x5555;
    char err[256] = "";
    int rc = kd_time_parse(text, &ts, err, sizeof err);
    if (rc != KD_OK) {
        fprintf(stderr, "parse '%s' failed: %s\n", text, err);
        return INT64_C(0x7eadbeef);
    }
    return ts;
}

static void test_parse_forms(void)
{
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00Z"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01t00:00:00z"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01 00:00:00Z"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00.5Z"), NS / 2);
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00.000000001Z"), 1);
    /* Digits beyond the ninth are truncated, never rounded. */
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00.0000000019999Z"), 1);
    CHECK_EQ_INT(parse_ok("1969-12-31T23:59:59.999999999Z"), -1);
    CHECK_EQ_INT(parse_ok("1969-12-31T23:59:59.5Z"), -NS / 2);
    /* Offsets. */
    CHECK_EQ_INT(parse_ok("2026-01-02T05:04:05+02:00"), parse_ok("2026-01-02T03:04:05Z"));
    CHECK_EQ_INT(parse_ok("2026-01-01T22:34:05-05:30"), parse_ok("2026-01-02T04:04:05Z"));
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00-00:00"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01T01:00:00+01:00"), 0);
    CHECK_EQ_INT(parse_ok("2026-11-26T15:48:58.123456789Z"), INT64_C(1795708138123456789));
    /* The extremes of int64. */
    CHECK_EQ_INT(parse_ok("2262-04-11T23:47:16.854775807Z"), INT64_MAX);
    CHECK_EQ_INT(parse_ok("1677-09-21T00:12:43.145224192Z"), INT64_MIN);
    /* @nanoseconds. */
    CHECK_EQ_INT(parse_ok("@0"), 0);
    CHECK_EQ_INT(parse_ok("@-1"), -1);
    CHECK_EQ_INT(parse_ok("@+17"), 17);
    CHECK_EQ_INT(parse_ok("@1795708138123456789"), INT64_C(1795708138123456789));
    CHECK_EQ_INT(parse_ok("@9223372036854775807"), INT64_MAX);
    CHECK_EQ_INT(parse_ok("@-9223372036854775808"), INT64_MIN);
}

static void test_parse_leap_years(void)
{
    CHECK_EQ_INT(parse_ok("2000-02-29T00:00:00Z"), INT64_C(951782400) * NS);
    CHECK_EQ_INT(parse_ok("2024-02-29T00:00:00Z"), INT64_C(1709164800) * NS);
    CHECK_EQ_INT(parse_ok("2024-03-01T00:00:00Z") - parse_ok("2024-02-28T00:00:00Z"), 2 * 86400 * NS);
    CHECK_EQ_INT(parse_ok("2023-03-01T00:00:00Z") - parse_ok("2023-02-28T00:00:00Z"), 1 * 86400 * NS);
    CHECK_EQ_INT(parse_ok("1904-02-29T00:00:00Z"), INT64_C(-2077747200) * NS);
    char err[256];
    int64_t ts;
    CHECK_RC(kd_time_parse("1900-02-29T00:00:00Z", &ts, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "day 29 is out of range for 1900-02") != NULL);
    CHECK_RC(kd_time_parse("2100-02-29T00:00:00Z", &ts, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_time_parse("2023-02-29T00:00:00Z", &ts, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_time_parse("2023-04-31T00:00:00Z", &ts, err, sizeof err), KD_EINVALID);
    CHECK_RC(kd_time_parse("2023-12-31T00:00:00Z", &ts, err, sizeof err), KD_OK);
}

static void test_parse_relative(void)
{
    char err[256];
    int64_t ts;
    struct {
        const char *text;
        int64_t ago;
    } cases[] = {
        {"-90s", 90 * NS},       {"-5m", 300 * NS},         {"-2h", 7200 * NS},
        {"-3d", 3 * 86400 * NS}, {"-1500ms", 1500000000},   {"-1w", 7 * 86400 * NS},
        {"-0s", 0},
        /* after now */
        {"+30d", -30 * 86400 * NS}, {"+12h", -12 * 3600 * NS}, {"+1500ms", -1500000000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t before = kd_now();
        CHECK_RC(kd_time_parse(cases[i].text, &ts, err, sizeof err), KD_OK);
        int64_t after = kd_now();
        CHECK(ts >= before - cases[i].ago);
        CHECK(ts <= after - cases[i].ago);
    }
    int64_t before = kd_now();
    CHECK_RC(kd_time_parse("now", &ts, err, sizeof err), KD_OK);
    CHECK(ts >= before && ts <= kd_now());
    /* kd_now is a real wall clock after 2020. */
    CHECK(before > INT64_C(1577836800) * NS);
}

static void test_parse_rejects(void)
{
    static const char *bad[] = {
        "",
        "yesterday",
        "Now",
        "2026-01-02",
        "2026-01-02T03:04:05",       /* no zone */
        "2026-01-02T03:04Z",         /* no seconds */
        "2026-1-02T03:04:05Z",
        "26-01-02T03:04:05Z",
        "2026-01-02X03:04:05Z",
        "2026-01-02T03:04:05ZZ",
        "2026-01-02T03:04:05Z ",
        " 2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.Z",
        "2026-01-02T03:04:05+0200",
        "2026-01-02T03:04:05+2:00",
        "2026-01-02T03:04:05+24:00",
        "2026-01-02T03:04:05+01:60",
        "2026-00-02T03:04:05Z",
        "2026-13-02T03:04:05Z",
        "2026-01-00T03:04:05Z",
        "2026-01-32T03:04:05Z",
        "2026-01-02T24:00:00Z",
        "2026-01-02T23:60:00Z",
        "2026-01-02T23:59:60Z",
        "2262-04-11T23:47:16.854775808Z",
        "1677-09-21T00:12:43.145224191Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "@",
        "@x",
        "@12x",
        "@1.5",
        "@9223372036854775808",
        "@-9223372036854775809",
        "@99999999999999999999999",
        "-",
        "-5",
        "-5x",
        "-5 m",
        "-m",
        "--5m",
        "-5M",
        "-99999999999999999999d",
        "-9999999999999d",
        "+",
        "+5",
        "++5m",
        "+-5m",
        "+ 5m",
        "+99999999999999999999d",
        "+9999999999999d",
        "\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        int64_t ts = 42;
        int rc = kd_time_parse(bad[i], &ts, err, sizeof err);
        if (rc != KD_EINVALID)
            fprintf(stderr, "accepted bad time '%s' as %" PRId64 "\n", bad[i], ts);
        CHECK_RC(rc, KD_EINVALID);
        CHECK_EQ_INT(ts, 42);
        CHECK(strncmp(err, "invalid time '", 14) == 0);
        CHECK(strchr(err, '\n') == NULL);
    }
    char err[256];
    int64_t ts;
    CHECK_RC(kd_time_parse("xyz", &ts, err, sizeof err), KD_EINVALID);
    CHECK_EQ_STR(err, "invalid time 'xyz': expected RFC 3339 like 2026-01-02T03:04:05Z, @<nanoseconds>, or -5m");
    CHECK_RC(kd_time_parse("2026-13-01T00:00:00Z", &ts, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "month 13") != NULL);
    /* A NULL or tiny errbuf is fine. */
    CHECK_RC(kd_time_parse("xyz", &ts, NULL, 0), KD_EINVALID);
    char tiny[4];
    CHECK_RC(kd_time_parse("xyz", &ts, tiny, sizeof tiny), KD_EINVALID);
    CHECK_EQ_INT(strlen(tiny), 3);
    CHECK_RC(kd_time_parse(NULL, &ts, err, sizeof err), KD_EINVALID);
    /* A long input is echoed cut short. */
    char longtext[2000];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    CHECK_RC(kd_time_parse(longtext, &ts, err, sizeof err), KD_EINVALID);
    CHECK(strstr(err, "...': expected") != NULL);
}

/* The TZ environment variable must not matter. */
static void test_tz_independent(void)
{
    char a[40], b[40];
    int64_t t1, t2;
    setenv("TZ", "UTC", 1);
    tzset();
    CHECK_RC(kd_time_format(INT64_C(1795708138123456789), a, sizeof a), KD_OK);
    CHECK_RC(kd_time_parse("2026-06-01T12:00:00Z", &t1, NULL, 0), KD_OK);
    setenv("TZ", "America/New_York", 1);
    tzset();
    CHECK_RC(kd_time_format(INT64_C(1795708138123456789), b, sizeof b), KD_OK);
    CHECK_RC(kd_time_parse("2026-06-01T12:00:00Z", &t2, NULL, 0), KD_OK);
    CHECK_EQ_STR(a, b);
    CHECK_EQ_INT(t1, t2);
    unsetenv("TZ");
    tzset();
}

int main(void)
{
    RUN(test_format_known);
    RUN(test_format_small_buffer);
    RUN(test_format_matches_gmtime);
    RUN(test_round_trip);
    RUN(test_parse_forms);
    RUN(test_parse_leap_years);
    RUN(test_parse_relative);
    RUN(test_parse_rejects);
    RUN(test_tz_independent);
    return HARNESS_DONE();
}
