/* bench/wake_long — does a wake cost more the longer a journey has run?
 *
 *   build/release/bench_wake_long [N [STEPS]]     (default 500 instances, 200 steps)
 *
 * N instances of a journey of STEPS waits (`for i = 1, STEPS do wait(hours(1))
 * end`) are started; then the clock moves an hour at a time and every
 * instance wakes STEPS - 1 times, each wake replaying all the waits before
 * it, taking one live step and storing (synchronous=full). Printed: the
 * wake rate of the 2nd wake (a short history, as a 3-step journey's) and of
 * the last (STEPS - 1 recorded steps), and last/2nd. Issue 14's target: a
 * 200-step journey wakes at >= 0.5 of a 3-step one's rate. For scale, the
 * same two wakes as a bare lua_resume loop (the same Lua, primitives that
 * do nothing, no store): how much of the cost of a long replay is the Lua
 * interpreter running the loop again.
 *
 * Up to 1024 long runs are kept in memory between wakes (instance.c, kept
 * runs), so with N <= 1024 the last wake resumes kept coroutines. What a
 * wake costs without them (more long runs waiting than that, or the first
 * wake after a restart) is printed too: the journey has one wait more, and
 * after the last timed wake the engine is closed and opened again on the
 * same store, as a restart does, and every instance wakes once more,
 * replaying its STEPS recorded waits from the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bench.h"
#include "bench_engine.h"

/* wait(): the replayed ones return, the live one (the `live`-th) yields */
static int stub_wait(lua_State *L)
{
    int *left = lua_touserdata(L, lua_upvalueindex(1));
    if (--*left > 0)
        return 0;
    return lua_yield(L, 0);
}

static int stub_hours(lua_State *L)
{
    lua_pushinteger(L, luaL_checkinteger(L, 1) * 3600);
    return 1;
}

/* n coroutines of the journey's run, each replaying `replayed` waits and
 * stopping on the next; returns the seconds it took. */
static double bare_wakes(long n, int steps, int replayed)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int left = 0;
    lua_pushlightuserdata(L, &left);
    lua_pushcclosure(L, stub_wait, 1);
    lua_setglobal(L, "wait");
    lua_pushcfunction(L, stub_hours);
    lua_setglobal(L, "hours");
    char *src = xasprintf("run = function(c) for i = 1, %d do wait(hours(1)) end end", steps);
    if (luaL_dostring(L, src) != LUA_OK)
        fprintf(stderr, "bare: %s\n", lua_tostring(L, -1));
    free(src);
    double t0 = bench_seconds();
    for (long i = 0; i < n; i++) {
        left = replayed + 1;
        lua_State *co = lua_newthread(L);
        lua_getglobal(co, "run");
        lua_pushnil(co);
        int nres;
        lua_resume(co, L, 1, &nres);
        lua_pop(L, 1);
    }
    double dt = bench_seconds() - t0;
    lua_close(L);
    return dt;
}

/* One wake of every instance; returns the seconds it took, its CPU
 * seconds in *cpu. */
static double wake_all(engine *e, tclock *clk, long n, double *cpu)
{
    clock_set(clk, engine_now(e) + TEND_HOUR);
    double t0 = bench_seconds(), c0 = bench_cpu_seconds();
    long woken = 0;
    int k;
    while ((k = instance_run_due(e, engine_now(e), 500)) > 0)
        woken += k;
    if (woken != n)
        fprintf(stderr, "bench_wake_long: %ld of %ld woke\n", woken, n);
    *cpu = bench_cpu_seconds() - c0;
    return bench_seconds() - t0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 500;
    int steps = argc > 2 ? atoi(argv[2]) : 200;
    if (n <= 0 || steps < 3) {
        fprintf(stderr, "usage: bench_wake_long [N [STEPS >= 3]]\n");
        return 2;
    }
    /* STEPS waits, and one more for the wake after the restart */
    char *script = xasprintf("journey \"long\" {\n"
                             "  run = function(c)\n"
                             "    for i = 1, %d do wait(hours(1)) end\n"
                             "  end,\n"
                             "}\n",
                             steps + 1);
    struct bench_engine b;
    bench_engine_open(&b, "long.lua", script);
    engine *e = b.e;
    tclock *clk = b.clk;
    bench_start(e, "long", n, 500);
    double second = 0, last = 0, c_second = 0, c_last = 0;
    for (int w = 1; w < steps; w++) {
        double cpu;
        double dt = wake_all(e, clk, n, &cpu);
        if (w == 2) {
            second = dt;
            c_second = cpu;
        }
        last = dt;
        c_last = cpu;
    }
    /* a restart: no kept runs, the wake replays from the store */
    engine_close(e);
    struct engine_options o = {.db_path = b.db, .clock = clk, .capture = 1, .config = b.cfg};
    char *err = NULL, *errors = NULL;
    b.e = e = engine_open(&o, &err);
    if (!e || engine_load_source(e, "long.lua", script, strlen(script), &errors) != 0) {
        fprintf(stderr, "bench_wake_long: reopening: %s\n", err ? err : errors);
        return 1;
    }
    double c_replay;
    double replay = wake_all(e, clk, n, &c_replay);
    printf("wake_long: %ld instances of a %d-step journey: wake 2 (replays 2 waits) %.0f/s,"
           " wake %d (replays %d waits) %.0f/s; last/2nd = %.2f (target >= 0.5)\n",
           n, steps, n / second, steps - 1, steps - 1, n / last, second / last);
    /* enough bare wakes to time: the short ones take about a microsecond */
    long bn = n * 50;
    double b_second = bare_wakes(bn, steps, 2), b_last = bare_wakes(bn, steps, steps - 1);
    printf("wake_long: bare lua_resume loop, same Lua, no store: wake 2 %.0f/s, wake %d %.0f/s;"
           " last/2nd = %.2f\n", bn / b_second, steps - 1, bn / b_last, b_second / b_last);
    printf("wake_long: CPU per wake: wake 2 %.2f us, wake %d %.2f us; CPU 2nd/last = %.2f\n",
           c_second * 1e6 / n, steps - 1, c_last * 1e6 / n, c_second / c_last);
    printf("wake_long: after a restart (no kept runs: every wake replays its history from the store):"
           " wake %d %.0f/s, CPU %.2f us; this/2nd = %.2f wall, %.2f CPU (rates)\n",
           steps, n / replay, c_replay * 1e6 / n, second / replay, c_second / c_replay);
    bench_engine_close(&b);
    free(script);
    return 0;
}
