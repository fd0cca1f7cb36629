/* dates — yearly triggers (see dates.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "calendar.h"
#include "catalog.h"
#include "customer.h"
#include "dates.h"
#include "instance.h"
#include "json.h"
#include "segment.h"
#include "util.h"

int dates_next_fire(int y, int m, int d, const char *tz, int minute_of_day, int offset_days,
                    tend_time offset, tend_time after, tend_time *out, int *years)
{
    struct clock_local now;
    if (clock_to_local(after - offset - (tend_time)offset_days * TEND_DAY, tz, &now) != 0)
        return -1;
    /* The year the date falls in after the offset is this one or the next;
     * start a year early for offsets that cross the new year. */
    for (int year = now.year - 1; year <= now.year + 2; year++) {
        if (year - y < 1)
            continue;
        int day = d;
        if (m == 2 && d == 29 && !clock_is_leap(year))
            day = 28;
        tend_time t;
        /* Calendar days: the wall time `at` on the shifted day, whatever
         * DST does in between (clock_from_local normalises day 0 or 32). */
        if (clock_from_local(tz, year, m, day + offset_days, minute_of_day / 60, minute_of_day % 60, 0, &t) != 0)
            return -1;
        t += offset;
        if (t > after) {
            *out = t;
            *years = year - y;
            return 0;
        }
    }
    return -1;
}

/* The trigger spec of the decl at idx. */
struct trigger {
    const char *field;
    int minute_of_day;
    int offset_days;
    tend_time offset;
    tend_time late;     /* a firing missed by at most this much still happens */
};

static void read_trigger(lua_State *L, int decl, struct trigger *t)
{
    lua_getfield(L, decl, "on");
    lua_getfield(L, -1, "field");
    t->field = lua_tostring(L, -1);       /* alive in the decl */
    lua_getfield(L, -2, "minute_of_day");
    t->minute_of_day = (int)lua_tointeger(L, -1);
    lua_getfield(L, -3, "offset");
    t->offset = (tend_time)lua_tointeger(L, -1);
    lua_getfield(L, -4, "offset_days");
    t->offset_days = (int)lua_tointeger(L, -1);
    lua_getfield(L, -5, "late");
    t->late = (tend_time)lua_tointeger(L, -1);
    lua_pop(L, 6);
}

/* SQL expression of a trigger field, or NULL when it is not a date field. */
static char *field_sql(const char *field)
{
    static const char *const columns[] = {"birthday", "first_seen_at", "first_order_at",
                                          "last_order_at", "last_active_at", NULL};
    for (const char *const *c = columns; *c; c++)
        if (strcmp(*c, field) == 0)
            return xstrdup(field);
    if (strncmp(field, "attrs.", 6) == 0 && field[6]) {
        for (const char *p = field + 6; *p; p++)
            if (!(*p == '_' || *p == '.' || *p == '-' || (*p >= '0' && *p <= '9') ||
                  (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                return NULL;
        return xasprintf("json_extract(attrs, '$.%s')", field + 6);
    }
    return NULL;
}

int dates_field_valid(const char *field)
{
    char *expr = field ? field_sql(field) : NULL;
    free(expr);
    return expr != NULL;
}

/* A field value (a date text, an ISO time, epoch seconds) as a local date. */
static int value_date(store_stmt *s, int col, const char *tz, int *y, int *m, int *d)
{
    int type = store_col_type(s, col);
    tend_time t;
    if (type == STORE_INT || type == STORE_FLOAT) {
        t = (tend_time)store_col_double(s, col);
    } else if (type == STORE_TEXT) {
        const char *v = store_col_text(s, col);
        if (clock_parse_date(v, y, m, d, NULL, 0) == 0)
            return 0;
        if (clock_parse_time(v, &t, NULL, 0) != 0)
            return -1;
    } else {
        return -1;
    }
    struct clock_local l;
    if (clock_to_local(t, tz, &l) != 0)
        return -1;
    *y = l.year;
    *m = l.month;
    *d = l.day;
    return 0;
}

long dates_count_malformed(engine *e, const char *schema, const char *field, long max_rows, char *id, size_t idlen,
                           char *value, size_t valuelen)
{
    char *expr = field ? field_sql(field) : NULL;
    if (!expr)
        return -1;
    /* schema is one of ours ("main", "live"), never user text */
    /* bounded in rows read, however few customers have the field */
    char *sql = xasprintf("SELECT id, %s, timezone FROM (SELECT * FROM \"%s\".customers LIMIT ?) WHERE %s IS NOT NULL",
                          expr, schema, expr);
    free(expr);
    store_stmt *s = store_prepare(e->st, sql);
    free(sql);
    if (!s)
        return -1;
    store_bind_int(s, 1, max_rows);
    long bad = 0;
    while (store_step(s) == STORE_ROW) {
        const char *tz = store_col_text(s, 2);
        int y, m, d;
        if (value_date(s, 1, tz && clock_tz_valid(tz) ? tz : e->cfg.timezone, &y, &m, &d) == 0)
            continue;
        if (bad++ == 0) {
            const char *v = store_col_text(s, 1);
            snprintf(id, idlen, "%s", store_col_text(s, 0));
            snprintf(value, valuelen, "%s", v ? v : "?");
        }
    }
    store_finalize(s);
    return bad;
}

/* fired_at: the firing just done (0 when only re-planning: the last one stays). */
static int write_row(engine *e, const char *journey, const char *customer, tend_time fire_at, tend_time fired_at)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO date_triggers (journey, customer, fire_at, last_fired)"
                                     " VALUES (?1, ?2, ?3, NULLIF(?4, 0))"
                                     " ON CONFLICT(journey, customer) DO UPDATE SET fire_at = excluded.fire_at,"
                                     " last_fired = COALESCE(excluded.last_fired, last_fired)");
    store_bind_text(s, 1, journey, -1);
    store_bind_text(s, 2, customer, -1);
    store_bind_int(s, 3, fire_at);
    store_bind_int(s, 4, fired_at);
    return store_run(s);
}

/* The last firing of a (journey, customer), or 0. */
static tend_time last_fired(engine *e, const char *journey, const char *customer)
{
    store_stmt *s = store_sql(e->st, "SELECT last_fired FROM date_triggers WHERE journey = ? AND customer = ?");
    store_bind_text(s, 1, journey, -1);
    store_bind_text(s, 2, customer, -1);
    tend_time t = store_step(s) == STORE_ROW ? store_col_int(s, 0) : 0;
    store_reset(s);
    return t;
}

static int delete_row(engine *e, const char *journey, const char *customer)
{
    store_stmt *s = store_sql(e->st, "DELETE FROM date_triggers WHERE journey = ? AND customer = ?");
    store_bind_text(s, 1, journey, -1);
    store_bind_text(s, 2, customer, -1);
    return store_run(s);
}

/* The SQL reading a field for one customer, kept for the life of the
 * process: the statement cache finds a query by its text's address, and a
 * query per import row must not be prepared per row. */
static const char *one_customer_sql(const char *expr)
{
    static struct { char *expr, *sql; } interned[32];
    for (int i = 0; i < 32; i++) {
        if (!interned[i].expr) {
            interned[i].expr = xstrdup(expr);
            interned[i].sql = xasprintf("SELECT id, %s, timezone FROM customers WHERE %s IS NOT NULL AND id = ?",
                                        expr, expr);
        }
        if (strcmp(interned[i].expr, expr) == 0)
            return interned[i].sql;
    }
    return NULL;
}

/* Recomputes the rows of `journey` (decl at idx) for one customer, or for
 * every customer with the field set when `customer` is NULL. */
static int schedule_journey(engine *e, const char *journey, int decl, const char *customer)
{
    lua_State *L = sandbox_state(e->sb);
    struct trigger t;
    read_trigger(L, decl, &t);
    char *expr = field_sql(t.field);
    if (!expr) {
        engine_logf(e, "error", "journey '%s': anniversary field '%s' is not a date field", journey, t.field);
        return 0;
    }
    const char *cached = customer ? one_customer_sql(expr) : NULL;
    char *sql = cached ? NULL : xasprintf("SELECT id, %s, timezone FROM customers WHERE %s IS NOT NULL%s",
                                          expr, expr, customer ? " AND id = ?" : "");
    free(expr);
    store_stmt *s = cached ? store_sql(e->st, cached) : store_prepare(e->st, sql);
    free(sql);
    if (!s)
        return -1;
    if (customer)
        store_bind_text(s, 1, customer, -1);
    tend_time now = engine_now(e);
    int rc = 0, found = 0, malformed = 0;
    while (rc == 0 && store_step(s) == STORE_ROW) {
        found = 1;
        const char *id = store_col_text(s, 0);
        const char *tz = dates_zone(e, store_col_text(s, 2) ? store_col_text(s, 2) : "");
        int y, m, d, years;
        tend_time fire;
        int dated = value_date(s, 1, tz, &y, &m, &d) == 0;
        if (!dated && malformed++ < 5) {
            /* A value that is there but no date would silently never fire. */
            const char *v = store_col_text(s, 1);
            engine_logf(e, "warn", "journey '%s': customer '%s': %s = '%.40s' is not a date (YYYY-MM-DD, "
                        "ISO-8601 time or epoch seconds); no anniversary", journey, id, t.field, v ? v : "?");
        }
        /* late: a firing missed by at most that much (a customer imported
         * after 10:00 on the day) still happens, but never a second time. */
        tend_time after = now - t.late, last = t.late ? last_fired(e, journey, id) : 0;
        if (last > after)
            after = last;
        if (dated && dates_next_fire(y, m, d, tz, t.minute_of_day, t.offset_days, t.offset, after, &fire,
                                     &years) == 0)
            rc = write_row(e, journey, id, fire, 0);
        else
            rc = delete_row(e, journey, id);
    }
    if (malformed > 5)
        engine_logf(e, "warn", "journey '%s': %d more customers with a %s that is not a date", journey,
                    malformed - 5, t.field);
    if (cached)
        store_reset(s);
    else
        store_finalize(s);
    if (customer && !found)
        rc = delete_row(e, journey, customer);
    return rc;
}

static int local_customer_changed(engine *e, const char *customer);

int dates_customer_changed(engine *e, const char *customer)
{
    lua_State *L = sandbox_state(e->sb);
    catalog_push_dated(e);
    int list = lua_gettop(L), rc = 0;
    for (int i = 1; lua_istable(L, list) && i <= (int)lua_rawlen(L, list) && rc == 0; i++) {
        lua_rawgeti(L, list, i);
        const char *name = lua_tostring(L, -1);
        if (catalog_push_current(e, name))
            rc = schedule_journey(e, name, lua_gettop(L), customer);
        lua_pop(L, 2);
    }
    lua_settop(L, list - 1);
    if (rc == 0)
        rc = local_customer_changed(e, customer);
    return rc;
}

int dates_any_planned(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L), any = 0;
    if (catalog_push_dated(e) && lua_rawlen(L, -1) > 0)
        any = 1;
    lua_settop(L, top);
    if (!any && catalog_push_local(e) && lua_rawlen(L, -1) > 0)
        any = 1;
    lua_settop(L, top);
    return any;
}

/* The trigger's identity: a changed field, time or offset re-plans it. */
static char *trigger_key(lua_State *L, int decl)
{
    struct trigger t;
    read_trigger(L, decl, &t);
    return xasprintf("%s|%d|%lld|%d|%lld", t.field, t.minute_of_day, (long long)t.offset, t.offset_days,
                     (long long)t.late);
}

/* When the trigger key of a journey differs from the one recorded (meta
 * "dated.<journey>" or "local.<journey>"), drops its rows and records the
 * new key: 1 then (plan afresh), 0 when unchanged, -1 on a store error. */
static int replan_if_changed(engine *e, int local, const char *journey, const char *key)
{
    char *meta = xasprintf("%s.%s", local ? "local" : "dated", journey);
    char *old = store_meta_get(e->st, meta);
    int rc = 0;
    if (!old || strcmp(old, key) != 0) {
        store_stmt *d = store_sql(e->st, local ? "DELETE FROM local_triggers WHERE journey = ?"
                                               : "DELETE FROM date_triggers WHERE journey = ?");
        store_bind_text(d, 1, journey, -1);
        rc = store_run(d) == 0 && store_meta_set(e->st, meta, key) == 0 ? 1 : -1;
    }
    free(old);
    free(meta);
    return rc;
}

int dates_sync(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    int rc = store_begin(e->st);
    catalog_push_dated(e);
    int list = lua_gettop(L);
    strbuf names;
    strbuf_init(&names);
    for (int i = 1; rc == 0 && lua_istable(L, list) && i <= (int)lua_rawlen(L, list); i++) {
        lua_rawgeti(L, list, i);
        const char *name = lua_tostring(L, -1);
        if (catalog_push_current(e, name)) {
            char *key = trigger_key(L, lua_gettop(L));
            rc = replan_if_changed(e, 0, name, key);
            if (rc == 1)
                rc = schedule_journey(e, name, lua_gettop(L), NULL);
            free(key);
        }
        lua_pop(L, 2);
    }
    lua_settop(L, list - 1);
    /* Journeys no longer date-triggered stop firing. */
    if (rc == 0) {
        store_stmt *s = store_sql(e->st, "SELECT DISTINCT journey FROM date_triggers");
        struct { char **v; int n; } gone = {0};
        while (store_step(s) == STORE_ROW) {
            const char *j = store_col_text(s, 0);
            int dated = 0, top = lua_gettop(L);
            if (catalog_push_current(e, j) && lua_getfield(L, -1, "on") == LUA_TTABLE &&
                lua_getfield(L, -1, "kind") == LUA_TSTRING)
                dated = strcmp(lua_tostring(L, -1), "anniversary") == 0;
            lua_settop(L, top);
            if (!dated) {
                gone.v = xrealloc(gone.v, (size_t)(gone.n + 1) * sizeof *gone.v);
                gone.v[gone.n++] = xstrdup(j);
            }
        }
        for (int i = 0; i < gone.n; i++) {
            store_stmt *d = store_sql(e->st, "DELETE FROM date_triggers WHERE journey = ?");
            store_bind_text(d, 1, gone.v[i], -1);
            if (store_run(d) != 0)
                rc = -1;
            char *meta = xasprintf("dated.%s", gone.v[i]);
            store_meta_set(e->st, meta, "");
            free(meta);
            free(gone.v[i]);
        }
        free(gone.v);
    }
    strbuf_free(&names);
    if (rc == 0)
        rc = dates_local_sync(e);
    if (rc == 0)
        return store_commit(e->st);
    store_rollback(e->st);
    return -1;
}

int dates_run_due(engine *e, tend_time now, int max)
{
    store_stmt *s = store_sql(e->st, "SELECT journey, customer, fire_at FROM date_triggers"
                                     " WHERE fire_at <= ? ORDER BY fire_at LIMIT ?");
    store_bind_int(s, 1, now);
    store_bind_int(s, 2, max);
    struct due { char *journey, *customer; tend_time at; } *due = NULL;
    int n = 0;
    while (store_step(s) == STORE_ROW) {
        due = xrealloc(due, (size_t)(n + 1) * sizeof *due);
        due[n].journey = xstrdup(store_col_text(s, 0));
        due[n].customer = xstrdup(store_col_text(s, 1));
        due[n].at = store_col_int(s, 2);
        n++;
    }
    if (n == 0)
        return 0;
    lua_State *L = sandbox_state(e->sb);
    int rc = store_begin(e->st), fired = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!catalog_push_current(e, due[i].journey)) {
            lua_pop(L, 1);
            rc = delete_row(e, due[i].journey, due[i].customer);
            continue;
        }
        struct trigger t;
        read_trigger(L, lua_gettop(L), &t);
        char *tz = customer_timezone(e, due[i].customer);
        /* The date that fired: the local day of (fire time - offset), less
         * offset_days calendar days. */
        struct clock_local l;
        clock_to_local(due[i].at - t.offset, tz, &l);
        clock_civil_from_days(clock_days_from_civil(l.year, l.month, l.day) - t.offset_days, &l.year, &l.month,
                              &l.day);
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "anniversary");
        cJSON_AddStringToObject(ev, "field", t.field);
        char date[16];
        snprintf(date, sizeof date, "%04d-%02d-%02d", l.year, l.month, l.day);
        cJSON_AddStringToObject(ev, "date", date);
        cJSON_AddNumberToObject(ev, "at", (double)due[i].at);
        free(tz);
        /* years: recompute from the stored field, as it may have changed */
        char *expr = field_sql(t.field);
        char *sql = expr ? xasprintf("SELECT %s, timezone FROM customers WHERE id = ?", expr) : NULL;
        free(expr);
        store_stmt *f = sql ? store_prepare(e->st, sql) : NULL;
        free(sql);
        int y = 0, m, d, years = 0;
        tend_time next = 0;
        if (f) {
            store_bind_text(f, 1, due[i].customer, -1);
            if (store_step(f) == STORE_ROW) {
                const char *ztz = store_col_text(f, 1);
                const char *zone = ztz && clock_tz_valid(ztz) ? ztz : e->cfg.timezone;
                if (value_date(f, 0, zone, &y, &m, &d) == 0) {
                    years = l.year - y;
                    dates_next_fire(y, m, d, zone, t.minute_of_day, t.offset_days, t.offset, due[i].at, &next,
                                    &years);
                }
            }
            store_finalize(f);
        }
        cJSON_AddNumberToObject(ev, "years", l.year - y);
        int admitted = y && instance_admits(e, lua_gettop(L), due[i].journey, due[i].customer, ev) == 1;
        lua_pop(L, 1);
        char err[300];
        if (admitted && instance_start(e, due[i].journey, due[i].customer, ev, 1, err, sizeof err) < 0) {
            engine_logf(e, "error", "journey '%s': %s", due[i].journey, err);
            rc = -1;
        }
        cJSON_Delete(ev);
        if (rc == 0)
            rc = next ? write_row(e, due[i].journey, due[i].customer, next, due[i].at)
                      : delete_row(e, due[i].journey, due[i].customer);
        fired++;
    }
    for (int i = 0; i < n; i++) {
        free(due[i].journey);
        free(due[i].customer);
    }
    free(due);
    if (rc == 0 && store_commit(e->st) == 0)
        return fired;
    if (rc != 0)
        store_rollback(e->st);
    return -1;
}

tend_time dates_next_due(engine *e)
{
    store_stmt *s = store_sql(e->st, "SELECT MIN(fire_at) FROM date_triggers");
    if (store_step(s) != STORE_ROW)
        return -1;
    tend_time t = store_col_type(s, 0) == STORE_NULL ? -1 : store_col_int(s, 0);
    store_reset(s);
    s = store_sql(e->st, "SELECT MIN(fire_at) FROM local_triggers");
    if (store_step(s) == STORE_ROW && store_col_type(s, 0) != STORE_NULL &&
        (t < 0 || store_col_int(s, 0) < t))
        t = store_col_int(s, 0);
    store_reset(s);
    return t;
}

/* --- local-time triggers: local_cron and holiday ------------------------ */

struct local_trigger {
    int is_cron;
    cron_expr cron;
    struct calendar_rule rule;
    int minute_of_day, offset_days;
};

/* Reads the trigger of the decl at idx; 0, or -1 when it is not one. */
static int read_local(lua_State *L, int decl, struct local_trigger *t)
{
    memset(t, 0, sizeof *t);
    int top = lua_gettop(L), rc = -1;
    if (lua_getfield(L, decl, "on") == LUA_TTABLE && lua_getfield(L, -1, "kind") == LUA_TSTRING) {
        const char *kind = lua_tostring(L, -1);
        int on = top + 1;
        if (strcmp(kind, "local_cron") == 0) {
            t->is_cron = 1;
            lua_getfield(L, on, "cron");
            rc = cron_parse(lua_tostring(L, -1), &t->cron, NULL, 0);
        } else if (strcmp(kind, "holiday") == 0) {
            static const char *const keys[] = {"rule_kind", "rule_month", "rule_day", "rule_nth", "rule_wday",
                                               "minute_of_day", "offset_days"};
            int v[7];
            for (int i = 0; i < 7; i++) {
                lua_getfield(L, on, keys[i]);
                v[i] = (int)lua_tointeger(L, -1);
                lua_pop(L, 1);
            }
            t->rule = (struct calendar_rule){(enum calendar_kind)v[0], v[1], v[2], v[3], v[4]};
            t->minute_of_day = v[5];
            t->offset_days = v[6];
            rc = 0;
        }
    }
    lua_settop(L, top);
    return rc;
}

/* The trigger's identity: a changed expression, date, time or shift re-plans it. */
static char *local_key(lua_State *L, int decl)
{
    struct local_trigger t;
    if (read_local(L, decl, &t) != 0)
        return xstrdup("");
    if (t.is_cron) {
        lua_getfield(L, decl, "on");
        lua_getfield(L, -1, "cron");
        char *key = xasprintf("cron|%s", lua_tostring(L, -1));
        lua_pop(L, 2);
        return key;
    }
    return xasprintf("holiday|%d|%d|%d|%d|%d|%d|%d", (int)t.rule.kind, t.rule.month, t.rule.day, t.rule.nth,
                     t.rule.wday, t.minute_of_day, t.offset_days);
}

/* The first slot strictly after `after` in zone tz. 0 or -1 (none). */
static int local_next(const struct local_trigger *t, const char *tz, tend_time after, tend_time *out)
{
    if (t->is_cron)
        return cron_next(&t->cron, after, tz, out);
    struct clock_local l;
    if (clock_to_local(after, tz, &l) != 0)
        return -1;
    /* From the holiday date whose shifted day could still be ahead (a day
     * of slack for DST), walk the occurrences until one fires after `after`. */
    int64_t day = clock_days_from_civil(l.year, l.month, l.day) - t->offset_days - 1;
    for (int i = 0; i < 16; i++) {
        int y, m, d, hy, hm, hd;
        clock_civil_from_days(day, &y, &m, &d);
        if (calendar_next_date(&t->rule, y, m, d, &hy, &hm, &hd) != 0)
            return -1;
        tend_time fire;
        if (clock_from_local(tz, hy, hm, hd + t->offset_days, t->minute_of_day / 60, t->minute_of_day % 60, 0,
                             &fire) != 0)
            return -1;
        if (fire > after) {
            *out = fire;
            return 0;
        }
        day = clock_days_from_civil(hy, hm, hd) + 1;
    }
    return -1;
}

const char *dates_zone(engine *e, const char *zone)
{
    if (*zone && clock_tz_valid(zone))
        return zone;
    if (*zone) {
        char *meta = xasprintf("bad_zone.%s", zone);
        char *seen = store_meta_get(e->st, meta);
        if (!seen) {
            engine_logf(e, "warn", "customers with time zone '%s' (not in the tz database) get local-time "
                        "triggers, anniversaries, windows and quiet hours in the configured zone %s", zone, e->cfg.timezone);
            store_meta_set(e->st, meta, "1");
        }
        free(seen);
        free(meta);
    }
    return e->cfg.timezone;
}

/* Adds the row of (journey, zone) if it has none: its next slot after now. */
static int plan_zone(engine *e, const char *journey, const struct local_trigger *t, const char *zone,
                     tend_time now)
{
    tend_time fire;
    if (local_next(t, dates_zone(e, zone), now, &fire) != 0)
        return 0;   /* never again (a date past 2100) */
    store_stmt *s = store_sql(e->st, "INSERT INTO local_triggers (journey, zone, fire_at) VALUES (?, ?, ?)"
                                     " ON CONFLICT DO NOTHING");
    store_bind_text(s, 1, journey, -1);
    store_bind_text(s, 2, zone, -1);
    store_bind_int(s, 3, fire);
    return store_run(s);
}

/* Every zone customers live in, found by skipping along the zone index
 * (one seek per zone, not a scan of the customers). */
static int plan_journey(engine *e, const char *journey, const struct local_trigger *t, tend_time now)
{
    struct { char **v; int n; } zones = {0};
    store_stmt *s = store_sql(e->st, "SELECT 1 FROM customers INDEXED BY customers_timezone"
                                     " WHERE timezone IS NULL LIMIT 1");
    if (store_step(s) == STORE_ROW) {
        zones.v = xrealloc(zones.v, sizeof *zones.v);
        zones.v[zones.n++] = xstrdup("");
    }
    store_reset(s);
    /* bounded: more zones than the tz database has means something is wrong */
    for (int guard = 0; guard < 4096; guard++) {
        s = store_sql(e->st, "SELECT MIN(timezone) FROM customers INDEXED BY customers_timezone WHERE timezone > ?");
        store_bind_text(s, 1, zones.n ? zones.v[zones.n - 1] : "", -1);   /* "" for none yet, or the NULL zone */
        const char *z = store_step(s) == STORE_ROW ? store_col_text(s, 0) : NULL;
        if (z) {
            zones.v = xrealloc(zones.v, (size_t)(zones.n + 1) * sizeof *zones.v);
            zones.v[zones.n++] = xstrdup(z);
        }
        store_reset(s);
        if (!z)
            break;
    }
    int rc = 0;
    for (int i = 0; i < zones.n; i++) {
        if (rc == 0)
            rc = plan_zone(e, journey, t, zones.v[i], now);
        free(zones.v[i]);
    }
    free(zones.v);
    return rc;
}

int dates_local_sync(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    int rc = 0;
    tend_time now = engine_now(e);
    catalog_push_local(e);
    int list = lua_gettop(L);
    for (int i = 1; rc == 0 && lua_istable(L, list) && i <= (int)lua_rawlen(L, list); i++) {
        lua_rawgeti(L, list, i);
        const char *name = lua_tostring(L, -1);
        struct local_trigger t;
        if (catalog_push_current(e, name) && read_local(L, lua_gettop(L), &t) == 0) {
            char *key = local_key(L, lua_gettop(L));
            rc = replan_if_changed(e, 1, name, key) < 0 ? -1 : plan_journey(e, name, &t, now);
            free(key);
        }
        lua_pop(L, 2);
    }
    lua_settop(L, list - 1);
    /* Journeys no longer so triggered stop; a new trigger starts afresh. */
    store_stmt *s = store_sql(e->st, "SELECT DISTINCT journey FROM local_triggers");
    struct { char **v; int n; } gone = {0};
    while (rc == 0 && store_step(s) == STORE_ROW) {
        const char *j = store_col_text(s, 0);
        struct local_trigger t;
        int top = lua_gettop(L);
        int live = catalog_push_current(e, j) && read_local(L, lua_gettop(L), &t) == 0;
        lua_settop(L, top);
        if (!live) {
            gone.v = xrealloc(gone.v, (size_t)(gone.n + 1) * sizeof *gone.v);
            gone.v[gone.n++] = xstrdup(j);
        }
    }
    store_reset(s);
    for (int i = 0; i < gone.n; i++) {
        store_stmt *d = store_sql(e->st, "DELETE FROM local_triggers WHERE journey = ?");
        store_bind_text(d, 1, gone.v[i], -1);
        if (rc == 0)
            rc = store_run(d);
        char *meta = xasprintf("local.%s", gone.v[i]);
        if (rc == 0)
            rc = store_meta_set(e->st, meta, "");
        free(meta);
        free(gone.v[i]);
    }
    free(gone.v);
    return rc;
}

/* A customer's zone may be new to the local triggers: plan it. */
static int local_customer_changed(engine *e, const char *customer)
{
    lua_State *L = sandbox_state(e->sb);
    catalog_push_local(e);
    int list = lua_gettop(L), rc = 0;
    if (!lua_istable(L, list) || lua_rawlen(L, list) == 0) {
        lua_pop(L, 1);
        return 0;
    }
    store_stmt *s = store_sql(e->st, "SELECT COALESCE(timezone, '') FROM customers WHERE id = ?");
    store_bind_text(s, 1, customer, -1);
    char *zone = store_step(s) == STORE_ROW ? xstrdup(store_col_text(s, 0)) : NULL;
    store_reset(s);
    for (int i = 1; zone && rc == 0 && i <= (int)lua_rawlen(L, list); i++) {
        lua_rawgeti(L, list, i);
        const char *name = lua_tostring(L, -1);
        store_stmt *q = store_sql(e->st, "SELECT 1 FROM local_triggers WHERE journey = ? AND zone = ?");
        store_bind_text(q, 1, name, -1);
        store_bind_text(q, 2, zone, -1);
        int planned = store_step(q) == STORE_ROW;
        store_reset(q);
        struct local_trigger t;
        if (!planned) {
            if (catalog_push_current(e, name) && read_local(L, lua_gettop(L), &t) == 0)
                rc = plan_zone(e, name, &t, zone, engine_now(e));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    free(zone);
    lua_settop(L, list - 1);
    return rc;
}

/* Pushes the audience filter of a local trigger: the trigger's own, else the
 * journey's (a table, or a function of the slot event), else everyone. */
static int push_local_audience(engine *e, int decl, const cJSON *ev, const char *journey)
{
    lua_State *L = sandbox_state(e->sb);
    lua_getfield(L, decl, "on");
    if (lua_getfield(L, -1, "audience") == LUA_TTABLE) {
        lua_remove(L, -2);
        return 0;
    }
    lua_pop(L, 2);
    int t = lua_getfield(L, decl, "audience");
    if (t == LUA_TTABLE)
        return 0;
    if (t == LUA_TFUNCTION) {
        json_push(L, ev);
        if (sandbox_pcall(e->sb, L, 1, 1) != LUA_OK || !lua_istable(L, -1)) {
            engine_logf(e, "error", "journey '%s': audience() must return a filter table%s%s", journey,
                        lua_isstring(L, -1) ? ": " : "", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
            lua_pop(L, 1);
            return -1;
        }
        return 0;
    }
    lua_pop(L, 1);
    lua_newtable(L);
    return 0;
}

/* The event a slot starts journeys with. */
static cJSON *slot_event(lua_State *L, int decl, const struct local_trigger *t, const char *tz, tend_time at)
{
    cJSON *ev = cJSON_CreateObject();
    struct clock_local l;
    clock_to_local(at, tz, &l);
    char slot[40];
    snprintf(slot, sizeof slot, "%04d-%02d-%02dT%02d:%02d", l.year, l.month, l.day, l.hour, l.minute);
    cJSON_AddStringToObject(ev, "type", t->is_cron ? "local_cron" : "holiday");
    cJSON_AddNumberToObject(ev, "at", (double)at);
    cJSON_AddStringToObject(ev, "slot", slot);
    cJSON_AddStringToObject(ev, "zone", tz);
    if (!t->is_cron) {
        lua_getfield(L, decl, "on");
        lua_getfield(L, -1, "name");
        cJSON_AddStringToObject(ev, "name", lua_tostring(L, -1));
        lua_pop(L, 2);
        int y, m, d;
        clock_civil_from_days(clock_days_from_civil(l.year, l.month, l.day) - t->offset_days, &y, &m, &d);
        char date[16];
        snprintf(date, sizeof date, "%04d-%02d-%02d", y, m, d);
        cJSON_AddStringToObject(ev, "date", date);
    }
    return ev;
}

struct idlist {
    char **v;
    int n;
};

static void collect_id(const char *id, void *ud)
{
    struct idlist *l = ud;
    l->v = xrealloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
    l->v[l->n++] = xstrdup(id);
}

/* One page of a zone's customers for the filter on top of L. */
static int zone_page(engine *e, const char *zone, const char *after, int page, struct idlist *ids, char *err,
                     size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    segment_query *q = segment_compile(L, -1, engine_now(e), err, errlen);
    if (!q)
        return -2;
    char *sql = xasprintf("SELECT id FROM customers INDEXED BY customers_timezone WHERE (%s) AND timezone %s"
                          " AND id > ? ORDER BY id LIMIT ?", segment_query_where(q), *zone ? "= ?" : "IS NULL");
    store_stmt *s = store_prepare(e->st, sql);
    free(sql);
    if (!s) {
        segment_query_free(q);
        return -1;
    }
    int k = segment_query_nparams(q);
    segment_query_bind(q, s, 1);
    if (*zone)
        store_bind_text(s, ++k, zone, -1);
    store_bind_text(s, k + 1, after, -1);
    store_bind_int(s, k + 2, page);
    int rc, n = 0;
    while ((rc = store_step(s)) == STORE_ROW) {
        collect_id(store_col_text(s, 0), ids);
        n++;
    }
    store_finalize(s);
    segment_query_free(q);
    return rc == STORE_ERROR ? -1 : n;
}

/* The slot a local-time pass works on: the due local_triggers row. */
struct local_slot {
    char *journey, *zone, *after;
    tend_time fire_at;
};

static void slot_free(struct local_slot *sl)
{
    free(sl->journey);
    free(sl->zone);
    free(sl->after);
}

/* The earliest due slot: 1, 0 when none is due. */
static int due_slot(store *st, tend_time now, struct local_slot *sl)
{
    store_stmt *s = store_sql(st, "SELECT journey, zone, fire_at, after FROM local_triggers WHERE fire_at <= ?"
                                  " ORDER BY fire_at LIMIT 1");
    store_bind_int(s, 1, now);
    if (store_step(s) != STORE_ROW) {
        store_reset(s);
        return 0;
    }
    sl->journey = xstrdup(store_col_text(s, 0));
    sl->zone = xstrdup(store_col_text(s, 1));
    sl->fire_at = store_col_int(s, 2);
    sl->after = xstrdup(store_col_text(s, 3));
    store_reset(s);
    return 1;
}

static void ids_clear(struct idlist *ids)
{
    for (int i = 0; i < ids->n; i++)
        free(ids->v[i]);
    free(ids->v);
    *ids = (struct idlist){0};
}

/* The slot's next page of customers after `after` (declaration at decl):
 * 0 (*done when it is the last), -1 on a store error. An audience that
 * cannot be read is logged and ends the slot. */
static int read_page(engine *e, int decl, const cJSON *ev, const struct local_slot *sl, const char *after,
                     int page, struct idlist *ids, int *done)
{
    lua_State *L = sandbox_state(e->sb);
    *done = 1;
    if (push_local_audience(e, decl, ev, sl->journey) != 0)
        return 0;
    char err[300];
    int got = zone_page(e, sl->zone, after, page, ids, err, sizeof err), rc = 0;
    if (got == -2)
        engine_logf(e, "error", "journey '%s': audience: %s", sl->journey, err);
    else if (got < 0)
        rc = -1;
    else
        *done = got < page;
    lua_pop(L, 1);
    return rc;
}

/* The first runs of a page's customers, with `starter` (initialised at its
 * first use: *have). 0, or -1 (logged). */
static int start_page(engine *e, int decl, const cJSON *ev, const char *journey, const struct idlist *ids,
                      struct instance_starter *starter, int *have, int hold)
{
    char err[300];
    if (ids->n && !*have) {
        if (instance_starter_init(e, starter, journey, ev, 1, err, sizeof err) != 0) {
            engine_logf(e, "error", "journey '%s': %s", journey, err);
            return -1;
        }
        *have = 1;
        instance_starter_hold(starter, hold);
    }
    for (int i = 0; i < ids->n; i++) {
        if (instance_admits(e, decl, journey, ids->v[i], ev) != 1)
            continue;
        if (instance_starter_start(e, starter, ids->v[i], err, sizeof err) < 0) {
            engine_logf(e, "error", "journey '%s': %s", journey, err);
            return -1;
        }
    }
    return 0;
}

/* The slot's resume point after a page, in the page's transaction: a
 * customer starts once per slot, whatever crashes in between. A finished
 * slot moves to the next one after now: after downtime, one catch-up, not
 * one per missed slot. */
static int advance(engine *e, const struct local_slot *sl, const struct local_trigger *t, const char *tz,
                   tend_time now, const struct idlist *ids, int done)
{
    store *st = e->st;
    store_stmt *u;
    if (!done) {
        u = store_sql(st, "UPDATE local_triggers SET after = ?3 WHERE journey = ?1 AND zone = ?2");
        store_bind_text(u, 3, ids->v[ids->n - 1], -1);
    } else {
        tend_time next;
        if (local_next(t, tz, sl->fire_at > now ? sl->fire_at : now, &next) == 0) {
            u = store_sql(st, "UPDATE local_triggers SET fire_at = ?3, after = '' WHERE journey = ?1 AND zone = ?2");
            store_bind_int(u, 3, next);
        } else {
            u = store_sql(st, "DELETE FROM local_triggers WHERE journey = ?1 AND zone = ?2");
        }
    }
    store_bind_text(u, 1, sl->journey, -1);
    store_bind_text(u, 2, sl->zone, -1);
    return store_run(u);
}

static int drop_slot(engine *e, const struct local_slot *sl)
{
    store_stmt *d = store_sql(e->st, "DELETE FROM local_triggers WHERE journey = ? AND zone = ?");
    store_bind_text(d, 1, sl->journey, -1);
    store_bind_text(d, 2, sl->zone, -1);
    return store_run(d);
}

struct local_call {
    engine *e;
    tend_time now;
    int page, worked;
};

/* One page of the due slot, in the caller's transaction (a slice's). */
static int local_batch(store *st, void *ud)
{
    struct local_call *lc = ud;
    engine *e = lc->e;
    lua_State *L = sandbox_state(e->sb);
    struct local_slot sl;
    if (!due_slot(st, lc->now, &sl))
        return 0;
    lc->worked = 1;

    int top = lua_gettop(L), rc = 0, done = 1;
    struct idlist ids = {0};
    struct local_trigger t;
    const char *tz = dates_zone(e, sl.zone);
    if (catalog_push_current(e, sl.journey) && read_local(L, top + 1, &t) == 0) {
        int decl = top + 1, have = 0;
        cJSON *ev = slot_event(L, decl, &t, tz, sl.fire_at);
        rc = read_page(e, decl, ev, &sl, sl.after, lc->page, &ids, &done);
        /* one starter for the page: the declaration and the slot event are
         * read and printed once, not per customer */
        struct instance_starter starter;
        if (rc == 0)
            rc = start_page(e, decl, ev, sl.journey, &ids, &starter, &have, 0);
        if (have && instance_starter_free(&starter) != 0) {
            engine_logf(e, "error", "journey '%s': store: %s", sl.journey, store_errmsg(st));
            rc = -1;
        }
        cJSON_Delete(ev);
        if (rc == 0)
            rc = advance(e, &sl, &t, tz, lc->now, &ids, done);
        lc->worked += ids.n;
    } else {
        rc = drop_slot(e, &sl);
    }
    lua_settop(L, top);
    ids_clear(&ids);
    slot_free(&sl);
    return rc;
}

/* All pages of the due slot, outside any transaction (engine_run_due):
 * each page commits on the store's thread (store_commit_start) while this
 * one runs the next page's first runs, whose customers the page before
 * read in its own transaction; their rows are held (instance_starter_hold)
 * and written, with the page's resume point, in a transaction that begins
 * once that commit ended (store_begin_after_commit), and commits only if it
 * did. A run that touches the store meanwhile waits for the commit and works
 * inside the page's transaction. Units done as local_batch's (1 + the
 * customers of every page), 0 when nothing is due, -1 on error (logged;
 * the pages committed stay, the rest is due again). */
static int local_slot_pipelined(engine *e, tend_time now, int page)
{
    store *st = e->st;
    lua_State *L = sandbox_state(e->sb);
    if (store_begin(st) != 0)
        return -1;
    struct local_slot sl;
    if (!due_slot(st, now, &sl))
        return store_commit(st) == 0 ? 0 : -1;
    store_checkpoint_aside(st, 1);   /* its pages' commits do not wait for checkpoints */
    int top = lua_gettop(L), rc = 0, done = 1, worked = 1, in_flight = 0;
    struct idlist ids = {0};
    struct local_trigger t;
    const char *tz = dates_zone(e, sl.zone);
    if (catalog_push_current(e, sl.journey) && read_local(L, top + 1, &t) == 0) {
        int decl = top + 1, have = 0;
        cJSON *ev = slot_event(L, decl, &t, tz, sl.fire_at);
        struct instance_starter starter;   /* one for the slot: its ids follow on from page to page */
        rc = read_page(e, decl, ev, &sl, sl.after, page, &ids, &done);
        while (rc == 0) {
            rc = start_page(e, decl, ev, sl.journey, &ids, &starter, &have, 1);
            if (in_flight) {
                in_flight = 0;
                if (store_commit_finish(st) != 0) {
                    engine_logf(e, "error", "journey '%s': store: %s", sl.journey, store_errmsg(st));
                    rc = -1;   /* the page before is not stored: this one must not be */
                }
            }
            if (rc == 0 && have && instance_starter_write(&starter) != 0) {
                engine_logf(e, "error", "journey '%s': store: %s", sl.journey, store_errmsg(st));
                rc = -1;
            }
            if (rc == 0)
                rc = advance(e, &sl, &t, tz, now, &ids, done);
            if (rc != 0 || done)
                break;
            worked += ids.n;
            char *after = xstrdup(ids.v[ids.n - 1]);
            ids_clear(&ids);
            rc = read_page(e, decl, ev, &sl, after, page, &ids, &done);
            free(after);
            if (rc == 0 && (rc = store_commit_start(st)) == 0) {
                in_flight = store_commit_pending(st);
                rc = store_begin_after_commit(st);
            }
        }
        worked += rc == 0 ? ids.n : 0;
        if (have) {
            if (rc != 0)
                instance_starter_discard(&starter);
            if (instance_starter_free(&starter) != 0)
                rc = -1;
        }
        if (in_flight)
            store_commit_finish(st);   /* rc is -1 already: settled, its result told nothing new */
        cJSON_Delete(ev);
    } else {
        rc = drop_slot(e, &sl);
    }
    lua_settop(L, top);
    ids_clear(&ids);
    slot_free(&sl);
    if (rc == 0 && store_commit(st) != 0)
        rc = -1;
    if (rc != 0 && store_in_batch(st))
        store_rollback(st);
    store_checkpoint_aside(st, 0);
    return rc == 0 ? worked : -1;
}

int dates_local_run_slot(engine *e, tend_time now, int page)
{
    if (store_in_batch(e->st))
        return dates_local_run_due(e, now, page);
    int n = local_slot_pipelined(e, now, page);
    if (n < 0)
        engine_logf(e, "error", "local-time trigger failed: %s", store_errmsg(e->st));
    return n;
}

int dates_local_run_due(engine *e, tend_time now, int page)
{
    struct local_call lc = {e, now, page, 0};
    if (store_batch(e->st, local_batch, &lc) != 0) {
        engine_logf(e, "error", "local-time trigger failed: %s", store_errmsg(e->st));
        return -1;
    }
    return lc.worked;
}
