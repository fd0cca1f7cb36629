/* Unit tests for the kept gauges of /metrics (schema.c, migration
 * "tick_counts"): instance_counts and outbox_counts start from a count of
 * what an older store holds, follow every insert, state or status change
 * and delete made in a committed transaction, and nothing of a rolled-back
 * transaction or savepoint. The test is that they always equal a GROUP BY
 * of the big tables, which is what /metrics showed before. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "instance.h"
#include "schema.h"
#include "store.h"

static char *temp_db(void)
{
    char *path = strdup("/tmp/tend_test_counts_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return path;
}

static void remove_db(char *path)
{
    store_remove(path);   /* the file and its -wal, -shm and -journal */
    free(path);
}

static void exec_ok(store *st, const char *sql)
{
    if (store_exec(st, sql) != 0)
        fail_msg("%s: %s", sql, store_errmsg(st));
}

/* Every group of the scan has its kept count, and no other non-zero count
 * is kept. */
static void assert_counts_match(store *st, const char *scan, const char *kept, const char *nonzero)
{
    char sql[512];
    int groups = 0;
    store_stmt *s = store_prepare(st, scan);
    assert_non_null(s);
    while (store_step(s) == STORE_ROW) {
        int two = store_col_count(s) == 3;
        snprintf(sql, sizeof sql, kept, store_col_text(s, 0), two ? store_col_text(s, 1) : "");
        store_stmt *k = store_prepare(st, sql);
        assert_non_null(k);
        int64_t n = store_step(k) == STORE_ROW ? store_col_int(k, 0) : -1;
        store_finalize(k);
        if (n != store_col_int(s, two ? 2 : 1))
            fail_msg("%s: kept %lld, counted %lld", sql, (long long)n, (long long)store_col_int(s, two ? 2 : 1));
        groups++;
    }
    store_finalize(s);
    s = store_prepare(st, nonzero);
    assert_non_null(s);
    assert_int_equal(store_step(s), STORE_ROW);
    assert_int_equal(store_col_int(s, 0), groups);
    store_finalize(s);
}

static void assert_all_match(store *st)
{
    assert_counts_match(st, "SELECT journey, state, COUNT(*) FROM instances GROUP BY journey, state",
                        "SELECT n FROM instance_counts WHERE journey = '%s' AND state = '%s'",
                        "SELECT COUNT(*) FROM instance_counts WHERE n <> 0");
    assert_counts_match(st, "SELECT status, COUNT(*) FROM outbox GROUP BY status",
                        "SELECT n FROM outbox_counts WHERE status = '%s'%s",
                        "SELECT COUNT(*) FROM outbox_counts WHERE n <> 0");
}

static const char add_instance[] =
    "INSERT INTO instances (journey, version, customer, state, started_at) VALUES ('%s', 'v1', 'c%d', '%s', 1)";
static const char add_message[] =
    "INSERT INTO outbox (customer, channel, category, body, status, created_at, idem_key)"
    " VALUES ('c%d', 'sms', 'transactional', '{}', '%s', 1, 'k%d')";

static void add(store *st, const char *fmt, const char *a, int i, const char *b)
{
    char sql[400];
    if (fmt == add_instance)
        snprintf(sql, sizeof sql, fmt, a, i, b);
    else
        snprintf(sql, sizeof sql, fmt, i, b, i);
    exec_ok(st, sql);
}

static int migration_index(const char *name)
{
    for (int i = 0; i < schema_migration_count; i++)
        if (strcmp(schema_migrations[i].name, name) == 0)
            return i;
    fail_msg("no migration named %s", name);
    return -1;
}

/* A store from before the migration: its rows are counted once, when it
 * opens with this tend. */
static void test_counts_start_from_what_an_older_store_holds(void **state)
{
    (void)state;
    char *path = temp_db(), *err = NULL;
    store *st = store_open_with(path, NULL, schema_migrations, migration_index("tick_counts"), &err);
    assert_non_null(st);
    exec_ok(st, "BEGIN");
    for (int i = 0; i < 30; i++)
        add(st, add_instance, i % 3 ? "welcome" : "winback", i, i % 4 ? "waiting" : "done");
    for (int i = 0; i < 20; i++)
        add(st, add_message, "", i, i % 5 ? "sent" : "queued");
    exec_ok(st, "COMMIT");
    store_close(st);
    st = store_open(path, NULL, &err);
    assert_non_null(st);
    assert_all_match(st);
    store_close(st);
    remove_db(path);
}

/* Inserts, state and status changes (and changes that keep them), deletes;
 * a savepoint rolled back inside a committed batch; a whole batch rolled
 * back. */
static void test_counts_follow_committed_changes_only(void **state)
{
    (void)state;
    char *path = temp_db(), *err = NULL;
    store *st = store_open(path, NULL, &err);
    assert_non_null(st);
    assert_int_equal(store_begin(st), 0);
    for (int i = 0; i < 40; i++)
        add(st, add_instance, i % 2 ? "welcome" : "winback", i, "waiting");
    for (int i = 0; i < 40; i++)
        add(st, add_message, "", i, "queued");
    exec_ok(st, "UPDATE instances SET state = 'done' WHERE id % 3 = 0");
    exec_ok(st, "UPDATE instances SET step = step + 1, state = state WHERE id % 2 = 0");
    exec_ok(st, "UPDATE instances SET journey = 'renamed' WHERE id % 7 = 0");
    exec_ok(st, "UPDATE outbox SET status = 'sending' WHERE id % 2 = 0");
    exec_ok(st, "UPDATE outbox SET status = 'sent' WHERE status = 'sending' AND id % 4 = 0");
    exec_ok(st, "DELETE FROM instances WHERE id % 5 = 0");
    exec_ok(st, "DELETE FROM outbox WHERE id % 6 = 0");
    assert_int_equal(store_begin(st), 0);   /* a savepoint */
    exec_ok(st, "UPDATE instances SET state = 'failed'");
    exec_ok(st, "DELETE FROM outbox");
    assert_int_equal(store_rollback(st), 0);
    assert_int_equal(store_commit(st), 0);
    assert_all_match(st);

    assert_int_equal(store_begin(st), 0);
    exec_ok(st, "UPDATE instances SET state = 'cancelled' WHERE state = 'waiting'");
    add(st, add_message, "", 99, "dead");
    assert_int_equal(store_rollback(st), 0);
    assert_all_match(st);
    store_close(st);
    remove_db(path);
}

/* The ends tend counts itself (schema.c, migration wake6_counts: the
 * trigger leaves waiting -> done / failed / exited to the writer): ends in
 * a due batch (write_ended, several journeys and states in one batch) and
 * outside one (an event's wake, persist), beside a conversion and a by-hand
 * end the trigger still counts. */
static void test_counts_follow_the_ends_tend_writes(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("counts", 1767225600, "{\"synchronous\": \"normal\"}",
        "journey \"a\" { run = function(c)\n"
        "  wait(3600)\n"
        "  if c.id:sub(1, 1) == \"f\" then error(\"boom\") end\n"
        "  if c.id:sub(1, 1) == \"x\" then exit(\"left\") end\n"
        "end }\n"
        "journey \"b\" { goal = { event = \"paid\" }, run = function(c) wait(3600) end }\n"
        "journey \"w\" { run = function(c) wait_for(\"ping\") end }\n");
    char err[200], sql[96];
    const char *starts[][2] = {{"a", "d1"}, {"a", "f1"}, {"a", "x1"}, {"a", "d2"}, {"b", "d3"}, {"b", "d4"},
                               {"b", "p1"}, {"w", "w1"}, {"w", "w2"}, {"a", "h1"}};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
        assert_true(instance_start(f->e, starts[i][0], starts[i][1], NULL, 1, err, sizeof err) > 0);
    store *st = f->e->st;
    assert_all_match(st);
    cJSON *paid = cJSON_Parse("{\"type\": \"paid\", \"customer\": \"p1\"}");
    assert_int_equal(instance_route_event(f->e, "p1", "paid", engine_now(f->e), paid), 0);   /* converted */
    cJSON_Delete(paid);
    cJSON *ping = cJSON_Parse("{\"type\": \"ping\", \"customer\": \"w1\"}");
    assert_int_equal(instance_route_event(f->e, "w1", "ping", engine_now(f->e), ping), 0);   /* done, no batch */
    cJSON_Delete(ping);
    /* by hand, as a tend end looks but for its label: the trigger counts it */
    exec_ok(st, "UPDATE instances SET state = 'done', ended_at = 1 WHERE customer = 'h1'");
    assert_all_match(st);
    clock_set(f->clock, engine_now(f->e) + 3600);
    int woken = 0, k;
    while ((k = instance_run_due(f->e, engine_now(f->e), 100)) > 0)
        woken += k;
    /* d1 f1 x1 d2 of a, d3 d4 of b in one batch, and h1's timer (its wake finds it ended) */
    assert_int_equal(woken, 7);
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM instances WHERE state = '%s'",
                 i == 0 ? "done" : i == 1 ? "failed" : "exited");
        store_stmt *c = store_prepare(st, sql);
        assert_non_null(c);
        assert_int_equal(store_step(c), STORE_ROW);
        assert_int_equal(store_col_int(c, 0), i == 0 ? 6 : 1);   /* done: d1 d2 d3 d4 w1 h1 */
        store_finalize(c);
    }
    assert_all_match(st);
    fixture_close(f);
}

/* The starts tend counts itself (schema.c, migration add8_start_counts:
 * a page of first runs is written with counted = 1 and counted per state by
 * its writer): one starter's 150 first runs (pages of 64, 64 and 22, in
 * statements of 64, 64, 16, 4 and 2 rows) that wait, end, fail or exit in
 * the same page, beside a start that writes its row at once and an insert
 * by hand, both counted by the trigger. */
static void test_counts_follow_the_starts_tend_writes(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("counts_starts", 1767225600, "{\"synchronous\": \"normal\"}",
        "journey \"s\" { run = function(c)\n"
        "  local k = tonumber(c.id:sub(2)) % 4\n"
        "  if k == 1 then return end\n"
        "  if k == 2 then error(\"boom\") end\n"
        "  if k == 3 then exit(\"left\") end\n"
        "  wait(3600)\n"
        "end }\n"
        "journey \"o\" { once = true, run = function(c) wait(3600) end }\n");
    char err[200], id[16];
    struct instance_starter st;
    assert_int_equal(instance_starter_init(f->e, &st, "s", NULL, 1, err, sizeof err), 0);
    for (int i = 0; i < 150; i++) {
        snprintf(id, sizeof id, "c%d", i);
        assert_true(instance_starter_start(f->e, &st, id, err, sizeof err) > 0);
    }
    assert_int_equal(instance_starter_free(&st), 0);
    store *st_ = f->e->st;
    assert_all_match(st_);
    /* a start that does not keep its row (once) goes through the trigger */
    assert_true(instance_start(f->e, "o", "c1", NULL, 1, err, sizeof err) > 0);
    add(st_, add_instance, "s", 999, "waiting");   /* by hand: counted NULL */
    assert_all_match(st_);
    store_stmt *c = store_prepare(st_, "SELECT COUNT(*) FROM instances WHERE journey = 's' AND counted = 1");
    assert_non_null(c);
    assert_int_equal(store_step(c), STORE_ROW);
    assert_int_equal(store_col_int(c, 0), 150);
    store_finalize(c);
    fixture_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_start_from_what_an_older_store_holds),
        cmocka_unit_test(test_counts_follow_committed_changes_only),
        cmocka_unit_test(test_counts_follow_the_ends_tend_writes),
        cmocka_unit_test(test_counts_follow_the_starts_tend_writes),
    };
    return cmocka_run_group_tests_name("counts", tests, NULL, NULL);
}
