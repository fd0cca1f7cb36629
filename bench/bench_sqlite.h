/* bench/bench_sqlite.h — what the raw-SQLite ceilings share (header only:
 * each bench/X_raw.c is its own program): statements that exit on error
 * with the program's name, multi-row statements prepared once per row
 * count, and the local hour of an instant in a zone. */
#ifndef TEND_BENCH_SQLITE_H
#define TEND_BENCH_SQLITE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "bench.h"
#include "util.h"

/* The program's name in error messages; each program sets it first. */
static const char *bench_name = "bench";

static inline sqlite3_stmt *bench_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s: %s\n", bench_name, sql, sqlite3_errmsg(db));
        exit(1);
    }
    return s;
}

static inline void bench_run(sqlite3 *db, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "%s: %s: %s\n", bench_name, sqlite3_sql(s), sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_reset(s);
}

static inline void bench_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "%s: %s: %s\n", bench_name, sql, err);
        exit(1);
    }
}

/* A store opened as tend opens its own (WAL, synchronous=FULL, the same
 * checkpoint interval) with a 64 MiB page cache, no smaller than tend's
 * (cache_mb, 8 by default); exits if it cannot be opened. */
static inline sqlite3 *bench_open_store(const char *path)
{
    sqlite3 *db = bench_raw_open(path);
    bench_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY;"
                   " PRAGMA wal_autocheckpoint=8192; PRAGMA cache_size=-65536;");
    return db;
}

static inline const char *bench_text_of(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Events of an NDJSON file as the start ceilings keep them: the columns
 * tend stores, the line as sent (the body), and "total" where there is one. */
struct bench_event {
    char *id, *type, *customer, *line;
    double amount;
};

struct bench_events {
    struct bench_event *v;
    size_t n, cap;
};

static inline void bench_add_event(const cJSON *j, char *line, size_t k, void *ud)
{
    struct bench_events *e = ud;
    if (e->n == e->cap)
        e->v = xrealloc(e->v, (e->cap = e->cap ? e->cap * 2 : 65536) * sizeof *e->v);
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(j, "total");
    e->v[e->n++] = (struct bench_event){xstrdup(bench_text_of(j, "id")), xstrdup(bench_text_of(j, "type")),
                                        xstrdup(bench_text_of(j, "customer")), xstrndup(line, k),
                                        cJSON_IsNumber(total) ? total->valuedouble : 0};
}

/* Exits with the usage ("usage: NAME USAGE") unless there are `want`
 * arguments, the program's name included. */
static inline void bench_want_args(int argc, int want, const char *usage)
{
    if (argc != want) {
        fprintf(stderr, "usage: %s %s\n", bench_name, usage);
        exit(2);
    }
}

/* Exits with the reason if the file cannot be read. */
static inline void bench_load_events(const char *path, struct bench_events *all)
{
    if (bench_load_ndjson(path, bench_add_event, all) != 0) {
        perror(path);
        exit(1);
    }
}

static inline void bench_events_free(struct bench_events *all)
{
    for (size_t i = 0; i < all->n; i++) {
        free(all->v[i].id);
        free(all->v[i].type);
        free(all->v[i].customer);
        free(all->v[i].line);
    }
    free(all->v);
}

/* Stores every event with the INSERT `tend ingest` runs, at `now`,
 * committing every 50,000 (its INGEST_COMMIT_EVERY). */
static inline void bench_store_events(sqlite3 *db, const struct bench_events *all, long long now)
{
    sqlite3_stmt *ins = bench_prepare(db, "INSERT INTO events (id, type, customer, at, body, received_at)"
                                          " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING");
    bench_exec(db, "BEGIN IMMEDIATE");
    for (size_t i = 0; i < all->n; i++) {
        const struct bench_event *e = &all->v[i];
        sqlite3_bind_text(ins, 1, e->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, e->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, e->customer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 4, now);
        sqlite3_bind_text(ins, 5, e->line, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 6, now);
        bench_run(db, ins);
        if ((i + 1) % 50000 == 0) {
            bench_exec(db, "COMMIT");
            bench_exec(db, "BEGIN IMMEDIATE");
        }
    }
    bench_exec(db, "COMMIT");
    sqlite3_finalize(ins);
}

/* A new store for a floor program at `path` (any old one removed): WAL,
 * synchronous=FULL, a 64 MiB page cache, the given schema, and customers
 * c0000000001..c<customers> inserted by id before the clock starts (tend's
 * store has them imported). */
static inline sqlite3 *bench_floor_open(const char *path, const char *schema, long customers)
{
    remove(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "%s: %s: %s\n", bench_name, path, sqlite3_errmsg(db));
        exit(1);
    }
    bench_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY;"
                   " PRAGMA wal_autocheckpoint=8192; PRAGMA cache_size=-65536");
    bench_exec(db, schema);
    bench_exec(db, "BEGIN");
    sqlite3_stmt *add = bench_prepare(db, "INSERT INTO customers (id) VALUES (?)");
    for (long c = 1; c <= customers; c++) {
        char id[24];
        snprintf(id, sizeof id, "c%010ld", c);
        sqlite3_bind_text(add, 1, id, -1, SQLITE_TRANSIENT);
        bench_run(db, add);
    }
    sqlite3_finalize(add);
    bench_exec(db, "COMMIT");
    return db;
}

/* The local hour of `at` in a zone, from the C library, remembered per zone
 * and UTC hour (every event of a run falls in a few hours and zones). */
struct bench_zone_hours {
    struct { char zone[64]; long long utc_hour; int hour; } v[64];
    int n;
};

static inline int bench_local_hour(struct bench_zone_hours *z, const char *zone, long long at)
{
    long long utc_hour = at / 3600;
    for (int i = 0; i < z->n; i++)
        if (z->v[i].utc_hour == utc_hour && strcmp(z->v[i].zone, zone) == 0)
            return z->v[i].hour;
    setenv("TZ", zone, 1);
    tzset();
    time_t t = (time_t)at;
    struct tm tm;
    localtime_r(&t, &tm);
    int i = z->n < 64 ? z->n++ : 0;
    snprintf(z->v[i].zone, sizeof z->v[i].zone, "%s", zone);
    z->v[i].utc_hour = utc_hour;
    z->v[i].hour = tm.tm_hour;
    return tm.tm_hour;
}

/* The multi-row statement of `rows` rows (prepared once per row count). */
static inline sqlite3_stmt *bench_chunk(sqlite3 *db, sqlite3_stmt **cache, int rows, const char *head,
                                        const char *row, const char *tail)
{
    if (!cache[rows]) {
        size_t len = strlen(head) + (size_t)rows * (strlen(row) + 1) + strlen(tail) + 1;
        char *sql = xmalloc(len), *p = sql;
        p += sprintf(p, "%s", head);
        for (int i = 0; i < rows; i++)
            p += sprintf(p, "%s%s", i ? "," : "", row);
        sprintf(p, "%s", tail);
        cache[rows] = bench_prepare(db, sql);
        free(sql);
    }
    return cache[rows];
}

/* The processing loop's read of the events past meta.events_cursor, as
 * tend's process_batch reads them: `batch` selects `columns` (seq first). */
struct bench_cursor {
    sqlite3_stmt *get, *set, *batch;
};

static inline void bench_cursor_open(sqlite3 *db, struct bench_cursor *c, const char *columns)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT %s FROM events WHERE seq > ? ORDER BY seq LIMIT ?", columns);
    c->get = bench_prepare(db, "SELECT value FROM meta WHERE key = 'events_cursor'");
    c->set = bench_prepare(db, "INSERT INTO meta (key, value) VALUES ('events_cursor', ?)"
                               " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    c->batch = bench_prepare(db, sql);
}

/* Opens the next batch's transaction and binds its read of up to `limit`
 * events (step c->batch for them); returns the cursor. */
static inline long long bench_batch_begin(sqlite3 *db, struct bench_cursor *c, int limit)
{
    bench_exec(db, "BEGIN IMMEDIATE");
    long long cursor = 0;
    if (sqlite3_step(c->get) == SQLITE_ROW)
        cursor = sqlite3_column_int64(c->get, 0);
    sqlite3_reset(c->get);
    sqlite3_bind_int64(c->batch, 1, cursor);
    sqlite3_bind_int(c->batch, 2, limit);
    return cursor;
}

/* Moves the cursor to the batch's last event and commits. */
static inline void bench_batch_end(sqlite3 *db, struct bench_cursor *c, long long cursor)
{
    sqlite3_reset(c->batch);
    sqlite3_bind_int64(c->set, 1, cursor);
    bench_run(db, c->set);
    bench_exec(db, "COMMIT");
}

static inline void bench_cursor_close(struct bench_cursor *c)
{
    sqlite3_finalize(c->get);
    sqlite3_finalize(c->set);
    sqlite3_finalize(c->batch);
}

/* A started instance parked at its first wait, as the start ceilings keep
 * a batch's: its customer, the event's local hour, its trigger text. */
struct bench_parked {
    char customer[64];
    int hour;
    char *trigger;
};

/* p->trigger := the event's body as tend keeps it in the instance: with
 * its "at" appended (the body is a JSON object, its last byte '}'). */
static inline void bench_parked_trigger(struct bench_parked *p, const char *body, long long at)
{
    size_t len = strlen(body);
    char tail[40];
    int tl = snprintf(tail, sizeof tail, ",\"at\":%lld}", at);
    free(p->trigger);
    p->trigger = xmalloc(len + (size_t)tl);
    memcpy(p->trigger, body, len - 1);
    memcpy(p->trigger + len - 1, tail, (size_t)tl + 1);
}

#define BENCH_CHUNK 64

/* The multi-row statements (BENCH_CHUNK rows at most) a batch's parked
 * instances go in after their customers, as tend's writer writes a page:
 * the activity hours, the instances (counted = 1), the page's count in
 * instance_counts, the entries rows, the timers. */
struct bench_park {
    sqlite3_stmt *hours[BENCH_CHUNK + 1], *instances[BENCH_CHUNK + 1], *entries[BENCH_CHUNK + 1],
        *timers[BENCH_CHUNK + 1], *count;
    char instance_row[160], entries_row[64];
};

/* journey and version: SQL text of the literals (no quotes in them). */
static inline void bench_park_open(sqlite3 *db, struct bench_park *w, const char *journey, const char *version)
{
    memset(w, 0, sizeof *w);
    snprintf(w->instance_row, sizeof w->instance_row, "('%s', '%s', ?, 'waiting', 1, ?, ?, ?, ?, ?, 1)", journey,
             version);
    snprintf(w->entries_row, sizeof w->entries_row, "('%s', ?, 1, ?)", journey);
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO instance_counts (journey, state, n) VALUES ('%s', 'waiting', ?)"
             " ON CONFLICT (journey, state) DO UPDATE SET n = n + excluded.n", journey);
    w->count = bench_prepare(db, sql);
}

/* Writes the rows of the got parked instances of a batch, BENCH_CHUNK to a
 * statement: each waiting at `label` until wake, started at now, with
 * `history`. */
static inline void bench_park_rows(sqlite3 *db, struct bench_park *w, const struct bench_parked *rows, int got,
                                   const char *label, long long wake, long long now, const char *history)
{
    for (int done = 0; done < got; done += BENCH_CHUNK) {
        int m = got - done < BENCH_CHUNK ? got - done : BENCH_CHUNK;
        sqlite3_stmt *hi = bench_chunk(db, w->hours, m, "INSERT INTO activity_hours (customer, hour, n) VALUES ",
                                       "(?, ?, 1)", " ON CONFLICT(customer, hour) DO UPDATE SET n = n + 1");
        sqlite3_stmt *ii = bench_chunk(db, w->instances, m,
            "INSERT INTO instances (journey, version, customer, state, step, label, wake_at, started_at,"
            " trigger, history, counted) VALUES ", w->instance_row, "");
        sqlite3_stmt *ei = bench_chunk(db, w->entries, m, "INSERT INTO entries (journey, customer, count, last_at) VALUES ",
            w->entries_row, " ON CONFLICT(journey, customer) DO UPDATE SET count = count + 1, last_at = excluded.last_at");
        sqlite3_stmt *ti = bench_chunk(db, w->timers, m, "INSERT INTO timers (wake_at, instance) VALUES ", "(?, ?)", "");
        for (int i = 0; i < m; i++) {
            const struct bench_parked *p = &rows[done + i];
            sqlite3_bind_text(hi, 2 * i + 1, p->customer, -1, SQLITE_STATIC);
            sqlite3_bind_int(hi, 2 * i + 2, p->hour);
            sqlite3_bind_text(ii, 6 * i + 1, p->customer, -1, SQLITE_STATIC);
            sqlite3_bind_text(ii, 6 * i + 2, label, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ii, 6 * i + 3, wake);
            sqlite3_bind_int64(ii, 6 * i + 4, now);
            sqlite3_bind_text(ii, 6 * i + 5, p->trigger, -1, SQLITE_STATIC);
            sqlite3_bind_text(ii, 6 * i + 6, history, -1, SQLITE_STATIC);
            sqlite3_bind_text(ei, 2 * i + 1, p->customer, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ei, 2 * i + 2, now);
        }
        bench_run(db, hi);
        bench_run(db, ii);
        /* counted = 1: the chunk is counted here, as tend's writer does */
        sqlite3_bind_int(w->count, 1, m);
        bench_run(db, w->count);
        /* the chunk's rowids are consecutive: one writer, INTEGER PRIMARY KEY */
        long long last = sqlite3_last_insert_rowid(db);
        for (int i = 0; i < m; i++) {
            sqlite3_bind_int64(ti, 2 * i + 1, wake);
            sqlite3_bind_int64(ti, 2 * i + 2, last - m + 1 + i);
        }
        bench_run(db, ei);
        bench_run(db, ti);
    }
}

static inline void bench_park_close(struct bench_park *w)
{
    for (int i = 0; i <= BENCH_CHUNK; i++) {
        sqlite3_finalize(w->hours[i]);
        sqlite3_finalize(w->instances[i]);
        sqlite3_finalize(w->entries[i]);
        sqlite3_finalize(w->timers[i]);
    }
    sqlite3_finalize(w->count);
}

#endif
