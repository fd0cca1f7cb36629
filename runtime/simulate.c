/* simulate — `tend simulate` (see simulate.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "importer.h"
#include "json.h"
#include "simulate.h"
#include "status.h"
#include "util.h"

static void quiet(void *ud, const char *level, const char *msg)
{
    FILE *out = ud;
    if (strcmp(level, "error") == 0)
        fprintf(out, "  %s: %s\n", level, msg);
}

static void report_reject(void *ud, long line, const char *reason)
{
    fprintf(stderr, "%s:%ld: %s\n", (const char *)ud, line, reason);
}

struct timed {
    tend_time at;
    cJSON *ev;
};

static int by_time(const void *a, const void *b)
{
    const struct timed *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* Events are fed at their own times, so journeys see them as they would
 * have happened; those dated before the start arrive at the start. */
static int feed_events(engine *e, const char *path, tend_time start, tend_time end, long *fed)
{
    size_t len;
    char *data = util_read_file(path, &len);
    if (!data) {
        fprintf(stderr, "tend simulate: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct timed *list = NULL;
    size_t n = 0, cap = 0;
    long line = 0;
    for (char *p = data, *stop = data + len; p < stop;) {
        char *nl = memchr(p, '\n', (size_t)(stop - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(stop - p);
        line++;
        char err[300];
        cJSON *ev = k ? json_parse(p, k, err, sizeof err) : NULL;
        p += k + (nl ? 1 : 0);
        if (!k)
            continue;
        if (!ev || event_check(e, ev, err, sizeof err) != 0) {
            fprintf(stderr, "%s:%ld: %s\n", path, line, err);
            cJSON_Delete(ev);
            continue;
        }
        tend_time at = start;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(ev, "at");
        if (cJSON_IsNumber(a))
            at = (tend_time)a->valuedouble;
        else if (cJSON_IsString(a))
            clock_parse_time(a->valuestring, &at, err, sizeof err);
        if (at < start)
            at = start;
        if (n == cap)
            list = xrealloc(list, (cap = cap ? cap * 2 : 1024) * sizeof *list);
        list[n].at = at;
        list[n++].ev = ev;
    }
    free(data);
    qsort(list, n, sizeof *list, by_time);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && list[i].at <= end) {
            if (list[i].at > engine_now(e))
                rc = engine_advance(e, list[i].at - engine_now(e));
            struct event_result res;
            char err[300];
            if (rc == 0 && event_accept(e, list[i].ev, &res, err, sizeof err) == 0)
                (*fed)++;
            if (rc == 0 && engine_run_due(e, engine_now(e)) < 0)
                rc = -1;
        }
        cJSON_Delete(list[i].ev);
    }
    free(list);
    return rc;
}

static void print_report(engine *e, FILE *out, int days)
{
    fprintf(out, "\nforecast for %d days\n\n", days);
    fprintf(out, "%-22s %-22s %-10s %-11s %8s %9s %10s\n", "journey", "template", "channel", "status",
            "messages", "segments", "cost");
    store_stmt *s = store_sql(e->st, "SELECT COALESCE(journey, '-'), COALESCE(template, '-'), channel, status,"
                                     " COUNT(*), SUM(segments), SUM(CASE WHEN status = 'sent' THEN cost ELSE 0 END)"
                                     " FROM outbox GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4");
    double total = 0;
    int64_t sent = 0;
    while (store_step(s) == STORE_ROW) {
        fprintf(out, "%-22s %-22s %-10s %-11s %8lld %9lld %10.2f\n", store_col_text(s, 0), store_col_text(s, 1),
                store_col_text(s, 2), store_col_text(s, 3), (long long)store_col_int(s, 4),
                (long long)store_col_int(s, 5), store_col_double(s, 6));
        total += store_col_double(s, 6);
        if (!strcmp(store_col_text(s, 3), "sent"))
            sent += store_col_int(s, 4);
    }
    fprintf(out, "\n%lld messages sent, cost %.2f\n", (long long)sent, total);
    /* per journey: entered, converted, and each experiment group's lift */
    cJSON *report = status_report(e);
    const cJSON *j;
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(report, "journeys")) {
        fprintf(out, "journey %s: %.0f entered\n", cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring,
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "started")));
        status_print_outcomes(j, out);
    }
    cJSON_Delete(report);
    int64_t tasks = store_count(e->st, "SELECT COUNT(*) FROM tasks");
    if (tasks > 0)
        fprintf(out, "%lld staff tasks\n", (long long)tasks);
}

int simulate_run(const struct simulate_options *o, FILE *out)
{
    tend_time start = (tend_time)time(NULL);
    char err[300];
    if (o->start && clock_parse_time(o->start, &start, err, sizeof err) != 0) {
        fprintf(stderr, "tend simulate: --start: %s\n", err);
        return 2;
    }
    if (o->days <= 0 || o->days > 3660) {
        fprintf(stderr, "tend simulate: --days must be between 1 and 3660\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    char *db = xasprintf("%s/tend-simulate-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(db);
    if (fd < 0) {
        fprintf(stderr, "tend simulate: cannot create a temporary store\n");
        free(db);
        return 1;
    }
    close(fd);
    tclock *clk = clock_new_virtual(start);
    struct engine_options eo = {.dir = o->dir, .db_path = db, .clock = clk, .capture = 1, .throwaway = 1, .log = quiet,
                                .log_ud = out};
    char *msg = NULL;
    engine *e = engine_open(&eo, &msg);
    int rc = 1;
    long fed = 0;
    if (!e) {
        fprintf(stderr, "tend simulate: %s\n", msg ? msg : "cannot open");
        free(msg);
        goto done;
    }
    char *errors = NULL;
    if (engine_load_dir(e, &errors) != 0) {
        fprintf(stderr, "%stend simulate: the scripts do not load\n", errors ? errors : "");
        free(errors);
        goto done;
    }
    if (o->customers) {
        struct import_report rep = {0};
        if (importer_run(e, o->customers, report_reject, (void *)o->customers, &rep, err, sizeof err) != 0) {
            fprintf(stderr, "tend simulate: %s\n", err);
            goto done;
        }
        fprintf(out, "customers: %lld (%lld rejected)\n", (long long)(rep.imported + rep.updated),
                (long long)rep.rejected);
    }
    tend_time end = start + (tend_time)o->days * TEND_DAY;
    if (o->events && feed_events(e, o->events, start, end, &fed) != 0)
        goto done;
    if (o->events)
        fprintf(out, "events: %ld fed\n", fed);
    if (engine_advance(e, end - engine_now(e)) != 0)
        goto done;
    print_report(e, out, o->days);
    rc = 0;
done:
    engine_close(e);
    clock_free(clk);
    store_remove(db);
    free(db);
    return rc;
}
