/* timeline — see timeline.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "customer.h"
#include "history.h"
#include "timeline.h"
#include "util.h"

/* Every source is read up to this many rows past the page, so a page cut
 * inside one second still holds that second whole. */
#define SLACK 50

static void add_text(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
}

static void add_time(cJSON *o, const char *k, store_stmt *s, int col)
{
    if (store_col_type(s, col) != STORE_NULL)
        cJSON_AddNumberToObject(o, k, (double)store_col_int(s, col));
}

static cJSON *entry(cJSON *list, const char *kind, tend_time at)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "at", (double)at);
    cJSON_AddStringToObject(e, "kind", kind);
    cJSON_AddItemToArray(list, e);
    return e;
}

static void events_part(engine *e, const char *customer, tend_time before, int n, cJSON *list)
{
    store_stmt *s = store_sql(e->st, "SELECT seq, id, type, at, body FROM events WHERE customer = ? AND at < ?"
                                     " ORDER BY seq DESC LIMIT ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, before);
    store_bind_int(s, 3, n);
    while (store_step(s) == STORE_ROW) {
        cJSON *x = entry(list, "event", store_col_int(s, 3));
        cJSON_AddNumberToObject(x, "seq", (double)store_col_int(s, 0));
        add_text(x, "id", store_col_text(s, 1));
        add_text(x, "type", store_col_text(s, 2));
        cJSON *body = cJSON_Parse(store_col_text(s, 4));
        if (body)
            cJSON_AddItemToObject(x, "event", body);
    }
}

/* The recorded steps of instance id: {at, step (kind), what, result}; its
 * sealed chunks first, then the row's recent lines (history.h). */
static cJSON *steps_of(engine *e, int64_t id, const char *history)
{
    strbuf text;
    strbuf_init(&text);
    if (history && !history_is_json(history)) {
        store_stmt *c = store_sql(e->st, "SELECT lines FROM history_chunks WHERE instance = ? ORDER BY seq");
        store_bind_int(c, 1, id);
        while (store_step(c) == STORE_ROW)
            strbuf_add(&text, store_col_text(c, 0), (size_t)store_col_bytes(c, 0));
    }
    if (history)
        strbuf_puts(&text, history);
    cJSON *h = history_to_json(text.s, text.len), *out = cJSON_CreateArray(), *st;
    cJSON_ArrayForEach(st, h) {
        cJSON *x = cJSON_CreateObject();
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "t"));
        if (t)
            cJSON_AddNumberToObject(x, "at", (double)strtoll(t, NULL, 10));
        add_text(x, "step", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "k")));
        add_text(x, "what", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "a")));
        cJSON *r = cJSON_GetObjectItemCaseSensitive(st, "r");
        if (r)
            cJSON_AddItemToObject(x, "result", cJSON_Duplicate(r, 1));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "p")))
            cJSON_AddTrueToObject(x, "pending");
        cJSON_AddItemToArray(out, x);
    }
    cJSON_Delete(h);
    strbuf_free(&text);
    return out;
}

static void instances_part(engine *e, const char *customer, tend_time before, int n, cJSON *list)
{
    store_stmt *s = store_sql(e->st, "SELECT id, journey, state, label, started_at, ended_at, error, history,"
                                     " converted_at, branch, holdout, conversion_value FROM instances"
                                     " WHERE customer = ? AND started_at < ? ORDER BY id DESC LIMIT ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, before);
    store_bind_int(s, 3, n);
    while (store_step(s) == STORE_ROW) {
        cJSON *x = entry(list, "instance", store_col_int(s, 4));
        cJSON_AddNumberToObject(x, "id", (double)store_col_int(s, 0));
        add_text(x, "journey", store_col_text(s, 1));
        add_text(x, "state", store_col_text(s, 2));
        add_text(x, "waiting_at", !strcmp(store_col_text(s, 2), "waiting") ? store_col_text(s, 3) : NULL);
        add_time(x, "ended_at", s, 5);
        add_text(x, "error", store_col_text(s, 6));
        add_time(x, "converted_at", s, 8);
        add_text(x, "branch", store_col_text(s, 9));
        if (store_col_type(s, 10) != STORE_NULL)
            cJSON_AddBoolToObject(x, "holdout", store_col_int(s, 10) == 1);
        if (store_col_type(s, 11) != STORE_NULL)
            cJSON_AddNumberToObject(x, "conversion_value", store_col_double(s, 11));
        cJSON_AddItemToObject(x, "steps", steps_of(e, store_col_int(s, 0), store_col_text(s, 7)));
    }
}

static void messages_part(engine *e, const char *customer, tend_time before, int n, cJSON *list)
{
    store_stmt *s = store_sql(e->st, "SELECT id, journey, channel, template, category, status, created_at, due_at,"
                                     " sent_at, delivered_at, opened_at, clicked_at, replied_at, failed_at,"
                                     " unsubscribed_at, last_error, receipt_reason, cost, attempts, body"
                                     " FROM outbox WHERE customer = ? AND created_at < ? ORDER BY id DESC LIMIT ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, before);
    store_bind_int(s, 3, n);
    static const char *const times[] = {"queued_at", "due_at", "sent_at", "delivered_at", "opened_at",
                                        "clicked_at", "replied_at", "failed_at", "unsubscribed_at"};
    while (store_step(s) == STORE_ROW) {
        cJSON *x = entry(list, "message", store_col_int(s, 6));
        cJSON_AddNumberToObject(x, "id", (double)store_col_int(s, 0));
        add_text(x, "journey", store_col_text(s, 1));
        add_text(x, "channel", store_col_text(s, 2));
        add_text(x, "template", store_col_text(s, 3));
        add_text(x, "category", store_col_text(s, 4));
        add_text(x, "status", store_col_text(s, 5));
        for (int i = 0; i < 9; i++)
            add_time(x, times[i], s, 6 + i);
        add_text(x, "error", store_col_text(s, 15));
        add_text(x, "receipt_reason", store_col_text(s, 16));
        cJSON_AddNumberToObject(x, "cost", store_col_double(s, 17));
        cJSON_AddNumberToObject(x, "attempts", (double)store_col_int(s, 18));
        cJSON *body = cJSON_Parse(store_col_text(s, 19));
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "text"));
        add_text(x, "text", text);
        cJSON_Delete(body);
    }
}

static void coupons_part(engine *e, const char *customer, tend_time before, int n, cJSON *list)
{
    store_stmt *s = store_sql(e->st, "SELECT code, journey, value, issued_at, starts_at, expires_at, min_spend,"
                                     " redeemed_at, order_id FROM coupons WHERE customer = ? AND issued_at < ?"
                                     " ORDER BY issued_at DESC LIMIT ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, before);
    store_bind_int(s, 3, n);
    while (store_step(s) == STORE_ROW) {
        cJSON *x = entry(list, "coupon", store_col_int(s, 3));
        add_text(x, "code", store_col_text(s, 0));
        add_text(x, "journey", store_col_text(s, 1));
        cJSON_AddNumberToObject(x, "value", store_col_double(s, 2));
        add_time(x, "starts_at", s, 4);
        add_time(x, "expires_at", s, 5);
        cJSON_AddNumberToObject(x, "min_spend", store_col_double(s, 6));
        add_time(x, "redeemed_at", s, 7);
        add_text(x, "order", store_col_text(s, 8));
    }
    s = store_sql(e->st, "SELECT code, order_id, at, reason FROM coupon_refusals WHERE customer = ? AND at < ?"
                         " ORDER BY at DESC LIMIT ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, before);
    store_bind_int(s, 3, n);
    while (store_step(s) == STORE_ROW) {
        cJSON *x = entry(list, "coupon_refused", store_col_int(s, 2));
        add_text(x, "code", store_col_text(s, 0));
        add_text(x, "order", store_col_text(s, 1));
        add_text(x, "reason", store_col_text(s, 3));
    }
}

static void tasks_part(engine *e, const char *customer, tend_time before, int n, cJSON *list)
{
    store_stmt *s = store_sql(e->st, "SELECT id, journey, kind, assignee, note, status, outcome, created_at, due_at,"
                                     " done_at FROM tasks WHERE customer = ? AND created_at < ? ORDER BY id DESC LIMIT ?");
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, before);
    store_bind_int(s, 3, n);
    while (store_step(s) == STORE_ROW) {
        cJSON *x = entry(list, "task", store_col_int(s, 7));
        cJSON_AddNumberToObject(x, "id", (double)store_col_int(s, 0));
        add_text(x, "journey", store_col_text(s, 1));
        add_text(x, "task_kind", store_col_text(s, 2));
        add_text(x, "assignee", store_col_text(s, 3));
        add_text(x, "note", store_col_text(s, 4));
        add_text(x, "status", store_col_text(s, 5));
        add_text(x, "outcome", store_col_text(s, 6));
        add_time(x, "due_at", s, 8);
        add_time(x, "done_at", s, 9);
    }
}

static int newest_first(const void *a, const void *b)
{
    double x = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)a, "at"));
    double y = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)b, "at"));
    return x < y ? 1 : x > y ? -1 : 0;
}

cJSON *timeline_customer(engine *e, const char *customer, tend_time before, int limit)
{
    cJSON *c = customer_json(e, customer);
    if (!c)
        return NULL;
    cJSON_Delete(c);
    if (before <= 0)
        before = INT64_MAX;
    cJSON *all = cJSON_CreateArray();
    int n = limit + SLACK;
    events_part(e, customer, before, n, all);
    instances_part(e, customer, before, n, all);
    messages_part(e, customer, before, n, all);
    coupons_part(e, customer, before, n, all);
    tasks_part(e, customer, before, n, all);
    /* sort, keep the page (and the rest of its last second) */
    int total = cJSON_GetArraySize(all);
    cJSON **items = xmalloc((size_t)(total ? total : 1) * sizeof *items);
    int i = 0;
    cJSON *x;
    cJSON_ArrayForEach(x, all)
        items[i++] = x;
    qsort(items, (size_t)total, sizeof *items, newest_first);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "customer", customer);
    char *tz = customer_timezone(e, customer);
    cJSON_AddStringToObject(r, "timezone", tz);
    free(tz);
    cJSON *entries = cJSON_AddArrayToObject(r, "entries");
    int kept = 0;
    double cut = 0;
    for (i = 0; i < total; i++) {
        double at = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(items[i], "at"));
        if (kept >= limit && at != cut)
            break;
        cut = at;
        cJSON_AddItemReferenceToArray(entries, items[i]);
        kept++;
    }
    /* references point into `all`: copy them out before it goes */
    cJSON *owned = cJSON_Duplicate(entries, 1);
    cJSON_ReplaceItemInObjectCaseSensitive(r, "entries", owned);
    if (i < total)
        cJSON_AddNumberToObject(r, "next", cut);
    else
        cJSON_AddNullToObject(r, "next");
    free(items);
    cJSON_Delete(all);
    return r;
}

static const char *text_of(const cJSON *o, const char *k)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    return v ? v : "";
}

void timeline_print(const cJSON *t, FILE *out)
{
    const cJSON *x;
    const char *tz = text_of(t, "timezone");
    fprintf(out, "customer %s, newest first (times in %s)\n", text_of(t, "customer"), *tz ? tz : "UTC");
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(t, "entries")) {
        char when[40];
        clock_format((tend_time)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "at")), tz, when, sizeof when);
        const char *kind = text_of(x, "kind");
        fprintf(out, "%s  %-8s ", when, !strcmp(kind, "coupon_refused") ? "coupon" : kind);
        if (!strcmp(kind, "event")) {
            fprintf(out, "%s", text_of(x, "type"));
            if (*text_of(x, "id"))
                fprintf(out, " (id %s)", text_of(x, "id"));
        } else if (!strcmp(kind, "instance")) {
            fprintf(out, "%s #%.0f %s", text_of(x, "journey"), cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "id")),
                    text_of(x, "state"));
            if (*text_of(x, "waiting_at"))
                fprintf(out, " at %s", text_of(x, "waiting_at"));
            if (*text_of(x, "error"))
                fprintf(out, ": %s", text_of(x, "error"));
            const cJSON *st;
            cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(x, "steps")) {
                char sw[40] = "";
                const cJSON *at = cJSON_GetObjectItemCaseSensitive(st, "at");
                if (at)
                    clock_format((tend_time)at->valuedouble, tz, sw, sizeof sw);
                char *res = cJSON_GetObjectItemCaseSensitive(st, "result")
                                ? cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(st, "result")) : NULL;
                fprintf(out, "\n    %-20s %s %s%s%s", sw, text_of(st, "step"), text_of(st, "what"), res ? " -> " : "",
                        res ? res : "");
                free(res);
            }
        } else if (!strcmp(kind, "message")) {
            fprintf(out, "%s %s via %s: %s", text_of(x, "journey"), text_of(x, "template"), text_of(x, "channel"),
                    text_of(x, "status"));
            static const char *const r[] = {"delivered_at", "opened_at", "clicked_at", "replied_at", "failed_at",
                                            "unsubscribed_at", NULL};
            for (const char *const *k = r; *k; k++)
                if (cJSON_GetObjectItemCaseSensitive(x, *k))
                    fprintf(out, ", %.*s", (int)(strlen(*k) - 3), *k);
            if (*text_of(x, "error"))
                fprintf(out, " (%s)", text_of(x, "error"));
        } else if (!strcmp(kind, "coupon")) {
            fprintf(out, "%s issued by %s, value %g%s", text_of(x, "code"), text_of(x, "journey"),
                    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "value")),
                    cJSON_GetObjectItemCaseSensitive(x, "redeemed_at") ? ", redeemed" : "");
        } else if (!strcmp(kind, "coupon_refused")) {
            fprintf(out, "%s refused on order %s: %s", text_of(x, "code"), text_of(x, "order"), text_of(x, "reason"));
        } else if (!strcmp(kind, "task")) {
            fprintf(out, "%s #%.0f for %s: %s", text_of(x, "task_kind")[0] ? text_of(x, "task_kind") : "task",
                    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "id")),
                    text_of(x, "assignee")[0] ? text_of(x, "assignee") : "(nobody)", text_of(x, "status"));
            if (*text_of(x, "outcome"))
                fprintf(out, ", %s", text_of(x, "outcome"));
        }
        fputc('\n', out);
    }
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(t, "next");
    if (cJSON_IsNumber(next))
        fprintf(out, "(more: --before %.0f)\n", next->valuedouble);
}
