/* event — accepting, storing and processing events (see event.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "catalog.h"
#include "coupon.h"
#include "customer.h"
#include "dates.h"
#include "event.h"
#include "instance.h"
#include "json.h"
#include "metrics.h"
#include "orderline.h"
#include "policy.h"
#include "segment.h"
#include "util.h"
#include "validate.h"

#define EVENT_TYPE_MAX 100
#define EVENT_ID_MAX 200

/* The parts of an event that live in columns. */
struct event_head {
    const char *type;
    const char *customer;
    const char *id;
    tend_time at;
    char customer_buf[32], id_buf[32];   /* numbers given as ids */
};

static int is_type_char(int c)
{
    return isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
}

/* Ids may arrive as numbers (many shops number everything). An id is one
 * line of text: it is echoed in logs and answers. */
static int read_id(const cJSON *j, char *buf, size_t n, const char **out)
{
    if (cJSON_IsString(j)) {
        *out = j->valuestring;
        return *out[0] && validate_text(*out, strlen(*out), VALIDATE_SINGLE_LINE, NULL, 0) == 0 ? 0 : -1;
    }
    long long v;
    if (json_int(j, &v) == 0) {
        snprintf(buf, n, "%lld", v);
        *out = buf;
        return 0;
    }
    return -1;
}

/* Order events other than refunds carry the lines tend stores. */
static int carries_lines(engine *e, const char *type)
{
    return (strncmp(type, "order.", 6) == 0 || config_lists(type, e->cfg.paid_types)) &&
           !config_lists(type, e->cfg.refund_types);
}

static int validate(engine *e, const cJSON *ev, struct event_head *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    if (!cJSON_IsObject(ev)) {
        snprintf(err, errlen, "an event must be a JSON object");
        return -1;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    if (!type) {
        snprintf(err, errlen, "field 'type' is required");
        return -1;
    }
    if (!cJSON_IsString(type) || !type->valuestring[0] || strlen(type->valuestring) > EVENT_TYPE_MAX) {
        snprintf(err, errlen, "field 'type' must be a non-empty string of at most %d characters",
                 EVENT_TYPE_MAX);
        return -1;
    }
    for (const char *p = type->valuestring; *p; p++) {
        if (!is_type_char((unsigned char)*p)) {
            snprintf(err, errlen, "field 'type': '%s' may use only letters, digits and _ . : -",
                     type->valuestring);
            return -1;
        }
    }
    h->type = type->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(ev, "customer");
    if (c && !cJSON_IsNull(c)) {
        if (read_id(c, h->customer_buf, sizeof h->customer_buf, &h->customer) != 0 ||
            strlen(h->customer) > CUSTOMER_ID_MAX) {
            snprintf(err, errlen, "field 'customer' must be a customer id (one line of 1 to %d characters)",
                     CUSTOMER_ID_MAX);
            return -1;
        }
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
    if (id && !cJSON_IsNull(id)) {
        if (read_id(id, h->id_buf, sizeof h->id_buf, &h->id) != 0 || strlen(h->id) > EVENT_ID_MAX) {
            snprintf(err, errlen, "field 'id' must be one line of 1 to %d characters", EVENT_ID_MAX);
            return -1;
        }
    }
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(ev, "at");
    h->at = engine_now(e);
    if (at && !cJSON_IsNull(at)) {
        char msg[200];
        if (validate_time_json(at, &h->at, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "field 'at': %s", msg);
            return -1;
        }
    }
    /* An order's amount feeds total_spent and the M score: a text there is
     * a sender's bug, better refused than counted as nothing. */
    if (config_lists(h->type, e->cfg.paid_types) || config_lists(h->type, e->cfg.refund_types)) {
        const cJSON *amount = cJSON_GetObjectItemCaseSensitive(ev, e->cfg.amount_field);
        if (amount && !cJSON_IsNull(amount) && (!cJSON_IsNumber(amount) || amount->valuedouble < 0)) {
            snprintf(err, errlen, "field '%s' must be a non-negative number (the amount of %s)",
                     e->cfg.amount_field, h->type);
            return -1;
        }
    }
    /* A bad item rejects the whole event: nothing of an order is half-stored. */
    if (carries_lines(e, h->type)) {
        char why[300];
        if (orderline_check(cJSON_GetObjectItemCaseSensitive(ev, "items"), why, sizeof why) != 0) {
            if (h->id)
                snprintf(err, errlen, "event '%s': %s", h->id, why);
            else
                snprintf(err, errlen, "%s", why);
            return -1;
        }
    }
    if (h->customer && e->cfg.reject_unknown && customer_exists(e, h->customer) != 1) {
        snprintf(err, errlen, "unknown customer '%s' (the settings reject unknown customers)", h->customer);
        return -1;
    }
    return 0;
}

int event_check(engine *e, const cJSON *ev, char *err, size_t errlen)
{
    struct event_head h;
    return validate(e, ev, &h, err, errlen);
}

#define EVENT_COLS 7

/* An event row's values, from parameter base + 1 on, in the column order
 * of store_event's INSERT; bound without copies: every text outlives the
 * statement's run. */
static void bind_event(store_stmt *s, int base, const struct event_head *h, const char *body, int len,
                       tend_time received_at, int chain)
{
    store_bind_text_kept(s, base + 1, h->id, -1);
    store_bind_text_kept(s, base + 2, h->type, -1);
    store_bind_text_kept(s, base + 3, h->customer, -1);
    store_bind_int(s, base + 4, h->at);
    store_bind_text_kept(s, base + 5, body, len);
    store_bind_int(s, base + 6, received_at);
    store_bind_int(s, base + 7, chain);
}

static int store_event(engine *e, const struct event_head *h, const char *body, int len,
                       struct event_result *res)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO events (id, type, customer, at, body, received_at, chain)"
                                     " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING");
    if (!s)
        return -1;
    bind_event(s, 0, h, body, len, engine_now(e), e->chain);
    if (store_run(s) != 0)
        return -1;
    res->duplicate = store_changes(e->st) == 0;
    res->seq = res->duplicate ? 0 : store_last_rowid(e->st);
    return 0;
}

struct accept_call {
    engine *e;
    const struct event_head *h;
    const char *body;
    struct event_result *res;
};

static int accept_in_batch(store *st, void *ud)
{
    (void)st;
    struct accept_call *c = ud;
    return store_event(c->e, c->h, c->body, -1, c->res);
}

int event_accept(engine *e, const cJSON *ev, struct event_result *res, char *err, size_t errlen)
{
    struct event_head h;
    memset(res, 0, sizeof *res);
    if (validate(e, ev, &h, err, errlen) != 0)
        return -1;
    char *body = json_print(ev);
    int rc;
    if (strlen(body) > EVENT_MAX_BYTES) {
        snprintf(err, errlen, "event is larger than 1 MiB");
        rc = -1;
    } else if (store_in_batch(e->st)) {
        rc = store_event(e, &h, body, -1, res);
    } else {
        struct accept_call c = {e, &h, body, res};
        rc = store_batch(e->st, accept_in_batch, &c);
    }
    if (rc != 0 && !err[0])
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
    free(body);
    return rc;
}

/* --- events tend makes itself (receipt.c) -------------------------------- */

int event_accept_made(engine *e, const struct event_made *m, struct event_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    struct event_head h = {.type = m->type, .customer = m->customer, .id = m->id, .at = m->at};
    int rc;
    if (store_in_batch(e->st)) {
        rc = store_event(e, &h, m->body, -1, res);
    } else {
        struct accept_call c = {e, &h, m->body, res};
        rc = store_batch(e->st, accept_in_batch, &c);
    }
    if (rc != 0)
        snprintf(err, errlen, "store: %s", store_errmsg(e->st));
    return rc;
}

/* --- NDJSON ------------------------------------------------------------- */

#define INGEST_COMMIT_EVERY 50000
/* A stream is read in pieces of this size: a whole line always fits (an
 * event is at most EVENT_MAX_BYTES), so memory stays bounded whatever the
 * input's length. */
#define INGEST_BUFFER (4 * EVENT_MAX_BYTES)

/* Accepted lines are stored INGEST_PAGE to a statement (the one INSERT a
 * line cost each its own step, halt and reset). A held line keeps its
 * parsed object until it is written: its head points into it, and its
 * body into the caller's input. */
#define INGEST_PAGE 64

struct held_line {
    cJSON *ev;
    struct event_head h;
    const char *body;
    int len;
    tend_time received_at;
};

/* What carries over from one piece of input to the next: the open
 * transaction and how many lines it holds, the line number; and the page
 * of accepted lines not yet written (none between two calls). */
struct ingest_state {
    engine *e;
    event_reject_fn reject;
    void *ud;
    struct ingest_report *rep;
    long line;
    int in_tx, since_commit;
    int held;                           /* lines in page, not yet written */
    struct held_line page[INGEST_PAGE];
};

static void reject_line(struct ingest_state *g, const char *reason)
{
    g->reject(g->ud, g->line, reason);
    g->rep->rejected++;
    metrics_inc(g->e->metrics, M_EVENTS_REJECTED, NULL);
}

/* The INSERT of `rows` events, rows a power of two up to INGEST_PAGE: the
 * texts are built once for the process (the same for every engine) and
 * kept prepared by the store. ON CONFLICT DO NOTHING skips a row whose id
 * the store holds, or an earlier row of the same statement holds, as one
 * statement a line did. */
static store_stmt *page_stmt(engine *e, int rows)
{
    static char *built[7];   /* [log2(rows)] */
    const char *sql = util_rows_sql(built, rows, "INSERT INTO events (id, type, customer, at, body, received_at, chain)"
                                    " VALUES ", "(?, ?, ?, ?, ?, ?, ?)", " ON CONFLICT DO NOTHING");
    return store_sql_bound(e->st, sql);   /* ingest_write binds every parameter */
}

/* Writes the held lines, a power of two of them to a statement (37: 32 +
 * 4 + 1), and counts them stored or duplicates (by id); the lines are
 * let go either way. 0, or -1 on a store error. */
static int ingest_write(struct ingest_state *g)
{
    engine *e = g->e;
    int rc = 0;
    for (int from = 0, n; rc == 0 && from < g->held; from += n) {
        n = util_rows_chunk(g->held - from, INGEST_PAGE);
        store_stmt *s = page_stmt(e, n);
        rc = s ? 0 : -1;
        for (int i = 0; rc == 0 && i < n; i++) {
            const struct held_line *l = &g->page[from + i];
            bind_event(s, i * EVENT_COLS, &l->h, l->body, l->len, l->received_at, e->chain);
        }
        if (rc == 0)
            rc = store_run(s);
        if (rc == 0) {
            int added = store_changes(e->st);
            g->rep->accepted += added;
            g->rep->duplicates += n - added;
            if (added)
                metrics_add(e->metrics, M_EVENTS_INGESTED, NULL, added);
        }
    }
    for (int i = 0; i < g->held; i++)
        cJSON_Delete(g->page[i].ev);
    g->held = 0;
    return rc;
}

/* The held lines written, else the open transaction rolled back: 0, -1. */
static int ingest_write_or_roll_back(struct ingest_state *g)
{
    if (ingest_write(g) == 0)
        return 0;
    store_rollback(g->e->st);
    g->in_tx = 0;
    return -1;
}

/* Stores every complete line of data[0, len) (the last may lack its
 * newline): its lines are written before it returns, since their bodies
 * point into data. 0, or -1 on a store error (the open transaction
 * rolled back). */
static int ingest_lines(struct ingest_state *g, const char *data, size_t len)
{
    engine *e = g->e;
    size_t pos = 0;
    char err[300];
    while (pos < len) {
        const char *start = data + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        pos += n + (nl ? 1 : 0);
        g->line++;
        while (n && (start[n - 1] == '\r' || start[n - 1] == ' ' || start[n - 1] == '\t'))
            n--;
        size_t skip = 0;
        while (skip < n && (start[skip] == ' ' || start[skip] == '\t'))
            skip++;
        if (skip == n)
            continue;
        start += skip;
        n -= skip;
        err[0] = 0;
        if (n > EVENT_MAX_BYTES) {
            reject_line(g, "event is larger than 1 MiB");
            continue;
        }
        struct held_line *l = &g->page[g->held];
        cJSON *ev = json_parse(start, n, err, sizeof err);
        if (!ev || validate(e, ev, &l->h, err, sizeof err) != 0) {
            reject_line(g, err);
            cJSON_Delete(ev);
            continue;
        }
        if (!g->in_tx) {
            if (store_begin(e->st) != 0) {
                cJSON_Delete(ev);
                return -1;
            }
            g->in_tx = 1;
        }
        /* The line as sent is the body: no re-serialising on the hot path;
         * processing reads type/customer/at/id from the columns. */
        l->ev = ev;   /* l->h, filled by validate, points into it */
        l->body = start;
        l->len = (int)n;
        l->received_at = engine_now(e);
        g->held++;
        if (g->held == INGEST_PAGE && ingest_write_or_roll_back(g) != 0)
            return -1;
        if (++g->since_commit >= INGEST_COMMIT_EVERY) {
            if (ingest_write_or_roll_back(g) != 0)
                return -1;
            g->in_tx = 0;
            g->since_commit = 0;
            if (store_commit(e->st) != 0)
                return -1;
        }
    }
    return ingest_write_or_roll_back(g);
}

static int ingest_finish(struct ingest_state *g, int rc)
{
    if (rc == 0 && g->in_tx) {
        g->in_tx = 0;
        rc = store_commit(g->e->st);
    }
    if (rc != 0)
        engine_logf(g->e, "error", "ingest stopped at line %ld: %s", g->line, store_errmsg(g->e->st));
    return rc;
}

int event_ingest_ndjson(engine *e, const char *data, size_t len, event_reject_fn reject, void *ud,
                        struct ingest_report *rep)
{
    memset(rep, 0, sizeof *rep);
    struct ingest_state g = {.e = e, .reject = reject, .ud = ud, .rep = rep};
    return ingest_finish(&g, ingest_lines(&g, data, len));
}

int event_ingest_stream(engine *e, FILE *in, event_reject_fn reject, void *ud, struct ingest_report *rep)
{
    memset(rep, 0, sizeof *rep);
    struct ingest_state g = {.e = e, .reject = reject, .ud = ud, .rep = rep};
    char *buf = xmalloc(INGEST_BUFFER);
    size_t have = 0;
    int rc = 0, dropping = 0;   /* dropping: inside a line too long to hold */
    for (;;) {
        size_t got = fread(buf + have, 1, INGEST_BUFFER - have, in);
        have += got;
        if (got == 0 && ferror(in)) {
            engine_logf(e, "error", "ingest: reading input after line %ld: %s", g.line, strerror(errno));
            rc = -1;
            break;
        }
        int eof = got == 0;
        char *last_nl = have ? memrchr(buf, '\n', have) : NULL;
        if (dropping) {
            /* the rest of an over-long line, already rejected */
            char *nl = have ? memchr(buf, '\n', have) : NULL;
            size_t cut = nl ? (size_t)(nl - buf) + 1 : have;
            memmove(buf, buf + cut, have - cut);
            have -= cut;
            dropping = !nl && !eof;
            if (eof && have == 0)
                break;
            continue;
        }
        if (!last_nl && !eof && have == INGEST_BUFFER) {
            g.line++;
            reject_line(&g, "event is larger than 1 MiB");
            have = 0;
            dropping = 1;
            continue;
        }
        size_t upto = eof ? have : last_nl ? (size_t)(last_nl - buf) + 1 : 0;
        if (upto && (rc = ingest_lines(&g, buf, upto)) != 0)
            break;
        memmove(buf, buf + upto, have - upto);
        have -= upto;
        if (eof)
            break;
    }
    free(buf);
    return ingest_finish(&g, rc);
}

/* --- processing --------------------------------------------------------- */

/* Every number in j is finite: printing would turn the others into null. */
static int all_finite(const cJSON *j)
{
    for (const cJSON *c = j->child; c; c = c->next) {
        if ((cJSON_IsNumber(c) && !isfinite(c->valuedouble)) || ((c->child) && !all_finite(c)))
            return 0;
    }
    return 1;
}

/* What the printed event object is to the stored body: */
enum body_as {
    BODY_REPRINT,     /* differs: print the object */
    BODY_AS_IS,       /* the same object (keys in another order at most) */
    BODY_PLUS_AT,     /* the same once "at" is appended */
};

/* Whether `ev` (the parsed body) already holds the column values: each of
 * id, type, customer once, as the same string (absent when the column is
 * NULL), and `at` as the same number or absent. items[i] is set to the
 * member named id, type, customer, at (i = 0..3) that the body holds, for
 * the moves of event_object_of. */
static enum body_as body_matches(cJSON *ev, const char *const values[3], tend_time at, cJSON *items[4])
{
    static const char *const names[] = {"id", "type", "customer"};
    int seen[4] = {0};
    for (cJSON *c = ev->child; c; c = c->next) {
        for (int i = 0; i < 3; i++) {
            if (strcmp(c->string, names[i]) == 0) {
                if (seen[i]++ || !values[i] || !cJSON_IsString(c) || strcmp(c->valuestring, values[i]) != 0)
                    return BODY_REPRINT;
                items[i] = c;
            }
        }
        if (strcmp(c->string, "at") == 0) {
            if (seen[3]++ || !cJSON_IsNumber(c) || c->valuedouble != (double)at)
                return BODY_REPRINT;
            items[3] = c;
        }
    }
    for (int i = 0; i < 3; i++)
        if (values[i] && !seen[i])
            return BODY_REPRINT;
    if (!all_finite(ev))
        return BODY_REPRINT;
    return seen[3] ? BODY_AS_IS : BODY_PLUS_AT;
}

/* The event as journeys see it: the stored body with the column values
 * (normalised time, the id, type and customer) written over it. When `as`
 * is given, it says whether the body text is that object already. */
static cJSON *event_object_of(const char *id, const char *type, const char *customer, tend_time at,
                              const char *body, enum body_as *as)
{
    cJSON *ev = body ? cJSON_Parse(body) : NULL;
    if (!cJSON_IsObject(ev)) {
        cJSON_Delete(ev);
        ev = cJSON_CreateObject();
        body = NULL;
    }
    const char *const names[] = {"id", "type", "customer"}, *values[] = {id, type, customer};
    cJSON *items[4] = {NULL};
    enum body_as same = as && body ? body_matches(ev, values, at, items) : BODY_REPRINT;
    if (as)
        *as = same;
    /* The column values go last, in this order. When the body holds each
     * already (body_matches: once, equal, none extra), its own items are
     * moved there (detached and appended, key and value as they are):
     * the same object as deleting and adding them, without making and
     * freeing ten nodes and strings an event. body_matches found them, so
     * they are detached by pointer, not looked up again by name (nor
     * "at" deleted from a body it said holds none). */
    for (int i = 0; i < 3; i++) {
        if (same != BODY_REPRINT && values[i]) {
            cJSON_AddItemToArray(ev, cJSON_DetachItemViaPointer(ev, items[i]));
            continue;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(ev, names[i]);
        if (values[i])
            cJSON_AddStringToObject(ev, names[i], values[i]);
    }
    if (same == BODY_AS_IS) {
        cJSON_AddItemToArray(ev, cJSON_DetachItemViaPointer(ev, items[3]));
    } else {
        if (same != BODY_PLUS_AT)
            cJSON_DeleteItemFromObjectCaseSensitive(ev, "at");
        cJSON_AddNumberToObject(ev, "at", (double)at);
    }
    return ev;
}

/* The text of the event object as instances store it (their trigger): the
 * body itself when it is that object already, which saves printing it; else
 * NULL (the starter prints the object). Malloc'd. */
static char *trigger_text(const char *body, enum body_as as, tend_time at)
{
    if (as == BODY_AS_IS)
        return xstrdup(body);
    if (as != BODY_PLUS_AT)
        return NULL;
    size_t n = strlen(body);
    while (n && isspace((unsigned char)body[n - 1]))
        n--;
    if (!n || body[n - 1] != '}')
        return NULL;
    size_t open = 0;   /* an empty object takes no comma */
    while (open < n && body[open] != '{')
        open++;
    size_t k = n - 1;
    while (k > open + 1 && isspace((unsigned char)body[k - 1]))
        k--;
    char tail[40];   /* ,"at":<at>} without a printf: one a started event */
    int t = k == open + 1 ? 0 : 1;
    tail[0] = ',';
    memcpy(tail + t, "\"at\":", 5);
    t += 5;
    t += (int)util_int_text(tail + t, at);
    tail[t++] = '}';
    tail[t] = '\0';
    char *text = xmalloc(n - 1 + (size_t)t + 1);
    memcpy(text, body, n - 1);
    memcpy(text + n - 1, tail, (size_t)t + 1);
    return text;
}

/* The same from a row whose columns id, type, customer, at, body sit in
 * that order from `first` on. */
static cJSON *event_object(store_stmt *s, int first)
{
    return event_object_of(store_col_text(s, first), store_col_text(s, first + 1), store_col_text(s, first + 2),
                           store_col_int(s, first + 3), store_col_text(s, first + 4), NULL);
}

/* An event being processed, its object parsed when first asked for: an
 * event whose body is its columns alone (head_only) needs none unless
 * something reads its fields. */
struct lazy_event {
    const char *id, *type, *customer, *body;
    tend_time at;
    cJSON *ev;
    int parsed;
};

static const cJSON *lazy_tree(struct lazy_event *l)
{
    if (!l->parsed) {
        l->ev = event_object_of(l->id, l->type, l->customer, l->at, l->body, NULL);
        l->parsed = 1;
    }
    return l->ev;
}

/* 1 when the body is the text {"id":"..","type":"..","customer":".."} of
 * the column values (each present one, in that order, no spaces, none
 * holding a character JSON escapes): then it parses to that object and
 * nothing else, which body_matches would call BODY_PLUS_AT, and the object
 * holds no field an event's processing reads but those and `at`. The text
 * is compared, not parsed: ~0.2k instructions against ~5k (cJSON's parse,
 * the moves of event_object_of and the delete). 0 otherwise. */
static int head_only(const struct lazy_event *l)
{
    static const char *const names[] = {"\"id\":\"", "\"type\":\"", "\"customer\":\""};
    static const size_t lens[] = {6, 8, 12};
    const char *const values[] = {l->id, l->type, l->customer};
    const char *b = l->body;
    if (*b++ != '{')
        return 0;
    for (int i = 0, first = 1; i < 3; i++) {
        if (!values[i])
            continue;
        if (!first && *b++ != ',')
            return 0;
        first = 0;
        if (strncmp(b, names[i], lens[i]) != 0)   /* stops at the body's end */
            return 0;
        b += lens[i];
        for (const unsigned char *v = (const unsigned char *)values[i]; *v; v++, b++)
            if (*v < 0x20 || *v == '"' || *v == '\\' || (unsigned char)*b != *v)
                return 0;
        if (*b++ != '"')
            return 0;
    }
    return b[0] == '}' && b[1] == '\0';
}

/* unsubscribe / resubscribe / block / unblock change what a customer may get. */
static int apply_consent(engine *e, const char *customer, const char *type, tend_time at,
                         const cJSON *ev)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(ev, "channel");
    const char *channel = cJSON_IsString(ch) && ch->valuestring[0] ? ch->valuestring : "*";
    store_stmt *s;
    /* a provider's receipt that the customer unsubscribed (receipt.c) */
    if (strcmp(type, "unsubscribe") == 0 || strcmp(type, "message.unsubscribed") == 0) {
        s = store_sql(e->st, "INSERT INTO suppressions (customer, channel, at, reason) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT DO NOTHING");
        store_bind_text(s, 1, customer, -1);
        store_bind_text(s, 2, channel, -1);
        store_bind_int(s, 3, at);
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(ev, "reason");
        store_bind_text(s, 4, cJSON_IsString(reason) ? reason->valuestring : "unsubscribe", -1);
        return store_run(s);
    }
    if (strcmp(type, "resubscribe") == 0) {
        s = store_sql(e->st, strcmp(channel, "*") == 0
                                 ? "DELETE FROM suppressions WHERE customer = ? AND ? = '*'"
                                 : "DELETE FROM suppressions WHERE customer = ? AND channel = ?");
        store_bind_text(s, 1, customer, -1);
        store_bind_text(s, 2, channel, -1);
        return store_run(s);
    }
    if (strcmp(type, "block") == 0 || strcmp(type, "unblock") == 0)
        return customer_block(e, customer, type[0] == 'b');
    return 0;
}

/* What a provider says of a message (delivered, failed, dead) is no act of
 * the customer's: it leaves last_active_at and the lifecycle alone, and the
 * customer exists already (the message was sent to them). Opened, clicked,
 * replied and unsubscribed are the customer's own doing and count. */
static int delivery_fact(const char *type)
{
    return !strcmp(type, "message.delivered") || !strcmp(type, "message.failed") || !strcmp(type, "message.dead");
}

/* A paid order may carry coupon codes to redeem (coupon.c). */
static int redeem_coupons(engine *e, const char *customer, const char *type, tend_time at, const cJSON *ev)
{
    if (!config_lists(type, e->cfg.paid_types))
        return 0;
    const cJSON *amount = cJSON_GetObjectItemCaseSensitive(ev, e->cfg.amount_field);
    return coupon_redeem_order(e, customer, at, ev, cJSON_IsNumber(amount) ? amount->valuedouble : NAN);
}

/* Starts every current journey triggered by this customer event; `text`
 * is the event printed, or NULL to print it when an instance starts. */
static int trigger_journeys(engine *e, const char *customer, const char *type, struct lazy_event *le,
                            const char *text)
{
    lua_State *L = sandbox_state(e->sb);
    if (!catalog_push_triggered(e, type)) {
        lua_pop(L, 1);
        return 0;
    }
    int list = lua_gettop(L);
    int n = (int)lua_rawlen(L, list), rc = 0;
    for (int i = 1; i <= n && rc == 0; i++) {
        lua_rawgeti(L, list, i);
        const char *name = lua_tostring(L, -1);
        if (catalog_push_current(e, name)) {
            /* a `when` reads the event; without one it is not parsed for
             * the start (text holds it, or it was parsed already) */
            int decl = lua_gettop(L);
            if (!le->parsed) {
                int when = lua_getfield(L, decl, "when") == LUA_TFUNCTION;
                lua_pop(L, 1);
                if (when || !text)
                    lazy_tree(le);
            }
            const cJSON *ev = le->ev;
            if (instance_admits(e, decl, name, customer, ev) == 1) {
                char err[300];
                /* the batch's starter of the journey: its first runs are
                 * written a page at a time (instance.c) */
                struct instance_starter *kept = instance_batch_starter(e, name, ev, text, err, sizeof err);
                if (kept) {
                    rc = instance_starter_start(e, kept, customer, err, sizeof err) < 0 ? -1 : 0;
                    kept->trigger_of = NULL;   /* ev is this event's */
                } else if (err[0]) {
                    rc = -1;
                }
                struct instance_starter st;
                if (!kept && rc == 0)
                    rc = instance_starter_init(e, &st, name, ev, 1, err, sizeof err);
                if (!kept && rc == 0) {
                    if (text)
                        instance_starter_set_trigger_text(&st, text);
                    rc = instance_starter_start(e, &st, customer, err, sizeof err) < 0 ? -1 : 0;
                    if (instance_starter_free(&st) != 0 && rc == 0) {
                        snprintf(err, sizeof err, "store: %s", store_errmsg(e->st));
                        rc = -1;
                    }
                }
                if (rc != 0)
                    engine_logf(e, "error", "journey '%s': %s", name, err);
            }
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return rc;
}

/* A broadcast reaches each journey with an audience through a fan-out row,
 * worked in pages by event_fanout(). */
static int queue_fanouts(engine *e, int64_t seq, const char *type)
{
    lua_State *L = sandbox_state(e->sb);
    if (!catalog_push_triggered(e, type)) {
        lua_pop(L, 1);
        return 0;
    }
    int list = lua_gettop(L), rc = 0;
    for (int i = 1; i <= (int)lua_rawlen(L, list) && rc == 0; i++) {
        lua_rawgeti(L, list, i);
        const char *name = lua_tostring(L, -1);
        if (catalog_push_current(e, name)) {
            if (lua_getfield(L, -1, "audience") == LUA_TNIL) {
                engine_logf(e, "warn", "journey '%s': broadcast '%s' has no customer and the journey "
                            "no audience; skipped", name, type);
            } else {
                store_stmt *s = store_sql(e->st, "INSERT INTO fanouts (event, journey) VALUES (?, ?)"
                                                 " ON CONFLICT DO NOTHING");
                store_bind_int(s, 1, seq);
                store_bind_text(s, 2, name, -1);
                rc = store_run(s);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return rc;
}

/* What a batch knows of the listeners table before its first event: none
 * at all (most stores while journeys only start and wait for time), and
 * how many listener rows this engine had written then. Only this engine
 * writes inside the batch's transaction (instance.c's add_listener counts
 * each write), so while the count is the same the table is still empty
 * and no probe can find a row. */
struct listen_probe {
    int none;
    unsigned writes;
};

static void listen_probe_begin(engine *e, struct listen_probe *lp)
{
    lp->writes = instance_listener_writes(e);
    store_stmt *s = store_sql(e->st, "SELECT EXISTS (SELECT 1 FROM listeners)");
    lp->none = s && store_step(s) == STORE_ROW && store_col_int(s, 0) == 0;
    if (s)
        store_reset(s);
}

/* 1 when an instance of the customer's listens for `type` or its
 * "prefix.*" (as instance_route_event routes), also on a store error (the
 * callers then take the full path, which reports it); 0 when none does. */
static int listened(engine *e, const struct listen_probe *lp, const char *customer, const char *type)
{
    if (lp->none && instance_listener_writes(e) == lp->writes)
        return 0;   /* an empty table: one probe a batch instead of one an event */
    const char *dot = strrchr(type, '.');
    char wildcard[EVENT_TYPE_MAX + 3];
    snprintf(wildcard, sizeof wildcard, "%.*s.*", dot ? (int)(dot - type) : 0, type);
    /* two key probes (an IN list would build a temporary table each time) */
    store_stmt *s = store_sql(e->st, "SELECT EXISTS (SELECT 1 FROM listeners WHERE customer = ?1 AND type = ?2)"
                                     " OR EXISTS (SELECT 1 FROM listeners WHERE customer = ?1 AND type = ?3)");
    if (!s)
        return 1;
    store_bind_text_kept(s, 1, customer, -1);
    store_bind_text_kept(s, 2, type, -1);
    store_bind_text_kept(s, 3, wildcard, -1);
    int heard = store_step(s) != STORE_ROW || store_col_int(s, 0) != 0;
    store_reset(s);
    return heard;
}

/* Stores the event's order lines under its order id: the `order` field,
 * else the event id, else its sequence number. */
static int store_lines(engine *e, orderline_batch *lines, int64_t seq, const char *customer, const char *type,
                       tend_time at, const cJSON *ev)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(ev, "items");
    if (!cJSON_IsArray(items) || !carries_lines(e, type))
        return 0;
    char buf[64];
    const char *order = NULL;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(ev, "order");
    if (read_id(o, buf, sizeof buf, &order) != 0) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
        order = cJSON_IsString(id) ? id->valuestring : NULL;
    }
    if (!order) {
        snprintf(buf, sizeof buf, "#%lld", (long long)seq);
        order = buf;
    }
    /* Accepted events were checked; one stored before items were checked
     * (an older tend) is skipped with a warning rather than stopping the
     * whole backlog on a NULL sku. */
    char why[300];
    if (orderline_check(items, why, sizeof why) != 0) {
        engine_logf(e, "warn", "event %lld: order lines not stored: %s", (long long)seq, why);
        return 0;
    }
    orderline_batch_add(lines, customer, order, at, items);
    return 0;
}

/* A batch's lines wait in memory until its end unless something that runs
 * now may read them: a journey this event starts, a wait or goal of the
 * customer's it may move, a date trigger whose audience it re-plans — any
 * of those may ask c:bought{} or a bought segment, and must see the lines
 * as if each order had been stored when processed. */
#define LINES_HELD_MAX 100000

static int lines_may_be_read(engine *e, int heard, const char *type)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    int yes = catalog_push_triggered(e, type);
    catalog_push_dated(e);
    yes = yes || (lua_istable(L, -1) && lua_rawlen(L, -1) > 0);
    catalog_push_local(e);
    yes = yes || (lua_istable(L, -1) && lua_rawlen(L, -1) > 0);
    lua_settop(L, top);
    return yes || heard;
}

/* heard: listened() of the event's customer and type. */
static int flush_lines_if_read(engine *e, orderline_batch *lines, int heard, const char *type)
{
    int held = orderline_batch_lines(lines);
    if (held == 0 || (held < LINES_HELD_MAX && !lines_may_be_read(e, heard, type)))
        return 0;
    return orderline_batch_flush(lines, e->st) < 0 ? -1 : 0;
}

/* One stored event of a batch, copied out of its row: its texts share one
 * block (one malloc an event, not one a column). */
struct pending {
    int64_t seq;
    char *id, *type, *customer, *body;
    tend_time at;
    int chain;
    char *block;
};

/* A provider's fact about a message (delivered, failed, dead: receipts,
 * most of them) that no instance listens for — as the type or as its
 * "prefix.*" — and no journey starts on changes nothing that needs the
 * event's body (no customer fields, lines, consent or coupons, see
 * process_one), so its body is not parsed and nothing is routed. 1 such,
 * 0 otherwise (also on a store error: the full path then reports it). */
static int unheard_fact(engine *e, const struct listen_probe *lp, const char *customer, const char *type)
{
    const char *dot = strrchr(type, '.');
    if (!delivery_fact(type) || !dot || carries_lines(e, type) || config_lists(type, e->cfg.paid_types))
        return 0;
    lua_State *L = sandbox_state(e->sb);
    int triggered = catalog_push_triggered(e, type);
    lua_pop(L, 1);
    return !triggered && !listened(e, lp, customer, type);
}

/* The event types whose processing reads fields of the event beyond its
 * columns: orders and refunds (the amount, items, coupons), consent. */
static int reads_fields(engine *e, const char *type)
{
    return config_lists(type, e->cfg.paid_types) || config_lists(type, e->cfg.refund_types) ||
           carries_lines(e, type) || !strcmp(type, "unsubscribe") || !strcmp(type, "message.unsubscribed") ||
           !strcmp(type, "resubscribe") || !strcmp(type, "block") || !strcmp(type, "unblock");
}

/* dated: dates_any_planned at the batch's start (no declaration changes
 * inside a batch), so an event of a store without dated or local-time
 * journeys skips dates_customer_changed's two catalog look-ups. */
static int process_one(engine *e, orderline_batch *lines, const struct listen_probe *lp, int dated,
                       const struct pending *p)
{
    int64_t seq = p->seq;
    const char *type = p->type, *customer = p->customer;
    tend_time at = p->at;
    if (customer && unheard_fact(e, lp, customer, type)) {
        int rc = dated ? dates_customer_changed(e, customer) : 0;   /* as the full path does */
        e->stats.events_processed++;
        metrics_inc(e->metrics, M_EVENTS_PROCESSED, NULL);
        return rc;
    }
    /* An event of a customer whose body is its columns alone, of a type
     * that reads no other field, is parsed only if a `when` or a waiting
     * instance reads it (lazy_tree); the consumers below it is not given
     * to find none of the fields they look for either way. */
    struct lazy_event le = {p->id, type, customer, p->body, at, NULL, 0};
    enum body_as as = BODY_PLUS_AT;
    if (!customer || !p->body || reads_fields(e, type) || !head_only(&le)) {
        le.ev = event_object_of(p->id, type, customer, at, p->body, &as);
        le.parsed = 1;
    }
    const cJSON *ev = le.ev;
    e->chain = p->chain;   /* what it starts is one link further */
    int rc = 0;
    if (!customer) {
        rc = queue_fanouts(e, seq, type);
    } else {
        char tz[128];
        /* One probe of the listeners says whether held lines may be read
         * now and whether the event has anyone to route to: when none
         * listened and no listener was written since, routing would find
         * none (two more probes of the same keys). */
        unsigned writes = instance_listener_writes(e);
        int heard = listened(e, lp, customer, type);
        if ((!delivery_fact(type) && (customer_apply_event(e, customer, type, at, ev, tz, sizeof tz) != 0 ||
                                      policy_note_activity_in(e, customer, at, tz) != 0)) ||
            store_lines(e, lines, seq, customer, type, at, ev) != 0 ||
            apply_consent(e, customer, type, at, ev) != 0 || redeem_coupons(e, customer, type, at, ev) != 0 ||
            flush_lines_if_read(e, lines, heard, type) != 0 ||
            (dated && dates_customer_changed(e, customer) != 0) ||
            ((heard || instance_listener_writes(e) != writes) &&
             instance_route_event(e, customer, type, at, lazy_tree(&le)) != 0))
            rc = -1;
        else {
            char *text = trigger_text(p->body, as, at);
            rc = trigger_journeys(e, customer, type, &le, text);
            free(text);
        }
    }
    cJSON_Delete(le.ev);
    e->chain = 0;
    e->stats.events_processed++;
    metrics_inc(e->metrics, M_EVENTS_PROCESSED, NULL);
    return rc;
}

struct process_call {
    engine *e;
    int max, done;
};

/* A batch holds at most this much event text in memory (events are up to
 * 1 MiB each): a batch of large events is cut short, the rest comes next. */
#define PROCESS_BATCH_BYTES (16 << 20)

/* Copies the row's id, type, customer and body (columns 1, 2, 3, 5) into
 * p, in one block; adds their bytes to *bytes. */
static void pending_texts(store_stmt *s, struct pending *p, size_t *bytes)
{
    static const int cols[] = {1, 2, 3, 5};
    char **const out[] = {&p->id, &p->type, &p->customer, &p->body};
    size_t len[4];
    p->block = store_col_texts(s, cols, 4, out, len);
    for (int i = 0; i < 4; i++)
        *bytes += *out[i] ? len[i] + 1 : 0;
}

static int process_batch(store *st, void *ud)
{
    struct process_call *pc = ud;
    engine *e = pc->e;
    int64_t cursor = 0;
    if (store_meta_get_int(st, "events_cursor", &cursor) < 0)
        return -1;
    /* Read the batch first, in one pass: processing writes to many tables
     * (and may emit events), and a statement stepping over events while
     * that happens is asking for trouble. */
    store_stmt *s = store_sql(st, "SELECT seq, id, type, customer, at, body, chain FROM events"
                                  " WHERE seq > ? ORDER BY seq LIMIT ?");
    store_bind_int(s, 1, cursor);
    store_bind_int(s, 2, pc->max);
    /* grown as rows come: a batch of one event (each a simulation feeds)
     * should not pay for an array of EVENT_BATCH */
    struct pending *batch = NULL;
    int n = 0, cap = 0, rc = 0;
    size_t bytes = 0;
    while (bytes < PROCESS_BATCH_BYTES && (rc = store_step(s)) == STORE_ROW) {
        if (n == cap)
            batch = xrealloc(batch, (size_t)(cap = cap ? cap * 2 : 16) * sizeof *batch);
        struct pending *p = &batch[n++];
        p->seq = store_col_int(s, 0);
        pending_texts(s, p, &bytes);
        p->at = store_col_int(s, 4);
        p->chain = (int)store_col_int(s, 6);
    }
    if (rc == STORE_ROW)
        store_reset(s);
    rc = rc == STORE_ERROR ? -1 : 0;
    unsigned trips = sandbox_trips(e->sb);
    orderline_batch *lines = orderline_batch_new();
    instance_batch_begin(e);   /* the batch's starts share a starter per journey */
    /* the batch's activity hours are written together (unless a batch
     * around this one keeps them already) */
    struct activity_batch activity;
    int own_activity = !e->activity;
    if (own_activity)
        policy_activity_begin(e, &activity);
    struct listen_probe probe;
    listen_probe_begin(e, &probe);
    int dated = dates_any_planned(e);
    for (int i = 0; i < n && rc == 0; i++) {
        /* A store error fails the whole batch: nothing of it is kept, the
         * cursor stays, and the next pass retries from the same event. */
        if (process_one(e, lines, &probe, dated, &batch[i]) != 0) {
            rc = -1;
            break;
        }
        cursor = batch[i].seq;
        pc->done++;
        /* A run that tripped a limit cost its whole budget: commit it with
         * the cursor at once, so a crash or restart never runs it again. */
        if (sandbox_trips(e->sb) != trips)
            break;
    }
    /* the lines go in with the events they came with, before the cursor
     * moves and before the batch's instance work ends */
    if (rc == 0 && orderline_batch_flush(lines, st) < 0)
        rc = -1;
    orderline_batch_free(lines);
    if (own_activity && policy_activity_end(e, rc == 0) != 0)
        rc = -1;
    if (instance_batch_end(e) != 0)
        rc = -1;
    for (int i = 0; i < n; i++)
        free(batch[i].block);
    free(batch);
    return rc != 0 ? -1 : store_meta_set_int(st, "events_cursor", cursor);
}

int event_process(engine *e, int max)
{
    /* Nothing past the cursor (two small reads): no transaction to open,
     * no cursor to write again. Every pass asks twice, most find none. */
    if (event_backlog(e) == 0)
        return 0;
    struct process_call pc = {e, max, 0};
    if (store_batch(e->st, process_batch, &pc) != 0) {
        engine_logf(e, "error", "event processing failed: %s", store_errmsg(e->st));
        return -1;
    }
    return pc.done;
}

int64_t event_backlog(engine *e)
{
    int64_t cursor = 0;
    store_meta_get_int(e->st, "events_cursor", &cursor);
    /* Events above the cursor are never deleted (retention takes only
     * processed ones and keeps the newest), and seq is the rowid, one more
     * than the largest at each insert: the events past the cursor are
     * exactly MAX(seq) - cursor, one step down the key, where a COUNT
     * walked the whole backlog (a /readyz and every pass paid it). */
    store_stmt *s = store_sql(e->st, "SELECT MAX(seq) FROM events");
    if (store_step(s) != STORE_ROW)
        return -1;
    int64_t last = store_col_int(s, 0);
    store_reset(s);
    return last > cursor ? last - cursor : 0;
}

/* --- broadcast fan-out ------------------------------------------------- */

struct idlist {
    char **v;
    int n, cap;
};

static void collect_id(const char *id, void *ud)
{
    struct idlist *l = ud;
    if (l->n == l->cap)
        l->v = xrealloc(l->v, (size_t)(l->cap = l->cap ? l->cap * 2 : 64) * sizeof *l->v);
    l->v[l->n++] = xstrdup(id);
}

/* Pushes the audience filter of the journey decl at `decl` for event `ev`. */
static int push_audience(engine *e, int decl, const cJSON *ev, const char *journey)
{
    lua_State *L = sandbox_state(e->sb);
    if (lua_getfield(L, decl, "audience") == LUA_TFUNCTION) {
        catalog_restore_env(L, decl);
        json_push(L, ev);
        if (sandbox_pcall(e->sb, L, 1, 1) != LUA_OK) {
            engine_logf(e, "error", "journey '%s': audience() failed: %s", journey, lua_tostring(L, -1));
            lua_pop(L, 1);
            return -1;
        }
        if (!lua_istable(L, -1)) {
            engine_logf(e, "error", "journey '%s': audience() must return a filter table", journey);
            lua_pop(L, 1);
            return -1;
        }
    }
    return 0;
}

struct fanout_call {
    engine *e;
    int page, started;
};

static int fanout_batch(store *st, void *ud)
{
    struct fanout_call *fc = ud;
    engine *e = fc->e;
    lua_State *L = sandbox_state(e->sb);
    store_stmt *s = store_sql(st, "SELECT f.event, f.journey, f.after, e.seq, e.id, e.type, e.customer,"
                                  " e.at, e.body FROM fanouts f JOIN events e ON e.seq = f.event"
                                  " ORDER BY f.event, f.journey LIMIT 1");
    if (store_step(s) != STORE_ROW)
        return 0;
    int64_t event = store_col_int(s, 0);
    char *journey = xstrdup(store_col_text(s, 1)), *after = xstrdup(store_col_text(s, 2));
    cJSON *ev = event_object(s, 4);
    store_reset(s);

    int rc = 0, done = 1;
    struct idlist ids = {0};
    int top = lua_gettop(L);
    if (catalog_push_current(e, journey)) {
        int decl = lua_gettop(L);
        if (push_audience(e, decl, ev, journey) == 0) {
            char err[300];
            segment_query *q = segment_compile(L, -1, engine_now(e), err, sizeof err);
            if (!q) {
                engine_logf(e, "error", "journey '%s': audience: %s", journey, err);
            } else {
                int got = segment_page(st, q, after, fc->page, collect_id, &ids);
                segment_query_free(q);
                if (got < 0)
                    rc = -1;
                done = got < fc->page;
            }
        }
        /* one starter for the page: the declaration and the event are read
         * and printed once, not per customer */
        struct instance_starter starter;
        char err[300];
        if (ids.n && instance_starter_init(e, &starter, journey, ev, 1, err, sizeof err) != 0)
            rc = -1;
        for (int i = 0; rc == 0 && i < ids.n; i++) {
            if (instance_admits(e, decl, journey, ids.v[i], ev) != 1)
                continue;
            int64_t id = instance_starter_start(e, &starter, ids.v[i], err, sizeof err);
            if (id < 0)
                rc = -1;
            else if (id > 0)
                fc->started++;
        }
        if (ids.n && starter.journey && instance_starter_free(&starter) != 0)
            rc = -1;
    }
    lua_settop(L, top);
    if (rc == 0) {
        /* The page and the new resume point commit together: each customer
         * enters once per event, whatever crashes in between. */
        store_stmt *u = store_sql(st, "UPDATE fanouts SET after = ?3 WHERE event = ?1 AND journey = ?2");
        if (done)
            u = store_sql(st, "DELETE FROM fanouts WHERE event = ?1 AND journey = ?2");
        store_bind_int(u, 1, event);
        store_bind_text(u, 2, journey, -1);
        if (!done)
            store_bind_text(u, 3, ids.v[ids.n - 1], -1);
        rc = store_run(u);
    }
    for (int i = 0; i < ids.n; i++)
        free(ids.v[i]);
    free(ids.v);
    cJSON_Delete(ev);
    free(journey);
    free(after);
    return rc;
}

int event_fanout(engine *e, int page)
{
    struct fanout_call fc = {e, page, 0};
    if (store_batch(e->st, fanout_batch, &fc) != 0)
        return -1;
    return fc.started;
}

int event_fanout_pending(engine *e)
{
    return (int)store_count(e->st, "SELECT COUNT(*) FROM fanouts");
}
