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

#include "store.h"
#include "util.h"

struct row {
    char *id, *type, *customer, *line;
    long long at;
};

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_ingest_raw EVENTS.ndjson DB\n");
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
    for (char *p = data, *end = data + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (k) {
            cJSON *j = cJSON_ParseWithLength(p, k);
            if (n == cap)
                rows = xrealloc(rows, (cap = cap ? cap * 2 : 65536) * sizeof *rows);
            rows[n].id = xstrdup(cJSON_GetObjectItem(j, "id")->valuestring);
            rows[n].type = xstrdup(cJSON_GetObjectItem(j, "type")->valuestring);
            rows[n].customer = xstrdup(cJSON_GetObjectItem(j, "customer")->valuestring);
            rows[n].at = (long long)cJSON_GetObjectItem(j, "at")->valuedouble;
            rows[n].line = xstrndup(p, k);
            n++;
            cJSON_Delete(j);
        }
        p += k + (nl ? 1 : 0);
    }
    free(data);
    /* The same schema as tend's (store_open creates it), then raw SQLite. */
    char *err = NULL;
    store *st = store_open(argv[2], NULL, &err);
    if (!st) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    store_close(st);
    sqlite3 *db;
    sqlite3_open(argv[2], &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, NULL);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "INSERT INTO events (id, type, customer, at, body, received_at)"
                           " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", -1, &s, NULL);
    double t0 = seconds();
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
    double dt = seconds() - t0;
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
