/* helpers — durations, times and filter nodes (see helpers.h). */
#include <string.h>

#include <lauxlib.h>

#include "helpers.h"

static int has_metatable(lua_State *L, int idx, const char *name);

const char *helpers_host_metatable(lua_State *L, int idx)
{
    static const char *const mts[] = {HELPERS_FILTER_MT, HELPERS_TRIGGER_MT, HELPERS_AGO_MT};
    for (int i = 0; i < 3; i++)
        if (has_metatable(L, idx, mts[i]))
            return mts[i];
    return NULL;
}

static int has_metatable(lua_State *L, int idx, const char *name)
{
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, name);
    int yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

static const char RELATIVE_KEY = 0;

void helpers_set_relative(lua_State *L, int on)
{
    lua_pushboolean(L, on);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &RELATIVE_KEY);
}

int helpers_resolve_relative(lua_State *L, int idx, tend_time now, tend_time *out)
{
    if (!has_metatable(L, idx, HELPERS_AGO_MT))
        return 0;
    idx = lua_absindex(L, idx);
    lua_pushliteral(L, "ago");
    lua_rawget(L, idx);
    *out = now - (tend_time)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return 1;
}

static tend_time clock_of(lua_State *L);

tend_time helpers_check_time(lua_State *L, int arg)
{
    tend_time rel;
    if (helpers_resolve_relative(L, arg, clock_of(L), &rel))
        return rel;
    if (lua_type(L, arg) == LUA_TNUMBER)
        return (tend_time)luaL_checknumber(L, arg);
    const char *s = lua_tostring(L, arg);
    if (!s)
        luaL_argerror(L, arg, "time expected (epoch seconds or ISO-8601 with an offset)");
    tend_time t;
    char err[160];
    if (clock_parse_time(s, &t, err, sizeof err) != 0)
        luaL_argerror(L, arg, err);
    return t;
}

/* Durations stay integers when they can: 30 days is 2592000, not 2592000.0. */
static int push_seconds(lua_State *L, lua_Number per)
{
    if (lua_isinteger(L, 1)) {
        lua_pushinteger(L, lua_tointeger(L, 1) * (lua_Integer)per);
        return 1;
    }
    lua_Number v = luaL_checknumber(L, 1) * per;
    lua_Integer i;
    if (lua_numbertointeger(v, &i) && (lua_Number)i == v)
        lua_pushinteger(L, i);
    else
        lua_pushnumber(L, v);
    return 1;
}

static int h_days(lua_State *L) { return push_seconds(L, 86400); }
static int h_hours(lua_State *L) { return push_seconds(L, 3600); }
static int h_minutes(lua_State *L) { return push_seconds(L, 60); }

static tend_time clock_of(lua_State *L)
{
    const tclock *c = sandbox_clock(sandbox_of(L));
    return c ? clock_now(c) : 0;
}

static int h_now(lua_State *L)
{
    lua_pushinteger(L, clock_of(L));
    return 1;
}

static int h_ago(lua_State *L)
{
    lua_Integer s = (lua_Integer)luaL_checknumber(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RELATIVE_KEY);
    if (lua_toboolean(L, -1)) {
        lua_createtable(L, 0, 1);
        lua_pushinteger(L, s);
        lua_setfield(L, -2, "ago");
        luaL_setmetatable(L, HELPERS_AGO_MT);
        return 1;
    }
    lua_pushinteger(L, clock_of(L) - s);
    return 1;
}

static int h_log(lua_State *L)
{
    int n = lua_gettop(L);   /* before luaL_buffinit, which may push a box */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    char where[256];
    sandbox_log(sandbox_of(L), sandbox_where(L, 1, where, sizeof where), lua_tostring(L, -1));
    return 0;
}

/* --- filter nodes ------------------------------------------------------ */

static int new_node(lua_State *L, const char *op, int first, int last)
{
    lua_createtable(L, last - first + 1, 1);
    lua_pushstring(L, op);
    lua_setfield(L, -2, "op");
    for (int i = first; i <= last; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i - first + 1);
    }
    luaL_setmetatable(L, HELPERS_FILTER_MT);
    return 1;
}

static void check_comparable(lua_State *L, int arg)
{
    tend_time unused;
    int t = lua_type(L, arg);
    luaL_argexpected(L, t == LUA_TNUMBER || t == LUA_TSTRING ||
                     helpers_resolve_relative(L, arg, 0, &unused), arg, "number or string");
}

static int h_at_least(lua_State *L) { check_comparable(L, 1); return new_node(L, "at_least", 1, 1); }
static int h_at_most(lua_State *L) { check_comparable(L, 1); return new_node(L, "at_most", 1, 1); }

static int h_between(lua_State *L)
{
    check_comparable(L, 1);
    check_comparable(L, 2);
    return new_node(L, "between", 1, 2);
}

/* before/after take times; an ISO string is converted now, so a malformed one
 * fails at the line that wrote it rather than when the segment runs. */
static int time_node(lua_State *L, const char *op)
{
    tend_time unused;
    if (helpers_resolve_relative(L, 1, 0, &unused))
        return new_node(L, op, 1, 1);   /* stays relative until compiled */
    tend_time t = helpers_check_time(L, 1);
    lua_settop(L, 0);
    lua_pushinteger(L, t);
    return new_node(L, op, 1, 1);
}

static int h_before(lua_State *L) { return time_node(L, "before"); }
static int h_after(lua_State *L) { return time_node(L, "after"); }

/* one_of("a", "b") or one_of{"a", "b"} */
static int list_node(lua_State *L, const char *op)
{
    if (lua_gettop(L) == 1 && lua_istable(L, 1) && !helpers_is_filter(L, 1) &&
        !has_metatable(L, 1, HELPERS_AGO_MT)) {
        int n = (int)luaL_len(L, 1);
        luaL_checkstack(L, n, "too many values");
        for (int i = 1; i <= n; i++)
            lua_rawgeti(L, 1, i);
        lua_remove(L, 1);
    }
    int n = lua_gettop(L);
    luaL_argcheck(L, n > 0, 1, "at least one value expected");
    for (int i = 1; i <= n; i++)
        check_comparable(L, i);
    return new_node(L, op, 1, n);
}

static int h_one_of(lua_State *L) { return list_node(L, "one_of"); }
static int h_has(lua_State *L) { return list_node(L, "has"); }

static int h_not(lua_State *L)
{
    luaL_checkany(L, 1);
    return new_node(L, "not", 1, 1);
}

/* any{f1, f2} / all{f1, f2}: each fi a filter table or node. */
static int group_node(lua_State *L, const char *op)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    luaL_argcheck(L, n > 0, 1, "a list of filters expected");
    lua_createtable(L, n, 1);
    lua_pushstring(L, op);
    lua_setfield(L, -2, "op");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        if (!lua_istable(L, -1))
            return luaL_argerror(L, 1, lua_pushfstring(L, "item %d is not a filter table", i));
        lua_rawseti(L, -2, i);
    }
    luaL_setmetatable(L, HELPERS_FILTER_MT);
    return 1;
}

static int h_any(lua_State *L) { return group_node(L, "any"); }

/* bought{ sku = s | category = k, within = s, at_least = n }: a condition on
 * what was bought, for a filter's list and not_(...) (segment.c checks it). */
static int h_bought(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argcheck(L, !helpers_is_filter(L, 1), 1, "{ sku = ... | category = ..., within = s } expected");
    lua_settop(L, 1);
    return new_node(L, "bought", 1, 1);
}
static int h_all(lua_State *L) { return group_node(L, "all"); }

int helpers_is_filter(lua_State *L, int idx)
{
    return has_metatable(L, idx, HELPERS_FILTER_MT);
}

int helpers_is_trigger(lua_State *L, int idx)
{
    return has_metatable(L, idx, HELPERS_TRIGGER_MT);
}

/* anniversary("birthday", {at = "10:00", offset_days = -1, offset = -hours(1), late = hours(6)}) */
static int h_anniversary(lua_State *L)
{
    const char *field = luaL_checkstring(L, 1);
    int hh = 9, mm = 0;
    lua_Integer offset = 0, offset_days = 0, late = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "at") != 0 && strcmp(k, "offset") != 0 && strcmp(k, "offset_days") != 0 &&
                strcmp(k, "late") != 0)
                return luaL_argerror(L, 2, lua_pushfstring(L, "unknown option '%s' (at, offset_days, offset, "
                                                              "late)", k));
            lua_pop(L, 1);
        }
        int ok;
        if (lua_getfield(L, 2, "offset_days") != LUA_TNIL) {
            offset_days = lua_tointegerx(L, -1, &ok);
            if (!ok || offset_days < -366 || offset_days > 366)
                return luaL_argerror(L, 2, "'offset_days' must be a whole number of days (-366..366)");
        }
        if (lua_getfield(L, 2, "late") != LUA_TNIL) {
            late = lua_tointegerx(L, -1, &ok);
            if (!ok || late < 0)
                return luaL_argerror(L, 2, "'late' must be whole seconds, at least 0 (hours(n))");
        }
        lua_pop(L, 2);
        if (lua_getfield(L, 2, "at") != LUA_TNIL) {
            const char *at = lua_tostring(L, -1);
            if (!at || clock_parse_hhmm(at, &hh, &mm) != 0)
                return luaL_argerror(L, 2, "'at' must be a local time \"HH:MM\"");
        }
        if (lua_getfield(L, 2, "offset") != LUA_TNIL) {
            int ok;
            offset = lua_tointegerx(L, -1, &ok);
            if (!ok)
                return luaL_argerror(L, 2, "'offset' must be whole seconds (days(n), hours(n))");
        }
        lua_pop(L, 2);
    }
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "anniversary");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
    lua_pushinteger(L, hh * 60 + mm);
    lua_setfield(L, -2, "minute_of_day");
    lua_pushinteger(L, offset);
    lua_setfield(L, -2, "offset");
    lua_pushinteger(L, offset_days);
    lua_setfield(L, -2, "offset_days");
    lua_pushinteger(L, late);
    lua_setfield(L, -2, "late");
    luaL_setmetatable(L, HELPERS_TRIGGER_MT);
    return 1;
}

static int copy_value(lua_State *from, int idx, lua_State *to, int depth, char *err, size_t errlen)
{
    if (depth > 32) {
        snprintf(err, errlen, "value nested too deeply (a cycle?)");
        return -1;
    }
    idx = lua_absindex(from, idx);
    lua_checkstack(to, 4);
    lua_checkstack(from, 4);
    switch (lua_type(from, idx)) {
    case LUA_TNIL:
        lua_pushnil(to);
        return 0;
    case LUA_TBOOLEAN:
        lua_pushboolean(to, lua_toboolean(from, idx));
        return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(from, idx))
            lua_pushinteger(to, lua_tointeger(from, idx));
        else
            lua_pushnumber(to, lua_tonumber(from, idx));
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(from, idx, &n);
        lua_pushlstring(to, s, n);
        return 0;
    }
    case LUA_TTABLE: {
        lua_newtable(to);
        lua_pushnil(from);
        while (lua_next(from, idx)) {
            if (copy_value(from, -2, to, depth + 1, err, errlen) != 0 ||
                copy_value(from, -1, to, depth + 1, err, errlen) != 0) {
                lua_pop(from, 2);
                lua_pop(to, 1);
                return -1;
            }
            lua_rawset(to, -3);
            lua_pop(from, 1);
        }
        const char *mt = helpers_host_metatable(from, idx);
        if (mt)
            luaL_setmetatable(to, mt);
        return 0;
    }
    default:
        snprintf(err, errlen, "a %s cannot be passed into a sim", luaL_typename(from, idx));
        return -1;
    }
}

int helpers_copy(lua_State *from, int idx, lua_State *to, char *err, size_t errlen)
{
    return copy_value(from, idx, to, 0, err, errlen);
}

void helpers_register(sandbox *sb)
{
    lua_State *L = sandbox_state(sb);
    /* __metatable hides these from scripts: a node cannot be forged or
     * given an __index by rewriting its metatable. */
    static const char *const mts[] = {HELPERS_FILTER_MT, HELPERS_TRIGGER_MT, HELPERS_AGO_MT};
    for (int i = 0; i < 3; i++) {
        luaL_newmetatable(L, mts[i]);
        lua_pushstring(L, mts[i]);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    static const luaL_Reg fns[] = {
        {"days", h_days}, {"hours", h_hours}, {"minutes", h_minutes}, {"ago", h_ago},
        {"now", h_now}, {"log", h_log},
        {"at_least", h_at_least}, {"at_most", h_at_most}, {"between", h_between},
        {"before", h_before}, {"after", h_after}, {"one_of", h_one_of}, {"has", h_has},
        {"not_", h_not}, {"any", h_any}, {"all", h_all}, {"bought", h_bought}, {"anniversary", h_anniversary},
        {NULL, NULL}};
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        sandbox_set_global(sb, f->name, 0);
    }
}
