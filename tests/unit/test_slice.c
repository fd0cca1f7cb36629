/* Unit tests for engine_run_slice (engine.h): the due work `tend run` does
 * in slices. A slice stops when its budget is spent and says work is left;
 * messages sent by the instances a slice woke leave at the end of that
 * slice, while the rest of the drain waits; a slice cut short in one kind
 * of work lets the other kinds move before it resumes; and slices run until
 * nothing is left end where a whole pass (engine_run_due) ends; the daily
 * lifecycle sweep, cut into windows of time, re-derives everyone who
 * crossed a threshold in the day; a long drain of due wakes checkpoints on
 * the store's thread until its claims come back short; messages due at
 * once leave in batches fitted to the slice. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "customer.h"
#include "engine.h"
#include "event.h"
#include "instance.h"
#include "util.h"
#include "fixture.h"

#define T0 1767225600   /* 2026-01-01T00:00:00Z */
#define JOBS 2000
#define MAX_SLICES 200000   /* bounds every loop of slices */

static const char SCRIPT[] =
    "template \"done\" { category = \"transactional\", sms = \"done\" }\n"
    "journey \"job\" { on = \"job.add\", run = function(c) wait(minutes(1)); send(\"sms\", c, \"done\") end }\n"
    "journey \"note\" { on = \"note.add\", run = function(c) wait(days(1)) end }\n";

static int setup(void **state)
{
    *state = fixture_open("slice", T0, "{\"synchronous\": \"normal\", \"quiet_hours\": false, \"unknown_customers\": \"create\"}", SCRIPT);
    return 0;
}

/* delivery_batch as large as the whole backlog: a pass may look at every
 * due message at once, a slice may not */
static int setup_wide_batch(void **state)
{
    *state = fixture_open("slice-wide", T0, "{\"synchronous\": \"normal\", \"quiet_hours\": false,"
                          " \"unknown_customers\": \"create\", \"delivery_batch\": 2000}", SCRIPT);
    return 0;
}

static int teardown(void **state)
{
    fixture_close(*state);
    return 0;
}

static void add_events(engine *e, const char *type, const char *prefix, int n)
{
    assert_int_equal(store_begin(e->st), 0);
    for (int i = 0; i < n; i++) {
        char json[160], err[256] = "";
        snprintf(json, sizeof json, "{\"type\":\"%s\",\"customer\":\"%s%d\"}", type, prefix, i);
        cJSON *ev = cJSON_Parse(json);
        struct event_result res;
        if (event_accept(e, ev, &res, err, sizeof err) != 0)
            fail_msg("event_accept: %s", err);
        cJSON_Delete(ev);
    }
    assert_int_equal(store_commit(e->st), 0);
}

static int64_t count(engine *e, const char *sql)
{
    store_stmt *s = store_sql(e->st, sql);
    int64_t n = store_step(s) == STORE_ROW ? store_col_int(s, 0) : -1;
    store_reset(s);
    return n;
}

#define TIMERS_LEFT(e) count(e, "SELECT COUNT(*) FROM timers WHERE instance IN (SELECT id FROM instances WHERE journey = 'job')")
#define SENT(e) count(e, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'")
#define EVENTS_LEFT(e) count(e, "SELECT COUNT(*) FROM events WHERE seq > (SELECT value FROM meta WHERE key = 'events_cursor')")

/* Slices of 1 ms until one says nothing is left (at most MAX_SLICES):
 * how many ran. */
static int slices_to_the_end(struct fixture *f)
{
    int more = 1, slices = 0;
    while (more && slices < MAX_SLICES) {
        assert_true(engine_run_slice(f->e, engine_now(f->e), 1.0, &more) >= 0);
        slices++;
    }
    assert_int_equal(more, 0);
    return slices;
}

/* JOBS instances parked, all due one minute later; the clock is then. */
static void park_jobs(struct fixture *f)
{
    add_events(f->e, "job.add", "j", JOBS);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= JOBS);
    assert_int_equal(TIMERS_LEFT(f->e), JOBS);
    clock_set(f->clock, T0 + 61);
}

static void test_a_drain_is_cut_and_its_messages_leave_between_slices(void **state)
{
    struct fixture *f = *state;
    park_jobs(f);
    int more = 0;
    assert_true(engine_run_slice(f->e, engine_now(f->e), 1.0, &more) > 0);
    assert_int_equal(more, 1);
    int64_t left = TIMERS_LEFT(f->e), sent = SENT(f->e);
    assert_true(left > 0 && left < JOBS);
    /* what the slice woke has sent, and those messages left already */
    assert_true(sent > 0 && sent <= JOBS - left);
    assert_true(1 + slices_to_the_end(f) > 2);
    assert_int_equal(TIMERS_LEFT(f->e), 0);
    assert_int_equal(SENT(f->e), JOBS);
    /* nothing is left for a whole pass either */
    assert_int_equal(engine_run_due(f->e, engine_now(f->e)), 0);
}

/* A long drain (claims that come back full, back to back) checkpoints on
 * the store's thread; its last, short claim gives checkpoints back to the
 * committing connection; a claim of a few due wakes never takes them. */
static void test_a_long_drain_checkpoints_aside_until_it_ends(void **state)
{
    struct fixture *f = *state;
    park_jobs(f);
    assert_int_equal(store_checkpoint_is_aside(f->e->st), 0);
    assert_int_equal(instance_run_due(f->e, engine_now(f->e), 500), 500);
    assert_int_equal(store_checkpoint_is_aside(f->e->st), 0);   /* one full claim is not a drain yet */
    assert_int_equal(instance_run_due(f->e, engine_now(f->e), 500), 500);
    assert_int_equal(store_checkpoint_is_aside(f->e->st), 1);
    assert_int_equal(instance_run_due(f->e, engine_now(f->e), 500), 500);
    assert_int_equal(store_checkpoint_is_aside(f->e->st), 1);
    assert_int_equal(instance_run_due(f->e, engine_now(f->e), 600), 500);   /* short: the drain ends */
    assert_int_equal(store_checkpoint_is_aside(f->e->st), 0);
    assert_int_equal(TIMERS_LEFT(f->e), 0);
    /* a few wakes due together, claimed at once: never aside */
    add_events(f->e, "note.add", "n", 20);
    assert_true(engine_run_due(f->e, engine_now(f->e)) > 0);
    clock_set(f->clock, engine_now(f->e) + TEND_DAY);
    assert_int_equal(instance_run_due(f->e, engine_now(f->e), 500), 20);
    assert_int_equal(store_checkpoint_is_aside(f->e->st), 0);
}

static void test_a_stage_cut_short_lets_the_others_move(void **state)
{
    struct fixture *f = *state;
    park_jobs(f);
    add_events(f->e, "note.add", "n", JOBS);   /* a backlog besides the due wakes */
    int more = 1, slices = 0;
    while (more && slices < MAX_SLICES && (TIMERS_LEFT(f->e) == JOBS || EVENTS_LEFT(f->e) == JOBS)) {
        assert_true(engine_run_slice(f->e, engine_now(f->e), 1.0, &more) >= 0);
        slices++;
    }
    /* both moved before either was done */
    assert_true(TIMERS_LEFT(f->e) > 0 && TIMERS_LEFT(f->e) < JOBS);
    assert_true(EVENTS_LEFT(f->e) > 0 && EVENTS_LEFT(f->e) < JOBS);
    while (more && slices < MAX_SLICES) {
        assert_true(engine_run_slice(f->e, engine_now(f->e), 1.0, &more) >= 0);
        slices++;
    }
    assert_int_equal(more, 0);
    assert_int_equal(TIMERS_LEFT(f->e), 0);
    assert_int_equal(EVENTS_LEFT(f->e), 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE journey = 'note'"), JOBS);
}

/* JOBS messages due at once on a channel written in the pass (the sms
 * channel here has no provider: its messages are written where they are
 * delivered) leave in batches fitted to the slice, not delivery_batch at
 * a time (2000 such messages held a loop for about 40 ms), and all leave. */
static void test_due_messages_leave_in_batches_fitted_to_the_slice(void **state)
{
    struct fixture *f = *state;
    park_jobs(f);
    assert_int_equal(instance_run_due(f->e, engine_now(f->e), JOBS), JOBS);   /* woken, not delivered */
    assert_int_equal(SENT(f->e), 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM outbox WHERE status = 'queued'"), JOBS);
    int more = 0;
    assert_true(engine_run_slice(f->e, engine_now(f->e), 1.0, &more) > 0);
    assert_int_equal(more, 1);
    int64_t first = SENT(f->e);
    assert_true(first > 0 && first < JOBS / 4);
    assert_true(1 + slices_to_the_end(f) > 4);
    assert_int_equal(SENT(f->e), JOBS);
}

/* 300 customers with one order each, their last one spread over a day so
 * that each turns 90 days old (silent) during the day after T0. */
static void test_a_sweep_in_windows_reaches_everyone_who_crossed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_begin(f->e->st), 0);
    for (int i = 0; i < 300; i++) {
        char json[200], err[256] = "";
        snprintf(json, sizeof json, "{\"id\":\"s%d\",\"orders_count\":1,\"last_order_at\":%lld}", i,
                 (long long)(T0 - 90 * TEND_DAY + 60 + i * 280));
        cJSON *c = cJSON_Parse(json);
        int created = 0;
        if (customer_upsert(f->e, c, 0, &created, err, sizeof err) != 0)
            fail_msg("customer_upsert: %s", err);
        cJSON_Delete(c);
    }
    assert_int_equal(store_commit(f->e->st), 0);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);   /* the sweep's clock starts */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE lifecycle = 'silent'"), 0);
    clock_set(f->clock, T0 + TEND_DAY + 1);
    slices_to_the_end(f);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE lifecycle = 'silent'"), 300);
    assert_int_equal(count(f->e, "SELECT value FROM meta WHERE key = 'lifecycle_swept'"), T0 + TEND_DAY + 1);
    assert_int_equal(count(f->e, "SELECT value FROM meta WHERE key = 'lifecycle_sweep_to'"), 0);
    /* and the next is a day away */
    assert_int_equal(engine_next_due(f->e), T0 + 2 * TEND_DAY + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_drain_is_cut_and_its_messages_leave_between_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_long_drain_checkpoints_aside_until_it_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stage_cut_short_lets_the_others_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_sweep_in_windows_reaches_everyone_who_crossed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_due_messages_leave_in_batches_fitted_to_the_slice, setup_wide_batch, teardown),
    };
    return cmocka_run_group_tests_name("slice", tests, NULL, NULL);
}
