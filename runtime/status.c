/* status — the report of `tend status` and GET /v1/journeys (see status.h).
 *
 * Each part is one GROUP BY over its table: a full scan, which is fine for
 * an operator's question and would be wrong on the hot path (nothing here
 * runs there). */
#include <stdio.h>
#include <string.h>

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

cJSON *status_report(engine *e)
{
    cJSON *r = cJSON_CreateObject();
    cJSON *journeys = cJSON_AddArrayToObject(r, "journeys");
    cJSON *outbox = cJSON_AddObjectToObject(r, "outbox");
    cJSON *channels = cJSON_AddObjectToObject(r, "channels");
    if (instances_part(e, journeys) != 0 || sends_part(e, journeys, outbox, channels) != 0) {
        cJSON_Delete(r);
        return NULL;
    }
    cJSON *j;
    cJSON_ArrayForEach(j, journeys) {
        double conv = cJSON_GetObjectItemCaseSensitive(j, "conversions")->valuedouble;
        double cost = cJSON_GetObjectItemCaseSensitive(j, "cost")->valuedouble;
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
    return r;
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
        double started = cJSON_GetObjectItemCaseSensitive(j, "started")->valuedouble;
        double conv = cJSON_GetObjectItemCaseSensitive(j, "conversions")->valuedouble;
        fprintf(out, "  conversions: %.0f of %.0f (%.1f%%)", conv, started, started ? 100 * conv / started : 0.0);
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "holdout");
        const cJSON *hi = cJSON_GetObjectItemCaseSensitive(h, "instances");
        if (hi && hi->valuedouble > 0)
            fprintf(out, "; holdout %.0f of %.0f", cJSON_GetObjectItemCaseSensitive(h, "conversions")->valuedouble,
                    hi->valuedouble);
        fputs("\n  sends: ", out);
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
}
