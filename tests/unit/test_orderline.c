/* Unit tests for runtime/orderline.c and runtime/product.c, against their
 * headers: item checks name the item and the field; an order's lines are
 * stored once; counts are orders, not lines; a batch stores what one order
 * at a time would; the window reads the lines;
 * runs_out_at stacks purchases as documented; product upserts keep absent
 * fields, clear null ones and read CSV text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderline.h"
#include "product.h"
#include "util.h"

#define DAY 86400

static int setup(void **state)
{
    struct store_options o = {.memory = 1};
    char *err = NULL;
    store *st = store_open(":memory:", &o, &err);
    assert_non_null(st);
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    store_close(*state);
    return 0;
}

static void check_fails(const char *items, const char *want)
{
    cJSON *j = cJSON_Parse(items);
    assert_non_null(j);
    char err[300] = "";
    assert_int_equal(orderline_check(j, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("items %s: expected '%s' in '%s'", items, want, err);
    cJSON_Delete(j);
}

static void test_check_names_item_and_field(void **state)
{
    (void)state;
    check_fails("[{\"sku\":\"a\"},{\"qty\":1}]", "item 2: field 'sku' is required");
    check_fails("[{\"sku\":\"a\",\"qty\":\"2\"}]", "item 1 (sku a): field 'qty' must be a number above 0");
    check_fails("[{\"sku\":\"a\",\"qty\":-1}]", "field 'qty'");
    check_fails("[{\"sku\":\"a\",\"price\":\"1\"}]", "field 'price' must be a non-negative number");
    check_fails("[{\"sku\":1.5}]", "item 1: field 'sku' must be a string");
    check_fails("[{\"sku\":\"a\",\"name\":3}]", "field 'name' must be a string");
    check_fails("[3]", "item 1: must be an object");
    check_fails("{\"sku\":\"a\"}", "field 'items' must be a list");
    char err[100];
    cJSON *ok = cJSON_Parse("[{\"sku\":42,\"qty\":2,\"price\":0,\"category\":null}]");
    assert_int_equal(orderline_check(ok, err, sizeof err), 0);
    assert_int_equal(orderline_check(NULL, err, sizeof err), 0);
    cJSON_Delete(ok);
}

static int store_order(store *st, const char *customer, const char *order, tend_time at, const char *items)
{
    cJSON *j = cJSON_Parse(items);
    int n = orderline_store(st, customer, order, at, j);
    cJSON_Delete(j);
    return n;
}

static void test_lines_once_per_order_and_counts_are_orders(void **state)
{
    store *st = *state;
    const char *items = "[{\"sku\":\"B1\",\"qty\":2,\"category\":\"coffee\"},{\"sku\":\"B1\",\"qty\":1,\"category\":\"coffee\"},"
                        "{\"sku\":7,\"category\":\"tea\"}]";
    assert_int_equal(store_order(st, "c1", "o1", 1000, items), 3);
    assert_int_equal(store_order(st, "c1", "o1", 2000, items), 0);     /* the same order again */
    assert_int_equal(store_order(st, "c1", "o2", 5 * DAY, "[{\"sku\":\"B1\",\"qty\":4}]"), 1);
    struct orderline_bought b;
    assert_int_equal(orderline_bought(st, "c1", ORDERLINE_SKU, "B1", 0, &b), 0);
    assert_int_equal(b.count, 2);
    assert_true(b.qty == 7);
    assert_int_equal(b.last_at, 5 * DAY);
    assert_int_equal(orderline_bought(st, "c1", ORDERLINE_CATEGORY, "coffee", 0, &b), 0);
    assert_int_equal(b.count, 1);
    assert_int_equal(orderline_bought(st, "c1", ORDERLINE_SKU, "7", 0, &b), 0);
    assert_int_equal(b.count, 1);
    /* a window reads the lines */
    assert_int_equal(orderline_bought(st, "c1", ORDERLINE_SKU, "B1", 2 * DAY, &b), 0);
    assert_int_equal(b.count, 1);
    assert_true(b.qty == 4);
    assert_int_equal(orderline_bought(st, "c2", ORDERLINE_SKU, "B1", 0, &b), 0);
    assert_int_equal(b.count, 0);
    assert_int_equal(b.last_at, 0);
}

/* Every row of order_items and bought, as one text. */
static char *dump(store *st)
{
    static const char *const q[] = {
        "SELECT customer, order_id, line, sku, category, name, qty, price, at FROM order_items ORDER BY 1, 2, 3",
        "SELECT customer, kind, key, orders, qty, first_at, last_at FROM bought ORDER BY 1, 2, 3"};
    strbuf b;
    strbuf_init(&b);
    for (int k = 0; k < 2; k++) {
        store_stmt *s = store_sql(st, q[k]);
        assert_non_null(s);
        int cols = k ? 7 : 9;
        while (store_step(s) == STORE_ROW) {
            for (int i = 0; i < cols; i++)
                strbuf_printf(&b, "%s|", store_col_text(s, i) ? store_col_text(s, i) : "NULL");
            strbuf_putc(&b, '\n');
        }
    }
    return strbuf_take(&b);
}

/* A batch (what event processing writes at the end of its transaction)
 * leaves the same rows as storing its orders one at a time: an order id
 * seen before the batch or earlier in it counts nothing again, an sku
 * twice in one order counts that order once, a line without a category
 * makes no category fact, times out of order keep first/last right. */
static void test_batch_stores_as_one_by_one(void **state)
{
    store *one = *state;
    struct store_options o = {.memory = 1};
    char *err = NULL;
    store *batched = store_open(":memory:", &o, &err);
    assert_non_null(batched);
    static const char *const cats[] = {"\"category\":\"coffee\",", "\"category\":\"tea\",", ""};
    assert_int_equal(store_order(one, "c2", "o7", 50, "[{\"sku\":\"B1\"}]"), 1);
    assert_int_equal(store_order(batched, "c2", "o7", 50, "[{\"sku\":\"B1\"}]"), 1);
    orderline_batch *b = orderline_batch_new();
    int stored = 0;
    unsigned r = 12345;
    for (int i = 0; i < 300; i++) {
        char customer[8], order[8], items[600] = "[";
        r = r * 1103515245 + 12345;
        snprintf(customer, sizeof customer, "c%u", (r >> 8) % 5);
        snprintf(order, sizeof order, "o%u", (r >> 12) % 40);   /* repeats: the first wins */
        int n = 1 + (int)((r >> 16) % 4);
        for (int k = 0; k < n; k++) {
            r = r * 1103515245 + 12345;
            unsigned sku = (r >> 8) % 6;
            char item[120];
            snprintf(item, sizeof item, "%s{%s\"sku\":%s%u%s,\"qty\":%u%s}", k ? "," : "", cats[(r >> 12) % 3],
                     sku == 5 ? "" : "\"B", sku, sku == 5 ? "" : "\"", 1 + (r >> 14) % 3,
                     (r >> 16) % 2 ? ",\"price\":9.5,\"name\":\"N\"" : "");
            strcat(items, item);
        }
        strcat(items, "]");
        tend_time at = 1000 + (tend_time)((r >> 4) % 100000);
        int got = store_order(one, customer, order, at, items);
        assert_true(got >= 0);
        stored += got;
        cJSON *j = cJSON_Parse(items);
        assert_non_null(j);
        orderline_batch_add(b, customer, order, at, j);
        cJSON_Delete(j);
    }
    assert_int_equal(orderline_batch_flush(b, batched), stored);
    assert_int_equal(orderline_batch_lines(b), 0);
    assert_int_equal(orderline_batch_flush(b, batched), 0);
    orderline_batch_free(b);
    char *want = dump(one), *got = dump(batched);
    assert_true(strlen(want) > 1000);
    assert_string_equal(got, want);
    free(want);
    free(got);
    store_close(batched);
}

static void test_runs_out_at_stacks_purchases(void **state)
{
    store *st = *state;
    tend_time out = 0;
    assert_int_equal(orderline_runs_out_at(st, "c1", "B1", 10, &out), 0);
    store_order(st, "c1", "a", 0, "[{\"sku\":\"B1\",\"qty\":2}]");          /* supply to day 20 */
    assert_int_equal(orderline_runs_out_at(st, "c1", "B1", 10, &out), 1);
    assert_int_equal(out, 20 * DAY);
    store_order(st, "c1", "b", 5 * DAY, "[{\"sku\":\"B1\"}]");             /* still supplied: to day 30 */
    assert_int_equal(orderline_runs_out_at(st, "c1", "B1", 10, &out), 1);
    assert_int_equal(out, 30 * DAY);
    store_order(st, "c1", "c", 40 * DAY, "[{\"sku\":\"B1\",\"qty\":0.5}]"); /* ran out: from day 40, 5 days */
    assert_int_equal(orderline_runs_out_at(st, "c1", "B1", 10, &out), 1);
    assert_int_equal(out, 45 * DAY);
}

static void test_product_upsert_merges_and_checks(void **state)
{
    store *st = *state;
    char err[300];
    int created;
    cJSON *p = cJSON_Parse("{\"sku\":\"B1\",\"name\":\"Beans\",\"price\":59,\"usage_days\":10,\"related\":[\"F1\"]}");
    assert_int_equal(product_upsert(st, p, 0, 1, &created, err, sizeof err), 0);
    assert_true(created);
    cJSON_Delete(p);
    p = cJSON_Parse("{\"sku\":\"B1\",\"price\":\"49.5\",\"related\":\"F1| F2 ;\",\"name\":null}");
    assert_int_equal(product_upsert(st, p, 0, 2, &created, err, sizeof err), -1);   /* text is CSV's */
    assert_non_null(strstr(err, "field 'price' must be a non-negative number, got \"49.5\""));
    assert_int_equal(product_upsert(st, p, PRODUCT_TEXT_VALUES, 2, &created, err, sizeof err), 0);
    assert_false(created);
    cJSON_Delete(p);
    cJSON *row = product_json(st, "B1");
    char *text = cJSON_PrintUnformatted(row);
    assert_string_equal(text, "{\"sku\":\"B1\",\"price\":49.5,\"usage_days\":10,\"related\":[\"F1\",\"F2\"],\"updated_at\":2}");
    cJSON_free(text);
    cJSON_Delete(row);
    double usage = 0;
    assert_int_equal(product_usage_days(st, "B1", &usage), 1);
    assert_true(usage == 10);
    assert_int_equal(product_usage_days(st, "none", &usage), 0);
    assert_null(product_json(st, "none"));
    static const char *const bad[][2] = {
        {"{\"sku\":\"X\",\"usage_days\":0}", "field 'usage_days' must be a positive number of days"},
        {"{\"name\":\"x\"}", "field 'sku' is required"},
        {"{\"sku\":\"\"}", "field 'sku' must be a string"},
        {"{\"sku\":\"X\",\"colour\":1}", "unknown field 'colour'"},
        {"{\"sku\":\"X\",\"related\":[1]}", "field 'related' must be a list of skus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = cJSON_Parse(bad[i][0]);
        assert_int_equal(product_upsert(st, p, 0, 3, &created, err, sizeof err), -1);
        if (!strstr(err, bad[i][1]))
            fail_msg("%s: expected '%s' in '%s'", bad[i][0], bad[i][1], err);
        cJSON_Delete(p);
    }
    assert_null(product_json(st, "X"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_names_item_and_field),
        cmocka_unit_test_setup_teardown(test_lines_once_per_order_and_counts_are_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_stores_as_one_by_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_out_at_stacks_purchases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_product_upsert_merges_and_checks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
