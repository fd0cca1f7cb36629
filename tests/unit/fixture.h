/* fixture — an engine over a temporary store on a virtual clock, for the
 * cmocka tests that run scripts (setup/teardown in one place).
 *
 * fixture_open makes the store file, opens the engine with `config` (JSON
 * settings, may be NULL) and every channel captured, and loads `script` as
 * s.lua; any failure fails the test. fixture_close frees all of it and
 * removes the store. The fixture owns its clock, engine and file.
 * fixture_exec and fixture_count run SQL on a store, failing the test on
 * an error. */
#ifndef TEND_TEST_FIXTURE_H
#define TEND_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "store.h"
#include "util.h"

struct fixture {
    char path[64];
    tclock *clock;
    engine *e;
};

static inline struct fixture *fixture_open(const char *name, tend_time t0, const char *config, const char *script)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "/tmp/tend-%s-XXXXXX", name);
    close(mkstemp(f->path));
    f->clock = clock_new_virtual(t0);
    cJSON *cfg = config ? cJSON_Parse(config) : NULL;
    struct engine_options o = {.db_path = f->path, .clock = f->clock, .capture = 1, .config = cfg};
    char *err = NULL;
    f->e = engine_open(&o, &err);
    cJSON_Delete(cfg);
    if (!f->e)
        fail_msg("engine_open: %s", err ? err : "?");
    char *errors = NULL;
    if (engine_load_source(f->e, "s.lua", script, strlen(script), &errors) != 0)
        fail_msg("load: %s", errors ? errors : "?");
    return f;
}

/* SQL on the fixture's store (or any): run it, or the count it selects;
 * either fails the test on a store error. */
static inline void fixture_exec(store *st, const char *sql)
{
    if (store_exec(st, sql) != 0)
        fail_msg("%s: %s", sql, store_errmsg(st));
}

static inline int64_t fixture_count(store *st, const char *sql)
{
    int64_t n = store_count(st, sql);
    if (n < 0)
        fail_msg("%s: %s", sql, store_errmsg(st));
    return n;
}

static inline void fixture_close(struct fixture *f)
{
    engine_close(f->e);
    clock_free(f->clock);
    store_remove(f->path);
    free(f);
}

#endif
