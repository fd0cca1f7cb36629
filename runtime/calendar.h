/* calendar — named dates: the built-in (Chinese) holidays and the ones a
 * shop adds in tend.lua.
 *
 * A rule says which local dates a name falls on:
 *   "09-15"            every year on that month-day (Feb 29 only in leap years)
 *   "lunar 08-15"      every year on that day of the Chinese lunar calendar
 *                      (never a leap month), 1900–2100
 *   "2nd tue"          every month: 1st..5th or last weekday of the month
 *   "2nd sun of may"   every year: the nth weekday of a month
 * plus the solar term Qingming (built in only). Lunar dates and the solar
 * term come from the kept library liblunar-date (lunar-date-3.0), which
 * covers 1900–2100; its results are cached per date, so a rule costs a
 * library call once per process.
 *
 * Built-in names (calendar_builtin_names): new_year, spring_festival (lunar
 * 1-1), lantern (1-15), qingming, labour_day, dragon_boat (5-5), qixi (7-7),
 * mid_autumn (8-15), double_ninth (9-9), national_day, laba (12-8),
 * womens_day, childrens_day, teachers_day, mothers_day (2nd Sunday of May),
 * fathers_day (3rd Sunday of June), valentines, 520, 618, double11,
 * double12, christmas.
 *
 * A `calendar` is a set of named rules: the built-ins plus added ones (an
 * added name replaces a built-in one). It owns its strings; calendar_free()
 * releases it. Dates are civil (y, m, d) with no zone: callers turn a local
 * time into a date in the customer's zone first.
 *
 * Lua (calendar_lua_register): holiday_date(name, year) → "YYYY-MM-DD" or
 * nil (no such date that year, or out of 1900–2100); is_holiday(name, time,
 * c) → boolean, the local date of `time` (default now) in c's zone (or the
 * configured one); local_cron(expr, opts) and holiday(name, opts) build
 * journey triggers (see dates.h). A bad name, expression or option raises
 * at the calling line. */
#ifndef TEND_CALENDAR_H
#define TEND_CALENDAR_H

#include <stddef.h>

#include <lua.h>

enum calendar_kind {
    CALENDAR_FIXED,         /* month, day */
    CALENDAR_LUNAR,         /* lunar month, day */
    CALENDAR_NTH_WEEKDAY,   /* month (0: every month), nth (1..5, -1 = last), wday (0 = Sunday) */
    CALENDAR_QINGMING,
};

struct calendar_rule {
    enum calendar_kind kind;
    int month, day, nth, wday;
};

/* Parses a rule text (above). 0, or -1 with err quoting the text. */
int calendar_parse_rule(const char *text, struct calendar_rule *out, char *err, size_t errlen);

/* The first date of the rule on or after (y, m, d), searching at most two
 * years ahead. 0, or -1 (none, or outside 1900–2100 for lunar rules). */
int calendar_next_date(const struct calendar_rule *r, int y, int m, int d, int *oy, int *om, int *od);

/* 1 if (y, m, d) is a date of the rule. */
int calendar_matches(const struct calendar_rule *r, int y, int m, int d);

/* Lunar (ly, lm, ld; never a leap month) → civil date. 0 or -1. */
int calendar_lunar_to_solar(int ly, int lm, int ld, int *y, int *m, int *d);

/* The day of April on which Qingming falls in `year` (China, UTC+8). 0 or -1. */
int calendar_qingming(int year, int *day);

/* NULL-terminated list of the built-in names. */
const char *const *calendar_builtin_names(void);

typedef struct calendar calendar;

calendar *calendar_new(void);
void      calendar_free(calendar *c);
/* Adds (or replaces) a named rule. 0, or -1 with err naming the name and text. */
int       calendar_add(calendar *c, const char *name, const char *rule, char *err, size_t errlen);
/* The rule of a name (added ones first, then built-in). 1 if found. */
int       calendar_lookup(const calendar *c, const char *name, struct calendar_rule *out);

/* Registers holiday_date, is_holiday, local_cron and holiday as globals of
 * L. `cal` and `default_tz` are borrowed and must outlive L's use of them
 * (the engine's config owns both). */
void calendar_lua_register(lua_State *L, const calendar *cal, const char *default_tz);

/* Frees the cache (call once at exit). The one library object is kept for
 * the life of the process (its finalizer leaks; reachable, it does not). */
void calendar_shutdown(void);

#endif
