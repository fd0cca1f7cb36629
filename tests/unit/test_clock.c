/* Unit tests for runtime/clock.c.
 *
 * glibc's localtime_r (one zone at a time, via TZ + tzset) is the oracle for
 * zone arithmetic; hand-built TZif files in a temporary TZDIR exercise the
 * footer rules that the system files may not (Jn, n, odd /time values). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* --- helpers ------------------------------------------------------------ */

static tend_time utc(int y, int mo, int d, int h, int mi, int s) {
    return clock_days_from_civil(y, mo, d) * TEND_DAY + h * TEND_HOUR + mi * TEND_MINUTE + s;
}

static tend_time wall_to_utc(const char *tz, int y, int mo, int d, int h, int mi, int s) {
    tend_time t = 0;
    assert_int_equal(clock_from_local(tz, y, mo, d, h, mi, s, &t), 0);
    return t;
}

static void assert_local(tend_time t, const char *tz, int y, int mo, int d,
                         int h, int mi, int s, int offset, int dst) {
    struct clock_local lt;
    assert_int_equal(clock_to_local(t, tz, &lt), 0);
    assert_int_equal(lt.year, y);
    assert_int_equal(lt.month, mo);
    assert_int_equal(lt.day, d);
    assert_int_equal(lt.hour, h);
    assert_int_equal(lt.minute, mi);
    assert_int_equal(lt.second, s);
    assert_int_equal(lt.utc_offset, offset);
    assert_int_equal(lt.is_dst, dst);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void) { /* xorshift64*: fixed seed, reproducible runs */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static tend_time rng_between(tend_time lo, tend_time hi) {
    return lo + (tend_time)(rng() % (uint64_t)(hi - lo));
}

static void use_glibc_zone(const char *tz) {
    setenv("TZ", tz, 1);
    tzset();
}

static void assert_matches_glibc(tend_time t, const char *tz) {
    struct clock_local lt;
    struct tm tm;
    time_t tt = (time_t)t;
    assert_int_equal(clock_to_local(t, tz, &lt), 0);
    assert_non_null(localtime_r(&tt, &tm));
    if (lt.year != tm.tm_year + 1900 || lt.month != tm.tm_mon + 1 || lt.day != tm.tm_mday ||
        lt.hour != tm.tm_hour || lt.minute != tm.tm_min || lt.second != tm.tm_sec ||
        lt.wday != tm.tm_wday || lt.yday != tm.tm_yday || lt.utc_offset != tm.tm_gmtoff ||
        lt.is_dst != (tm.tm_isdst > 0))
        fail_msg("%s at %lld: got %04d-%02d-%02d %02d:%02d:%02d off %d dst %d, glibc "
                 "%04d-%02d-%02d %02d:%02d:%02d off %ld dst %d", tz, (long long)t,
                 lt.year, lt.month, lt.day, lt.hour, lt.minute, lt.second, lt.utc_offset,
                 lt.is_dst, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, tm.tm_gmtoff, tm.tm_isdst);
}

/* --- clocks ------------------------------------------------------------- */

static void test_virtual_clock(void **state) {
    (void)state;
    tclock *c = clock_new_virtual(1000);
    assert_non_null(c);
    assert_true(clock_is_virtual(c));
    assert_int_equal(clock_now(c), 1000);
    clock_set(c, 5000);
    assert_int_equal(clock_now(c), 5000);
    clock_set(c, 4000);             /* never backwards */
    assert_int_equal(clock_now(c), 5000);
    clock_set(c, 5000);
    assert_int_equal(clock_now(c), 5000);
    clock_free(c);
}

static void test_real_clock(void **state) {
    (void)state;
    tclock *c = clock_new_real();
    assert_non_null(c);
    assert_false(clock_is_virtual(c));
    tend_time before = (tend_time)time(NULL);
    tend_time now = clock_now(c);
    assert_in_range(now, before, before + 2);
    clock_set(c, 1);                /* no effect on a real clock */
    assert_true(clock_now(c) >= before);
    clock_free(c);
}

/* --- calendar ----------------------------------------------------------- */

static void test_leap_days(void **state) {
    (void)state;
    char err[128];
    int y, m, d;
    assert_true(clock_is_leap(2024));
    assert_true(clock_is_leap(2000));
    assert_false(clock_is_leap(1900));
    assert_false(clock_is_leap(2026));
    assert_int_equal(clock_days_in_month(2024, 2), 29);
    assert_int_equal(clock_days_in_month(2026, 2), 28);
    assert_int_equal(clock_days_in_month(2100, 2), 28);
    assert_int_equal(clock_days_in_month(2026, 4), 30);
    assert_int_equal(clock_days_in_month(2026, 12), 31);
    assert_int_equal(clock_days_in_month(2026, 13), 0);

    assert_int_equal(clock_parse_date("2024-02-29", &y, &m, &d, err, sizeof err), 0);
    assert_int_equal(y, 2024);
    assert_int_equal(m, 2);
    assert_int_equal(d, 29);
    assert_int_equal(clock_parse_date("2026-02-29", &y, &m, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "day 29 out of range"));
    assert_int_equal(clock_parse_date("2026-13-01", &y, &m, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "month 13 out of range"));
    assert_int_equal(clock_parse_date("", &y, &m, &d, err, sizeof err), -1);
    assert_int_equal(clock_parse_date("2026-1-01", &y, &m, &d, err, sizeof err), -1);
    assert_int_equal(clock_parse_date("2026-01-01x", &y, &m, &d, err, sizeof err), -1);
    assert_int_equal(clock_parse_date("2026-01-00", &y, &m, &d, NULL, 0), -1);
}

static void test_civil_round_trip(void **state) {
    (void)state;
    assert_int_equal(clock_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(clock_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(clock_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(clock_days_from_civil(2026, 1, 1) * TEND_DAY, 1767225600);
    /* Out-of-range months and days roll over. */
    assert_int_equal(clock_days_from_civil(2025, 13, 1), clock_days_from_civil(2026, 1, 1));
    assert_int_equal(clock_days_from_civil(2026, 0, 1), clock_days_from_civil(2025, 12, 1));
    assert_int_equal(clock_days_from_civil(2026, 1, 32), clock_days_from_civil(2026, 2, 1));

    int py, pm, pd;
    clock_civil_from_days(-1000001, &py, &pm, &pd);
    for (int64_t days = -1000000; days <= 1000000; days++) {
        int y, m, d;
        clock_civil_from_days(days, &y, &m, &d);
        if (clock_days_from_civil(y, m, d) != days)
            fail_msg("day %lld -> %d-%d-%d does not round-trip", (long long)days, y, m, d);
        /* consecutive days are consecutive dates */
        int next = (d == pd + 1 && m == pm && y == py) ||
                   (d == 1 && pd == clock_days_in_month(py, pm) &&
                    ((m == pm + 1 && y == py) || (m == 1 && pm == 12 && y == py + 1)));
        if (!next) fail_msg("%d-%d-%d follows %d-%d-%d", y, m, d, py, pm, pd);
        py = y;
        pm = m;
        pd = d;
    }
}

/* --- zones: fixed cases ------------------------------------------------- */

static void test_new_york_dst(void **state) {
    (void)state;
    /* Spring forward: 2026-03-08 02:00 EST becomes 03:00 EDT at 07:00 UTC. */
    assert_local(utc(2026, 3, 8, 6, 59, 59), "America/New_York", 2026, 3, 8, 1, 59, 59, -18000, 0);
    assert_local(utc(2026, 3, 8, 7, 0, 0), "America/New_York", 2026, 3, 8, 3, 0, 0, -14400, 1);
    assert_int_equal(wall_to_utc("America/New_York", 2026, 3, 8, 1, 59, 0), utc(2026, 3, 8, 6, 59, 0));
    assert_int_equal(wall_to_utc("America/New_York", 2026, 3, 8, 3, 0, 0), utc(2026, 3, 8, 7, 0, 0));
    /* 02:30 does not exist: shifted forward by the gap to 03:30 EDT. */
    assert_int_equal(wall_to_utc("America/New_York", 2026, 3, 8, 2, 30, 0), utc(2026, 3, 8, 7, 30, 0));
    assert_int_equal(wall_to_utc("America/New_York", 2026, 3, 8, 2, 0, 0), utc(2026, 3, 8, 7, 0, 0));

    /* Fall back: 2026-11-01 02:00 EDT becomes 01:00 EST at 06:00 UTC. */
    assert_local(utc(2026, 11, 1, 5, 59, 59), "America/New_York", 2026, 11, 1, 1, 59, 59, -14400, 1);
    assert_local(utc(2026, 11, 1, 6, 0, 0), "America/New_York", 2026, 11, 1, 1, 0, 0, -18000, 0);
    /* 01:30 happens twice: the earlier (EDT) is chosen. */
    assert_int_equal(wall_to_utc("America/New_York", 2026, 11, 1, 1, 30, 0), utc(2026, 11, 1, 5, 30, 0));
    assert_int_equal(wall_to_utc("America/New_York", 2026, 11, 1, 0, 59, 59), utc(2026, 11, 1, 4, 59, 59));
    assert_int_equal(wall_to_utc("America/New_York", 2026, 11, 1, 2, 0, 0), utc(2026, 11, 1, 7, 0, 0));
    /* Far future: past any table, the footer rule applies. */
    assert_local(utc(2300, 7, 1, 12, 0, 0), "America/New_York", 2300, 7, 1, 8, 0, 0, -14400, 1);
    assert_local(utc(2300, 1, 1, 12, 0, 0), "America/New_York", 2300, 1, 1, 7, 0, 0, -18000, 0);
}

static void test_berlin_dst(void **state) {
    (void)state;
    const char *tz = "Europe/Berlin";
    /* 2026-03-29 02:00 CET -> 03:00 CEST at 01:00 UTC. */
    assert_local(utc(2026, 3, 29, 0, 59, 59), tz, 2026, 3, 29, 1, 59, 59, 3600, 0);
    assert_local(utc(2026, 3, 29, 1, 0, 0), tz, 2026, 3, 29, 3, 0, 0, 7200, 1);
    assert_int_equal(wall_to_utc(tz, 2026, 3, 29, 2, 30, 0), utc(2026, 3, 29, 1, 30, 0));
    /* 2026-10-25 03:00 CEST -> 02:00 CET at 01:00 UTC; 02:30 happens twice. */
    assert_local(utc(2026, 10, 25, 0, 59, 59), tz, 2026, 10, 25, 2, 59, 59, 7200, 1);
    assert_local(utc(2026, 10, 25, 1, 0, 0), tz, 2026, 10, 25, 2, 0, 0, 3600, 0);
    assert_int_equal(wall_to_utc(tz, 2026, 10, 25, 2, 30, 0), utc(2026, 10, 25, 0, 30, 0));
    assert_int_equal(wall_to_utc(tz, 2026, 10, 25, 3, 0, 0), utc(2026, 10, 25, 2, 0, 0));
}

static void test_shanghai(void **state) {
    (void)state;
    const char *tz = "Asia/Shanghai";
    assert_local(utc(2026, 3, 1, 1, 0, 0), tz, 2026, 3, 1, 9, 0, 0, 28800, 0);
    assert_local(utc(2026, 7, 1, 16, 0, 0), tz, 2026, 7, 2, 0, 0, 0, 28800, 0);
    assert_int_equal(wall_to_utc(tz, 2026, 3, 1, 9, 0, 0), utc(2026, 3, 1, 1, 0, 0));
    assert_int_equal(wall_to_utc(tz, 2026, 1, 1, 0, 0, 0), utc(2025, 12, 31, 16, 0, 0));
    char buf[32];
    assert_string_equal(clock_format(utc(2026, 3, 1, 1, 0, 0), tz, buf, sizeof buf),
                        "2026-03-01T09:00:00+08:00");
}

static void test_from_local_normalises(void **state) {
    (void)state;
    assert_int_equal(wall_to_utc("UTC", 2026, 1, 32, 0, 0, 0), utc(2026, 2, 1, 0, 0, 0));
    assert_int_equal(wall_to_utc("UTC", 2026, 2, 29, 0, 0, 0), utc(2026, 3, 1, 0, 0, 0));
    assert_int_equal(wall_to_utc("UTC", 2026, 12, 31, 24, 0, 0), utc(2027, 1, 1, 0, 0, 0));
    assert_int_equal(wall_to_utc("UTC", 2026, 13, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
    assert_int_equal(wall_to_utc("UTC", 2026, 3, 1, 0, -1, 0), utc(2026, 2, 28, 23, 59, 0));
    assert_int_equal(wall_to_utc("UTC", 2026, 3, 1, 0, 0, 90), utc(2026, 3, 1, 0, 1, 30));
    assert_int_equal(wall_to_utc("Asia/Shanghai", 2026, 1, 0, 8, 0, 0), utc(2025, 12, 31, 0, 0, 0));
    /* normalised into a gap: 01:90 on spring-forward day is 02:30 -> 03:30 EDT */
    assert_int_equal(wall_to_utc("America/New_York", 2026, 3, 8, 1, 90, 0), utc(2026, 3, 8, 7, 30, 0));
    tend_time t;
    assert_int_equal(clock_from_local("Nowhere/Land", 2026, 1, 1, 0, 0, 0, &t), -1);
    assert_int_equal(clock_from_local("UTC", 2147483647, 12, 31, 0, 0, 0, &t), -1);
}

static void test_tz_valid(void **state) {
    (void)state;
    struct clock_local lt;
    assert_true(clock_tz_valid("UTC"));
    assert_true(clock_tz_valid("Etc/UTC"));
    assert_true(clock_tz_valid("GMT"));
    assert_true(clock_tz_valid("America/New_York"));
    assert_false(clock_tz_valid(NULL));
    assert_false(clock_tz_valid(""));
    assert_false(clock_tz_valid("Nowhere/Land"));
    assert_false(clock_tz_valid("../zoneinfo/UTC"));
    assert_false(clock_tz_valid("America/../UTC"));
    assert_false(clock_tz_valid("/usr/share/zoneinfo/UTC"));
    assert_false(clock_tz_valid("America"));        /* a directory */
    assert_false(clock_tz_valid("zone.tab"));       /* not TZif */
    assert_int_equal(clock_to_local(0, "Nowhere/Land", &lt), -1);

    /* UTC needs no files; unknown zones are not remembered as unknown. */
    setenv("TZDIR", "/nonexistent", 1);
    assert_true(clock_tz_valid("UTC"));
    assert_true(clock_tz_valid("Etc/UTC"));
    assert_false(clock_tz_valid("Africa/Nairobi"));
    unsetenv("TZDIR");
    assert_true(clock_tz_valid("Africa/Nairobi"));
    assert_local(utc(2026, 1, 1, 0, 0, 0), "Africa/Nairobi", 2026, 1, 1, 3, 0, 0, 10800, 0);
}

/* --- zones: property test against glibc ---------------------------------- */

static void test_matches_glibc(void **state) {
    (void)state;
    static const char *zones[] = {
        "America/New_York", "Europe/Berlin", "Asia/Shanghai", "Australia/Sydney",
        "America/Sao_Paulo", "Asia/Kolkata", "Pacific/Chatham", "America/Nuuk",
        "America/Santiago", "Europe/Dublin", "Australia/Lord_Howe", "Africa/Casablanca",
    };
    const tend_time lo = utc(1970, 1, 1, 0, 0, 0), hi = utc(2100, 1, 1, 0, 0, 0);
    for (size_t z = 0; z < sizeof zones / sizeof *zones; z++) {
        use_glibc_zone(zones[z]);
        for (int i = 0; i < 20000; i++) {
            tend_time t = rng_between(lo, hi);
            assert_matches_glibc(t, zones[z]);
            /* and back: the wall time maps to t, or to an earlier instant with
             * the same wall time when t is the second pass of an overlap */
            struct clock_local lt, back;
            assert_int_equal(clock_to_local(t, zones[z], &lt), 0);
            tend_time u = wall_to_utc(zones[z], lt.year, lt.month, lt.day,
                                      lt.hour, lt.minute, lt.second);
            if (u != t) {
                assert_true(u < t);
                assert_int_equal(clock_to_local(u, zones[z], &back), 0);
                assert_true(back.hour == lt.hour && back.minute == lt.minute &&
                            back.day == lt.day && back.utc_offset > lt.utc_offset);
            }
        }
    }
    unsetenv("TZ");
    tzset();
}

/* --- zones: hand-made TZif files ------------------------------------------ */

static char tzdir[64];

static void put32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static void put_header(FILE *f, char version, uint32_t ntrans, uint32_t ntypes) {
    static const char zeros[15];
    fwrite("TZif", 1, 4, f);
    fputc(version, f);
    fwrite(zeros, 1, 15, f);
    put32(f, 0); put32(f, 0); put32(f, 0);  /* isut, isstd, leap */
    put32(f, ntrans);
    put32(f, ntypes);
    put32(f, 4);                            /* chars: "ABC\0" */
}

static void put_block(FILE *f, int timesize, uint32_t ntrans, const int64_t *trans,
                      const uint8_t *idx, uint32_t ntypes, const int32_t *offs,
                      const uint8_t *dsts) {
    for (uint32_t i = 0; i < ntrans; i++) {
        if (timesize == 8) put32(f, (uint32_t)((uint64_t)trans[i] >> 32));
        put32(f, (uint32_t)trans[i]);
    }
    if (ntrans > 0) fwrite(idx, 1, ntrans, f);
    for (uint32_t i = 0; i < ntypes; i++) {
        put32(f, (uint32_t)offs[i]);
        fputc(dsts[i], f);
        fputc(0, f);
    }
    fwrite("ABC", 1, 4, f);
}

/* Writes a TZif file; version '\0' is v1 (no 64-bit block, no footer). */
static void write_tzif(const char *name, char version, uint32_t ntrans, const int64_t *trans,
                       const uint8_t *idx, uint32_t ntypes, const int32_t *offs,
                       const uint8_t *dsts, const char *footer) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tzdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    put_header(f, version, ntrans, ntypes);
    put_block(f, 4, ntrans, trans, idx, ntypes, offs, dsts);
    if (version != '\0') {
        put_header(f, version, ntrans, ntypes);
        put_block(f, 8, ntrans, trans, idx, ntypes, offs, dsts);
        fprintf(f, "\n%s\n", footer);
    }
    fclose(f);
}

static void write_footer_only(const char *name, const char *footer) {
    static const int32_t offs[1] = {0};
    static const uint8_t dsts[1] = {0};
    write_tzif(name, '2', 0, NULL, NULL, 1, offs, dsts, footer);
}

static int make_tzdir(void **state) {
    (void)state;
    strcpy(tzdir, "/tmp/test_clock_XXXXXX");
    return mkdtemp(tzdir) != NULL ? 0 : -1;
}

/* Removes whatever a failed test left behind, then the directory. */
static int remove_tzdir(void **state) {
    (void)state;
    DIR *dir = opendir(tzdir);
    struct dirent *e;
    char path[512];
    while (dir != NULL && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tzdir, e->d_name);
        unlink(path);
    }
    if (dir != NULL) closedir(dir);
    return rmdir(tzdir);
}

static void remove_tzfile(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tzdir, name);
    unlink(path);
}

/* POSIX TZ strings as TZif footers, each checked against glibc reading the
 * same string directly as TZ. (Only from 1970: glibc's own rule arithmetic
 * clamps earlier years to 1970.) */
static const char *const footers[] = {
    "EST5EDT,M3.2.0,M11.1.0",
    "<+08>-8",
    "CET-1CEST,M3.5.0,M10.5.0/3",
    "AEST-10AEDT,M10.1.0,M4.1.0/3",
    "IST-1GMT0,M10.5.0,M3.5.0/1",
    "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
    "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
    "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
    "XXX3YYY,J60/2,J300/2",
    "XXX3YYY,59/2,299/2",
    "XXX3YYY,J1/0,J365/23",
    "XXX5YYY,M3.2.0/-26,M11.1.0/50",
    "XXX5YYY,M3.2.0/167,M11.1.0/-167",
    "XXX-3:30YYY-4:30,M3.5.0/1:30:15,M10.5.0/2:45:30",
};

static void test_footer_rules(void **state) {
    (void)state;
    char name[32];
    size_t n = sizeof footers / sizeof *footers;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "footer%zu", i);
        write_footer_only(name, footers[i]);
    }
    setenv("TZDIR", tzdir, 1);
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "footer%zu", i);
        assert_true(clock_tz_valid(name));     /* loads it into the cache */
    }
    unsetenv("TZDIR");
    const tend_time lo = utc(1970, 1, 1, 0, 0, 0), hi = utc(2400, 1, 1, 0, 0, 0);
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "footer%zu", i);
        use_glibc_zone(footers[i]);
        for (int k = 0; k < 4000; k++) assert_matches_glibc(rng_between(lo, hi), name);
        remove_tzfile(name);
    }
    unsetenv("TZ");
    tzset();
}

static void test_footer_dst_all_year(void **state) {
    (void)state;
    /* "DST all year" (a zero-length standard period) reads as daylight time. */
    write_footer_only("allyear", "EST5EDT4,0/0,J365/25");
    setenv("TZDIR", tzdir, 1);
    assert_true(clock_tz_valid("allyear"));
    unsetenv("TZDIR");
    for (int y = 2020; y < 2030; y++) {
        assert_local(utc(y, 1, 1, 4, 59, 0), "allyear", y, 1, 1, 0, 59, 0, -14400, 1);
        assert_local(utc(y, 1, 1, 5, 0, 0), "allyear", y, 1, 1, 1, 0, 0, -14400, 1);
        assert_local(utc(y, 7, 1, 0, 0, 0), "allyear", y, 6, 30, 20, 0, 0, -14400, 1);
    }
    remove_tzfile("allyear");
}

static void test_tzif_versions(void **state) {
    (void)state;
    /* v1: one transition at 2001-09-09T01:46:40Z from +01:00 to +02:00 DST;
     * with no footer the last type rules forever. */
    const int64_t trans[1] = {1000000000};
    const uint8_t idx[1] = {1};
    const int32_t offs[2] = {3600, 7200};
    const uint8_t dsts[2] = {0, 1};
    write_tzif("v1zone", '\0', 1, trans, idx, 2, offs, dsts, NULL);
    /* v3 with a table that ends and a footer that carries on */
    write_tzif("v3zone", '3', 1, trans, idx, 2, offs, dsts, "<+02>-2");
    write_footer_only("badfooter", "EST5EDT,M3.2.0");
    write_footer_only("badoffset", "XXX-30");
    char path[256];
    snprintf(path, sizeof path, "%s/junk", tzdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("TZiX not really a zone file, just some text that is long enough", f);
    fclose(f);

    setenv("TZDIR", tzdir, 1);
    assert_true(clock_tz_valid("v1zone"));
    assert_true(clock_tz_valid("v3zone"));
    assert_false(clock_tz_valid("badfooter"));
    assert_false(clock_tz_valid("badoffset"));
    assert_false(clock_tz_valid("junk"));
    unsetenv("TZDIR");
    assert_local(999999999, "v1zone", 2001, 9, 9, 2, 46, 39, 3600, 0);
    assert_local(1000000000, "v1zone", 2001, 9, 9, 3, 46, 40, 7200, 1);
    assert_local(utc(2300, 1, 1, 0, 0, 0), "v1zone", 2300, 1, 1, 2, 0, 0, 7200, 1);
    assert_local(utc(1900, 1, 1, 0, 0, 0), "v3zone", 1900, 1, 1, 1, 0, 0, 3600, 0);
    assert_local(utc(2300, 1, 1, 0, 0, 0), "v3zone", 2300, 1, 1, 2, 0, 0, 7200, 0);
    /* wall 03:00 on 2001-09-09 is inside the gap [02:46:40, 03:46:40): read
     * with the old offset, it lands an hour later on the new clock */
    assert_int_equal(wall_to_utc("v1zone", 2001, 9, 9, 3, 0, 0), utc(2001, 9, 9, 2, 0, 0));
    const char *names[] = {"v1zone", "v3zone", "badfooter", "badoffset", "junk"};
    for (size_t i = 0; i < 5; i++) remove_tzfile(names[i]);
}

/* --- next local time ------------------------------------------------------ */

static void test_next_local(void **state) {
    (void)state;
    const char *ny = "America/New_York";
    tend_time t;
    /* ordinary day, and strictly after */
    assert_int_equal(clock_next_local(utc(2026, 6, 1, 12, 0, 0), ny, 9, 0, &t), 0);
    assert_int_equal(t, utc(2026, 6, 1, 13, 0, 0));
    assert_int_equal(clock_next_local(utc(2026, 6, 1, 14, 0, 0), ny, 9, 0, &t), 0);
    assert_int_equal(t, utc(2026, 6, 2, 13, 0, 0));
    assert_int_equal(clock_next_local(utc(2026, 6, 1, 12, 59, 59), ny, 9, 0, &t), 0);
    assert_int_equal(t, utc(2026, 6, 1, 13, 0, 0));
    assert_int_equal(clock_next_local(utc(2026, 6, 1, 13, 0, 0), ny, 9, 0, &t), 0);
    assert_int_equal(t, utc(2026, 6, 2, 13, 0, 0));
    /* across spring-forward: 09:00 EST then 09:00 EDT, 23h apart */
    assert_int_equal(clock_next_local(utc(2026, 3, 7, 12, 0, 0), ny, 9, 0, &t), 0);
    assert_int_equal(t, utc(2026, 3, 7, 14, 0, 0));
    assert_int_equal(clock_next_local(t, ny, 9, 0, &t), 0);
    assert_int_equal(t, utc(2026, 3, 8, 13, 0, 0));
    /* 02:30 on spring-forward day is in the gap: fires at 03:30 EDT */
    assert_int_equal(clock_next_local(utc(2026, 3, 7, 12, 0, 0), ny, 2, 30, &t), 0);
    assert_int_equal(t, utc(2026, 3, 8, 7, 30, 0));
    assert_int_equal(clock_next_local(t, ny, 2, 30, &t), 0);
    assert_int_equal(t, utc(2026, 3, 9, 6, 30, 0));
    /* 01:30 on fall-back day happens twice; once per day, the first */
    assert_int_equal(clock_next_local(utc(2026, 10, 31, 12, 0, 0), ny, 1, 30, &t), 0);
    assert_int_equal(t, utc(2026, 11, 1, 5, 30, 0));
    assert_int_equal(clock_next_local(t, ny, 1, 30, &t), 0);
    assert_int_equal(t, utc(2026, 11, 2, 6, 30, 0));
    /* Berlin */
    assert_int_equal(clock_next_local(utc(2026, 3, 28, 12, 0, 0), "Europe/Berlin", 2, 30, &t), 0);
    assert_int_equal(t, utc(2026, 3, 29, 1, 30, 0));
    /* bad input */
    assert_int_equal(clock_next_local(0, ny, 24, 0, &t), -1);
    assert_int_equal(clock_next_local(0, ny, 0, 60, &t), -1);
    assert_int_equal(clock_next_local(0, "Nowhere/Land", 9, 0, &t), -1);
}

static void test_parse_hhmm(void **state) {
    (void)state;
    int h, m;
    assert_int_equal(clock_parse_hhmm("09:30", &h, &m), 0);
    assert_int_equal(h, 9);
    assert_int_equal(m, 30);
    assert_int_equal(clock_parse_hhmm("00:00", &h, &m), 0);
    assert_int_equal(clock_parse_hhmm("23:59", &h, &m), 0);
    assert_int_equal(clock_parse_hhmm("24:00", &h, &m), -1);
    assert_int_equal(clock_parse_hhmm("12:60", &h, &m), -1);
    assert_int_equal(clock_parse_hhmm("9:30", &h, &m), -1);
    assert_int_equal(clock_parse_hhmm("09:30 ", &h, &m), -1);
    assert_int_equal(clock_parse_hhmm("0930", &h, &m), -1);
    assert_int_equal(clock_parse_hhmm("", &h, &m), -1);
    assert_int_equal(clock_parse_hhmm(NULL, &h, &m), -1);
}

/* --- cron ----------------------------------------------------------------- */

static void assert_cron_error(const char *expr, const char *needle) {
    cron_expr c;
    char err[160] = "";
    if (cron_parse(expr, &c, err, sizeof err) != -1) fail_msg("\"%s\" parsed", expr);
    if (strstr(err, needle) == NULL) fail_msg("\"%s\": error \"%s\" lacks \"%s\"", expr, err, needle);
}

static cron_expr cron(const char *expr) {
    cron_expr c;
    char err[160] = "";
    if (cron_parse(expr, &c, err, sizeof err) != 0) fail_msg("\"%s\": %s", expr, err);
    return c;
}

static void test_cron_parse_errors(void **state) {
    (void)state;
    assert_cron_error("", "expected 5 fields, got 0");
    assert_cron_error("* * * *", "expected 5 fields, got 4");
    assert_cron_error("* * * * * *", "expected 5 fields, got 6");
    assert_cron_error("60 * * * *", "minute 60 out of range 0-59");
    assert_cron_error("* 24 * * *", "hour 24 out of range");
    assert_cron_error("* * 0 * *", "day-of-month 0 out of range");
    assert_cron_error("* * 32 * *", "day-of-month 32 out of range");
    assert_cron_error("* * * 13 *", "month 13 out of range");
    assert_cron_error("* * * * 8", "day-of-week 8 out of range");
    assert_cron_error("*/0 * * * *", "bad step");
    assert_cron_error("*/x * * * *", "bad step");
    assert_cron_error("*/ * * * *", "bad step");
    assert_cron_error("*/61 * * * *", "bad step");
    assert_cron_error("5/15 * * * *", "bad step");
    assert_cron_error("10-5 * * * *", "backwards");
    assert_cron_error("1-2-3 * * * *", "unexpected");
    assert_cron_error("1,,2 * * * *", "empty list item");
    assert_cron_error("1, * * * *", "empty list item");
    assert_cron_error("x * * * *", "minute: expected a number");
    assert_cron_error("jan * * * *", "minute: expected a number");
    assert_cron_error("* * * ja *", "month: expected a number");
    assert_cron_error("* * * janu *", "month: expected a number");
    assert_cron_error("* * * * mon-", "day-of-week: expected a number");
    assert_cron_error("@daily", "expected 5 fields");
    cron_expr c;
    assert_int_equal(cron_parse(NULL, &c, NULL, 0), -1);
}

static void test_cron_parse_fields(void **state) {
    (void)state;
    cron_expr c = cron("*/15 * * * *");
    assert_true(c.minutes == (1ULL << 0 | 1ULL << 15 | 1ULL << 30 | 1ULL << 45));
    assert_int_equal(c.hours, 0xFFFFFF);
    assert_int_equal(c.mdays, 0xFFFFFFFEu);
    assert_int_equal(c.months, 0x1FFE);
    assert_int_equal(c.wdays, 0x7F);
    assert_true(c.mday_star && c.wday_star);

    c = cron("0,30 9-17/2 1,15 jan,JUL,Dec mon-fri");
    assert_true(c.minutes == (1ULL | 1ULL << 30));
    assert_int_equal(c.hours, 1u << 9 | 1u << 11 | 1u << 13 | 1u << 15 | 1u << 17);
    assert_int_equal(c.mdays, 1u << 1 | 1u << 15);
    assert_int_equal(c.months, 1u << 1 | 1u << 7 | 1u << 12);
    assert_int_equal(c.wdays, 0x3E);
    assert_false(c.mday_star || c.wday_star);

    c = cron("0 0 * * 7");
    assert_int_equal(c.wdays, 1);
    c = cron("0 0 * * 5-7");
    assert_int_equal(c.wdays, 1 | 1 << 5 | 1 << 6);
    c = cron("0 0 * * 0-7");
    assert_int_equal(c.wdays, 0x7F);
    assert_false(c.wday_star);
    c = cron("0 0 * * SUN,sat");
    assert_int_equal(c.wdays, 1 | 1 << 6);
    c = cron("  59   23\t31 12 */2  ");
    assert_true(c.minutes == 1ULL << 59);
    assert_int_equal(c.wdays, 1 | 1 << 2 | 1 << 4 | 1 << 6);
    c = cron("0-59/20 0 1-31/10 * *");
    assert_true(c.minutes == (1ULL | 1ULL << 20 | 1ULL << 40));
    assert_int_equal(c.mdays, 1u << 1 | 1u << 11 | 1u << 21 | 1u << 31);
}

static tend_time cron_next_ok(const char *expr, tend_time after, const char *tz) {
    cron_expr c = cron(expr);
    tend_time t = 0;
    if (cron_next(&c, after, tz, &t) != 0) fail_msg("\"%s\" in %s never fires", expr, tz);
    return t;
}

static void test_cron_next_basic(void **state) {
    (void)state;
    assert_int_equal(cron_next_ok("*/15 * * * *", utc(2026, 5, 1, 10, 7, 0), "UTC"), utc(2026, 5, 1, 10, 15, 0));
    assert_int_equal(cron_next_ok("*/15 * * * *", utc(2026, 5, 1, 10, 15, 0), "UTC"), utc(2026, 5, 1, 10, 30, 0));
    assert_int_equal(cron_next_ok("*/15 * * * *", utc(2026, 5, 1, 10, 14, 59), "UTC"), utc(2026, 5, 1, 10, 15, 0));
    assert_int_equal(cron_next_ok("* * * * *", utc(2026, 12, 31, 23, 59, 0), "UTC"), utc(2027, 1, 1, 0, 0, 0));
    assert_int_equal(cron_next_ok("0 9 * * mon-fri", utc(2026, 5, 1, 12, 0, 0), "UTC"), utc(2026, 5, 4, 9, 0, 0));
    assert_int_equal(cron_next_ok("0 0 1 jan *", utc(2026, 1, 1, 0, 0, 0), "UTC"), utc(2027, 1, 1, 0, 0, 0));
    assert_int_equal(cron_next_ok("0 0 * * 7", utc(2026, 5, 1, 0, 0, 0), "UTC"), utc(2026, 5, 3, 0, 0, 0));
    /* evaluated on the zone's wall clock */
    assert_int_equal(cron_next_ok("0 9 * * *", utc(2026, 3, 1, 0, 0, 0), "Asia/Shanghai"), utc(2026, 3, 1, 1, 0, 0));
    assert_int_equal(cron_next_ok("0 9 * * *", utc(2026, 3, 1, 1, 0, 0), "Asia/Shanghai"), utc(2026, 3, 2, 1, 0, 0));
    assert_int_equal(cron_next_ok("30 9 * * *", utc(2026, 3, 1, 0, 0, 0), "Asia/Kolkata"), utc(2026, 3, 1, 4, 0, 0));
    tend_time t;
    cron_expr c = cron("* * * * *");
    assert_int_equal(cron_next(&c, 0, "Nowhere/Land", &t), -1);
}

static void test_cron_month_ends(void **state) {
    (void)state;
    assert_int_equal(cron_next_ok("0 10 31 * *", utc(2026, 1, 31, 10, 0, 0), "UTC"), utc(2026, 3, 31, 10, 0, 0));
    assert_int_equal(cron_next_ok("0 10 31 * *", utc(2026, 3, 31, 10, 0, 0), "UTC"), utc(2026, 5, 31, 10, 0, 0));
    assert_int_equal(cron_next_ok("0 0 29 2 *", utc(2026, 1, 1, 0, 0, 0), "UTC"), utc(2028, 2, 29, 0, 0, 0));
    assert_int_equal(cron_next_ok("0 0 29 2 *", utc(2028, 2, 29, 0, 0, 0), "UTC"), utc(2032, 2, 29, 0, 0, 0));
    /* 2100 is not a leap year: the next Feb 29 after 2096 is 8 years away */
    cron_expr c = cron("0 0 29 2 *");
    tend_time t;
    assert_int_equal(cron_next(&c, utc(2096, 3, 1, 0, 0, 0), "UTC", &t), -1);
    c = cron("0 0 31 2 *");
    assert_int_equal(cron_next(&c, utc(2026, 1, 1, 0, 0, 0), "UTC", &t), -1);
    c = cron("0 0 30 2 *");
    assert_int_equal(cron_next(&c, utc(2026, 1, 1, 0, 0, 0), "America/New_York", &t), -1);
}

static void test_cron_dom_dow_or(void **state) {
    (void)state;
    /* 2026-02-01 is a Sunday; Feb 6, 13, 20 are Fridays; Feb 13 is also the 13th */
    tend_time after = utc(2026, 2, 1, 0, 0, 0);
    tend_time t = cron_next_ok("0 0 13 * 5", after, "UTC");
    assert_int_equal(t, utc(2026, 2, 6, 0, 0, 0));
    t = cron_next_ok("0 0 13 * 5", t, "UTC");
    assert_int_equal(t, utc(2026, 2, 13, 0, 0, 0));
    t = cron_next_ok("0 0 13 * 5", t, "UTC");
    assert_int_equal(t, utc(2026, 2, 20, 0, 0, 0));
    /* 1st of the month or a Monday */
    assert_int_equal(cron_next_ok("0 0 1 * mon", utc(2026, 2, 24, 0, 0, 0), "UTC"), utc(2026, 3, 1, 0, 0, 0));
    assert_int_equal(cron_next_ok("0 0 1 * mon", utc(2026, 3, 1, 0, 0, 0), "UTC"), utc(2026, 3, 2, 0, 0, 0));
    /* with one field `*`, the other alone decides */
    assert_int_equal(cron_next_ok("0 0 13 * *", after, "UTC"), utc(2026, 2, 13, 0, 0, 0));
    assert_int_equal(cron_next_ok("0 0 * * 5", after, "UTC"), utc(2026, 2, 6, 0, 0, 0));
    /* Friday the 13th needs both, which cron cannot say: OR gives Fridays */
    assert_int_equal(cron_next_ok("0 0 13 * fri", utc(2026, 2, 13, 0, 0, 0), "UTC"), utc(2026, 2, 20, 0, 0, 0));
}

static void test_cron_dst(void **state) {
    (void)state;
    const char *ny = "America/New_York";
    /* 02:30 does not exist on 2026-03-08: fires at the shifted 03:30 EDT */
    tend_time t = cron_next_ok("30 2 * * *", utc(2026, 3, 7, 12, 0, 0), ny);
    assert_int_equal(t, utc(2026, 3, 8, 7, 30, 0));
    assert_int_equal(cron_next_ok("30 2 * * *", t, ny), utc(2026, 3, 9, 6, 30, 0));
    /* on fall-back day 02:30 happens once, and 01:30 (twice on the clock) fires once */
    t = cron_next_ok("30 2 * * *", utc(2026, 10, 31, 12, 0, 0), ny);
    assert_int_equal(t, utc(2026, 11, 1, 7, 30, 0));
    assert_int_equal(cron_next_ok("30 2 * * *", t, ny), utc(2026, 11, 2, 7, 30, 0));
    t = cron_next_ok("30 1 * * *", utc(2026, 10, 31, 12, 0, 0), ny);
    assert_int_equal(t, utc(2026, 11, 1, 5, 30, 0));
    assert_int_equal(cron_next_ok("30 1 * * *", t, ny), utc(2026, 11, 2, 6, 30, 0));
    /* every half hour through the gap: no duplicates, no misses */
    static const int spring[][2] = {{6, 30}, {7, 0}, {7, 30}, {8, 0}};
    t = utc(2026, 3, 8, 6, 0, 0);
    for (int i = 0; i < 4; i++) {
        t = cron_next_ok("*/30 * * * *", t, ny);
        assert_int_equal(t, utc(2026, 3, 8, spring[i][0], spring[i][1], 0));
    }
    /* and through the overlap: the repeated hour is skipped */
    static const int fall[][2] = {{5, 0}, {5, 30}, {7, 0}, {7, 30}};
    t = utc(2026, 11, 1, 4, 45, 0);
    for (int i = 0; i < 4; i++) {
        t = cron_next_ok("*/30 * * * *", t, ny);
        assert_int_equal(t, utc(2026, 11, 1, fall[i][0], fall[i][1], 0));
    }
    /* Berlin's gap is 02:00-03:00 local */
    assert_int_equal(cron_next_ok("0 2 * * *", utc(2026, 3, 28, 12, 0, 0), "Europe/Berlin"),
                     utc(2026, 3, 29, 1, 0, 0));
    assert_int_equal(cron_next_ok("0 2 * * *", utc(2026, 10, 24, 12, 0, 0), "Europe/Berlin"),
                     utc(2026, 10, 25, 0, 0, 0));
    /* Lord Howe springs forward only 30 minutes (02:00 +10:30 -> 02:30 +11:00
     * on 2026-10-04), so shifted times interleave with real ones: 02:20 is
     * shifted to 02:50, after the real 02:40. Instants must come out in order. */
    static const int lord_howe[][3] = {{3, 15, 30}, {3, 15, 40}, {3, 15, 50}, {4, 15, 0}};
    t = utc(2026, 10, 3, 15, 0, 0);
    for (int i = 0; i < 4; i++) {
        t = cron_next_ok("*/20 2 * * *", t, "Australia/Lord_Howe");
        assert_int_equal(t, utc(2026, 10, lord_howe[i][0], lord_howe[i][1], lord_howe[i][2], 0));
    }
}

/* Brute force: every matching wall minute in a window, converted, minimum
 * instant after `after`. */
static int cron_reference(const cron_expr *c, tend_time after, const char *tz, tend_time *out) {
    struct clock_local lt;
    int found = 0;
    assert_int_equal(clock_to_local(after, tz, &lt), 0);
    for (int k = -2; k <= 9; k++) {
        int64_t day = clock_days_from_civil(lt.year, lt.month, lt.day + k);
        int y, m, d, wd = (int)(((day + 4) % 7 + 7) % 7);
        clock_civil_from_days(day, &y, &m, &d);
        int dom = (c->mdays >> d) & 1, dow = (c->wdays >> wd) & 1;
        if (!((c->months >> m) & 1)) continue;
        if (!((c->mday_star || c->wday_star) ? dom && dow : dom || dow)) continue;
        for (int h = 0; h < 24; h++) {
            if (!((c->hours >> h) & 1)) continue;
            for (int mi = 0; mi < 60; mi++) {
                if (!((c->minutes >> mi) & 1)) continue;
                tend_time t = wall_to_utc(tz, y, m, d, h, mi, 0);
                if (t > after && (!found || t < *out)) {
                    *out = t;
                    found = 1;
                }
            }
        }
    }
    return found;
}

static void test_cron_matches_brute_force(void **state) {
    (void)state;
    static const char *zones[] = {
        "America/New_York", "Europe/Berlin", "Australia/Sydney", "Australia/Lord_Howe",
        "America/Santiago", "America/Nuuk", "Pacific/Chatham", "Asia/Kolkata", "UTC",
    };
    static const char *minutes[] = {"0", "30", "0,30", "*/15", "5-10", "59", "*/20", "45"};
    static const char *hours[] = {"*", "0", "1", "2", "3", "0-3", "*/6", "22,23", "1,2,3"};
    static const char *wdays[] = {"*", "*", "*", "0", "1-5", "sat,sun", "6"};
    static const char *mdays[] = {"*", "*", "*", "*", "1", "1,15,31"};
    for (size_t zi = 0; zi < sizeof zones / sizeof *zones; zi++) {
        const char *tz = zones[zi];
        /* the zone's 2026 offset changes, to aim half the samples at */
        tend_time changes[8];
        int nchanges = 0;
        struct clock_local prev, cur;
        clock_to_local(utc(2026, 1, 1, 0, 0, 0), tz, &prev);
        for (tend_time t = utc(2026, 1, 1, 0, 15, 0); t < utc(2027, 1, 1, 0, 0, 0) && nchanges < 8; t += 900) {
            clock_to_local(t, tz, &cur);
            if (cur.utc_offset != prev.utc_offset) changes[nchanges++] = t;
            prev = cur;
        }
        for (int i = 0; i < 150; i++) {
            char expr[64];
            snprintf(expr, sizeof expr, "%s %s %s * %s", minutes[rng() % 8], hours[rng() % 9],
                     mdays[rng() % 6], wdays[rng() % 7]);
            cron_expr c = cron(expr);
            tend_time after = nchanges > 0 && (rng() & 1)
                ? changes[rng() % (uint64_t)nchanges] + (tend_time)(rng() % (3 * TEND_DAY)) - TEND_DAY - 36 * TEND_HOUR
                : rng_between(utc(2026, 1, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
            if (rng() & 1) after -= after % 60;     /* on a minute boundary half the time */
            tend_time expected = 0, got = 0;
            if (!cron_reference(&c, after, tz, &expected)) continue;
            assert_int_equal(cron_next(&c, after, tz, &got), 0);
            if (got != expected)
                fail_msg("\"%s\" in %s after %lld: got %lld, expected %lld", expr, tz,
                         (long long)after, (long long)got, (long long)expected);
        }
    }
}

static void test_cron_efficiency(void **state) {
    (void)state;
    cron_expr leap = cron("0 0 29 2 *"), never = cron("0 0 31 2 *"), minutely = cron("* * * * *");
    tend_time t;
    clock_t start = clock();
    for (int i = 0; i < 200; i++) {
        assert_int_equal(cron_next(&leap, utc(2029, 3, 1, 0, 0, 0) + i, "America/New_York", &t), 0);
        assert_int_equal(t, utc(2032, 2, 29, 5, 0, 0));
        assert_int_equal(cron_next(&never, utc(2026, 1, 1, 0, 0, 0) + i, "Europe/Berlin", &t), -1);
        assert_int_equal(cron_next(&minutely, utc(2026, 1, 1, 0, 0, 0) + i, "Australia/Sydney", &t), 0);
    }
    /* 600 five-year searches: far under a second even under sanitizers */
    assert_true((double)(clock() - start) / CLOCKS_PER_SEC < 2.0);
}

/* --- text ----------------------------------------------------------------- */

static void assert_parses(const char *s, tend_time expected) {
    char err[160] = "";
    tend_time t = 0;
    if (clock_parse_time(s, &t, err, sizeof err) != 0) fail_msg("\"%s\": %s", s, err);
    if (t != expected) fail_msg("\"%s\" -> %lld, expected %lld", s, (long long)t, (long long)expected);
}

static void assert_time_error(const char *s, const char *needle) {
    char err[160] = "";
    tend_time t;
    if (clock_parse_time(s, &t, err, sizeof err) != -1) fail_msg("\"%s\" parsed", s);
    if (strstr(err, needle) == NULL) fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, err, needle);
}

static void test_parse_time_forms(void **state) {
    (void)state;
    const tend_time nine_at_8 = utc(2026, 3, 1, 1, 0, 0);
    assert_parses("1767225600", 1767225600);
    assert_parses("1767225600.5", 1767225600);
    assert_parses("0", 0);
    assert_parses("-86400", -86400);
    assert_parses("-1.9", -1);
    assert_parses("2026-03-01T09:00:00+08:00", nine_at_8);
    assert_parses("2026-03-01T01:00:00Z", nine_at_8);
    assert_parses("2026-03-01 09:00:00+0800", nine_at_8);
    assert_parses("2026-03-01T09:00+08:00", nine_at_8);
    assert_parses("2026-03-01T09:00Z", utc(2026, 3, 1, 9, 0, 0));
    assert_parses("2026-03-01T09:00:00+05:45", utc(2026, 3, 1, 3, 15, 0));
    assert_parses("2026-03-01T09:00:00-03:30", utc(2026, 3, 1, 12, 30, 0));
    assert_parses("2026-03-01T00:30:00+01:00", utc(2026, 2, 28, 23, 30, 0));
    assert_parses("2024-02-29T23:59:59Z", utc(2024, 2, 29, 23, 59, 59));
    assert_parses("1969-12-31T23:59:59Z", -1);
    assert_parses("1900-01-01T00:00:00Z", utc(1900, 1, 1, 0, 0, 0));
}

static void test_parse_time_errors(void **state) {
    (void)state;
    tend_time t;
    assert_time_error("", "empty");
    assert_int_equal(clock_parse_time(NULL, &t, NULL, 0), -1);
    assert_time_error("2026-13-01T00:00:00Z", "\"2026-13-01T00:00:00Z\": month 13 out of range");
    assert_time_error("2026-02-29T00:00:00Z", "day 29 out of range");
    assert_time_error("2026-03-01T24:00:00Z", "hour 24 out of range");
    assert_time_error("2026-03-01T09:60Z", "minute 60 out of range");
    assert_time_error("2026-03-01T09:00:60Z", "second 60 out of range");
    assert_time_error("2026-03-01T09:00:00", "no UTC offset");
    assert_time_error("2026-03-01 09:00", "no UTC offset");
    assert_time_error("2026-03-01", "no time of day");
    assert_time_error("2026-03-01X09:00Z", "expected 'T'");
    assert_time_error("2026-03-01T9:00Z", "expected hh:mm");
    assert_time_error("2026-03-01T09:00:00+08:00x", "unexpected \"x\"");
    assert_time_error("2026-03-01T09:00:00Zjunk", "unexpected");
    assert_time_error("2026-03-01T09:00:00+8", "bad UTC offset");
    assert_time_error("2026-03-01T09:00:00+08:0", "bad UTC offset");
    assert_time_error("2026-03-01T09:00:00+24:00", "offset out of range");
    assert_time_error("2026-03-01T09:00:00z", "bad UTC offset");
    assert_time_error("2026-03-01T09:00:00.5Z", "bad UTC offset");
    assert_time_error("26-03-01T09:00Z", "not a number");
    assert_time_error("garbage", "not a number");
    assert_time_error("1767225600.", "not a number");
    assert_time_error("1767225600x", "not a number");
    assert_time_error(" 1767225600", "not a number");
    assert_time_error("+1767225600", "not a number");
    assert_time_error("-", "not a number");
    assert_time_error("--5", "not a number");
    assert_time_error("99999999999999999999999", "out of range");
}

/* clock_format writes the digits itself for years 0..9999 and leaves the
 * rest to snprintf: the text is what the format "%04d-%02d-%02dT%02d:%02d:
 * %02d" and the offset make, for any year and any buffer size. */
static void test_format_digits(void **state) {
    (void)state;
    static const char *zones[] = {NULL, "UTC", "Asia/Kolkata", "America/St_Johns", "Etc/GMT+12"};
    static const size_t sizes[] = {1, 2, 19, 20, 21, 25, 26, 27, 40};
    const tend_time span[][2] = {{utc(-2, 1, 1, 0, 0, 0), utc(2, 1, 1, 0, 0, 0)},
                                 {utc(1969, 12, 31, 0, 0, 0), utc(1970, 1, 2, 0, 0, 0)},
                                 {utc(1970, 1, 1, 0, 0, 0), utc(2100, 1, 1, 0, 0, 0)},
                                 {utc(9998, 12, 30, 0, 0, 0), utc(10001, 1, 2, 0, 0, 0)}};
    for (int i = 0; i < 4000; i++) {
        const char *tz = zones[i % 5];
        tend_time u = rng_between(span[i % 4][0], span[i % 4][1]);
        struct clock_local lt;
        int utc_ = tz == NULL || strcmp(tz, "UTC") == 0;
        if (!utc_ && (clock_to_local(u, tz, &lt) < 0 || lt.utc_offset % 60 != 0))
            utc_ = 1;
        if (utc_)
            assert_int_equal(clock_to_local(u, "UTC", &lt), 0);
        char offset[16] = "Z";
        if (!utc_) {
            int a = lt.utc_offset < 0 ? -lt.utc_offset : lt.utc_offset;
            snprintf(offset, sizeof offset, "%c%02d:%02d", lt.utc_offset < 0 ? '-' : '+', a / 3600, a / 60 % 60);
        }
        size_t n = sizes[i % 9];
        char want[40], got[40];
        snprintf(want, n, "%04d-%02d-%02dT%02d:%02d:%02d%s", lt.year, lt.month, lt.day, lt.hour, lt.minute,
                 lt.second, offset);
        assert_string_equal(clock_format(u, tz, got, n), want);
    }
    char buf[32];
    assert_string_equal(clock_format(utc(10000, 1, 1, 0, 0, 0), NULL, buf, sizeof buf), "10000-01-01T00:00:00Z");
    assert_string_equal(clock_format(utc(0, 1, 1, 0, 0, 0), NULL, buf, sizeof buf), "0000-01-01T00:00:00Z");
    assert_string_equal(clock_format(utc(-1, 12, 31, 23, 59, 59), NULL, buf, sizeof buf), "-001-12-31T23:59:59Z");
}

static void test_format(void **state) {
    (void)state;
    char buf[32];
    const tend_time t = utc(2026, 3, 1, 1, 0, 0);
    assert_string_equal(clock_format(t, NULL, buf, sizeof buf), "2026-03-01T01:00:00Z");
    assert_string_equal(clock_format(t, "UTC", buf, sizeof buf), "2026-03-01T01:00:00Z");
    assert_string_equal(clock_format(t, "Etc/UTC", buf, sizeof buf), "2026-03-01T01:00:00+00:00");
    assert_string_equal(clock_format(t, "Asia/Kolkata", buf, sizeof buf), "2026-03-01T06:30:00+05:30");
    assert_string_equal(clock_format(t, "America/New_York", buf, sizeof buf), "2026-02-28T20:00:00-05:00");
    assert_string_equal(clock_format(t, "Asia/Kathmandu", buf, sizeof buf), "2026-03-01T06:45:00+05:45");
    assert_string_equal(clock_format(-1, NULL, buf, sizeof buf), "1969-12-31T23:59:59Z");
    assert_string_equal(clock_format_date(t, "America/New_York", buf, sizeof buf), "2026-02-28");
    assert_string_equal(clock_format_date(t, "Asia/Shanghai", buf, sizeof buf), "2026-03-01");
    assert_string_equal(clock_format_date(t, NULL, buf, sizeof buf), "2026-03-01");
    /* an unknown zone still names the right instant */
    assert_string_equal(clock_format(t, "Nowhere/Land", buf, sizeof buf), "2026-03-01T01:00:00Z");
    /* truncation is safe */
    char small[8];
    assert_string_equal(clock_format(t, NULL, small, sizeof small), "2026-03");

    static const char *zones[] = {NULL, "UTC", "America/New_York", "Europe/Berlin",
                                  "Asia/Kolkata", "Pacific/Chatham", "America/Sao_Paulo"};
    for (int i = 0; i < 3000; i++) {
        tend_time u = rng_between(utc(1970, 1, 1, 0, 0, 0), utc(2100, 1, 1, 0, 0, 0));
        const char *tz = zones[i % 7];
        tend_time back = 0;
        char err[128];
        clock_format(u, tz, buf, sizeof buf);
        if (clock_parse_time(buf, &back, err, sizeof err) != 0 || back != u)
            fail_msg("%lld in %s -> \"%s\" -> %lld (%s)", (long long)u, tz ? tz : "NULL", buf,
                     (long long)back, err);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_virtual_clock),
        cmocka_unit_test(test_real_clock),
        cmocka_unit_test(test_leap_days),
        cmocka_unit_test(test_civil_round_trip),
        cmocka_unit_test(test_new_york_dst),
        cmocka_unit_test(test_berlin_dst),
        cmocka_unit_test(test_shanghai),
        cmocka_unit_test(test_from_local_normalises),
        cmocka_unit_test(test_tz_valid),
        cmocka_unit_test(test_matches_glibc),
        cmocka_unit_test(test_footer_rules),
        cmocka_unit_test(test_footer_dst_all_year),
        cmocka_unit_test(test_tzif_versions),
        cmocka_unit_test(test_next_local),
        cmocka_unit_test(test_parse_hhmm),
        cmocka_unit_test(test_cron_parse_errors),
        cmocka_unit_test(test_cron_parse_fields),
        cmocka_unit_test(test_cron_next_basic),
        cmocka_unit_test(test_cron_month_ends),
        cmocka_unit_test(test_cron_dom_dow_or),
        cmocka_unit_test(test_cron_dst),
        cmocka_unit_test(test_cron_matches_brute_force),
        cmocka_unit_test(test_cron_efficiency),
        cmocka_unit_test(test_parse_time_forms),
        cmocka_unit_test(test_parse_time_errors),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_digits),
    };
    int failed = cmocka_run_group_tests(tests, make_tzdir, remove_tzdir);
    clock_shutdown();
    return failed;
}
