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

/* -1 (errno set) if the file cannot be read. */
static inline int bench_load_events(const char *path, struct bench_events *all)
{
    return bench_load_ndjson(path, bench_add_event, all);
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

/* Finalizes the four chunk caches of a start ceiling (rows 0..chunk). */
static inline void bench_chunks_finalize(sqlite3_stmt **a, sqlite3_stmt **b, sqlite3_stmt **c,
                                         sqlite3_stmt **d, int chunk)
{
    for (int i = 0; i <= chunk; i++) {
        sqlite3_finalize(a[i]);
        sqlite3_finalize(b[i]);
        sqlite3_finalize(c[i]);
        sqlite3_finalize(d[i]);
    }
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

#endif
