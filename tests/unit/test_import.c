/* Imports and date triggers: the importer asks once per import whether any
 * journey is planned by a date field or a local time, and then plans every
 * imported customer's rows as a PUT does; with no such journey it plans
 * none. Both into an empty store (the first import, one transaction) and
 * into one that has customers (batches). And CSV records: the ones read
 * whole and the ones read cell by cell come out the same; a customer CSV
 * read and checked on the importer's second thread reports its rejected
 * rows by line, in file order, across the batches that thread hands over;
 * a first import writes its rows many to an INSERT, and as row by row
 * when a customer comes twice; a large first import sorts its indexes on
 * a worker thread and puts the store's settings back. */
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

static void keep_reject(void *ud, long line, const char *reason)
{
    strbuf_printf(ud, "%ld: %s\n", line, reason);
}

static char *text_of(engine *e, const char *sql)
{
    store_stmt *s = store_sql(e->st, sql);
    assert_int_equal(store_step(s), STORE_ROW);
    const char *t = store_col_text(s, 0);
    char *copy = t ? xstrdup(t) : NULL;
    store_reset(s);
    return copy;
}

/* Records read whole (a line without quotes) and cell by cell (quotes, a
 * lone CR, the last line without its LF) make the same cells and lines. */
static void test_csv_records(void **state)
{
    (void)state;
    static const char csv[] =
        "id,name,city\r\n"
        "a1,,Paris\r\n"
        "a2,\"Q, Inc\",\n"
        "a3,Bob,Rome,extra\n"
        "\n"
        "a4,Al,\n"
        "a5,Cy\rCarl,Lyon\n"
        "a6,Zoe,Oslo";
    struct fixture *f = fixture_open("import-csv", T0, NULL, NEITHER);
    char path[] = "/tmp/tend-import-XXXXXX.csv";
    int fd = mkstemps(path, 4);
    assert_int_equal(write(fd, csv, sizeof csv - 1), (ssize_t)(sizeof csv - 1));
    close(fd);
    struct import_report rep;
    char err[256];
    strbuf rejects;
    strbuf_init(&rejects);
    assert_int_equal(importer_run(f->e, path, keep_reject, &rejects, &rep, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(rep.imported, 4);
    assert_int_equal(rep.rejected, 3);
    /* a lone CR ends a record: "a5,Cy" on line 7, "Carl,Lyon" on line 8 */
    assert_string_equal(rejects.s, "4: row has 4 cells, the header has 3\n"
                                   "7: row has 2 cells, the header has 3\n"
                                   "8: row has 2 cells, the header has 3\n");
    strbuf_free(&rejects);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'a1' AND name IS NULL AND city = 'Paris'"), 1);
    char *name = text_of(f->e, "SELECT name FROM customers WHERE id = 'a2'");
    assert_string_equal(name, "Q, Inc");
    free(name);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'a2' AND city IS NULL"), 1);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'a4' AND name = 'Al' AND city IS NULL"), 1);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'a6' AND city = 'Oslo'"), 1);
    fixture_close(f);
}

/* The reading thread hands rows over in batches of 256 (importer.c,
 * FEED_ROWS) and starts a new batch early for a record longer than its
 * text: rejections on both sides of the batch edges, after a record of
 * 100 kB, after a blank line and a quoted cell over two lines (which move
 * the line numbers), of every kind (the cell count, found while reading;
 * an email and a zone, found by customer_check), come out in file order
 * with their lines, and the rows around them are all written, tags and the
 * long attribute included. The same file again goes through the batches
 * of a store that has customers, with the same report. */
static void test_feed_batches(void **state)
{
    (void)state;
    enum { ROWS = 1500 };
    strbuf csv, want;
    strbuf_init(&csv);
    strbuf_init(&want);
    strbuf_puts(&csv, "id,name,email,timezone,tags,attrs.note\n");
    long line = 1;
    int accepted = 0;
    for (int k = 1; k <= ROWS; k++) {
        if (k == 900) {
            strbuf_puts(&csv, "\n");      /* a blank line: skipped, but counted */
            line++;
        }
        line++;
        long at = line;
        char id[32];
        snprintf(id, sizeof id, "k%d", k == 1400 ? 10 : k);
        if (k == 1000)
            line++;         /* its note is quoted over two lines */
        const char *tags = k == 1200 ? "|" : k % 3 == 0 ? "vip|t5" : "";
        if (k % 131 == 0) {
            strbuf_printf(&csv, "%s,Ann\n", id);
            strbuf_printf(&want, "%ld: row has 2 cells, the header has 6\n", at);
        } else if (k % 97 == 0) {
            strbuf_printf(&csv, "%s,Ann,nope,UTC,%s,\n", id, tags);
            strbuf_printf(&want, "%ld: field 'email': 'nope' is not an email address (local@domain, one '@')\n", at);
        } else if (k == 255 || k == 256 || k == 257 || k == 511 || k == 512 || k == 701) {
            strbuf_printf(&csv, "%s,Ann,a@b.example,Mars/Base,%s,\n", id, tags);
            strbuf_printf(&want, "%ld: field 'timezone': 'Mars/Base' is not a zone in the tz database\n", at);
        } else {
            strbuf_printf(&csv, "%s,Ann,a%d@b.example,Asia/Shanghai,%s,%s", id, k, tags,
                          k == 1000 ? "\"two\nlines\"" : "");
            if (k == 700)
                for (int i = 0; i < 100000; i++)
                    strbuf_puts(&csv, "x");
            strbuf_puts(&csv, "\n");
            accepted++;
        }
    }
    struct fixture *f = fixture_open("import-feed", T0, NULL, NEITHER);
    char path[] = "/tmp/tend-import-XXXXXX.csv";
    int fd = mkstemps(path, 4);
    assert_int_equal(write(fd, csv.s, csv.len), (ssize_t)csv.len);
    close(fd);
    for (int pass = 0; pass < 2; pass++) {
        struct import_report rep;
        char err[256];
        strbuf rejects;
        strbuf_init(&rejects);
        assert_int_equal(importer_run(f->e, path, keep_reject, &rejects, &rep, err, sizeof err), 0);
        assert_string_equal(rejects.s, want.s);
        strbuf_free(&rejects);
        assert_int_equal(rep.imported, pass ? 0 : accepted - 1);   /* k1400 is k10 again */
        assert_int_equal(rep.updated, pass ? accepted : 1);
        assert_int_equal(rep.rejected, ROWS - accepted);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers"), accepted - 1);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE timezone = 'Asia/Shanghai'"), accepted - 1);
        assert_int_equal(count(f->e, "SELECT length(json_extract(attrs, '$.note')) FROM customers WHERE id = 'k700'"),
                         100000);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'k1000'"
                               " AND json_extract(attrs, '$.note') = 'two' || char(10) || 'lines'"), 1);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'k1001' AND email = 'a1001@b.example'"), 1);
        /* k % 3 == 0 and accepted, k1200 ("|") without tags */
        int tagged = 0;
        for (int k = 3; k <= ROWS; k += 3)
            tagged += k != 1200 && k % 131 && k % 97 && k != 255 && k != 511 && k != 1400;
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE tag = 'vip'"), tagged);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE tag = 't5'"), tagged);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'k1200'"), 0);
    }
    unlink(path);
    strbuf_free(&csv);
    strbuf_free(&want);
    fixture_close(f);
}

/* A first import of SORT_THREADED_ROWS customers or more builds its indexes
 * with SQLite's sorter on a worker thread, its runs in temporary files
 * (importer.c, sort_threaded): the indexes agree with the table, and the
 * store's settings are back after it (temp_store in memory, no sorter
 * threads, cache_spill on, the page cache as tend.lua sets it). */
static void test_threaded_sort(void **state)
{
    (void)state;
    enum { ROWS = 100000 };
    static const char *const cities[] = {"Oslo", "Lyon", "Rome", "Pune", "Lima"};
    strbuf csv;
    strbuf_init(&csv);
    strbuf_puts(&csv, "id,city,region,timezone,last_order_at,orders_count,tags\n");
    for (int k = 0; k < ROWS; k++)
        strbuf_printf(&csv, "c%07d,%s,r%d,%s,%s,%d,%s\n", (k * 7919) % ROWS, cities[k % 5], k % 31,
                      k % 2 ? "Asia/Shanghai" : "Europe/Oslo", k % 3 ? "1760000000" : "", k % 3 ? 1 : 0,
                      k % 4 ? "" : "vip");
    struct fixture *f = fixture_open("import-sort", T0, NULL, NEITHER);
    char path[] = "/tmp/tend-import-XXXXXX.csv";
    int fd = mkstemps(path, 4);
    assert_int_equal(write(fd, csv.s, csv.len), (ssize_t)csv.len);
    close(fd);
    strbuf_free(&csv);
    static const char *const settings[] = {"PRAGMA temp_store", "PRAGMA threads", "PRAGMA cache_spill",
                                           "PRAGMA cache_size"};
    enum { NSETTINGS = sizeof settings / sizeof settings[0] };
    int64_t before[NSETTINGS];
    for (int i = 0; i < NSETTINGS; i++)
        before[i] = count(f->e, settings[i]);
    assert_int_equal(before[0], 2);     /* store.c's temp_store = MEMORY */
    struct import_report rep;
    char err[256];
    assert_int_equal(importer_run(f->e, path, NULL, NULL, &rep, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(rep.imported, ROWS);
    char *ok = text_of(f->e, "PRAGMA integrity_check");
    assert_string_equal(ok, "ok");
    free(ok);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers INDEXED BY customers_city WHERE city = 'Rome'"),
                     ROWS / 5);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers INDEXED BY customers_region WHERE region = 'r7'"),
                     count(f->e, "SELECT COUNT(*) FROM customers NOT INDEXED WHERE region = 'r7'"));
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers INDEXED BY customers_last_order"
                                 " WHERE last_order_at = 1760000000"), ROWS - (ROWS + 2) / 3);
    assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags INDEXED BY customer_tags_tag_order"
                                 " WHERE tag = 'vip' AND last_order_at IS NULL"),
                     count(f->e, "SELECT COUNT(*) FROM customer_tags t NOT INDEXED JOIN customers c ON c.id = t.customer"
                                 " WHERE t.tag = 'vip' AND c.last_order_at IS NULL"));
    for (int i = 0; i < NSETTINGS; i++)
        assert_int_equal(count(f->e, settings[i]), before[i]);
    fixture_close(f);
}

/* A customer's tag rows as "tag@last_order_at ...", in tag order. */
static char *tags_of(engine *e, const char *id)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT group_concat(tag || '@' || last_order_at, ' ') FROM (SELECT tag,"
             " last_order_at FROM customer_tags WHERE customer = '%s' ORDER BY tag)", id);
    return text_of(e, sql);
}

/* A first import's tags. Into a store with no tag rows, a customer the
 * import creates has its tags inserted without a DELETE before them, with
 * its last_order_at (fresh_end's UPDATE writes it again once a customer
 * was updated: test_first_import_tag_times); a customer the file names again
 * (it exists by then) has its set replaced. Into a store with no
 * customers but tag rows of no customer (orphans), the rows of an
 * imported id are deleted before its tags are written, as by a PUT: the
 * orphan tag is gone, orphans of other ids stay. */
static void test_first_import_tags(void **state)
{
    (void)state;
    static const char csv[] =
        "id,last_order_at,tags\n"
        "t1,1760000000,a|b\n"
        "t2,,vip\n"
        "t1,,c\n"
        "o1,1760000500,new\n";
    for (int orphans = 0; orphans < 2; orphans++) {
        struct fixture *f = fixture_open("import-tags", T0, NULL, NEITHER);
        if (orphans)
            assert_int_equal(store_exec(f->e->st, "INSERT INTO customer_tags (customer, tag) VALUES"
                                                  " ('o1', 'old'), ('o1', 'new'), ('o9', 'old')"), 0);
        import_text(f->e, csv);
        char *t1 = tags_of(f->e, "t1");
        assert_string_equal(t1, "c@1760000000");
        free(t1);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE customer = 't2'"
                                     " AND tag = 'vip' AND last_order_at IS NULL"), 1);
        char *o1 = tags_of(f->e, "o1");
        assert_string_equal(o1, "new@1760000500");
        free(o1);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'o9'"), orphans);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags"), 3 + orphans);
        fixture_close(f);
    }
}

/* A first import into a store with no tag rows: a created customer's tag
 * rows carry the last_order_at it is created with (none: NULL), and when
 * the file names a customer again with a new last_order_at and no tags,
 * its tag rows from before carry the new one (fresh_end's UPDATE, needed
 * only then: the triggers that would copy it are off in the import). */
static void test_first_import_tag_times(void **state)
{
    (void)state;
    for (int again = 0; again < 2; again++) {
        struct fixture *f = fixture_open("import-tag-times", T0, NULL, NEITHER);
        import_text(f->e, again ? "id,last_order_at,tags\n"
                                  "u1,1760000000,vip|x\n"
                                  "u2,,vip\n"
                                  "u1,1760009999,\n"
                                : "id,last_order_at,tags\n"
                                  "u1,1760000000,vip|x\n"
                                  "u2,,vip\n");
        char *u1 = tags_of(f->e, "u1");
        assert_string_equal(u1, again ? "vip@1760009999 x@1760009999" : "vip@1760000000 x@1760000000");
        free(u1);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE customer = 'u2'"
                                     " AND last_order_at IS NULL"), 1);
        fixture_close(f);
    }
}

/* The report of importing `text` (which must succeed). */
static void import_report_of(engine *e, const char *text, struct import_report *rep)
{
    char path[] = "/tmp/tend-import-groups-XXXXXX.csv";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char err[256];
    int rc = importer_run(e, path, NULL, NULL, rep, err, sizeof err);
    unlink(path);
    assert_int_equal(rc, 0);
}

/* A first import writes its rows CUSTOMER_INSERT_ROWS to an INSERT; a
 * group with a customer already written (an id the file names again, in
 * an earlier group or in the same one) is undone by SQLite and written row
 * by row. The store comes out as the same file's rows written one by one
 * (into a store with a customer: no groups), with the same counts. */
static void test_first_import_groups(void **state)
{
    (void)state;
    enum { ROWS = 200 };
    strbuf csv;
    strbuf_init(&csv);
    strbuf_puts(&csv, "id,name,orders_count,last_order_at,attrs.note,tags\n");
    for (int k = 1; k <= ROWS; k++) {
        /* k40 names k3 again (a later group), k70 names k66 (its own group) */
        int id = k == 40 ? 3 : k == 70 ? 66 : k;
        if (k == 150)
            strbuf_puts(&csv, "bad,,x,,,\n");      /* rejected: breaks a group */
        strbuf_printf(&csv, "g%d,N%d,%s,%s,n%d,%s\n", id, k, k % 4 ? "2" : "", k % 4 ? "1764000000" : "", k,
                      k == 40 || k == 70 ? "again" : k % 3 ? "" : "vip|t3");
    }
    const char *rows_sql = "SELECT group_concat(id || name || orders_count || IFNULL(last_order_at, '-') ||"
                           " lifecycle || r || f || m || IFNULL(attrs, '-') || first_seen_at, ';')"
                           " FROM (SELECT * FROM customers WHERE id <> 'zz' ORDER BY id)";
    const char *tags_sql = "SELECT group_concat(customer || tag || IFNULL(last_order_at, '-'), ';')"
                           " FROM (SELECT * FROM customer_tags ORDER BY customer, tag)";
    char *want_rows = NULL, *want_tags = NULL;
    for (int pass = 0; pass < 2; pass++) {     /* one by one, then the first import */
        struct fixture *f = fixture_open("import-groups", T0, NULL, NEITHER);
        if (pass == 0)
            import_text(f->e, "id\nzz\n");
        struct import_report rep;
        import_report_of(f->e, csv.s, &rep);
        assert_int_equal(rep.imported, ROWS - 2);
        assert_int_equal(rep.updated, 2);
        assert_int_equal(rep.rejected, 1);
        char *rows = text_of(f->e, rows_sql), *tags = text_of(f->e, tags_sql);
        if (pass == 0) {
            want_rows = rows;
            want_tags = tags;
        } else {
            assert_string_equal(rows, want_rows);
            assert_string_equal(tags, want_tags);
            free(rows);
            free(tags);
        }
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'g3' AND name = 'N40'"
                                     " AND json_extract(attrs, '$.note') = 'n40'"), 1);
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customer_tags WHERE customer IN ('g3', 'g66')"
                                     " AND tag = 'again'"), 2);
        fixture_close(f);
    }
    free(want_rows);
    free(want_tags);
    strbuf_free(&csv);
}

/* A store failure in the middle of a customer CSV (a trigger of the test's
 * own refuses one tag row) ends the import at that row's line while the
 * reading thread is batches ahead: the reader is stopped and joined, the
 * rows it had checked are dropped, and what was reported imported is what
 * the store holds. */
static void test_feed_store_failure(void **state)
{
    (void)state;
    enum { ROWS = 3000, BOOM = 1500 };
    strbuf csv;
    strbuf_init(&csv);
    strbuf_puts(&csv, "id,name,tags,attrs.note\n");
    for (int k = 1; k <= ROWS; k++)
        strbuf_printf(&csv, "b%d,Ann,%s,n%d\n", k, k == BOOM ? "boom" : k % 2 ? "vip" : "", k);
    for (int pass = 0; pass < 2; pass++) {     /* a first import, then one into a store with customers */
        struct fixture *f = fixture_open("import-fail", T0, NULL, NEITHER);
        assert_int_equal(store_exec(f->e->st, "CREATE TRIGGER boom BEFORE INSERT ON customer_tags"
                                              " WHEN NEW.tag = 'boom' BEGIN SELECT RAISE(ABORT, 'no boom'); END"), 0);
        if (pass)
            import_text(f->e, "id\nz0\n");
        char path[] = "/tmp/tend-import-XXXXXX.csv";
        int fd = mkstemps(path, 4);
        assert_int_equal(write(fd, csv.s, csv.len), (ssize_t)csv.len);
        close(fd);
        struct import_report rep;
        char err[256];
        assert_int_equal(importer_run(f->e, path, NULL, NULL, &rep, err, sizeof err), -1);
        unlink(path);
        char want[64];
        snprintf(want, sizeof want, ": line %d: store: no boom", BOOM + 1);
        assert_non_null(strstr(err, want));
        assert_int_equal(rep.rejected, 0);
        /* the open batch (the whole first import; the first 10,000 rows of
         * the second) is rolled back: nothing was reported imported */
        assert_int_equal(rep.imported, 0);
        assert_int_equal(rep.imported + pass, count(f->e, "SELECT COUNT(*) FROM customers"));
        assert_int_equal(count(f->e, "SELECT COUNT(*) FROM customers WHERE id = 'b1500'"), 0);
        fixture_close(f);
    }
    strbuf_free(&csv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dated_journey),
        cmocka_unit_test(test_local_journey),
        cmocka_unit_test(test_no_planned_journey),
        cmocka_unit_test(test_csv_records),
        cmocka_unit_test(test_feed_batches),
        cmocka_unit_test(test_feed_store_failure),
        cmocka_unit_test(test_first_import_tags),
        cmocka_unit_test(test_first_import_groups),
        cmocka_unit_test(test_first_import_tag_times),
        cmocka_unit_test(test_threaded_sort),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clock_shutdown();
    return rc;
}
