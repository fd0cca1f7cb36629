/* Unit tests for runtime/store.c, against the contract in runtime/store.h:
 * migrations (built-in and custom, ordered, atomic, never twice, newer
 * databases refused), batches (all or nothing; nested = savepoint), the
 * statement cache and dynamic statements, binding and reading every type,
 * meta, WAL durability across close/reopen, and two connections on one file
 * (readers never blocked by the writer; a second writer fails cleanly after
 * busy_timeout). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>

#include "store.h"

/* --- helpers ------------------------------------------------------------ */

/* A fresh temporary database path (the empty file mkstemp makes is a valid
 * empty SQLite database). */
static char *temp_db(void)
{
    char *path = strdup("/tmp/tend_test_store_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return path;
}

/* Removes the database and its WAL side files, then frees the path. */
static void remove_db(char *path)
{
    char side[512];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-journal", path);
    unlink(side);
    free(path);
}

static store *open_ok(const char *path, const struct store_options *opts)
{
    char *err = NULL;
    store *st = store_open(path, opts, &err);
    if (!st)
        fail_msg("store_open(%s): %s", path ? path : "(null)", err ? err : "(no message)");
    assert_null(err);
    return st;
}

static store *open_with_ok(const char *path, const struct store_options *opts,
                           const struct store_migration *migs, int n)
{
    char *err = NULL;
    store *st = store_open_with(path, opts, migs, n, &err);
    if (!st)
        fail_msg("store_open_with(%s): %s", path ? path : "(null)", err ? err : "(no message)");
    assert_null(err);
    return st;
}

/* Opens expecting failure; returns the (malloc'd) message. */
static char *open_with_fails(const char *path, const struct store_migration *migs, int n)
{
    char *err = NULL;
    store *st = store_open_with(path, NULL, migs, n, &err);
    if (st) {
        store_close(st);
        fail_msg("store_open_with(%s) succeeded, expected an error", path);
    }
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    return err;
}

/* A private in-memory store whose only table is t(id INTEGER PRIMARY KEY, v). */
static const struct store_migration mem_migs[] = {
    {"t", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)"},
};

static store *open_mem(void)
{
    struct store_options o = {.memory = 1};
    return open_with_ok(NULL, &o, mem_migs, 1);
}

static int setup_mem(void **state)
{
    *state = open_mem();
    return 0;
}

static int teardown_mem(void **state)
{
    store_close(*state);
    return 0;
}

/* The single text value of a one-row query (copied into buf). */
static const char *query_text(store *st, const char *sql, char *buf, size_t n)
{
    store_stmt *s = store_sql(st, sql);
    assert_non_null(s);
    assert_int_equal(store_step(s), STORE_ROW);
    const char *t = store_col_text(s, 0);
    snprintf(buf, n, "%s", t ? t : "(null)");
    store_reset(s);
    return buf;
}

static int insert_v(store *st, const char *v)
{
    store_stmt *s = store_sql(st, "INSERT INTO t (v) VALUES (?)");
    assert_non_null(s);
    assert_int_equal(store_bind_text(s, 1, v, -1), 0);
    return store_run(s);
}

/* All v values of t, in id order, joined with ',' ("" when empty). */
static const char *all_v(store *st, char *buf, size_t n)
{
    return query_text(st, "SELECT coalesce(group_concat(v, ','), '') FROM"
                          " (SELECT v FROM t ORDER BY id)", buf, n);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* --- migrations --------------------------------------------------------- */

/* A fresh file gets every built-in migration, in WAL mode; reopening it runs
 * none again (a rerun of the built-in CREATE TABLEs would fail the open). */
static void test_fresh_file_runs_all_builtin_migrations(void **state)
{
    (void)state;
    char *path = temp_db();
    assert_true(store_migration_count() > 0);

    store *st = open_ok(path, NULL);
    assert_int_equal(store_schema_version(st), store_migration_count());
    int64_t v = -1;
    assert_int_equal(store_meta_get_int(st, "schema_version", &v), 0);
    assert_int_equal(v, store_migration_count());
    char buf[64];
    assert_string_equal(query_text(st, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    store_close(st);

    st = open_ok(path, NULL);
    assert_int_equal(store_schema_version(st), store_migration_count());
    store_close(st);
    remove_db(path);
}

/* Each migration logs itself into a side table; CREATE TABLE without IF NOT
 * EXISTS makes a second run of any of them fail the open. */
static const struct store_migration logged_migs[] = {
    {"first",  "CREATE TABLE runs (n INTEGER NOT NULL);"
               "CREATE TABLE a (x);"
               "INSERT INTO runs VALUES (1)"},
    {"second", "CREATE TABLE b (x REFERENCES a);"
               "INSERT INTO a VALUES ('from second');"
               "INSERT INTO runs VALUES (2)"},
    {"third",  "ALTER TABLE a ADD COLUMN y;"
               "UPDATE a SET y = 'from third';"
               "INSERT INTO runs VALUES (3)"},
    {"fourth", "CREATE TABLE d (x);"
               "INSERT INTO runs VALUES (4)"},
};

static void test_reopen_runs_no_migration_twice(void **state)
{
    (void)state;
    char *path = temp_db();
    store *st = open_with_ok(path, NULL, logged_migs, 3);
    assert_int_equal(store_schema_version(st), 3);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM runs"), 3);
    store_close(st);

    for (int i = 0; i < 3; i++) {   /* reopen a few times: nothing reruns */
        st = open_with_ok(path, NULL, logged_migs, 3);
        assert_int_equal(store_schema_version(st), 3);
        assert_int_equal(store_count(st, "SELECT COUNT(*) FROM runs"), 3);
        store_close(st);
    }
    remove_db(path);
}

/* Migrations run in list order (each depends on the one before), and a
 * later binary with one more migration runs just that one. */
static void test_custom_migrations_applied_in_order(void **state)
{
    (void)state;
    char *path = temp_db();
    char buf[128];
    store *st = open_with_ok(path, NULL, logged_migs, 3);
    assert_string_equal(query_text(st, "SELECT group_concat(n, ',') FROM"
                                       " (SELECT n FROM runs ORDER BY rowid)", buf, sizeof buf),
                        "1,2,3");
    assert_string_equal(query_text(st, "SELECT x || '/' || y FROM a", buf, sizeof buf),
                        "from second/from third");
    store_close(st);

    st = open_with_ok(path, NULL, logged_migs, 4);
    assert_int_equal(store_schema_version(st), 4);
    assert_string_equal(query_text(st, "SELECT group_concat(n, ',') FROM"
                                       " (SELECT n FROM runs ORDER BY rowid)", buf, sizeof buf),
                        "1,2,3,4");
    store_close(st);
    remove_db(path);
}

/* Migration 3 fails half-way (its first statement works, its second does
 * not): the open fails naming migration 3, the database stays at version 2,
 * and nothing of migration 3 is left (one transaction per migration). A
 * fixed list then resumes at migration 3. */
static void test_failing_migration_leaves_previous_version(void **state)
{
    (void)state;
    char *path = temp_db();
    const struct store_migration broken[] = {
        logged_migs[0],
        logged_migs[1],
        {"third_broken", "CREATE TABLE c (x); INSERT INTO no_such_table VALUES (1)"},
        logged_migs[3],
    };
    char *err = open_with_fails(path, broken, 4);
    assert_non_null(strstr(err, "migration 3"));
    assert_non_null(strstr(err, "third_broken"));
    assert_non_null(strstr(err, "no_such_table"));
    free(err);

    store *st = open_with_ok(path, NULL, logged_migs, 2);
    assert_int_equal(store_schema_version(st), 2);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM runs"), 2);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'c'"), 0);
    store_close(st);

    st = open_with_ok(path, NULL, logged_migs, 4);
    assert_int_equal(store_schema_version(st), 4);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM runs"), 4);
    store_close(st);
    remove_db(path);
}

/* A database migrated by a newer binary (3 migrations) is refused by an
 * older one (2), with a message saying so, and left untouched. */
static void test_newer_database_is_refused(void **state)
{
    (void)state;
    char *path = temp_db();
    store *st = open_with_ok(path, NULL, logged_migs, 3);
    store_close(st);

    char *err = open_with_fails(path, logged_migs, 2);
    assert_non_null(strstr(err, "newer"));
    assert_non_null(strstr(err, "3"));
    assert_non_null(strstr(err, "2"));
    free(err);

    st = open_with_ok(path, NULL, logged_migs, 3);
    assert_int_equal(store_schema_version(st), 3);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM runs"), 3);
    store_close(st);
    remove_db(path);
}

/* An unopenable path fails with a message naming it. */
static void test_open_bad_path_fails_with_message(void **state)
{
    (void)state;
    char *err = NULL;
    store *st = store_open("/nonexistent-dir-for-tend-tests/x.db", NULL, &err);
    assert_null(st);
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent-dir-for-tend-tests/x.db"));
    free(err);
}

/* --- batches ------------------------------------------------------------ */

struct batch_ud {
    int rows;       /* rows to insert */
    int result;     /* what the callback returns */
    int calls;
};

static int insert_rows(store *st, void *ud)
{
    struct batch_ud *b = ud;
    b->calls++;
    assert_true(store_in_batch(st));
    for (int i = 0; i < b->rows; i++) {
        char v[16];
        snprintf(v, sizeof v, "r%d", i);
        assert_int_equal(insert_v(st, v), 0);
    }
    return b->result;
}

/* A callback that inserts rows and then fails leaves no row; one that
 * succeeds commits them all; store_batch returns the callback's value. */
static void test_batch_commits_all_or_nothing(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    assert_false(store_in_batch(st));

    struct batch_ud fail = {.rows = 5, .result = 7};
    assert_int_equal(store_batch(st, insert_rows, &fail), 7);
    assert_int_equal(fail.calls, 1);
    assert_false(store_in_batch(st));
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 0);

    struct batch_ud ok = {.rows = 5, .result = 0};
    assert_int_equal(store_batch(st, insert_rows, &ok), 0);
    assert_false(store_in_batch(st));
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 5);

    /* A failure after a success still rolls back only its own rows. */
    assert_int_equal(store_batch(st, insert_rows, &fail), 7);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 5);
}

struct nested_ud {
    int inner_result;
    int outer_result;
};

static int inner_batch(store *st, void *ud)
{
    int *result = ud;
    assert_true(store_in_batch(st));
    assert_int_equal(insert_v(st, "inner1"), 0);
    assert_int_equal(insert_v(st, "inner2"), 0);
    return *result;
}

static int outer_batch(store *st, void *ud)
{
    struct nested_ud *n = ud;
    assert_int_equal(insert_v(st, "before"), 0);
    assert_int_equal(store_batch(st, inner_batch, &n->inner_result), n->inner_result);
    assert_true(store_in_batch(st));   /* still inside the outer one */
    assert_int_equal(insert_v(st, "after"), 0);
    return n->outer_result;
}

/* A batch inside a batch is a savepoint: its failure rolls back only its
 * own rows while the outer batch commits; an outer failure drops all. */
static void test_nested_batch_is_a_savepoint(void **state)
{
    char buf[256];
    store *st = *state;   /* fixture: in-memory store with t */

    struct nested_ud inner_fails = {.inner_result = 3, .outer_result = 0};
    assert_int_equal(store_batch(st, outer_batch, &inner_fails), 0);
    assert_false(store_in_batch(st));
    assert_string_equal(all_v(st, buf, sizeof buf), "before,after");

    store_exec(st, "DELETE FROM t");
    struct nested_ud both_ok = {.inner_result = 0, .outer_result = 0};
    assert_int_equal(store_batch(st, outer_batch, &both_ok), 0);
    assert_string_equal(all_v(st, buf, sizeof buf), "before,inner1,inner2,after");

    store_exec(st, "DELETE FROM t");
    struct nested_ud outer_fails = {.inner_result = 0, .outer_result = 9};
    assert_int_equal(store_batch(st, outer_batch, &outer_fails), 9);
    assert_false(store_in_batch(st));
    assert_string_equal(all_v(st, buf, sizeof buf), "");

    /* The store is usable afterwards (no transaction left open). */
    struct batch_ud ok = {.rows = 2, .result = 0};
    assert_int_equal(store_batch(st, insert_rows, &ok), 0);
    assert_string_equal(all_v(st, buf, sizeof buf), "r0,r1");
}

/* The lower-level begin/commit/rollback, and their misuse. */
static void test_begin_commit_rollback(void **state)
{
    char buf[128];
    store *st = *state;   /* fixture: in-memory store with t */
    assert_int_equal(store_begin(st), 0);
    assert_true(store_in_batch(st));
    assert_int_equal(insert_v(st, "rolled back"), 0);
    assert_int_equal(store_rollback(st), 0);
    assert_false(store_in_batch(st));
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 0);

    assert_int_equal(store_begin(st), 0);
    assert_int_equal(insert_v(st, "kept"), 0);
    assert_int_equal(store_commit(st), 0);
    assert_false(store_in_batch(st));
    assert_string_equal(all_v(st, buf, sizeof buf), "kept");

    assert_int_equal(store_commit(st), -1);   /* no transaction */
    assert_true(strlen(store_errmsg(st)) > 0);
    assert_int_equal(store_rollback(st), -1);
}

/* --- statements --------------------------------------------------------- */

/* store_sql with the same text gives the cached statement, reset and with
 * its bindings cleared, however it was left. */
static void test_statement_cache_reuses_and_resets(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    for (int i = 0; i < 3; i++)
        assert_int_equal(insert_v(st, i == 0 ? "a" : i == 1 ? "b" : "c"), 0);

    const char *sql = "SELECT v FROM t WHERE id >= ? ORDER BY id";
    store_stmt *s1 = store_sql(st, sql);
    assert_non_null(s1);
    assert_int_equal(store_param_count(s1), 1);
    assert_int_equal(store_bind_int(s1, 1, 1), 0);
    assert_int_equal(store_step(s1), STORE_ROW);
    assert_string_equal(store_col_text(s1, 0), "a");
    /* abandoned mid-way, binding still set */

    store_stmt *s2 = store_sql(st, sql);
    assert_ptr_equal(s1, s2);              /* the same cached statement */
    /* bindings cleared: id >= NULL matches nothing */
    assert_int_equal(store_step(s2), STORE_DONE);

    for (int round = 0; round < 5; round++) {   /* repeatedly usable */
        store_stmt *s = store_sql(st, sql);
        assert_int_equal(store_bind_int(s, 1, 2), 0);
        assert_int_equal(store_step(s), STORE_ROW);
        assert_string_equal(store_col_text(s, 0), "b");
        assert_int_equal(store_step(s), STORE_ROW);
        assert_string_equal(store_col_text(s, 0), "c");
        assert_int_equal(store_step(s), STORE_DONE);
        /* DONE resets: stepping again starts over with the same binding */
        assert_int_equal(store_step(s), STORE_ROW);
        assert_string_equal(store_col_text(s, 0), "b");
    }
}

/* store_sql_again on a held statement: reset however it was left (mid-way
 * through its rows), its bindings cleared, or, with `bound`, kept; the
 * statement is the cached one, which store_sql still hands out. */
static void test_statement_held_again(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    for (int i = 0; i < 3; i++)
        assert_int_equal(insert_v(st, i == 0 ? "a" : i == 1 ? "b" : "c"), 0);
    const char *sql = "SELECT v FROM t WHERE id >= ? ORDER BY id";
    store_stmt *held = store_sql(st, sql);
    assert_int_equal(store_bind_int(held, 1, 2), 0);
    assert_int_equal(store_step(held), STORE_ROW);
    assert_string_equal(store_col_text(held, 0), "b");
    /* abandoned mid-way: kept bindings, started over */
    store_stmt *s = store_sql_again(st, held, 1);
    assert_ptr_equal(s, held);
    assert_int_equal(store_step(s), STORE_ROW);
    assert_string_equal(store_col_text(s, 0), "b");
    /* cleared: id >= NULL matches nothing */
    s = store_sql_again(st, held, 0);
    assert_int_equal(store_step(s), STORE_DONE);
    assert_ptr_equal(store_sql(st, sql), held);
}

/* store_sql_bound and store_sql_beside_bound hand out the same cached
 * statement as store_sql, reset, its last values left bound; store_sql
 * still clears them. */
static void test_statement_bound(void **state)
{
    store *st = *state;   /* fixture: in-memory store */
    const char *sql = "SELECT ?1 + 1";
    store_stmt *s = store_sql(st, sql);
    assert_int_equal(store_bind_int(s, 1, 41), 0);
    assert_int_equal(store_step(s), STORE_ROW);   /* left on its row */
    assert_ptr_equal(store_sql_bound(st, sql), s);
    assert_int_equal(store_step(s), STORE_ROW);
    assert_int_equal(store_col_int(s, 0), 42);
    assert_ptr_equal(store_sql_beside_bound(st, sql), s);
    assert_int_equal(store_step(s), STORE_ROW);
    assert_int_equal(store_col_int(s, 0), 42);
    assert_ptr_equal(store_sql(st, sql), s);
    assert_int_equal(store_step(s), STORE_ROW);
    assert_int_equal(store_col_type(s, 0), STORE_NULL);   /* cleared: NULL + 1 */
    store_reset(s);
}

/* store_col_texts copies a row's texts into one block: NULL stays NULL,
 * an empty text is "" with length 0, a text with a NUL byte keeps its
 * length, and the copies outlive the statement's next step. */
static void test_col_texts_one_block(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    store_stmt *s = store_sql(st, "SELECT 'ab', NULL, '', CAST(x'410042' AS TEXT), 'tail'");
    assert_int_equal(store_step(s), STORE_ROW);
    static const int cols[] = {0, 1, 2, 3, 4};
    char *a, *b, *c, *d, *e;
    char **const out[] = {&a, &b, &c, &d, &e};
    size_t len[5];
    char *block = store_col_texts(s, cols, 5, out, len);
    store_reset(s);
    assert_string_equal(a, "ab");
    assert_int_equal(len[0], 2);
    assert_null(b);
    assert_int_equal(len[1], 0);
    assert_string_equal(c, "");
    assert_int_equal(len[2], 0);
    assert_int_equal(len[3], 3);
    assert_memory_equal(d, "A\0B", 4);
    assert_string_equal(e, "tail");
    assert_true(a == block && c > a && d > c && e > d);
    free(block);
}

/* Many distinct texts (the cache grows and rehashes): each keeps working and
 * still maps to its own statement. Each text lives in its own buffer. */
static void test_statement_cache_many_texts(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    enum { N = 300 };
    store_stmt *first[N];
    char *sql[N];
    for (int i = 0; i < N; i++) {
        sql[i] = malloc(32);
        assert_non_null(sql[i]);
        snprintf(sql[i], 32, "SELECT %d + ?", i);
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            store_stmt *s = store_sql(st, sql[i]);
            assert_non_null(s);
            if (round == 0)
                first[i] = s;
            else
                assert_ptr_equal(s, first[i]);
            assert_int_equal(store_bind_int(s, 1, 1000), 0);
            assert_int_equal(store_step(s), STORE_ROW);
            assert_int_equal(store_col_int(s, 0), 1000 + i);
            store_reset(s);
        }
    }
    for (int i = 0; i < N; i++)
        free(sql[i]);
}

/* store.h promises a cache keyed by SQL text. store_sql first looks the
 * statement up by the address of `sql` (fast for literals); a caller that
 * formats different SQL into the same buffer must still get the statement
 * of the new text, not the previous one. */
static void test_statement_cache_keys_by_text_not_address(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    char sql[32];
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "SELECT %d + ?", i);   /* same buffer, new text */
        store_stmt *s = store_sql(st, sql);
        assert_non_null(s);
        assert_int_equal(store_bind_int(s, 1, 1000), 0);
        assert_int_equal(store_step(s), STORE_ROW);
        assert_int_equal(store_col_int(s, 0), 1000 + i);
        store_reset(s);
    }
    /* same text at a different address: the same (cached) statement */
    char other[32];
    snprintf(other, sizeof other, "SELECT %d + ?", 0);
    store_stmt *a = store_sql(st, "SELECT 0 + ?");
    store_stmt *b = store_sql(st, other);
    assert_ptr_equal(a, b);
}

/* Bad SQL: store_sql returns NULL (and logs), store_prepare returns NULL with
 * a message; store_exec returns -1 with a message. */
static void test_bad_sql(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    fprintf(stderr, "(the next 'bad SQL' lines on stderr are expected)\n");
    assert_null(store_sql(st, "SELEC oops FROM"));
    assert_null(store_sql(st, "SELECT * FROM no_such_table"));
    assert_null(store_prepare(st, "SELECT * FROM no_such_table"));
    assert_non_null(strstr(store_errmsg(st), "no_such_table"));
    assert_int_equal(store_exec(st, "CREATE TABLEX"), -1);
    assert_non_null(strstr(store_errmsg(st), "syntax error"));
    /* the store still works */
    assert_int_equal(insert_v(st, "ok"), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 1);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM nope"), -1);
}

/* store_prepare/store_finalize for SQL built at run time. */
static void test_prepare_dynamic_sql(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    for (int i = 0; i < 10; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(insert_v(st, v), 0);
    }
    for (int lim = 1; lim <= 4; lim++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM t WHERE id <= %d AND v <> ?", lim * 2);
        store_stmt *s = store_prepare(st, sql);
        assert_non_null(s);
        assert_int_equal(store_bind_text(s, 1, "1", -1), 0);
        assert_int_equal(store_step(s), STORE_ROW);
        assert_int_equal(store_col_int(s, 0), lim * 2 - 1);   /* v "1" is id 2 */
        assert_int_equal(store_step(s), STORE_DONE);
        store_finalize(s);
    }
    store_finalize(NULL);   /* harmless */
}

/* Binding int/double/text/blob/null and reading each back with its type. */
static void test_bind_and_read_every_type(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    assert_int_equal(store_exec(st, "CREATE TABLE ty (i, d, t, b, n, t2, tn)"), 0);

    static const unsigned char blob[] = {0x00, 0xff, 0x10, 0x00, 0x7f};
    char text[] = "hello world";
    store_stmt *ins = store_sql(st, "INSERT INTO ty VALUES (?, ?, ?, ?, ?, ?, ?)");
    assert_non_null(ins);
    assert_int_equal(store_param_count(ins), 7);
    assert_int_equal(store_bind_int(ins, 1, INT64_MIN + 1), 0);
    assert_int_equal(store_bind_double(ins, 2, -2.5e300), 0);
    assert_int_equal(store_bind_text(ins, 3, text, -1), 0);
    assert_int_equal(store_bind_blob(ins, 4, blob, (int)sizeof blob), 0);
    assert_int_equal(store_bind_null(ins, 5), 0);
    assert_int_equal(store_bind_text(ins, 6, text, 5), 0);       /* a prefix */
    assert_int_equal(store_bind_text(ins, 7, NULL, -1), 0);      /* NULL → SQL NULL */
    memset(text, 'Z', sizeof text - 1);   /* the text was copied at bind time */
    assert_int_equal(store_run(ins), 0);
    assert_int_equal(store_changes(st), 1);
    assert_int_equal(store_last_rowid(st), 1);

    /* An out-of-range index is an error, not a crash. */
    store_stmt *ins2 = store_sql(st, "INSERT INTO ty (i) VALUES (?)");
    assert_int_equal(store_bind_int(ins2, 2, 1), -1);
    assert_int_equal(store_bind_int(ins2, 1, INT64_MAX), 0);
    assert_int_equal(store_run(ins2), 0);
    assert_int_equal(store_last_rowid(st), 2);

    store_stmt *s = store_sql(st, "SELECT i, d, t, b, n, t2, tn FROM ty ORDER BY rowid");
    assert_int_equal(store_step(s), STORE_ROW);
    assert_int_equal(store_col_count(s), 7);
    assert_string_equal(store_col_name(s, 0), "i");
    assert_string_equal(store_col_name(s, 6), "tn");

    assert_int_equal(store_col_type(s, 0), STORE_INT);
    assert_true(store_col_int(s, 0) == INT64_MIN + 1);
    assert_int_equal(store_col_type(s, 1), STORE_FLOAT);
    assert_true(store_col_double(s, 1) == -2.5e300);
    assert_int_equal(store_col_type(s, 2), STORE_TEXT);
    assert_string_equal(store_col_text(s, 2), "hello world");
    assert_int_equal(store_col_bytes(s, 2), 11);
    assert_int_equal(store_col_type(s, 3), STORE_BLOB);
    assert_int_equal(store_col_bytes(s, 3), (int)sizeof blob);
    assert_memory_equal(store_col_blob(s, 3), blob, sizeof blob);
    assert_int_equal(store_col_type(s, 4), STORE_NULL);
    assert_null(store_col_text(s, 4));
    assert_int_equal(store_col_type(s, 5), STORE_TEXT);
    assert_string_equal(store_col_text(s, 5), "hello");
    assert_int_equal(store_col_type(s, 6), STORE_NULL);
    assert_null(store_col_text(s, 6));

    assert_int_equal(store_step(s), STORE_ROW);
    assert_true(store_col_int(s, 0) == INT64_MAX);
    assert_int_equal(store_col_type(s, 1), STORE_NULL);
    assert_int_equal(store_step(s), STORE_DONE);

    /* store_run on a statement that yields a row is fine (and resets it). */
    store_stmt *sel = store_sql(st, "SELECT 1");
    assert_int_equal(store_run(sel), 0);
    assert_int_equal(store_step(sel), STORE_ROW);
    assert_int_equal(store_col_int(sel, 0), 1);
    store_reset(sel);

    /* UPDATE: store_changes counts the rows. */
    assert_int_equal(store_exec(st, "UPDATE ty SET n = 1"), 0);
    assert_int_equal(store_changes(st), 2);
}

/* A failing step (constraint) reports STORE_ERROR and store_errmsg names the
 * cause; the statement is usable again afterwards. */
static void test_step_error_message(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    assert_int_equal(store_exec(st, "CREATE TABLE u (k TEXT PRIMARY KEY)"), 0);
    store_stmt *s = store_sql(st, "INSERT INTO u VALUES (?)");
    assert_int_equal(store_bind_text(s, 1, "k1", -1), 0);
    assert_int_equal(store_run(s), 0);
    s = store_sql(st, "INSERT INTO u VALUES (?)");
    assert_int_equal(store_bind_text(s, 1, "k1", -1), 0);
    assert_int_equal(store_step(s), STORE_ERROR);
    assert_non_null(strstr(store_errmsg(st), "UNIQUE"));
    s = store_sql(st, "INSERT INTO u VALUES (?)");
    assert_int_equal(store_bind_text(s, 1, "k2", -1), 0);
    assert_int_equal(store_run(s), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM u"), 2);
}

/* store_errmsg() describes the last failure, not an older one: a failed
 * store_exec must not shadow a later failing statement's own cause
 * ("The last error message on this connection", store.h). */
static void test_errmsg_is_the_last_error_not_a_stale_one(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    assert_int_equal(store_exec(st, "CREATE TABLE u (k TEXT PRIMARY KEY)"), 0);
    assert_int_equal(store_exec(st, "INSERT INTO u VALUES ('k1')"), 0);
    assert_int_equal(store_exec(st, "THIS IS NOT SQL"), -1);          /* earlier error */
    assert_non_null(strstr(store_errmsg(st), "syntax error"));
    store_stmt *s = store_sql(st, "INSERT INTO u VALUES (?)");
    assert_int_equal(store_bind_text(s, 1, "k1", -1), 0);
    assert_int_equal(store_step(s), STORE_ERROR);                      /* the last error */
    assert_non_null(strstr(store_errmsg(st), "UNIQUE"));
}

/* The error that made a batch fail survives its rollback (ROLLBACK itself
 * succeeds and would leave SQLite's message at "not an error"). */
static int batch_hits_unique(store *st, void *ud)
{
    (void)ud;
    store_stmt *s = store_sql(st, "INSERT INTO u VALUES ('dup')");
    assert_int_equal(store_run(s), 0);
    s = store_sql(st, "INSERT INTO u VALUES ('dup')");
    return store_run(s);   /* -1: UNIQUE constraint failed */
}

static void test_errmsg_survives_batch_rollback(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    assert_int_equal(store_exec(st, "CREATE TABLE u (k TEXT PRIMARY KEY)"), 0);
    assert_int_equal(store_batch(st, batch_hits_unique, NULL), -1);
    assert_non_null(strstr(store_errmsg(st), "UNIQUE"));
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM u"), 0);
}

/* --- meta and counting -------------------------------------------------- */

static void test_meta_get_set_and_count(void **state)
{
    store *st = *state;   /* fixture: in-memory store with t */
    int64_t v = 12345;
    assert_int_equal(store_meta_get_int(st, "cursor", &v), 1);   /* absent */
    assert_int_equal(v, 12345);                                   /* untouched */
    assert_null(store_meta_get(st, "name"));

    assert_int_equal(store_meta_set_int(st, "cursor", 42), 0);
    assert_int_equal(store_meta_get_int(st, "cursor", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(store_meta_set_int(st, "cursor", INT64_MAX), 0);   /* overwrite */
    assert_int_equal(store_meta_get_int(st, "cursor", &v), 0);
    assert_true(v == INT64_MAX);

    assert_int_equal(store_meta_set(st, "name", "tend ✓"), 0);
    char *s = store_meta_get(st, "name");
    assert_non_null(s);
    assert_string_equal(s, "tend ✓");
    free(s);
    assert_int_equal(store_meta_set(st, "name", "second"), 0);
    s = store_meta_get(st, "name");
    assert_string_equal(s, "second");
    free(s);

    /* an int read back as text and the reverse */
    s = store_meta_get(st, "cursor");
    assert_non_null(s);
    assert_string_equal(s, "9223372036854775807");
    free(s);
    assert_int_equal(store_meta_set(st, "n", "17"), 0);
    assert_int_equal(store_meta_get_int(st, "n", &v), 0);
    assert_int_equal(v, 17);

    /* schema_version is a meta key too */
    assert_int_equal(store_schema_version(st), 1);

    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 0);
    for (int i = 0; i < 25; i++)
        assert_int_equal(insert_v(st, "x"), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 25);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t WHERE id > 20"), 5);
}

/* --- durability and concurrency on a real file -------------------------- */

static int insert_many(store *st, void *ud)
{
    int n = *(int *)ud;
    for (int i = 0; i < n; i++) {
        store_stmt *s = store_sql(st, "INSERT INTO t (v) VALUES (?)");
        store_bind_int(s, 1, i);
        if (store_run(s) != 0)
            return -1;
    }
    return 0;
}

/* WAL mode; rows committed by a batch are there after close and reopen,
 * with both synchronous settings. */
static void test_wal_commit_survives_reopen(void **state)
{
    (void)state;
    for (int sync_normal = 0; sync_normal <= 1; sync_normal++) {
        char *path = temp_db();
        struct store_options o = {.synchronous_normal = sync_normal};
        store *st = open_with_ok(path, &o, mem_migs, 1);
        char buf[64];
        assert_string_equal(query_text(st, "PRAGMA journal_mode", buf, sizeof buf), "wal");
        assert_string_equal(query_text(st, "PRAGMA synchronous", buf, sizeof buf),
                            sync_normal ? "1" : "2");   /* NORMAL = 1, FULL = 2 */
        int n = 500;
        assert_int_equal(store_batch(st, insert_many, &n), 0);
        /* a rolled-back batch adds nothing */
        struct batch_ud fail = {.rows = 3, .result = 1};
        assert_int_equal(store_batch(st, insert_rows, &fail), 1);
        store_close(st);

        st = open_with_ok(path, &o, mem_migs, 1);
        assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 500);
        assert_int_equal(store_count(st, "SELECT SUM(v) FROM t"), 499 * 500 / 2);
        assert_string_equal(query_text(st, "PRAGMA integrity_check", buf, sizeof buf), "ok");
        store_close(st);
        remove_db(path);
    }
}

/* branch loop2: a commit on the store's thread. The caller goes on at
 * once; its next calls wait for the commit and come after it (a begun
 * transaction is a new one, a read sees the rows); the eventfd turns
 * readable; the result is told once; what was committed that way is on
 * disk after a reopen. */
static void test_commit_on_the_stores_thread(void **state)
{
    (void)state;
    char *path = temp_db();
    store *st = open_with_ok(path, NULL, mem_migs, 1);
    int fd = store_commit_fd(st);
    assert_true(fd >= 0);
    int n = 300;
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_true(store_commit_pending(st));
    assert_false(store_in_batch(st));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);   /* the thread said it ended */
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 300);
    assert_int_equal(store_commit_finish(st), 0);
    assert_false(store_commit_pending(st));
    assert_int_equal(store_commit_finish(st), 0);   /* nothing more to tell */
    assert_int_equal(poll(&p, 1, 0), 0);             /* the eventfd was read */

    /* a transaction begun while the commit is in flight is the next one */
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_rollback(st), 0);   /* only the second goes */
    assert_int_equal(store_commit_finish(st), 0);
    /* a savepoint commits here, nothing in flight */
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_false(store_commit_pending(st));
    assert_int_equal(store_commit(st), 0);
    store_close(st);

    st = open_with_ok(path, NULL, mem_migs, 1);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 600);
    store_close(st);
    remove_db(path);
}

/* A store with table t (mem_migs) and a parent p and child ch under a
 * deferred foreign key: inserting a child with no parent makes the
 * transaction's COMMIT fail, a failed commit at will. */
static store *open_with_fk_tables(const char *path)
{
    store *st = open_with_ok(path, NULL, mem_migs, 1);
    assert_int_equal(store_exec(st, "CREATE TABLE p (id INTEGER PRIMARY KEY);"
                                    "CREATE TABLE ch (pid INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);"
                                    "PRAGMA foreign_keys = ON"), 0);
    return st;
}

/* branch deliv3: a second owner's commit on the store's thread
 * (store_commit_detach, the dispatcher's) ends on its own eventfd and
 * tells its own result: a failed detached commit (a deferred foreign key,
 * rolled back) is reported by store_commit_detached_result and not by
 * store_commit_finish, whose own commit after it succeeded, and the other
 * way round; neither owner's fd turns readable for the other's commit. */
static void test_detached_commit_has_its_own_result(void **state)
{
    (void)state;
    char *path = temp_db();
    store *st = open_with_fk_tables(path);
    int fd = store_commit_fd(st), dfd = store_commit_detached_fd(st);
    assert_true(fd >= 0 && dfd >= 0 && fd != dfd);
    struct pollfd own = {.fd = fd, .events = POLLIN}, det = {.fd = dfd, .events = POLLIN};
    int n = 10;

    /* the detached commit fails, then the owner's succeeds */
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(store_exec(st, "INSERT INTO ch VALUES (99)"), 0);
    assert_int_equal(store_commit_detach(st), 0);
    assert_true(store_commit_pending(st));
    assert_int_equal(poll(&det, 1, 10000), 1);
    assert_int_equal(poll(&own, 1, 0), 0);
    assert_int_equal(store_begin(st), 0);              /* after the failed one: a new transaction */
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_int_equal(poll(&own, 1, 10000), 1);
    assert_int_equal(store_commit_finish(st), 0);
    assert_int_equal(store_commit_detached_result(st), -1);
    assert_non_null(strstr(store_errmsg(st), "FOREIGN KEY"));
    assert_int_equal(store_commit_detached_result(st), 0);   /* told once */
    assert_int_equal(poll(&det, 1, 0), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM ch"), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 10);

    /* the owner's commit fails, the detached one after it succeeds */
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(store_exec(st, "INSERT INTO ch VALUES (98)"), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit_detach(st), 0);
    assert_int_equal(poll(&det, 1, 10000), 1);
    assert_int_equal(store_commit_detached_result(st), 0);
    assert_int_equal(store_commit_finish(st), -1);
    assert_int_equal(store_commit_finish(st), 0);
    assert_int_equal(poll(&own, 1, 0), 0);
    store_close(st);

    st = open_with_ok(path, NULL, mem_migs, 1);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 20);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM ch"), 0);
    store_close(st);
    remove_db(path);
}

/* branch hol4: a transaction begun while the commit before it is in flight
 * (store_begin_after_commit) is open at once for the caller, and what the
 * caller stores meanwhile lands in it, after the commit: a rollback takes
 * back only its rows. A failed commit is told by store_commit_finish (the
 * caller then rolls its own back: neither is stored). With nothing in
 * flight it is store_begin. And the WAL is checkpointed off the writer's
 * path while store_checkpoint_aside is on: 40,000 pages of commits leave a
 * WAL far below them, and a reopen reads every row. */
static void test_begin_after_a_commit_in_flight(void **state)
{
    (void)state;
    char *path = temp_db();
    store *st = open_with_fk_tables(path);
    int n = 300;
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_int_equal(store_begin_after_commit(st), 0);
    assert_true(store_in_batch(st));
    assert_int_equal(insert_many(st, &n), 0);        /* waits for the commit, then in the new transaction */
    assert_int_equal(store_commit_finish(st), 0);
    assert_int_equal(store_rollback(st), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 300);

    /* read the result before anything was stored: the same */
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_int_equal(store_begin_after_commit(st), 0);
    assert_int_equal(store_commit_finish(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit(st), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 900);

    /* the commit in flight fails: told once, the caller's goes too */
    assert_int_equal(store_begin(st), 0);
    assert_int_equal(store_exec(st, "INSERT INTO ch VALUES (97)"), 0);
    assert_int_equal(store_commit_start(st), 0);
    assert_int_equal(store_begin_after_commit(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit_finish(st), -1);
    assert_non_null(strstr(store_errmsg(st), "FOREIGN KEY"));
    assert_int_equal(store_commit_finish(st), 0);
    assert_int_equal(store_rollback(st), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM ch"), 0);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 900);

    /* nothing in flight: a plain BEGIN */
    assert_int_equal(store_begin_after_commit(st), 0);
    assert_int_equal(insert_many(st, &n), 0);
    assert_int_equal(store_commit(st), 0);

    /* about 40,000 pages through the WAL, 100 rows of 2 KB a commit, the
     * checkpoints on the store's thread (store_checkpoint_aside) */
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(store_exec(st, "CREATE TABLE b (v TEXT)"), 0);
    store_checkpoint_aside(st, 1);
    for (int c = 0; c < 800; c++) {
        assert_int_equal(store_begin(st), 0);
        for (int i = 0; i < 100; i++) {
            store_stmt *s = store_sql(st, "INSERT INTO b (v) VALUES (?)");
            store_bind_text(s, 1, big, -1);
            assert_int_equal(store_run(s), 0);
        }
        assert_int_equal(store_commit(st), 0);
    }
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size < (off_t)4 * 8192 * 4200);   /* the bound: four times the checkpoint's size */
    store_close(st);

    st = open_with_ok(path, NULL, mem_migs, 1);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM t"), 1200);
    assert_int_equal(store_count(st, "SELECT COUNT(*) FROM b"), 80000);
    store_close(st);
    remove_db(path);
}

/* Two connections on one file: while A holds BEGIN IMMEDIATE with an
 * uncommitted row, B reads (the committed snapshot, without waiting), and
 * B's writes fail after its busy_timeout with an error; after A commits,
 * B sees the row and can write. Nothing is corrupted. */
static int must_not_run(store *st, void *ud)
{
    (void)st;
    (*(int *)ud)++;
    return 0;
}

static void test_second_connection_reads_during_write_and_write_fails_busy(void **state)
{
    (void)state;
    char *path = temp_db();
    struct store_options o = {.busy_timeout_ms = 50};
    store *a = open_with_ok(path, &o, mem_migs, 1);
    store *b = open_with_ok(path, &o, mem_migs, 1);   /* no migration reruns */
    assert_int_equal(store_schema_version(b), 1);
    assert_int_equal(insert_v(a, "committed"), 0);

    assert_int_equal(store_begin(a), 0);              /* BEGIN IMMEDIATE: write lock */
    assert_int_equal(insert_v(a, "pending"), 0);

    /* B reads the committed snapshot (a blocked read would fail: -1) */
    assert_int_equal(store_count(b, "SELECT COUNT(*) FROM t"), 1);
    char buf[128];
    assert_string_equal(all_v(b, buf, sizeof buf), "committed");

    double t0 = now_ms();
    assert_int_equal(store_exec(b, "INSERT INTO t (v) VALUES ('from b')"), -1);
    double waited = now_ms() - t0;
    assert_true(strstr(store_errmsg(b), "locked") || strstr(store_errmsg(b), "busy"));
    assert_true(waited >= 30);       /* busy_timeout was honoured ... */
    assert_true(waited < 2000);      /* ... and not the 5 s default */

    /* a cached statement write fails the same way, and so does a batch
     * (its BEGIN IMMEDIATE cannot take the lock: the callback never runs) */
    store_stmt *s = store_sql(b, "INSERT INTO t (v) VALUES (?)");
    store_bind_text(s, 1, "from b stmt", -1);
    assert_int_equal(store_run(s), -1);
    int calls = 0;
    assert_int_equal(store_batch(b, must_not_run, &calls), -1);
    assert_int_equal(calls, 0);
    assert_false(store_in_batch(b));

    assert_int_equal(store_commit(a), 0);
    assert_string_equal(all_v(b, buf, sizeof buf), "committed,pending");
    assert_int_equal(insert_v(b, "from b"), 0);
    assert_string_equal(all_v(a, buf, sizeof buf), "committed,pending,from b");
    store_close(b);
    store_close(a);

    store *c = open_with_ok(path, NULL, mem_migs, 1);
    assert_string_equal(query_text(c, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    assert_string_equal(all_v(c, buf, sizeof buf), "committed,pending,from b");
    store_close(c);
    remove_db(path);
}

/* A reader (store_open_reader) reads beside a commit in flight on the
 * writer's thread: its calls do not wait for that commit (the writer's
 * commit stays pending until the writer's own next call), it sees either
 * the state before that commit or after, never half, and it cannot write. */
static void test_reader_reads_beside_a_commit_in_flight(void **state)
{
    (void)state;
    char *path = temp_db();
    store *w = open_with_ok(path, NULL, mem_migs, 1);
    int n = 300;
    assert_int_equal(store_begin(w), 0);
    assert_int_equal(insert_many(w, &n), 0);
    assert_int_equal(store_commit(w), 0);
    char *err = NULL;
    store *r = store_open_reader(path, 0, &err);
    assert_null(err);
    assert_non_null(r);
    assert_int_equal(store_count(r, "SELECT COUNT(*) FROM t"), 300);

    assert_int_equal(store_begin(w), 0);
    assert_int_equal(insert_many(w, &n), 0);
    assert_int_equal(store_commit_start(w), 0);
    assert_true(store_commit_pending(w));
    int64_t seen = store_count(r, "SELECT COUNT(*) FROM t");
    assert_true(seen == 300 || seen == 600);
    assert_true(store_commit_pending(w));   /* the reader did not settle it */
    assert_int_equal(store_exec(r, "INSERT INTO t (v) VALUES ('from the reader')"), -1);
    assert_true(store_commit_pending(w));
    assert_int_equal(store_commit_finish(w), 0);
    assert_int_equal(store_count(r, "SELECT COUNT(*) FROM t"), 600);
    store_close(r);
    store_close(w);

    assert_null(store_open_reader("/nonexistent-dir/x.db", 0, &err));
    assert_non_null(err);
    free(err);
    remove_db(path);
}

/* A cached SELECT abandoned mid-way, or one that failed, must not keep a
 * read snapshot open across a commit (store.h: DONE/ERROR reset, and commit
 * resets busy statements): after B commits a row, A sees it. */
static void test_abandoned_statement_holds_no_snapshot(void **state)
{
    (void)state;
    char *path = temp_db();
    struct store_options o = {.busy_timeout_ms = 50};
    store *a = open_with_ok(path, &o, mem_migs, 1);
    store *b = open_with_ok(path, &o, mem_migs, 1);
    assert_int_equal(insert_v(a, "1"), 0);
    assert_int_equal(insert_v(a, "2"), 0);

    /* A: a statement that failed at run time (integer overflow in abs) */
    store_stmt *bad = store_sql(a, "SELECT abs(-9223372036854775807 - 1) FROM t");
    assert_non_null(bad);
    assert_int_equal(store_step(bad), STORE_ERROR);

    assert_int_equal(insert_v(b, "3"), 0);
    assert_int_equal(store_count(a, "SELECT COUNT(*) FROM t"), 3);

    /* A: a batch started while a cached SELECT is left mid-way still
     * commits, and after it A sees B's later rows. */
    store_stmt *sel = store_sql(a, "SELECT v FROM t ORDER BY id");
    assert_int_equal(store_step(sel), STORE_ROW);
    struct batch_ud one = {.rows = 1, .result = 0};
    assert_int_equal(store_batch(a, insert_rows, &one), 0);
    assert_int_equal(insert_v(b, "5"), 0);
    assert_int_equal(store_count(a, "SELECT COUNT(*) FROM t"), 5);
    store_close(b);
    store_close(a);
    remove_db(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_file_runs_all_builtin_migrations),
        cmocka_unit_test(test_reopen_runs_no_migration_twice),
        cmocka_unit_test(test_custom_migrations_applied_in_order),
        cmocka_unit_test(test_failing_migration_leaves_previous_version),
        cmocka_unit_test(test_newer_database_is_refused),
        cmocka_unit_test(test_open_bad_path_fails_with_message),
        cmocka_unit_test_setup_teardown(test_batch_commits_all_or_nothing, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_nested_batch_is_a_savepoint, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_begin_commit_rollback, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_statement_cache_reuses_and_resets, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_statement_held_again, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_col_texts_one_block, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_statement_bound, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_statement_cache_many_texts, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_statement_cache_keys_by_text_not_address, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_bad_sql, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_prepare_dynamic_sql, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_bind_and_read_every_type, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_step_error_message, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_errmsg_is_the_last_error_not_a_stale_one, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_errmsg_survives_batch_rollback, setup_mem, teardown_mem),
        cmocka_unit_test_setup_teardown(test_meta_get_set_and_count, setup_mem, teardown_mem),
        cmocka_unit_test(test_wal_commit_survives_reopen),
        cmocka_unit_test(test_commit_on_the_stores_thread),
        cmocka_unit_test(test_detached_commit_has_its_own_result),
        cmocka_unit_test(test_begin_after_a_commit_in_flight),
        cmocka_unit_test(test_second_connection_reads_during_write_and_write_fails_busy),
        cmocka_unit_test(test_abandoned_statement_holds_no_snapshot),
        cmocka_unit_test(test_reader_reads_beside_a_commit_in_flight),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
