/* catalog — declarations, checked and kept in the Lua registry (see catalog.h).
 *
 * Registry layout (CATALOG_KEY):
 *   journeys  = { [name] = { current = version, versions = { [version] = decl } } }
 *   templates, segments, schedules, channels = { [name] = decl }
 *   by_type   = { [event type] = { journey names } }      current journeys only
 *   dated     = { journey names }                        anniversary-triggered ones
 *   local     = { journey names }                        local_cron / holiday ones
 *   pending   = { journeys = {}, templates = {}, ... }   filled while loading
 * A load fills `pending`; catalog_commit() makes it current in one step, so a
 * load that fails half-way never leaves a half-replaced catalog behind. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "channel.h"
#include "clock.h"
#include "dates.h"
#include "helpers.h"
#include "template.h"

static const char CATALOG_KEY = 0;
static const char LOADING_KEY = 0;   /* {chunk, env} of the script loading now */
static const char ORIGIN_KEY = 0;    /* weak-keyed: declaration -> {chunk, env} of its file */

static const char *const KINDS[] = {"journeys", "templates", "segments", "schedules", "channels", NULL};

static engine *engine_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void push_catalog(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CATALOG_KEY);
}

/* Pushes catalog[a][b] (creating tables on the way when `create`). */
static int push_sub(lua_State *L, const char *a, const char *b, int create)
{
    push_catalog(L);
    if (lua_getfield(L, -1, a) != LUA_TTABLE) {
        lua_pop(L, 2);
        if (!create) {
            lua_pushnil(L);
            return 0;
        }
        push_catalog(L);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, a);
    }
    lua_remove(L, -2);
    if (!b)
        return 1;
    if (lua_getfield(L, -1, b) != LUA_TTABLE) {
        lua_pop(L, 1);
        if (!create) {
            lua_pop(L, 1);
            lua_pushnil(L);
            return 0;
        }
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, b);
    }
    lua_remove(L, -2);
    return 1;
}

/* --- checking declarations --------------------------------------------- */

static int is_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(*s == '_' || *s == '-' || *s == '.' || (*s >= '0' && *s <= '9') ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

static void check_keys(lua_State *L, int spec, const char *kind, const char *name,
                       const char *const *known)
{
    lua_pushnil(L);
    while (lua_next(L, spec)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int ok = 0;
        for (const char *const *p = known; k && *p; p++)
            ok |= strcmp(*p, k) == 0;
        if (!ok)
            luaL_error(L, "%s '%s': unknown key '%s'", kind, name, k ? k : luaL_typename(L, -1));
    }
}

/* Checks spec[key] has Lua type `type` (or is absent when optional). */
static int check_field(lua_State *L, int spec, const char *kind, const char *name,
                       const char *key, int type, int required)
{
    int t = lua_getfield(L, spec, key);
    lua_pop(L, 1);
    if (t == LUA_TNIL) {
        if (required)
            luaL_error(L, "%s '%s': '%s' is required", kind, name, key);
        return 0;
    }
    if (t != type)
        luaL_error(L, "%s '%s': '%s' must be a %s, not a %s", kind, name, key,
                   lua_typename(L, type), lua_typename(L, t));
    return 1;
}

static void check_journey(lua_State *L, int spec, const char *name)
{
    static const char *const known[] = {"on", "when", "once", "reenter_after", "goal", "audience",
        "priority", "on_cap", "migrate", "run", "description", NULL};
    check_keys(L, spec, "journey", name, known);
    check_field(L, spec, "journey", name, "run", LUA_TFUNCTION, 1);
    check_field(L, spec, "journey", name, "when", LUA_TFUNCTION, 0);
    check_field(L, spec, "journey", name, "once", LUA_TBOOLEAN, 0);
    check_field(L, spec, "journey", name, "reenter_after", LUA_TNUMBER, 0);
    check_field(L, spec, "journey", name, "priority", LUA_TNUMBER, 0);
    check_field(L, spec, "journey", name, "migrate", LUA_TFUNCTION, 0);
    check_field(L, spec, "journey", name, "description", LUA_TSTRING, 0);
    int t = lua_getfield(L, spec, "on");
    if (t != LUA_TNIL && t != LUA_TSTRING && !helpers_is_trigger(L, -1))
        luaL_error(L, "journey '%s': 'on' must be an event type, anniversary(...), local_cron(...) or holiday(...)", name);
    if (t == LUA_TTABLE && lua_getfield(L, -1, "kind") == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), "anniversary") == 0) {
        lua_pop(L, 1);
        lua_getfield(L, -1, "field");
        if (!dates_field_valid(lua_tostring(L, -1)))
            luaL_error(L, "journey '%s': anniversary field '%s' is not a date field (birthday, first_order_at, "
                          "first_seen_at, last_order_at, last_active_at or attrs.<key>)", name, lua_tostring(L, -1));
        lua_pop(L, 1);
    } else if (t == LUA_TTABLE) {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    t = lua_getfield(L, spec, "audience");
    if (t != LUA_TNIL && t != LUA_TFUNCTION && t != LUA_TTABLE)
        luaL_error(L, "journey '%s': 'audience' must be a function(ev) or a filter table", name);
    lua_pop(L, 1);
    t = lua_getfield(L, spec, "on_cap");
    if (t != LUA_TNIL && (t != LUA_TSTRING || (strcmp(lua_tostring(L, -1), "defer") != 0 &&
                                               strcmp(lua_tostring(L, -1), "skip") != 0)))
        luaL_error(L, "journey '%s': 'on_cap' must be \"defer\" or \"skip\"", name);
    lua_pop(L, 1);
    if (lua_getfield(L, spec, "goal") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            luaL_error(L, "journey '%s': 'goal' must be {event = type, within = seconds, value = field}", name);
        int g = lua_gettop(L);
        static const char *const gk[] = {"event", "within", "where", "value", NULL};
        check_keys(L, g, "journey", name, gk);
        check_field(L, g, "journey", name, "event", LUA_TSTRING, 1);
        check_field(L, g, "journey", name, "within", LUA_TNUMBER, 0);
        check_field(L, g, "journey", name, "where", LUA_TFUNCTION, 0);
        check_field(L, g, "journey", name, "value", LUA_TSTRING, 0);
    }
    lua_pop(L, 1);
}

/* Compiled template text: a userdata holding a template_prog, freed by the
 * collector with the declaration (a reload drops the old ones). */
static const char TEMPLATE_MT[] = "tend.template";

static int template_gc(lua_State *L)
{
    template_prog **p = luaL_checkudata(L, 1, TEMPLATE_MT);
    template_free(*p);
    *p = NULL;                  /* __gc twice is harmless */
    return 0;
}

/* Compiles the string at the top and sets compiled[key] (compiled at
 * `into`); a malformed text fails the declaration, naming where it breaks. */
static void compile_part(lua_State *L, int into, const char *key, const char *name,
                         const char *channel, const char *part, int html)
{
    char err[400];
    template_prog **p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = NULL;
    if (luaL_newmetatable(L, TEMPLATE_MT)) {
        lua_pushcfunction(L, template_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    *p = template_compile(lua_tostring(L, -2), html, err, sizeof err);
    if (!*p)
        luaL_error(L, "template '%s' (%s%s%s): %s", name, channel, part ? " " : "", part ? part : "", err);
    lua_setfield(L, into, key);
}

/* spec.compiled = { [channel] = { text = prog, subject = prog, html = prog } } */
static void compile_template(lua_State *L, int spec, const char *name)
{
    lua_newtable(L);
    int all = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, spec)) {
        const char *k = lua_tostring(L, -2);
        int type = lua_type(L, -1);
        if (!strcmp(k, "category") || !strcmp(k, "on_cap") || !strcmp(k, "priority") ||
            !strcmp(k, "sample") || (type != LUA_TSTRING && type != LUA_TTABLE)) {
            lua_pop(L, 1);
            continue;
        }
        lua_newtable(L);
        int parts = lua_gettop(L);
        if (type == LUA_TSTRING) {
            lua_pushvalue(L, -2);
            compile_part(L, parts, "text", name, k, NULL, 0);
            lua_pop(L, 1);
        } else {
            static const char *const keys[] = {"subject", "body", "text", "html"};
            for (int i = 0; i < 4; i++) {
                /* body and text are two names of one part; body wins */
                const char *as = i == 1 || i == 2 ? "text" : keys[i];
                int taken = lua_getfield(L, parts, as) != LUA_TNIL;
                lua_pop(L, 1);
                if (taken)
                    continue;
                if (lua_getfield(L, parts - 1, keys[i]) == LUA_TSTRING)
                    compile_part(L, parts, as, name, k, keys[i], i == 3);
                lua_pop(L, 1);
            }
        }
        lua_setfield(L, all, k);
        lua_pop(L, 1);
    }
    lua_setfield(L, spec, "compiled");
}

const template_prog *catalog_template_part(lua_State *L, int decl, const char *channel, const char *part)
{
    const template_prog *p = NULL;
    int top = lua_gettop(L);
    decl = lua_absindex(L, decl);
    if (lua_getfield(L, decl, "compiled") == LUA_TTABLE && lua_getfield(L, -1, channel) == LUA_TTABLE &&
        lua_getfield(L, -1, part) == LUA_TUSERDATA)
        p = *(template_prog **)lua_touserdata(L, -1);
    lua_settop(L, top);
    return p;
}

static void check_template(lua_State *L, int spec, const char *name)
{
    lua_pushnil(L);
    int channels = 0;
    while (lua_next(L, spec)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!k)
            luaL_error(L, "template '%s': keys must be channel names or settings", name);
        if (strcmp(k, "category") == 0) {
            const char *v = lua_tostring(L, -1);
            if (!v || (strcmp(v, "marketing") != 0 && strcmp(v, "transactional") != 0))
                luaL_error(L, "template '%s': 'category' must be \"marketing\" or \"transactional\"", name);
        } else if (strcmp(k, "on_cap") == 0) {
            const char *v = lua_tostring(L, -1);
            if (!v || (strcmp(v, "defer") != 0 && strcmp(v, "skip") != 0))
                luaL_error(L, "template '%s': 'on_cap' must be \"defer\" or \"skip\"", name);
        } else if (strcmp(k, "priority") == 0) {
            if (!lua_isnumber(L, -1))
                luaL_error(L, "template '%s': 'priority' must be a number", name);
        } else if (strcmp(k, "sample") == 0) {
            if (!lua_istable(L, -1))
                luaL_error(L, "template '%s': 'sample' must be a table of example vars", name);
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            channels++;
        } else if (lua_istable(L, -1)) {
            int t = lua_gettop(L);
            static const char *const ek[] = {"subject", "body", "text", "html", NULL};
            check_keys(L, t, "template", name, ek);
            channels++;
        } else {
            luaL_error(L, "template '%s': channel '%s' must have text or {subject = ..., body = ...}",
                       name, k);
        }
        lua_pop(L, 1);
    }
    if (channels == 0)
        luaL_error(L, "template '%s': no channel text (e.g. sms = \"...\")", name);
    if (lua_getfield(L, spec, "category") == LUA_TNIL)
        luaL_error(L, "template '%s': 'category' is required (\"marketing\" or \"transactional\")", name);
    lua_pop(L, 1);
    compile_template(L, spec, name);
}

static void check_segment(lua_State *L, int spec, const char *name)
{
    static const char *const known[] = {"where", "description", NULL};
    check_keys(L, spec, "segment", name, known);
    int t = lua_getfield(L, spec, "where");
    if (t != LUA_TTABLE && t != LUA_TFUNCTION)
        luaL_error(L, "segment '%s': 'where' must be a filter table or a function returning one", name);
    lua_pop(L, 1);
}

static void check_schedule(lua_State *L, int spec, const char *name)
{
    static const char *const known[] = {"cron", "every", "tz", "run", "description", NULL};
    check_keys(L, spec, "schedule", name, known);
    check_field(L, spec, "schedule", name, "run", LUA_TFUNCTION, 1);
    int has_cron = check_field(L, spec, "schedule", name, "cron", LUA_TSTRING, 0);
    int has_every = check_field(L, spec, "schedule", name, "every", LUA_TNUMBER, 0);
    if (has_cron == has_every)
        luaL_error(L, "schedule '%s': give exactly one of 'cron' or 'every'", name);
    if (has_cron) {
        lua_getfield(L, spec, "cron");
        cron_expr c;
        char err[200];
        if (cron_parse(lua_tostring(L, -1), &c, err, sizeof err) != 0)
            luaL_error(L, "schedule '%s': cron: %s", name, err);
        lua_pop(L, 1);
    } else {
        lua_getfield(L, spec, "every");
        if (lua_tonumber(L, -1) < 60)
            luaL_error(L, "schedule '%s': 'every' must be at least minutes(1)", name);
        lua_pop(L, 1);
    }
    if (check_field(L, spec, "schedule", name, "tz", LUA_TSTRING, 0)) {
        lua_getfield(L, spec, "tz");
        if (!clock_tz_valid(lua_tostring(L, -1)))
            luaL_error(L, "schedule '%s': tz '%s' is not a zone in the tz database", name,
                       lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

static void check_channel(lua_State *L, int spec, const char *name)
{
    char err[300];
    if (channel_check(L, spec, name, err, sizeof err) != 0)
        luaL_error(L, "%s", err);
}

/* --- declaring -------------------------------------------------------- */

struct kind {
    const char *fn;         /* the global: "journey" */
    const char *table;      /* "journeys" */
    void (*check)(lua_State *L, int spec, const char *name);
};

static const struct kind kinds[] = {
    {"journey", "journeys", check_journey},
    {"template", "templates", check_template},
    {"segment", "segments", check_segment},
    {"schedule", "schedules", check_schedule},
    {"channel", "channels", check_channel},
};

/* Pushes a copy of the table at idx, nested tables copied too (a table
 * met twice copied once), without metatables but tend's own (filters,
 * triggers, ago(): they have no metamethods). The host reads declarations
 * outside any script's budget: a copy is what keeps a script's __index or
 * a change made after the declaration from running or showing there. */
static void push_plain_copy(lua_State *L, int idx, int seen, int level)
{
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 8, "declaration nested too deep");
    lua_pushvalue(L, idx);
    if (lua_rawget(L, seen) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    if (level > 32)
        luaL_error(L, "declaration nested too deep (limit 32 tables)");
    lua_newtable(L);
    const char *mt = helpers_host_metatable(L, idx);
    if (mt)
        luaL_setmetatable(L, mt);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, seen);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            push_plain_copy(L, -1, seen, level + 1);
            lua_remove(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

/* journey "name" {spec}: the second call. Upvalues: engine, kind index, name. */
static int declare_spec(lua_State *L)
{
    engine *e = engine_of(L);
    const struct kind *k = &kinds[lua_tointeger(L, lua_upvalueindex(2))];
    const char *name = lua_tostring(L, lua_upvalueindex(3));
    if (!e->loading)
        return luaL_error(L, "%s '%s' can only be declared while a script loads", k->fn, name);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L);
    push_plain_copy(L, 1, 2, 0);
    lua_replace(L, 1);
    lua_settop(L, 1);
    k->check(L, 1, name);
    /* the file's chunk and env, for catalog_restore_env (kept beside the
     * declaration: code walking a declaration's fields must not meet them) */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ORIGIN_KEY);
    lua_pushvalue(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LOADING_KEY);
    lua_rawset(L, -3);
    lua_settop(L, 1);

    char where[300];
    sandbox_where(L, 1, where, sizeof where);
    lua_pushstring(L, name);
    lua_setfield(L, 1, "name");
    lua_pushstring(L, e->loading_version);
    lua_setfield(L, 1, "version");
    lua_pushstring(L, where);
    lua_setfield(L, 1, "declared_at");

    if (e->loading_old) {   /* an old version: only its journeys matter */
        if (strcmp(k->table, "journeys") == 0) {
            push_sub(L, "journeys", name, 1);
            if (lua_getfield(L, -1, "versions") != LUA_TTABLE) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, "versions");
            }
            lua_pushvalue(L, 1);
            lua_setfield(L, -2, e->loading_version);
        }
        return 0;
    }
    push_sub(L, "pending", k->table, 1);
    if (lua_getfield(L, -1, name) != LUA_TNIL) {
        lua_getfield(L, -1, "declared_at");
        return luaL_error(L, "%s '%s' is declared twice (first at %s)", k->fn, name, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, name);
    return 0;
}

/* journey "name": the first call returns the function that takes the spec. */
static int declare_name(lua_State *L)
{
    const struct kind *k = &kinds[lua_tointeger(L, lua_upvalueindex(2))];
    const char *name = luaL_checkstring(L, 1);
    if (!is_name(name))
        return luaL_argerror(L, 1, lua_pushfstring(L, "%s name '%s' may use only letters, digits, "
                                                      "'_', '-' and '.'", k->fn, name));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, declare_spec, 3);
    return 1;
}

void catalog_register(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CATALOG_KEY);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ORIGIN_KEY);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        lua_pushlightuserdata(L, e);
        lua_pushinteger(L, (lua_Integer)i);
        lua_pushcclosure(L, declare_name, 2);
        sandbox_set_global(e->sb, kinds[i].fn, 0);
    }
}

int catalog_run_script(engine *e, const char *path, const char *version, int old)
{
    lua_State *L = sandbox_state(e->sb);
    if (!old) {   /* a fresh pending area for the first script of a load */
        push_catalog(L);
        if (lua_getfield(L, -1, "pending") == LUA_TNIL) {
            lua_newtable(L);
            lua_setfield(L, -3, "pending");
        }
        lua_pop(L, 2);
    }
    e->loading = 1;
    e->loading_old = old;
    e->loading_path = path;
    e->loading_version = version;
    helpers_set_relative(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
    if (lua_getupvalue(L, -2, 1))
        lua_rawseti(L, -2, 2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADING_KEY);
    int status = sandbox_pcall(e->sb, L, 0, 0);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADING_KEY);
    helpers_set_relative(L, 0);
    e->loading = 0;
    e->loading_old = 0;
    e->loading_path = e->loading_version = NULL;
    return status;
}

/* Rebuilds by_type and dated from the current journeys. */
static void index_triggers(lua_State *L)
{
    push_catalog(L);
    lua_newtable(L);            /* by_type */
    lua_newtable(L);            /* dated */
    lua_newtable(L);            /* local */
    int by_type = lua_gettop(L) - 2, dated = lua_gettop(L) - 1, local = lua_gettop(L);
    push_sub(L, "journeys", NULL, 1);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *name = lua_tostring(L, -2);
        if (lua_getfield(L, -1, "current") == LUA_TSTRING) {
            lua_getfield(L, -2, "versions");
            lua_getfield(L, -1, lua_tostring(L, -2));
            int t = lua_getfield(L, -1, "on");
            if (t == LUA_TSTRING) {
                if (lua_getfield(L, by_type, lua_tostring(L, -1)) == LUA_TNIL) {
                    lua_pop(L, 1);
                    lua_newtable(L);
                    lua_pushvalue(L, -1);
                    lua_setfield(L, by_type, lua_tostring(L, -3));
                }
                lua_pushstring(L, name);
                lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
                lua_pop(L, 1);
            } else if (t == LUA_TTABLE) {
                lua_getfield(L, -1, "kind");
                int list = strcmp(lua_tostring(L, -1), "anniversary") == 0 ? dated : local;
                lua_pop(L, 1);
                lua_pushstring(L, name);
                lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
            }
            lua_pop(L, 3);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    /* Journeys of one type start in name order (insertion sort: the lists
     * are short), so runs are reproducible. */
    lua_pushnil(L);
    while (lua_next(L, by_type)) {
        int n = (int)lua_rawlen(L, -1);
        for (int i = 2; i <= n; i++) {
            for (int j = i; j > 1; j--) {
                lua_rawgeti(L, -1, j - 1);
                lua_rawgeti(L, -2, j);
                int swap = strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) > 0;
                if (swap) {
                    lua_rawseti(L, -3, j - 1);
                    lua_rawseti(L, -2, j);
                } else {
                    lua_pop(L, 2);
                    break;
                }
            }
        }
        lua_pop(L, 1);
    }
    lua_setfield(L, -4, "local");
    lua_setfield(L, -3, "dated");
    lua_setfield(L, -2, "by_type");
    lua_pop(L, 1);
}

void catalog_commit(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    push_catalog(L);
    int cat = lua_gettop(L);
    if (lua_getfield(L, cat, "pending") != LUA_TTABLE) {
        lua_pop(L, 2);
        return;
    }
    int pending = lua_gettop(L);
    /* Journeys: add each new version and make it current; a journey no
     * longer declared keeps its versions (in-flight instances) but is no
     * longer current, so nothing new enters it. */
    push_sub(L, "journeys", NULL, 1);
    int journeys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, journeys)) {
        lua_pushnil(L);
        lua_setfield(L, -2, "current");
        lua_pop(L, 1);
    }
    if (lua_getfield(L, pending, "journeys") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            const char *name = lua_tostring(L, -2);
            lua_getfield(L, -1, "version");
            const char *version = lua_tostring(L, -1);
            if (lua_getfield(L, journeys, name) == LUA_TNIL) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, journeys, name);
            }
            if (lua_getfield(L, -1, "versions") == LUA_TNIL) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, "versions");
            }
            lua_pushvalue(L, -4);
            lua_setfield(L, -2, version);
            lua_pop(L, 1);
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "current");
            lua_pop(L, 3);
        }
    }
    lua_pop(L, 2);
    for (const char *const *k = KINDS + 1; *k; k++) {
        if (lua_getfield(L, pending, *k) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        lua_setfield(L, cat, *k);
    }
    lua_pushnil(L);
    lua_setfield(L, cat, "pending");
    lua_pop(L, 2);
    index_triggers(L);
}

void catalog_abort(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    push_catalog(L);
    lua_pushnil(L);
    lua_setfield(L, -2, "pending");
    lua_pop(L, 1);
}

/* --- lookups ---------------------------------------------------------- */

void catalog_restore_env(lua_State *L, int decl)
{
    int top = lua_gettop(L);
    decl = lua_absindex(L, decl);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ORIGIN_KEY);
    lua_pushvalue(L, decl);
    if (lua_rawget(L, -2) == LUA_TTABLE && lua_rawgeti(L, -1, 1) == LUA_TFUNCTION &&
        lua_rawgeti(L, -2, 2) == LUA_TTABLE)
        lua_setupvalue(L, -2, 1);
    lua_settop(L, top);
}

/* The declaration of `version` (NULL: none) in the journey's entry at
 * stack index `entry`, left alone at top + 1 (1); else the stack back at
 * `top` and nil pushed (0). */
static int push_declaration(lua_State *L, int top, int entry, const char *version)
{
    if (version && lua_getfield(L, entry, "versions") == LUA_TTABLE && lua_getfield(L, -1, version) == LUA_TTABLE) {
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return 1;
    }
    lua_settop(L, top);
    lua_pushnil(L);
    return 0;
}

int catalog_push_journey(engine *e, const char *name, const char *version)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    return push_declaration(L, top, top + 1, push_sub(L, "journeys", name, 0) ? version : NULL);
}

int catalog_push_current(engine *e, const char *name)
{
    /* catalog_current_version and catalog_push_journey in one walk to the
     * journey's entry (once an event for each journey its type starts) */
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    const char *version = NULL;
    if (push_sub(L, "journeys", name, 0)) {
        lua_getfield(L, -1, "current");
        version = lua_tostring(L, -1);   /* stays on the stack while used */
    }
    return push_declaration(L, top, top + 1, version);
}

const char *catalog_current_version(engine *e, const char *name)
{
    lua_State *L = sandbox_state(e->sb);
    if (!push_sub(L, "journeys", name, 0)) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_getfield(L, -1, "current");
    /* The string stays alive in the catalog table after the pop. */
    const char *v = lua_tostring(L, -1);
    lua_pop(L, 2);
    return v;
}

static int push_field(lua_State *L, const char *table, const char *name)
{
    push_catalog(L);
    if (lua_getfield(L, -1, table) != LUA_TTABLE) {
        lua_pop(L, 2);
        lua_pushnil(L);
        return 0;
    }
    int t = lua_getfield(L, -1, name);
    lua_replace(L, -3);
    lua_pop(L, 1);
    return t != LUA_TNIL;
}

int catalog_push_triggered(engine *e, const char *type)
{
    return push_field(sandbox_state(e->sb), "by_type", type);
}

int catalog_push_dated(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    push_catalog(L);
    int t = lua_getfield(L, -1, "dated");
    lua_remove(L, -2);
    return t == LUA_TTABLE;
}

int catalog_push_local(engine *e)
{
    lua_State *L = sandbox_state(e->sb);
    push_catalog(L);
    int t = lua_getfield(L, -1, "local");
    lua_remove(L, -2);
    return t == LUA_TTABLE;
}

int catalog_push_template(engine *e, const char *name)
{
    return push_field(sandbox_state(e->sb), "templates", name);
}

int catalog_push_segment(engine *e, const char *name)
{
    return push_field(sandbox_state(e->sb), "segments", name);
}

int catalog_push_all(engine *e, const char *kind)
{
    lua_State *L = sandbox_state(e->sb);
    if (strcmp(kind, "journeys") == 0) {
        /* name -> current declaration */
        lua_newtable(L);
        push_catalog(L);
        if (lua_getfield(L, -1, "journeys") == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                if (lua_getfield(L, -1, "current") == LUA_TSTRING) {
                    lua_getfield(L, -2, "versions");
                    lua_getfield(L, -1, lua_tostring(L, -2));
                    lua_setfield(L, -8, lua_tostring(L, -5));   /* into the result */
                    lua_pop(L, 1);
                }
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 2);
        return 1;
    }
    push_catalog(L);
    if (lua_getfield(L, -1, kind) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    lua_remove(L, -2);
    return 1;
}

const char *catalog_where(engine *e, int idx, char *buf, size_t n)
{
    lua_State *L = sandbox_state(e->sb);
    lua_getfield(L, idx, "declared_at");
    snprintf(buf, n, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return buf;
}
