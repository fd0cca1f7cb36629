/* bench/holiday — a holiday trigger over N customers in 12 zones.
 *
 *   build/release/bench_holiday [N]        (default 1000000)
 *
 * N customers, spread evenly over 12 time zones, and one journey on
 * holiday("mid_autumn", {at = "10:00", offset_days = -1}) whose run starts
 * and waits a day (a started instance, stored). The virtual clock is set to
 * each zone's slot in turn (10:00 local on 2026-09-24) and the engine runs
 * everything due: the zone's fan-out, paged and committed page by page.
 * Printed per zone: customers started and the time from its slot to the
 * last one started (target: within 60 s); overall starts/s (target: at
 * least 50k/s at 1M). The store is synchronous=full, tend's default (each
 * page's commit synced); BENCH_HOLIDAY_SYNC=normal measures the other
 * setting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "util.h"

static const char SCRIPT[] =
    "journey \"mid_autumn_eve\" {\n"
    "  on = holiday(\"mid_autumn\", { at = \"10:00\", offset_days = -1 }),\n"
    "  run = function(c, ev) wait(days(1)) end,\n"
    "}\n";

static const char *const ZONES[12] = {
    "Asia/Shanghai", "Asia/Tokyo", "Asia/Kolkata", "Asia/Dubai", "Africa/Cairo", "Europe/Berlin",
    "Europe/London", "America/Sao_Paulo", "America/New_York", "America/Los_Angeles", "Australia/Sydney",
    "Pacific/Auckland"};

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* this thread's alone: the loop's work, without the store's threads (its
 * commits and checkpoints) */
static double thread_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void quiet(void *ud, const char *level, const char *msg)
{
    (void)ud;
    if (strcmp(level, "error") == 0)
        fprintf(stderr, "%s: %s\n", level, msg);
}

static int by_slot(const void *a, const void *b)
{
    const tend_time *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char path[64];
    snprintf(path, sizeof path, "/tmp/tend-bench-holiday-XXXXXX");
    close(mkstemp(path));
    tend_time t0 = 1790035200;   /* 2026-09-22T00:00:00Z */
    tclock *clk = clock_new_virtual(t0);
    const char *extra = getenv("BENCH_HOLIDAY_CONFIG");   /* experiments: more config keys */
    const char *sync = getenv("BENCH_HOLIDAY_SYNC");
    if (!sync || !*sync)
        sync = "full";
    char cfgtext[512];
    snprintf(cfgtext, sizeof cfgtext, "{\"synchronous\": \"%s\", \"timezone\": \"Asia/Shanghai\"%s%s}", sync,
             extra && *extra ? ", " : "", extra ? extra : "");
    cJSON *cfg = cJSON_Parse(cfgtext);
    struct engine_options o = {.db_path = path, .clock = clk, .capture = 1, .config = cfg, .log = quiet};
    char *err = NULL;
    engine *e = engine_open(&o, &err);
    cJSON_Delete(cfg);
    if (!e) {
        fprintf(stderr, "bench_holiday: %s\n", err);
        return 1;
    }
    double a = seconds();
    store_begin(e->st);
    for (long i = 0; i < n; i++) {
        store_stmt *s = store_sql(e->st, "INSERT INTO customers (id, timezone, first_seen_at) VALUES (?, ?, ?)");
        char id[32];
        snprintf(id, sizeof id, "c%08ld", i);
        store_bind_text(s, 1, id, -1);
        store_bind_text(s, 2, ZONES[i % 12], -1);
        store_bind_int(s, 3, t0);
        store_run(s);
    }
    store_commit(e->st);
    double b = seconds();
    char *errors = NULL;
    if (engine_load_source(e, "holiday.lua", SCRIPT, strlen(SCRIPT), &errors) != 0) {
        fprintf(stderr, "bench_holiday: %s\n", errors ? errors : "load failed");
        return 1;
    }
    double c = seconds();
    printf("holiday: %ld customers in 12 zones stored in %.2f s; trigger planned for every zone in %.3f s\n", n,
           b - a, c - b);

    /* each zone's slot, in time order */
    tend_time slots[12][2];
    for (int z = 0; z < 12; z++) {
        store_stmt *s = store_sql(e->st, "SELECT fire_at FROM local_triggers WHERE zone = ?");
        store_bind_text(s, 1, ZONES[z], -1);
        slots[z][0] = store_step(s) == STORE_ROW ? store_col_int(s, 0) : 0;
        slots[z][1] = z;
        store_reset(s);
    }
    qsort(slots, 12, sizeof slots[0], by_slot);
    double total = 0, worst = 0, cpu0 = cpu_seconds(), loop0 = thread_seconds(), commit0 = store_commit_ms(e->st);
    int64_t started_before = 0;
    for (int k = 0; k < 12; k++) {
        clock_set(clk, slots[k][0]);
        double s0 = seconds(), z0 = cpu_seconds();
        if (engine_run_due(e, slots[k][0]) < 0) {
            fprintf(stderr, "bench_holiday: run failed\n");
            return 1;
        }
        double s1 = seconds(), zcpu = cpu_seconds() - z0;
        int64_t started = store_count(e->st, "SELECT COUNT(*) FROM instances");
        char when[40];
        clock_format(slots[k][0], ZONES[slots[k][1]], when, sizeof when);
        printf("holiday: %-20s slot %s: %lld started in %.2f s (%.0f/s), CPU %.2f s (%.0f/CPU-s)\n",
               ZONES[slots[k][1]], when, (long long)(started - started_before), s1 - s0,
               (double)(started - started_before) / (s1 - s0), zcpu, (double)(started - started_before) / zcpu);
        started_before = started;
        total += s1 - s0;
        if (s1 - s0 > worst)
            worst = s1 - s0;
    }
    double cpu = cpu_seconds() - cpu0, loop = thread_seconds() - loop0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("holiday: %lld instances started in %.2f s = %.0f starts/s (target >= 50k/s); slowest zone %.2f s "
           "after its slot (target <= 60 s); CPU %.2f s = %.0f starts per CPU-second (%.2f s of it the loop's thread); %.2f s in commits (synchronous=%s); peak RSS %ld MiB\n",
           (long long)started_before, total, (double)started_before / total, worst, cpu,
           (double)started_before / cpu, loop, (store_commit_ms(e->st) - commit0) / 1e3, sync, ru.ru_maxrss / 1024);
    engine_close(e);
    clock_free(clk);
    store_remove(path);
    clock_shutdown();
    return 0;
}
