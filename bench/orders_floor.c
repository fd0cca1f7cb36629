/* bench/orders_floor — how fast SQLite on this machine can store order
 * events with items at all: the fewest rows that still let a `bought`
 * segment and a `last_order_at` segment read an index, written with raw
 * SQLite and nothing else.
 *
 *   build/release/bench_orders_floor EVENTS.ndjson DB CUSTOMERS
 *
 * EVENTS are the order.paid events of bench/run.sh's orders section
 * (`gen orders`), for customers c0000000001..CUSTOMERS. DB is created anew
 * with a schema much smaller than tend's:
 *   events       (seq, id, customer, at, body)       no index
 *   order_items  (customer, sku, category, at, qty, price)
 *                indexed by (category, at) and (customer, sku)
 *   customers    (id, last_order_at, orders_count, total_spent)
 *                keyed by id, indexed by last_order_at
 * Per event, in transactions of 50,000 (tend's EVENT_BATCH), WAL,
 * synchronous=FULL, a 64 MiB page cache: one INSERT of the event, one
 * multi-row INSERT of its lines, one UPDATE of its customer. Everything
 * tend adds is left out: no bought facts or counts, no activity hours, no
 * events cursor, no id or customer index on events, no lifecycle, no
 * deduplication of orders or events, and the NDJSON is parsed before the
 * clock starts (tend parses each event twice: when storing, when
 * processing). So no store that keeps order lines for these segments can
 * go faster on this machine than this program; bench_orders_raw is the
 * ceiling for tend's own rows. Prints "EVENTS SECONDS". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "bench.h"
#include "bench_orders.h"
#include "bench_sqlite.h"
#include "util.h"

#define MAX_ITEMS BENCH_MAX_ITEMS
#define BATCH 50000

/* The INSERT of n lines (n in 1..MAX_ITEMS), six values a line. */
static sqlite3_stmt *lines_stmt(sqlite3 *db, int n)
{
    char sql[1024] = "INSERT INTO order_items (customer, sku, category, at, qty, price) VALUES ";
    for (int i = 0; i < n; i++)
        strcat(sql, i ? ",(?,?,?,?,?,?)" : "(?,?,?,?,?,?)");
    return bench_prepare(db, sql);
}

int main(int argc, char **argv)
{
    bench_name = "bench_orders_floor";
    if (argc < 4) {
        fprintf(stderr, "usage: bench_orders_floor EVENTS.ndjson DB CUSTOMERS\n");
        return 2;
    }
    long customers = atol(argv[3]);
    struct bench_orders all = {0};
    if (bench_load_ndjson(argv[1], bench_add_order, &all) != 0) {
        perror(argv[1]);
        return 1;
    }
    sqlite3 *db = bench_floor_open(argv[2],
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL,"
        " customer TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);"
        "CREATE TABLE order_items (customer TEXT NOT NULL, sku TEXT NOT NULL,"
        " category TEXT, at INTEGER NOT NULL, qty REAL NOT NULL, price REAL);"
        "CREATE INDEX order_items_category ON order_items (category, at);"
        "CREATE INDEX order_items_customer ON order_items (customer, sku);"
        "CREATE TABLE customers (id TEXT PRIMARY KEY, last_order_at INTEGER,"
        " orders_count INTEGER NOT NULL DEFAULT 0, total_spent REAL NOT NULL DEFAULT 0)"
        " WITHOUT ROWID;"
        "CREATE INDEX customers_last_order ON customers (last_order_at)"
        " WHERE last_order_at IS NOT NULL;", customers);

    sqlite3_stmt *ins_event = bench_prepare(db, "INSERT INTO events (id, customer, at, body) VALUES (?, ?, ?, ?)");
    sqlite3_stmt *upd = bench_prepare(db, "UPDATE customers SET last_order_at = ?2,"
                                          " orders_count = orders_count + 1, total_spent = total_spent + ?3"
                                          " WHERE id = ?1");
    sqlite3_stmt *ins_lines[MAX_ITEMS + 1] = {0};
    for (int n = 1; n <= MAX_ITEMS; n++)
        ins_lines[n] = lines_stmt(db, n);

    double t0 = bench_seconds();
    bench_exec(db, "BEGIN");
    for (size_t i = 0; i < all.n; i++) {
        const struct bench_order *e = &all.v[i];
        sqlite3_bind_text(ins_event, 1, e->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_event, 2, e->customer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_event, 3, e->at);
        sqlite3_bind_text(ins_event, 4, e->line, -1, SQLITE_STATIC);
        bench_run(db, ins_event);
        if (e->nitems) {
            sqlite3_stmt *s = ins_lines[e->nitems];
            for (int k = 0; k < e->nitems; k++) {
                const struct bench_item *it = &e->items[k];
                sqlite3_bind_text(s, 6 * k + 1, e->customer, -1, SQLITE_STATIC);
                sqlite3_bind_text(s, 6 * k + 2, it->sku, -1, SQLITE_STATIC);
                sqlite3_bind_text(s, 6 * k + 3, it->category, -1, SQLITE_STATIC);
                sqlite3_bind_int64(s, 6 * k + 4, e->at);
                sqlite3_bind_double(s, 6 * k + 5, it->qty);
                sqlite3_bind_double(s, 6 * k + 6, it->price);
            }
            bench_run(db, s);
        }
        sqlite3_bind_text(upd, 1, e->customer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(upd, 2, e->at);
        sqlite3_bind_double(upd, 3, e->total);
        bench_run(db, upd);
        if ((i + 1) % BATCH == 0 && i + 1 < all.n) {
            bench_exec(db, "COMMIT");
            bench_exec(db, "BEGIN");
        }
    }
    bench_exec(db, "COMMIT");
    double t = bench_seconds() - t0;

    sqlite3_finalize(ins_event);
    sqlite3_finalize(upd);
    for (int n = 1; n <= MAX_ITEMS; n++)
        sqlite3_finalize(ins_lines[n]);
    sqlite3_close(db);
    size_t n = all.n;
    bench_orders_free(&all);
    printf("%zu %.3f\n", n, t);
    return 0;
}
