/* bench/ingest_raw — the ceiling for `tend ingest`: raw SQLite inserting the
 * same event rows, in the same batches, into the same table and index.
 *
 *   build/release/bench_ingest_raw EVENTS.ndjson DB
 *
 * The NDJSON is parsed before the clock starts (the baseline is SQLite's
 * own cost, not JSON's); then every row is inserted with one prepared
 * statement, committing every 50,000 rows as tend does, synchronous=FULL in
 * WAL mode. Prints rows/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "bench.h"
#include "store.h"
#include "util.h"

struct row {
    char *id, *type, *customer, *line;
    long long at;
};

struct rows {
    struct row *v;
    size_t n, cap;
};

static void add_row(const cJSON *j, char *line, size_t k, void *ud)
{
    struct rows *r = ud;
    if (r->n == r->cap)
        r->v = xrealloc(r->v, (r->cap = r->cap ? r->cap * 2 : 65536) * sizeof *r->v);
    r->v[r->n].id = xstrdup(cJSON_GetObjectItem(j, "id")->valuestring);
    r->v[r->n].type = xstrdup(cJSON_GetObjectItem(j, "type")->valuestring);
    r->v[r->n].customer = xstrdup(cJSON_GetObjectItem(j, "customer")->valuestring);
    r->v[r->n].at = (long long)cJSON_GetObjectItem(j, "at")->valuedouble;
    r->v[r->n].line = xstrndup(line, k);
    r->n++;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_ingest_raw EVENTS.ndjson DB\n");
        return 2;
    }
    struct rows all = {0};
    if (bench_load_ndjson(argv[1], add_row, &all) != 0) {
        perror(argv[1]);
        return 1;
    }
    struct row *rows = all.v;
    size_t n = all.n;
    /* The same schema as tend's (store_open creates it), then raw SQLite. */
    sqlite3 *db = bench_raw_open(argv[2]);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, NULL);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "INSERT INTO events (id, type, customer, at, body, received_at)"
                           " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", -1, &s, NULL);
    double t0 = bench_seconds();
    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(s, 1, rows[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, rows[i].type, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, rows[i].customer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, rows[i].at);
        sqlite3_bind_text(s, 5, rows[i].line, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, (sqlite3_int64)time(NULL));
        sqlite3_step(s);
        sqlite3_reset(s);
        if ((i + 1) % 50000 == 0) {
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        }
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    double dt = bench_seconds() - t0;
    printf("%zu %.3f\n", n, dt);
    sqlite3_finalize(s);
    sqlite3_close(db);
    for (size_t i = 0; i < n; i++) {
        free(rows[i].id);
        free(rows[i].type);
        free(rows[i].customer);
        free(rows[i].line);
    }
    free(rows);
    return 0;
}
