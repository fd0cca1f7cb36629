/* engine — one runtime, and the pass that moves due work (see engine.h). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "calendar.h"
#include "catalog.h"
#include "config.h"
#include "customer.h"
#include "dates.h"
#include "dispatch.h"
#include "event.h"
#include "fetch.h"
#include "filesink.h"
#include "helpers.h"
#include "instance.h"
#include "json.h"
#include "logger.h"
#include "metrics.h"
#include "outbox.h"
#include "policy.h"
#include "schedule.h"
#include "script.h"
#include "step.h"
#include "receipt.h"
#include "retention.h"
#include "task.h"
#include "util.h"

#define BATCH 500           /* instances per transaction */
#define EVENT_BATCH 50000   /* events per transaction: a backlog drains with few commits (each rewrites the pages it dirtied) */
#define FANOUT_PAGE 500
#define LOCAL_PAGE 2000      /* customers per local-trigger page: one commit each */

tend_time engine_now(engine *e)
{
    return clock_now(e->clock);
}

void engine_logf(engine *e, const char *level, const char *fmt, ...)
{
    strbuf b;
    strbuf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (e->log) {
        e->log(e->log_ud, level, b.s);
    } else {
        logger_write(level, b.s);
    }
    strbuf_free(&b);
}

static void script_log(void *ud, const char *where, const char *msg)
{
    engine *e = ud;
    engine_logf(e, "log", "%s: %s", where, msg);
}

/* tend.lua runs in the sandbox like any script; it returns the settings. */
static int read_config_file(engine *e, const char *path, char **err)
{
    lua_State *L = sandbox_state(e->sb);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;   /* no tend.lua: the defaults */
    fclose(f);
    sandbox_new_env(e->sb, e->dir);
    int status = sandbox_load_file(e->sb, path, -1);
    lua_remove(L, -2);
    if (status == LUA_OK)
        status = sandbox_pcall(e->sb, L, 0, 1);
    char msg[400];
    if (status != LUA_OK) {
        *err = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    int rc = config_read(&e->cfg, L, -1, path, msg, sizeof msg);
    lua_pop(L, 1);
    size_t pl = strlen(path);
    if (rc != 0)   /* "path: ..." gets the line of what it names */
        *err = strncmp(msg, path, pl) == 0 && !strncmp(msg + pl, ": ", 2) ? config_error_at(path, path, msg + pl + 2)
                                                                           : xstrdup(msg);
    return rc;
}

static int read_config_json(engine *e, const cJSON *config, char **err)
{
    lua_State *L = sandbox_state(e->sb);
    json_push(L, config);
    char msg[400];
    int rc = config_read(&e->cfg, L, -1, "config", msg, sizeof msg);
    lua_pop(L, 1);
    if (rc != 0)
        *err = xstrdup(msg);
    return rc;
}

engine *engine_open(const struct engine_options *o, char **err)
{
    *err = NULL;
    engine *e = xcalloc(1, sizeof *e);
    e->clock = o->clock;
    e->capture = o->capture;
    e->log = o->log;
    e->log_ud = o->log_ud;
    e->dir = o->dir ? xstrdup(o->dir) : NULL;
    e->batch_size = BATCH;
    const char *slice_log = getenv("TEND_SLICE_LOG_MS");   /* a debugging aid: docs/operations.md */
    e->slice_log_ms = slice_log ? atof(slice_log) : 0;
    e->metrics = metrics_new();
    config_init(&e->cfg);
    struct sandbox_options so = {.clock = e->clock, .log = script_log, .log_ud = e};
    e->sb = sandbox_new(&so);
    helpers_register(e->sb);
    char *cfg_path = e->dir ? util_path_join(e->dir, "tend.lua") : NULL;
    int rc = cfg_path ? read_config_file(e, cfg_path, err) : 0;
    free(cfg_path);
    if (rc == 0 && o->config)
        rc = read_config_json(e, o->config, err);
    if (rc != 0) {
        engine_close(e);
        return NULL;
    }
    calendar_lua_register(sandbox_state(e->sb), e->cfg.holidays, e->cfg.timezone);
    sandbox_set_instruction_limit(e->sb, e->cfg.instruction_limit);
    sandbox_set_memory_limit(e->sb, e->cfg.memory_limit);
    sandbox_set_time_limit(e->sb, e->cfg.time_limit_ms);
    sandbox_set_load_limit(e->sb, e->cfg.load_limit);

    const char *db = o->db_path ? o->db_path : e->cfg.db;
    e->db_path = o->db_path || !e->dir ? xstrdup(db) : util_path_join(e->dir, db);
    struct store_options sto = {.synchronous_normal = e->cfg.synchronous_normal, .throwaway = o->throwaway,
                                .cache_kib = e->cfg.cache_mb * 1024};
    e->st = store_open(e->db_path, &sto, err);
    if (!e->st) {
        engine_close(e);
        return NULL;
    }
    catalog_register(e);
    step_register(e);
    customer_lua_register(e);
    task_register(e);
    receipt_register(e);
    policy_lua_register(e);
    return e;
}

void engine_close(engine *e)
{
    if (!e)
        return;
    engine_detach(e);
    filesink_close(e);
    sandbox_free(e->sb);
    store_close(e->st);
    config_free(&e->cfg);
    cJSON_Delete(e->http_stubs);
    metrics_free(e->metrics);
    free(e->dir);
    free(e->db_path);
    free(e);
}

int engine_attach(engine *e, struct event_base *base, void (*work_due)(void *ud), void *ud)
{
    e->work_due = work_due;
    e->work_due_ud = ud;
    if (dispatch_attach(e, base) != 0 || fetch_attach(e, base) != 0)
        return -1;
    return 0;
}

void engine_detach(engine *e)
{
    dispatch_free(e);
    fetch_free(e);
    e->work_due = NULL;
}

int engine_load_dir(engine *e, char **errors)
{
    *errors = NULL;
    if (!e->dir)
        return 0;
    return script_load_dir(e, e->dir, errors);
}

int engine_load_files(engine *e, const char *const *paths, int n, char **errors)
{
    *errors = NULL;
    return script_load_files(e, paths, n, errors);
}

int engine_load_source(engine *e, const char *name, const char *src, size_t len, char **errors)
{
    *errors = NULL;
    return script_load_source(e, name, src, len, errors);
}

int engine_load_set(engine *e, const char *const *paths, int n, const char *name, const char *src, size_t len,
                    char **errors)
{
    *errors = NULL;
    return script_load_set(e, paths, n, name, src, len, errors);
}

/* Lifecycle and recency scores move with time alone: once a day, re-derive
 * the customers who crossed a threshold. The day since the last sweep is
 * swept in windows of at most `window` seconds, one transaction each; the
 * store keeps how far the sweep got (lifecycle_swept) and where it goes
 * (lifecycle_sweep_to, 0 when none runs), so a stop or a crash resumes it.
 * Windows add up: customers who crossed in (a, b] and (b, c] are those of
 * (a, c]. Returns 1 when a window was swept, 0 when none is due. */
static int sweep_due(engine *e, tend_time now, int window)
{
    if (!e->lifecycle_swept) {
        int64_t last = 0, to = 0;
        if (store_meta_get_int(e->st, "lifecycle_swept", &last) != 0)
            last = now;
        e->lifecycle_swept = last;
        if (last == now)
            store_meta_set_int(e->st, "lifecycle_swept", now);
        if (store_meta_get_int(e->st, "lifecycle_sweep_to", &to) == 0 && to > last)
            e->lifecycle_sweep_to = to;
    }
    tend_time from = e->lifecycle_swept, to = e->lifecycle_sweep_to;
    if (!to) {
        if (now - from < TEND_DAY)
            return 0;
        to = now;
    }
    tend_time upto = window > 0 && to - from > window ? from + window : to;
    int rc = store_begin(e->st);
    int n = rc == 0 ? customer_sweep(e, from, upto) : -1;
    if (n >= 0 && store_meta_set_int(e->st, "lifecycle_swept", upto) == 0 &&
        store_meta_set_int(e->st, "lifecycle_sweep_to", upto < to ? to : 0) == 0 && store_commit(e->st) == 0) {
        e->lifecycle_swept = upto;
        e->lifecycle_sweep_to = upto < to ? to : 0;
        return 1;
    }
    if (store_in_batch(e->st))
        store_rollback(e->st);
    return -1;
}

/* --- due work, stage by stage ----------------------------------------------
 * Each stage does one bounded batch (one transaction, or a few) of one kind
 * of due work and returns how many units it did (0: none due, -1: a store
 * failure). engine_run_due repeats each until it finds nothing, in this
 * order; engine_run_slice visits them the same way under a time budget. */

static int stage_events(engine *e, tend_time now, int max)
{
    (void)now;
    return event_process(e, max);
}

/* A page may start nobody (no one of it in the audience) while pages are
 * left: it counts as one unit so the stage goes on. */
static int stage_fanout(engine *e, tend_time now, int max)
{
    (void)now;
    int n = event_fanout(e, max);
    return n == 0 && event_fanout_pending(e) > 0 ? 1 : n;
}

/* engine_run_due's drain (outside a transaction) overlaps each batch's
 * commit with the next batch; a slice's batch is one claim in its
 * transaction */
static int stage_wakes(engine *e, tend_time now, int max)
{
    return instance_drain_due(e, now, max);
}

static int stage_dates(engine *e, tend_time now, int max)
{
    return dates_run_due(e, now, max);
}

static int stage_local_dates(engine *e, tend_time now, int max)
{
    return dates_local_run_slot(e, now, max);
}

static int stage_schedules(engine *e, tend_time now, int max)
{
    (void)max;
    return schedule_run_due(e, now);
}

/* http_get requests: started on the loop (their answers wake the instances
 * later), or answered here (a sim's stubs, no loop). */
static int stage_fetches(engine *e, tend_time now, int max)
{
    (void)now;
    return fetch_run_due(e, max);
}

static int stage_sweep(engine *e, tend_time now, int max)
{
    return sweep_due(e, now, max);
}

/* branch scale: one slice of the retention sweep (retention.h); it commits
 * on its own */
static int stage_retention(engine *e, tend_time now, int max)
{
    (void)max;
    struct retention_policy keep = {e->cfg.retain_instances, e->cfg.retain_events};
    return retention_run_due(e->st, &keep, now);
}

static int stage_deliveries(engine *e, tend_time now, int max)
{
    return dispatch_run_due(e, now, max);
}

/* A stage's max that is the delivery_batch setting. */
#define DELIVERY_BATCH (-1)

struct stage {
    int (*run)(engine *e, tend_time now, int max);
    int max;     /* the batch engine_run_due asks for (0: e->batch_size) */
    int min;     /* the smallest batch a slice cuts it to */
    int once;    /* one call per pass: it does all that is due at once */
    int own_tx;  /* commits on its own: it starts network work on what it
                  * committed, or keeps state in memory after its commit */
};

/* Events first (they may start instances due now), then fan-outs, timers,
 * date triggers and schedules; deliveries last, so a message sent by any of
 * them in this pass goes out in this pass. */
static const struct stage stages[ENGINE_STAGES] = {
    {stage_events, EVENT_BATCH, 8, 0, 0},
    {stage_fanout, FANOUT_PAGE, 16, 0, 0},
    {stage_wakes, 0, 8, 0, 0},
    {stage_dates, BATCH, 8, 0, 0},
    {stage_local_dates, LOCAL_PAGE, 16, 0, 0},
    {stage_schedules, 0, 0, 1, 0},
    {stage_wakes, 0, 8, 0, 0},        /* a schedule may have started instances due now */
    {stage_fetches, BATCH, 8, 0, 1},
    {stage_events, EVENT_BATCH, 8, 0, 0},   /* emitted by journeys */
    {stage_sweep, INT_MAX, 60, 0, 1}, /* its batch is seconds of the window */
    {stage_retention, 0, 0, 1, 1},    /* one slice a pass; a slice goes on while it deletes */
    /* slots bound a pass over HTTP channels; a file channel's messages are
     * written in the pass (about 20 us each), so a slice fits its batch */
    {stage_deliveries, DELIVERY_BATCH, 16, 0, 1},
};

#define STAGE_DELIVERIES (ENGINE_STAGES - 1)

static int stage_max(const engine *e, int k)
{
    if (stages[k].max == DELIVERY_BATCH)
        return e->cfg.delivery_batch;
    return stages[k].max ? stages[k].max : e->batch_size;
}

int engine_run_due(engine *e, tend_time now)
{
    int total = 0;
    for (int k = 0; k < ENGINE_STAGES; k++) {
        int n;
        while ((n = stages[k].run(e, now, stage_max(e, k))) > 0) {
            total += n;
            if (stages[k].once)
                break;
        }
        if (n < 0)
            return -1;
    }
    return total;
}

static double monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A batch's work (its time less its commit's fsync, which does not grow
 * with the batch) should take about half a slice: one that took longer is
 * cut in proportion, one that took under a sixth is doubled (up to
 * engine_run_due's size). The first batch of a stage is small: its cost is
 * not known yet. */
static void fit_batch(engine *e, int k, double took_ms, double budget_ms)
{
    int *b = &e->slice_batch[k], max = stage_max(e, k), min = stages[k].min;
    double target = budget_ms / 2;
    if (took_ms > target)
        *b = (int)((double)*b * target / took_ms);
    else if (took_ms < target / 3)
        *b = *b > max / 2 ? max : *b * 2;
    if (*b < min)
        *b = min;
}

/* A stage's first batch in slices: four times its smallest. */
static int first_batch(const engine *e, int k)
{
    return stages[k].min * 4 < stage_max(e, k) ? stages[k].min * 4 : stage_max(e, k);
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* TEND_SLICE_LOG_MS: a stage's batch that held the loop longer is logged
 * with the CPU it used, which tells work (CPU close to the time) from a
 * wait (for a CPU, the disk, a lock). Indexed as stages[]. */
static const char *const stage_names[ENGINE_STAGES] = {
    "events", "fanout", "wakes", "dates", "local_dates", "schedules", "wakes", "fetches", "events",
    "sweep", "retention", "deliveries"};

static void log_slow_stage(engine *e, int k, int n, double took_ms, double cpu_ms, double commit_ms)
{
    engine_logf(e, "info", "slice: stage %s did %d units (batch %d) in %.1f ms, %.1f ms of it CPU, %.1f in commits",
                stage_names[k] ? stage_names[k] : "?", n, e->slice_batch[k], took_ms, cpu_ms, commit_ms);
}

/* The slice's batches share one transaction (each is a savepoint in it),
 * so a slice pays one commit's fsync, not one per batch; a stage that
 * commits on its own runs after that transaction has committed. */
static int slice_tx(engine *e, int *open, int want)
{
    if (want == *open)
        return 0;
    *open = want;
    return want ? store_begin(e->st) : store_commit(e->st);
}

/* The slice proper; `async`: its transaction's commit is left in flight
 * (store_commit_start), and a stage that commits on its own ends the slice
 * rather than commit the slice's work on this thread before it runs. */
static int run_slice(engine *e, tend_time now, double budget_ms, int *more, int async)
{
    double start = monotonic_ms(), deadline = start + budget_ms;
    e->slice_budget_ms = budget_ms;
    int total = 0, idle = 0, k = e->slice_next % ENGINE_STAGES, open = 0, in_tx = 0;
    *more = 0;
    /* round and round from where the last slice stopped, until every stage
     * in a row found nothing or the budget is spent */
    while (idle < ENGINE_STAGES) {
        if (async && open && in_tx > 0 && stages[k].own_tx) {
            e->slice_next = k;   /* it runs first in the next slice */
            *more = 1;
            break;
        }
        if (stages[k].min && !e->slice_batch[k])
            e->slice_batch[k] = first_batch(e, k);
        if (slice_tx(e, &open, !stages[k].own_tx) != 0)
            goto fail;
        if (!open)
            in_tx = 0;
        double t0 = monotonic_ms(), c0 = store_commit_ms(e->st), cpu0 = e->slice_log_ms > 0 ? thread_cpu_ms() : 0;
        int n = stages[k].run(e, now, stages[k].min ? e->slice_batch[k] : stage_max(e, k));
        double t1 = monotonic_ms(), waited = store_commit_ms(e->st) - c0;
        if (e->slice_log_ms > 0 && t1 - t0 > e->slice_log_ms)
            log_slow_stage(e, k, n, t1 - t0, thread_cpu_ms() - cpu0, waited);
        if (n < 0)
            goto fail;
        if (stages[k].min && n > 0)
            fit_batch(e, k, t1 - t0 - waited, budget_ms);
        total += n;
        if (open)
            in_tx += n;
        int again = n > 0 && !stages[k].once;
        idle = n > 0 ? 0 : idle + 1;
        if (!again)
            k = (k + 1) % ENGINE_STAGES;
        if (t1 >= deadline) {
            /* a stage cut short resumes after the others had their turn */
            e->slice_next = again ? (k + 1) % ENGINE_STAGES : k;
            *more = 1;
            break;
        }
    }
    int crc = async && open ? store_commit_start(e->st) : slice_tx(e, &open, 0);
    open = 0;   /* committed, in flight, or (failed) rolled back */
    if (crc != 0)
        goto fail;
    if (!*more)
        e->slice_next = 0;
    return total;
fail:
    if (open)
        store_rollback(e->st);
    e->slice_next = (k + 1) % ENGINE_STAGES;
    return -1;
}

/* The deliveries between slices: a batch fitted as the slice's stages
 * are, so that writing a file channel's due messages holds the loop about
 * half a slice, not delivery_batch of them (500 took 10 ms). */
static int slice_deliveries(engine *e, tend_time now)
{
    int k = STAGE_DELIVERIES;
    if (!e->slice_batch[k])
        e->slice_batch[k] = first_batch(e, k);
    double t0 = monotonic_ms(), c0 = store_commit_ms(e->st);
    int n = stage_deliveries(e, now, e->slice_batch[k]);
    if (n > 0)
        fit_batch(e, k, monotonic_ms() - t0 - (store_commit_ms(e->st) - c0), e->slice_budget_ms);
    return n;
}

int engine_run_slice(engine *e, tend_time now, double budget_ms, int *more)
{
    int total = run_slice(e, now, budget_ms, more, 0);
    if (total < 0)
        return -1;
    /* deliveries between slices: what the slice queued starts leaving now */
    int d = *more ? slice_deliveries(e, now) : 0;
    if (d < 0)
        return -1;
    return total + d;
}

int engine_slice_start(engine *e, tend_time now, double budget_ms, int *more)
{
    return run_slice(e, now, budget_ms, more, 1);
}

int engine_slice_end(engine *e, tend_time now, int more)
{
    if (store_commit_finish(e->st) != 0)
        return -1;   /* rolled back: the slice's work is due again */
    int d = more ? slice_deliveries(e, now) : 0;
    return d < 0 ? -1 : d;
}

static tend_time earliest(tend_time a, tend_time b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

tend_time engine_next_due(engine *e)
{
    tend_time now = engine_now(e);
    if (event_backlog(e) > 0 || event_fanout_pending(e) > 0)
        return now;
    if (!e->fetch && fetch_pending(e) > 0)   /* answered by the next pass */
        return now;
    tend_time t = instance_next_due(e);
    t = earliest(t, dates_next_due(e));
    t = earliest(t, schedule_next_due(e));
    t = earliest(t, outbox_next_due(e));
    if (e->lifecycle_sweep_to)
        return now;   /* a sweep in pieces goes on */
    if (e->lifecycle_swept)
        t = earliest(t, e->lifecycle_swept + TEND_DAY);
    return t;
}

int engine_advance(engine *e, tend_time seconds)
{
    if (!clock_is_virtual(e->clock))
        return -1;
    tend_time target = engine_now(e) + seconds;
    /* Visit every due instant in order; bounded so that a journey that
     * keeps scheduling work "now" cannot spin forever. */
    for (int rounds = 0; rounds < 10000000; rounds++) {
        if (engine_run_due(e, engine_now(e)) < 0)
            return -1;
        /* Time waits for the network: results of transfers in flight land
         * at this instant, before the clock moves on. */
        if (dispatch_in_flight(e) > 0 || fetch_in_flight(e) > 0) {
            if (dispatch_wait(e, 60000) != 0 || fetch_wait(e, 60000) != 0)
                return -1;
            continue;
        }
        tend_time next = engine_next_due(e);
        if (next < 0 || next > target)
            break;
        if (next <= engine_now(e))
            break;   /* due now after a full pass: nothing more will run at this instant */
        clock_set(e->clock, next);
    }
    clock_set(e->clock, target);
    return engine_run_due(e, target) < 0 ? -1 : 0;
}
