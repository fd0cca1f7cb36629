/* fuzz.h — what every libFuzzer target here shares: a quiet engine on a
 * throw-away store, and the abort that turns a broken invariant into a
 * finding. Each target is one fuzz_<name>.c defining LLVMFuzzerTestOneInput
 * (and LLVMFuzzerInitialize); `make fuzz` builds it with clang
 * -fsanitize=fuzzer,address,undefined, and `make test` builds it with gcc
 * against fuzz/replay.c to replay fuzz/corpus/<name>/ and
 * fuzz/regressions/<name>/ without libFuzzer. */
#ifndef TEND_FUZZ_H
#define TEND_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "engine.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 2026-03-02T10:00:00+08:00 */
#define FUZZ_T0 ((tend_time)1772416800)

#define FUZZ_REQUIRE(cond, ...)                                            \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz: invariant broken: %s: ", #cond);        \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            abort();                                                       \
        }                                                                  \
    } while (0)

static void fuzz_quiet_log(void *ud, const char *level, const char *msg)
{
    (void)ud;
    (void)level;
    (void)msg;
}

/* A new directory under $TMPDIR for this process. It is kept (the fuzzer
 * exits without a hook), so tests/run.sh and fuzz/run.sh point TMPDIR at a
 * directory of their own and remove that when they are done. */
static inline char *fuzz_tempdir(const char *name)
{
    const char *tmp = getenv("TMPDIR");
    char *dir = xasprintf("%s/tend-fuzz-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    return dir;
}

/* An engine on a virtual clock over a fresh store in `dir` (which may hold a
 * tend.lua), with `source` loaded as the scripts (may be NULL). */
static inline engine *fuzz_engine(const char *dir, tclock *clk, const char *source)
{
    char *db = util_path_join(dir, "fuzz.db");
    struct engine_options o = {.dir = dir, .db_path = db, .clock = clk, .capture = 1, .log = fuzz_quiet_log};
    char *err = NULL;
    engine *e = engine_open(&o, &err);
    free(db);
    if (!e) {
        fprintf(stderr, "fuzz: engine_open: %s\n", err ? err : "?");
        abort();
    }
    if (source) {
        char *errors = NULL;
        if (engine_load_source(e, "fuzz.lua", source, strlen(source), &errors) != 0) {
            fprintf(stderr, "fuzz: load: %s\n", errors ? errors : "?");
            abort();
        }
        free(errors);
    }
    return e;
}

#endif
