/* bench/bench_engine.h — an engine on a temporary store for the bench
 * programs that drive journeys directly (header only: each bench/X.c is its
 * own program). Failures print and exit: a bench has nothing to recover. */
#ifndef TEND_BENCH_ENGINE_H
#define TEND_BENCH_ENGINE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "instance.h"
#include "util.h"

struct bench_engine {
    engine *e;
    tclock *clk;      /* virtual, from 2026-01-01 */
    cJSON *cfg;
    char *db;         /* a temporary file, removed by bench_engine_close */
};

/* An engine on a fresh temporary store (synchronous=full) with `script`
 * loaded as `file`. */
static inline void bench_engine_open(struct bench_engine *b, const char *file, const char *script)
{
    const char *tmp = getenv("TMPDIR");
    b->db = xasprintf("%s/tend-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(b->db);
    if (fd >= 0)
        close(fd);
    b->clk = clock_new_virtual(1767225600);
    b->cfg = cJSON_Parse("{\"synchronous\": \"full\"}");
    struct engine_options o = {.db_path = b->db, .clock = b->clk, .capture = 1, .config = b->cfg};
    char *err = NULL, *errors = NULL;
    b->e = engine_open(&o, &err);
    if (!b->e) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    if (engine_load_source(b->e, file, script, strlen(script), &errors) != 0) {
        fprintf(stderr, "bench: %s\n", errors);
        exit(1);
    }
}

struct bench_starter {
    engine *e;
    const char *journey;
    long from, to;
};

static inline int bench_start_batch(store *st, void *ud)
{
    (void)st;
    struct bench_starter *s = ud;
    char id[32], err[200];
    for (long i = s->from; i < s->to; i++) {
        snprintf(id, sizeof id, "c%09ld", i);
        if (instance_start(s->e, s->journey, id, NULL, 1, err, sizeof err) < 0) {
            fprintf(stderr, "start: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* Starts n instances of `journey` (customers c000000000..), run to their
 * first wait, `batch` per transaction. */
static inline void bench_start(engine *e, const char *journey, long n, long batch)
{
    for (long i = 0; i < n; i += batch) {
        struct bench_starter s = {e, journey, i, i + batch < n ? i + batch : n};
        if (store_batch(e->st, bench_start_batch, &s) != 0) {
            fprintf(stderr, "bench: %s\n", store_errmsg(e->st));
            exit(1);
        }
    }
}

static inline void bench_engine_close(struct bench_engine *b)
{
    engine_close(b->e);
    clock_free(b->clk);
    cJSON_Delete(b->cfg);
    clock_shutdown();
    store_remove(b->db);
    free(b->db);
}

#endif
