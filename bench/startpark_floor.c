/* bench/startpark_floor — how fast SQLite on this machine can take an event
 * that starts a journey and parks it at a wait at all: the fewest rows a
 * durable parked journey needs, written with raw SQLite and nothing else.
 *
 *   build/release/bench_startpark_floor EVENTS.ndjson DB CUSTOMERS
 *
 * EVENTS are the order.paid events of bench/run.sh's start-and-park section
 * ({"id", "type", "customer", "total"}), for customers c0000000001..CUSTOMERS.
 * DB is created anew with a schema much smaller than tend's:
 *   events     (seq, id, customer, at, body)                 no index
 *   customers  (id, last_order_at, orders_count, total_spent,
 *               last_active_at)   keyed by id, indexed by last_order_at
 *   instances  (id, journey, customer, event, wake_at, history)
 *              indexed by wake_at: the one index a scheduler needs to find
 *              what is due; the trigger is the event's seq, not a copy
 * Per event, in transactions of 50,000 (tend's EVENT_BATCH), WAL,
 * synchronous=FULL, a 64 MiB page cache: one INSERT of the event, one UPDATE
 * of its customer; the batch's instances in multi-row INSERTs of 64 rows
 * (the fastest plain SQLite found for them, see bench_startpark_raw).
 * Everything else tend writes is left out: no instance counts, no entries
 * row (the re-entry rule), no activity hour (the best send hour), no timer
 * row, no events cursor, no id index on events (deduplication), no state or
 * label on the instance; and the NDJSON is parsed before the clock starts
 * (tend parses each event when storing it and again when processing it).
 * So no store that keeps such a journey durably can go faster on this
 * machine than this program; bench_startpark_raw is the ceiling for tend's
 * own rows. Prints "EVENTS SECONDS". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "bench.h"
#include "bench_sqlite.h"
#include "util.h"

#define BATCH 50000
#define WAIT_SECONDS 86400

int main(int argc, char **argv)
{
    bench_name = "bench_startpark_floor";
    bench_want_args(argc, 4, "EVENTS.ndjson DB CUSTOMERS");
    long customers = atol(argv[3]);
    struct bench_events all = {0};
    bench_load_events(argv[1], &all);
    sqlite3 *db = bench_floor_open(argv[2],
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL,"
        " customer TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);"
        "CREATE TABLE customers (id TEXT PRIMARY KEY, last_order_at INTEGER,"
        " orders_count INTEGER NOT NULL DEFAULT 0, total_spent REAL NOT NULL DEFAULT 0,"
        " last_active_at INTEGER) WITHOUT ROWID;"
        "CREATE INDEX customers_last_order ON customers (last_order_at)"
        " WHERE last_order_at IS NOT NULL;"
        "CREATE TABLE instances (id INTEGER PRIMARY KEY, journey TEXT NOT NULL,"
        " customer TEXT NOT NULL, event INTEGER NOT NULL, wake_at INTEGER, history TEXT);"
        "CREATE INDEX instances_wake ON instances (wake_at) WHERE wake_at IS NOT NULL;", customers);

    sqlite3_stmt *ins_event = bench_prepare(db, "INSERT INTO events (id, customer, at, body) VALUES (?, ?, ?, ?)");
    sqlite3_stmt *upd = bench_prepare(db, "UPDATE customers SET last_order_at = ?2, last_active_at = ?2,"
                                          " orders_count = orders_count + 1, total_spent = total_spent + ?3"
                                          " WHERE id = ?1");
    sqlite3_stmt *chunks[BENCH_CHUNK + 1] = {0};
    long long *seqs = xmalloc(BATCH * sizeof *seqs);

    double t0 = bench_seconds();
    long long now = (long long)time(NULL), wake = now + WAIT_SECONDS;
    char history[96];
    snprintf(history, sizeof history, "wait 68d34a7a %lld - \"%d\" %lld\n", now, WAIT_SECONDS, wake);
    for (size_t first = 0; first < all.n; first += BATCH) {
        size_t got = all.n - first < BATCH ? all.n - first : BATCH;
        bench_exec(db, "BEGIN");
        for (size_t i = 0; i < got; i++) {
            const struct bench_event *e = &all.v[first + i];
            sqlite3_bind_text(ins_event, 1, e->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins_event, 2, e->customer, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins_event, 3, now);
            sqlite3_bind_text(ins_event, 4, e->line, -1, SQLITE_STATIC);
            bench_run(db, ins_event);
            seqs[i] = sqlite3_last_insert_rowid(db);
            sqlite3_bind_text(upd, 1, e->customer, -1, SQLITE_STATIC);
            sqlite3_bind_int64(upd, 2, now);
            sqlite3_bind_double(upd, 3, e->amount);
            bench_run(db, upd);
        }
        for (size_t i = 0; i < got; i += BENCH_CHUNK) {
            int rows = got - i < BENCH_CHUNK ? (int)(got - i) : BENCH_CHUNK;
            sqlite3_stmt *s = bench_chunk(db, chunks, rows,
                                          "INSERT INTO instances (journey, customer, event, wake_at, history) VALUES ",
                                          "('thanks',?,?,?,?)", "");
            for (int k = 0; k < rows; k++) {
                sqlite3_bind_text(s, 4 * k + 1, all.v[first + i + (size_t)k].customer, -1, SQLITE_STATIC);
                sqlite3_bind_int64(s, 4 * k + 2, seqs[i + (size_t)k]);
                sqlite3_bind_int64(s, 4 * k + 3, wake);
                sqlite3_bind_text(s, 4 * k + 4, history, -1, SQLITE_STATIC);
            }
            bench_run(db, s);
        }
        bench_exec(db, "COMMIT");
    }
    double t = bench_seconds() - t0;

    sqlite3_finalize(ins_event);
    sqlite3_finalize(upd);
    for (int k = 0; k <= BENCH_CHUNK; k++)
        sqlite3_finalize(chunks[k]);
    free(seqs);
    sqlite3_close(db);
    size_t n = all.n;
    bench_events_free(&all);
    printf("%zu %.3f\n", n, t);
    return 0;
}
