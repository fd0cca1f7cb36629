/* Unit tests for the tags a due pass keeps back (customer.h:
 * customer_tags_keep): the rows its c:tag calls add are written many to a
 * statement, yet every read and write after a c:tag, in the same run or a
 * later wake of the same batch, sees the store as if each tag had been
 * written at its c:tag: the same rows, with their customer's
 * last_order_at, an untag after a tag leaves none, and a batch of more
 * tags than a page holds writes them all. And the claim of a due batch in
 * which an instance has two timers: it wakes once. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_tags_are_seen_by_what_comes_after),
        cmocka_unit_test(test_kept_tags_past_a_page_are_all_written),
        cmocka_unit_test(test_a_stale_timer_wakes_its_instance_once),
    };
    return cmocka_run_group_tests_name("kept_tags", tests, NULL, NULL);
}
