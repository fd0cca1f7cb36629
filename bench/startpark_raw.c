/* bench/startpark_raw — the ceiling for an event that starts a journey and
 * parks it at its first wait: raw SQLite writing the rows tend writes, in
 * the batches tend writes them, synchronous=FULL in WAL mode.
 *
 *   build/release/bench_startpark_raw EVENTS.ndjson DB
 *
 * DB is a copy of the store tend ingests into (same schema, same customers);
 * EVENTS are paid orders ({"id", "type", "customer", "total"}) for customers
 * in it. As `tend ingest` does:
 *  1. store every event (the INSERT tend uses), committing every 50,000;
 *  2. process them in transactions of 50,000 (the engine's EVENT_BATCH):
 *     read the batch back by seq, and for each event update the customer's
 *     order fields (orders_count, total_spent, first/last order, last
 *     active), count the event in the customer's local hour (activity_hours,
 *     the zone read from the customer row), insert the instance already
 *     parked (state waiting, step 1, its label, wake_at, the trigger event
 *     with its "at", the one-line history, counted = 1), count the chunk's instances in
 *     instance_counts (one statement, as tend's writer does), upsert the
 *     entries row, insert the timer; then move meta.events_cursor.
 * Each row is written once with a minimal statement, and the rows that need
 * no answer back (activity hour, instance, entries, timer) go in multi-row
 * statements of 64 rows (bench_park_rows; a quarter less CPU than one statement a row): what
 * tend would cost if its per-event CPU were SQLite's alone. (The customer's derived fields,
 * lifecycle and RFM, are unindexed columns of the same row: setting them in
 * the same UPDATE adds no row or index write, so the ceiling leaves them out.)
 * The customer UPDATE is written as tend's is, so that it cannot abort (OR
 * IGNORE, CASE rather than the MAX function): SQLite then keeps no statement
 * journal for it and its tag trigger (see customer_apply_event).
 * The connection is set up as tend's store is (WAL, synchronous=FULL, a
 * 64 MiB page cache, the same checkpoint interval), so neither side pays
 * for a smaller cache. The NDJSON is parsed before the clock starts. Prints "EVENTS SECONDS STORE_SECONDS PROCESS_SECONDS". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "bench.h"
#include "bench_sqlite.h"
#include "util.h"

#define PROCESS_BATCH 50000
#define WAIT_SECONDS 86400

int main(int argc, char **argv)
{
    bench_name = "bench_startpark_raw";
    bench_want_args(argc, 3, "EVENTS.ndjson DB");
    struct bench_events all = {0};
    bench_load_events(argv[1], &all);
    struct bench_event *evs = all.v;
    size_t n = all.n;

    sqlite3 *db = bench_open_store(argv[2]);
    struct bench_cursor cur;
    bench_cursor_open(db, &cur, "seq, customer, at, body");
    sqlite3_stmt *upd_customer = bench_prepare(db,
        "UPDATE OR IGNORE customers SET orders_count = orders_count + 1, total_spent = total_spent + ?2,"
        " first_order_at = COALESCE(first_order_at, ?1),"
        " last_order_at = CASE WHEN last_order_at > ?1 THEN last_order_at ELSE ?1 END,"
        " last_active_at = CASE WHEN last_active_at > ?1 THEN last_active_at ELSE ?1 END, updated_at = ?1 WHERE id = ?3");
    sqlite3_stmt *get_zone = bench_prepare(db, "SELECT timezone FROM customers WHERE id = ?");
    struct bench_zone_hours zones = {0};
    struct bench_park park;
    bench_park_open(db, &park, "thanks", "e85329c8463e1e75");
    struct bench_parked *rows = calloc(PROCESS_BATCH, sizeof *rows);

    double t0 = bench_seconds();
    long long now = (long long)time(NULL);
    bench_store_events(db, &all, now);
    double t1 = bench_seconds();

    /* seq → the event's amount: events are stored in file order from seq
     * first_seq on (the base store has none of its own) */
    long long first_seq = -1;
    size_t processed = 0;
    char history[160];
    for (;;) {
        long long cursor = bench_batch_begin(db, &cur, PROCESS_BATCH);
        int got = 0;
        while (sqlite3_step(cur.batch) == SQLITE_ROW) {
            long long seq = sqlite3_column_int64(cur.batch, 0);
            if (first_seq < 0)
                first_seq = seq;
            const char *customer = (const char *)sqlite3_column_text(cur.batch, 1);
            long long at = sqlite3_column_int64(cur.batch, 2);
            size_t k = (size_t)(seq - first_seq);
            double amount = k < n ? evs[k].amount : 0;
            sqlite3_bind_int64(upd_customer, 1, at);
            sqlite3_bind_double(upd_customer, 2, amount);
            sqlite3_bind_text(upd_customer, 3, customer, -1, SQLITE_STATIC);
            bench_run(db, upd_customer);
            sqlite3_bind_text(get_zone, 1, customer, -1, SQLITE_STATIC);
            const char *zone = sqlite3_step(get_zone) == SQLITE_ROW ? (const char *)sqlite3_column_text(get_zone, 0) : NULL;
            struct bench_parked *p = &rows[got];
            snprintf(p->customer, sizeof p->customer, "%s", customer);
            p->hour = bench_local_hour(&zones, zone ? zone : "Asia/Shanghai", at);
            sqlite3_reset(get_zone);
            bench_parked_trigger(p, (const char *)sqlite3_column_text(cur.batch, 3), at);
            cursor = seq;
            got++;
        }
        /* the rest of the batch's rows in multi-row statements of BENCH_CHUNK rows */
        long long wake = now + WAIT_SECONDS;
        /* the history line tend writes for wait(days(1)) */
        snprintf(history, sizeof history, "wait 68d34a7a %lld - \"%d\" %lld\n", now, WAIT_SECONDS, wake);
        bench_park_rows(db, &park, rows, got, "wait 86400 (care.lua:1)", wake, now, history);
        bench_batch_end(db, &cur, cursor);
        processed += (size_t)got;
        if (got < PROCESS_BATCH)
            break;
    }
    double t2 = bench_seconds();
    printf("%zu %.3f %.3f %.3f\n", processed, t2 - t0, t1 - t0, t2 - t1);

    bench_cursor_close(&cur);
    sqlite3_finalize(upd_customer);
    sqlite3_finalize(get_zone);
    bench_park_close(&park);
    for (int i = 0; i < PROCESS_BATCH; i++)
        free(rows[i].trigger);
    free(rows);
    sqlite3_close(db);
    bench_events_free(&all);
    return processed == n ? 0 : 1;
}
