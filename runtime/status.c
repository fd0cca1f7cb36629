/* status — the report of `tend status` and GET /v1/journeys (see status.h).
 *
 * Each part is one GROUP BY over its table: a full scan, which is fine for
 * an operator's question and would be wrong on the hot path (nothing here
 * runs there). */
#include <stdio.h>
#include <string.h>

#include "lift.h"
#include "task.h"
#include "status.h"

/* The journey object of `name` in the report, created on first use. */
static cJSON *journey_obj(cJSON *journeys, const char *name)
{
    cJSON *j;
    cJSON_ArrayForEach(j, journeys) {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring, name) == 0)
            return j;
    }
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddNumberToObject(j, "started", 0);
    cJSON_AddObjectToObject(j, "instances");
    cJSON_AddObjectToObject(j, "steps");
    cJSON_AddNumberToObject(j, "conversions", 0);
    cJSON_AddObjectToObject(j, "holdout");
    cJSON_AddObjectToObject(j, "sends");
    cJSON_AddNumberToObject(j, "cost", 0);
    cJSON_AddItemToArray(journeys, j);
    return j;
}

static void add_to(cJSON *obj, const char *key, double n)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v)
        cJSON_SetNumberValue(v, v->valuedouble + n);
    else
        cJSON_AddNumberToObject(obj, key, n);
}

static int instances_part(engine *e, cJSON *journeys)
{
    store_stmt *s = store_sql(e->st, "SELECT journey, state, COUNT(*), SUM(converted_at IS NOT NULL),"
                                     " SUM(holdout = 1), SUM(holdout = 1 AND converted_at IS NOT NULL)"
                                     " FROM instances GROUP BY journey, state ORDER BY journey");
    int rc;
    while ((rc = store_step(s)) == STORE_ROW) {
        cJSON *j = journey_obj(journeys, store_col_text(s, 0));
        add_to(cJSON_GetObjectItemCaseSensitive(j, "instances"), store_col_text(s, 1),
               (double)store_col_int(s, 2));
        add_to(j, "started", (double)store_col_int(s, 2));
        add_to(j, "conversions", (double)store_col_int(s, 3));
        cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "holdout");
        add_to(h, "instances", (double)store_col_int(s, 4));
        add_to(h, "conversions", (double)store_col_int(s, 5));
    }
    if (rc == STORE_ERROR)
        return -1;
    s = store_sql(e->st, "SELECT journey, label, COUNT(*) FROM instances WHERE state = 'waiting'"
                         " GROUP BY journey, label ORDER BY journey, COUNT(*) DESC");
    while ((rc = store_step(s)) == STORE_ROW) {
        cJSON *j = journey_obj(journeys, store_col_text(s, 0));
        const char *label = store_col_text(s, 1);
        add_to(cJSON_GetObjectItemCaseSensitive(j, "steps"), label ? label : "starting",
               (double)store_col_int(s, 2));
    }
    return rc == STORE_ERROR ? -1 : 0;
}

static int sends_part(engine *e, cJSON *journeys, cJSON *outbox, cJSON *channels)
{
    store_stmt *s = store_sql(e->st, "SELECT COALESCE(journey, ''), channel, status, COUNT(*),"
                                     " SUM(CASE WHEN status = 'sent' THEN cost ELSE 0 END),"
                                     " SUM(CASE WHEN status = 'sent' THEN segments ELSE 0 END)"
                                     " FROM outbox GROUP BY journey, channel, status");
    int rc;
    while ((rc = store_step(s)) == STORE_ROW) {
        const char *journey = store_col_text(s, 0), *channel = store_col_text(s, 1);
        const char *status = store_col_text(s, 2);
        double n = (double)store_col_int(s, 3), cost = store_col_double(s, 4);
        if (journey[0]) {
            cJSON *j = journey_obj(journeys, journey);
            add_to(cJSON_GetObjectItemCaseSensitive(j, "sends"), status, n);
            add_to(j, "cost", cost);
        }
        add_to(outbox, status, n);
        cJSON *c = cJSON_GetObjectItemCaseSensitive(channels, channel);
        if (!c)
            c = cJSON_AddObjectToObject(channels, channel);
        add_to(c, status, n);
        add_to(c, "cost", cost);
        add_to(c, "segments", (double)store_col_int(s, 5));
    }
    return rc == STORE_ERROR ? -1 : 0;
}

/* One group of a journey's instances: everyone, the treatment or the
 * holdout (control) group of holdout(), or one arm of split{}. */
static cJSON *group_obj(cJSON *parent, const char *key)
{
    cJSON *g = cJSON_GetObjectItemCaseSensitive(parent, key);
    if (!g) {
        g = cJSON_AddObjectToObject(parent, key);
        cJSON_AddNumberToObject(g, "entered", 0);
        cJSON_AddNumberToObject(g, "converted", 0);
        cJSON_AddNumberToObject(g, "revenue", 0);
        cJSON_AddNumberToObject(g, "cost", 0);
    }
    return g;
}

static double num(const cJSON *o, const char *k)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The groups an instance row counts in: all, treatment|holdout, the arm. */
static void count_in_groups(cJSON *j, const char *branch, int holdout, double entered, double converted,
                            double revenue, double cost)
{
    cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "experiment");
    cJSON *groups[3] = {group_obj(ex, "all"), NULL, NULL};
    if (holdout >= 0)
        groups[1] = group_obj(ex, holdout ? "holdout" : "treatment");
    if (branch[0])
        groups[2] = group_obj(cJSON_GetObjectItemCaseSensitive(ex, "arms") ? cJSON_GetObjectItemCaseSensitive(ex, "arms")
                                                                             : cJSON_AddObjectToObject(ex, "arms"),
                              branch);
    for (int i = 0; i < 3; i++) {
        if (!groups[i])
            continue;
        add_to(groups[i], "entered", entered);
        add_to(groups[i], "converted", converted);
        add_to(groups[i], "revenue", revenue);
        add_to(groups[i], "cost", cost);
    }
}

/* Rates, revenue per entrant, and the lift of `g` against the holdout. */
static void finish_group(cJSON *g, const cJSON *holdout, int has_goal)
{
    double n = num(g, "entered"), x = num(g, "converted");
    if (!has_goal) {   /* no goal: nothing converts, so no conversion figures */
        cJSON_DeleteItemFromObjectCaseSensitive(g, "converted");
        cJSON_DeleteItemFromObjectCaseSensitive(g, "revenue");
        return;
    }
    if (n > 0) {
        cJSON_AddNumberToObject(g, "rate", x / n);
        cJSON_AddNumberToObject(g, "revenue_per_entrant", num(g, "revenue") / n);
    }
    double diff;
    struct lift_interval ci;
    if (holdout && g != holdout &&
        lift_newcombe((long long)x, (long long)n, (long long)num(holdout, "converted"),
                      (long long)num(holdout, "entered"), LIFT_Z95, &diff, &ci) == 0) {
        cJSON *l = cJSON_AddObjectToObject(g, "lift");
        cJSON_AddNumberToObject(l, "difference", diff);
        cJSON_AddNumberToObject(l, "low", ci.low);
        cJSON_AddNumberToObject(l, "high", ci.high);
        cJSON_AddNumberToObject(l, "confidence", 0.95);
    }
}

static int experiments_part(engine *e, cJSON *journeys)
{
    store_stmt *s = store_sql(e->st, "SELECT journey, COALESCE(branch, ''), COALESCE(holdout, -1), COUNT(*),"
                                     " SUM(converted_at IS NOT NULL), SUM(COALESCE(conversion_value, 0)),"
                                     " MAX(goal IS NOT NULL) FROM instances GROUP BY 1, 2, 3");
    int rc;
    while ((rc = store_step(s)) == STORE_ROW) {
        cJSON *j = journey_obj(journeys, store_col_text(s, 0));
        if (!cJSON_GetObjectItemCaseSensitive(j, "experiment"))
            cJSON_AddObjectToObject(j, "experiment");
        if (store_col_int(s, 6))
            if (!cJSON_GetObjectItemCaseSensitive(j, "has_goal"))
                cJSON_AddTrueToObject(j, "has_goal");
        count_in_groups(j, store_col_text(s, 1), (int)store_col_int(s, 2), (double)store_col_int(s, 3),
                        (double)store_col_int(s, 4), store_col_double(s, 5), 0);
    }
    if (rc == STORE_ERROR)
        return -1;
    /* the cost of the messages each group's instances sent */
    s = store_sql(e->st, "SELECT i.journey, COALESCE(i.branch, ''), COALESCE(i.holdout, -1), SUM(o.cost)"
                         " FROM outbox o JOIN instances i ON i.id = o.instance WHERE o.status = 'sent'"
                         " GROUP BY 1, 2, 3");
    while ((rc = store_step(s)) == STORE_ROW) {
        cJSON *j = journey_obj(journeys, store_col_text(s, 0));
        if (!cJSON_GetObjectItemCaseSensitive(j, "experiment"))
            cJSON_AddObjectToObject(j, "experiment");
        count_in_groups(j, store_col_text(s, 1), (int)store_col_int(s, 2), 0, 0, 0, store_col_double(s, 3));
    }
    if (rc == STORE_ERROR)
        return -1;
    s = store_sql(e->st, "SELECT journey, COUNT(*), SUM(redeemed_at IS NOT NULL) FROM coupons"
                         " WHERE journey IS NOT NULL GROUP BY journey");
    while ((rc = store_step(s)) == STORE_ROW) {
        cJSON *j = journey_obj(journeys, store_col_text(s, 0));
        cJSON *c = cJSON_AddObjectToObject(j, "coupons");
        double issued = (double)store_col_int(s, 1), redeemed = (double)store_col_int(s, 2);
        cJSON_AddNumberToObject(c, "issued", issued);
        cJSON_AddNumberToObject(c, "redeemed", redeemed);
        cJSON_AddNumberToObject(c, "redemption_rate", issued > 0 ? redeemed / issued : 0);
    }
    if (rc == STORE_ERROR)
        return -1;
    cJSON *j;
    cJSON_ArrayForEach(j, journeys) {
        cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "experiment");
        if (!ex)
            continue;
        int has_goal = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "has_goal"));
        const cJSON *holdout = cJSON_GetObjectItemCaseSensitive(ex, "holdout");
        finish_group(cJSON_GetObjectItemCaseSensitive(ex, "all"), NULL, has_goal);
        if (cJSON_GetObjectItemCaseSensitive(ex, "treatment"))
            finish_group(cJSON_GetObjectItemCaseSensitive(ex, "treatment"), holdout, has_goal);
        if (holdout)
            finish_group((cJSON *)holdout, NULL, has_goal);
        cJSON *arm;
        cJSON_ArrayForEach(arm, cJSON_GetObjectItemCaseSensitive(ex, "arms"))
            finish_group(arm, holdout, has_goal);
        if (!has_goal) {
            cJSON_DeleteItemFromObjectCaseSensitive(j, "conversions");
            cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "holdout"), "conversions");
        }
    }
    return 0;
}

cJSON *status_report(engine *e)
{
    cJSON *r = cJSON_CreateObject();
    cJSON *journeys = cJSON_AddArrayToObject(r, "journeys");
    cJSON *outbox = cJSON_AddObjectToObject(r, "outbox");
    cJSON *channels = cJSON_AddObjectToObject(r, "channels");
    if (instances_part(e, journeys) != 0 || sends_part(e, journeys, outbox, channels) != 0 ||
        experiments_part(e, journeys) != 0) {
        cJSON_Delete(r);
        return NULL;
    }
    cJSON *j;
    cJSON_ArrayForEach(j, journeys) {
        double conv = num(j, "conversions");
        double cost = num(j, "cost");
        if (conv > 0)
            cJSON_AddNumberToObject(j, "cost_per_conversion", cost / conv);
    }
    int64_t cursor = 0;
    store_meta_get_int(e->st, "events_cursor", &cursor);
    cJSON *ev = cJSON_AddObjectToObject(r, "events");
    cJSON_AddNumberToObject(ev, "total", (double)store_count(e->st, "SELECT COUNT(*) FROM events"));
    store_stmt *s = store_sql(e->st, "SELECT COUNT(*) FROM events WHERE seq > ?");
    store_bind_int(s, 1, cursor);
    if (store_step(s) == STORE_ROW) {
        cJSON_AddNumberToObject(ev, "pending", (double)store_col_int(s, 0));
        store_reset(s);
    }
    cJSON_AddNumberToObject(r, "customers", (double)store_count(e->st, "SELECT COUNT(*) FROM customers"));
    cJSON_AddNumberToObject(r, "open_tasks",
                            (double)store_count(e->st, "SELECT COUNT(*) FROM tasks WHERE status = 'open'"));
    cJSON_AddItemToObject(r, "tasks", task_summary(e));
    return r;
}

cJSON *status_journey(engine *e, const char *name)
{
    cJSON *r = status_report(e);
    if (!r)
        return NULL;
    cJSON *j, *found = NULL;
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(r, "journeys"))
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring, name))
            found = j;
    if (found)
        cJSON_DetachItemViaPointer(cJSON_GetObjectItemCaseSensitive(r, "journeys"), found);
    cJSON_Delete(r);
    return found ? found : cJSON_CreateNull();
}

/* "treatment 120 of 1000 (12.0%), revenue 1,234.00 (1.23 per entrant)" */
static void print_group(FILE *out, const char *label, const cJSON *g)
{
    fprintf(out, "    %-12s entered %.0f", label, num(g, "entered"));
    if (cJSON_GetObjectItemCaseSensitive(g, "converted"))
        fprintf(out, ", converted %.0f (%.1f%%), revenue %.2f (%.2f per entrant)", num(g, "converted"),
                100 * num(g, "rate"), num(g, "revenue"), num(g, "revenue_per_entrant"));
    fprintf(out, ", cost %.2f", num(g, "cost"));
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(g, "lift");
    if (l)
        fprintf(out, "; lift %+.1f points (95%% CI %+.1f to %+.1f)", 100 * num(l, "difference"), 100 * num(l, "low"),
                100 * num(l, "high"));
    fputc('\n', out);
}

static void print_counts(FILE *out, const cJSON *obj)
{
    const cJSON *c;
    int first = 1;
    cJSON_ArrayForEach(c, obj) {
        fprintf(out, "%s%.0f %s", first ? "" : ", ", c->valuedouble, c->string);
        first = 0;
    }
    if (first)
        fputs("none", out);
}

void status_print_outcomes(const cJSON *j, FILE *out)
{
    double started = num(j, "started");
    if (cJSON_GetObjectItemCaseSensitive(j, "conversions")) {
        double conv = num(j, "conversions");
        fprintf(out, "  conversions: %.0f of %.0f (%.1f%%)", conv, started, started ? 100 * conv / started : 0.0);
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "holdout");
        const cJSON *hi = cJSON_GetObjectItemCaseSensitive(h, "instances");
        if (hi && hi->valuedouble > 0)
            fprintf(out, "; holdout %.0f of %.0f", num(h, "conversions"), hi->valuedouble);
        fputc('\n', out);
    }
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "experiment");
    const cJSON *arms = cJSON_GetObjectItemCaseSensitive(ex, "arms"), *arm;
    if (cJSON_GetObjectItemCaseSensitive(ex, "holdout") || cJSON_GetArraySize(arms)) {
        fputs("  groups:\n", out);
        static const char *const fixed[] = {"all", "treatment", "holdout"};
        for (int i = 0; i < 3; i++)
            if (cJSON_GetObjectItemCaseSensitive(ex, fixed[i]))
                print_group(out, fixed[i], cJSON_GetObjectItemCaseSensitive(ex, fixed[i]));
        cJSON_ArrayForEach(arm, arms) {
            char label[80];
            snprintf(label, sizeof label, "arm %s", arm->string);
            print_group(out, label, arm);
        }
    }
    const cJSON *cp = cJSON_GetObjectItemCaseSensitive(j, "coupons");
    if (cp)
        fprintf(out, "  coupons: %.0f issued, %.0f redeemed (%.1f%%)\n", num(cp, "issued"), num(cp, "redeemed"),
                100 * num(cp, "redemption_rate"));
}

void status_print(const cJSON *r, FILE *out)
{
    const cJSON *j;
    const cJSON *journeys = cJSON_GetObjectItemCaseSensitive(r, "journeys");
    if (cJSON_GetArraySize(journeys) == 0)
        fputs("no journey has had an instance yet\n", out);
    cJSON_ArrayForEach(j, journeys) {
        fprintf(out, "journey %s\n  instances: ", cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring);
        print_counts(out, cJSON_GetObjectItemCaseSensitive(j, "instances"));
        fputc('\n', out);
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(j, "steps"), *st;
        if (cJSON_GetArraySize(steps)) {
            fputs("  waiting at:\n", out);
            cJSON_ArrayForEach(st, steps) fprintf(out, "    %8.0f  %s\n", st->valuedouble, st->string);
        }
        status_print_outcomes(j, out);
        fputs("  sends: ", out);
        print_counts(out, cJSON_GetObjectItemCaseSensitive(j, "sends"));
        fprintf(out, "; cost %.2f", cJSON_GetObjectItemCaseSensitive(j, "cost")->valuedouble);
        const cJSON *cpc = cJSON_GetObjectItemCaseSensitive(j, "cost_per_conversion");
        if (cpc)
            fprintf(out, " (%.2f per conversion)", cpc->valuedouble);
        fputc('\n', out);
    }
    fputs("outbox: ", out);
    print_counts(out, cJSON_GetObjectItemCaseSensitive(r, "outbox"));
    fputc('\n', out);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(r, "channels")) {
        const cJSON *sent = cJSON_GetObjectItemCaseSensitive(c, "sent");
        fprintf(out, "channel %s: %.0f sent, %.0f segments, cost %.2f\n", c->string,
                sent ? sent->valuedouble : 0.0, cJSON_GetObjectItemCaseSensitive(c, "segments")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(c, "cost")->valuedouble);
    }
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(r, "events");
    fprintf(out, "events: %.0f stored, %.0f waiting to be processed\n",
            cJSON_GetObjectItemCaseSensitive(ev, "total")->valuedouble,
            cJSON_GetObjectItemCaseSensitive(ev, "pending") ? cJSON_GetObjectItemCaseSensitive(ev, "pending")->valuedouble : 0.0);
    fprintf(out, "customers: %.0f; open tasks: %.0f\n", cJSON_GetObjectItemCaseSensitive(r, "customers")->valuedouble,
            cJSON_GetObjectItemCaseSensitive(r, "open_tasks")->valuedouble);
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "tasks"), "assignees")) {
        const cJSON *who = cJSON_GetObjectItemCaseSensitive(a, "assignee");
        const cJSON *med = cJSON_GetObjectItemCaseSensitive(a, "median_seconds_to_close");
        fprintf(out, "tasks of %s: %.0f open, %.0f done, %.0f overdue", cJSON_IsString(who) ? who->valuestring : "(nobody)",
                num(a, "open"), num(a, "done"), num(a, "overdue"));
        if (cJSON_IsNumber(med))
            fprintf(out, ", median %.1f h to close", med->valuedouble / 3600);
        fputc('\n', out);
    }
}
