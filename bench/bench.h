/* bench/bench.h — small helpers the bench programs share (header only: each
 * bench/X.c is its own program). */
#ifndef TEND_BENCH_H
#define TEND_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "store.h"
#include "util.h"

static inline double bench_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds of this process: on a shared machine a steadier measure of
 * a CPU-bound path than the wall clock (fsync waits are not in it). */
static inline double bench_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Calls fn once per non-empty line of data that parses as JSON, with the
 * parsed value (freed after fn returns) and the line's bytes. */
static inline void bench_each_json_line(char *data, size_t len,
                                        void (*fn)(const cJSON *j, char *line, size_t n, void *ud), void *ud)
{
    for (char *p = data, *end = data + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *j = k ? cJSON_ParseWithLength(p, k) : NULL;
        if (j) {
            fn(j, p, k, ud);
            cJSON_Delete(j);
        }
        p += k + (nl ? 1 : 0);
    }
}

/* Reads the NDJSON file at path and calls fn for each line (as above).
 * -1 (errno set) if the file cannot be read. */
static inline int bench_load_ndjson(const char *path,
                                    void (*fn)(const cJSON *j, char *line, size_t n, void *ud), void *ud)
{
    size_t len;
    char *data = util_read_file(path, &len);
    if (!data)
        return -1;
    bench_each_json_line(data, len, fn, ud);
    free(data);
    return 0;
}

/* A raw SQLite handle on a database at path that has tend's schema
 * (store_open creates and migrates it first): what a ceiling writes to.
 * That first store_open also turns SQLite's memory statistics off for the
 * process, as in tend, so a ceiling pays no counting mutex tend does not.
 * flags: more sqlite3_open_v2 flags (SQLITE_OPEN_NOMUTEX, as tend's store
 * opens its connection, for a ceiling that uses its handle in one thread).
 * Exits with the reason when it cannot. */
static inline sqlite3 *bench_raw_open_v2(const char *path, int flags)
{
    char *err = NULL;
    store *st = store_open(path, NULL, &err);
    if (!st) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    store_close(st);
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | flags, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
        exit(1);
    }
    return db;
}

static inline sqlite3 *bench_raw_open(const char *path)
{
    return bench_raw_open_v2(path, 0);
}

#endif
