/* bench/add_raw — the ceiling for bench/peers/run.sh's add: an event that
 * creates its customer and starts a journey parked at wait_until, written
 * with raw SQLite as the rows tend writes, in the batches tend writes them,
 * synchronous=FULL in WAL mode.
 *
 *   build/release/bench_add_raw EVENTS.ndjson DB DUE
 *
 * DB is a fresh store (created here with tend's schema by store_open, as
 * `tend ingest` creates the peers' store); EVENTS are the peers' jobs
 * ({"id", "type", "customer"}, each customer new); DUE the wait_until
 * moment (unix seconds). As `tend ingest` with unknown_customers = "create"
 * does:
 *  1. store every event (the INSERT tend uses), committing every 50,000;
 *  2. process them in transactions of 50,000 (the engine's EVENT_BATCH):
 *     read the batch back by seq, and for each event insert its customer
 *     (first seen and last active at the event, lifecycle "new", RFM 1 1 1,
 *     as tend derives them for a customer with no order) and count the
 *     event in the customer's local hour (activity_hours; a new customer has
 *     no zone: UTC, tend's default); then, 64 rows to a statement, the
 *     activity hours, the instances already parked (state waiting, step 1,
 *     the label, wake_at, the trigger event with its "at", the one-line
 *     history, counted = 1), the chunk's count in instance_counts (one
 *     statement, as tend's writer does), the entries rows and the timers;
 *     then move meta.events_cursor.
 * Each row is written once with a minimal statement: the customer is one
 * INSERT with no read before it (tend reads first, to find an existing
 * customer), the instance row names only its non-NULL columns. What is left
 * out is what tend writes once a run, not per add (the script row, the
 * lifecycle sweep's mark in meta). The connection is set up as tend's store
 * sets up its own (NOMUTEX, WAL, synchronous=FULL, temp_store=MEMORY, the
 * default 8 MiB page cache since the peers' tend.lua sets no cache_mb, the
 * same checkpoint interval). The NDJSON is parsed before the clock starts.
 * Prints "EVENTS SECONDS STORE_SECONDS PROCESS_SECONDS". */
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

int main(int argc, char **argv)
{
    bench_name = "bench_add_raw";
    bench_want_args(argc, 4, "EVENTS.ndjson DB DUE");
    struct bench_events all = {0};
    bench_load_events(argv[1], &all);
    size_t n = all.n;
    long long due = atoll(argv[3]);

    sqlite3 *db = bench_raw_open_v2(argv[2], SQLITE_OPEN_NOMUTEX);
    bench_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY;"
                   " PRAGMA wal_autocheckpoint=8192; PRAGMA cache_size=-8192; PRAGMA foreign_keys=OFF;");
    struct bench_cursor cur;
    bench_cursor_open(db, &cur, "seq, customer, at, body");
    sqlite3_stmt *ins_customer = bench_prepare(db,
        "INSERT OR IGNORE INTO customers (id, first_seen_at, last_active_at, lifecycle, r, f, m, updated_at)"
        " VALUES (?2, ?1, ?1, 'new', 1, 1, 1, ?1)");
    struct bench_zone_hours zones = {0};
    struct bench_park park;
    bench_park_open(db, &park, "job", "cbf56c5b885d4541");
    struct bench_parked *rows = calloc(PROCESS_BATCH, sizeof *rows);

    /* the label and history line tend writes for wait_until(DUE) */
    char iso[32], label[96], history[160];
    time_t due_t = (time_t)due;
    struct tm tm;
    gmtime_r(&due_t, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(label, sizeof label, "wait_until %s (care.lua:1)", iso);

    double t0 = bench_seconds();
    long long now = (long long)time(NULL);
    bench_store_events(db, &all, now);
    double t1 = bench_seconds();

    size_t processed = 0, existing = 0;
    snprintf(history, sizeof history, "wait_until 26e53a46 %lld - \"%s\" %lld\n", now, iso, due);
    for (;;) {
        long long cursor = bench_batch_begin(db, &cur, PROCESS_BATCH);
        int got = 0;
        while (sqlite3_step(cur.batch) == SQLITE_ROW) {
            long long seq = sqlite3_column_int64(cur.batch, 0);
            const char *customer = (const char *)sqlite3_column_text(cur.batch, 1);
            long long at = sqlite3_column_int64(cur.batch, 2);
            sqlite3_bind_int64(ins_customer, 1, at);
            sqlite3_bind_text(ins_customer, 2, customer, -1, SQLITE_STATIC);
            bench_run(db, ins_customer);
            existing += sqlite3_changes(db) == 0;
            struct bench_parked *p = &rows[got];
            snprintf(p->customer, sizeof p->customer, "%s", customer);
            p->hour = bench_local_hour(&zones, "UTC", at);
            bench_parked_trigger(p, (const char *)sqlite3_column_text(cur.batch, 3), at);
            cursor = seq;
            got++;
        }
        bench_park_rows(db, &park, rows, got, label, due, now, history);
        bench_batch_end(db, &cur, cursor);
        processed += (size_t)got;
        if (got < PROCESS_BATCH)
            break;
    }
    double t2 = bench_seconds();
    if (existing)
        fprintf(stderr, "bench_add_raw: %zu customers existed already (the ceiling is for new ones)\n", existing);
    printf("%zu %.3f %.3f %.3f\n", processed, t2 - t0, t1 - t0, t2 - t1);

    bench_cursor_close(&cur);
    sqlite3_finalize(ins_customer);
    bench_park_close(&park);
    for (int i = 0; i < PROCESS_BATCH; i++)
        free(rows[i].trigger);
    free(rows);
    sqlite3_close(db);
    bench_events_free(&all);
    return processed == n && !existing ? 0 : 1;
}
