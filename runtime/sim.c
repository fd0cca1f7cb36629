/* sim — t.sim{}: a whole tend runtime on a virtual clock, for tests.
 *
 * A sim owns an engine with its own temporary SQLite file (removed when the
 * sim is collected), a virtual clock and captured channels. The engine runs
 * in a Lua state of its own: the test's state only holds a handle, and
 * values cross between the two by copy. restart() closes the engine and
 * opens a new one on the same file, so whatever the test checks afterwards
 * comes from the store alone, as after kill -9.
 *
 * The test file's clock follows the sim it last created or advanced, so
 * ago(), now() and os.time() in the test mean the sim's time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "catalog.h"
#include "coverage.h"
#include "customer.h"
#include "dates.h"
#include "event.h"
#include "helpers.h"
#include "json.h"
#include "receipt.h"
#include "product.h"
#include "segment.h"
#include "status.h"
#include "sim.h"
#include "task.h"
#include "util.h"

#define SIM_MT "tend.sim"
#define SIM_DEFAULT_START 1767225600   /* 2026-01-01T00:00:00Z */

struct sim {
    engine *e;
    tclock *clock;
    char *db_path;
    char **scripts;
    int nscripts;
    char *source;
    char *test_dir;             /* relative script paths start here */
    coverage *cov;              /* tend test --coverage: count script lines (or NULL) */
    /* what the current case's failure report leaves out: instances failed
     * and log bytes written before the case began (sim_case_begin) */
    int64_t *failed_before;
    size_t nfailed_before;
    size_t log_from;
    cJSON *config;
    strbuf log;
    sandbox *test_sb;
    const tclock *test_clock;   /* the test file's own clock, restored at the end */
};

static void sim_log(void *ud, const char *level, const char *msg)
{
    struct sim *s = ud;
    strbuf_printf(&s->log, "%s: %s\n", level, msg);
}

static struct sim *check_sim(lua_State *L)
{
    struct sim *s = luaL_checkudata(L, 1, SIM_MT);
    if (!s->e)
        luaL_error(L, "this sim is closed");
    return s;
}

/* Opens the engine on the sim's file and loads its scripts. */
static int open_engine(lua_State *L, struct sim *s)
{
    char *dir = NULL;
    if (s->nscripts) {
        const char *slash = strrchr(s->scripts[0], '/');
        dir = slash ? xstrndup(s->scripts[0], (size_t)(slash - s->scripts[0])) : xstrdup(".");
    }
    struct engine_options o = {.dir = NULL, .db_path = s->db_path, .clock = s->clock, .capture = 1, .throwaway = 1,
                               .config = s->config, .log = sim_log, .log_ud = s};
    char *err = NULL;
    s->e = engine_open(&o, &err);
    if (!s->e) {
        free(dir);
        lua_pushfstring(L, "t.sim: %s", err ? err : "cannot open");
        free(err);
        return -1;
    }
    s->e->dir = dir;
    s->e->http_stubs = cJSON_CreateObject();   /* a sim's http_get never reaches the network */
    if (s->cov) {
        for (int i = 0; i < s->nscripts; i++)
            coverage_add_file(s->cov, s->scripts[i]);
        sandbox_set_line_hook(s->e->sb, coverage_hit, s->cov);
    }
    char *errors = NULL;
    int n = 0;
    if (s->nscripts || s->source)
        n = engine_load_set(s->e, (const char *const *)s->scripts, s->nscripts, "source", s->source,
                            s->source ? strlen(s->source) : 0, &errors);
    if (n != 0) {
        lua_pushfstring(L, "t.sim: scripts failed to load:\n%s", errors ? errors : "?");
        free(errors);
        engine_close(s->e);
        s->e = NULL;
        return -1;
    }
    return 0;
}

/* Drops the sim's script set (before a deploy, and at the end). */
static void forget_scripts(struct sim *s)
{
    for (int i = 0; i < s->nscripts; i++)
        free(s->scripts[i]);
    free(s->scripts);
    s->scripts = NULL;
    s->nscripts = 0;
    free(s->source);
    s->source = NULL;
}

static int sim_gc(lua_State *L)
{
    struct sim *s = luaL_checkudata(L, 1, SIM_MT);
    if (s->e) {
        engine_close(s->e);
        s->e = NULL;
    }
    if (s->test_sb && sandbox_clock(s->test_sb) == s->clock)
        sandbox_set_clock(s->test_sb, s->test_clock);
    if (s->db_path) {
        store_remove(s->db_path);
        free(s->db_path);
        s->db_path = NULL;
    }
    forget_scripts(s);
    free(s->test_dir);
    s->test_dir = NULL;
    free(s->failed_before);
    s->failed_before = NULL;
    s->nfailed_before = 0;
    cJSON_Delete(s->config);
    s->config = NULL;
    if (s->clock) {
        clock_free(s->clock);
        s->clock = NULL;
    }
    strbuf_free(&s->log);
    return 0;
}

/* Converts the test-state value at idx to JSON, or raises. */
static cJSON *arg_json(lua_State *L, int idx, const char *what)
{
    char err[300];
    cJSON *j = json_from_lua_input(L, idx, err, sizeof err);
    if (!j)
        luaL_error(L, "%s: %s", what, err);
    return j;
}

static void raise_store(lua_State *L, struct sim *s, const char *what)
{
    luaL_error(L, "%s: store: %s", what, store_errmsg(s->e->st));
}

/* --- methods ------------------------------------------------------------ */

static int run_due(lua_State *L, struct sim *s)
{
    if (engine_run_due(s->e, engine_now(s->e)) < 0)
        raise_store(L, s, "sim");
    return 0;
}

/* sim:customer{...} creates or updates a customer; sim:customer("c1")
 * returns its fields (nil if there is none). */
static int m_customer(lua_State *L)
{
    struct sim *s = check_sim(L);
    if (lua_type(L, 2) == LUA_TSTRING) {
        cJSON *c = customer_json(s->e, lua_tostring(L, 2));
        json_push(L, c);
        cJSON_Delete(c);
        return 1;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    cJSON *obj = arg_json(L, 2, "sim:customer");
    char err[300];
    int created;
    int rc = store_begin(s->e->st);
    if (rc == 0 && customer_upsert(s->e, obj, 0, &created, err, sizeof err) != 0) {
        store_rollback(s->e->st);
        cJSON_Delete(obj);
        return luaL_error(L, "sim:customer: %s", err);
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    if (rc == 0)
        rc = dates_customer_changed(s->e, id->valuestring);
    if (rc == 0)
        rc = store_commit(s->e->st);
    else
        store_rollback(s->e->st);
    cJSON_Delete(obj);
    if (rc != 0)
        raise_store(L, s, "sim:customer");
    return run_due(L, s);
}

/* sim:product{sku = ..., usage_days = ..., ...} adds or updates a catalog
 * row; sim:product("sku") returns it (nil if there is none). */
static int m_product(lua_State *L)
{
    struct sim *s = check_sim(L);
    if (lua_type(L, 2) == LUA_TSTRING) {
        cJSON *p = product_json(s->e->st, lua_tostring(L, 2));
        json_push(L, p);
        cJSON_Delete(p);
        return 1;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    cJSON *obj = arg_json(L, 2, "sim:product");
    char err[300];
    int created;
    int rc = product_upsert(s->e->st, obj, 0, engine_now(s->e), &created, err, sizeof err);
    cJSON_Delete(obj);
    if (rc != 0)
        return luaL_error(L, "sim:product: %s", err);
    return 0;
}

/* sim:event{...}: accepted, then processed at the sim's now. */
static int m_event(lua_State *L)
{
    struct sim *s = check_sim(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    cJSON *ev = arg_json(L, 2, "sim:event");
    struct event_result res;
    char err[300] = "";
    int rc = event_accept(s->e, ev, &res, err, sizeof err);
    cJSON_Delete(ev);
    if (rc != 0)
        return luaL_error(L, "sim:event: %s", err);
    run_due(L, s);
    lua_pushboolean(L, !res.duplicate);
    return 1;
}

/* sim:receipt{message = id | key = k, status = ..., at =, reason =, id =}: a
 * provider's receipt, as POST /v1/receipts takes it. Returns true when it
 * was stored, false for a duplicate; raises for an unknown message or a bad
 * field. */
static int m_receipt(lua_State *L)
{
    struct sim *s = check_sim(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    cJSON *r = arg_json(L, 2, "sim:receipt");
    char err[300] = "";
    int rc = store_begin(s->e->st);
    enum receipt_result res = rc == 0 ? receipt_accept(s->e, r, err, sizeof err) : RECEIPT_STORE_ERROR;
    cJSON_Delete(r);
    if (res == RECEIPT_STORED || res == RECEIPT_DUPLICATE) {
        if (store_commit(s->e->st) != 0)
            raise_store(L, s, "sim:receipt");
    } else {
        store_rollback(s->e->st);
        return luaL_error(L, "sim:receipt: %s", err);
    }
    run_due(L, s);
    lua_pushboolean(L, res == RECEIPT_STORED);
    return 1;
}

/* sim:callback(channel, body): a provider's own callback body, mapped by
 * the channel's receipt function, as POST /v1/receipts/{channel} does.
 * Returns how many receipts were stored; raises if the function fails or a
 * receipt is refused. */
static int m_callback(lua_State *L)
{
    struct sim *s = check_sim(L);
    const char *channel = luaL_checkstring(L, 2);
    size_t len;
    const char *body = luaL_checklstring(L, 3, &len);
    char err[600] = "";
    cJSON *list = receipt_map(s->e, channel, body, len, err, sizeof err);
    if (!list)
        return luaL_error(L, "sim:callback: %s", err);
    int stored = 0;
    const cJSON *r;
    if (store_begin(s->e->st) != 0) {
        cJSON_Delete(list);
        raise_store(L, s, "sim:callback");
    }
    cJSON_ArrayForEach(r, list) {
        enum receipt_result res = receipt_accept(s->e, r, err, sizeof err);
        if (res != RECEIPT_STORED && res != RECEIPT_DUPLICATE) {
            store_rollback(s->e->st);
            cJSON_Delete(list);
            return luaL_error(L, "sim:callback: %s", err);
        }
        stored += res == RECEIPT_STORED;
    }
    cJSON_Delete(list);
    if (store_commit(s->e->st) != 0)
        raise_store(L, s, "sim:callback");
    run_due(L, s);
    lua_pushinteger(L, stored);
    return 1;
}

/* sim:close_task(id, {status = "done", outcome = "...", note = "..."}): what a
 * member of staff does through PATCH /v1/tasks/{id}. */
static int m_close_task(lua_State *L)
{
    struct sim *s = check_sim(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    const char *status = "done", *outcome = NULL, *note = NULL;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "status");
        lua_getfield(L, 3, "outcome");
        lua_getfield(L, 3, "note");
        status = lua_isnil(L, -3) ? "done" : luaL_checkstring(L, -3);
        outcome = luaL_optstring(L, -2, NULL);
        note = luaL_optstring(L, -1, NULL);
    }
    char err[300] = "";
    if (store_begin(s->e->st) != 0)
        raise_store(L, s, "sim:close_task");
    enum task_close_result r = task_close(s->e, id, status, outcome, note, err, sizeof err);
    if (r != TASK_CLOSED_NOW) {
        store_rollback(s->e->st);
        return luaL_error(L, "sim:close_task: %s", err);
    }
    if (store_commit(s->e->st) != 0)
        raise_store(L, s, "sim:close_task");
    run_due(L, s);
    return 0;
}

/* sim:report([journey]) → the status report (GET /v1/journeys), or one
 * journey's part of it (GET /v1/journeys/{name}; nil for none). */
static int m_report(lua_State *L)
{
    struct sim *s = check_sim(L);
    cJSON *r = lua_isnoneornil(L, 2) ? status_report(s->e) : status_journey(s->e, luaL_checkstring(L, 2));
    if (!r)
        raise_store(L, s, "sim:report");
    if (cJSON_IsNull(r))
        lua_pushnil(L);
    else
        json_push(L, r);
    cJSON_Delete(r);
    return 1;
}

/* sim:events{ev, ev, ...}: all accepted in one transaction (or none: an
 * invalid one raises naming its position), then processed. For tests that
 * load thousands of orders. */
static int m_events(lua_State *L)
{
    struct sim *s = check_sim(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    if (store_begin(s->e->st) != 0)
        raise_store(L, s, "sim:events");
    char err[400] = "";
    lua_Integer i;
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        char why[300];
        cJSON *ev = json_from_lua(L, -1, why, sizeof why);
        lua_pop(L, 1);
        struct event_result res;
        int rc = ev ? event_accept(s->e, ev, &res, why, sizeof why) : -1;
        cJSON_Delete(ev);
        if (rc != 0) {
            snprintf(err, sizeof err, "sim:events: event %lld: %s", (long long)i, why);
            break;
        }
    }
    if (err[0]) {
        store_rollback(s->e->st);
        return luaL_error(L, "%s", err);
    }
    if (store_commit(s->e->st) != 0)
        raise_store(L, s, "sim:events");
    return run_due(L, s);
}

static int m_advance(lua_State *L)
{
    struct sim *s = check_sim(L);
    lua_Number d = luaL_checknumber(L, 2);
    luaL_argcheck(L, d >= 0, 2, "the clock only moves forward");
    if (engine_advance(s->e, (tend_time)d) != 0)
        raise_store(L, s, "sim:advance");
    sandbox_set_clock(s->test_sb, s->clock);
    return 0;
}

static int m_now(lua_State *L)
{
    struct sim *s = check_sim(L);
    lua_pushinteger(L, engine_now(s->e));
    return 1;
}

/* Adds "AND key = ?" when the filter table at t gives that key. */
struct filter_sql {
    strbuf sql;
    const char *values[8];
    int n;
};

static void filter_by(lua_State *L, struct filter_sql *f, int t, const char *key)
{
    if (!lua_istable(L, t) || lua_getfield(L, t, key) == LUA_TNIL) {
        if (lua_istable(L, t))
            lua_pop(L, 1);
        return;
    }
    const char *v = lua_tostring(L, -1);
    if (!v)
        luaL_error(L, "filter '%s' must be a string", key);
    if (strcmp(v, "*") != 0) {
        strbuf_printf(&f->sql, " AND %s = ?", key);
        f->values[f->n++] = v;   /* kept alive by the filter table */
    }
    lua_pop(L, 1);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, store_stmt *st, int col)
{
    if (store_col_type(st, col) == STORE_NULL)
        return;
    lua_pushinteger(L, store_col_int(st, col));
    lua_setfield(L, -2, k);
}

/* Prepares `select` (ending in WHERE 1) narrowed by the filter table at
 * index 2: one "AND key = ?" per key given, in id order. The caller
 * finalizes the statement. */
static store_stmt *filtered(lua_State *L, struct sim *s, const char *select, const char *const *keys,
                            const char *what)
{
    struct filter_sql f = {0};
    strbuf_init(&f.sql);
    strbuf_puts(&f.sql, select);
    for (const char *const *k = keys; *k; k++)
        filter_by(L, &f, 2, *k);
    strbuf_puts(&f.sql, " ORDER BY id");
    store_stmt *st = store_prepare(s->e->st, f.sql.s);
    strbuf_free(&f.sql);
    if (!st)
        raise_store(L, s, what);
    for (int i = 0; i < f.n; i++)
        store_bind_text(st, i + 1, f.values[i], -1);
    return st;
}

/* Pushes the outbox rows `select` (narrowed by the filter at index 2)
 * gives, in the order they were queued. */
static int push_messages(lua_State *L, struct sim *s, const char *select, const char *what)
{
    static const char *const keys[] = {"channel", "customer", "template", "status", "journey", "category", NULL};
    store_stmt *st = filtered(L, s, select, keys, what);
    lua_newtable(L);
    int n = 0;
    while (store_step(st) == STORE_ROW) {
        lua_createtable(L, 0, 12);
        set_int(L, "id", st, 0);
        set_str(L, "channel", store_col_text(st, 1));
        set_str(L, "customer", store_col_text(st, 2));
        set_str(L, "template", store_col_text(st, 3));
        cJSON *body = cJSON_Parse(store_col_text(st, 4));
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(body, "text");
        const cJSON *subject = cJSON_GetObjectItemCaseSensitive(body, "subject");
        set_str(L, "body", cJSON_IsString(text) ? text->valuestring : NULL);
        set_str(L, "subject", cJSON_IsString(subject) ? subject->valuestring : NULL);
        cJSON_Delete(body);
        set_str(L, "status", store_col_text(st, 5));
        set_int(L, "at", st, 6);
        set_str(L, "category", store_col_text(st, 7));
        set_str(L, "journey", store_col_text(st, 8));
        set_str(L, "error", store_col_text(st, 9));
        lua_pushnumber(L, store_col_double(st, 10));
        lua_setfield(L, -2, "cost");
        set_int(L, "segments", st, 11);
        set_int(L, "attempts", st, 12);
        set_str(L, "key", store_col_text(st, 13));
        lua_rawseti(L, -2, ++n);
    }
    store_finalize(st);
    return 1;
}

#define MESSAGE_COLUMNS "SELECT id, channel, customer, template, body, status, COALESCE(sent_at, due_at)," \
                        " category, journey, last_error, cost, segments, attempts, idem_key FROM outbox"

/* sim:messages{channel=, customer=, template=, status=, journey=,
 * category=} → every outbox row (queued, deferred, capped, suppressed,
 * failed, sent), in the order they were queued. */
static int m_messages(lua_State *L)
{
    struct sim *s = check_sim(L);
    return push_messages(L, s, MESSAGE_COLUMNS " WHERE 1", "sim:messages");
}

/* sim:sent{...} → the messages that left (status "sent"): what a customer
 * received. Asking it for another status is a mistake worth naming. */
static int m_sent(lua_State *L)
{
    struct sim *s = check_sim(L);
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "status");
        const char *status = lua_tostring(L, -1);
        if (!lua_isnil(L, -1) && (!status || strcmp(status, "sent") != 0))
            return luaL_error(L, "sim:sent lists sent messages only; use sim:messages{status = \"%s\"}",
                              status ? status : "...");
        lua_pop(L, 1);
    }
    return push_messages(L, s, MESSAGE_COLUMNS " WHERE status = 'sent'", "sim:sent");
}

/* sim:tasks{customer=, journey=, assignee=, status=} → tasks. */
static int m_tasks(lua_State *L)
{
    struct sim *s = check_sim(L);
    static const char *const keys[] = {"customer", "journey", "assignee", "status", "kind", NULL};
    store_stmt *st = filtered(L, s, "SELECT id, customer, journey, assignee, note, status, created_at, kind,"
                                    " outcome, due_at, done_at FROM tasks WHERE 1", keys, "sim:tasks");
    lua_newtable(L);
    int n = 0;
    while (store_step(st) == STORE_ROW) {
        lua_createtable(L, 0, 7);
        set_int(L, "id", st, 0);
        set_str(L, "customer", store_col_text(st, 1));
        set_str(L, "journey", store_col_text(st, 2));
        set_str(L, "assignee", store_col_text(st, 3));
        set_str(L, "note", store_col_text(st, 4));
        set_str(L, "status", store_col_text(st, 5));
        set_int(L, "at", st, 6);
        set_str(L, "kind", store_col_text(st, 7));
        set_str(L, "outcome", store_col_text(st, 8));
        set_int(L, "due_at", st, 9);
        set_int(L, "done_at", st, 10);
        lua_rawseti(L, -2, ++n);
    }
    store_finalize(st);
    return 1;
}

/* sim:instances{journey=, customer=, state=} → instances with their state
 * and step (where each waits: "wait 2592000 (month_gift.lua:12)"). */
static int m_instances(lua_State *L)
{
    struct sim *s = check_sim(L);
    static const char *const keys[] = {"journey", "customer", "state", NULL};
    store_stmt *st = filtered(L, s, "SELECT id, journey, customer, state, label, step, error, converted_at,"
                                    " holdout, branch, version, started_at, ended_at, wake_at FROM instances"
                                    " WHERE 1", keys, "sim:instances");
    lua_newtable(L);
    int n = 0;
    while (store_step(st) == STORE_ROW) {
        lua_createtable(L, 0, 14);
        set_int(L, "id", st, 0);
        set_str(L, "journey", store_col_text(st, 1));
        set_str(L, "customer", store_col_text(st, 2));
        set_str(L, "state", store_col_text(st, 3));
        set_str(L, "step", store_col_text(st, 4));
        set_int(L, "steps", st, 5);
        set_str(L, "error", store_col_text(st, 6));
        set_int(L, "converted_at", st, 7);
        if (store_col_type(st, 8) != STORE_NULL) {
            lua_pushboolean(L, store_col_int(st, 8) != 0);
            lua_setfield(L, -2, "holdout");
        }
        set_str(L, "branch", store_col_text(st, 9));
        set_str(L, "version", store_col_text(st, 10));
        set_int(L, "started_at", st, 11);
        set_int(L, "ended_at", st, 12);
        set_int(L, "wake_at", st, 13);
        lua_rawseti(L, -2, ++n);
    }
    store_finalize(st);
    return 1;
}

/* sim:stub_http(url, response): what http_get(url) answers in this sim;
 * response is a body string or {status =, body =, json =}. */
static int m_stub_http(lua_State *L)
{
    struct sim *s = check_sim(L);
    const char *url = luaL_checkstring(L, 2);
    luaL_checkany(L, 3);
    cJSON *r = arg_json(L, 3, "sim:stub_http");
    cJSON_DeleteItemFromObjectCaseSensitive(s->e->http_stubs, url);
    cJSON_AddItemToObject(s->e->http_stubs, url, r);
    return 0;
}

/* sim:restart(): everything in memory goes; the store stays. */
static int m_restart(lua_State *L)
{
    struct sim *s = check_sim(L);
    cJSON *stubs = s->e->http_stubs;   /* the outside world survives */
    s->e->http_stubs = NULL;
    engine_close(s->e);
    s->e = NULL;
    if (open_engine(L, s) != 0) {
        cJSON_Delete(stubs);
        return lua_error(L);
    }
    cJSON_Delete(s->e->http_stubs);
    s->e->http_stubs = stubs;
    return run_due(L, s);
}

static void read_scripts(lua_State *L, struct sim *s, int idx);

/* sim:deploy{scripts = {...}, source = "..."}: a new release of the scripts,
 * as a restart with changed files. Instances already waiting stay on the
 * version they began with (or move, if the new version's migrate says so). */
static int m_deploy(lua_State *L)
{
    struct sim *s = check_sim(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    forget_scripts(s);
    read_scripts(L, s, 2);
    if (lua_getfield(L, 2, "source") != LUA_TNIL)
        s->source = xstrdup(luaL_checkstring(L, -1));
    lua_pop(L, 1);
    lua_settop(L, 1);
    return m_restart(L);
}

/* Compiles a filter (a table from the test, or a segment name) in the
 * engine's state. */
static segment_query *compile_filter(lua_State *L, struct sim *s, int idx)
{
    lua_State *EL = sandbox_state(s->e->sb);
    char err[300];
    int top = lua_gettop(EL);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (!catalog_push_segment(s->e, lua_tostring(L, idx)))
            luaL_error(L, "no segment named '%s'", lua_tostring(L, idx));
        lua_getfield(EL, -1, "where");
        if (lua_isfunction(EL, -1) && sandbox_pcall(s->e->sb, EL, 0, 1) != LUA_OK) {
            lua_pushstring(L, lua_tostring(EL, -1));
            lua_settop(EL, top);
            lua_error(L);
        }
    } else if (helpers_copy(L, idx, EL, err, sizeof err) != 0) {
        luaL_error(L, "%s", err);
    }
    segment_query *q = segment_compile(EL, -1, engine_now(s->e), err, sizeof err);
    lua_settop(EL, top);
    if (!q)
        luaL_error(L, "%s", err);
    return q;
}

static void push_id(const char *id, void *ud)
{
    lua_State *L = ud;
    lua_pushstring(L, id);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* sim:segment(filter or name) → the matching customer ids, in id order,
 * and the count segment_count() gives (the same number, by its own query). */
static int m_segment(lua_State *L)
{
    struct sim *s = check_sim(L);
    segment_query *q = compile_filter(L, s, 2);
    lua_newtable(L);
    char after[CUSTOMER_ID_MAX + 1] = "";
    for (;;) {
        int before = (int)lua_rawlen(L, -1);
        int got = segment_page(s->e->st, q, after, 1000, push_id, L);
        if (got < 0) {
            segment_query_free(q);
            raise_store(L, s, "sim:segment");
        }
        if (got == 0)
            break;
        lua_rawgeti(L, -1, before + got);
        snprintf(after, sizeof after, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        if (got < 1000)
            break;
    }
    int64_t n = segment_count(s->e->st, q);
    segment_query_free(q);
    if (n < 0)
        raise_store(L, s, "sim:segment");
    lua_pushinteger(L, n);
    return 2;
}

/* sim:globals() → the names a journey script of this sim sees, sorted
 * (what editor definitions and tend check must know about). Only Lua
 * strings are held while the test state allocates. */
static int m_globals(lua_State *L)
{
    struct sim *s = check_sim(L);
    lua_State *EL = sandbox_state(s->e->sb);
    int top = lua_gettop(EL);
    sandbox_push_globals(s->e->sb);
    lua_newtable(L);
    int n = 0;
    lua_pushnil(EL);
    while (lua_next(EL, top + 1)) {
        lua_pop(EL, 1);
        if (lua_type(EL, -1) == LUA_TSTRING) {
            lua_pushstring(L, lua_tostring(EL, -1));
            lua_rawseti(L, -2, ++n);
        }
    }
    lua_settop(EL, top);
    /* insertion sort in place: a few dozen names */
    for (int i = 2; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int j = i - 1;
        for (; j >= 1; j--) {
            lua_rawgeti(L, -2, j);
            if (strcmp(lua_tostring(L, -1), lua_tostring(L, -2)) <= 0) {
                lua_pop(L, 1);
                break;
            }
            lua_rawseti(L, -3, j + 1);
        }
        lua_rawseti(L, -2, j + 1);
    }
    return 1;
}

static int m_log(lua_State *L)
{
    struct sim *s = luaL_checkudata(L, 1, SIM_MT);
    lua_pushstring(L, s->log.s ? s->log.s : "");
    return 1;
}

static int m_close(lua_State *L)
{
    return sim_gc(L);
}

/* --- creation ------------------------------------------------------------ */

/* A script path as given, or, when relative, taken from the directory of
 * the test file. */
static char *script_path(const struct sim *s, const char *path)
{
    if (path[0] == '/' || strcmp(s->test_dir, ".") == 0)
        return xstrdup(path);
    return util_path_join(s->test_dir, path);
}

static void read_scripts(lua_State *L, struct sim *s, int idx)
{
    if (lua_getfield(L, idx, "scripts") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
        s->scripts = xmalloc(sizeof *s->scripts);
        s->scripts[s->nscripts++] = script_path(s, lua_tostring(L, -1));
    } else {
        luaL_argexpected(L, lua_istable(L, -1), 1, "scripts = {paths}");
        int n = (int)lua_rawlen(L, -1);
        s->scripts = xcalloc((size_t)(n ? n : 1), sizeof *s->scripts);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            if (!lua_isstring(L, -1))
                luaL_error(L, "t.sim: scripts[%d] must be a path", i);
            s->scripts[s->nscripts++] = script_path(s, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Every sim of the test file, for a failing case's report: a table in
 * the test state's registry with the sims as weak keys. */
static const char SIMS_KEY = 0;

static int push_sims(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SIMS_KEY) == LUA_TTABLE)
        return lua_gettop(L);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SIMS_KEY);
    return lua_gettop(L);
}

static void remember(lua_State *L, int sim)
{
    int sims = push_sims(L);
    lua_pushvalue(L, sim);
    lua_pushboolean(L, 1);
    lua_rawset(L, sims);
    lua_pop(L, 1);
}

/* Marks where a sim stands now: the report of the case that begins shows
 * only what fails after this. */
static void mark(struct sim *s)
{
    free(s->failed_before);
    s->failed_before = NULL;
    s->nfailed_before = 0;
    s->log_from = s->log.len;
    store_stmt *st = store_prepare(s->e->st, "SELECT id FROM instances WHERE state = 'failed'");
    while (st && store_step(st) == STORE_ROW) {
        s->failed_before = xrealloc(s->failed_before, (s->nfailed_before + 1) * sizeof *s->failed_before);
        s->failed_before[s->nfailed_before++] = store_col_int(st, 0);
    }
    store_finalize(st);
}

void sim_case_begin(lua_State *L)
{
    int sims = push_sims(L);
    lua_pushnil(L);
    while (lua_next(L, sims)) {
        lua_pop(L, 1);
        struct sim *s = luaL_testudata(L, -1, SIM_MT);
        if (s && s->e)
            mark(s);
    }
    lua_pop(L, 1);
}

static int failed_before(const struct sim *s, int64_t id)
{
    for (size_t i = 0; i < s->nfailed_before; i++)
        if (s->failed_before[i] == id)
            return 1;
    return 0;
}

static void describe(struct sim *s, strbuf *instances, strbuf *log, const char *indent)
{
    store_stmt *st = store_prepare(s->e->st, "SELECT journey, customer, error, id FROM instances"
                                             " WHERE state = 'failed' ORDER BY id");
    int shown = 0;
    while (st && shown < 20 && store_step(st) == STORE_ROW) {
        if (failed_before(s, store_col_int(st, 3)))
            continue;
        shown++;
        const char *fields[] = {"journey", "customer", "error"};
        for (int i = 0; i < 3; i++) {
            const char *v = store_col_text(st, i);
            if (!v)
                continue;
            /* the error's first line names file:line; its traceback is the engine's */
            char *text = xstrndup(v, strcspn(v, "\n"));
            strbuf_printf(instances, "%s%s %s: ", indent, i == 0 ? "  -" : "   ", fields[i]);
            strbuf_yaml_quoted(instances, text, strlen(text));
            strbuf_putc(instances, '\n');
            free(text);
        }
    }
    store_finalize(st);
    int lines = 0;
    const char *from = s->log.s && s->log_from <= s->log.len ? s->log.s + s->log_from : NULL;
    for (const char *p = from; p && *p && lines < 40;) {
        size_t n = strcspn(p, "\n");
        if (!strncmp(p, "warn: ", 6) || !strncmp(p, "error: ", 7)) {
            strbuf_printf(log, "%s  ", indent);
            strbuf_add(log, p, n);
            strbuf_putc(log, '\n');
            lines++;
        }
        p += n + (p[n] == '\n');
    }
}

void sim_diagnose(lua_State *L, strbuf *yaml, const char *indent)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SIMS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    strbuf instances, log;
    strbuf_init(&instances);
    strbuf_init(&log);
    int sims = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, sims)) {
        lua_pop(L, 1);
        struct sim *s = luaL_testudata(L, -1, SIM_MT);
        if (s && s->e)
            describe(s, &instances, &log, indent);
    }
    lua_pop(L, 1);
    if (instances.len)
        strbuf_printf(yaml, "%sfailed_instances:\n%s", indent, instances.s);
    if (log.len)
        strbuf_printf(yaml, "%slog: |\n%s", indent, log.s);
    strbuf_free(&instances);
    strbuf_free(&log);
}

static int sim_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const known[] = {"scripts", "source", "start", "config", NULL};
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (const char *const *p = known; k && *p; p++)
            ok |= strcmp(*p, k) == 0;
        if (!ok)
            return luaL_error(L, "t.sim: unknown option '%s' (scripts, source, start, config)", k ? k : "?");
    }
    struct sim *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    strbuf_init(&s->log);
    luaL_setmetatable(L, SIM_MT);
    int self = lua_gettop(L);
    s->test_sb = sandbox_of(L);
    s->test_clock = sandbox_clock(s->test_sb);
    s->test_dir = xstrdup(lua_tostring(L, lua_upvalueindex(1)));
    s->cov = lua_touserdata(L, lua_upvalueindex(2));
    remember(L, self);
    tend_time start = SIM_DEFAULT_START;
    if (lua_getfield(L, 1, "start") != LUA_TNIL)
        start = helpers_check_time(L, lua_gettop(L));
    lua_pop(L, 1);
    s->clock = clock_new_virtual(start);
    read_scripts(L, s, 1);
    if (lua_getfield(L, 1, "source") != LUA_TNIL)
        s->source = xstrdup(luaL_checkstring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "config") != LUA_TNIL) {
        char err[300];
        s->config = json_from_lua(L, -1, err, sizeof err);
        if (!s->config)
            return luaL_error(L, "t.sim config (data only: channels are captured in a sim): %s", err);
    }
    lua_pop(L, 1);
    const char *tmp = getenv("TMPDIR");
    char *path = xasprintf("%s/tend-sim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return luaL_error(L, "t.sim: cannot create a temporary store");
    }
    close(fd);
    s->db_path = path;
    if (open_engine(L, s) != 0)
        return lua_error(L);
    sandbox_set_clock(s->test_sb, s->clock);
    lua_settop(L, self);
    run_due(L, s);
    return 1;
}

void sim_register(sandbox *sb, const char *test_dir, coverage *cov)
{
    lua_State *L = sandbox_state(sb);
    static const luaL_Reg methods[] = {
        {"customer", m_customer}, {"event", m_event}, {"advance", m_advance}, {"now", m_now},
        {"receipt", m_receipt}, {"callback", m_callback}, {"close_task", m_close_task}, {"report", m_report},
        {"sent", m_sent}, {"messages", m_messages}, {"tasks", m_tasks}, {"instances", m_instances}, {"stub_http", m_stub_http},
        {"events", m_events}, {"product", m_product},   /* branch orders */
        {"restart", m_restart}, {"deploy", m_deploy}, {"segment", m_segment}, {"log", m_log}, {"globals", m_globals},
        {"close", m_close},
        {NULL, NULL}};
    luaL_newmetatable(L, SIM_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sim_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "sim");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    lua_pushstring(L, test_dir ? test_dir : ".");
    lua_pushlightuserdata(L, cov);
    lua_pushcclosure(L, sim_new, 2);
    sandbox_set_global(sb, "__tend_sim", 1);
}
