/* outbox — rendering, policy and the outbox rows (see outbox.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "channel.h"
#include "customer.h"
#include "json.h"
#include "metrics.h"
#include "outbox.h"
#include "policy.h"
#include "receipt.h"
#include "template.h"
#include "util.h"

/* The template's text for one channel: a string, or {subject, body, html},
 * compiled at load (the programs are the catalog's, borrowed). */
struct message_text {
    const template_prog *text, *subject, *html;
    int marketing;
    int priority, has_priority;
    int defer_on_cap, has_on_cap;
};

static void message_text_free(struct message_text *m)
{
    (void)m;    /* nothing owned: kept so every exit path reads the same */
}

static int read_template(engine *e, const char *name, const char *channel, struct message_text *m,
                         char *err, size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    memset(m, 0, sizeof *m);
    int top = lua_gettop(L);
    if (!catalog_push_template(e, name)) {
        lua_settop(L, top);
        snprintf(err, errlen, "unknown template '%s'", name);
        return -1;
    }
    int t = lua_gettop(L);
    lua_getfield(L, t, "category");
    m->marketing = strcmp(lua_tostring(L, -1), "marketing") == 0;
    if (lua_getfield(L, t, "priority") != LUA_TNIL) {
        m->priority = (int)lua_tointeger(L, -1);
        m->has_priority = 1;
    }
    if (lua_getfield(L, t, "on_cap") != LUA_TNIL) {
        m->defer_on_cap = strcmp(lua_tostring(L, -1), "defer") == 0;
        m->has_on_cap = 1;
    }
    m->text = catalog_template_part(L, t, channel, "text");
    m->subject = catalog_template_part(L, t, channel, "subject");
    m->html = catalog_template_part(L, t, channel, "html");
    lua_settop(L, top);
    if (!m->text) {
        snprintf(err, errlen, "template '%s' has no text for channel '%s'", name, channel);
        message_text_free(m);
        return -1;
    }
    return 0;
}

/* Variables a template sees: the customer's fields, then the send's vars
 * over them ({{name}} is the customer's unless vars say otherwise). */
static cJSON *template_vars_for(engine *e, const char *customer, const cJSON *vars)
{
    cJSON *all = customer_json(e, customer);
    if (!all)
        all = cJSON_CreateObject();
    const cJSON *v;
    cJSON_ArrayForEach(v, vars) {
        cJSON_DeleteItemFromObjectCaseSensitive(all, v->string);
        cJSON_AddItemToObject(all, v->string, cJSON_Duplicate(v, 1));
    }
    return all;
}

static int insert_row(engine *e, const struct send_request *r, const struct message_text *m,
                      const char *body, const char *status, tend_time due_at, const char *error,
                      int segments, double cost, int priority, int64_t *id)
{
    char key[64];
    snprintf(key, sizeof key, "%lld-%d", (long long)r->instance, r->step);
    store_stmt *s = store_sql(e->st,
        "INSERT INTO outbox (instance, step, journey, customer, channel, template, category, priority,"
        " body, status, due_at, created_at, last_error, segments, cost, idem_key, due_key, attempt_of)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?11,?17)");
    store_bind_int(s, 1, r->instance);
    store_bind_int(s, 2, r->step);
    store_bind_text(s, 3, r->journey, -1);
    store_bind_text(s, 4, r->customer, -1);
    store_bind_text(s, 5, r->channel, -1);
    store_bind_text(s, 6, r->template_name, -1);
    store_bind_text(s, 7, m->marketing ? "marketing" : "transactional", -1);
    store_bind_int(s, 8, priority);
    store_bind_text(s, 9, body, -1);
    store_bind_text(s, 10, status, -1);
    store_bind_int(s, 11, due_at);
    store_bind_int(s, 12, engine_now(e));
    store_bind_text(s, 13, error, -1);
    store_bind_int(s, 14, segments);
    store_bind_double(s, 15, cost);
    store_bind_text(s, 16, key, -1);
    if (r->attempt_of)
        store_bind_int(s, 17, r->attempt_of);
    if (store_run(s) != 0)
        return -1;
    *id = store_last_rowid(e->st);
    if (strcmp(status, "queued") != 0 && strcmp(status, "deferred") != 0)
        return 0;
    s = store_sql(e->st, "INSERT INTO outbox_due (due_at, id) VALUES (?, ?)");
    store_bind_int(s, 1, due_at);
    store_bind_int(s, 2, *id);
    return store_run(s);
}

int outbox_send(engine *e, const struct send_request *r, struct send_result *out,
                char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct message_text m;
    if (read_template(e, r->template_name, r->channel, &m, err, errlen) != 0)
        return -1;
    int priority = m.has_priority ? m.priority : r->priority;
    int defer = m.has_on_cap ? m.defer_on_cap : r->defer_on_cap;
    cJSON *vars = template_vars_for(e, r->customer, r->vars);
    char rerr[256] = "";
    const cJSON *tz = cJSON_GetObjectItemCaseSensitive(vars, "timezone");
    struct template_env env = {
        .tz = cJSON_IsString(tz) && tz->valuestring[0] ? tz->valuestring : e->cfg.timezone,
        .currency = e->cfg.currency, .now = engine_now(e)};
    /* All parts or none: a message is never sent half-rendered. */
    char *text = template_run(m.text, vars, &env, rerr, sizeof rerr);
    char *subject = text && m.subject ? template_run(m.subject, vars, &env, rerr, sizeof rerr) : NULL;
    char *html = text && m.html && (!m.subject || subject) ? template_run(m.html, vars, &env, rerr, sizeof rerr)
                                                           : NULL;
    cJSON_Delete(vars);
    tend_time now = engine_now(e);
    const char *status;
    tend_time due = now;
    const char *why = NULL;
    struct policy_verdict v;
    if (!text || (m.subject && !subject) || (m.html && !html)) {
        status = "failed";
        snprintf(out->error, sizeof out->error, "template '%.60s': %.180s", r->template_name, rerr);
        why = out->error;
        free(text);
        free(subject);
        free(html);
        text = subject = html = NULL;
    } else {
        if (policy_check(e, r->customer, r->channel, m.marketing, priority, defer, now, &v) != 0) {
            free(text);
            free(subject);
            free(html);
            message_text_free(&m);
            snprintf(err, errlen, "store: %s", store_errmsg(e->st));
            return -1;
        }
        status = v.status;
        due = v.due_at;
        /* a fallback attempt: the message's caps were counted by its first */
        if (r->attempt_of && !strcmp(status, "capped")) {
            status = "queued";
            v.reason[0] = 0;
            char *tz = customer_timezone(e, r->customer);
            due = m.marketing ? policy_quiet_end(e, tz, now) : now;
            free(tz);
            if (due > now)
                status = "deferred";
        }
        if (v.reason[0])
            why = v.reason;
    }
    cJSON *body = cJSON_CreateObject();
    if (subject)
        cJSON_AddStringToObject(body, "subject", subject);
    cJSON_AddStringToObject(body, "text", text ? text : "");
    if (html)
        cJSON_AddStringToObject(body, "html", html);
    char *body_text = json_print(body);
    cJSON_Delete(body);
    int segments = 0;
    double cost = 0;
    if (text)
        channel_cost(e, r->channel, text, &segments, &cost);
    int64_t id = 0;
    int rc = insert_row(e, r, &m, body_text, status, due, why, segments, cost, priority, &id);
    free(body_text);
    free(text);
    free(subject);
    free(html);
    message_text_free(&m);
    if (rc != 0) {
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
        return -1;
    }
    metrics_add(e->metrics, M_SENDS, (const char *const[]){r->channel, status}, 1);
    snprintf(out->status, sizeof out->status, "%s", status);
    out->id = id;
    out->due_at = due;
    return 0;
}

tend_time outbox_next_due(engine *e)
{
    store_stmt *s = store_sql(e->st, "SELECT due_at FROM outbox_due ORDER BY due_at LIMIT 1");
    int rc = store_step(s);
    if (rc != STORE_ROW)
        return -1;
    tend_time t = store_col_int(s, 0);
    store_reset(s);
    return t;
}

/* outbox.due_key mirrors the row's key in outbox_due, so leaving the queue
 * is two primary-key lookups rather than a scan of the queue. */
static int leave_due(engine *e, int64_t id)
{
    store_stmt *s = store_sql(e->st, "DELETE FROM outbox_due WHERE due_at ="
                                     " (SELECT due_key FROM outbox WHERE id = ?1) AND id = ?1");
    store_bind_int(s, 1, id);
    return store_run(s);
}

int outbox_mark_sent(engine *e, int64_t id, tend_time at, const char *response)
{
    return outbox_mark_sent_many(e, &id, &response, NULL, 1, at);
}

int outbox_mark_dead(engine *e, int64_t id, tend_time at, const char *error, const char *response)
{
    store_stmt *s = store_sql(e->st, "UPDATE outbox SET status = 'dead', sent_at = ?, last_error = ?,"
                                     " response = ? WHERE id = ?");
    store_bind_int(s, 1, at);
    store_bind_text(s, 2, error, -1);
    store_bind_text(s, 3, response, -1);
    store_bind_int(s, 4, id);
    if (store_run(s) != 0 || receipt_dead(e, id, at, error) != 0)
        return -1;
    return leave_due(e, id);
}

int outbox_mark_retry(engine *e, int64_t id, tend_time due_at, const char *error)
{
    if (leave_due(e, id) != 0)
        return -1;
    store_stmt *s = store_sql(e->st, "UPDATE outbox SET status = 'queued', due_at = ?1, due_key = ?1,"
                                     " last_error = ?2 WHERE id = ?3");
    store_bind_int(s, 1, due_at);
    store_bind_text(s, 2, error, -1);
    store_bind_int(s, 3, id);
    if (store_run(s) != 0)
        return -1;
    s = store_sql(e->st, "INSERT INTO outbox_due (due_at, id) VALUES (?, ?) ON CONFLICT DO NOTHING");
    store_bind_int(s, 1, due_at);
    store_bind_int(s, 2, id);
    return store_run(s);
}

int outbox_mark(engine *e, int64_t id, const char *status, const char *error)
{
    store_stmt *s = store_sql(e->st, "UPDATE outbox SET status = ?, last_error = ? WHERE id = ?");
    store_bind_text(s, 1, status, -1);
    store_bind_text(s, 2, error, -1);
    store_bind_int(s, 3, id);
    if (store_run(s) != 0)
        return -1;
    return leave_due(e, id);
}

/* A statement over up to OUTBOX_BATCH rows: head, then items "?n" (width
 * 1) or "(?n,?n+1)" (width 2), n = first + 2i, then tail. ?1 is the
 * statement's one scalar. It is written in a few sizes (1, 4, 16, 64
 * items), each once, so the store's statement cache keeps four; a chunk
 * takes the smallest that holds it and its unused items stay NULL, which
 * match nothing. */
#define BATCH_SIZES 4
static const int batch_sizes[BATCH_SIZES] = {1, 4, 16, OUTBOX_BATCH};

struct batch_stmt {
    const char *head;
    int first, width;           /* width 0: items "(?n)", rows of a VALUES */
    const char *tail;
    char *text[BATCH_SIZES];
};

static const char *batch_sql(struct batch_stmt *b, int size_index)
{
    if (b->text[size_index])
        return b->text[size_index];
    strbuf t;
    strbuf_init(&t);
    strbuf_puts(&t, b->head);
    for (int i = 0; i < batch_sizes[size_index]; i++) {
        int n = b->first + 2 * i;
        if (b->width == 1)
            strbuf_printf(&t, "%s?%d", i ? "," : "", n);
        else if (b->width == 0)
            strbuf_printf(&t, "%s(?%d)", i ? "," : "", n);
        else
            strbuf_printf(&t, "%s(?%d,?%d)", i ? "," : "", n, n + 1);
    }
    strbuf_puts(&t, b->tail);
    return b->text[size_index] = strbuf_take(&t);   /* kept for the process's life */
}

/* Runs a batch statement over n rows, OUTBOX_BATCH at most at a time: ?1 is
 * `scalar`, item i binds at2[i] to ?(2+2i) and at3[i] or text3[i] to
 * ?(3+2i) (each array may be NULL: not bound). *changed (may be NULL) is
 * set to the rows the statements changed. */
static int run_batch(engine *e, struct batch_stmt *b, int64_t scalar, int n, const int64_t *at2,
                     const int64_t *at3, const char *const *text3, int *changed)
{
    if (changed)
        *changed = 0;
    for (int from = 0; from < n; from += OUTBOX_BATCH) {
        int k = n - from < OUTBOX_BATCH ? n - from : OUTBOX_BATCH, size = 0;
        while (batch_sizes[size] < k)
            size++;
        store_stmt *s = store_sql(e->st, batch_sql(b, size));
        if (!s)
            return -1;
        store_bind_int(s, 1, scalar);
        for (int i = 0; i < k; i++) {
            if (at2)
                store_bind_int(s, 2 + 2 * i, at2[from + i]);
            if (at3)
                store_bind_int(s, 3 + 2 * i, at3[from + i]);
            else if (text3)
                store_bind_text(s, 3 + 2 * i, text3[from + i], -1);
        }
        if (store_run(s) != 0)
            return -1;
        if (changed)
            *changed += store_changes(e->st);
    }
    return 0;
}

/* k rows moved from status `from` to `to` in outbox_counts: the share of
 * the counting the trigger leaves to the claim and the sent mark (schema.c,
 * migration deliv5_counts), one statement for a batch. */
static int counts_move(engine *e, const char *from, const char *to, int k)
{
    if (k == 0)
        return 0;
    store_stmt *s = store_sql(e->st, "INSERT INTO outbox_counts (status, n) VALUES (?1, -?3), (?2, ?3)"
                                     " ON CONFLICT (status) DO UPDATE SET n = n + excluded.n");
    if (!s)
        return -1;
    store_bind_text(s, 1, from, -1);
    store_bind_text(s, 2, to, -1);
    store_bind_int(s, 3, k);
    return store_run(s);
}

/* A status move of a batch of rows: `counted` writes those in status
 * `from` (nearly always all of them), which the trigger leaves to
 * counts_move; `rest`, run only when some row was not, writes the others,
 * counted by the trigger, and passes over the rows `counted` wrote (or
 * writes them again the same). */
struct counted_move {
    const char *from, *to;
    struct batch_stmt counted, rest;
};

static int run_counted(engine *e, struct counted_move *m, int64_t scalar, int n, const int64_t *at2,
                       const int64_t *at3, const char *const *text3)
{
    int k;
    if (run_batch(e, &m->counted, scalar, n, at2, at3, text3, &k) != 0 || counts_move(e, m->from, m->to, k) != 0)
        return -1;
    return k == n ? 0 : run_batch(e, &m->rest, scalar, n, at2, at3, text3, NULL);
}

/* Runs a statement over one range of ids: ?1 is `scalar`, ?2 and ?3 the
 * range's ends; *changed (may be NULL) is set to the rows it changed. */
static int run_range(engine *e, const char *sql, int64_t scalar, int64_t lo, int64_t hi, int *changed)
{
    store_stmt *s = store_sql(e->st, sql);
    if (!s)
        return -1;
    store_bind_int(s, 1, scalar);
    store_bind_int(s, 2, lo);
    store_bind_int(s, 3, hi);
    if (store_run(s) != 0)
        return -1;
    if (changed)
        *changed = store_changes(e->st);
    return 0;
}

/* A sent row's queue entry at its claim's lease, in the order
 * leave_due_leased deletes them. */
struct leased {
    tend_time lease;
    int64_t id;
};

static int by_lease_id(const void *a, const void *b)
{
    const struct leased *x = a, *y = b;
    if (x->lease != y->lease)
        return x->lease < y->lease ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The entries of one lease, ids sorted: a run of consecutive ids (rows
 * queued one after another and claimed together) leaves in one range
 * DELETE of the key, as nothing else of the lease lies between them; the
 * ids outside such runs leave in one DELETE of their keys (due_at =
 * lease, id IN (...), each item written into an ephemeral index first,
 * ~1.7k instructions an item). *left is set to the entries deleted. */
static int leave_lease(engine *e, tend_time lease, const int64_t *ids, int n, int64_t *single, int *left)
{
    static struct batch_stmt leave = {"DELETE FROM outbox_due WHERE due_at = ?1 AND id IN (", 3, 1, ")", {0}};
    int nsingle = 0;
    *left = 0;
    for (int from = 0, to; from < n; from = to) {
        for (to = from + 1; to < n && ids[to] == ids[to - 1] + 1; to++)
            ;
        if (to - from < 2) {
            single[nsingle++] = ids[from];
            continue;
        }
        int k;
        if (run_range(e, "DELETE FROM outbox_due WHERE due_at = ?1 AND id BETWEEN ?2 AND ?3", lease, ids[from],
                      ids[to - 1], &k) != 0)
            return -1;
        *left += k;
    }
    int k = 0;
    if (nsingle && run_batch(e, &leave, lease, nsingle, NULL, single, NULL, &k) != 0)
        return -1;
    *left += k;
    return 0;
}

/* The queue entries of n rows claimed under leases[i], by lease (see
 * leave_lease: the key's own index, no row read); a lease whose entries
 * were not all there, moved by something else since the claim, is done
 * again row by row through due_key (leave_due), which finds each where it
 * is (or nothing, for one that left already). */
static int leave_due_leased(engine *e, const int64_t *ids, const tend_time *leases, int n)
{
    struct leased *by = xmalloc((size_t)n * sizeof *by);
    int64_t *sorted = xmalloc(2 * (size_t)n * sizeof *sorted), *single = sorted + n;
    for (int i = 0; i < n; i++)
        by[i] = (struct leased){leases[i], ids[i]};
    qsort(by, (size_t)n, sizeof *by, by_lease_id);
    for (int i = 0; i < n; i++)
        sorted[i] = by[i].id;
    int rc = 0;
    for (int from = 0, to; rc == 0 && from < n; from = to) {
        for (to = from + 1; to < n && by[to].lease == by[from].lease; to++)
            ;
        int left = 0;
        if (by[from].lease > 0 && leave_lease(e, by[from].lease, sorted + from, to - from, single, &left) != 0)
            rc = -1;
        for (int i = from; rc == 0 && left < to - from && i < to; i++)
            if (leave_due(e, sorted[i]) != 0)
                rc = -1;
    }
    free(by);
    free(sorted);
    return rc;
}

static int mark_sent_ranges(engine *e, const int64_t *ids, const char *const *responses, int n, tend_time at);

int outbox_mark_sent_many(engine *e, const int64_t *ids, const char *const *responses, const tend_time *leases,
                          int n, tend_time at)
{
    /* the queue entries first: by the claims' keys when the caller knows
     * them, else found through due_key, which the UPDATE then clears (the
     * row has left outbox_due); one statement a row (two key lookups and a
     * delete), as a multi-row IN (SELECT ...) first builds a temporary
     * index */
    if (leases) {
        if (leave_due_leased(e, ids, leases, n) != 0)
            return -1;
    } else {
        for (int i = 0; i < n; i++)
            if (leave_due(e, ids[i]) != 0)
                return -1;
    }
    /* the dispatcher's rows are `sending`; a file channel's are queued */
    return mark_sent_ranges(e, ids, responses, n, at);
}

/* A sent row and its response, in id order. */
struct answered {
    int64_t id;
    const char *response;
};

static int by_id(const void *a, const void *b)
{
    const struct answered *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The sent mark of the rows lo..hi (every id between them is one of the
 * batch's), responses[i] for id lo + i: one UPDATE of a range of the
 * table's key, the response picked by the row's place (tend_pick), where
 * `UPDATE ... FROM (VALUES ...)` first writes the list into a temporary
 * table and seeks each row (~4.6k instructions a row more). Counted as
 * run_counted does. */
static int mark_sent_range(engine *e, int64_t lo, int64_t hi, const char *const *responses, tend_time at)
{
    static const char *const sql[2] = {
        "UPDATE outbox SET status = 'sent', sent_at = ?1, response = tend_pick(?4, id - ?2), last_error = NULL,"
        " due_key = NULL WHERE status = 'sending' AND id BETWEEN ?2 AND ?3",
        "UPDATE outbox SET status = 'sent', sent_at = ?1, response = tend_pick(?4, id - ?2), last_error = NULL,"
        " due_key = NULL WHERE id BETWEEN ?2 AND ?3"};
    struct store_texts texts = {responses, (int)(hi - lo + 1)};
    for (int pass = 0; pass < 2; pass++) {
        store_stmt *s = store_sql(e->st, sql[pass]);
        if (!s)
            return -1;
        store_bind_int(s, 1, at);
        store_bind_int(s, 2, lo);
        store_bind_int(s, 3, hi);
        store_bind_texts(s, 4, &texts);
        if (store_run(s) != 0)
            return -1;
        if (pass == 1)
            return 0;
        int k = store_changes(e->st);
        if (counts_move(e, "sending", "sent", k) != 0)
            return -1;
        if (k == texts.n)
            return 0;
    }
    return 0;
}

/* The rows' sent marks: the runs of consecutive ids (a flush's results are
 * nearly all of a few runs: 20,000 messages at concurrency 64 were 147 runs
 * in 109 flushes) by range, the other rows in VALUES batches. */
static int mark_sent_ranges(engine *e, const int64_t *ids, const char *const *responses, int n, tend_time at)
{
    struct answered *by = xmalloc((size_t)n * sizeof *by);
    int64_t *single = xmalloc((size_t)n * sizeof *single);
    const char **texts = xmalloc(2 * (size_t)n * sizeof *texts), **single_texts = texts + n;
    for (int i = 0; i < n; i++)
        by[i] = (struct answered){ids[i], responses[i]};
    qsort(by, (size_t)n, sizeof *by, by_id);
    for (int i = 0; i < n; i++)
        texts[i] = by[i].response;
    int rc = 0, nsingle = 0;
    for (int from = 0, to; rc == 0 && from < n; from = to) {
        for (to = from + 1; to < n && by[to].id == by[to - 1].id + 1; to++)
            ;
        if (to - from < 2) {
            single[nsingle] = by[from].id;
            single_texts[nsingle++] = by[from].response;
        } else {
            rc = mark_sent_range(e, by[from].id, by[to - 1].id, texts + from, at);
        }
    }
    static struct counted_move sent = {"sending", "sent",
        {"UPDATE outbox SET status = 'sent', sent_at = ?1, response = v.column2, last_error = NULL, due_key = NULL"
         " FROM (VALUES ", 2, 2, ") AS v WHERE outbox.id = v.column1 AND outbox.status = 'sending'", {0}},
        {"UPDATE outbox SET status = 'sent', sent_at = ?1, response = v.column2, last_error = NULL, due_key = NULL"
         " FROM (VALUES ", 2, 2, ") AS v WHERE outbox.id = v.column1", {0}}};
    if (rc == 0 && nsingle)
        rc = run_counted(e, &sent, at, nsingle, single, NULL, single_texts);
    free(by);
    free(single);
    free(texts);
    return rc;
}

/* The statement sql over the queue's key range from (due_at[0], ids[0])
 * to (due_at[n-1], ids[n-1]), bound as ?1, ?2 and ?3, ?4; NULL on a store
 * error. */
static store_stmt *key_range(engine *e, const char *sql, const int64_t *ids, const tend_time *due_at, int n)
{
    store_stmt *s = store_sql(e->st, sql);
    if (s) {
        store_bind_int(s, 1, due_at[0]);
        store_bind_int(s, 2, ids[0]);
        store_bind_int(s, 3, due_at[n - 1]);
        store_bind_int(s, 4, ids[n - 1]);
    }
    return s;
}

/* key_range's statement run: 0, or -1 on a store error. */
static int run_key_range(engine *e, const char *sql, const int64_t *ids, const tend_time *due_at, int n)
{
    store_stmt *s = key_range(e, sql, ids, due_at, n);
    return s ? store_run(s) : -1;
}

/* 1 if the n entries (due_at[i], ids[i]) are in increasing key order and
 * are all the entries of outbox_due from the first to the last. */
static int consecutive_entries(engine *e, const int64_t *ids, const tend_time *due_at, int n)
{
    for (int i = 1; i < n; i++)
        if (due_at[i] < due_at[i - 1] || (due_at[i] == due_at[i - 1] && ids[i] <= ids[i - 1]))
            return 0;
    store_stmt *s = key_range(e, "SELECT COUNT(*) FROM outbox_due WHERE (due_at, id) >= (?1, ?2)"
                                 " AND (due_at, id) <= (?3, ?4)", ids, due_at, n);
    if (!s)
        return 0;
    int64_t k = store_step(s) == STORE_ROW ? store_col_int(s, 0) : -1;
    store_reset(s);
    return k == n;
}

/* The claimed rows' queue entries move to the lease. A key change in
 * outbox_due (WITHOUT ROWID) is a delete and an insert; one UPDATE a row
 * cost ~10.6k instructions (callgrind), and a multi-row UPDATE ... FROM
 * (VALUES ...) first materialises the join into a temporary table. The
 * dispatcher's claims of a pass are consecutive entries of the queue (the
 * rows it read in key order, less those it handled otherwise, whose
 * entries are gone or moved past now), so they leave in one range DELETE
 * and come back in one INSERT; entries that are not consecutive (checked:
 * nothing else lies in the range) move one statement a row. */
static int move_to_lease(engine *e, const int64_t *ids, const tend_time *due_at, int n, tend_time lease)
{
    if (n >= 4 && consecutive_entries(e, ids, due_at, n)) {
        if (run_key_range(e, "DELETE FROM outbox_due WHERE (due_at, id) >= (?1, ?2) AND (due_at, id) <= (?3, ?4)",
                          ids, due_at, n) != 0)
            return -1;
        static struct batch_stmt enter = {
            "INSERT INTO outbox_due (due_at, id) SELECT ?1, column1 FROM (VALUES ", 3, 0,
            ") WHERE column1 IS NOT NULL", {0}};
        return run_batch(e, &enter, lease, n, NULL, ids, NULL, NULL);
    }
    for (int i = 0; i < n; i++) {
        store_stmt *s = store_sql(e->st, "UPDATE outbox_due SET due_at = ?1 WHERE due_at = ?2 AND id = ?3");
        if (!s)
            return -1;
        store_bind_int(s, 1, lease);
        store_bind_int(s, 2, due_at[i]);
        store_bind_int(s, 3, ids[i]);
        if (store_run(s) != 0)
            return -1;
    }
    return 0;
}

/* 1 if ids are ids[0], ids[0] + 1, ... ids[0] + n - 1: the rows a bulk
 * send (a broadcast, a due pass of one journey) queued one after another,
 * claimed as they come due. */
static int consecutive_ids(const int64_t *ids, int n)
{
    for (int i = 1; i < n; i++)
        if (ids[i] != ids[0] + i)
            return 0;
    return 1;
}

/* The claim of rows whose ids are one range: `id BETWEEN` is a range of
 * the table's own key, where `id IN (...)` first writes each item into an
 * ephemeral index (~1.7k instructions an item) and seeks each. The same
 * two statements as claim's below, over the range. */
static int claim_range(engine *e, int64_t lo, int64_t hi, int n, tend_time lease)
{
    int k;
    if (run_range(e, "UPDATE outbox SET status = 'sending', attempts = attempts + 1, due_key = ?1"
                     " WHERE status = 'queued' AND id BETWEEN ?2 AND ?3", lease, lo, hi, &k) != 0 ||
        counts_move(e, "queued", "sending", k) != 0)
        return -1;
    return k == n ? 0 : run_range(e, "UPDATE outbox SET status = 'sending', attempts = attempts + 1, due_key = ?1"
                                     " WHERE due_key IS NOT ?1 AND id BETWEEN ?2 AND ?3", lease, lo, hi, NULL);
}

/* move_to_lease for rows whose ids are one range, lo = ids[0] .. ids[n-1]:
 * an entry of the key range whose id is in lo..hi is one of these rows',
 * so the range DELETE filtered by id takes theirs and leaves any other
 * (no COUNT first), and the entries come back from the table's own key
 * over the range (no VALUES list). Entries not in key order move as
 * move_to_lease moves them. */
static int move_range_to_lease(engine *e, const int64_t *ids, const tend_time *due_at, int n, tend_time lease)
{
    for (int i = 1; i < n; i++)
        if (due_at[i] < due_at[i - 1])
            return move_to_lease(e, ids, due_at, n, lease);
    if (run_key_range(e, "DELETE FROM outbox_due WHERE (due_at, id) >= (?1, ?2) AND (due_at, id) <= (?3, ?4)"
                         " AND id BETWEEN ?2 AND ?4", ids, due_at, n) != 0)
        return -1;
    return run_range(e, "INSERT INTO outbox_due (due_at, id) SELECT ?1, id FROM outbox WHERE id BETWEEN ?2 AND ?3",
                     lease, ids[0], ids[n - 1], NULL);
}

int outbox_claim_many(engine *e, const int64_t *ids, const tend_time *due_at, int n, tend_time lease)
{
    if (n >= 4 && consecutive_ids(ids, n)) {
        if (claim_range(e, ids[0], ids[n - 1], n, lease) != 0)
            return -1;
        return move_range_to_lease(e, ids, due_at, n, lease);
    }
    /* queued rows, or deferred ones come due and expired claims; the rest
     * statement knows the rows already claimed by their due_key, the lease */
    static struct counted_move claim = {"queued", "sending",
        {"UPDATE outbox SET status = 'sending', attempts = attempts + 1, due_key = ?1"
         " WHERE status = 'queued' AND id IN (", 3, 1, ")", {0}},
        {"UPDATE outbox SET status = 'sending', attempts = attempts + 1, due_key = ?1"
         " WHERE due_key IS NOT ?1 AND id IN (", 3, 1, ")", {0}}};
    if (run_counted(e, &claim, lease, n, NULL, ids, NULL) != 0)
        return -1;
    return move_to_lease(e, ids, due_at, n, lease);
}
