/* bench/scale_seed — N waiting instances in a store, fast, for the scaling
 * table (bench/scaling.sh) and the `tend run` ready time.
 *
 *   build/release/bench_scale_seed DB N SCRIPT VERSIONS
 *
 * Stores VERSIONS versions of the script file SCRIPT (its text as it is,
 * which a load finds current, and VERSIONS-1 older texts, "-- v<k>" added)
 * and N instances of its journey "park" waiting a year on them in turn,
 * with their timers, in one transaction by recursive SQL on the store's own
 * schema. The instances never wake during a benchmark; they are the load a
 * large shop carries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "script.h"
#include "store.h"
#include "util.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_scale_seed DB N SCRIPT VERSIONS\n");
        return 2;
    }
    long long n = atoll(argv[2]);
    int versions = atoi(argv[4]);
    size_t len;
    char *src = util_read_file(argv[3], &len);
    if (!src || versions < 1) {
        fprintf(stderr, "bench_scale_seed: cannot read %s (or VERSIONS < 1)\n", argv[3]);
        return 1;
    }
    char *err = NULL;
    store *st = store_open(argv[1], NULL, &err);
    if (!st) {
        fprintf(stderr, "bench_scale_seed: %s\n", err);
        return 1;
    }
    const char *path = strrchr(argv[3], '/') ? strrchr(argv[3], '/') + 1 : argv[3];
    int rc = store_begin(st);
    strbuf cases;   /* CASE i % versions WHEN k THEN 'hash' ... */
    strbuf_init(&cases);
    strbuf_puts(&cases, "CASE i % ");
    strbuf_printf(&cases, "%d", versions);
    for (int k = 0; rc == 0 && k < versions; k++) {
        char *text = k == 0 ? xstrdup(src) : xasprintf("%s\n-- v%d\n", src, k);
        char version[17];
        script_version(text, strlen(text), version);
        store_stmt *s = store_sql(st, "INSERT INTO scripts (hash, path, source, loaded_at) VALUES (?, ?, ?, 0)"
                                      " ON CONFLICT DO NOTHING");
        store_bind_text(s, 1, version, -1);
        store_bind_text(s, 2, path, -1);
        store_bind_text(s, 3, text, -1);
        rc = store_run(s);
        strbuf_printf(&cases, " WHEN %d THEN '%s'", k, version);
        free(text);
    }
    strbuf_puts(&cases, " END");
    long long now = (long long)time(NULL), wake = now + 365LL * 86400;
    char *sql = xasprintf(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %lld)"
        " INSERT INTO instances (journey, version, customer, state, step, label, wake_at, started_at)"
        " SELECT 'park', %s, 'p' || i, 'waiting', 1, 'wait 31536000 (park.lua:1)', %lld, %lld FROM n;"
        "INSERT INTO timers (wake_at, instance) SELECT wake_at, id FROM instances WHERE journey = 'park';",
        n, cases.s, wake, now);
    if (rc == 0)
        rc = store_exec(st, sql);
    if (rc == 0)
        rc = store_commit(st);
    free(sql);
    strbuf_free(&cases);
    free(src);
    if (rc != 0)
        fprintf(stderr, "bench_scale_seed: %s\n", store_errmsg(st));
    store_close(st);
    return rc ? 1 : 0;
}
