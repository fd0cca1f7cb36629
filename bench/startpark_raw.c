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
 *     parked (state waiting, step 1, its label, wake_at, the trigger event,
 *     the one-step history, counted = 1), count the chunk's instances in
 *     instance_counts (one statement, as tend's writer does), upsert the
 *     entries row, insert the timer; then move meta.events_cursor.
 * Each row is written once with a minimal statement, and the rows that need
 * no answer back (activity hour, instance, entries, timer) go in multi-row
 * statements of 64 rows (a quarter less CPU than one statement a row): what
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

/* Rows of a batch after their customer's update, written per CHUNK. */
#define CHUNK 64

struct parked {
    char customer[64];
    int hour;
    char *trigger;
};

int main(int argc, char **argv)
{
    bench_name = "bench_startpark_raw";
    if (argc != 3) {
        fprintf(stderr, "usage: bench_startpark_raw EVENTS.ndjson DB\n");
        return 2;
    }
    struct bench_events all = {0};
    if (bench_load_events(argv[1], &all) != 0) {
        perror(argv[1]);
        return 1;
    }
    struct bench_event *evs = all.v;
    size_t n = all.n;

    sqlite3 *db = bench_open_store(argv[2]);
    sqlite3_stmt *cursor_get = bench_prepare(db, "SELECT value FROM meta WHERE key = 'events_cursor'");
    sqlite3_stmt *cursor_set = bench_prepare(db, "INSERT INTO meta (key, value) VALUES ('events_cursor', ?)"
                                           " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    sqlite3_stmt *batch = bench_prepare(db, "SELECT seq, customer, at, body FROM events WHERE seq > ?"
                                      " ORDER BY seq LIMIT ?");
    sqlite3_stmt *upd_customer = bench_prepare(db,
        "UPDATE OR IGNORE customers SET orders_count = orders_count + 1, total_spent = total_spent + ?2,"
        " first_order_at = COALESCE(first_order_at, ?1),"
        " last_order_at = CASE WHEN last_order_at > ?1 THEN last_order_at ELSE ?1 END,"
        " last_active_at = CASE WHEN last_active_at > ?1 THEN last_active_at ELSE ?1 END, updated_at = ?1 WHERE id = ?3");
    sqlite3_stmt *get_zone = bench_prepare(db, "SELECT timezone FROM customers WHERE id = ?");
    sqlite3_stmt *count_started = bench_prepare(db, "INSERT INTO instance_counts (journey, state, n)"
        " VALUES ('thanks', 'waiting', ?) ON CONFLICT (journey, state) DO UPDATE SET n = n + excluded.n");
    struct bench_zone_hours zones = {0};
    sqlite3_stmt *hours[CHUNK + 1] = {0}, *instances[CHUNK + 1] = {0}, *entries[CHUNK + 1] = {0},
                 *timers[CHUNK + 1] = {0};
    struct parked *rows = calloc(PROCESS_BATCH, sizeof *rows);

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
        bench_exec(db, "BEGIN IMMEDIATE");
        long long cursor = 0;
        if (sqlite3_step(cursor_get) == SQLITE_ROW)
            cursor = sqlite3_column_int64(cursor_get, 0);
        sqlite3_reset(cursor_get);
        sqlite3_bind_int64(batch, 1, cursor);
        sqlite3_bind_int(batch, 2, PROCESS_BATCH);
        int got = 0;
        while (sqlite3_step(batch) == SQLITE_ROW) {
            long long seq = sqlite3_column_int64(batch, 0);
            if (first_seq < 0)
                first_seq = seq;
            const char *customer = (const char *)sqlite3_column_text(batch, 1);
            long long at = sqlite3_column_int64(batch, 2);
            size_t k = (size_t)(seq - first_seq);
            double amount = k < n ? evs[k].amount : 0;
            sqlite3_bind_int64(upd_customer, 1, at);
            sqlite3_bind_double(upd_customer, 2, amount);
            sqlite3_bind_text(upd_customer, 3, customer, -1, SQLITE_STATIC);
            bench_run(db, upd_customer);
            sqlite3_bind_text(get_zone, 1, customer, -1, SQLITE_STATIC);
            const char *zone = sqlite3_step(get_zone) == SQLITE_ROW ? (const char *)sqlite3_column_text(get_zone, 0) : NULL;
            struct parked *p = &rows[got];
            snprintf(p->customer, sizeof p->customer, "%s", customer);
            p->hour = bench_local_hour(&zones, zone ? zone : "Asia/Shanghai", at);
            sqlite3_reset(get_zone);
            free(p->trigger);
            p->trigger = xstrdup((const char *)sqlite3_column_text(batch, 3));
            cursor = seq;
            got++;
        }
        /* the rest of the batch's rows in multi-row statements of CHUNK rows */
        long long wake = now + WAIT_SECONDS;
        snprintf(history, sizeof history, "[{\"k\":\"wait\",\"h\":\"68d34a7a\",\"a\":\"%d\",\"r\":%lld}]",
                 WAIT_SECONDS, wake);
        for (int done = 0; done < got; done += CHUNK) {
            int m = got - done < CHUNK ? got - done : CHUNK;
            sqlite3_stmt *hi = bench_chunk(db, hours, m, "INSERT INTO activity_hours (customer, hour, n) VALUES ", "(?, ?, 1)",
                                     " ON CONFLICT(customer, hour) DO UPDATE SET n = n + 1");
            sqlite3_stmt *ii = bench_chunk(db, instances, m,
                "INSERT INTO instances (journey, version, customer, state, step, label, wake_at, started_at,"
                " trigger, history, counted) VALUES ", "('thanks', 'e85329c8463e1e75', ?, 'waiting', 1,"
                " 'wait 86400 (care.lua:1)', ?, ?, ?, ?, 1)", "");
            sqlite3_stmt *ei = bench_chunk(db, entries, m, "INSERT INTO entries (journey, customer, count, last_at) VALUES ",
                "('thanks', ?, 1, ?)",
                " ON CONFLICT(journey, customer) DO UPDATE SET count = count + 1, last_at = excluded.last_at");
            sqlite3_stmt *ti = bench_chunk(db, timers, m, "INSERT INTO timers (wake_at, instance) VALUES ", "(?, ?)", "");
            for (int i = 0; i < m; i++) {
                struct parked *p = &rows[done + i];
                sqlite3_bind_text(hi, 2 * i + 1, p->customer, -1, SQLITE_STATIC);
                sqlite3_bind_int(hi, 2 * i + 2, p->hour);
                sqlite3_bind_text(ii, 5 * i + 1, p->customer, -1, SQLITE_STATIC);
                sqlite3_bind_int64(ii, 5 * i + 2, wake);
                sqlite3_bind_int64(ii, 5 * i + 3, now);
                sqlite3_bind_text(ii, 5 * i + 4, p->trigger, -1, SQLITE_STATIC);
                sqlite3_bind_text(ii, 5 * i + 5, history, -1, SQLITE_STATIC);
                sqlite3_bind_text(ei, 2 * i + 1, p->customer, -1, SQLITE_STATIC);
                sqlite3_bind_int64(ei, 2 * i + 2, now);
            }
            bench_run(db, hi);
            bench_run(db, ii);
            /* counted = 1: the chunk is counted here, as tend's writer does */
            sqlite3_bind_int(count_started, 1, m);
            bench_run(db, count_started);
            /* the chunk's rowids are consecutive: one writer, INTEGER PRIMARY KEY */
            long long last = sqlite3_last_insert_rowid(db);
            for (int i = 0; i < m; i++) {
                sqlite3_bind_int64(ti, 2 * i + 1, wake);
                sqlite3_bind_int64(ti, 2 * i + 2, last - m + 1 + i);
            }
            bench_run(db, ei);
            bench_run(db, ti);
        }
        sqlite3_reset(batch);
        sqlite3_bind_int64(cursor_set, 1, cursor);
        bench_run(db, cursor_set);
        bench_exec(db, "COMMIT");
        processed += (size_t)got;
        if (got < PROCESS_BATCH)
            break;
    }
    double t2 = bench_seconds();
    printf("%zu %.3f %.3f %.3f\n", processed, t2 - t0, t1 - t0, t2 - t1);

    sqlite3_stmt *stmts[] = {cursor_get, cursor_set, batch, upd_customer, get_zone, count_started};
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
        sqlite3_finalize(stmts[i]);
    bench_chunks_finalize(hours, instances, entries, timers, CHUNK);
    for (int i = 0; i < PROCESS_BATCH; i++)
        free(rows[i].trigger);
    free(rows);
    sqlite3_close(db);
    bench_events_free(&all);
    return processed == n ? 0 : 1;
}
