/* engine — one tend runtime: a store, a clock, a Lua sandbox with the loaded
 * scripts, and the loop that moves work through them.
 *
 * The data path, in the order a message travels:
 *   event.c      an event enters: validated, stored, later processed
 *   instance.c   a journey instance starts or wakes and replays its history
 *   step.c       the durable primitives a journey calls (wait, send, ...)
 *   outbox.c     a send becomes an outbox row, in the step's transaction
 *   dispatch.c   the outbox row is delivered through its channel
 *
 * `tend run`, `tend ingest`, `tend simulate` and every t.sim own exactly one
 * engine. The struct is shared by the runtime modules (they are one program);
 * its ownership rules: the engine owns everything it points to except
 * `clock`, which the caller passes in and frees after engine_close().
 *
 * Time only moves through engine_run_due(now): on the real clock the server
 * calls it when the next due time arrives; on a virtual clock
 * engine_advance() calls it at every due instant up to the target, so a
 * simulated month runs every wake, schedule and delivery in time order. */
#ifndef TEND_ENGINE_H
#define TEND_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "config.h"
#include "sandbox.h"
#include "store.h"

struct run_ctx;
struct dispatcher;
struct fetcher;
struct filesink;
struct event_base;
struct metrics;

typedef void (*engine_log_fn)(void *ud, const char *level, const char *msg);

struct engine_options {
    const char *dir;            /* script directory: tend.lua, *.lua (may be NULL) */
    const char *db_path;        /* overrides config `db` (sims: a temp file) */
    tclock *clock;              /* required; borrowed */
    int capture;                /* every channel captured (sims, tests) */
    int throwaway;              /* the store is deleted after use (sims, simulate): no fsync */
    const cJSON *config;        /* settings given as data (t.sim{config=}), after tend.lua */
    engine_log_fn log;          /* NULL: stderr */
    void *log_ud;
};

/* The kinds of due work engine_run_due visits, in its order (engine.c). */
#define ENGINE_STAGES 12

struct engine_stats {
    int64_t events_processed, instances_started, instances_woken, steps;
    int64_t sends, deliveries, failures;
};

struct due_pass;                /* instance.c: what a due pass keeps while its wakes run */
struct activity_batch;          /* policy.c: activity hours of a batch of events not written yet */

typedef struct engine {
    store *st;
    tclock *clock;
    sandbox *sb;
    struct config cfg;
    char *dir;
    char *db_path;
    int capture;
    engine_log_fn log;
    void *log_ud;

    struct run_ctx *cur;        /* the instance running now, or NULL */
    struct instance_starter *kept_starts;   /* instance.c: a starter whose new rows are not written yet */
    int64_t ids_taken;          /* instance.c: instance ids reserved so far by this process */
    struct start_batch *start_batch;    /* instance.c: the starters of a batch of events, or NULL */
    int loading;                /* scripts are being loaded: declarations allowed */
    const char *loading_path;   /* ...this file */
    const char *loading_version;
    int loading_old;            /* loading an old version: only its journeys count */

    struct dispatcher *dispatch;    /* delivery (NULL until first needed) */
    struct fetcher *fetch;      /* http_get requests on the loop (NULL: no loop) */
    void (*work_due)(void *ud); /* set with engine_attach: work became due now */
    void *work_due_ud;
    struct filesink *files;     /* open file-channel files (filesink.c) */
    cJSON *http_stubs;          /* t.sim stub_http: url -> response */
    tend_time lifecycle_swept;  /* last time the lifecycle sweep ran */
    struct engine_stats stats;
    struct metrics *metrics;    /* counters and histograms for /metrics (metrics.h) */
    int batch_size;             /* instances per transaction */
    int chain;                  /* chain depth given to instances and events made now */
    /* engine_run_slice: the stage the next slice begins with, and each
     * stage's batch size, fitted to the slice (0: not fitted yet) */
    int slice_next;
    int slice_batch[ENGINE_STAGES];
    double slice_budget_ms;     /* the last slice's budget: the deliveries after it fit to it */
    double slice_log_ms;        /* TEND_SLICE_LOG_MS: log a stage's batch that took longer (0: off) */
    tend_time lifecycle_sweep_to;   /* a sweep in pieces: swept up to lifecycle_swept, going to this */
    int due_full_claims;        /* instance_run_due: claims in a row that came back full (a drain) */
    unsigned listener_writes;   /* listener rows written (instance_listener_writes) */
    struct due_pass *due;       /* the due pass running (instance_run_due, on its stack), or NULL */
    struct customer_kept_tags *kept_tags;   /* customer.c: tags a due pass added, not written yet, or NULL */
    struct activity_batch *activity;    /* the batch of events being processed keeps its activity hours here, or NULL */
    int customer_was_new;       /* customer.c: the last event's customer was created by it (customer_apply_event) */
} engine;

/* Opens the store, reads tend.lua and the settings, loads nothing yet.
 * NULL with a malloc'd *err on failure. */
engine *engine_open(const struct engine_options *o, char **err);
void    engine_close(engine *e);

/* Loads every script of the directory (or the given ones) and records their
 * versions. Script errors are collected, each "file:line: message", into
 * *errors (malloc'd, newline-separated; NULL when none); returns their count,
 * or -1 when nothing could be loaded at all. */
int engine_load_dir(engine *e, char **errors);
int engine_load_files(engine *e, const char *const *paths, int n, char **errors);
int engine_load_source(engine *e, const char *name, const char *src, size_t len, char **errors);
int engine_load_set(engine *e, const char *const *paths, int n, const char *name, const char *src, size_t len,
                    char **errors);

/* Runs every piece of work due at or before `now`: unprocessed events,
 * broadcast fan-outs, instance wakes, date triggers, schedules, deliveries.
 * Returns how many units of work ran, -1 on a store failure. */
int engine_run_due(engine *e, tend_time now);

/* The same work cut into slices for a loop that must stay responsive
 * (`tend run`): runs bounded batches, in engine_run_due's order, until
 * nothing is due or about `budget_ms` have passed, then returns with *more
 * set when work is left (call again after the loop has had a turn: every
 * batch committed, so a slice can stop anywhere). A slice that stops in a
 * long stage resumes with the next one, so every kind of work moves in
 * every round, and each slice ends by starting due deliveries (a batch
 * fitted like the stages'): messages leave while a long drain goes on.
 * Batch sizes adapt so one batch takes a fraction of the budget. Returns
 * units of work done, -1 on a store failure. */
int engine_run_slice(engine *e, tend_time now, double budget_ms, int *more);
/* engine_run_slice in two halves, for a loop that serves requests while
 * the slice's commit syncs: engine_slice_start runs the slice and leaves
 * its commit in flight (store_commit_start; a stage that commits on its own
 * then waits for the next slice); engine_slice_end waits for that commit
 * (store_commit_finish) and starts due deliveries when *more was set.
 * start returns units of work or -1; end returns deliveries started, or -1
 * when the commit failed (rolled back, due again) or a delivery did. */
int engine_slice_start(engine *e, tend_time now, double budget_ms, int *more);
int engine_slice_end(engine *e, tend_time now, int more);

/* The earliest time any pending work is due (events pending: now), or -1. */
tend_time engine_next_due(engine *e);

/* Virtual clock only: runs everything due up to now + seconds, in time order,
 * leaving the clock at now + seconds. Returns 0 or -1. */
int engine_advance(engine *e, tend_time seconds);

/* Runs the engine's network work on `base` from now on (`tend run`):
 * deliveries and http_get. `work_due(ud)` is called when work becomes due
 * outside a pass (an http_get answer woke an instance); the owner of the
 * loop then runs engine_run_due soon. 0 or -1. */
int  engine_attach(engine *e, struct event_base *base, void (*work_due)(void *ud), void *ud);
/* Abandons the transfers in flight (sent again later, see dispatch.h and
 * fetch.h) and leaves the loop; before the loop is freed. */
void engine_detach(engine *e);

/* Logging with a level ("info", "warn", "error"). */
void engine_logf(engine *e, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

tend_time engine_now(engine *e);

#endif
