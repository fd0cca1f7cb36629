/* bench/import_raw — the ceiling for `tend import` into an empty store: raw
 * SQLite writing the same customer and tag rows into the same tables with
 * the same indexes, as fast as plain C can.
 *
 *   build/release/bench_import_raw CUSTOMERS.csv DB
 *
 * CUSTOMERS.csv is what `gen customers` writes (no quoted cells, so a split
 * on ',' reads it). The file is read and split, and its numbers converted,
 * before the clock starts: the figure is SQLite's own cost. Then, in one
 * transaction (BEGIN IMMEDIATE, WAL, synchronous=FULL, the page cache raised
 * to hold it, as tend does), the indexes of customers and customer_tags are
 * dropped, every customer row is inserted, 32 rows to a statement as tend's
 * first import writes them (the columns tend writes: the fields, lifecycle
 * and r f m, updated_at), and
 * every tag row with its customer's last_order_at, and the indexes are
 * built again by sorting, with the sorter settings tend's first import
 * uses for the builds (from 100,000 rows: temporary files, one sorter
 * worker thread, runs of 2 MiB, cache_spill off), so the figure is still
 * what plain C and SQLite can do for the same rows and indexes. DB is
 * created with tend's schema first (store_open).
 * Prints "rows seconds". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "bench.h"
#include "bench_sqlite.h"
#include "store.h"
#include "util.h"

enum { C_ID, C_NAME, C_PHONE, C_EMAIL, C_CITY, C_REGION, C_TZ, C_BIRTHDAY, C_ORDERS, C_SPENT,
       C_FIRST_ORDER, C_LAST_ORDER, C_TAGS, NCOLS };

struct row {
    char *cell[NCOLS];          /* NULL: empty */
    long long orders, first_order, last_order;
    double spent;
};

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static void bind_time(sqlite3_stmt *s, int i, const char *cell, long long v)
{
    if (cell)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

#define GROUP 32
#define ROW_PARAMS 18

/* Binds r's values from parameter base + 1 on. */
static void bind_row(sqlite3_stmt *ins, int base, const struct row *r, long long now)
{
    for (int c = C_ID; c <= C_BIRTHDAY; c++)
        bind_text(ins, base + c + 1, r->cell[c]);
    sqlite3_bind_int64(ins, base + 9, now);
    bind_time(ins, base + 10, r->cell[C_FIRST_ORDER], r->first_order);
    bind_time(ins, base + 11, r->cell[C_LAST_ORDER], r->last_order);
    sqlite3_bind_int64(ins, base + 12, r->orders);
    sqlite3_bind_double(ins, base + 13, r->spent);
    /* lifecycle and r f m: tend derives them from the same fields */
    sqlite3_bind_text(ins, base + 14, r->orders >= 3 ? "active" : r->orders == 2 ? "repeat" : "new", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int(ins, base + 15, r->orders ? 3 : 1);
    sqlite3_bind_int(ins, base + 16, r->orders > 4 ? 5 : (int)r->orders + 1);
    sqlite3_bind_int(ins, base + 17, r->spent > 1000 ? 4 : 2);
    sqlite3_bind_int64(ins, base + 18, now);
}

int main(int argc, char **argv)
{
    bench_name = "bench_import_raw";
    if (argc != 3) {
        fprintf(stderr, "usage: bench_import_raw CUSTOMERS.csv DB\n");
        return 2;
    }
    size_t len;
    char *data = util_read_file(argv[1], &len);
    if (!data) {
        perror(argv[1]);
        return 1;
    }
    struct row *rows = NULL;
    size_t n = 0, cap = 0;
    char *p = memchr(data, '\n', len);      /* past the header */
    for (p = p ? p + 1 : data + len; p < data + len;) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        if (!nl)
            nl = data + len;
        *nl = 0;
        if (n == cap)
            rows = xrealloc(rows, (cap = cap ? cap * 2 : 65536) * sizeof *rows);
        struct row *r = &rows[n++];
        memset(r, 0, sizeof *r);
        for (int c = 0; c < NCOLS && p; c++) {
            char *comma = c + 1 < NCOLS ? strchr(p, ',') : NULL;
            if (comma)
                *comma = 0;
            r->cell[c] = *p ? p : NULL;
            p = comma ? comma + 1 : NULL;
        }
        r->orders = r->cell[C_ORDERS] ? atoll(r->cell[C_ORDERS]) : 0;
        r->spent = r->cell[C_SPENT] ? atof(r->cell[C_SPENT]) : 0;
        r->first_order = r->cell[C_FIRST_ORDER] ? atoll(r->cell[C_FIRST_ORDER]) : 0;
        r->last_order = r->cell[C_LAST_ORDER] ? atoll(r->cell[C_LAST_ORDER]) : 0;
        p = nl + 1;
    }

    /* One thread, one connection: no mutex per call, as tend's store opens it. */
    sqlite3 *db = bench_raw_open_v2(argv[2], SQLITE_OPEN_NOMUTEX);
    char pragma[160];
    snprintf(pragma, sizeof pragma, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
             " PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%zu", len * 9 / 4 / 1024 + 65536);
    bench_exec(db, pragma);

    double t0 = bench_seconds();
    long long now = (long long)time(NULL);
    bench_exec(db, "BEGIN IMMEDIATE");
    /* The indexes (and the triggers that keep customer_tags.last_order_at,
     * which the inserts below write directly) go, to be built again after. */
    sqlite3_stmt *q;
    sqlite3_prepare_v2(db, "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
                           " AND tbl_name IN ('customers', 'customer_tags') AND sql IS NOT NULL", -1, &q, NULL);
    char **drop = NULL, **again = NULL;
    int nagain = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        drop = xrealloc(drop, (size_t)(nagain + 1) * sizeof *drop);
        again = xrealloc(again, (size_t)(nagain + 1) * sizeof *again);
        drop[nagain] = xasprintf("DROP %s \"%s\"", (const char *)sqlite3_column_text(q, 0),
                                 (const char *)sqlite3_column_text(q, 1));
        again[nagain++] = xstrdup((const char *)sqlite3_column_text(q, 2));
    }
    sqlite3_finalize(q);
    for (int i = 0; i < nagain; i++) {
        bench_exec(db, drop[i]);
        free(drop[i]);
    }
    free(drop);
    /* the customer rows GROUP to a statement, as tend's first import
     * writes them (customer_write_many), the last few one by one */
    sqlite3_stmt *inserts[GROUP + 1] = {0}, *tag;
    static const char head[] = "INSERT INTO customers (id, name, phone, email, city, region, timezone, birthday,"
                               " first_seen_at, first_order_at, last_order_at, orders_count, total_spent,"
                               " last_active_at, blocked, lifecycle, r, f, m, attrs, updated_at) VALUES ",
                      row[] = "(?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,0,?,?,?,?,NULL,?)";
    sqlite3_stmt *one = bench_chunk(db, inserts, 1, head, row, ""),
                 *group = bench_chunk(db, inserts, GROUP, head, row, "");
    sqlite3_prepare_v2(db, "INSERT INTO customer_tags (customer, tag, last_order_at) VALUES (?, ?, ?)",
                       -1, &tag, NULL);
    for (size_t i = 0; i < n; i++) {
        struct row *r = &rows[i];
        if (i % GROUP == 0 && i + GROUP <= n) {
            for (int k = 0; k < GROUP; k++)
                bind_row(group, k * ROW_PARAMS, &rows[i + (size_t)k], now);
            bench_run(db, group);
        } else if (i + GROUP - i % GROUP > n) {   /* in the tail */
            bind_row(one, 0, r, now);
            bench_run(db, one);
        }
        for (char *t = r->cell[C_TAGS]; t;) {
            char *sep = strchr(t, '|');
            if (sep)
                *sep = 0;
            sqlite3_bind_text(tag, 1, r->cell[C_ID], -1, SQLITE_STATIC);
            sqlite3_bind_text(tag, 2, t, -1, SQLITE_STATIC);
            bind_time(tag, 3, r->cell[C_LAST_ORDER], r->last_order);
            sqlite3_step(tag);
            sqlite3_reset(tag);
            t = sep ? sep + 1 : NULL;
        }
    }
    double t1 = bench_seconds();
    /* The index builds with the sorter settings tend uses for a first
     * import this large (importer.c, sort_threaded; the same threshold,
     * SORT_THREADED_ROWS): temporary files (so the sorter may use a
     * thread), one worker thread, runs of 2 MiB (a run is as large as the
     * page cache), and the transaction's dirty pages kept in memory past
     * that small cache. Set back before the commit, as tend does. */
    int threaded = n >= 100000;
    if (threaded)
        bench_exec(db, "PRAGMA temp_store=FILE; PRAGMA threads=1; PRAGMA cache_spill=0; PRAGMA cache_size=-2048");
    for (int i = 0; i < nagain; i++) {
        bench_exec(db, again[i]);
        free(again[i]);
    }
    if (threaded) {
        snprintf(pragma, sizeof pragma, "PRAGMA cache_size=-%zu; PRAGMA cache_spill=1; PRAGMA threads=0;"
                 " PRAGMA temp_store=MEMORY", len * 9 / 4 / 1024 + 65536);
        bench_exec(db, pragma);
    }
    double t2 = bench_seconds();
    bench_exec(db, "COMMIT");
    double dt = bench_seconds() - t0;
    fprintf(stderr, "import_raw: rows %.2f s, indexes %.2f s, commit %.2f s\n", t1 - t0, t2 - t1, t0 + dt - t2);
    printf("%zu %.3f\n", n, dt);
    sqlite3_finalize(one);
    sqlite3_finalize(group);   /* the only two of inserts[] */
    sqlite3_finalize(tag);
    sqlite3_close(db);
    free(again);
    free(rows);
    free(data);
    return 0;
}
