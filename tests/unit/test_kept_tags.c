/* Unit tests for the tags a due pass keeps back (customer.h:
 * customer_tags_keep): the rows its c:tag calls add are written many to a
 * statement, yet every read and write after a c:tag, in the same run or a
 * later wake of the same batch, sees the store as if each tag had been
 * written at its c:tag: the same rows, with their customer's
 * last_order_at, an untag after a tag leaves none, and a batch of more
 * tags than a page holds writes them all. And the claim of a due batch in
 * which an instance has two timers: it wakes once. And a pipelined drain
 * (instance_drain_due outside a transaction, its first claim full: a batch
 * replays while the commit before it is in flight, its writes held): the
 * rows it stores are those of the same batches run one transaction at a
 * time, and a failed commit fails the batch after it too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "customer.h"
#include "fixture.h"
#include "instance.h"
#include "store.h"

static void exec_ok(store *st, const char *sql)
{
    if (store_exec(st, sql) != 0)
        fail_msg("%s: %s", sql, store_errmsg(st));
}

static int64_t count(store *st, const char *sql)
{
    int64_t n = store_count(st, sql);
    if (n < 0)
        fail_msg("%s: %s", sql, store_errmsg(st));
    return n;
}

static void start(struct fixture *f, const char *journey, const char *customer)
{
    char err[200];
    if (instance_start(f->e, journey, customer, NULL, 1, err, sizeof err) <= 0)
        fail_msg("start %s for %s: %s", journey, customer, err);
}

static void wake_all(struct fixture *f, int max)
{
    clock_set(f->clock, engine_now(f->e) + 3600);
    int k;
    while ((k = instance_run_due(f->e, engine_now(f->e), max)) > 0)
        ;
    assert_int_equal(k, 0);
}

/* One batch: "tagger" tags k1, then "reader" (a later wake of the batch,
 * same customer) reads k1's tags; "self" reads its own tag back in the
 * run that added it; "flip" tags and untags; two taggers of k2 add one
 * row. */
static void test_kept_tags_are_seen_by_what_comes_after(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("kept_tags", 1767225600, "{\"synchronous\": \"normal\"}",
        "journey \"tagger\" { run = function(c) wait(3600) c:tag(\"seen\") wait(3600) end }\n"
        "journey \"reader\" { run = function(c)\n"
        "  wait(3600)\n"
        "  if c.tags.seen then c:tag(\"saw_it\") else c:tag(\"missed_it\") end\n"
        "  wait(3600)\n"
        "end }\n"
        "journey \"self\" { run = function(c)\n"
        "  wait(3600)\n"
        "  c:tag(\"mine\")\n"
        "  if c.tags.mine then c:tag(\"mine_seen\") end\n"
        "  wait(3600)\n"
        "end }\n"
        "journey \"flip\" { run = function(c) wait(3600) c:tag(\"gone\") c:untag(\"gone\") wait(3600) end }\n");
    store *st = f->e->st;
    exec_ok(st, "INSERT INTO customers (id, first_seen_at, last_order_at) VALUES ('k1', 1, 1767000000),"
                " ('k3', 1, 1767100000)");
    start(f, "tagger", "k1");
    start(f, "reader", "k1");
    start(f, "self", "k3");
    start(f, "flip", "k3");
    start(f, "tagger", "k2");
    start(f, "tagger", "k2");
    wake_all(f, 100);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE state = 'waiting' AND wake_at IS NOT NULL"), 6);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'k1' AND tag = 'seen'"
                               " AND last_order_at = 1767000000"), 1);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'k1' AND tag = 'saw_it'"
                               " AND last_order_at = 1767000000"), 1);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'missed_it'"), 0);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'k3'"
                               " AND tag IN ('mine', 'mine_seen') AND last_order_at = 1767100000"), 2);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'gone'"), 0);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'k2' AND tag = 'seen'"
                               " AND last_order_at IS NULL"), 1);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags"), 5);
    assert_null(f->e->kept_tags);   /* the pass let its keeping go */
    fixture_close(f);
}

/* More tags in one batch than a page of kept rows (CUSTOMER_KEPT_TAGS),
 * and a count that is no power of two: every one is written, each with its
 * customer's last_order_at. */
static void test_kept_tags_past_a_page_are_all_written(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("kept_tags", 1767225600, "{\"synchronous\": \"normal\"}",
        "journey \"tagger\" { run = function(c) wait(3600) c:tag(\"seen\") wait(3600) end }\n");
    store *st = f->e->st;
    int n = CUSTOMER_KEPT_TAGS * 2 + 7;
    char id[32], sql[160];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "m%03d", i);
        snprintf(sql, sizeof sql, "INSERT INTO customers (id, first_seen_at, last_order_at) VALUES ('%s', 1, %d)", id,
                 1000 + i);
        exec_ok(st, sql);
        start(f, "tagger", id);
    }
    wake_all(f, 1000);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'seen'"
                               " AND last_order_at = 1000 + CAST(substr(customer, 2) AS INTEGER)"), n);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE state = 'waiting' AND step = 3"), n);
    fixture_close(f);
}

/* A batch in which an instance has two timers (a stale one before its
 * own), so the claimed ids do not rise in claim order: the instance wakes
 * once, on its first timer (the second reads the row that wake left and
 * finds its wait not yet due), and the others of the batch as usual. */
static void test_a_stale_timer_wakes_its_instance_once(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("kept_tags", 1767225600, "{\"synchronous\": \"normal\"}",
        "journey \"tagger\" { run = function(c) wait(3600) c:tag(\"seen\") wait(3600) end }\n");
    store *st = f->e->st;
    start(f, "tagger", "s1");
    start(f, "tagger", "s2");
    start(f, "tagger", "s3");
    exec_ok(st, "INSERT INTO timers (wake_at, instance) SELECT wake_at - 60, id FROM instances WHERE customer = 's2'");
    assert_int_equal(count(st, "SELECT COUNT(*) FROM timers"), 4);
    wake_all(f, 100);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE state = 'waiting' AND step = 3"), 3);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE history LIKE '%tag %tag %'"), 0);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'seen'"), 3);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM timers t JOIN instances i ON i.id = t.instance"
                               " AND i.wake_at = t.wake_at"), 3);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM timers"), 3);
    fixture_close(f);
}

/* Journeys whose wakes wait again (with a tag), end, exit and wait for an
 * event, in a mix; `n` instances of each. */
static const char MIX[] =
    "journey \"park\" { run = function(c) wait(3600) c:tag(\"woken\") wait(3600) end }\n"
    "journey \"ender\" { run = function(c) wait(3600) c:tag(\"ended\") end }\n"
    "journey \"quitter\" { run = function(c) wait(3600) exit(\"enough\") end }\n"
    "journey \"listener\" { run = function(c) wait(3600) wait_for(\"order\", { timeout = 7200 }) end }\n";

static struct fixture *mix_open(int n)
{
    struct fixture *f = fixture_open("pipeline", 1767225600, "{\"synchronous\": \"normal\"}", MIX);
    static const char *const journeys[] = {"park", "ender", "quitter", "listener"};
    char id[32];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) {
            snprintf(id, sizeof id, "p%03d", i);
            start(f, journeys[(i + j) % 4], id);
        }
    return f;
}

/* Every stored row a wake writes, printed in one text to compare. */
static char *dump(store *st)
{
    static const char *const queries[] = {
        "SELECT group_concat(id || '|' || state || '|' || step || '|' || COALESCE(label, '-') || '|' ||"
        " COALESCE(wake_at, '-') || '|' || COALESCE(listen, '-') || '|' || COALESCE(history, '-') || '|' ||"
        " COALESCE(error, '-') || '|' || COALESCE(ended_at, '-'), char(10)) FROM (SELECT * FROM instances ORDER BY id)",
        "SELECT group_concat(wake_at || '|' || instance, ',') FROM (SELECT * FROM timers ORDER BY wake_at, instance)",
        "SELECT group_concat(customer || '|' || tag, ',') FROM (SELECT * FROM customer_tags ORDER BY customer, tag)",
        "SELECT group_concat(journey || '|' || state || '|' || n, ',')"
        " FROM (SELECT * FROM instance_counts ORDER BY journey, state)",
        "SELECT group_concat(customer || '|' || type || '|' || instance, ',')"
        " FROM (SELECT * FROM listeners ORDER BY customer, type, instance)",
    };
    strbuf b;
    strbuf_init(&b);
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        store_stmt *s = store_prepare(st, queries[i]);
        if (!s)
            fail_msg("%s: %s", queries[i], store_errmsg(st));
        if (store_step(s) == STORE_ROW && store_col_text(s, 0))
            strbuf_puts(&b, store_col_text(s, 0));
        store_finalize(s);
        strbuf_puts(&b, "\n--\n");
    }
    return strbuf_take(&b);
}

/* 4 x 37 instances woken 8 to a claim: outside a transaction the drain is
 * pipelined (19 batches, each but the first replayed while the commit
 * before it was in flight); instance_run_due in a transaction a claim, as
 * before. The stored rows are the same, byte for byte. */
static void test_a_pipelined_drain_stores_what_batches_one_by_one_store(void **state)
{
    (void)state;
    struct fixture *a = mix_open(37), *b = mix_open(37);
    clock_set(a->clock, engine_now(a->e) + 3600);
    assert_int_equal(instance_drain_due(a->e, engine_now(a->e), 8), 4 * 37);
    assert_int_equal(instance_drain_due(a->e, engine_now(a->e), 8), 0);
    clock_set(b->clock, engine_now(b->e) + 3600);
    int k, total = 0;
    do {
        assert_int_equal(store_begin(b->e->st), 0);
        k = instance_run_due(b->e, engine_now(b->e), 8);
        assert_true(k >= 0 && k <= 8);
        assert_int_equal(store_commit(b->e->st), 0);
        total += k;
    } while (k > 0);
    assert_int_equal(total, 4 * 37);
    char *da = dump(a->e->st), *db = dump(b->e->st);
    assert_string_equal(da, db);
    assert_int_equal(count(a->e->st, "SELECT COUNT(*) FROM instances WHERE journey = 'park' AND step = 3"
                                     " AND label IS NOT NULL AND length(label) < 40"), 37);
    /* the labels, as a wait's is written at its suspend (a wake's claim
     * and suspend do not change them) */
    assert_int_equal(count(a->e->st, "SELECT COUNT(*) FROM instances WHERE journey = 'park' AND step = 3"
                                     " AND label = 'wait 3600 (s.lua:1)'"), 37);
    assert_int_equal(count(a->e->st, "SELECT COUNT(*) FROM instances WHERE journey = 'listener'"
                                     " AND label = 'wait_for order (s.lua:4)'"), 37);
    free(da);
    free(db);
    fixture_close(a);
    fixture_close(b);
}

/* The commit of the second batch of a pipelined drain fails (a deferred
 * foreign key, checked at COMMIT, that a trigger breaks for one customer's
 * tag): the first batch stays stored, the second is rolled back, and so
 * is the third, which replayed while that commit was in flight; both are
 * due again, and once the fault is gone every instance wakes once. */
static void test_a_failed_commit_fails_the_batch_after_it_too(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("pipeline", 1767225600, "{\"synchronous\": \"normal\"}",
        "journey \"park\" { run = function(c) wait(3600) c:tag(\"woken\") wait(3600) end }\n");
    store *st = f->e->st;
    char id[32];
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "q%02d", i);
        start(f, "park", id);
    }
    exec_ok(st, "PRAGMA foreign_keys = ON");
    exec_ok(st, "CREATE TABLE t_parent (id TEXT PRIMARY KEY);"
                "CREATE TABLE t_child (x TEXT REFERENCES t_parent (id) DEFERRABLE INITIALLY DEFERRED);"
                "CREATE TRIGGER t_fault AFTER INSERT ON customer_tags WHEN NEW.customer = 'q05'"
                " BEGIN INSERT INTO t_child VALUES ('missing'); END;");
    clock_set(f->clock, engine_now(f->e) + 3600);
    assert_int_equal(instance_drain_due(f->e, engine_now(f->e), 4), -1);
    assert_false(store_in_batch(st));
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE step = 3"), 4);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE step = 3 AND customer < 'q04'"), 4);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'woken'"), 4);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM t_child"), 0);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM timers t JOIN instances i ON i.id = t.instance"
                               " AND i.wake_at = t.wake_at"), 12);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM timers WHERE wake_at <= 1767225600 + 3600"), 8);
    exec_ok(st, "DROP TRIGGER t_fault");
    assert_int_equal(instance_drain_due(f->e, engine_now(f->e), 4), 8);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE state = 'waiting' AND step = 3"), 12);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM instances WHERE history LIKE '%tag%tag%'"), 0);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'woken'"), 12);
    assert_int_equal(count(st, "SELECT COUNT(*) FROM timers"), 12);
    fixture_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_tags_are_seen_by_what_comes_after),
        cmocka_unit_test(test_kept_tags_past_a_page_are_all_written),
        cmocka_unit_test(test_a_stale_timer_wakes_its_instance_once),
        cmocka_unit_test(test_a_pipelined_drain_stores_what_batches_one_by_one_store),
        cmocka_unit_test(test_a_failed_commit_fails_the_batch_after_it_too),
    };
    return cmocka_run_group_tests_name("kept_tags", tests, NULL, NULL);
}
