/* Unit tests for what an event does to its customer's row
 * (customer_apply_event) when events for new and known customers follow
 * one another in a batch: after an event that created its customer, the
 * next event's INSERT is tried before any read, so a known customer that
 * comes next (one of the store's, or one the batch created a moment ago)
 * must still be read and updated, its zone read for its activity hour, and
 * a new one after a known one created as before. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "fixture.h"
#include "store.h"

#define T0 1767225600   /* 2026-01-01 00:00 UTC: 09:00 in Tokyo */

static const char SCRIPT[] =
    "journey \"w\" { on = \"signup\", run = function(c) wait(days(1)) end }\n";

static void reject(void *ud, long line, const char *reason)
{
    (void)ud;
    fail_msg("line %ld rejected: %s", line, reason);
}

static void test_known_and_new_customers_in_turn(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("custev", T0, "{\"quiet_hours\": false, \"unknown_customers\": \"create\"}",
                                     SCRIPT);
    store *st = f->e->st;
    fixture_exec(st, "INSERT INTO customers (id, first_seen_at, first_order_at, last_order_at, last_active_at,"
                " orders_count, total_spent, timezone) VALUES ('k1', 100, 200, 300, 300, 2, 5, 'Asia/Tokyo')");
    static const char events[] =
        "{\"id\":\"e1\",\"type\":\"order.paid\",\"customer\":\"n1\",\"total\":10}\n"
        "{\"id\":\"e2\",\"type\":\"signup\",\"customer\":\"n2\"}\n"
        "{\"id\":\"e3\",\"type\":\"order.paid\",\"customer\":\"k1\",\"total\":7}\n"
        "{\"id\":\"e4\",\"type\":\"order.paid\",\"customer\":\"n3\",\"total\":1}\n"
        "{\"id\":\"e5\",\"type\":\"signup\",\"customer\":\"n4\"}\n"
        "{\"id\":\"e6\",\"type\":\"order.paid\",\"customer\":\"n4\",\"total\":2}\n"
        "{\"id\":\"e7\",\"type\":\"signup\",\"customer\":\"k1\"}\n";
    struct ingest_report rep;
    assert_int_equal(event_ingest_ndjson(f->e, events, strlen(events), reject, NULL, &rep), 0);
    assert_int_equal(rep.accepted, 7);
    assert_int_equal(event_process(f->e, 100), 7);

    /* the store's customer, right after one an event created, then again
     * after its own order: updated, never inserted over */
    assert_int_equal(fixture_count(st, "SELECT COUNT(*) FROM customers"), 5);
    assert_int_equal(fixture_count(st, "SELECT COUNT(*) FROM customers WHERE id = 'k1' AND orders_count = 3"
                                       " AND total_spent = 12 AND first_order_at = 200 AND last_order_at = 1767225600"
                                       " AND first_seen_at = 100 AND last_active_at = 1767225600"
                                       " AND timezone = 'Asia/Tokyo'"), 1);
    /* its activity in its own zone's hour, both events */
    assert_int_equal(fixture_count(st, "SELECT n FROM activity_hours WHERE customer = 'k1' AND hour = 9"), 2);
    /* new ones, each created with its event applied */
    assert_int_equal(fixture_count(st, "SELECT COUNT(*) FROM customers WHERE id IN ('n1', 'n3') AND orders_count = 1"
                                       " AND first_order_at = 1767225600 AND last_order_at = 1767225600"
                                       " AND first_seen_at = 1767225600 AND timezone IS NULL"), 2);
    assert_int_equal(fixture_count(st, "SELECT COUNT(*) FROM customers WHERE id = 'n1' AND total_spent = 10"), 1);
    assert_int_equal(fixture_count(st, "SELECT COUNT(*) FROM customers WHERE id = 'n2' AND orders_count = 0"
                                       " AND last_order_at IS NULL AND first_seen_at = 1767225600"), 1);
    /* created by its first event, updated by the next one */
    assert_int_equal(fixture_count(st, "SELECT COUNT(*) FROM customers WHERE id = 'n4' AND orders_count = 1"
                                       " AND total_spent = 2 AND last_order_at = 1767225600"), 1);
    assert_int_equal(fixture_count(st, "SELECT n FROM activity_hours WHERE customer = 'n4' AND hour = 0"), 2);
    assert_int_equal(fixture_count(st, "SELECT COUNT(*) FROM instances WHERE journey = 'w'"), 3);
    fixture_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_and_new_customers_in_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
