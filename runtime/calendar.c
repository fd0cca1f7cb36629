/* calendar — named dates (see calendar.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lunar-date/lunar-date.h>

#include "calendar.h"
#include "clock.h"
#include "helpers.h"
#include "util.h"

#define FIRST_YEAR 1900
#define LAST_YEAR 2100

/* --- the library, behind a cache --------------------------------------- */

static LunarDate *lunar;
/* Lunar date → days since 1970 (+1, so 0 means "not asked yet"; INT32_MIN
 * means "no such date"). Indexed [year - 1900][month - 1][day - 1]. */
static int32_t (*lunar_cache)[12][30];
static int8_t qingming_cache[LAST_YEAR - FIRST_YEAR + 1];   /* April day, 0 unknown, -1 none */

static LunarDate *library(void)
{
    if (!lunar)
        lunar = lunar_date_new();
    return lunar;
}

int calendar_lunar_to_solar(int ly, int lm, int ld, int *y, int *m, int *d)
{
    if (ly < FIRST_YEAR || ly > LAST_YEAR || lm < 1 || lm > 12 || ld < 1 || ld > 30)
        return -1;
    if (!lunar_cache)
        lunar_cache = xcalloc(LAST_YEAR - FIRST_YEAR + 1, sizeof *lunar_cache);
    int32_t *slot = &lunar_cache[ly - FIRST_YEAR][lm - 1][ld - 1];
    if (*slot == 0) {
        GError *error = NULL;
        lunar_date_set_lunar_date(library(), (GDateYear)ly, (GDateMonth)lm, (GDateDay)ld, 12, FALSE, &error);
        if (error) {   /* day 30 of a short month, or out of range */
            g_error_free(error);
            *slot = INT32_MIN;
        } else {
            char *text = lunar_date_strftime(library(), "%(year)-%(month)-%(day)");
            int sy, sm, sd;
            if (text && sscanf(text, "%d-%d-%d", &sy, &sm, &sd) == 3)
                *slot = (int32_t)clock_days_from_civil(sy, sm, sd) + 1;
            else
                *slot = INT32_MIN;
            g_free(text);
        }
    }
    if (*slot == INT32_MIN)
        return -1;
    clock_civil_from_days(*slot - 1, y, m, d);
    return 0;
}

/* The library names solar terms among a day's holidays; untranslated (tend
 * never calls setlocale) the name is the pinyin msgid. */
static int names_qingming(const char *holidays)
{
    return holidays && (strstr(holidays, "Qīngmíng") || strstr(holidays, "清明"));
}

int calendar_qingming(int year, int *day)
{
    if (year < FIRST_YEAR || year > LAST_YEAR)
        return -1;
    int8_t *slot = &qingming_cache[year - FIRST_YEAR];
    if (*slot == 0) {
        *slot = -1;
        for (int d = 3; d <= 6; d++) {
            GError *error = NULL;
            lunar_date_set_solar_date(library(), (GDateYear)year, G_DATE_APRIL, (GDateDay)d, 12, &error);
            if (error) {
                g_error_free(error);
                continue;
            }
            char *h = lunar_date_get_holiday(library(), ",");
            int hit = names_qingming(h);
            g_free(h);
            if (hit) {
                *slot = (int8_t)d;
                break;
            }
        }
    }
    if (*slot < 0)
        return -1;
    *day = *slot;
    return 0;
}

void calendar_shutdown(void)
{
    /* The library object stays (reachable) for the life of the process:
     * liblunar-date's finalizer leaves allocations of its own behind,
     * which a leak checker would blame on us. */
    free(lunar_cache);
    lunar_cache = NULL;
}

/* --- rules ------------------------------------------------------------- */

static const char *const WDAYS[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
static const char *const MONTHS[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};

static int find_word(const char *w, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (strncasecmp(w, list[i], 3) == 0 && (!w[3] || strncasecmp(w, list[i], strlen(w)) == 0))
            return i;
    return -1;
}

static int parse_month_day(const char *s, int *m, int *d)
{
    char tail;
    if (sscanf(s, "%2d-%2d%c", m, d, &tail) != 2 || strlen(s) != 5 || *m < 1 || *m > 12 || *d < 1 ||
        *d > clock_days_in_month(2000, *m))
        return -1;
    return 0;
}

int calendar_parse_rule(const char *text, struct calendar_rule *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char w[4][16];
    int n = text ? sscanf(text, "%15s %15s %15s %15s", w[0], w[1], w[2], w[3]) : 0;
    if (n == 1 && parse_month_day(w[0], &out->month, &out->day) == 0) {
        out->kind = CALENDAR_FIXED;
        return 0;
    }
    if (n == 2 && strcasecmp(w[0], "lunar") == 0 && parse_month_day(w[1], &out->month, &out->day) == 0 &&
        out->day <= 30) {
        out->kind = CALENDAR_LUNAR;
        return 0;
    }
    if (n == 2 || (n == 4 && strcasecmp(w[2], "of") == 0)) {
        static const char *const nths[] = {"1st", "2nd", "3rd", "4th", "5th"};
        out->nth = strcasecmp(w[0], "last") == 0 ? -1 : 0;
        for (int i = 0; i < 5; i++)
            if (strcasecmp(w[0], nths[i]) == 0)
                out->nth = i + 1;
        out->wday = find_word(w[1], WDAYS, 7);
        out->month = n == 4 ? find_word(w[3], MONTHS, 12) + 1 : 0;
        if (out->nth != 0 && out->wday >= 0 && (n == 2 || out->month > 0)) {
            out->kind = CALENDAR_NTH_WEEKDAY;
            return 0;
        }
    }
    snprintf(err, errlen, "'%s' is not a date rule (\"MM-DD\", \"lunar MM-DD\", \"2nd tue\", "
                          "\"2nd sun of may\")", text ? text : "");
    return -1;
}

/* The day of the nth (or last) weekday of a month, or 0. */
static int nth_weekday(int y, int m, int nth, int wday)
{
    int first_wday = (int)((clock_days_from_civil(y, m, 1) % 7 + 11) % 7);   /* 1970-01-01 was a Thursday */
    int day = 1 + (wday - first_wday + 7) % 7;
    int dim = clock_days_in_month(y, m);
    if (nth < 0) {
        while (day + 7 <= dim)
            day += 7;
        return day;
    }
    day += 7 * (nth - 1);
    return day <= dim ? day : 0;
}

/* The rule's date(s) in month m of year y: fills days[], returns how many
 * (a lunar date of another lunar year may land in this month as well). */
static int dates_in_year(const struct calendar_rule *r, int y, int64_t *out, int max)
{
    int n = 0, sy, sm, sd;
    switch (r->kind) {
    case CALENDAR_FIXED:
        if (r->month != 2 || r->day != 29 || clock_is_leap(y))
            out[n++] = clock_days_from_civil(y, r->month, r->day);
        break;
    case CALENDAR_LUNAR:
        /* A lunar month-day in solar year y belongs to lunar year y or y-1. */
        for (int ly = y - 1; ly <= y && n < max; ly++)
            if (calendar_lunar_to_solar(ly, r->month, r->day, &sy, &sm, &sd) == 0 && sy == y)
                out[n++] = clock_days_from_civil(sy, sm, sd);
        break;
    case CALENDAR_QINGMING:
        if (calendar_qingming(y, &sd) == 0)
            out[n++] = clock_days_from_civil(y, 4, sd);
        break;
    case CALENDAR_NTH_WEEKDAY:
        for (int m = r->month ? r->month : 1; m <= (r->month ? r->month : 12) && n < max; m++) {
            int day = nth_weekday(y, m, r->nth, r->wday);
            if (day)
                out[n++] = clock_days_from_civil(y, m, day);
        }
        break;
    }
    return n;
}

int calendar_next_date(const struct calendar_rule *r, int y, int m, int d, int *oy, int *om, int *od)
{
    int64_t from = clock_days_from_civil(y, m, d), days[12];
    for (int year = y; year <= y + 2; year++) {
        int n = dates_in_year(r, year, days, 12);
        int64_t best = INT64_MAX;
        for (int i = 0; i < n; i++)
            if (days[i] >= from && days[i] < best)
                best = days[i];
        if (best != INT64_MAX) {
            clock_civil_from_days(best, oy, om, od);
            return 0;
        }
    }
    return -1;
}

int calendar_matches(const struct calendar_rule *r, int y, int m, int d)
{
    int ny, nm, nd;
    return calendar_next_date(r, y, m, d, &ny, &nm, &nd) == 0 && ny == y && nm == m && nd == d;
}

/* --- named sets --------------------------------------------------------- */

static const struct builtin {
    const char *name;
    struct calendar_rule rule;
} BUILTINS[] = {
    {"new_year", {CALENDAR_FIXED, 1, 1, 0, 0}},
    {"spring_festival", {CALENDAR_LUNAR, 1, 1, 0, 0}},
    {"lantern", {CALENDAR_LUNAR, 1, 15, 0, 0}},
    {"qingming", {CALENDAR_QINGMING, 4, 0, 0, 0}},
    {"labour_day", {CALENDAR_FIXED, 5, 1, 0, 0}},
    {"dragon_boat", {CALENDAR_LUNAR, 5, 5, 0, 0}},
    {"qixi", {CALENDAR_LUNAR, 7, 7, 0, 0}},
    {"mid_autumn", {CALENDAR_LUNAR, 8, 15, 0, 0}},
    {"double_ninth", {CALENDAR_LUNAR, 9, 9, 0, 0}},
    {"national_day", {CALENDAR_FIXED, 10, 1, 0, 0}},
    {"laba", {CALENDAR_LUNAR, 12, 8, 0, 0}},
    {"womens_day", {CALENDAR_FIXED, 3, 8, 0, 0}},
    {"childrens_day", {CALENDAR_FIXED, 6, 1, 0, 0}},
    {"teachers_day", {CALENDAR_FIXED, 9, 10, 0, 0}},
    {"mothers_day", {CALENDAR_NTH_WEEKDAY, 5, 0, 2, 0}},
    {"fathers_day", {CALENDAR_NTH_WEEKDAY, 6, 0, 3, 0}},
    {"valentines", {CALENDAR_FIXED, 2, 14, 0, 0}},
    {"520", {CALENDAR_FIXED, 5, 20, 0, 0}},
    {"618", {CALENDAR_FIXED, 6, 18, 0, 0}},
    {"double11", {CALENDAR_FIXED, 11, 11, 0, 0}},
    {"double12", {CALENDAR_FIXED, 12, 12, 0, 0}},
    {"christmas", {CALENDAR_FIXED, 12, 25, 0, 0}},
};
#define NBUILTINS (sizeof BUILTINS / sizeof BUILTINS[0])

const char *const *calendar_builtin_names(void)
{
    static const char *names[NBUILTINS + 1];
    for (size_t i = 0; i < NBUILTINS; i++)
        names[i] = BUILTINS[i].name;
    return names;
}

struct calendar {
    struct named { char *name; struct calendar_rule rule; } *v;
    int n;
};

calendar *calendar_new(void)
{
    return xcalloc(1, sizeof(calendar));
}

void calendar_free(calendar *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        free(c->v[i].name);
    free(c->v);
    free(c);
}

int calendar_add(calendar *c, const char *name, const char *rule, char *err, size_t errlen)
{
    struct calendar_rule r;
    char why[200];
    if (calendar_parse_rule(rule, &r, why, sizeof why) != 0) {
        snprintf(err, errlen, "holiday '%s': %s", name, why);
        return -1;
    }
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->v[i].name, name) == 0) {
            c->v[i].rule = r;
            return 0;
        }
    c->v = xrealloc(c->v, (size_t)(c->n + 1) * sizeof *c->v);
    c->v[c->n].name = xstrdup(name);
    c->v[c->n++].rule = r;
    return 0;
}

int calendar_lookup(const calendar *c, const char *name, struct calendar_rule *out)
{
    for (int i = 0; c && i < c->n; i++)
        if (strcmp(c->v[i].name, name) == 0) {
            *out = c->v[i].rule;
            return 1;
        }
    for (size_t i = 0; i < NBUILTINS; i++)
        if (strcmp(BUILTINS[i].name, name) == 0) {
            *out = BUILTINS[i].rule;
            return 1;
        }
    return 0;
}

/* --- Lua --------------------------------------------------------------- */

static const calendar *calendar_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static struct calendar_rule check_name(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    struct calendar_rule r;
    if (!calendar_lookup(calendar_of(L), name, &r))
        luaL_argerror(L, arg, lua_pushfstring(L, "unknown holiday '%s' (built in: new_year, spring_festival, "
                                                 "mid_autumn, ...; add one in tend.lua holidays)", name));
    return r;
}

/* holiday_date(name, year) → "YYYY-MM-DD" (the first that year) or nil */
static int l_holiday_date(lua_State *L)
{
    struct calendar_rule r = check_name(L, 1);
    lua_Integer year = luaL_checkinteger(L, 2);
    luaL_argcheck(L, year >= 1 && year <= 9999, 2, "year out of range");
    int y, m, d;
    if (calendar_next_date(&r, (int)year, 1, 1, &y, &m, &d) != 0 || y != year) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushfstring(L, "%d-%s%d-%s%d", y, m < 10 ? "0" : "", m, d < 10 ? "0" : "", d);
    return 1;
}

/* is_holiday(name, time, c) → boolean, on c's local date (or the configured zone's) */
static int l_is_holiday(lua_State *L)
{
    struct calendar_rule r = check_name(L, 1);
    tend_time t = helpers_check_time(L, 2);
    const char *tz = lua_tostring(L, lua_upvalueindex(2));
    if (!lua_isnoneornil(L, 3)) {
        luaL_argexpected(L, lua_istable(L, 3) || lua_isuserdata(L, 3), 3, "customer");
        lua_getfield(L, 3, "timezone");   /* a recorded read inside a run */
        const char *ctz = lua_tostring(L, -1);
        if (ctz && clock_tz_valid(ctz))
            tz = ctz;
    }
    struct clock_local l;
    if (clock_to_local(t, tz, &l) != 0)
        return luaL_argerror(L, 2, "time out of range");
    lua_pushboolean(L, calendar_matches(&r, l.year, l.month, l.day));
    return 1;
}

/* Reads opts.at (default 09:00) and opts.audience (a filter table) onto the
 * trigger table on top. */
static void trigger_options(lua_State *L, int opts, int with_at)
{
    if (lua_isnoneornil(L, opts))
        return;
    luaL_checktype(L, opts, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        int known = strcmp(k, "audience") == 0 ||
                    (with_at && (strcmp(k, "at") == 0 || strcmp(k, "offset_days") == 0));
        if (!known)
            luaL_argerror(L, opts, lua_pushfstring(L, "unknown option '%s'", k));
        lua_pop(L, 1);
    }
    int top = lua_gettop(L);
    if (lua_getfield(L, opts, "audience") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            luaL_argerror(L, opts, "'audience' must be a filter table");
        lua_setfield(L, top, "audience");
    }
    lua_settop(L, top);
    if (!with_at)
        return;
    int hh = 9, mm = 0;
    if (lua_getfield(L, opts, "at") != LUA_TNIL) {
        const char *at = lua_tostring(L, -1);
        if (!at || clock_parse_hhmm(at, &hh, &mm) != 0)
            luaL_argerror(L, opts, lua_pushfstring(L, "'at' must be a local time \"HH:MM\", not '%s'",
                                                   at ? at : luaL_typename(L, -1)));
    }
    lua_pushinteger(L, hh * 60 + mm);
    lua_setfield(L, top, "minute_of_day");
    lua_Integer days = 0;
    if (lua_getfield(L, opts, "offset_days") != LUA_TNIL) {
        int ok;
        days = lua_tointegerx(L, -1, &ok);
        if (!ok || days < -366 || days > 366)
            luaL_argerror(L, opts, "'offset_days' must be a whole number of days (-366..366)");
    }
    lua_pushinteger(L, days);
    lua_setfield(L, top, "offset_days");
    lua_settop(L, top);
}

/* local_cron("0 9 1 1,7 *", {audience = filter}) */
static int l_local_cron(lua_State *L)
{
    const char *expr = luaL_checkstring(L, 1);
    lua_settop(L, 2);   /* the trigger table goes above the options */
    cron_expr c;
    char err[200];
    if (cron_parse(expr, &c, err, sizeof err) != 0)
        return luaL_argerror(L, 1, err);
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "local_cron");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, expr);
    lua_setfield(L, -2, "cron");
    trigger_options(L, 2, 0);
    luaL_setmetatable(L, HELPERS_TRIGGER_MT);
    return 1;
}

/* holiday("mid_autumn", {at = "10:00", offset_days = -1, audience = filter}):
 * the rule is resolved now, so the trigger carries it whole. */
static int l_holiday(lua_State *L)
{
    struct calendar_rule r = check_name(L, 1);
    lua_settop(L, 2);
    lua_createtable(L, 0, 10);
    lua_pushliteral(L, "holiday");
    lua_setfield(L, -2, "kind");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "name");
    const struct { const char *key; int v; } fields[] = {
        {"rule_kind", (int)r.kind}, {"rule_month", r.month}, {"rule_day", r.day},
        {"rule_nth", r.nth}, {"rule_wday", r.wday}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        lua_pushinteger(L, fields[i].v);
        lua_setfield(L, -2, fields[i].key);
    }
    trigger_options(L, 2, 1);
    luaL_setmetatable(L, HELPERS_TRIGGER_MT);
    return 1;
}

void calendar_lua_register(lua_State *L, const calendar *cal, const char *default_tz)
{
    static const luaL_Reg fns[] = {
        {"holiday_date", l_holiday_date}, {"is_holiday", l_is_holiday},
        {"local_cron", l_local_cron}, {"holiday", l_holiday}, {NULL, NULL}};
    sandbox *sb = sandbox_of(L);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushlightuserdata(L, (void *)cal);
        lua_pushstring(L, default_tz);
        lua_pushcclosure(L, f->func, 2);
        sandbox_set_global(sb, f->name, 0);
    }
}
