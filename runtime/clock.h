/* clock — what time it is, and what time it is for a customer.
 *
 * One interface over two clocks: the real one (`tend run`) and a virtual one
 * (tests, `tend simulate`) that only moves when told to. Every time in tend is
 * an int64 count of seconds since the Unix epoch, UTC; sub-second precision is
 * never needed by a journey and would only make replay fragile.
 *
 * Time zones are IANA names resolved against the system tz database
 * ($TZDIR, default /usr/share/zoneinfo). The TZif files are read here, once
 * per zone, and kept for the life of the process: glibc only knows one zone
 * at a time (TZ + tzset), and switching it for every customer would re-read a
 * file per call. Parsed zones are owned by this module; clock_shutdown()
 * frees them (call it once at exit so leak checkers stay quiet).
 *
 * Nothing here touches global state except the zone cache, and nothing
 * allocates on the caller's behalf. Functions that can fail return 0 on
 * success and -1 on failure, writing a message into `err` (if non-NULL). */
#ifndef TEND_CLOCK_H
#define TEND_CLOCK_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t tend_time; /* seconds since 1970-01-01T00:00:00Z */

#define TEND_MINUTE ((tend_time)60)
#define TEND_HOUR   ((tend_time)3600)
#define TEND_DAY    ((tend_time)86400)

/* --- clocks ------------------------------------------------------------- */

typedef struct tclock tclock;

tclock   *clock_new_real(void);
tclock   *clock_new_virtual(tend_time start);
void      clock_free(tclock *c);
tend_time clock_now(const tclock *c);
int       clock_is_virtual(const tclock *c);
/* Moves a virtual clock to `t`; never backwards (a smaller t is ignored).
 * Has no effect on a real clock. */
void      clock_set(tclock *c, tend_time t);

/* --- text --------------------------------------------------------------- */

/* Parses "1767225600", "1767225600.5" (fraction dropped), "2026-03-01T09:00:00+08:00",
 * "2026-03-01T09:00:00Z", "2026-03-01 09:00:00+0800", "2026-03-01T09:00+08:00".
 * A time of day with no offset is refused (it would be ambiguous), as is any
 * trailing garbage or an out-of-range field. */
int clock_parse_time(const char *s, tend_time *out, char *err, size_t errlen);

/* Parses "YYYY-MM-DD" (a real calendar date). */
int clock_parse_date(const char *s, int *y, int *m, int *d, char *err, size_t errlen);

/* "2026-03-01T09:00:00+08:00" in zone `tz` (NULL or "UTC" → "...Z").
 * `buf` needs 32 bytes. Returns buf. An unknown zone, or an offset with
 * seconds (pre-1900 local mean time, which "+hh:mm" cannot carry), is
 * written in UTC with "Z": the text always names the right instant. */
char *clock_format(tend_time t, const char *tz, char *buf, size_t n);
/* "2026-03-01" in zone `tz` (NULL → UTC; an unknown zone also gives the UTC
 * date, so check clock_tz_valid first). `buf` needs 11 bytes. Returns buf. */
char *clock_format_date(tend_time t, const char *tz, char *buf, size_t n);

/* --- calendar ----------------------------------------------------------- */

int       clock_is_leap(int year);
int       clock_days_in_month(int year, int month);     /* month 1..12 */
/* Days since 1970-01-01 for a proleptic Gregorian date, and back. */
int64_t   clock_days_from_civil(int y, int m, int d);
void      clock_civil_from_days(int64_t days, int *y, int *m, int *d);

/* --- time zones --------------------------------------------------------- */

/* 1 if `tz` names a zone in the tz database ("UTC" always does). */
int clock_tz_valid(const char *tz);

/* Broken-down local time. */
struct clock_local {
    int year, month, day;       /* month 1..12, day 1..31 */
    int hour, minute, second;
    int wday;                   /* 0 = Sunday */
    int yday;                   /* 0..365 */
    int utc_offset;             /* seconds east of UTC */
    int is_dst;
};

/* UTC instant → local time in `tz`. An unknown zone is an error (callers pick
 * the configured default first; tend never silently falls back to UTC), as is
 * an instant more than ~95,000 years from 1970. */
int clock_to_local(tend_time t, const char *tz, struct clock_local *out);

/* Local wall time in `tz` → UTC instant. In a DST gap (a wall time that does
 * not exist) the result is shifted forward by the gap (02:30 on a spring-forward
 * day in New York → 03:30 EDT). In an overlap (a wall time that happens twice)
 * the earlier instant is chosen. Fields may be out of range and are normalised
 * (day 32 → next month, hour 24 → next day). Returns -1 only for an unknown zone
 * (or a normalised date more than ~95,000 years from 1970). */
int clock_from_local(const char *tz, int year, int month, int day,
                     int hour, int minute, int second, tend_time *out);

/* The first instant strictly after `after` whose wall time in `tz` is hh:mm
 * (on a day where hh:mm falls in a DST gap, the shifted instant of that day).
 * Once per local day: where an overlap repeats hh:mm, only the first counts,
 * as in clock_from_local and cron_next. -1 for an unknown zone or bad hh:mm. */
int clock_next_local(tend_time after, const char *tz, int hh, int mm, tend_time *out);

/* Parses "HH:MM" (00:00..23:59). */
int clock_parse_hhmm(const char *s, int *hh, int *mm);

/* Frees the zone cache. */
void clock_shutdown(void);

/* --- cron --------------------------------------------------------------- */

/* A parsed 5-field cron expression: minute hour day-of-month month day-of-week.
 * Fields take `*`, numbers, ranges `a-b`, lists `a,b`, steps `*\/n` and `a-b/n`;
 * month and weekday also take names (jan..dec, sun..sat); weekday 7 = Sunday.
 * As in Vixie cron, when both day-of-month and day-of-week are restricted a
 * day matches if either does. A field counts as unrestricted only when it is
 * exactly `*` (Vixie would also count `*\/2`). A step after a single value
 * ("5/15") is refused: crons disagree on what it means. */
typedef struct cron_expr {
    uint64_t minutes;   /* bit i: minute i (0..59) */
    uint32_t hours;     /* bit i: hour i (0..23) */
    uint32_t mdays;     /* bit i: day i (1..31) */
    uint16_t months;    /* bit i: month i (1..12) */
    uint8_t  wdays;     /* bit i: weekday i (0..6, 0 = Sunday) */
    uint8_t  mday_star; /* day-of-month field was `*` */
    uint8_t  wday_star; /* day-of-week field was `*` */
} cron_expr;

int cron_parse(const char *expr, cron_expr *out, char *err, size_t errlen);

/* The first instant strictly after `after` at which `c` fires, evaluated on
 * wall time in `tz`. A wall time skipped by a DST gap fires at the shifted
 * instant; a wall time repeated by an overlap fires once (the first time).
 * Searches at most 5 years ahead; returns -1 if nothing matches (e.g. "0 0 31 2 *"). */
int cron_next(const cron_expr *c, tend_time after, const char *tz, tend_time *out);

#endif
