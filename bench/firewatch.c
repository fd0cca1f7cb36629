/* bench/firewatch — watches a store's due timers fire, from outside.
 *
 *   build/release/bench_firewatch DB N DUE [PID [TIMEOUT_S]]
 *
 * DB holds N waiting instances (ids MIN..MIN+N-1, the only instances) whose
 * timers are all due at DUE (epoch seconds); some other process (`tend run`)
 * fires them. Every 10 ms this reads, read-only, the first timer left in the
 * drain order (wake_at, instance) — the order instance_run_due takes them,
 * and a timer leaves the table in the transaction that wakes its instance,
 * so "first left - MIN" is how many have fired durably. One indexed read a
 * sample: watching does not slow the drain down.
 *
 * Prints one line of key=value figures (milliseconds after DUE, real clock):
 *   fired first_ms median_ms last_ms fire_s rss_mb
 * first: the first commit that fired one; median: the one that passed N/2;
 * last: the one that emptied the timers. rss_mb: PID's peak RSS (VmHWM) read
 * at the end, so PID must still run then. Gives up after TIMEOUT_S (default
 * 3600) seconds past DUE and prints what it saw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double peak_rss_mb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    double mb = -1;
    if (!f)
        return mb;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            mb = atol(line + 6) / 1024.0;
    fclose(f);
    return mb;
}

/* -1: not known yet (the store is busy); else the first timer's instance,
 * or 0 when no timer is left. */
static long long first_left(sqlite3 *db)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT instance FROM timers ORDER BY wake_at, instance LIMIT 1", -1, &s, NULL))
        return -1;
    int rc = sqlite3_step(s);
    long long id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : rc == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(s);
    return id;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_firewatch DB N DUE [PID [TIMEOUT_S]]\n");
        return 2;
    }
    long long n = atoll(argv[2]);
    double due_ms = atoll(argv[3]) * 1e3;
    long pid = argc > 4 ? atol(argv[4]) : 0;
    double timeout_ms = (argc > 5 ? atof(argv[5]) : 3600) * 1e3;
    sqlite3 *db;
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_firewatch: %s: %s\n", argv[1], sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_busy_timeout(db, 5);
    long long min_id = -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT MIN(id) FROM instances", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        min_id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (min_id < 0) {
        fprintf(stderr, "bench_firewatch: no instances in %s\n", argv[1]);
        return 1;
    }
    double first = -1, median = -1, last = -1;
    long long fired = 0;
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (;;) {
        double t = now_ms();
        long long left = first_left(db);
        if (left >= 0) {
            fired = left == 0 ? n : left - min_id;
            if (fired > 0 && first < 0)
                first = t - due_ms;
            if (fired * 2 >= n && median < 0)
                median = t - due_ms;
            if (fired >= n) {
                last = t - due_ms;
                break;
            }
        }
        if (t - due_ms > timeout_ms)
            break;
        nanosleep(&tick, NULL);
    }
    double rss = pid ? peak_rss_mb(pid) : -1;
    printf("fired=%lld first_ms=%.1f median_ms=%.1f last_ms=%.1f fire_s=%.3f rss_mb=%.1f\n", fired, first, median,
           last, last / 1e3, rss);
    sqlite3_close(db);
    return fired >= n ? 0 : 1;
}
