/* Calendars: date rules (parsing, nth weekdays, lunar dates at the edges of
 * the library's range), and local-time triggers across downtime (one
 * catch-up firing), across a crash in the middle of a zone's fan-out (nobody
 * started twice, nobody skipped) and for a customer whose zone is unknown
 * (the configured zone, logged once), for local-time triggers, anniversaries
 * and channel windows. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calendar.h"
#include "customer.h"
#include "dates.h"
#include "engine.h"
#include "event.h"
#include "util.h"

#define T0 1767225600   /* 2026-01-01T00:00:00Z */

static void test_rules(void **state)
{
    (void)state;
    struct calendar_rule r;
    char err[200];
    int y, m, d;
    assert_int_equal(calendar_parse_rule("09-15", &r, err, sizeof err), 0);
    assert_int_equal(r.kind, CALENDAR_FIXED);
    assert_int_equal(calendar_parse_rule("2nd tue", &r, err, sizeof err), 0);
    assert_int_equal(calendar_next_date(&r, 2026, 1, 1, &y, &m, &d), 0);
    assert_true(y == 2026 && m == 1 && d == 13);
    assert_int_equal(calendar_next_date(&r, 2026, 1, 14, &y, &m, &d), 0);
    assert_true(y == 2026 && m == 2 && d == 10);
    assert_int_equal(calendar_parse_rule("last fri of nov", &r, err, sizeof err), 0);
    assert_int_equal(calendar_next_date(&r, 2026, 1, 1, &y, &m, &d), 0);
    assert_true(m == 11 && d == 27);
    assert_int_equal(calendar_parse_rule("lunar 08-15", &r, err, sizeof err), 0);
    assert_int_equal(calendar_next_date(&r, 2026, 9, 26, &y, &m, &d), 0);   /* the next one: 2027 */
    assert_true(y == 2027 && m == 9 && d == 15);
    assert_true(calendar_matches(&r, 2026, 9, 25));
    assert_false(calendar_matches(&r, 2026, 9, 24));
    /* Feb 29 only in leap years */
    assert_int_equal(calendar_parse_rule("02-29", &r, err, sizeof err), 0);
    assert_int_equal(calendar_next_date(&r, 2026, 3, 1, &y, &m, &d), 0);
    assert_true(y == 2028 && m == 2 && d == 29);
    static const char *const bad[] = {"13-01", "02-30", "9-15", "lunar 08-31", "6th mon", "2nd tus",
                                      "2nd sun of mayo", "", "09-15 x", NULL};
    for (const char *const *b = bad; *b; b++) {
        assert_int_equal(calendar_parse_rule(*b, &r, err, sizeof err), -1);
        assert_non_null(strstr(err, *b));
    }
    /* the library's range: 1900-01-31 is lunar 1900-1-1; nothing before it */
    assert_int_equal(calendar_lunar_to_solar(1900, 1, 1, &y, &m, &d), 0);
    assert_true(y == 1900 && m == 1 && d == 31);
    assert_int_equal(calendar_lunar_to_solar(1899, 12, 8, &y, &m, &d), -1);
    assert_int_equal(calendar_lunar_to_solar(2100, 12, 8, &y, &m, &d), -1);   /* would be in 2101 */
    int day;
    assert_int_equal(calendar_qingming(2026, &day), 0);
    assert_int_equal(day, 5);
    calendar *c = calendar_new();
    assert_int_equal(calendar_add(c, "shop_day", "09-15", err, sizeof err), 0);
    assert_int_equal(calendar_add(c, "bad", "99-99", err, sizeof err), -1);
    assert_non_null(strstr(err, "holiday 'bad': '99-99'"));
    assert_int_equal(calendar_lookup(c, "shop_day", &r), 1);
    assert_int_equal(calendar_lookup(c, "mid_autumn", &r), 1);
    assert_int_equal(calendar_lookup(c, "nope", &r), 0);
    calendar_free(c);
}

static const char SCRIPT[] =
    "template \"hi\" { category = \"transactional\", sms = \"hi\" }\n"
    "journey \"daily\" { on = local_cron(\"0 9 * * *\"), run = function(c) send(\"sms\", c, \"hi\") end }\n";

static const char BIRTHDAY_SCRIPT[] =
    "template \"hi\" { category = \"transactional\", sms = \"hi\" }\n"
    "journey \"bday\" { on = anniversary(\"birthday\", { at = \"10:00\" }),"
    " run = function(c) send(\"sms\", c, \"hi\") end }\n";

static const char WINDOW_SCRIPT[] =
    "channel \"sms\" { type = \"capture\", window = \"10:00-11:00\" }\n"
    "template \"hi\" { category = \"transactional\", sms = \"hi\" }\n"
    "journey \"go\" { on = \"go\", run = function(c) send(\"sms\", c, \"hi\") end }\n";

struct fixture {
    const char *script;     /* NULL: SCRIPT */
    char path[64];
    tclock *clock;
    engine *e;
    strbuf log;
};

static void keep_log(void *ud, const char *level, const char *msg)
{
    struct fixture *f = ud;
    strbuf_printf(&f->log, "%s: %s\n", level, msg);
}

static engine *open_engine(struct fixture *f)
{
    const cJSON *cfg = NULL;
    cJSON *c = cJSON_Parse("{\"timezone\": \"Asia/Shanghai\", \"synchronous\": \"normal\"}");
    cfg = c;
    struct engine_options o = {.db_path = f->path, .clock = f->clock, .capture = 1, .config = cfg,
                               .log = keep_log, .log_ud = f};
    char *err = NULL;
    engine *e = engine_open(&o, &err);
    cJSON_Delete(c);
    assert_non_null(e);
    char *errors = NULL;
    const char *script = f->script ? f->script : SCRIPT;
    assert_int_equal(engine_load_source(e, "s.lua", script, strlen(script), &errors), 0);
    return e;
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "/tmp/tend-cal-XXXXXX");
    close(mkstemp(f->path));
    f->clock = clock_new_virtual(T0);
    strbuf_init(&f->log);
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
    strbuf_free(&f->log);
    free(f);
    return 0;
}

static void add_customers(engine *e, int n, const char *tz)
{
    assert_int_equal(store_begin(e->st), 0);
    for (int i = 0; i < n; i++) {
        char json[160];
        snprintf(json, sizeof json, "{\"id\": \"%s%05d\"%s%s%s}", tz ? "z" : "c", i, tz ? ", \"timezone\": \"" : "",
                 tz ? tz : "", tz ? "\"" : "");
        cJSON *c = cJSON_Parse(json);
        int created;
        char err[200];
        assert_int_equal(customer_upsert(e, c, 0, &created, err, sizeof err), 0);
        assert_int_equal(dates_customer_changed(e, cJSON_GetObjectItem(c, "id")->valuestring), 0);
        cJSON_Delete(c);
    }
    assert_int_equal(store_commit(e->st), 0);
}

static int64_t count(engine *e, const char *sql)
{
    return store_count(e->st, sql);
}

/* Restarts on the same store, then runs `seconds` of simulated time. */
static void reopen_and_advance(struct fixture *f, tend_time seconds)
{
    engine_close(f->e);
    f->e = open_engine(f);
    assert_int_equal(engine_advance(f->e, seconds), 0);
}

/* The log has `what` exactly once. */
static void said_once(struct fixture *f, const char *what)
{
    const char *hit = strstr(f->log.s, what);
    assert_non_null(hit);
    assert_null(strstr(hit + 1, what));
}

static void test_downtime_fires_once(void **state)
{
    struct fixture *f = *state;
    add_customers(f->e, 3, NULL);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);    /* 08:00 in Shanghai: not yet */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances"), 0);
    /* Down from 08:00 on Jan 1 until 12:00 on Jan 4: three slots missed. */
    engine_close(f->e);
    clock_set(f->clock, T0 + 3 * TEND_DAY + 4 * TEND_HOUR);
    f->e = open_engine(f);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances"), 3);     /* once each, not three times */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM local_triggers WHERE fire_at = 1767574800"), 1);  /* Jan 5 09:00 +08 */
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances"), 3);
}

static void test_crash_mid_fanout(void **state)
{
    struct fixture *f = *state;
    add_customers(f->e, 1234, NULL);
    clock_set(f->clock, T0 + 3600);                              /* 09:00 in Shanghai */
    /* One page commits, then the process dies. */
    assert_true(dates_local_run_due(f->e, engine_now(f->e), 500) > 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances"), 500);
    engine_close(f->e);
    f->e = open_engine(f);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances"), 1234);
    assert_int_equal(count(f->e, "SELECT COUNT(DISTINCT customer) FROM instances"), 1234);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM outbox"), 1234);
}

/* branch hol4: engine_run_due works a slot's pages one after another,
 * each committed while the next page's first runs are done: 4,500
 * customers (pages of 2,000) start once each, every send is stored with
 * its instance (the runs that send wait for the commit before and write in
 * their page's transaction), the slot moves on to the next day, and the
 * instance ids follow on from page to page without a clash. */
static void test_slot_pages_in_a_row(void **state)
{
    struct fixture *f = *state;
    add_customers(f->e, 4500, NULL);
    clock_set(f->clock, T0 + 3600);                              /* 09:00 in Shanghai */
    assert_true(engine_run_due(f->e, engine_now(f->e)) > 4500);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances"), 4500);
    assert_int_equal(count(f->e, "SELECT COUNT(DISTINCT customer) FROM instances"), 4500);
    assert_int_equal(count(f->e, "SELECT MAX(id) - MIN(id) + 1 FROM instances"), 4500);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM outbox o JOIN instances i ON i.id = o.instance"
                                 " AND i.customer = o.customer"), 4500);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM local_triggers WHERE fire_at = 1767315600 AND after = ''"), 1);
    engine_close(f->e);
    f->e = open_engine(f);
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances"), 4500);
}

static void test_unknown_zone(void **state)
{
    struct fixture *f = *state;
    add_customers(f->e, 2, "Asia/Tokyo");
    /* a zone that came in before zones were checked, or left the tz database */
    store_stmt *s = store_sql(f->e->st, "UPDATE customers SET timezone = 'Mars/Olympus' WHERE id = 'z00001'");
    assert_int_equal(store_run(s), 0);
    reopen_and_advance(f, 2 * TEND_DAY);
    /* Tokyo's 09:00 is 00:00Z; the unknown zone fires at Shanghai's (01:00Z) */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE customer = 'z00000' AND started_at % 86400 = 0"), 2);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE customer = 'z00001' AND started_at % 86400 = 3600"), 2);
    said_once(f, "time zone 'Mars/Olympus'");
}

/* An anniversary of a customer whose zone is unknown: in the configured
 * zone, and said once (a second re-plan and a reopen say nothing more). */
static void test_unknown_zone_anniversary(void **state)
{
    struct fixture *f = *state;
    engine_close(f->e);
    f->script = BIRTHDAY_SCRIPT;
    f->e = open_engine(f);
    add_customers(f->e, 2, "Asia/Tokyo");
    store_stmt *s = store_sql(f->e->st, "UPDATE customers SET birthday = '1990-01-02',"
                                        " timezone = CASE id WHEN 'z00001' THEN 'Mars/Olympus' ELSE timezone END");
    assert_int_equal(store_run(s), 0);
    assert_int_equal(dates_customer_changed(f->e, "z00000"), 0);
    assert_int_equal(dates_customer_changed(f->e, "z00001"), 0);
    assert_int_equal(dates_customer_changed(f->e, "z00001"), 0);
    reopen_and_advance(f, 2 * TEND_DAY);
    /* Jan 2 10:00 in Tokyo is 01:00Z; the unknown zone's is Shanghai's, 02:00Z */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE customer = 'z00000' AND started_at = 1767315600"), 1);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM instances WHERE customer = 'z00001' AND started_at = 1767319200"), 1);
    said_once(f, "time zone 'Mars/Olympus'");
}

/* A channel window for a customer whose zone is unknown: the configured
 * zone's window, said once. */
static void test_unknown_zone_window(void **state)
{
    struct fixture *f = *state;
    engine_close(f->e);
    f->script = WINDOW_SCRIPT;
    f->e = open_engine(f);
    add_customers(f->e, 2, "Asia/Tokyo");
    store_stmt *s = store_sql(f->e->st, "UPDATE customers SET timezone = 'Mars/Olympus' WHERE id = 'z00001'");
    assert_int_equal(store_run(s), 0);
    for (int i = 0; i < 2; i++) {   /* at 00:00Z: 09:00 in Tokyo, 08:00 in Shanghai */
        char json[80];
        snprintf(json, sizeof json, "{\"type\": \"go\", \"customer\": \"z%05d\"}", i);
        cJSON *ev = cJSON_Parse(json);
        struct event_result res;
        char err[200];
        assert_int_equal(event_accept(f->e, ev, &res, err, sizeof err), 0);
        cJSON_Delete(ev);
    }
    assert_true(engine_run_due(f->e, engine_now(f->e)) >= 0);
    /* to the window's 10:00: Tokyo's is 01:00Z, the configured zone's 02:00Z */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM outbox WHERE customer = 'z00000' AND due_at = 1767229200"), 1);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM outbox WHERE customer = 'z00001' AND due_at = 1767232800"), 1);
    said_once(f, "time zone 'Mars/Olympus'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test_setup_teardown(test_downtime_fires_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_mid_fanout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_pages_in_a_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_zone_anniversary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_zone_window, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clock_shutdown();
    calendar_shutdown();
    return rc;
}
