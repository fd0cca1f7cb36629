/* dates — yearly triggers (see dates.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "customer.h"
#include "dates.h"
#include "instance.h"
#include "util.h"

int dates_next_fire(int y, int m, int d, const char *tz, int minute_of_day, tend_time offset,
                    tend_time after, tend_time *out, int *years)
{
    struct clock_local now;
    if (clock_to_local(after - offset, tz, &now) != 0)
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
        if (clock_from_local(tz, year, m, day, minute_of_day / 60, minute_of_day % 60, 0, &t) != 0)
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
    tend_time offset;
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
    lua_pop(L, 4);
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

static int write_row(engine *e, const char *journey, const char *customer, tend_time fire_at)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO date_triggers (journey, customer, fire_at) VALUES (?, ?, ?)"
                                     " ON CONFLICT(journey, customer) DO UPDATE SET fire_at = excluded.fire_at");
    store_bind_text(s, 1, journey, -1);
    store_bind_text(s, 2, customer, -1);
    store_bind_int(s, 3, fire_at);
    return store_run(s);
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
    int rc = 0, found = 0;
    while (rc == 0 && store_step(s) == STORE_ROW) {
        found = 1;
        const char *id = store_col_text(s, 0);
        const char *tz = store_col_text(s, 2);
        if (!tz || !clock_tz_valid(tz))
            tz = e->cfg.timezone;
        int y, m, d, years;
        tend_time fire;
        if (value_date(s, 1, tz, &y, &m, &d) == 0 &&
            dates_next_fire(y, m, d, tz, t.minute_of_day, t.offset, now, &fire, &years) == 0)
            rc = write_row(e, journey, id, fire);
        else
            rc = delete_row(e, journey, id);
    }
    if (cached)
        store_reset(s);
    else
        store_finalize(s);
    if (customer && !found)
        rc = delete_row(e, journey, customer);
    return rc;
}

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
    return rc;
}

/* The trigger's identity: a changed field, time or offset re-plans it. */
static char *trigger_key(lua_State *L, int decl)
{
    struct trigger t;
    read_trigger(L, decl, &t);
    return xasprintf("%s|%d|%lld", t.field, t.minute_of_day, (long long)t.offset);
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
            char *meta = xasprintf("dated.%s", name);
            char *old = store_meta_get(e->st, meta);
            if (!old || strcmp(old, key) != 0) {
                store_stmt *d = store_sql(e->st, "DELETE FROM date_triggers WHERE journey = ?");
                store_bind_text(d, 1, name, -1);
                rc = store_run(d);
                if (rc == 0)
                    rc = schedule_journey(e, name, lua_gettop(L), NULL);
                if (rc == 0)
                    rc = store_meta_set(e->st, meta, key);
            }
            free(old);
            free(meta);
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
            int dated = 0;
            if (catalog_push_current(e, j)) {
                lua_getfield(L, -1, "on");
                dated = lua_istable(L, -1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
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
        /* The date that fired: the local day of (fire time - offset). */
        struct clock_local l;
        clock_to_local(due[i].at - t.offset, tz, &l);
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
                    dates_next_fire(y, m, d, zone, t.minute_of_day, t.offset, due[i].at, &next, &years);
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
            rc = next ? write_row(e, due[i].journey, due[i].customer, next)
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
    return t;
}
