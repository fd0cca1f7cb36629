/* customer_lua — the customer handle `c` and customers(segment).
 *
 * A handle is a small userdata holding the customer id; its fields are read
 * from the store on first use and kept in its user value. Inside a journey's
 * run every read is a recorded step (the first read of each field between
 * two waits), so a replay sees what the first run saw even if the row has
 * changed since; c:tag, c:untag and c:set are steps too. Outside a run
 * (schedules, when(), audience()) they act on the store directly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "customer.h"
#include "dates.h"
#include "helpers.h"
#include "json.h"
#include "orderline.h"
#include "product.h"
#include "segment.h"
#include "step.h"
#include "util.h"
#include "validate.h"

#define HANDLE_MT "tend.customer"
#define CURSOR_MT "tend.customers"
#define PAGE 256

struct handle {
    char id[CUSTOMER_ID_MAX + 1];
};

static engine *engine_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

const char *customer_handle_id(lua_State *L, int idx)
{
    struct handle *h = luaL_testudata(L, idx, HANDLE_MT);
    if (h)
        return h->id;
    /* A plain id works wherever a handle does: start("j", "c1"). */
    return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
}

void customer_push_handle(engine *e, lua_State *L, const char *id)
{
    (void)e;
    struct handle *h = lua_newuserdatauv(L, sizeof *h, 1);
    util_concat(h->id, sizeof h->id, id, NULL);   /* every wake makes one: no printf */
    luaL_setmetatable(L, HANDLE_MT);
}

/* Pushes field k of the handle at idx, from its cached row. */
static void push_field(engine *e, lua_State *L, int idx, const char *k)
{
    struct handle *h = lua_touserdata(L, idx);
    if (lua_getiuservalue(L, idx, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        if (step_ctx(e))
            step_ctx(e)->row_cached = 1;   /* the row would be stale in a run kept to the next wake */
        if (!customer_push(e, L, h->id)) {   /* no such customer: every field nil */
            lua_pop(L, 1);
            lua_newtable(L);
        }
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, idx, 1);
    }
    lua_getfield(L, -1, k);
    lua_remove(L, -2);
}

static void forget_row(lua_State *L, int idx)
{
    lua_pushnil(L);
    lua_setiuservalue(L, idx, 1);
}

/* Pushes what live(e, L, ud) pushes, as a recorded read inside a run: the
 * first read of `key` between two waits is a step ("read", key) that a
 * replay answers from the history; later ones come from the run's cache.
 * Outside a run it reads the store directly. `key` must be a Lua string
 * (step_take may raise). */
typedef void (*live_read_fn)(engine *e, lua_State *L, void *ud);

static void recorded_read(engine *e, lua_State *L, const char *key, live_read_fn live, void *ud)
{
    struct run_ctx *ctx = step_ctx(e);
    if (!ctx || ctx->no_steps) {
        live(e, L, ud);
        return;
    }
    const cJSON *seen = ctx->reads ? cJSON_GetObjectItemCaseSensitive(ctx->reads, key) : NULL;
    if (seen) {
        json_push(L, seen);
        return;
    }
    uint32_t hash = step_hash(key);
    if (step_take(L, ctx, "read", key, hash, NULL) != STEP_REPLAY) {
        live(e, L, ud);
        step_record(L, ctx, "read", key, hash, lua_gettop(L));
    }
    char err[64];
    cJSON *v = json_from_lua(L, -1, err, sizeof err);
    if (!ctx->reads)
        ctx->reads = cJSON_CreateObject();
    cJSON_AddItemToObject(ctx->reads, key, v ? v : cJSON_CreateNull());
}

struct field_read {
    int idx;
    const char *k;
};

static void live_field(engine *e, lua_State *L, void *ud)
{
    struct field_read *r = ud;
    push_field(e, L, r->idx, r->k);
}

static int handle_index(lua_State *L)
{
    engine *e = engine_of(L);
    struct handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "id") == 0) {
        lua_pushstring(L, h->id);
        return 1;
    }
    if (lua_getfield(L, lua_upvalueindex(2), k) != LUA_TNIL)   /* a method */
        return 1;
    lua_pop(L, 1);
    const char *key = lua_pushfstring(L, "%s.%s", h->id, k);
    struct field_read r = {1, k};
    recorded_read(e, L, key, live_field, &r);
    return 1;
}

static int handle_newindex(lua_State *L)
{
    return luaL_error(L, "customer fields are read-only here; use c:set{%s = ...}",
                      lua_tostring(L, 2) ? lua_tostring(L, 2) : "field");
}

static int handle_tostring(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    lua_pushfstring(L, "customer %s", h->id);
    return 1;
}

static int handle_eq(lua_State *L)
{
    struct handle *a = luaL_testudata(L, 1, HANDLE_MT), *b = luaL_testudata(L, 2, HANDLE_MT);
    lua_pushboolean(L, a && b && strcmp(a->id, b->id) == 0);
    return 1;
}

/* c:tag(t) / c:untag(t) / c:set{...}: a step inside a run, direct outside. */
static int change(lua_State *L, const char *kind, const char *desc_arg, const char *hashed,
                  int (*act)(engine *e, lua_State *L, const char *id, char *err, size_t n))
{
    engine *e = engine_of(L);
    sandbox_check_live(L);   /* a tripped script changes nothing */
    struct handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    struct run_ctx *ctx = step_ctx(e);
    char err[300];
    if (ctx) {
        uint32_t hash = step_hash_pair(h->id, hashed);
        char desc[160];
        util_concat(desc, sizeof desc, h->id, ", ", desc_arg, NULL);
        if (step_take(L, ctx, kind, desc, hash, NULL) == STEP_REPLAY) {
            lua_pop(L, 1);
        } else {
            if (act(e, L, h->id, err, sizeof err) != 0)
                return luaL_error(L, "c:%s: %s", kind, err);
            lua_pushboolean(L, 1);
            step_record(L, ctx, kind, desc, hash, lua_gettop(L));
            lua_pop(L, 1);
        }
        step_new_segment(ctx);   /* later reads must see the change */
    } else if (act(e, L, h->id, err, sizeof err) != 0) {
        return luaL_error(L, "c:%s: %s", kind, err);
    }
    forget_row(L, 1);
    lua_settop(L, 1);
    return 1;
}

static int act_tag(engine *e, lua_State *L, const char *id, char *err, size_t n)
{
    if (customer_tag(e, id, lua_tostring(L, 2), 1) != 0) {
        snprintf(err, n, "store: %s", store_errmsg(e->st));
        return -1;
    }
    return 0;
}

static int act_untag(engine *e, lua_State *L, const char *id, char *err, size_t n)
{
    if (customer_tag(e, id, lua_tostring(L, 2), 0) != 0) {
        snprintf(err, n, "store: %s", store_errmsg(e->st));
        return -1;
    }
    return 0;
}

static int act_set(engine *e, lua_State *L, const char *id, char *err, size_t n)
{
    cJSON *changes = json_from_lua(L, 2, err, n);
    if (!changes)
        return -1;
    int rc = customer_set(e, id, changes, err, n);
    cJSON_Delete(changes);
    if (rc == 0 && dates_customer_changed(e, id) != 0) {
        snprintf(err, n, "store: %s", store_errmsg(e->st));
        rc = -1;
    }
    return rc;
}

static int m_tag(lua_State *L)
{
    size_t n;
    const char *t = luaL_checklstring(L, 2, &n);
    luaL_argcheck(L, *t, 2, "a tag must not be empty");
    char why[160];
    if (validate_text(t, n, VALIDATE_SINGLE_LINE, why, sizeof why) != 0)
        return luaL_argerror(L, 2, why);
    return change(L, "tag", t, t, act_tag);
}

static int m_untag(lua_State *L)
{
    const char *t = luaL_checkstring(L, 2);
    return change(L, "untag", t, t, act_untag);
}

static int m_set(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    char err[200];
    /* a garbage-collected string: change() raises when the store refuses
     * the fields, and a malloc'd copy would leak then */
    const char *text = json_push_input(L, 2, err, sizeof err);
    if (!text)
        return luaL_argerror(L, 2, err);
    return change(L, "set", text, text, act_set);
}

/* --- customers(segment or filter) -------------------------------------- */

struct cursor {
    segment_query *q;
    char after[CUSTOMER_ID_MAX + 1];
    char **ids;
    int n, next, done;
    char *where_sql;    /* for the step hash inside a run */
};

static void cursor_clear_page(struct cursor *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->ids[i]);
    c->n = c->next = 0;
}

static int cursor_gc(lua_State *L)
{
    struct cursor *c = luaL_checkudata(L, 1, CURSOR_MT);
    cursor_clear_page(c);
    free(c->ids);
    c->ids = NULL;
    segment_query_free(c->q);
    c->q = NULL;
    free(c->where_sql);
    c->where_sql = NULL;
    return 0;
}

static void collect(const char *id, void *ud)
{
    struct cursor *c = ud;
    c->ids[c->n++] = xstrdup(id);
}

/* Fetches the next page. Inside a run the page is a step, so a replay walks
 * the same customers even if the segment has changed since. */
static void next_page(engine *e, lua_State *L, struct cursor *c)
{
    cursor_clear_page(c);
    struct run_ctx *ctx = step_ctx(e);
    uint32_t hash = 0;
    if (ctx && !ctx->no_steps) {
        char *key = xasprintf("%s\x1f%s", c->where_sql, c->after);
        hash = step_hash(key);
        free(key);
        if (step_take(L, ctx, "customers", c->after, hash, NULL) == STEP_REPLAY) {
            int n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
            for (int i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                collect(lua_tostring(L, -1), c);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            c->done = n < PAGE;
            return;
        }
    }
    int got = segment_page(e->st, c->q, c->after, PAGE, collect, c);
    if (got < 0)
        luaL_error(L, "customers(): store: %s", store_errmsg(e->st));
    c->done = got < PAGE;
    if (ctx && !ctx->no_steps) {
        lua_createtable(L, c->n, 0);
        for (int i = 0; i < c->n; i++) {
            lua_pushstring(L, c->ids[i]);
            lua_rawseti(L, -2, i + 1);
        }
        step_record(L, ctx, "customers", c->after, hash, lua_gettop(L));
        lua_pop(L, 1);
    }
}

static int cursor_next(lua_State *L)
{
    engine *e = engine_of(L);
    struct cursor *c = luaL_checkudata(L, lua_upvalueindex(2), CURSOR_MT);
    if (!c->q)
        return 0;
    if (c->next >= c->n) {
        if (c->done)
            return 0;
        next_page(e, L, c);
        if (c->n == 0)
            return 0;
    }
    const char *id = c->ids[c->next++];
    snprintf(c->after, sizeof c->after, "%s", id);
    customer_push_handle(e, L, id);
    return 1;
}

/* Pushes the filter of a segment name or takes a filter table as is. */
static void push_filter(engine *e, lua_State *L, int arg)
{
    if (lua_type(L, arg) == LUA_TSTRING) {
        const char *name = lua_tostring(L, arg);
        /* The catalog pushes onto the engine's main thread; this call may
         * run in a journey's coroutine. */
        lua_State *main = sandbox_state(e->sb);
        int found = catalog_push_segment(e, name);
        if (main != L)
            lua_xmove(main, L, 1);
        if (!found)
            luaL_error(L, "customers(): no segment named '%s'", name);
        if (lua_getfield(L, -1, "where") == LUA_TFUNCTION) {
            if (lua_pcall(L, 0, 1, 0) != LUA_OK)
                lua_error(L);
            if (!lua_istable(L, -1))
                luaL_error(L, "segment '%s': where() must return a filter table", name);
        }
        lua_remove(L, -2);
        return;
    }
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_pushvalue(L, arg);
}

/* The query of argument 1 (a segment name or a filter), or raises naming
 * the function that was called. */
static segment_query *query_arg(lua_State *L, engine *e, const char *fn)
{
    push_filter(e, L, 1);
    char err[300];
    segment_query *q = segment_compile(L, -1, engine_now(e), err, sizeof err);
    lua_pop(L, 1);
    if (!q)
        luaL_error(L, "%s(): %s", fn, err);
    return q;
}

/* customers(segment_or_filter) → an iterator over matching customers. */
static int l_customers(lua_State *L)
{
    engine *e = engine_of(L);
    struct cursor *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, CURSOR_MT);
    c->q = query_arg(L, e, "customers");
    c->ids = xmalloc(PAGE * sizeof *c->ids);
    c->where_sql = xstrdup(segment_query_where(c->q));
    lua_pushlightuserdata(L, e);
    lua_insert(L, -2);
    lua_pushcclosure(L, cursor_next, 2);
    return 1;
}

/* at_local(c, "10:00") → the next time it is 10:00 for this customer, in
 * the customer's zone (the configured default when it has none). Inside a
 * run it is a recorded step: a replay gets the same instant even if the
 * customer has moved zones since. */
static int l_at_local(lua_State *L)
{
    engine *e = engine_of(L);
    const char *id = customer_handle_id(L, 1);
    luaL_argexpected(L, id, 1, "customer");
    const char *hhmm = luaL_checkstring(L, 2);
    int hh, mm;
    if (clock_parse_hhmm(hhmm, &hh, &mm) != 0)
        return luaL_argerror(L, 2, "a local time \"HH:MM\" expected");
    struct run_ctx *ctx = step_ctx(e);
    char key[200];
    snprintf(key, sizeof key, "%s\x1f%s", id, hhmm);
    uint32_t hash = 0;
    if (ctx && !ctx->no_steps) {
        hash = step_hash(key);
        if (step_take(L, ctx, "at_local", hhmm, hash, NULL) == STEP_REPLAY)
            return 1;
    }
    char *tz = customer_timezone(e, id);
    tend_time t;
    int rc = clock_next_local(ctx ? ctx->now : engine_now(e), tz, hh, mm, &t);
    free(tz);
    if (rc != 0)
        return luaL_error(L, "at_local: cannot compute %s in the customer's zone", hhmm);
    lua_pushinteger(L, t);
    if (ctx && !ctx->no_steps)
        step_record(L, ctx, "at_local", hhmm, hash, lua_gettop(L));
    return 1;
}

/* segment_count(segment_or_filter) → how many customers match. */
static int l_segment_count(lua_State *L)
{
    engine *e = engine_of(L);
    /* The query lives in a collected holder: step_take below may raise
     * (a divergence), and a raise must not leak it. */
    struct cursor *holder = lua_newuserdatauv(L, sizeof *holder, 0);
    memset(holder, 0, sizeof *holder);
    luaL_setmetatable(L, CURSOR_MT);
    holder->q = query_arg(L, e, "segment_count");
    /* Inside a run the count is a step: a replay branches as the first
     * run did, whatever the segment holds by then. */
    struct run_ctx *ctx = step_ctx(e);
    uint32_t hash = 0;
    if (ctx && !ctx->no_steps) {
        hash = step_hash(segment_query_where(holder->q));
        if (step_take(L, ctx, "segment_count", "", hash, NULL) == STEP_REPLAY)
            return 1;
    }
    int64_t n = segment_count(e->st, holder->q);
    if (n < 0)
        return luaL_error(L, "segment_count(): store: %s", store_errmsg(e->st));
    lua_pushinteger(L, n);
    if (ctx && !ctx->no_steps)
        step_record(L, ctx, "segment_count", "", hash, lua_gettop(L));
    return 1;
}

/* --- what was bought: c:bought, c:items, runs_out_at, product ----------- */

static tend_time read_now(engine *e)
{
    struct run_ctx *ctx = step_ctx(e);
    return ctx ? ctx->now : engine_now(e);
}

static void raise_store(lua_State *L, engine *e, const char *what)
{
    luaL_error(L, "%s: store: %s", what, store_errmsg(e->st));
}

struct bought_read {
    const char *id, *key;
    enum orderline_kind kind;
    lua_Integer within;
};

static void live_bought(engine *e, lua_State *L, void *ud)
{
    struct bought_read *r = ud;
    struct orderline_bought b;
    tend_time since = r->within > 0 ? read_now(e) - r->within : 0;
    if (orderline_bought(e->st, r->id, r->kind, r->key, since, &b) != 0)
        raise_store(L, e, "c:bought");
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, b.count);
    lua_setfield(L, -2, "count");
    lua_pushnumber(L, b.qty);
    lua_setfield(L, -2, "qty");
    if (b.count) {
        lua_pushinteger(L, b.last_at);
        lua_setfield(L, -2, "last_at");
    }
}

/* The sku or category of a spec table at arg (a string or a whole number). */
static const char *spec_key(lua_State *L, int arg, const char *k)
{
    int t = lua_getfield(L, arg, k);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t == LUA_TNUMBER && lua_isinteger(L, -1))
        lua_tostring(L, -1);   /* converted in place: the stack keeps it */
    else if (t != LUA_TSTRING || !lua_tostring(L, -1)[0])
        luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a non-empty string", k));
    return lua_tostring(L, -1);
}

/* c:bought{ sku = s | category = k, within = seconds } → count, last_at:
 * the orders that had it (in the window) and when it was last bought (nil
 * if never). */
static int m_bought(lua_State *L)
{
    engine *e = engine_of(L);
    struct handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    luaL_checktype(L, 2, LUA_TTABLE);
    struct bought_read r = {.id = h->id};
    const char *sku = spec_key(L, 2, "sku"), *cat = spec_key(L, 2, "category");
    if (!sku == !cat)
        return luaL_argerror(L, 2, "give sku = ... or category = ... (one of them)");
    r.kind = sku ? ORDERLINE_SKU : ORDERLINE_CATEGORY;
    r.key = sku ? sku : cat;
    if (lua_getfield(L, 2, "within") != LUA_TNIL) {
        int ok;
        r.within = lua_tointegerx(L, -1, &ok);
        if (!ok || r.within <= 0)
            return luaL_argerror(L, 2, "'within' must be whole seconds above 0 (days(30))");
    }
    const char *key = lua_pushfstring(L, "%s\x1f" "bought\x1f%s=%s\x1f%I", h->id, sku ? "sku" : "category",
                                      r.key, (LUAI_UACINT)r.within);
    recorded_read(e, L, key, live_bought, &r);
    lua_getfield(L, -1, "count");
    lua_getfield(L, -2, "last_at");
    return 2;
}

struct items_read {
    const char *id;
    tend_time since, before;
    int limit;
};

static void push_line(const struct orderline_line *l, void *ud)
{
    lua_State *L = ud;
    lua_createtable(L, 0, 7);
    lua_pushstring(L, l->order_id);
    lua_setfield(L, -2, "order");
    lua_pushstring(L, l->sku);
    lua_setfield(L, -2, "sku");
    if (l->category) {
        lua_pushstring(L, l->category);
        lua_setfield(L, -2, "category");
    }
    if (l->name) {
        lua_pushstring(L, l->name);
        lua_setfield(L, -2, "name");
    }
    lua_pushnumber(L, l->qty);
    lua_setfield(L, -2, "qty");
    if (l->has_price) {
        lua_pushnumber(L, l->price);
        lua_setfield(L, -2, "price");
    }
    lua_pushinteger(L, l->at);
    lua_setfield(L, -2, "at");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

static void live_items(engine *e, lua_State *L, void *ud)
{
    struct items_read *r = ud;
    lua_newtable(L);
    if (orderline_lines(e->st, r->id, r->since, r->before, r->limit, push_line, L) < 0)
        raise_store(L, e, "c:items");
}

/* c:items{ since = t | within = s, before = t, limit = n } → the order
 * lines bought in [since, before), oldest first (at most `limit`, 1000). */
static int m_items(lua_State *L)
{
    engine *e = engine_of(L);
    struct handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    struct items_read r = {.id = h->id, .before = INT64_MAX, .limit = 1000};
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "since") != LUA_TNIL)
            r.since = helpers_check_time(L, lua_gettop(L));
        if (lua_getfield(L, 2, "within") != LUA_TNIL) {
            int ok;
            lua_Integer w = lua_tointegerx(L, -1, &ok);
            if (!ok || w <= 0)
                return luaL_argerror(L, 2, "'within' must be whole seconds above 0");
            r.since = read_now(e) - w;
        }
        if (lua_getfield(L, 2, "before") != LUA_TNIL)
            r.before = helpers_check_time(L, lua_gettop(L));
        if (lua_getfield(L, 2, "limit") != LUA_TNIL) {
            int ok;
            lua_Integer n = lua_tointegerx(L, -1, &ok);
            if (!ok || n < 1 || n > 1000)
                return luaL_argerror(L, 2, "'limit' must be a whole number from 1 to 1000");
            r.limit = (int)n;
        }
    }
    const char *key = lua_pushfstring(L, "%s\x1f" "items\x1f%I\x1f%I\x1f%d", h->id, (LUAI_UACINT)r.since,
                                      (LUAI_UACINT)r.before, r.limit);
    recorded_read(e, L, key, live_items, &r);
    return 1;
}

struct sku_read {
    const char *id, *sku;
};

static void live_runs_out(engine *e, lua_State *L, void *ud)
{
    struct sku_read *r = ud;
    double usage;
    tend_time at;
    int known = product_usage_days(e->st, r->sku, &usage);
    if (known > 0)
        known = orderline_runs_out_at(e->st, r->id, r->sku, usage, &at);
    if (known < 0)
        raise_store(L, e, "runs_out_at");
    if (known)
        lua_pushinteger(L, at);
    else
        lua_pushnil(L);
}

/* runs_out_at(c, sku) → when the customer's supply of sku ends (see
 * orderline_runs_out_at), nil if the sku's usage_days or the customer's
 * purchases of it are unknown. */
static int l_runs_out_at(lua_State *L)
{
    engine *e = engine_of(L);
    const char *id = customer_handle_id(L, 1);
    luaL_argexpected(L, id, 1, "customer");
    struct sku_read r = {id, luaL_checkstring(L, 2)};
    const char *key = lua_pushfstring(L, "%s\x1f" "runs_out_at\x1f%s", id, r.sku);
    recorded_read(e, L, key, live_runs_out, &r);
    return 1;
}

static void live_product(engine *e, lua_State *L, void *ud)
{
    cJSON *p = product_json(e->st, ud);
    if (p)
        json_push(L, p);
    else
        lua_pushnil(L);
    cJSON_Delete(p);
}

/* product(sku) → the catalog row {sku, name, category, price, usage_days,
 * related = {...}}, or nil. A recorded read inside a run. */
static int l_product(lua_State *L)
{
    engine *e = engine_of(L);
    const char *sku = luaL_checkstring(L, 1);
    const char *key = lua_pushfstring(L, "product\x1f%s", sku);
    recorded_read(e, L, key, live_product, (void *)sku);
    return 1;
}

void customer_lua_register(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    luaL_newmetatable(L, HANDLE_MT);
    lua_newtable(L);   /* methods */
    static const luaL_Reg methods[] = {{"tag", m_tag}, {"untag", m_untag}, {"set", m_set},
                                            {"bought", m_bought}, {"items", m_items}, {NULL, NULL}};
    for (const luaL_Reg *m = methods; m->name; m++) {
        lua_pushlightuserdata(L, e);
        lua_pushcclosure(L, m->func, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pushlightuserdata(L, e);
    lua_insert(L, -2);
    lua_pushcclosure(L, handle_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, handle_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, handle_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, handle_eq);
    lua_setfield(L, -2, "__eq");
    lua_pushliteral(L, "customer");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    luaL_newmetatable(L, CURSOR_MT);
    lua_pushcfunction(L, cursor_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "customers");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    lua_pushlightuserdata(L, e);
    lua_pushcclosure(L, l_customers, 1);
    sandbox_set_global(e->sb, "customers", 0);
    lua_pushlightuserdata(L, e);
    lua_pushcclosure(L, l_segment_count, 1);
    sandbox_set_global(e->sb, "segment_count", 0);
    lua_pushlightuserdata(L, e);
    lua_pushcclosure(L, l_at_local, 1);
    sandbox_set_global(e->sb, "at_local", 0);
    static const luaL_Reg bought_fns[] = {{"runs_out_at", l_runs_out_at}, {"product", l_product}, {NULL, NULL}};
    for (const luaL_Reg *f = bought_fns; f->name; f++) {
        lua_pushlightuserdata(L, e);
        lua_pushcclosure(L, f->func, 1);
        sandbox_set_global(e->sb, f->name, 0);
    }
}
