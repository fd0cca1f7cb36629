/* sandbox — a Lua state that runs untrusted scripts (see sandbox.h).
 *
 * Layout of this file: the allocator and the hook (the two limits), the
 * protected-call wrappers that keep a tripped limit tripped, the whitelisted
 * environment (base table, load, require, os), and the entry points. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bundle.h"
#include "sandbox.h"
#include "util.h"

/* The hook runs every HOOK_EVERY instructions: often enough that a runaway
 * loop stops within microseconds of its budget, rarely enough to cost
 * nothing measurable. */
#define HOOK_EVERY 1000

struct sandbox {
    lua_State *L;
    size_t used, limit;
    long instruction_limit;
    long ticks_left;
    int depth;                  /* nesting of sandbox_pcall/sandbox_resume */
    enum sandbox_trip tripped;
    const tclock *clock;
    void (*log)(void *ud, const char *where, const char *msg);
    void *log_ud;
    void (*line_hook)(void *ud, const char *source, int line);
    void *line_ud;
};

/* Registry keys: the address of each static is the key. */
static const char BASE_KEY = 0;      /* table: globals every env gets */
static const char INTERNAL_KEY = 0;  /* table: extra globals for stdlib envs */
static const char ENVMETA_KEY = 0;   /* metatable of every env */
static const char BUDGET_MSG_KEY = 0, MEMORY_MSG_KEY = 0;

sandbox *sandbox_of(lua_State *L)
{
    return *(sandbox **)lua_getextraspace(L);
}

lua_State *sandbox_state(sandbox *sb)
{
    return sb->L;
}

/* --- limits ----------------------------------------------------------- */

/* The cap applies only while a script runs (depth > 0): the host's own
 * pushes happen outside protected mode, where a refused allocation would
 * panic the process instead of failing one script. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sandbox *sb = ud;
    size_t old = ptr ? osize : 0;   /* with ptr NULL, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        sb->used -= old;
        return NULL;
    }
    /* A refusal is not yet a memory error: Lua collects garbage and asks
     * again, and only if that fails too raises LUA_ERRMEM, which the
     * protected calls below turn into a trip. */
    if (nsize > old && sb->depth > 0 && sb->used + (nsize - old) > sb->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    sb->used = sb->used - old + nsize;
    return p;
}

/* Raises the error of the tripped limit, positioned at stack `level` (0 in
 * the hook: the function whose instructions ran out). The protected calls
 * instead re-raise the error object they caught, which already carries the
 * position where the limit tripped. */
static int raise_trip(lua_State *L, sandbox *sb, int level)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, sb->tripped == SANDBOX_MEMORY ? &MEMORY_MSG_KEY : &BUDGET_MSG_KEY);
    if (sb->tripped == SANDBOX_BUDGET) {
        luaL_where(L, level);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

/* Re-raises a caught error after a trip: the caught object itself when it is
 * the trip's (it has the position where the limit tripped), the trip's own
 * message otherwise (a __close handler's error must not stand in for it). */
static int rethrow_trip(lua_State *L, sandbox *sb)
{
    const char *m = lua_tostring(L, -1);
    if (m && (strstr(m, "instruction budget exceeded") || strstr(m, "memory limit exceeded") ||
              strstr(m, "not enough memory")))
        return lua_error(L);
    return raise_trip(L, sb, 1);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    sandbox *sb = sandbox_of(L);
    if (ar->event == LUA_HOOKLINE) {
        if (sb->line_hook && lua_getinfo(L, "S", ar))
            sb->line_hook(sb->line_ud, ar->source, ar->currentline);
        return;
    }
    if (sb->depth == 0)
        return;
    if (sb->tripped || --sb->ticks_left < 0) {
        if (!sb->tripped)
            sb->tripped = SANDBOX_BUDGET;
        raise_trip(L, sb, 0);
    }
}

static void arm(sandbox *sb)
{
    if (sb->depth++ == 0) {
        sb->ticks_left = sb->instruction_limit / HOOK_EVERY;
        sb->tripped = SANDBOX_OK;
    }
}

/* --- protected calls that cannot swallow a tripped limit --------------- */

/* A memory error anywhere in a script is a trip: sticky like the budget. */
static void note_status(sandbox *sb, int status)
{
    if (status == LUA_ERRMEM && !sb->tripped)
        sb->tripped = SANDBOX_MEMORY;
}

static int finish_pcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        sandbox *sb = sandbox_of(L);
        note_status(sb, status);
        if (sb->tripped)
            return rethrow_trip(L, sb);
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
    return finish_pcall(L, status, 0);
}

/* xpcall's handler, wrapped: after a trip the script's handler does not
 * run at all — a trip raised from the count hook reaches the handler with
 * hooks off, where a loop in it would run unbounded. */
static int xpcall_handler(lua_State *L)
{
    if (sandbox_of(L)->tripped)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
    return finish_pcall(L, status, 2);
}

/* lcorolib's auxresume, plus the trip check. */
static int resume_into(lua_State *L, lua_State *co, int narg)
{
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    lua_xmove(L, co, narg);
    int nres;
    int status = lua_resume(co, L, narg, &nres);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    note_status(sandbox_of(L), status);
    lua_xmove(co, L, 1);
    return -1;
}

static int sb_coresume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    int r = resume_into(L, co, lua_gettop(L) - 1);
    sandbox *sb = sandbox_of(L);
    if (r < 0) {
        if (sb->tripped)
            return rethrow_trip(L, sb);
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -(r + 1));
    return r + 1;
}

static int close_thread(lua_State *co, lua_State *from)
{
#if LUA_VERSION_RELEASE_NUM >= 50406
    return lua_closethread(co, from);
#else
    (void)from;
    return lua_resetthread(co);
#endif
}

static int wrap_call(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int r = resume_into(L, co, lua_gettop(L));
    if (r < 0) {
        sandbox *sb = sandbox_of(L);
        if (sb->tripped)
            return rethrow_trip(L, sb);
        int stat = lua_status(co);
        if (stat != LUA_OK && stat != LUA_YIELD) {
            close_thread(co, L);
        }
        if (lua_type(L, -1) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
    return r;
}

/* coroutine.close runs the coroutine's pending to-be-closed handlers in
 * protected mode; a trip in one of them must still stop the script. */
static int sb_coclose(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    lua_Debug ar;
    if (co == L || (lua_status(co) == LUA_OK && lua_getstack(co, 0, &ar)))
        return luaL_error(L, "cannot close a %s coroutine", co == L ? "running" : "normal");
    int status = close_thread(co, L);
    sandbox *sb = sandbox_of(L);
    note_status(sb, status);
    if (status == LUA_OK) {
        if (sb->tripped)
            return raise_trip(L, sb, 1);
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_xmove(co, L, 1);
    if (sb->tripped)
        return rethrow_trip(L, sb);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static int sb_cowrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrap_call, 1);
    return 1;
}

/* --- safe replacements ------------------------------------------------- */

/* A __gc metamethod would run inside whatever C code happens to trigger a
 * collection, outside any budget; scripts have no need for finalizers. */
static int sb_setmetatable(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int t = lua_type(L, 2);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    if (t == LUA_TTABLE) {
        if (lua_getfield(L, 2, "__gc") != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in scripts");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int sb_print(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    strbuf b;
    strbuf_init(&b);
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1)
            strbuf_putc(&b, '\t');
        strbuf_add(&b, s, len);
        lua_pop(L, 1);
    }
    char where[256];
    sandbox_where(L, 1, where, sizeof where);
    sandbox_log(sb, where, b.s ? b.s : "");
    strbuf_free(&b);
    return 0;
}

/* load(chunk [, name [, mode [, env]]]): text only, and the environment
 * defaults to the caller's sandbox env (upvalue 1), never the real globals. */
static int sb_load(lua_State *L)
{
    size_t len;
    const char *src = lua_tolstring(L, 1, &len);
    if (!src)
        return luaL_argerror(L, 1, "string expected (function readers are not supported)");
    const char *name = luaL_optstring(L, 2, src);
    const char *mode = luaL_optstring(L, 3, "t");
    if (!strchr(mode, 't')) {
        lua_pushnil(L);
        lua_pushliteral(L, "binary chunks are not allowed");
        return 2;
    }
    int env = lua_isnone(L, 4) ? lua_upvalueindex(1) : 4;
    int status = luaL_loadbufferx(L, src, len, name, "t");
    if (status != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
    return 1;
}

/* os.time(): the runtime clock, virtual in tests. A table is read as UTC:
 * the host's local zone means nothing to a journey (customers carry zones). */
static int sb_os_time(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    if (lua_isnoneornil(L, 1)) {
        lua_pushinteger(L, sb->clock ? clock_now(sb->clock) : (lua_Integer)time(NULL));
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer f[6];
    static const char *const names[6] = {"year", "month", "day", "hour", "min", "sec"};
    static const lua_Integer defaults[6] = {-1, -1, -1, 12, 0, 0};
    for (int i = 0; i < 6; i++) {
        int isnum;
        lua_getfield(L, 1, names[i]);
        f[i] = lua_tointegerx(L, -1, &isnum);
        if (!isnum) {
            if (defaults[i] < 0 || !lua_isnil(L, -1))
                return luaL_error(L, "field '%s' missing in date table", names[i]);
            f[i] = defaults[i];
        }
        lua_pop(L, 1);
    }
    int64_t days = clock_days_from_civil((int)f[0], 1, 1);
    /* months may be out of range: normalise like mktime does */
    lua_Integer m0 = f[1] - 1;
    lua_Integer y = f[0] + (m0 >= 0 ? m0 / 12 : (m0 - 11) / 12);
    lua_Integer m = ((m0 % 12) + 12) % 12 + 1;
    days = clock_days_from_civil((int)y, (int)m, 1) + f[2] - 1;
    lua_pushinteger(L, days * 86400 + f[3] * 3600 + f[4] * 60 + f[5]);
    return 1;
}

static void set_int_field(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* os.date([fmt [, t]]): always UTC (a leading '!' is accepted and ignored). */
static int sb_os_date(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    const char *fmt = luaL_optstring(L, 1, "%c");
    lua_Integer t = lua_isnoneornil(L, 2)
                        ? (sb->clock ? clock_now(sb->clock) : (lua_Integer)time(NULL))
                        : luaL_checkinteger(L, 2);
    if (*fmt == '!')
        fmt++;
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return luaL_error(L, "date result cannot be represented");
    if (strcmp(fmt, "*t") == 0) {
        lua_createtable(L, 0, 9);
        set_int_field(L, "year", tm.tm_year + 1900);
        set_int_field(L, "month", tm.tm_mon + 1);
        set_int_field(L, "day", tm.tm_mday);
        set_int_field(L, "hour", tm.tm_hour);
        set_int_field(L, "min", tm.tm_min);
        set_int_field(L, "sec", tm.tm_sec);
        set_int_field(L, "yday", tm.tm_yday + 1);
        set_int_field(L, "wday", tm.tm_wday + 1);
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "isdst");
        return 1;
    }
    /* Only the C99 conversions: an unknown one is undefined behaviour. */
    static const char allowed[] = "aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            luaL_addchar(&b, *p);
            continue;
        }
        if (!p[1] || !strchr(allowed, p[1]))
            return luaL_argerror(L, 1, lua_pushfstring(L, "invalid conversion '%%%c' to 'date'", p[1] ? p[1] : ' '));
        char spec[3] = {'%', p[1], 0}, out[256];
        size_t n = strftime(out, sizeof out, spec, &tm);
        luaL_addlstring(&b, out, n);
        p++;
    }
    luaL_pushresult(&b);
    return 1;
}

static int sb_os_difftime(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)(luaL_checkinteger(L, 1) - luaL_optinteger(L, 2, 0)));
    return 1;
}

/* An env's __index: reading a global nobody defined is almost always a typo,
 * so it is an error naming it rather than a silent nil. */
static int env_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    return luaL_error(L, "unknown global '%s'", k ? k : luaL_typename(L, 2));
}

/* --- require ------------------------------------------------------------ */

static int valid_module_name(const char *s)
{
    if (!*s || *s == '.')
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (p[1] == '.' || p[1] == 0)
                return 0;
        } else if (!(c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                     (c >= 'A' && c <= 'Z'))) {
            return 0;
        }
    }
    return 1;
}

static void push_env(sandbox *sb, lua_State *L, const char *dir, int internal, int loaded);

/* require(name): upvalue 1 is this env's loaded-modules table, upvalue 2 its
 * directory (or nil). Each module runs in an env of its own, so a module
 * cannot reach into its requirer's globals or the other way round. */
static int sb_require(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (lua_getfield(L, lua_upvalueindex(1), name) != LUA_TNIL) {
        if (lua_islightuserdata(L, -1))
            return luaL_error(L, "require cycle: module '%s' is still loading", name);
        return 1;
    }
    lua_pop(L, 1);
    const char *dir = lua_tostring(L, lua_upvalueindex(2));
    const struct bundle_module *m = bundle_find(name);
    int status;
    /* Modules share their requirer's table of loaded modules: a module
     * needed by two others loads once, and a cycle is seen as one. */
    if (m) {
        push_env(sb, L, NULL, 1, lua_upvalueindex(1));             /* 2: env */
        status = luaL_loadbufferx(L, m->source, m->len, lua_pushfstring(L, "@%s", m->path), "t");
        lua_remove(L, -2);
    } else {
        if (!valid_module_name(name))
            return luaL_error(L, "module '%s' not found: not a module name", name);
        if (!dir)
            return luaL_error(L, "module '%s' not found (require reaches the stdlib here)", name);
        char *rel = xstrdup(name);
        for (char *p = rel; *p; p++)
            if (*p == '.')
                *p = '/';
        char *file = util_path_join(dir, rel);
        free(rel);
        char *path = xasprintf("%s.lua", file);
        free(file);
        size_t len;
        char *src = util_read_file(path, &len);
        if (!src) {
            lua_pushfstring(L, "module '%s' not found (looked in the stdlib and %s)", name, path);
            free(path);
            return lua_error(L);
        }
        push_env(sb, L, dir, 0, lua_upvalueindex(1));              /* 2: env */
        lua_pushfstring(L, "@%s", path);
        status = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
        lua_remove(L, -2);
        free(src);
        free(path);
    }
    if (status != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 2);                                        /* set _ENV */
    lua_setupvalue(L, -2, 1);
    lua_pushlightuserdata(L, (void *)&BASE_KEY);                /* "loading" mark */
    lua_setfield(L, lua_upvalueindex(1), name);
    lua_pushstring(L, name);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pushnil(L);
        lua_setfield(L, lua_upvalueindex(1), name);
        return lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, lua_upvalueindex(1), name);
    return 1;
}

/* --- environments ------------------------------------------------------ */

/* Copies a table one level deep: library tables are copied per env so one
 * script rewriting string.format changes nothing for another. */
static void push_shallow_copy(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

static void copy_globals(lua_State *L, const void *key, int env)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    int src = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            push_shallow_copy(L, -1);
            lua_remove(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, env);
    }
    lua_pop(L, 1);
}

/* `loaded`: index of the loaded-modules table to share, or 0 for a new one. */
static void push_env(sandbox *sb, lua_State *L, const char *dir, int internal, int loaded)
{
    (void)sb;
    lua_checkstack(L, 8);
    lua_newtable(L);
    int env = lua_gettop(L);
    copy_globals(L, &BASE_KEY, env);
    if (internal)
        copy_globals(L, &INTERNAL_KEY, env);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_pushvalue(L, env);
    lua_pushcclosure(L, sb_load, 1);
    lua_setfield(L, env, "load");
    if (loaded)
        lua_pushvalue(L, loaded);
    else
        lua_newtable(L);
    if (dir)
        lua_pushstring(L, dir);
    else
        lua_pushnil(L);
    lua_pushcclosure(L, sb_require, 2);
    lua_setfield(L, env, "require");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ENVMETA_KEY);
    lua_setmetatable(L, env);
}

void sandbox_new_env(sandbox *sb, const char *dir)
{
    push_env(sb, sb->L, dir, 0, 0);
}

void sandbox_set_global(sandbox *sb, const char *name, int internal)
{
    lua_State *L = sb->L;
    lua_rawgetp(L, LUA_REGISTRYINDEX, internal ? &INTERNAL_KEY : &BASE_KEY);
    const char *dot = strchr(name, '.');
    if (dot) {   /* "math.random": a field of a library table */
        lua_pushlstring(L, name, (size_t)(dot - name));
        lua_rawget(L, -2);
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, dot + 1);
        lua_pop(L, 3);
        return;
    }
    lua_insert(L, -2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* Copies the listed fields of a loaded library into a fresh table. */
static void add_lib(lua_State *L, int base, const char *lib, const char *const *fields)
{
    lua_getglobal(L, lib);
    lua_newtable(L);
    for (const char *const *f = fields; *f; f++) {
        lua_getfield(L, -2, *f);
        lua_setfield(L, -2, *f);
    }
    lua_setfield(L, base, lib);
    lua_pop(L, 1);
}

static void build_base(sandbox *sb)
{
    lua_State *L = sb->L;
    lua_newtable(L);
    int base = lua_gettop(L);
    static const char *const basics[] = {
        "assert", "error", "getmetatable", "ipairs", "next", "pairs", "rawequal", "rawget",
        "rawlen", "rawset", "select", "tonumber", "tostring", "type", "_VERSION", NULL};
    for (const char *const *f = basics; *f; f++) {
        lua_getglobal(L, *f);
        lua_setfield(L, base, *f);
    }
    static const luaL_Reg own[] = {
        {"pcall", sb_pcall}, {"xpcall", sb_xpcall}, {"setmetatable", sb_setmetatable},
        {"print", sb_print}, {NULL, NULL}};
    luaL_setfuncs(L, own, 0);

    static const char *const string_f[] = {"byte", "char", "find", "format", "gmatch", "gsub",
        "len", "lower", "match", "pack", "packsize", "rep", "reverse", "sub", "unpack", "upper", NULL};
    static const char *const table_f[] = {"concat", "insert", "move", "pack", "remove", "sort",
        "unpack", NULL};
    static const char *const math_f[] = {"abs", "ceil", "cos", "deg", "exp", "floor", "fmod",
        "huge", "log", "max", "maxinteger", "min", "mininteger", "modf", "pi", "rad", "sin",
        "sqrt", "tan", "tointeger", "type", "ult", "acos", "asin", "atan", NULL};
    static const char *const utf8_f[] = {"char", "charpattern", "codes", "codepoint", "len",
        "offset", NULL};
    static const char *const co_f[] = {"create", "isyieldable", "running", "status", "yield", NULL};
    add_lib(L, base, "string", string_f);
    add_lib(L, base, "table", table_f);
    add_lib(L, base, "math", math_f);
    add_lib(L, base, "utf8", utf8_f);
    add_lib(L, base, "coroutine", co_f);
    lua_getfield(L, base, "coroutine");
    lua_pushcfunction(L, sb_coresume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, sb_cowrap);
    lua_setfield(L, -2, "wrap");
    lua_pushcfunction(L, sb_coclose);
    lua_setfield(L, -2, "close");
    lua_pop(L, 1);
    static const luaL_Reg os_f[] = {
        {"time", sb_os_time}, {"date", sb_os_date}, {"difftime", sb_os_difftime}, {NULL, NULL}};
    luaL_newlib(L, os_f);
    lua_setfield(L, base, "os");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BASE_KEY);

    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &INTERNAL_KEY);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, env_index);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "env");          /* scripts cannot swap it out */
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ENVMETA_KEY);
}

/* The real string table is what ("x"):method() reaches through the shared
 * string metatable. It must lose `dump`, and the metatable must be hidden
 * from getmetatable, or one script could rewrite string methods for all. */
static void lock_strings(lua_State *L)
{
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, "string");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
}

sandbox *sandbox_new(const struct sandbox_options *opts)
{
    struct sandbox_options none = {0};
    if (!opts)
        opts = &none;
    sandbox *sb = xcalloc(1, sizeof *sb);
    sb->limit = opts->memory_limit ? opts->memory_limit : SANDBOX_DEFAULT_MEMORY;
    sb->instruction_limit = opts->instruction_limit ? opts->instruction_limit
                                                    : SANDBOX_DEFAULT_INSTRUCTIONS;
    sb->clock = opts->clock;
    sb->log = opts->log;
    sb->log_ud = opts->log_ud;
    sb->L = lua_newstate(sandbox_alloc, sb);
    if (!sb->L) {
        free(sb);
        return NULL;
    }
    *(sandbox **)lua_getextraspace(sb->L) = sb;
    lua_State *L = sb->L;
    /* Opened into the host state only to copy the safe parts out; scripts
     * never see these globals. */
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_COLIBNAME, luaopen_coroutine, 1);
    lua_pop(L, 6);
    lock_strings(L);
    build_base(sb);
    lua_pushfstring(L, "memory limit exceeded (%d MiB)", (int)(sb->limit >> 20));
    lua_rawsetp(L, LUA_REGISTRYINDEX, &MEMORY_MSG_KEY);
    lua_pushfstring(L, "instruction budget exceeded (%d instructions)", (int)sb->instruction_limit);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BUDGET_MSG_KEY);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    return sb;
}

void sandbox_free(sandbox *sb)
{
    if (!sb)
        return;
    if (sb->L)
        lua_close(sb->L);
    free(sb);
}

const tclock *sandbox_clock(sandbox *sb)
{
    return sb->clock;
}

void sandbox_set_clock(sandbox *sb, const tclock *clock)
{
    sb->clock = clock;
}

void sandbox_set_line_hook(sandbox *sb, void (*fn)(void *ud, const char *source, int line), void *ud)
{
    sb->line_hook = fn;
    sb->line_ud = ud;
    lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT | (fn ? LUA_MASKLINE : 0), HOOK_EVERY);
}

void sandbox_set_instruction_limit(sandbox *sb, long n)
{
    sb->instruction_limit = n > HOOK_EVERY ? n : HOOK_EVERY;
    lua_pushfstring(sb->L, "instruction budget exceeded (%d instructions)", (int)sb->instruction_limit);
    lua_rawsetp(sb->L, LUA_REGISTRYINDEX, &BUDGET_MSG_KEY);
}

void sandbox_set_memory_limit(sandbox *sb, size_t bytes)
{
    sb->limit = bytes;
    lua_pushfstring(sb->L, "memory limit exceeded (%d MiB)", (int)(sb->limit >> 20));
    lua_rawsetp(sb->L, LUA_REGISTRYINDEX, &MEMORY_MSG_KEY);
}

/* --- loading ----------------------------------------------------------- */

int sandbox_load(sandbox *sb, const char *src, size_t len, const char *name, int env)
{
    lua_State *L = sb->L;
    env = lua_absindex(L, env);
    char *chunk = xasprintf("@%s", name);
    int status = luaL_loadbufferx(L, src, len, chunk, "t");
    free(chunk);
    if (status != LUA_OK)
        return status;
    lua_pushvalue(L, env);
    lua_setupvalue(L, -2, 1);
    return LUA_OK;
}

int sandbox_load_file(sandbox *sb, const char *path, int env)
{
    size_t len;
    char *src = util_read_file(path, &len);
    if (!src) {
        lua_pushfstring(sb->L, "%s: cannot read: %s", path, strerror(errno));
        return LUA_ERRFILE;
    }
    int status = sandbox_load(sb, src, len, path, env);
    free(src);
    return status;
}

/* --- entering Lua ----------------------------------------------------- */

const char *sandbox_tostring(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        lua_pushvalue(L, idx);
        return lua_tostring(L, -1);
    }
    if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
        lua_pushvalue(L, idx);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
            return lua_tostring(L, -1);
        lua_pop(L, 1);
        return lua_pushfstring(L, "(error object is a %s value; its __tostring failed)",
                               luaL_typename(L, idx));
    }
    if (t == LUA_TNIL)
        return lua_pushliteral(L, "nil");
    if (t == LUA_TBOOLEAN)
        return lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
    return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

static int traceback_handler(lua_State *L)
{
    const char *msg = sandbox_tostring(L, 1);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* A memory error carries Lua's bare "not enough memory": say which limit,
 * keeping whatever follows (a traceback). */
static void explain_trip(sandbox *sb, lua_State *L)
{
    if (sb->tripped != SANDBOX_MEMORY)
        return;
    const char *msg = lua_tostring(L, -1);
    if (!msg || strstr(msg, "memory limit exceeded"))
        return;
    static const char bare[] = "not enough memory";
    const char *rest = strncmp(msg, bare, sizeof bare - 1) == 0 ? msg + sizeof bare - 1 : NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &MEMORY_MSG_KEY);
    if (rest)
        lua_pushstring(L, rest);
    else
        lua_pushfstring(L, ": %s", msg);
    lua_concat(L, 2);
    lua_remove(L, -2);
}

int sandbox_pcall(sandbox *sb, lua_State *L, int nargs, int nresults)
{
    int fn = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, fn);
    arm(sb);
    int status = lua_pcall(L, nargs, nresults, fn);
    sb->depth--;
    lua_remove(L, fn);
    note_status(sb, status);
    if (status == LUA_OK && sb->tripped && sb->depth == 0) {
        /* the script swallowed a trip somewhere we could not stop it */
        lua_pop(L, nresults == LUA_MULTRET ? 0 : nresults);
        lua_rawgetp(L, LUA_REGISTRYINDEX, sb->tripped == SANDBOX_MEMORY ? &MEMORY_MSG_KEY : &BUDGET_MSG_KEY);
        status = sb->tripped == SANDBOX_MEMORY ? LUA_ERRMEM : LUA_ERRRUN;
    }
    if (status != LUA_OK) {
        if (lua_type(L, -1) != LUA_TSTRING) {   /* LUA_ERRERR / LUA_ERRMEM objects */
            sandbox_tostring(L, -1);
            lua_remove(L, -2);
        }
        explain_trip(sb, L);
    }
    return status;
}

int sandbox_resume(sandbox *sb, lua_State *co, lua_State *from, int nargs, int *nres)
{
    arm(sb);
    int status = lua_resume(co, from, nargs, nres);
    sb->depth--;
    note_status(sb, status);
    if (status != LUA_OK && status != LUA_YIELD) {
        /* The coroutine's frames survive a failed resume, so the traceback
         * can still be read from it. */
        const char *msg = sandbox_tostring(co, -1);
        luaL_traceback(co, co, msg, 0);
        lua_remove(co, -2);
        lua_remove(co, -2);
        explain_trip(sb, co);
    }
    return status;
}

enum sandbox_trip sandbox_tripped(sandbox *sb)
{
    return sb->tripped;
}

size_t sandbox_memory(sandbox *sb)
{
    return sb->used;
}

size_t sandbox_memory_limit(sandbox *sb)
{
    return sb->limit;
}

void sandbox_log(sandbox *sb, const char *where, const char *msg)
{
    if (sb->log)
        sb->log(sb->log_ud, where, msg);
    else
        fprintf(stderr, "log: %s: %s\n", where, msg);
}

const char *sandbox_where(lua_State *L, int level, char *buf, size_t n)
{
    lua_Debug ar;
    if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        snprintf(buf, n, "%s:%d", ar.short_src, ar.currentline);
    else
        snprintf(buf, n, "?");
    return buf;
}
