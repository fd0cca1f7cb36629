/* bench/orders_raw — the ceiling for order events with items: raw SQLite
 * writing the rows `tend ingest` writes for them, in the batches tend
 * writes them, synchronous=FULL in WAL mode.
 *
 *   build/release/bench_orders_raw EVENTS.ndjson DB [BATCH]
 *
 * DB is a copy of the store tend ingests into (same schema, same
 * customers); EVENTS are order.paid events with {id, customer, at, order,
 * total, items = [{sku, category, qty, price}]} for customers in it. As
 * `tend ingest` does (no journeys):
 *  1. store every event (the INSERT tend uses), committing every 50,000;
 *  2. process them in transactions of BATCH (default 50,000, the engine's
 *     EVENT_BATCH): read the batch back by seq; for each event update the
 *     customer's order fields (orders_count, total_spent, first/last order,
 *     last active) and count the event in the customer's local hour
 *     (activity_hours, the zone read from the customer row); then the
 *     batch's orders, sorted by customer and order id: check the order's
 *     lines are not stored yet, insert them (order_items), and upsert one
 *     bought row per (customer, sku) and (customer, category) of the batch
 *     (orders, qty, first/last at, the latest order but one), and add the
 *     new facts to bought_counts, one row per key; then move
 *     meta.events_cursor.
 * Each row is written once with a minimal statement; lines go in multi-row
 * statements of 16 rows, the facts of a customer without any (one probe a
 * customer) too, other facts one a statement, as tend's, and no statement
 * can abort (OR IGNORE where nothing can conflict, CASE rather than the
 * MIN/MAX functions), so SQLite keeps no statement journal for any of them
 * (see orderline.c store_facts and customer_apply_event). The customer's derived fields
 * (lifecycle, RFM) are unindexed columns of the same row and left out. The
 * connection is set up as tend's store is (WAL, synchronous=FULL, the same
 * checkpoint interval) with a 64 MiB page cache (bench/run.sh gives tend
 * the same, cache_mb = 64; its default is 8). The NDJSON is parsed before
 * the clock starts. Prints "EVENTS SECONDS STORE_SECONDS PROCESS_SECONDS". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "bench.h"
#include "bench_orders.h"
#include "bench_sqlite.h"
#include "util.h"

#define STORE_COMMIT_EVERY 50000
#define CHUNK 16
#define MAX_ITEMS BENCH_MAX_ITEMS

/* One (customer, kind, key) fact of one order, merged per batch. */
struct fact {
    const char *customer, *key;
    int kind;
    size_t order;
    long long orders, first_at, last_at;
    double qty;
    long long prev_at;   /* the latest order but one; NO_PREV while orders = 1 */
    int is_new;          /* inserted, not merged into a stored fact */
};

#define NO_PREV (-1LL - 0x7fffffffffffffffLL)

static int cmp_ev(const void *a, const void *b)
{
    const struct bench_order *x = *(const struct bench_order *const *)a, *y = *(const struct bench_order *const *)b;
    int c = strcmp(x->customer, y->customer);
    return c ? c : strcmp(x->order, y->order);
}

static int cmp_fact(const void *a, const void *b)
{
    const struct fact *x = a, *y = b;
    int c = strcmp(x->customer, y->customer);
    if (!c)
        c = x->kind - y->kind;
    if (!c)
        c = strcmp(x->key, y->key);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static int cmp_key(const void *a, const void *b)
{
    const struct fact *x = *(const struct fact *const *)a, *y = *(const struct fact *const *)b;
    int c = x->kind - y->kind;
    return c ? c : strcmp(x->key, y->key);
}

/* bought_counts gains one customer per new fact, one row per key of the
 * batch (as tend's orderline_batch_flush does). */
static void count_new(sqlite3 *db, sqlite3_stmt *count_ins, struct fact *f, int n)
{
    struct fact **fresh = malloc((size_t)(n ? n : 1) * sizeof *fresh);
    int *customers = malloc((size_t)(n ? n : 1) * sizeof *customers), nfresh = 0, nkeys = 0;
    for (int i = 0; i < n; i++)
        if (f[i].is_new)
            fresh[nfresh++] = &f[i];
    qsort(fresh, (size_t)nfresh, sizeof *fresh, cmp_key);
    for (int i = 0; i < nfresh; i++) {
        if (nkeys && !cmp_key(&fresh[nkeys - 1], &fresh[i])) {
            customers[nkeys - 1]++;
        } else {
            fresh[nkeys] = fresh[i];
            customers[nkeys++] = 1;
        }
    }
    for (int k = 0; k < nkeys; k++) {   /* one row a statement, as tend's */
        sqlite3_bind_int(count_ins, 1, fresh[k]->kind);
        sqlite3_bind_text(count_ins, 2, fresh[k]->key, -1, SQLITE_STATIC);
        sqlite3_bind_int(count_ins, 3, customers[k]);
        bench_run(db, count_ins);
    }
    free(fresh);
    free(customers);
}

/* Binds f as ?p+1..?p+8 of s (kind, key, customer, orders, qty, first_at,
 * last_at, prev_at). */
static void bind_fact(sqlite3_stmt *s, int p, const struct fact *f)
{
    sqlite3_bind_int(s, p + 1, f->kind);
    sqlite3_bind_text(s, p + 2, f->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, p + 3, f->customer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, p + 4, f->orders);
    sqlite3_bind_double(s, p + 5, f->qty);
    sqlite3_bind_int64(s, p + 6, f->first_at);
    sqlite3_bind_int64(s, p + 7, f->last_at);
    if (f->prev_at == NO_PREV)
        sqlite3_bind_null(s, p + 8);
    else
        sqlite3_bind_int64(s, p + 8, f->prev_at);
}

int main(int argc, char **argv)
{
    bench_name = "bench_orders_raw";
    if (argc < 3) {
        fprintf(stderr, "usage: bench_orders_raw EVENTS.ndjson DB [BATCH]\n");
        return 2;
    }
    int process_batch = argc > 3 ? atoi(argv[3]) : 50000;
    struct bench_orders all = {0};
    if (bench_load_ndjson(argv[1], bench_add_order, &all) != 0) {
        perror(argv[1]);
        return 1;
    }
    struct bench_order *evs = all.v;
    size_t n = all.n;

    sqlite3 *db = bench_open_store(argv[2]);
    sqlite3_stmt *ins_event = bench_prepare(db, "INSERT INTO events (id, type, customer, at, body, received_at)"
                                          " VALUES (?, 'order.paid', ?, ?, ?, ?) ON CONFLICT DO NOTHING");
    struct bench_cursor cur;
    bench_cursor_open(db, &cur, "seq, customer, at");
    sqlite3_stmt *batch = cur.batch;
    sqlite3_stmt *upd_customer = bench_prepare(db,
        "UPDATE OR IGNORE customers SET orders_count = orders_count + 1, total_spent = total_spent + ?2,"
        " first_order_at = COALESCE(first_order_at, ?1),"
        " last_order_at = CASE WHEN last_order_at > ?1 THEN last_order_at ELSE ?1 END,"
        " last_active_at = CASE WHEN last_active_at > ?1 THEN last_active_at ELSE ?1 END, updated_at = ?1 WHERE id = ?3");
    sqlite3_stmt *get_zone = bench_prepare(db, "SELECT timezone FROM customers WHERE id = ?");
    sqlite3_stmt *hour = bench_prepare(db, "INSERT INTO activity_hours (customer, hour, n) VALUES (?, ?, 1)"
                                     " ON CONFLICT(customer, hour) DO UPDATE SET n = n + 1");
    sqlite3_stmt *seen = bench_prepare(db, "SELECT 1 FROM order_items WHERE customer = ? AND order_id = ? LIMIT 1");
    /* a fact: INSERT that does nothing on conflict, UPDATE if it was there */
    sqlite3_stmt *fact_ins = bench_prepare(db,
        "INSERT INTO bought (kind, key, customer, orders, qty, first_at, last_at, prev_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (customer, kind, key) DO NOTHING");
    sqlite3_stmt *fact_upd = bench_prepare(db,
        "UPDATE bought SET orders = orders + ?4, qty = qty + ?5,"
        " first_at = CASE WHEN ?6 < first_at THEN ?6 ELSE first_at END,"
        " last_at = CASE WHEN ?7 > last_at THEN ?7 ELSE last_at END,"
        " prev_at = CASE WHEN ?7 >= last_at THEN CASE WHEN ?8 > last_at THEN ?8 ELSE last_at END"
        " ELSE CASE WHEN prev_at > ?7 THEN prev_at ELSE ?7 END END"
        " WHERE customer = ?3 AND kind = ?1 AND key = ?2");
    sqlite3_stmt *count_ins = bench_prepare(db, "INSERT INTO bought_counts (kind, key, customers) VALUES (?, ?, ?)"
        " ON CONFLICT (kind, key) DO UPDATE SET customers = bought_counts.customers + excluded.customers");
    sqlite3_stmt *lines_ins[CHUNK + 1] = {0}, *facts_ins[CHUNK + 1] = {0};
    sqlite3_stmt *has_facts = bench_prepare(db, "SELECT 1 FROM bought WHERE customer = ? LIMIT 1");
    struct bench_zone_hours zones = {0};
    struct bench_order **todo = xmalloc((size_t)process_batch * sizeof *todo);
    struct fact *facts = xmalloc((size_t)process_batch * MAX_ITEMS * 2 * sizeof *facts);
    struct fact **fresh = xmalloc((size_t)process_batch * MAX_ITEMS * 2 * sizeof *fresh);
    struct { const struct bench_order *e; int i; } *rows = xmalloc((size_t)process_batch * MAX_ITEMS * sizeof *rows);

    double t0 = bench_seconds();
    long long now = (long long)time(NULL);
    bench_exec(db, "BEGIN IMMEDIATE");
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(ins_event, 1, evs[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_event, 2, evs[i].customer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_event, 3, evs[i].at);
        sqlite3_bind_text(ins_event, 4, evs[i].line, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_event, 5, now);
        bench_run(db, ins_event);
        if ((i + 1) % STORE_COMMIT_EVERY == 0) {
            bench_exec(db, "COMMIT");
            bench_exec(db, "BEGIN IMMEDIATE");
        }
    }
    bench_exec(db, "COMMIT");
    double t1 = bench_seconds();

    long long first_seq = -1;
    size_t processed = 0;
    for (;;) {
        long long cursor = bench_batch_begin(db, &cur, process_batch);
        int got = 0;
        while (sqlite3_step(batch) == SQLITE_ROW) {
            long long seq = sqlite3_column_int64(batch, 0);
            if (first_seq < 0)
                first_seq = seq;
            const char *customer = (const char *)sqlite3_column_text(batch, 1);
            long long at = sqlite3_column_int64(batch, 2);
            size_t k = (size_t)(seq - first_seq);
            if (k >= n)
                break;
            sqlite3_bind_int64(upd_customer, 1, at);
            sqlite3_bind_double(upd_customer, 2, evs[k].total);
            sqlite3_bind_text(upd_customer, 3, customer, -1, SQLITE_STATIC);
            bench_run(db, upd_customer);
            sqlite3_bind_text(get_zone, 1, customer, -1, SQLITE_STATIC);
            const char *zone = sqlite3_step(get_zone) == SQLITE_ROW ? (const char *)sqlite3_column_text(get_zone, 0) : NULL;
            int h = bench_local_hour(&zones, zone ? zone : "Asia/Shanghai", at);
            sqlite3_reset(get_zone);
            sqlite3_bind_text(hour, 1, customer, -1, SQLITE_STATIC);
            sqlite3_bind_int(hour, 2, h);
            bench_run(db, hour);
            todo[got++] = &evs[k];
            cursor = seq;
        }
        sqlite3_reset(batch);
        /* the batch's orders in key order, each once */
        qsort(todo, (size_t)got, sizeof *todo, cmp_ev);
        int nrows = 0, nfacts = 0;
        for (int i = 0; i < got; i++) {
            const struct bench_order *e = todo[i];
            if (i && !cmp_ev(&todo[i - 1], &todo[i]))
                continue;
            sqlite3_bind_text(seen, 1, e->customer, -1, SQLITE_STATIC);
            sqlite3_bind_text(seen, 2, e->order, -1, SQLITE_STATIC);
            int stored = sqlite3_step(seen) == SQLITE_ROW;
            sqlite3_reset(seen);
            if (stored)
                continue;
            for (int j = 0; j < e->nitems; j++) {
                rows[nrows].e = e;
                rows[nrows++].i = j;
                const struct bench_item *it = &e->items[j];
                facts[nfacts++] = (struct fact){e->customer, it->sku, 0, (size_t)i, 1, e->at, e->at, it->qty, NO_PREV, 0};
                facts[nfacts++] = (struct fact){e->customer, it->category, 1, (size_t)i, 1, e->at, e->at, it->qty,
                                                 NO_PREV, 0};
            }
        }
        for (int done = 0; done < nrows; done += CHUNK) {
            int m = nrows - done < CHUNK ? nrows - done : CHUNK;
            sqlite3_stmt *s = bench_chunk(db, lines_ins, m,
                "INSERT OR IGNORE INTO order_items (customer, order_id, line, sku, category, qty, price, at) VALUES ",
                "(?, ?, ?, ?, ?, ?, ?, ?)", "");
            for (int r = 0; r < m; r++) {
                const struct bench_order *e = rows[done + r].e;
                const struct bench_item *it = &e->items[rows[done + r].i];
                int p = r * 8;
                sqlite3_bind_text(s, p + 1, e->customer, -1, SQLITE_STATIC);
                sqlite3_bind_text(s, p + 2, e->order, -1, SQLITE_STATIC);
                sqlite3_bind_int(s, p + 3, rows[done + r].i + 1);
                sqlite3_bind_text(s, p + 4, it->sku, -1, SQLITE_STATIC);
                sqlite3_bind_text(s, p + 5, it->category, -1, SQLITE_STATIC);
                sqlite3_bind_double(s, p + 6, it->qty);
                sqlite3_bind_double(s, p + 7, it->price);
                sqlite3_bind_int64(s, p + 8, e->at);
            }
            bench_run(db, s);
        }
        qsort(facts, (size_t)nfacts, sizeof *facts, cmp_fact);
        int merged = 0;
        for (int i = 0; i < nfacts; i++) {
            struct fact *f = &facts[i], *m = merged ? &facts[merged - 1] : NULL;
            if (m && m->kind == f->kind && !strcmp(m->customer, f->customer) && !strcmp(m->key, f->key)) {
                if (m->order != f->order) {
                    m->orders++;
                    if (f->last_at >= m->last_at)
                        m->prev_at = m->last_at;
                    else if (m->prev_at == NO_PREV || f->last_at > m->prev_at)
                        m->prev_at = f->last_at;
                }
                m->order = f->order;
                m->qty += f->qty;
                m->first_at = f->first_at < m->first_at ? f->first_at : m->first_at;
                m->last_at = f->last_at > m->last_at ? f->last_at : m->last_at;
            } else {
                facts[merged++] = *f;
            }
        }
        /* a customer without facts: all of its facts are new, inserted
         * 16 a statement (OR IGNORE: nothing can conflict); the others'
         * one a statement, INSERT then UPDATE, as tend's store_facts */
        int nfresh = 0;
        for (int i = 0; i < merged;) {
            int end = i + 1;
            while (end < merged && !strcmp(facts[end].customer, facts[i].customer))
                end++;
            sqlite3_bind_text(has_facts, 1, facts[i].customer, -1, SQLITE_STATIC);
            int none = sqlite3_step(has_facts) != SQLITE_ROW;
            sqlite3_reset(has_facts);
            for (; i < end; i++) {
                struct fact *f = &facts[i];
                if (none) {
                    f->is_new = 1;
                    fresh[nfresh++] = f;
                    continue;
                }
                for (sqlite3_stmt *s = fact_ins; s; s = s == fact_ins && !f->is_new ? fact_upd : NULL) {
                    bind_fact(s, 0, f);
                    bench_run(db, s);
                    if (s == fact_ins)
                        f->is_new = sqlite3_changes(db) == 1;   /* inserted, not there before */
                }
            }
        }
        for (int done = 0; done < nfresh; done += CHUNK) {
            int m = nfresh - done < CHUNK ? nfresh - done : CHUNK;
            sqlite3_stmt *s = bench_chunk(db, facts_ins, m,
                "INSERT OR IGNORE INTO bought (kind, key, customer, orders, qty, first_at, last_at, prev_at) VALUES ",
                "(?, ?, ?, ?, ?, ?, ?, ?)", "");
            for (int r = 0; r < m; r++)
                bind_fact(s, r * 8, fresh[done + r]);
            bench_run(db, s);
        }
        count_new(db, count_ins, facts, merged);
        bench_batch_end(db, &cur, cursor);
        processed += (size_t)got;
        if (got < process_batch)
            break;
    }
    double t2 = bench_seconds();
    printf("%zu %.3f %.3f %.3f\n", processed, t2 - t0, t1 - t0, t2 - t1);

    bench_cursor_close(&cur);
    sqlite3_stmt *stmts[] = {ins_event, upd_customer, get_zone, hour, seen, fact_ins, fact_upd, count_ins, has_facts};
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
        sqlite3_finalize(stmts[i]);
    for (int i = 0; i <= CHUNK; i++) {
        sqlite3_finalize(lines_ins[i]);
        sqlite3_finalize(facts_ins[i]);
    }
    sqlite3_close(db);
    free(todo);
    free(facts);
    free(fresh);
    free(rows);
    bench_orders_free(&all);
    return processed == n ? 0 : 1;
}
