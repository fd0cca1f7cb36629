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

#include "bounded.h"
#include "bundle.h"
#include "sandbox.h"
#include "util.h"

/* The hook runs every HOOK_EVERY instructions: often enough that a runaway
 * loop stops within microseconds of its budget, rarely enough to cost
 * nothing measurable. */
#define HOOK_EVERY 1000

/* Allocation is work too: every ALLOC_BYTES_PER_TICK bytes a script makes
 * the state allocate cost one tick (HOOK_EVERY instructions), so C functions
 * that copy or build big strings in one call (upper, sub, .., format) are
 * paid for. 1 GiB of churn costs 4 M instructions (4% of the default
 * budget): about what copying it costs next to running Lua code; the wall
 * time limit stops what this rate lets through. */
#define ALLOC_BYTES_PER_TICK ((size_t)HOOK_EVERY * 256)

/* The hook reads the (coarse, vDSO) clock every CLOCK_EVERY ticks. */
#define CLOCK_EVERY 16

/* Lua's small blocks, kept for its next allocation of the same class.
 * Every run makes the same few objects (a wake: its coroutine and stack,
 * the customer handle, two call frames) and the collector frees them in
 * bursts of a sweep step, more than glibc's per-thread cache of 7 a size
 * holds, so most went through its arenas (~170 instructions an allocation
 * or a free). Blocks up to KEEP_LARGEST bytes are allocated in classes of
 * KEEP_STEP, and a freed one goes on its class's list (at most KEEP_BYTES
 * in all; a block is never smaller than its class) for the next
 * allocation of that class. Left out under AddressSanitizer, which must
 * see every free to check Lua's use of its memory. */
#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_KEEP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_KEEP 0
#endif
#endif
#ifndef SANDBOX_KEEP
#define SANDBOX_KEEP 1
#endif
#define KEEP_STEP 16
#define KEEP_CLASSES 64                         /* 16, 32, ... 1024 bytes */
#define KEEP_LARGEST (KEEP_STEP * KEEP_CLASSES)
#define KEEP_BYTES ((size_t)1 << 20)

struct kept_block {
    struct kept_block *next;
};

struct sandbox {
    lua_State *L;
    size_t used, limit;
    long instruction_limit;
    long ticks_left;
    size_t alloc_charge;        /* bytes allocated since the last tick they paid for */
    long time_limit_ms;         /* wall time per outermost entry */
    struct timespec deadline;
    int clock_countdown;
    size_t load_limit;          /* bytes load() accepts */
    int depth;                  /* nesting of sandbox_pcall/sandbox_resume */
    enum sandbox_trip tripped;
    unsigned trips;             /* trips and failures since sandbox_new */
    const tclock *clock;
    void (*log)(void *ud, const char *where, const char *msg);
    void *log_ud;
    void (*line_hook)(void *ud, const char *source, int line);
    void *line_ud;
    struct kept_block *kept[KEEP_CLASSES];   /* small blocks Lua freed, by size class (sandbox_alloc) */
    size_t kept_bytes;
};

/* Registry keys: the address of each static is the key. */
static const char BASE_KEY = 0;      /* table: globals every env gets */
static const char INTERNAL_KEY = 0;  /* table: extra globals for stdlib envs */
static const char ENVMETA_KEY = 0;   /* metatable of every env */
static const char BUDGET_MSG_KEY = 0, MEMORY_MSG_KEY = 0, TIME_MSG_KEY = 0;

sandbox *sandbox_of(lua_State *L)
{
    return *(sandbox **)lua_getextraspace(L);
}

lua_State *sandbox_state(sandbox *sb)
{
    return sb->L;
}

/* --- limits ----------------------------------------------------------- */

/* The class of a block of n bytes (0 < n <= KEEP_LARGEST); its blocks are
 * (class + 1) * KEEP_STEP bytes. */
static size_t keep_class(size_t n)
{
    return (n - 1) / KEEP_STEP;
}

/* A block of n bytes: a kept one of its class, or a new one of the class's
 * size (so that any block of the class serves any request of it). */
static void *block_new(sandbox *sb, size_t n)
{
    if (!SANDBOX_KEEP || n > KEEP_LARGEST)
        return malloc(n);
    size_t c = keep_class(n);
    struct kept_block *b = sb->kept[c];
    if (b) {
        sb->kept[c] = b->next;
        sb->kept_bytes -= (c + 1) * KEEP_STEP;
        return b;
    }
    return malloc((c + 1) * KEEP_STEP);
}

/* Frees block p, which Lua knows as n bytes (it is at least its class). */
static void block_free(sandbox *sb, void *p, size_t n)
{
    if (SANDBOX_KEEP && p && n > 0 && n <= KEEP_LARGEST) {
        size_t c = keep_class(n);
        if (sb->kept_bytes + (c + 1) * KEEP_STEP <= KEEP_BYTES) {
            struct kept_block *b = p;
            b->next = sb->kept[c];
            sb->kept[c] = b;
            sb->kept_bytes += (c + 1) * KEEP_STEP;
            return;
        }
    }
    free(p);
}

/* realloc for Lua's blocks (ptr non-NULL, both sizes non-zero). A shrink
 * never fails (Lua counts on it): without a new block the old one, larger
 * than asked, stays. */
static void *block_resize(sandbox *sb, void *ptr, size_t osize, size_t nsize)
{
    if (!SANDBOX_KEEP || (osize > KEEP_LARGEST && nsize > KEEP_LARGEST))
        return realloc(ptr, nsize);
    if (osize <= KEEP_LARGEST && nsize <= KEEP_LARGEST && keep_class(osize) == keep_class(nsize))
        return ptr;
    void *p = block_new(sb, nsize);
    if (!p)
        return nsize < osize ? ptr : NULL;
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    block_free(sb, ptr, osize);
    return p;
}

static void blocks_drain(sandbox *sb)
{
    for (int c = 0; c < KEEP_CLASSES; c++) {
        while (sb->kept[c]) {
            struct kept_block *b = sb->kept[c];
            sb->kept[c] = b->next;
            free(b);
        }
    }
    sb->kept_bytes = 0;
}

/* The cap applies only while a script runs (depth > 0): the host's own
 * pushes happen outside protected mode, where a refused allocation would
 * panic the process instead of failing one script. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sandbox *sb = ud;
    size_t old = ptr ? osize : 0;   /* with ptr NULL, osize is a type tag */
    if (nsize == 0) {
        block_free(sb, ptr, old);
        sb->used -= old;
        return NULL;
    }
    /* A refusal is not yet a memory error: Lua collects garbage and asks
     * again, and only if that fails too raises LUA_ERRMEM, which the
     * protected calls below turn into a trip. */
    if (nsize > old && sb->depth > 0) {
        if (sb->used + (nsize - old) > sb->limit)
            return NULL;
        sb->alloc_charge += nsize - old;
        if (sb->alloc_charge >= ALLOC_BYTES_PER_TICK) {   /* the next hook tick trips if spent */
            sb->ticks_left -= (long)(sb->alloc_charge / ALLOC_BYTES_PER_TICK);
            sb->alloc_charge %= ALLOC_BYTES_PER_TICK;
        }
    }
    void *p = ptr ? block_resize(sb, ptr, osize, nsize) : block_new(sb, nsize);
    if (!p)
        return NULL;
    sb->used = sb->used - old + nsize;
    return p;
}

/* Raises the error of the tripped limit, positioned at stack `level` (0 in
 * the hook: the function whose instructions ran out). The protected calls
 * instead re-raise the error object they caught, which already carries the
 * position where the limit tripped. */
static const void *trip_key(enum sandbox_trip t)
{
    return t == SANDBOX_MEMORY ? &MEMORY_MSG_KEY : t == SANDBOX_TIME ? &TIME_MSG_KEY : &BUDGET_MSG_KEY;
}

static int raise_trip(lua_State *L, sandbox *sb, int level)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, trip_key(sb->tripped));
    if (sb->tripped != SANDBOX_MEMORY) {
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
              strstr(m, "not enough memory") || strstr(m, "time limit exceeded")))
        return lua_error(L);
    return raise_trip(L, sb, 1);
}

static int past_deadline(sandbox *sb)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return now.tv_sec > sb->deadline.tv_sec ||
           (now.tv_sec == sb->deadline.tv_sec && now.tv_nsec > sb->deadline.tv_nsec);
}

/* Trips (and raises) when the budget or the wall-time limit is spent. */
static void check_spent(lua_State *L, sandbox *sb, int level)
{
    if (!sb->tripped && sb->ticks_left < 0)
        sb->tripped = SANDBOX_BUDGET;
    if (!sb->tripped && --sb->clock_countdown <= 0) {
        sb->clock_countdown = CLOCK_EVERY;
        if (past_deadline(sb))
            sb->tripped = SANDBOX_TIME;
    }
    if (sb->tripped)
        raise_trip(L, sb, level);
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
    --sb->ticks_left;
    check_spent(L, sb, 0);
}

static void arm(sandbox *sb)
{
    if (sb->depth++ == 0) {
        sb->ticks_left = sb->instruction_limit / HOOK_EVERY;
        sb->alloc_charge = 0;
        sb->tripped = SANDBOX_OK;
        sb->clock_countdown = CLOCK_EVERY;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &sb->deadline);
        sb->deadline.tv_sec += sb->time_limit_ms / 1000;
        sb->deadline.tv_nsec += (sb->time_limit_ms % 1000) * 1000000L;
        if (sb->deadline.tv_nsec >= 1000000000L) {
            sb->deadline.tv_sec++;
            sb->deadline.tv_nsec -= 1000000000L;
        }
    }
}

void sandbox_charge(lua_State *L, double instructions)
{
    sandbox *sb = sandbox_of(L);
    if (sb->depth == 0)
        return;
    double ticks = instructions / HOOK_EVERY;
    if (ticks > (double)sb->ticks_left)
        sb->ticks_left = -1;
    else
        sb->ticks_left -= (long)ticks;
    check_spent(L, sb, 1);
}

void sandbox_reserve(lua_State *L, double bytes)
{
    sandbox *sb = sandbox_of(L);
    if (sb->depth == 0)
        return;
    if ((double)sb->used + bytes > (double)sb->limit) {
        lua_gc(L, LUA_GCCOLLECT);   /* garbage does not count */
        if ((double)sb->used + bytes > (double)sb->limit) {
            if (!sb->tripped)
                sb->tripped = SANDBOX_MEMORY;
            raise_trip(L, sb, 1);
        }
    }
    sandbox_check_live(L);   /* the allocation itself pays (sandbox_alloc) */
}

void sandbox_check_live(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    if (sb->tripped)
        raise_trip(L, sb, 1);
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
    /* Compiling is C work a single call could make long: refused by size,
     * charged by the byte. */
    sandbox *sb = sandbox_of(L);
    if (len > sb->load_limit)
        return luaL_error(L, "load: chunk of %I bytes is over the load limit (%I bytes, limits.load)",
                          (lua_Integer)len, (lua_Integer)sb->load_limit);
    sandbox_charge(L, (double)len);
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

/* An env's __newindex; upvalue 1 is the env's base (what tend gives it).
 *
 * Why the primitives live in the base and not in the env: journeys of one
 * file share the file's env for as long as the process runs, so a value a
 * run writes there is seen by every later run of every journey of that
 * file. The base sits behind the env's __index, out of the script's reach
 * (the env's metatable is protected), and a name the base holds cannot be
 * assigned, neither by `send = x` (here) nor by rawset (sb_rawset). A
 * script's own globals live in the env and stay writable. */
static int refuse_assign(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    return luaL_error(L, "cannot assign to '%s': it is tend's (use a local of another name)",
                      k ? k : luaL_typename(L, 2));
}

static int env_newindex(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) {
        return refuse_assign(L);
    }
    lua_pop(L, 1);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

/* Pushes the base of the env at idx and returns 1, or returns 0 (pushing
 * nothing) when the table at idx is not an env. */
static int push_env_base(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    lua_getfield(L, -1, "__newindex");
    if (lua_tocfunction(L, -1) != env_newindex) {
        lua_pop(L, 2);
        return 0;
    }
    lua_getfield(L, -2, "__index");
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 1;
}

/* rawget on an env sees its base too: `rawget(_G, "name")`, the usual test
 * for an optional global, keeps working for tend's globals. */
static int sb_rawget(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, 1) == LUA_TNIL && push_env_base(L, 1)) {
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
    }
    return 1;
}

/* rawset, refusing the names an env's base holds (see env_newindex). */
static int sb_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    if (push_env_base(L, 1)) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            return refuse_assign(L);
        }
        lua_settop(L, 3);
    }
    lua_rawset(L, 1);
    return 1;
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

/* `loaded`: index of the loaded-modules table to share, or 0 for a new one.
 * Pushes the env: an empty table for the script's globals whose __index is
 * the env's base, a table of tend's globals (see env_newindex). */
static void push_env(sandbox *sb, lua_State *L, const char *dir, int internal, int loaded)
{
    (void)sb;
    lua_checkstack(L, 10);
    if (loaded)
        loaded = lua_absindex(L, loaded);
    lua_newtable(L);
    int env = lua_gettop(L);
    lua_newtable(L);
    int base = lua_gettop(L);
    copy_globals(L, &BASE_KEY, base);
    if (internal)
        copy_globals(L, &INTERNAL_KEY, base);
    lua_pushvalue(L, env);
    lua_setfield(L, base, "_G");
    lua_pushvalue(L, env);
    lua_pushcclosure(L, sb_load, 1);
    lua_setfield(L, base, "load");
    if (loaded)
        lua_pushvalue(L, loaded);
    else
        lua_newtable(L);
    if (dir)
        lua_pushstring(L, dir);
    else
        lua_pushnil(L);
    lua_pushcclosure(L, sb_require, 2);
    lua_setfield(L, base, "require");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ENVMETA_KEY);
    lua_setmetatable(L, base);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, base);
    lua_pushcclosure(L, env_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "env");          /* scripts cannot swap it out */
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, env);
    lua_settop(L, env);
}

void sandbox_new_env(sandbox *sb, const char *dir)
{
    push_env(sb, sb->L, dir, 0, 0);
}

void sandbox_push_globals(sandbox *sb)
{
    lua_State *L = sb->L;
    push_env(sb, L, NULL, 0, 0);
    push_env_base(L, -1);
    lua_remove(L, -2);
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
        "assert", "error", "getmetatable", "ipairs", "next", "pairs", "rawequal",
        "rawlen", "select", "tonumber", "tostring", "type", "_VERSION", NULL};
    for (const char *const *f = basics; *f; f++) {
        lua_getglobal(L, *f);
        lua_setfield(L, base, *f);
    }
    static const luaL_Reg own[] = {
        {"pcall", sb_pcall}, {"xpcall", sb_xpcall}, {"setmetatable", sb_setmetatable},
        {"print", sb_print}, {"rawset", sb_rawset}, {"rawget", sb_rawget}, {NULL, NULL}};
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

    lua_createtable(L, 0, 1);           /* the metatable of every env's base */
    lua_pushcfunction(L, env_index);
    lua_setfield(L, -2, "__index");
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
    sb->time_limit_ms = opts->time_limit_ms ? opts->time_limit_ms : SANDBOX_DEFAULT_TIME_MS;
    sb->load_limit = opts->load_limit ? opts->load_limit : SANDBOX_DEFAULT_LOAD;
    sb->clock = opts->clock;
    sb->log = opts->log;
    sb->log_ud = opts->log_ud;
    sb->L = lua_newstate(sandbox_alloc, sb);
    if (!sb->L) {
        blocks_drain(sb);
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
    bounded_install(L);
    lock_strings(L);
    build_base(sb);
    lua_pushfstring(L, "memory limit exceeded (%d MiB)", (int)(sb->limit >> 20));
    lua_rawsetp(L, LUA_REGISTRYINDEX, &MEMORY_MSG_KEY);
    lua_pushfstring(L, "instruction budget exceeded (%d instructions)", (int)sb->instruction_limit);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BUDGET_MSG_KEY);
    sandbox_set_time_limit(sb, sb->time_limit_ms);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    return sb;
}

void sandbox_free(sandbox *sb)
{
    if (!sb)
        return;
    if (sb->L)
        lua_close(sb->L);
    blocks_drain(sb);
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

void sandbox_set_time_limit(sandbox *sb, long ms)
{
    sb->time_limit_ms = ms > 0 ? ms : SANDBOX_DEFAULT_TIME_MS;
    lua_pushfstring(sb->L, "time limit exceeded (%d ms)", (int)sb->time_limit_ms);
    lua_rawsetp(sb->L, LUA_REGISTRYINDEX, &TIME_MSG_KEY);
}

void sandbox_set_load_limit(sandbox *sb, size_t bytes)
{
    sb->load_limit = bytes ? bytes : SANDBOX_DEFAULT_LOAD;
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
    /* No __tostring, no __name: the value may come from a script that has
     * just failed or tripped, and its metamethods would run outside any
     * budget, after the failure, with the primitives in reach. */
    if (t == LUA_TNIL)
        return lua_pushliteral(L, "nil");
    if (t == LUA_TBOOLEAN)
        return lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
    return lua_pushfstring(L, "(error object: %s)", lua_typename(L, t));
}

/* Cuts the string at idx to SANDBOX_MESSAGE_MAX bytes (at a UTF-8 character
 * boundary), marked as cut; other values are left alone. */
void sandbox_cut(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    size_t len;
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
    if (!s || len <= SANDBOX_MESSAGE_MAX)
        return;
    size_t keep = SANDBOX_MESSAGE_MAX;
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
        keep--;
    lua_pushlstring(L, s, keep);
    lua_pushfstring(L, "... [cut: %I bytes more]", (lua_Integer)(len - keep));
    lua_concat(L, 2);
    lua_replace(L, idx);
}

/* Replaces the error value at idx of L with its description: a string as
 * it is, anything else as sandbox_tostring() prefixed with the "file:line:"
 * of the first Lua function from `level` up the stack of `at` (the error
 * object carries no position of its own). */
static void describe_error(lua_State *L, int idx, lua_State *at, int level)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING)
        return;
    char where[200] = "";
    lua_Debug ar;
    for (int i = level; i < level + 8 && lua_getstack(at, i, &ar); i++) {
        if (lua_getinfo(at, "Sl", &ar) && ar.currentline > 0) {
            snprintf(where, sizeof where, "%s:%d: ", ar.short_src, ar.currentline);
            break;
        }
    }
    lua_pushstring(L, where);
    sandbox_tostring(L, idx);
    lua_concat(L, 2);
    lua_replace(L, idx);
}

static int traceback_handler(lua_State *L)
{
    /* After a stack overflow the stack may have no room left: luaL_traceback
     * does not check (it writes past the stack, corrupting the heap), so
     * without room the message goes without a traceback. */
    if (!lua_checkstack(L, 2 * LUA_MINSTACK))
        return 1;
    describe_error(L, 1, L, 1);
    lua_pushvalue(L, 1);
    sandbox_cut(L, -1);
    luaL_traceback(L, L, lua_tostring(L, -1), 1);
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
        lua_rawgetp(L, LUA_REGISTRYINDEX, trip_key(sb->tripped));
        status = sb->tripped == SANDBOX_MEMORY ? LUA_ERRMEM : LUA_ERRRUN;
    }
    if (status != LUA_OK) {
        if (lua_type(L, -1) != LUA_TSTRING) {   /* LUA_ERRERR / LUA_ERRMEM objects */
            sandbox_tostring(L, -1);
            lua_remove(L, -2);
        }
        explain_trip(sb, L);
        sandbox_cut(L, -1);
        if (sb->depth == 0 && sb->tripped)
            sb->trips++;
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
        /* The message is built on `from`, reading co's frames: co's stack may
         * be full (a stack overflow), and luaL_traceback pushes without
         * checking for room. */
        if (!lua_checkstack(from, 2 * LUA_MINSTACK)) {
            lua_pop(co, 1);
            lua_pushliteral(co, "error (no stack left to describe it)");
        } else {
            lua_xmove(co, from, 1);
            describe_error(from, -1, co, 0);
            lua_pushvalue(from, -1);
            sandbox_cut(from, -1);
            luaL_traceback(from, co, lua_tostring(from, -1), 0);
            lua_remove(from, -2);
            lua_remove(from, -2);
            explain_trip(sb, from);
            sandbox_cut(from, -1);
            lua_xmove(from, co, 1);
        }
        if (sb->depth == 0 && sb->tripped)
            sb->trips++;
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
    char cut[SANDBOX_MESSAGE_MAX + 64];
    size_t len = strlen(msg);
    if (len > SANDBOX_MESSAGE_MAX) {   /* a log line is a line, not a dump */
        size_t keep = SANDBOX_MESSAGE_MAX;
        while (keep > 0 && ((unsigned char)msg[keep] & 0xC0) == 0x80)
            keep--;
        snprintf(cut, sizeof cut, "%.*s... [cut: %zu bytes more]", (int)keep, msg, len - keep);
        msg = cut;
    }
    if (sb->log)
        sb->log(sb->log_ud, where, msg);
    else
        fprintf(stderr, "log: %s: %s\n", where, msg);
}

unsigned sandbox_trips(sandbox *sb)
{
    return sb->trips;
}

const char *sandbox_where(lua_State *L, int level, char *buf, size_t n)
{
    lua_Debug ar;
    char line[24];
    if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
        util_int_text(line, ar.currentline);   /* every wait's label: no printf */
        util_concat(buf, n, ar.short_src, ":", line, NULL);
    } else {
        util_concat(buf, n, "?", NULL);
    }
    return buf;
}
