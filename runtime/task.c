/* task — staff tasks and their assignment (see task.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "channel.h"
#include "customer.h"
#include "event.h"
#include "json.h"
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
    tend_time due_at = 0;
    if (spec) {
        if (lua_getfield(L, spec, "due") != LUA_TNIL) {
            if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0 || lua_tonumber(L, -1) > 100 * 366 * TEND_DAY) {
                snprintf(err, errlen, "'due' must be seconds from now (days(2)), 0 to 100 years");
                return -1;
            }
            due_at = engine_now(e) + (tend_time)lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
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
    /* due: when the script says, but never before the channel's window
     * opens; a window alone makes the task due at its opening */
    if (v.due_at > engine_now(e) && v.due_at > due_at)
        due_at = v.due_at;
    store_stmt *s = store_sql(e->st, "INSERT INTO tasks (customer, journey, instance, step, assignee, note,"
                                     " created_at, kind, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    store_bind_text(s, 1, customer, -1);
    store_bind_text(s, 2, journey, -1);
    store_bind_int(s, 3, instance);
    store_bind_int(s, 4, step);
    store_bind_text(s, 5, assignee_copy, -1);
    store_bind_text(s, 6, note ? note : "", -1);
    store_bind_int(s, 7, engine_now(e));
    store_bind_text(s, 8, kind, -1);
    if (due_at)
        store_bind_int(s, 9, due_at);
    if (store_run(s) != 0) {
        free(assignee_copy);
        free(kind);
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return -1;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, store_last_rowid(e->st));
    lua_setfield(L, -2, "id");
    lua_pushstring(L, due_at > engine_now(e) && due_at == v.due_at ? "deferred" : "open");
    lua_setfield(L, -2, "status");
    if (due_at) {
        lua_pushinteger(L, due_at);
        lua_setfield(L, -2, "due_at");
    }
    if (assignee_copy) {
        lua_pushstring(L, assignee_copy);
        lua_setfield(L, -2, "assignee");
    }
    free(assignee_copy);
    free(kind);
    return 0;
}

/* --- closing, reading, paging -------------------------------------------- */

#define TASK_COLUMNS "id, customer, journey, assignee, kind, note, status, outcome, created_at, due_at, done_at"

static cJSON *row_json(store_stmt *st, tend_time now)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", (double)store_col_int(st, 0));
    static const char *const text[] = {NULL, "customer", "journey", "assignee", "kind", "note", "status", "outcome"};
    for (int c = 1; c <= 7; c++)
        if (store_col_text(st, c))
            cJSON_AddStringToObject(t, text[c], store_col_text(st, c));
    static const char *const times[] = {"created_at", "due_at", "done_at"};
    for (int c = 8; c <= 10; c++)
        if (store_col_type(st, c) != STORE_NULL)
            cJSON_AddNumberToObject(t, times[c - 8], (double)store_col_int(st, c));
    int open = store_col_text(st, 6) && !strcmp(store_col_text(st, 6), "open");
    cJSON_AddBoolToObject(t, "overdue", open && store_col_type(st, 9) != STORE_NULL && store_col_int(st, 9) < now);
    return t;
}

cJSON *task_get(engine *e, int64_t id)
{
    store_stmt *st = store_sql(e->st, "SELECT " TASK_COLUMNS " FROM tasks WHERE id = ?");
    store_bind_int(st, 1, id);
    cJSON *t = store_step(st) == STORE_ROW ? row_json(st, engine_now(e)) : NULL;
    store_reset(st);
    return t;
}

static int closing_status(const char *s)
{
    return s && (!strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled"));
}

enum task_close_result task_close(engine *e, int64_t id, const char *status, const char *outcome,
                                  const char *note, char *err, size_t errlen)
{
    if (!closing_status(status)) {
        snprintf(err, errlen, "field 'status': must be \"done\", \"failed\" or \"cancelled\"");
        return TASK_BAD_REQUEST;
    }
    if ((outcome && strlen(outcome) > 2000) || (note && strlen(note) > 4000)) {
        snprintf(err, errlen, "field '%s': too long", outcome && strlen(outcome) > 2000 ? "outcome" : "note");
        return TASK_BAD_REQUEST;
    }
    cJSON *t = task_get(e, id);
    if (!t) {
        snprintf(err, errlen, "no task %lld", (long long)id);
        return TASK_NOT_FOUND;
    }
    const char *was = cJSON_GetObjectItemCaseSensitive(t, "status")->valuestring;
    if (strcmp(was, "open") != 0) {
        snprintf(err, errlen, "task %lld is %s already", (long long)id, was);
        cJSON_Delete(t);
        return TASK_ALREADY_CLOSED;
    }
    tend_time now = engine_now(e);
    store_stmt *st = store_sql(e->st, "UPDATE tasks SET status = ?, outcome = ?, closed_note = ?, done_at = ?"
                                      " WHERE id = ? AND status = 'open'");
    store_bind_text(st, 1, status, -1);
    store_bind_text(st, 2, outcome, -1);
    store_bind_text(st, 3, note, -1);
    store_bind_int(st, 4, now);
    store_bind_int(st, 5, id);
    if (store_run(st) != 0) {
        cJSON_Delete(t);
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return TASK_STORE_ERROR;
    }
    /* the event journeys see: task.done, task.failed, task.cancelled */
    cJSON *ev = cJSON_CreateObject();
    char type[32], evid[48];
    snprintf(type, sizeof type, "task.%s", status);
    snprintf(evid, sizeof evid, "task:%lld:%s", (long long)id, status);
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddStringToObject(ev, "id", evid);
    cJSON_AddStringToObject(ev, "customer", cJSON_GetObjectItemCaseSensitive(t, "customer")->valuestring);
    cJSON_AddNumberToObject(ev, "at", (double)now);
    cJSON_AddNumberToObject(ev, "task", (double)id);
    static const char *const copied[] = {"kind", "assignee", "journey", NULL};
    for (const char *const *k = copied; *k; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, *k);
        if (cJSON_IsString(v))
            cJSON_AddStringToObject(ev, *k, v->valuestring);
    }
    if (outcome)
        cJSON_AddStringToObject(ev, "outcome", outcome);
    if (note)
        cJSON_AddStringToObject(ev, "note", note);
    cJSON_Delete(t);
    struct event_result res;
    int rc = event_accept(e, ev, &res, err, errlen);
    cJSON_Delete(ev);
    return rc == 0 ? TASK_CLOSED_NOW : TASK_STORE_ERROR;
}

cJSON *task_page(engine *e, const struct task_filter *f, int64_t after, int limit)
{
    tend_time now = engine_now(e);
    const char *status = f->overdue ? "open" : f->status && strcmp(f->status, "all") ? f->status : NULL;
    /* One statement for every filter combination: a NULL parameter lifts
     * its condition. The (status, id) and (assignee, status, id) indexes
     * serve the pages; limit + 1 rows tell whether a next page exists. */
    store_stmt *st = store_sql(e->st, "SELECT " TASK_COLUMNS " FROM tasks"
                                      " WHERE id > ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR assignee = ?3)"
                                      " AND (?4 IS NULL OR customer = ?4) AND (?5 IS NULL OR due_at < ?5)"
                                      " ORDER BY id LIMIT ?6");
    store_bind_int(st, 1, after);
    store_bind_text(st, 2, status, -1);
    store_bind_text(st, 3, f->assignee, -1);
    store_bind_text(st, 4, f->customer, -1);
    if (f->overdue)
        store_bind_int(st, 5, now);
    store_bind_int(st, 6, limit + 1);
    cJSON *r = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(r, "tasks");
    int n = 0;
    int64_t last = 0;
    int more = 0;
    while (store_step(st) == STORE_ROW) {
        if (n == limit) {
            more = 1;
            break;
        }
        last = store_col_int(st, 0);
        cJSON_AddItemToArray(arr, row_json(st, now));
        n++;
    }
    store_reset(st);
    if (more)
        cJSON_AddNumberToObject(r, "next", (double)last);
    else
        cJSON_AddNullToObject(r, "next");
    return r;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

cJSON *task_summary(engine *e)
{
    tend_time now = engine_now(e);
    store_stmt *st = store_sql(e->st, "SELECT COALESCE(assignee, ''), status, due_at, created_at, done_at FROM tasks"
                                      " ORDER BY COALESCE(assignee, '')");
    cJSON *r = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(r, "assignees");
    char current[256] = "";
    int have = 0;
    long long open = 0, done = 0, failed = 0, cancelled = 0, overdue = 0;
    int64_t *durations = NULL;
    size_t nd = 0, cap = 0;
    for (int rc = store_step(st);; rc = store_step(st)) {
        const char *who = rc == STORE_ROW ? store_col_text(st, 0) : NULL;
        if (have && (!who || strcmp(who, current) != 0)) {
            cJSON *a = cJSON_CreateObject();
            if (current[0])
                cJSON_AddStringToObject(a, "assignee", current);
            else
                cJSON_AddNullToObject(a, "assignee");
            cJSON_AddNumberToObject(a, "open", (double)open);
            cJSON_AddNumberToObject(a, "done", (double)done);
            cJSON_AddNumberToObject(a, "failed", (double)failed);
            cJSON_AddNumberToObject(a, "cancelled", (double)cancelled);
            cJSON_AddNumberToObject(a, "overdue", (double)overdue);
            if (nd) {
                qsort(durations, nd, sizeof *durations, cmp_i64);
                double median = nd % 2 ? (double)durations[nd / 2]
                                       : ((double)durations[nd / 2 - 1] + (double)durations[nd / 2]) / 2;
                cJSON_AddNumberToObject(a, "median_seconds_to_close", median);
            } else {
                cJSON_AddNullToObject(a, "median_seconds_to_close");
            }
            cJSON_AddItemToArray(arr, a);
            open = done = failed = cancelled = overdue = 0;
            nd = 0;
        }
        if (!who)
            break;
        snprintf(current, sizeof current, "%s", who);
        have = 1;
        const char *status = store_col_text(st, 1);
        if (!strcmp(status, "open")) {
            open++;
            overdue += store_col_type(st, 2) != STORE_NULL && store_col_int(st, 2) < now;
        } else {
            done += !strcmp(status, "done");
            failed += !strcmp(status, "failed");
            cancelled += !strcmp(status, "cancelled");
            if (store_col_type(st, 4) != STORE_NULL) {
                if (nd == cap) {
                    cap = cap ? 2 * cap : 64;
                    durations = xrealloc(durations, cap * sizeof *durations);
                }
                durations[nd++] = store_col_int(st, 4) - store_col_int(st, 3);
            }
        }
    }
    store_reset(st);
    free(durations);
    return r;
}

/* --- wait_task ------------------------------------------------------------ */


static int same_task(const cJSON *ev, void *ud)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "task");
    return cJSON_IsNumber(id) && (int64_t)id->valuedouble == *(const int64_t *)ud;
}

/* The closing event, as the task table wait_task returns. */
static cJSON *closed_task(const cJSON *ev)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ev, "task")));
    const char *type = cJSON_GetObjectItemCaseSensitive(ev, "type")->valuestring;
    cJSON_AddStringToObject(t, "status", type + strlen("task."));
    static const char *const copied[] = {"outcome", "note", "kind", "assignee", NULL};
    for (const char *const *k = copied; *k; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, *k);
        if (cJSON_IsString(v))
            cJSON_AddStringToObject(t, *k, v->valuestring);
    }
    cJSON_AddItemToObject(t, "done_at", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(ev, "at"), 1));
    return t;
}

/* wait_task(t, {timeout = s}) → the task table once closed (status,
 * outcome, note, ...), or nil after the timeout. t is what task() returned,
 * or a task id. */
static int p_wait_task(lua_State *L)
{
    engine *e = step_engine(L);
    struct run_ctx *ctx = step_require(L, e, "wait_task()");
    int64_t id;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "id");
        luaL_argcheck(L, lua_isinteger(L, -1), 1, "a task (what task() returned) or a task id");
        id = lua_tointeger(L, -1);
        lua_pop(L, 1);
    } else {
        id = luaL_checkinteger(L, 1);
    }
    lua_Integer timeout = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
            timeout = (lua_Integer)luaL_checknumber(L, -1);
            luaL_argcheck(L, timeout > 0, 2, "timeout must be positive seconds");
        }
        lua_pop(L, 1);
    }
    char desc[40], hashed[64];
    snprintf(desc, sizeof desc, "task %lld", (long long)id);
    snprintf(hashed, sizeof hashed, "%lld\x1f%lld", (long long)id, (long long)timeout);
    struct step_wait w = {.kind = "wait_task", .desc = desc, .hashed = hashed, .listen = "task.*",
                          .timeout = timeout, .match = same_task, .ud = &id, .result = closed_task};
    return step_wait_event(L, ctx, &w);
}

void task_register(engine *e)
{
    static const luaL_Reg fns[] = {{"wait_task", p_wait_task}, {NULL, NULL}};
    step_register_fns(e, fns);
}
