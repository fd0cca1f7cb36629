/* simulate — `tend simulate` (see simulate.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "importer.h"
#include "json.h"
#include "policy.h"
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

/* events fed in one transaction (see feed_events) */
#define SIMULATE_GROUP 256

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
    /* The year runs in transactions of SIMULATE_GROUP events: each stage's
     * batch is a savepoint in one, where alone it was a COMMIT of its own,
     * and an in-memory COMMIT walks the page cache's hash (its truncation),
     * a cost that grows with the store (15% of the run at 20,000
     * customers). Nobody else reads this store and a failed batch still
     * rolls back its savepoint, so what is stored is the same. */
    int rc = store_begin(e->st);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && i > 0 && i % SIMULATE_GROUP == 0)
            rc = store_commit(e->st) == 0 ? store_begin(e->st) : -1;
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
    if (store_in_batch(e->st) && (rc != 0 ? store_rollback(e->st) : store_commit(e->st)) != 0)
        rc = -1;
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

/* --- contact load, messages, audit -------------------------------------- */

struct load_row {
    char channel[64];
    int64_t day;            /* days since 1970 in the configured zone */
    long messages, deferred_by_cap;
};

/* Every message in id order with what the load, the file and the audit need. */
static const char MESSAGE_SQL[] =
    "SELECT o.customer, COALESCE(o.journey, ''), COALESCE(o.template, ''), o.channel, o.category, o.status,"
    " COALESCE(o.sent_at, o.due_at, o.created_at), o.created_at, COALESCE(o.last_error, ''), c.timezone, o.due_at"
    " FROM outbox o LEFT JOIN customers c ON c.id = o.customer ORDER BY o.id";

static void print_load(engine *e, FILE *out)
{
    struct load_row *rows = NULL;
    int n = 0;
    /* by the time queued, so a day's rows are together at the end of the list */
    store_stmt *s = store_sql(e->st, "SELECT o.channel, o.status, o.created_at, d.message IS NOT NULL FROM outbox o"
                                     " LEFT JOIN cap_deferrals d ON d.message = o.id ORDER BY o.created_at, o.id");
    while (store_step(s) == STORE_ROW) {
        struct clock_local l;
        if (clock_to_local(store_col_int(s, 2), e->cfg.timezone, &l) != 0)
            continue;
        int64_t day = clock_days_from_civil(l.year, l.month, l.day);
        const char *channel = store_col_text(s, 0);
        int i = n - 1;
        while (i >= 0 && rows[i].day == day && strcmp(rows[i].channel, channel) != 0)
            i--;
        if (i < 0 || rows[i].day != day) {
            i = n;
            rows = xrealloc(rows, (size_t)(n + 1) * sizeof *rows);
            memset(&rows[n], 0, sizeof rows[n]);
            snprintf(rows[n].channel, sizeof rows[n].channel, "%s", channel);
            rows[n++].day = day;
        }
        rows[i].messages++;
        if (strcmp(store_col_text(s, 1), "capped") != 0 && store_col_int(s, 3))
            rows[i].deferred_by_cap++;
    }
    fprintf(out, "\ncontact load by channel and day (%s)\n", e->cfg.timezone);
    fprintf(out, "%-12s %-10s %9s %14s\n", "day", "channel", "messages", "cap-deferred");
    int flagged = 0;
    for (int i = 0; i < n; i++) {
        int y, m, d;
        clock_civil_from_days(rows[i].day, &y, &m, &d);
        int flag = rows[i].deferred_by_cap * 10 > rows[i].messages;
        flagged += flag;
        fprintf(out, "%04d-%02d-%02d   %-10s %9ld %14ld%s\n", y, m, d, rows[i].channel, rows[i].messages,
                rows[i].deferred_by_cap, flag ? "  ! caps defer more than 10%" : "");
    }
    if (flagged)
        fprintf(out, "%d day%s where caps defer more than 10%% of the messages\n", flagged, flagged == 1 ? "" : "s");
    free(rows);
}

static int write_messages(engine *e, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tend simulate: --messages %s: %s\n", path, strerror(errno));
        return -1;
    }
    store_stmt *s = store_sql(e->st, MESSAGE_SQL);
    while (store_step(s) == STORE_ROW) {
        const char *tz = store_col_text(s, 9);
        if (!tz || !clock_tz_valid(tz))
            tz = e->cfg.timezone;
        char local[40];
        cJSON *m = cJSON_CreateObject();
        static const char *const keys[] = {"customer", "journey", "template", "channel", "category", "status"};
        for (int i = 0; i < 6; i++)
            cJSON_AddStringToObject(m, keys[i], store_col_text(s, i));
        cJSON_AddNumberToObject(m, "at", (double)store_col_int(s, 6));
        cJSON_AddStringToObject(m, "local", clock_format(store_col_int(s, 6), tz, local, sizeof local));
        char *line = json_print(m);
        fprintf(f, "%s\n", line);
        free(line);
        cJSON_Delete(m);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* The most generous limit of (scope, period) among caps and segment_caps, or -1. */
static int loosest_limit(const struct config *c, const char *scope, enum config_cap_period period)
{
    int best = -1;
    for (int i = 0; i < c->ncaps; i++)
        if (c->caps[i].period == period && period != CAP_ROLLING && strcmp(c->caps[i].scope, scope) == 0 &&
            c->caps[i].limit > best)
            best = c->caps[i].limit;
    return best;
}

/* Sent messages of a scope per customer and local period, over the limit. */
static int64_t audit_caps(engine *e)
{
    const struct config *c = &e->cfg;
    int64_t over = 0;
    for (int i = 0; i < c->ncaps; i++) {
        const struct config_cap *cap = &c->caps[i];
        if (cap->segment || cap->period == CAP_ROLLING)
            continue;
        int limit = loosest_limit(c, cap->scope, cap->period);
        int marketing = strcmp(cap->scope, "marketing") == 0;
        store_stmt *s = store_sql(e->st, "SELECT o.customer, o.sent_at, c.timezone FROM outbox o LEFT JOIN customers c"
                                         " ON c.id = o.customer WHERE o.status = 'sent' AND"
                                         " ((?1 AND o.category = 'marketing') OR (NOT ?1 AND o.channel = ?2"
                                         " AND o.category <> 'transactional')) ORDER BY o.customer, o.sent_at");
        store_bind_int(s, 1, marketing);
        store_bind_text(s, 2, cap->scope, -1);
        char last[256] = "";
        int64_t period = INT64_MIN;
        int count = 0;
        while (store_step(s) == STORE_ROW) {
            const char *tz = store_col_text(s, 2);
            if (!tz || !clock_tz_valid(tz))
                tz = c->timezone;
            struct clock_local l;
            clock_to_local(store_col_int(s, 1), tz, &l);
            int64_t day = clock_days_from_civil(l.year, l.month, l.day);
            int64_t p = cap->period == CAP_DAY ? day : cap->period == CAP_WEEK ? day - (l.wday + 6) % 7
                                                                                : l.year * 12 + l.month;
            if (strcmp(last, store_col_text(s, 0)) != 0 || p != period) {
                snprintf(last, sizeof last, "%s", store_col_text(s, 0));
                period = p;
                count = 0;
            }
            if (++count > limit)
                over++;
        }
    }
    return over;
}

/* Marketing sent inside quiet hours in the customer's zone. */
static int64_t audit_quiet(engine *e)
{
    const struct config *c = &e->cfg;
    if (!c->quiet_enabled)
        return 0;
    int64_t n = 0;
    store_stmt *s = store_sql(e->st, "SELECT o.sent_at, c.timezone FROM outbox o LEFT JOIN customers c"
                                     " ON c.id = o.customer WHERE o.status = 'sent' AND o.category = 'marketing'");
    while (store_step(s) == STORE_ROW) {
        const char *tz = store_col_text(s, 1);
        if (!tz || !clock_tz_valid(tz))
            tz = c->timezone;
        tend_time at = store_col_int(s, 0);
        n += policy_quiet_end(e, tz, at) != at;
    }
    return n;
}

static int audit(engine *e, tend_time end, FILE *out)
{
    int64_t quiet = audit_quiet(e), over = audit_caps(e);
    int64_t opted = store_count(e->st, "SELECT COUNT(*) FROM outbox o JOIN suppressions s ON s.customer = o.customer"
                                       " AND s.channel IN (o.channel, '*') WHERE o.status = 'sent'"
                                       " AND o.category = 'marketing' AND s.at IS NOT NULL AND o.sent_at > s.at");
    store_stmt *s = store_sql(e->st, "SELECT COUNT(*) FROM outbox WHERE status IN ('deferred', 'queued') AND due_at <= ?");
    store_bind_int(s, 1, end);
    int64_t stuck = store_step(s) == STORE_ROW ? store_col_int(s, 0) : -1;
    store_reset(s);
    fprintf(out, "\npolicy audit\n");
    fprintf(out, "  marketing sent in quiet hours      %lld\n", (long long)quiet);
    fprintf(out, "  sends over a cap                   %lld\n", (long long)over);
    fprintf(out, "  marketing sent after an opt-out    %lld\n", (long long)opted);
    fprintf(out, "  deferred, due, never delivered     %lld\n", (long long)stuck);
    int clean = quiet == 0 && over == 0 && opted == 0 && stuck == 0;
    fprintf(out, "  %s\n", clean ? "ok" : "FAILED");
    return clean ? 0 : 1;
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
    tclock *clk = clock_new_virtual(start);
    /* The store lives in memory: nobody keeps it, and a year of a shop's
     * work is many small transactions that a file would pay for in locks
     * and writes (a third of the time at 5,000 customers). About 12 MB a
     * thousand customers. */
    struct engine_options eo = {.dir = o->dir, .db_path = ":memory:", .clock = clk, .capture = 1, .throwaway = 1, .log = quiet,
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
    print_load(e, out);
    if (o->messages && write_messages(e, o->messages) != 0)
        goto done;
    rc = audit(e, end, out);
done:
    engine_close(e);
    clock_free(clk);
    return rc;
}
