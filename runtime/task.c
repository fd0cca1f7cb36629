/* task — staff tasks and their assignment (see task.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "channel.h"
#include "customer.h"
#include "policy.h"
#include "step.h"
#include "task.h"
#include "util.h"

/* Round-robin over the list at idx: the turn is a counter in meta, keyed by
 * the journey, so two journeys with the same staff list rotate separately. */
static const char *round_robin(engine *e, lua_State *L, int idx, const char *journey)
{
    int n = (int)lua_rawlen(L, idx);
    if (n == 0)
        return NULL;
    char key[200];
    snprintf(key, sizeof key, "task.turn.%s", journey);
    int64_t turn = 0;
    store_meta_get_int(e->st, key, &turn);
    store_meta_set_int(e->st, key, turn + 1);
    lua_rawgeti(L, idx, (lua_Integer)(turn % n) + 1);
    const char *name = lua_tostring(L, -1);   /* kept alive by the list */
    lua_pop(L, 1);
    return name;
}

int task_create(engine *e, lua_State *L, const char *journey, int64_t instance, int step,
                const char *customer, int spec, char *err, size_t errlen)
{
    const char *note = NULL, *assignee = NULL;
    char *kind = NULL;
    char *assignee_copy = NULL;
    if (spec) {
        if (lua_getfield(L, spec, "kind") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TSTRING) {
                snprintf(err, errlen, "'kind' must be text (\"call\", \"visit\", ...)");
                return -1;
            }
            kind = xstrdup(lua_tostring(L, -1));
        }
        lua_pop(L, 1);
        if (lua_getfield(L, spec, "note") != LUA_TNIL && !(note = lua_tostring(L, -1))) {
            snprintf(err, errlen, "'note' must be text");
            free(kind);
            return -1;
        }
        int t = lua_getfield(L, spec, "assign");
        if (t == LUA_TSTRING) {
            assignee = lua_tostring(L, -1);
        } else if (t == LUA_TTABLE) {
            assignee = round_robin(e, L, lua_gettop(L), journey);
        } else if (t == LUA_TFUNCTION) {
            struct run_ctx *ctx = step_ctx(e);
            customer_push_handle(e, L, customer);
            if (ctx)
                ctx->no_steps = 1;
            int st = lua_pcall(L, 1, 1, 0);
            if (ctx)
                ctx->no_steps = 0;
            if (st != LUA_OK) {
                snprintf(err, errlen, "assign: %s", lua_tostring(L, -1));
                free(kind);
                return -1;
            }
            assignee = lua_tostring(L, -1);
        } else if (t != LUA_TNIL) {
            snprintf(err, errlen, "'assign' must be a name, a list of names or a function(c)");
            free(kind);
            return -1;
        }
        if (assignee)
            assignee_copy = xstrdup(assignee);
        lua_pop(L, 2);
    }
    /* A declared task channel of this kind governs the task: its window
     * sets when it is due, its caps may refuse it. */
    struct policy_verdict v = {.status = "queued", .due_at = engine_now(e)};
    struct channel_info info;
    if (kind) {
        channel_push(e, kind, &info);
        int governed = lua_istable(L, -1) && info.kind == CHANNEL_TASK;
        lua_pop(L, 1);
        if (governed && policy_check_task(e, customer, kind, engine_now(e), &v) != 0) {
            free(assignee_copy);
            free(kind);
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            return -1;
        }
    }
    if (strcmp(v.status, "capped") == 0) {
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "capped");
        lua_setfield(L, -2, "status");
        lua_pushstring(L, v.reason);
        lua_setfield(L, -2, "reason");
        free(assignee_copy);
        free(kind);
        return 0;
    }
    store_stmt *s = store_sql(e->st, "INSERT INTO tasks (customer, journey, instance, step, assignee, note,"
                                     " created_at, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    store_bind_text(s, 1, customer, -1);
    store_bind_text(s, 2, journey, -1);
    store_bind_int(s, 3, instance);
    store_bind_int(s, 4, step);
    store_bind_text(s, 5, assignee_copy, -1);
    store_bind_text(s, 6, note ? note : "", -1);
    store_bind_int(s, 7, engine_now(e));
    store_bind_text(s, 8, kind, -1);
    if (store_run(s) != 0) {
        free(assignee_copy);
        free(kind);
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return -1;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, store_last_rowid(e->st));
    lua_setfield(L, -2, "id");
    lua_pushstring(L, v.due_at > engine_now(e) ? "deferred" : "open");
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, v.due_at);
    lua_setfield(L, -2, "due_at");
    if (assignee_copy) {
        lua_pushstring(L, assignee_copy);
        lua_setfield(L, -2, "assignee");
    }
    free(assignee_copy);
    free(kind);
    return 0;
}
