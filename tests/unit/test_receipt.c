/* Unit tests for receipt_batch_accept_line (receipt.h): a receipt line of
 * a POST /v1/receipts batch is read without a JSON parse when it is a flat
 * object of plain strings and whole numbers, and handed to json_parse
 * otherwise. Either way it must be judged and stored exactly as the parsed
 * line is by receipt_accept: the same result, the same reason word for word,
 * the same message.<status> event and the same outbox row afterwards. */
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
#include "json.h"
#include "receipt.h"
#include "util.h"
#include "fixture.h"

#define T0 1767225600   /* 2026-01-01T00:00:00Z */

static int setup(void **state)
{
    struct fixture *f = fixture_open("receipt", T0, "{\"synchronous\": \"normal\"}", "-- no journeys\n");
    if (store_exec(f->e->st,
                   "INSERT INTO outbox (id, journey, customer, channel, template, category, body, status, created_at,"
                   " idem_key) VALUES"
                   " (1, 'j', 'c1', 'sms', 'hello', 'transactional', '{}', 'sent', 1767225600, 'k1'),"
                   " (2, NULL, 'c\"2', 'email', NULL, 'marketing', '{}', 'sent', 1767225600, 'k2')") != 0)
        fail_msg("seed: %s", store_errmsg(f->e->st));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_close(*state);
    return 0;
}

/* What a receipt left behind: the events stored and both outbox rows. */
static char *stored_state(engine *e)
{
    strbuf b;
    strbuf_init(&b);
    store_stmt *s = store_sql(e->st, "SELECT id, type, customer, at, body FROM events ORDER BY seq");
    while (store_step(s) == STORE_ROW)
        strbuf_printf(&b, "event %s %s %s %lld %s\n", store_col_text(s, 0), store_col_text(s, 1),
                      store_col_text(s, 2), (long long)store_col_int(s, 3), store_col_text(s, 4));
    s = store_sql(e->st, "SELECT id, delivered_at, opened_at, clicked_at, failed_at, receipt_reason FROM outbox"
                         " ORDER BY id");
    while (store_step(s) == STORE_ROW)
        strbuf_printf(&b, "outbox %lld %lld %lld %lld %lld %s\n", (long long)store_col_int(s, 0),
                      (long long)store_col_int(s, 1), (long long)store_col_int(s, 2),
                      (long long)store_col_int(s, 3), (long long)store_col_int(s, 4),
                      store_col_text(s, 5) ? store_col_text(s, 5) : "-");
    return strbuf_take(&b);
}

struct outcome {
    enum receipt_result res;
    char err[400];
    char *state;
};

/* Accepts line one way or the other in a transaction rolled back after. */
static void accept_as(engine *e, const char *line, int read_as_line, struct outcome *o)
{
    assert_int_equal(store_begin(e->st), 0);
    o->err[0] = 0;
    if (read_as_line) {
        struct receipt_batch b;
        receipt_batch_init(&b, e);
        o->res = receipt_batch_accept_line(&b, line, strlen(line), o->err, sizeof o->err);
        receipt_batch_free(&b);
    } else {
        cJSON *r = json_parse(line, strlen(line), o->err, sizeof o->err);
        o->res = r ? receipt_accept(e, r, o->err, sizeof o->err) : RECEIPT_INVALID;
        cJSON_Delete(r);
    }
    o->state = stored_state(e);
    assert_int_equal(store_rollback(e->st), 0);
}

struct line_case {
    const char *line;
    enum receipt_result expected;
};

static void same_as_parsed(engine *e, const char *line, enum receipt_result expected)
{
    struct outcome a, b;
    accept_as(e, line, 1, &a);
    accept_as(e, line, 0, &b);
    if (a.res != b.res || strcmp(a.err, b.err) || strcmp(a.state, b.state))
        fail_msg("%s\nread as a line: %d '%s'\n%s\nparsed: %d '%s'\n%s", line, a.res, a.err, a.state, b.res, b.err,
                 b.state);
    if (a.res != expected)
        fail_msg("%s: result %d, expected %d ('%s')", line, a.res, expected, a.err);
    free(a.state);
    free(b.state);
}

/* Flat objects of plain strings and whole numbers (a repeated name: the
 * first counts, as a lookup by name finds it). */
static const struct line_case PLAIN[] = {
    {"{\"key\":\"k1\",\"status\":\"delivered\",\"id\":\"r1\"}", RECEIPT_STORED},
    {"{\"message\":1,\"status\":\"opened\"}", RECEIPT_STORED},
    {" { \"message\" : 2 , \"status\" : \"clicked\" ,\t\"at\" : 1767225700 , \"reason\" : null } ", RECEIPT_STORED},
    {"{\"key\":\"k2\",\"status\":\"failed\",\"reason\":\"no route\",\"id\":7}", RECEIPT_STORED},
    {"{\"key\":\"k1\",\"status\":\"delivered\",\"at\":\"2026-01-01T08:00:00+08:00\",\"id\":null}", RECEIPT_STORED},
    {"{\"key\":\"k1\",\"status\":\"delivered\",\"id\":\"r1\",\"id\":\"r2\"}", RECEIPT_STORED},
    {"{\"message\":123456789012345,\"status\":\"delivered\"}", RECEIPT_UNKNOWN_MESSAGE},
    {"{\"key\":\"k9\",\"status\":\"delivered\"}", RECEIPT_UNKNOWN_MESSAGE},
    {"{\"key\":\"k1\",\"status\":\"lost\"}", RECEIPT_INVALID},
    {"{\"key\":\"k1\",\"message\":1,\"status\":\"delivered\"}", RECEIPT_INVALID},
    {"{\"message\":0,\"status\":\"delivered\"}", RECEIPT_INVALID},
    {"{\"message\":1,\"status\":\"delivered\",\"at\":999999999999999}", RECEIPT_INVALID},
    {"{\"key\":\"k1\",\"status\":\"delivered\",\"extra\":\"x\"}", RECEIPT_INVALID},
    {"{\"key\":\"\",\"status\":\"delivered\"}", RECEIPT_INVALID},
};

/* Escapes, UTF-8, fractions, leading zeros, signs, nested values, too
 * many fields, and lines that are not JSON (the parser's own reason). */
static const struct line_case OTHER[] = {
    {"{\"key\":\"k\\u0031\",\"status\":\"delivered\"}", RECEIPT_STORED},
    {"{\"key\":\"k1\",\"status\":\"delivered\",\"reason\":\"caf\xc3\xa9 \\\"ok\\\"\"}", RECEIPT_STORED},
    {"{\"message\":1.0,\"status\":\"delivered\"}", RECEIPT_STORED},
    {"{\"message\":01,\"status\":\"delivered\"}", RECEIPT_STORED},
    {"{\"message\":1e0,\"status\":\"delivered\"}", RECEIPT_STORED},
    {"{\"message\":1234567890123456,\"status\":\"delivered\"}", RECEIPT_UNKNOWN_MESSAGE},
    {"{\"message\":-1,\"status\":\"delivered\"}", RECEIPT_INVALID},
    {"{\"message\":1,\"status\":\"delivered\",\"id\":true}", RECEIPT_INVALID},
    {"{\"message\":1,\"status\":\"delivered\",\"id\":{\"a\":1}}", RECEIPT_INVALID},
    {"{\"key\":\"k1\",\"status\":\"delivered\",\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7}", RECEIPT_INVALID},
    {"{\"key\":\"k1\",\"status\":\"delivered\"} x", RECEIPT_INVALID},
    {"{\"key\":\"k1\",\"status\":\"delivered\",}", RECEIPT_INVALID},
    {"{\"key\":\"k1\" \"status\":\"delivered\"}", RECEIPT_INVALID},
    {"{\"key\":\"k1\",\"status\":\"delivered\"", RECEIPT_INVALID},
    {"{\"key\":\"k1\",\"status\":\"deli\tvered\"}", RECEIPT_INVALID},
    {"{\"message\":nul,\"status\":\"delivered\"}", RECEIPT_INVALID},
    {"{}", RECEIPT_INVALID},
    {"[1]", RECEIPT_INVALID},
    {"not json", RECEIPT_INVALID},
};

static void check_cases(engine *e, const struct line_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        same_as_parsed(e, c[i].line, c[i].expected);
}

static void plain_lines_are_read_as_parsed(void **state)
{
    check_cases(((struct fixture *)*state)->e, PLAIN, sizeof PLAIN / sizeof PLAIN[0]);
}

static void other_lines_go_through_the_parser(void **state)
{
    check_cases(((struct fixture *)*state)->e, OTHER, sizeof OTHER / sizeof OTHER[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(plain_lines_are_read_as_parsed, setup, teardown),
        cmocka_unit_test_setup_teardown(other_lines_go_through_the_parser, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
