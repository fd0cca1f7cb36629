/* Schedules across downtime: a server that was down for several slots runs
 * the schedule once when it comes back, not once per missed slot; a
 * virtual clock that is advanced visits every slot. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "util.h"

#define T0 1772355600   /* 2026-03-01T09:00:00Z */

static const char SCRIPT[] =
    "schedule \"hourly\" { cron = \"0 * * * *\", tz = \"UTC\", run = function() log(\"tick\") end }\n"
    "schedule \"every6\" { every = hours(6), run = function() end }\n";

struct fixture {
    char path[64];
    tclock *clock;
    engine *e;
};

static void quiet(void *ud, const char *level, const char *msg)
{
    (void)ud;
    (void)level;
    (void)msg;
}

static engine *open_engine(struct fixture *f)
{
    struct engine_options o = {.db_path = f->path, .clock = f->clock, .capture = 1, .log = quiet};
    char *err = NULL;
    engine *e = engine_open(&o, &err);
    assert_non_null(e);
    char *errors = NULL;
    assert_int_equal(engine_load_source(e, "s.lua", SCRIPT, strlen(SCRIPT), &errors), 0);
    return e;
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "/tmp/tend-sched-XXXXXX");
    close(mkstemp(f->path));
    f->clock = clock_new_virtual(T0);
    f->e = open_engine(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    engine_close(f->e);
    clock_free(f->clock);
    store_remove(f->path);
    free(f);
    return 0;
}

static int64_t runs(engine *e, const char *name)
{
    store_stmt *s = store_sql(e->st, "SELECT COUNT(*) FROM schedule_runs WHERE name = ?");
    store_bind_text(s, 1, name, -1);
    assert_int_equal(store_step(s), STORE_ROW);
    int64_t n = store_col_int(s, 0);
    store_reset(s);
    return n;
}

static tend_time next_at(engine *e, const char *name)
{
    store_stmt *s = store_sql(e->st, "SELECT next_at FROM schedules WHERE name = ?");
    store_bind_text(s, 1, name, -1);
    assert_int_equal(store_step(s), STORE_ROW);
    tend_time t = store_col_int(s, 0);
    store_reset(s);
    return t;
}

static void test_downtime_runs_once(void **state)
{
    struct fixture *f = *state;
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);
    assert_int_equal(next_at(f->e, "hourly"), T0 + 3600);
    assert_int_equal(runs(f->e, "hourly"), 0);

    /* The server goes away for five and a half hours. */
    engine_close(f->e);
    clock_set(f->clock, T0 + 5 * 3600 + 1800);
    f->e = open_engine(f);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);

    assert_int_equal(runs(f->e, "hourly"), 1);                 /* not five */
    assert_int_equal(next_at(f->e, "hourly"), T0 + 6 * 3600);  /* the next slot after now */
    assert_int_equal(runs(f->e, "every6"), 0);                 /* six hours not yet passed */

    /* a second pass at the same instant runs nothing more */
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);
    assert_int_equal(runs(f->e, "hourly"), 1);
}

static void test_advance_visits_every_slot(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(engine_advance(f->e, 5 * 3600 + 1800), 0);
    assert_int_equal(runs(f->e, "hourly"), 5);
    assert_int_equal(runs(f->e, "every6"), 0);
    assert_int_equal(engine_advance(f->e, 3600), 0);
    assert_int_equal(runs(f->e, "hourly"), 6);
    assert_int_equal(runs(f->e, "every6"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_downtime_runs_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_advance_visits_every_slot, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clock_shutdown();
    return rc;
}
