/* Unit tests for the hand-over of parsed events (event.h): an NDJSON ingest
 * keeps the trees of the events it stored and processing takes them, with
 * the same result as parsing the stored body (customer fields, lines, what
 * a journey sees); a write by another connection after the hand-over makes
 * processing read the stored body instead; an ingest inside a caller's
 * transaction, or with no room (handover_cap 0), keeps none. */
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
#include "event.h"
#include "store.h"
#include "util.h"
#include "fixture.h"

#define T0 1767225600   /* 2026-01-01T00:00:00Z */

/* The journey tags the customer with what it saw of the event. */
static const char SCRIPT[] =
    "journey \"seen\" { on = \"order.paid\", run = function(c, ev)\n"
    "  c:tag(\"total_\" .. math.floor(ev.total) .. \"_\" .. ev.items[1].sku .. \"_\" .. ev.id) end }\n";

static const char LINES[] =
    "{\"id\":\"p1\",\"type\":\"order.paid\",\"customer\":\"c1\",\"at\":1767225000,\"order\":\"o1\","
    "\"items\":[{\"sku\":\"S1\",\"category\":\"k1\",\"qty\":2,\"price\":5}],\"total\":10}\n"
    "{\"id\":\"p2\",\"type\":\"order.paid\",\"customer\":\"c2\",\"at\":1767225001,\"order\":\"o2\","
    "\"items\":[{\"sku\":\"S2\",\"qty\":1,\"price\":20}],\"total\":20}\n"
    "{\"id\":\"p3\",\"type\":\"order.paid\",\"customer\":\"c1\",\"at\":1767225002,\"order\":\"o3\","
    "\"items\":[{\"sku\":\"S1\",\"category\":\"k1\",\"qty\":1,\"price\":5}],\"total\":30}\n";

static void no_reject(void *ud, long line, const char *reason)
{
    (void)ud;
    fail_msg("line %ld rejected: %s", line, reason);
}

static int setup(void **state)
{
    *state = fixture_open("handover", T0, "{\"synchronous\": \"normal\", \"quiet_hours\": false}", SCRIPT);
    return 0;
}

static int teardown(void **state)
{
    fixture_close(*state);
    return 0;
}

static int64_t count(engine *e, const char *sql)
{
    store_stmt *s = store_sql(e->st, sql);
    int64_t n = store_step(s) == STORE_ROW ? store_col_int(s, 0) : -1;
    store_reset(s);
    return n;
}

static void ingest(engine *e, const char *lines)
{
    struct ingest_report rep;
    assert_int_equal(event_ingest_ndjson(e, lines, strlen(lines), no_reject, NULL, &rep), 0);
    assert_int_equal(rep.rejected, 0);
}

/* What processing wrote of LINES, whichever way it read the events. */
static void check_processed(engine *e, int first_total)
{
    assert_int_equal(count(e, "SELECT orders_count FROM customers WHERE id = 'c1'"), 2);
    assert_int_equal(count(e, "SELECT CAST(total_spent AS INTEGER) FROM customers WHERE id = 'c1'"),
                     first_total + 30);
    assert_int_equal(count(e, "SELECT CAST(total_spent AS INTEGER) FROM customers WHERE id = 'c2'"), 20);
    assert_int_equal(count(e, "SELECT COUNT(*) FROM order_items"), 3);
    assert_int_equal(count(e, "SELECT orders FROM bought WHERE customer = 'c1' AND kind = 0 AND key = 'S1'"), 2);
    assert_int_equal(count(e, "SELECT COUNT(*) FROM bought WHERE customer = 'c1' AND kind = 1 AND key = 'k1'"), 1);
    assert_int_equal(count(e, "SELECT customers FROM bought_counts WHERE kind = 0 AND key = 'S1'"), 1);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'c1' AND tag = 'total_%d_S1_p1'",
             first_total);
    assert_int_equal(count(e, sql), 1);
    assert_int_equal(count(e, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'c1' AND tag = 'total_30_S1_p3'"), 1);
    assert_int_equal(count(e, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'c2' AND tag = 'total_20_S2_p2'"), 1);
}

static void test_processing_takes_the_ingested_trees(void **state)
{
    struct fixture *f = *state;
    ingest(f->e, LINES);
    assert_int_equal(event_handover_held(f->e), 3);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 3);
    assert_int_equal(event_handover_held(f->e), 0);
    check_processed(f->e, 10);
    /* a duplicate is not stored, so nothing is held for it */
    ingest(f->e, "{\"id\":\"p1\",\"type\":\"order.paid\",\"customer\":\"c1\",\"total\":10}\n");
    assert_int_equal(event_handover_held(f->e), 0);
}

/* Another connection rewrites event 1's body (to the same length) after the
 * hand-over: processing must read what is stored, not the tree it held. */
static void test_another_writer_drops_what_is_held(void **state)
{
    struct fixture *f = *state;
    ingest(f->e, LINES);
    assert_int_equal(event_handover_held(f->e), 3);
    char *err = NULL;
    store *other = store_open(f->path, NULL, &err);
    assert_non_null(other);
    store_stmt *s = store_sql(other, "UPDATE events SET body = replace(body, '\"total\":10}', '\"total\":70}')"
                                     " WHERE id = 'p1'");
    assert_int_equal(store_run(s), 0);
    assert_int_equal(store_changes(other), 1);
    store_close(other);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 3);
    assert_int_equal(event_handover_held(f->e), 0);
    check_processed(f->e, 70);
}

static void test_nested_or_capped_ingest_keeps_none(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_begin(f->e->st), 0);
    ingest(f->e, LINES);
    assert_int_equal(event_handover_held(f->e), 0);   /* the caller may still roll it back */
    assert_int_equal(store_rollback(f->e->st), 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM events"), 0);
    f->e->handover_cap = 0;
    ingest(f->e, LINES);
    assert_int_equal(event_handover_held(f->e), 0);
    f->e->handover_cap = EVENT_HANDOVER_BYTES;
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 3);
    check_processed(f->e, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_processing_takes_the_ingested_trees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_another_writer_drops_what_is_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_or_capped_ingest_keeps_none, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
