/* Imports and date triggers: the importer asks once per import whether any
 * journey is planned by a date field or a local time, and then plans every
 * imported customer's rows as a PUT does; with no such journey it plans
 * none. Both into an empty store (the first import, one transaction) and
 * into one that has customers (batches). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixture.h"
#include "importer.h"
#include "store.h"

#define T0 1767225600   /* 2026-01-01T00:00:00Z */

static const char CSV[] =
    "id,name,timezone,birthday\n"
    "c1,Wei,Asia/Shanghai,1990-03-10\n"
    "c2,Jane,America/New_York,1985-07-01\n"
    "c3,Li,Asia/Shanghai,\n";

static const char MORE_CSV[] =
    "id,birthday\n"
    "c4,2001-01-20\n"
    "c1,1990-03-11\n";

static const char DATED[] =
    "template \"hi\" { category = \"transactional\", sms = \"hi\" }\n"
    "journey \"bday\" { on = anniversary(\"birthday\", { at = \"10:00\" }),"
    " run = function(c) send(\"sms\", c, \"hi\") end }\n";

static const char LOCAL[] =
    "template \"hi\" { category = \"transactional\", sms = \"hi\" }\n"
    "journey \"daily\" { on = local_cron(\"0 9 * * *\"), run = function(c) send(\"sms\", c, \"hi\") end }\n";

static const char NEITHER[] =
    "template \"hi\" { category = \"transactional\", sms = \"hi\" }\n"
    "journey \"go\" { on = \"go\", run = function(c) send(\"sms\", c, \"hi\") end }\n";

static int64_t count(engine *e, const char *sql)
{
    return store_count(e->st, sql);
}

static void import_text(engine *e, const char *text)
{
    char path[] = "/tmp/tend-import-XXXXXX.csv";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct import_report rep;
    char err[256];
    assert_int_equal(importer_run(e, path, NULL, NULL, &rep, err, sizeof err), 0);
    assert_int_equal(rep.rejected, 0);
    unlink(path);
}

static void test_dated_journey(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("import-dated", T0, NULL, DATED);
    import_text(f->e, CSV);         /* the first import */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM date_triggers WHERE journey = 'bday'"), 2);
    int64_t c1 = count(f->e, "SELECT fire_at FROM date_triggers WHERE customer = 'c1'");
    import_text(f->e, MORE_CSV);    /* into customers: batches */
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM date_triggers WHERE journey = 'bday'"), 3);
    /* c1's birthday moved a day: its row is planned again */
    assert_int_equal(count(f->e, "SELECT fire_at FROM date_triggers WHERE customer = 'c1'"), c1 + TEND_DAY);
    fixture_close(f);
}

static void test_local_journey(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("import-local", T0, NULL, LOCAL);
    int64_t before = count(f->e, "SELECT COUNT(*) FROM local_triggers");
    import_text(f->e, CSV);
    /* America/New_York is a zone no customer had: its slot is planned */
    assert_true(count(f->e, "SELECT COUNT(*) FROM local_triggers") > before);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM local_triggers WHERE zone = 'America/New_York'"), 1);
    fixture_close(f);
}

static void test_no_planned_journey(void **state)
{
    (void)state;
    struct fixture *f = fixture_open("import-neither", T0, NULL, NEITHER);
    import_text(f->e, CSV);
    import_text(f->e, MORE_CSV);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers"), 4);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM date_triggers"), 0);
    fixture_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dated_journey),
        cmocka_unit_test(test_local_journey),
        cmocka_unit_test(test_no_planned_journey),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clock_shutdown();
    return rc;
}
