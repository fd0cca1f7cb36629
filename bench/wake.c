/* bench/wake — journey wake + replay + one step, at scale.
 *
 *   build/release/bench_wake [N]        (default 1000000)
 *
 * N instances of a 3-step journey (wait a day; tag the customer; wait a day)
 * are started and left waiting on their first wait. Then the clock moves a
 * day and every instance wakes: it replays the first wait from its history,
 * takes one live step (the tag) and stops on the second wait, all stored.
 * Printed: instances/s for that wake, peak RSS, and the ratio to a bare
 * lua_resume loop doing the same Lua work (a coroutine per instance running
 * the same function, with primitives that do nothing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bench.h"
#include "bench_engine.h"

static const char SCRIPT[] =
    "journey \"three\" {\n"
    "  run = function(c)\n"
    "    wait(days(1))\n"
    "    c:tag(\"woken\")\n"
    "    wait(days(1))\n"
    "  end,\n"
    "}\n";

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* --- the baseline: the same Lua work with primitives that do nothing ---- */

static int stub_wait(lua_State *L)
{
    /* the replayed first wait returns; the live second one yields */
    int *n = lua_touserdata(L, lua_upvalueindex(1));
    if ((*n)++ % 2 == 0)
        return 0;
    return lua_yield(L, 0);
}

static int stub_tag(lua_State *L)
{
    (void)L;
    return 0;
}

static double bare_loop(long n)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int calls = 0;
    lua_pushlightuserdata(L, &calls);
    lua_pushcclosure(L, stub_wait, 1);
    lua_setglobal(L, "wait");
    lua_newtable(L);
    lua_pushcfunction(L, stub_tag);
    lua_setfield(L, -2, "tag");
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_setglobal(L, "C");
    if (luaL_dostring(L, "function days(n) return n * 86400 end\n"
                     "run = function(c) wait(days(1)) c:tag(\"woken\") wait(days(1)) end\n"
                     "c = setmetatable({}, C)") != LUA_OK)
        fprintf(stderr, "bare: %s\n", lua_tostring(L, -1));
    double t0 = seconds();
    for (long i = 0; i < n; i++) {
        lua_State *co = lua_newthread(L);
        lua_getglobal(co, "run");
        lua_getglobal(co, "c");
        int nres;
        lua_resume(co, L, 1, &nres);
        lua_pop(L, 1);
    }
    double dt = seconds() - t0;
    lua_close(L);
    return dt;
}

/* --- tend ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct bench_engine b;
    bench_engine_open(&b, "three.lua", SCRIPT);
    engine *e = b.e;
    tclock *clk = b.clk;
    double t0 = seconds();
    bench_start(e, "three", n, 5000);
    double t_start = seconds() - t0;
    long rss_start = peak_rss_kb();
    /* what a waiting instance stores of its own (issue 14: trigger, label, history) */
    int64_t b_hist = store_count(e->st, "SELECT CAST(AVG(length(CAST(history AS BLOB))) AS INTEGER) FROM instances");
    int64_t b_label = store_count(e->st, "SELECT CAST(AVG(length(CAST(label AS BLOB))) AS INTEGER) FROM instances");
    int64_t b_trig = store_count(e->st, "SELECT CAST(AVG(COALESCE(length(CAST(trigger AS BLOB)), 0)) AS INTEGER)"
                                        " FROM instances");

    clock_set(clk, engine_now(e) + TEND_DAY);
    t0 = seconds();
    double c0 = bench_cpu_seconds();
    long woken = 0;
    int k;
    /* as engine_run_due drains them (`tend process`): batches of 2,000,
     * each one's commit beside the next one's replay */
    while ((k = instance_drain_due(e, engine_now(e), 2000)) > 0)
        woken += k;
    double t_wake = seconds() - t0, c_wake = bench_cpu_seconds() - c0;
    long rss_wake = peak_rss_kb();
    int64_t tagged = store_count(e->st, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'woken'");
    int64_t waiting = store_count(e->st, "SELECT COUNT(*) FROM instances WHERE state = 'waiting' AND step = 3");

    double c1 = bench_cpu_seconds();
    double t_bare = bare_loop(n);
    double c_bare = bench_cpu_seconds() - c1;
    printf("wake: %ld instances started (run to their first wait) in %.2f s = %.0f/s\n", n, t_start,
           n / t_start);
    printf("wake: %ld instances woken (replay + 1 step + wait, stored, synchronous=full) in %.2f s = %.0f/s\n",
           woken, t_wake, woken / t_wake);
    printf("wake: CPU per wake: tend %.2f us, bare %.2f us; bare/tend CPU = %.3f\n", c_wake * 1e6 / woken,
           c_bare * 1e6 / n, c_bare / c_wake);
    printf("wake: checked: %lld tagged, %lld waiting at step 3\n", (long long)tagged, (long long)waiting);
    printf("wake: bare lua_resume loop, same Lua work, no store: %.2f s = %.0f/s; tend/bare = %.3f\n", t_bare,
           n / t_bare, t_bare / t_wake);
    printf("wake: bytes per waiting instance: history %lld, label %lld, trigger %lld (no trigger here)\n",
           (long long)b_hist, (long long)b_label, (long long)b_trig);
    printf("wake: peak RSS %.1f MiB after starting, %.1f MiB after waking (%ld waiting instances)\n",
           rss_start / 1024.0, rss_wake / 1024.0, n);
    bench_engine_close(&b);
    return woken == n && tagged == n ? 0 : 1;
}
