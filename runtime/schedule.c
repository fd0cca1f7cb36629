/* schedule — cron and interval schedules (see schedule.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "schedule.h"
#include "util.h"

/* The schedule's identity: a changed cron, interval or zone re-plans it. */
static char *spec_of(lua_State *L, int decl, const char *default_tz)
{
    lua_getfield(L, decl, "cron");
    lua_getfield(L, decl, "every");
    lua_getfield(L, decl, "tz");
    const char *tz = lua_isstring(L, -1) ? lua_tostring(L, -1) : default_tz;
    char *spec = lua_isstring(L, -3) ? xasprintf("cron %s|%s", lua_tostring(L, -3), tz)
                                     : xasprintf("every %lld", (long long)lua_tointeger(L, -2));
    lua_pop(L, 3);
    return spec;
}

static tend_time next_time(lua_State *L, int decl, const char *default_tz, tend_time after)
{
    if (lua_getfield(L, decl, "cron") == LUA_TSTRING) {
        cron_expr c;
        tend_time t = -1;
        lua_getfield(L, decl, "tz");
        const char *tz = lua_isstring(L, -1) ? lua_tostring(L, -1) : default_tz;
        if (cron_parse(lua_tostring(L, -2), &c, NULL, 0) != 0 || cron_next(&c, after, tz, &t) != 0)
            t = -1;
        lua_pop(L, 2);
        return t;
    }
    lua_pop(L, 1);
    lua_getfield(L, decl, "every");
    tend_time every = (tend_time)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return after + every;
}

static int record_run(engine *e, const char *name, tend_time slot, tend_time now, const char *error)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO schedule_runs (name, slot, ran_at, status, error)"
                                     " VALUES (?, ?, ?, ?, ?)");
    store_bind_text(s, 1, name, -1);
    store_bind_int(s, 2, slot);
    store_bind_int(s, 3, now);
    store_bind_text(s, 4, error ? "failed" : "ok", -1);
    store_bind_text(s, 5, error, -1);
    return store_run(s);
}

static int save(engine *e, const char *name, const char *spec, tend_time next, int ran, tend_time now)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO schedules (name, spec, next_at, last_run_at, runs)"
                                     " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO UPDATE SET spec = ?2,"
                                     " next_at = ?3, last_run_at = COALESCE(?4, last_run_at), runs = runs + ?5");
    store_bind_text(s, 1, name, -1);
    store_bind_text(s, 2, spec, -1);
    store_bind_int(s, 3, next);
    if (ran)
        store_bind_int(s, 4, now);
    store_bind_int(s, 5, ran);
    return store_run(s);
}

/* Runs one schedule's function in its own transaction. */
static int run_one(engine *e, int decl, const char *name, const char *spec, tend_time slot, tend_time now)
{
    lua_State *L = sandbox_state(e->sb);
    if (store_begin(e->st) != 0)
        return -1;
    lua_getfield(L, decl, "run");
    char *error = NULL;
    if (sandbox_pcall(e->sb, L, 0, 0) != LUA_OK) {
        error = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        engine_logf(e, "error", "schedule '%s' failed: %s", name, error);
        /* What a failed run started is rolled back with it: a half-done
         * run would start the rest again next time. */
        store_rollback(e->st);
        if (store_begin(e->st) != 0) {
            free(error);
            return -1;
        }
    }
    tend_time next = next_time(L, decl, e->cfg.timezone, now);
    int rc = record_run(e, name, slot, now, error);
    if (rc == 0)
        rc = save(e, name, spec, next, 1, now);
    free(error);
    if (rc == 0)
        return store_commit(e->st);
    store_rollback(e->st);
    return -1;
}

int schedule_run_due(engine *e, tend_time now)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    catalog_push_all(e, "schedules");
    int all = lua_gettop(L), ran = 0, rc = 0;
    /* Rows of schedules no script declares any more are dropped, so they
     * neither fire nor hold the next-due time. */
    store_stmt *s = store_sql(e->st, "SELECT name FROM schedules");
    char **gone = NULL;
    int ngone = 0;
    while (store_step(s) == STORE_ROW) {
        if (lua_getfield(L, all, store_col_text(s, 0)) == LUA_TNIL) {
            gone = xrealloc(gone, (size_t)(ngone + 1) * sizeof *gone);
            gone[ngone++] = xstrdup(store_col_text(s, 0));
        }
        lua_pop(L, 1);
    }
    for (int i = 0; i < ngone; i++) {
        store_stmt *d = store_sql(e->st, "DELETE FROM schedules WHERE name = ?");
        store_bind_text(d, 1, gone[i], -1);
        rc |= store_run(d);
        free(gone[i]);
    }
    free(gone);
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, all)) {
        const char *name = lua_tostring(L, -2);
        int decl = lua_gettop(L);
        char *spec = spec_of(L, decl, e->cfg.timezone);
        s = store_sql(e->st, "SELECT spec, next_at FROM schedules WHERE name = ?");
        store_bind_text(s, 1, name, -1);
        int found = store_step(s) == STORE_ROW;
        int same = found && strcmp(store_col_text(s, 0), spec) == 0;
        tend_time next = found ? store_col_int(s, 1) : 0;
        if (found)
            store_reset(s);
        if (!same) {
            /* new or changed: first fire after now */
            rc = save(e, name, spec, next_time(L, decl, e->cfg.timezone, now), 0, now);
        } else if (next >= 0 && next <= now) {
            rc = run_one(e, decl, name, spec, next, now);
            ran++;
        }
        free(spec);
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    return rc ? -1 : ran;
}

tend_time schedule_next_due(engine *e)
{
    store_stmt *s = store_sql(e->st, "SELECT MIN(next_at) FROM schedules WHERE next_at >= 0");
    if (store_step(s) != STORE_ROW)
        return -1;
    tend_time t = store_col_type(s, 0) == STORE_NULL ? -1 : store_col_int(s, 0);
    store_reset(s);
    return t;
}
