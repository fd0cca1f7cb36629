/* server — the HTTP API and the loop of `tend run` (see server.h).
 *
 * Writes are batched per loop turn: a request that changes state (events,
 * a customer) does its work inside a transaction the server keeps open, and
 * queues its answer; a zero-delay event fires once the loop has read what
 * is ready, commits, and answers them all. Nothing is answered before it is
 * on disk, and a burst of requests costs one fsync. That fsync, and each
 * slice's, runs on the store's thread (store_commit_start): meanwhile the
 * loop answers what needs no store (/healthz) and holds the rest. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <systemd/sd-daemon.h>
#include <lauxlib.h>

#include "catalog.h"
#include "customer.h"
#include "dates.h"
#include "dispatch.h"
#include "event.h"
#include "fetch.h"
#include "filesink.h"
#include "httpguard.h"
#include "json.h"
#include "logger.h"
#include "metrics.h"
#include "openapi.h"
#include "receipt.h"
#include "product.h"
#include "segment.h"
#include "server.h"
#include "status.h"
#include "task.h"
#include "timeline.h"
#include "unsub.h"
#include "util.h"
#include "validate.h"
#include "version.h"

#define MAX_BODY (1 << 20)
#define MAX_HEAD (16 << 10)     /* request line and headers */
#define FD_RESERVE 256          /* descriptors kept for the store, providers, files */

struct reply {
    struct evhttp_request *req;
    int code;
    char *body;
    struct reply *next;
};

/* A POSTed batch of events, checked whole, stored a slice per loop turn
 * into the turn's write batch (which commits once all of it is in). */
struct ingest {
    struct evhttp_request *req;
    cJSON *events;
    cJSON *at;                  /* the next event to store */
    int accepted, dups;
    struct ingest *next;
};

/* A request held while a commit syncs: it runs, in arrival order, once
 * the commit ended (so it reads what was committed, and its writes come
 * after). */
struct deferred {
    struct evhttp_request *req;
    const struct server_route *hit;
    char *param;
    struct deferred *next;
};

enum { COMMIT_SLICE = 1, COMMIT_FLUSH = 2 };

struct server {
    engine *e;
    struct event_base *base;
    struct evhttp *http;
    char *token;
    struct event *tick, *flush, *sigint, *sigterm, *sighup, *drain;
    int in_tx;                  /* a write batch is open */
    int committing;             /* a commit syncs on the store's thread: COMMIT_SLICE, _FLUSH */
    int slice_more;             /* the slice in flight left work */
    struct reply *acking;       /* answered when the flush in flight has synced */
    struct deferred *waiting;   /* requests that read or write the store, held meanwhile */
    struct event *committed;    /* the store's commit ended (its eventfd) */
    struct ingest *ingests;     /* POSTed batches being stored, a slice a turn */
    struct event *ingest_next;  /* the next slice of them */
    struct reply *replies;      /* answered when the batch commits */
    int64_t requests;
    char *scripts_error;        /* why the scripts on disk did not load (NULL: they did) */
    httpguard *guard;           /* connection limit, head checks, timeouts */
    int stopping;               /* a SIGTERM/SIGINT came: no new work, draining */
    store *reader;              /* read-only connection for /metrics (NULL: it reads e->st) */
    double stop_deadline;       /* when draining gives up (monotonic seconds) */
};

/* --- answering ------------------------------------------------------------ */
static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The registry of the one server this process runs: its answers are counted
 * where they are written. */
static metrics *answer_metrics;

static const char *reason_phrase(int code)
{
    static const struct { int code; const char *phrase; } phrases[] = {
        {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {400, "Bad Request"}, {401, "Unauthorized"},
        {404, "Not Found"}, {405, "Method Not Allowed"}, {408, "Request Timeout"}, {411, "Length Required"},
        {413, "Payload Too Large"}, {417, "Expectation Failed"}, {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"}, {501, "Not Implemented"}, {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"}};
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
        if (phrases[i].code == code)
            return phrases[i].phrase;
    return code < 400 ? "OK" : code < 500 ? "Bad Request" : "Internal Server Error";
}

/* Every answer leaves here. HEAD gets the headers GET would, with the
 * body's Content-Length, and no body (libevent would send the body). */
static void send_body(struct evhttp_request *req, int code, struct evbuffer *b)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        char len[32];
        snprintf(len, sizeof len, "%zu", evbuffer_get_length(b));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
        evbuffer_drain(b, evbuffer_get_length(b));
    }
    evhttp_send_reply(req, code, reason_phrase(code), b);
}

static void send_json(struct evhttp_request *req, int code, const char *body)
{
    char code_text[8];
    snprintf(code_text, sizeof code_text, "%d", code);
    metrics_inc(answer_metrics, M_HTTP_REQUESTS, code_text);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "%s\n", body);
    send_body(req, code, b);
    evbuffer_free(b);
}

/* Errors are {"error": reason, "code": status}, every one of them. */
static void send_error(struct evhttp_request *req, int code, const char *message)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", message);
    cJSON_AddNumberToObject(j, "code", code);
    char *text = json_print(j);
    send_json(req, code, text);
    free(text);
    cJSON_Delete(j);
}

static void send_cjson(struct evhttp_request *req, int code, cJSON *j)
{
    char *text = json_print(j);
    send_json(req, code, text);
    free(text);
    cJSON_Delete(j);
}

/* Opens the turn's write batch if needed and queues the answer for it. */
static int begin_write(struct server *s)
{
    if (s->in_tx)
        return 0;
    if (store_begin(s->e->st) != 0)
        return -1;
    s->in_tx = 1;
    event_active(s->flush, EV_TIMEOUT, 0);
    return 0;
}

static void queue_reply(struct server *s, struct evhttp_request *req, int code, cJSON *body)
{
    struct reply *r = xcalloc(1, sizeof *r);
    r->req = req;
    r->code = code;
    r->body = json_print(body);
    cJSON_Delete(body);
    r->next = s->replies;
    s->replies = r;
}

/* The next pass runs in a later loop turn, never in this one: the answers
 * just queued are written first (the loop sends them when their sockets
 * are writable, before a zero-delay timer fires), so a slow journey cannot
 * hold back an acknowledgement. */
static void schedule_tick(struct server *s)
{
    if (s->stopping)
        return;
    struct timeval zero = {0, 0};
    evtimer_add(s->tick, &zero);
}

static void ingest_slice(evutil_socket_t fd, short what, void *arg);

/* The answers of a committed (ok) or failed write batch, in arrival order
 * (the list is newest first). */
static void answer(struct reply *replies, int ok)
{
    struct reply *rev = NULL;
    while (replies) {
        struct reply *r = replies;
        replies = r->next;
        r->next = rev;
        rev = r;
    }
    while (rev) {
        struct reply *r = rev;
        rev = r->next;
        if (ok)
            send_json(r->req, r->code, r->body);
        else
            send_error(r->req, 503, "the store could not commit; nothing of this request was stored");
        free(r->body);
        free(r);
    }
}

static void commit_settle(struct server *s);

/* The write batch commits, then is answered. Its fsync runs on the store's
 * thread (store_commit_start) and the answers go when it ended
 * (commit_settle); called with fd -1 (a signal, the end of the loop) it
 * commits and answers here, now. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    if (fd == -1)
        commit_settle(s);   /* and the requests held for it run */
    if (!s->in_tx)
        return;
    /* a batch of events half stored commits only with its rest: the flush
     * waits for its last slice (which activates it), unless called to end
     * the batch now, which stores the rest first */
    if (s->ingests && fd != -1)
        return;
    while (s->ingests)
        ingest_slice(-1, 0, s);
    if (!s->in_tx)
        return;
    int ok = (fd == -1 ? store_commit(s->e->st) : store_commit_start(s->e->st)) == 0;
    s->in_tx = 0;
    if (ok && store_commit_pending(s->e->st)) {
        s->acking = s->replies;
        s->replies = NULL;
        s->committing = COMMIT_FLUSH;
        return;
    }
    if (!ok)
        engine_logf(s->e, "error", "commit failed, %s", store_errmsg(s->e->st));
    struct reply *r = s->replies;
    s->replies = NULL;
    answer(r, ok);
    schedule_tick(s);
}

/* A store error inside the batch: everything in it goes, every waiting
 * request is told, so none believes it was stored. */
static void fail_batch(struct server *s, struct evhttp_request *req)
{
    engine_logf(s->e, "error", "store: %s", store_errmsg(s->e->st));
    if (s->in_tx)
        store_rollback(s->e->st);
    s->in_tx = 0;
    while (s->replies) {
        struct reply *r = s->replies;
        s->replies = r->next;
        send_error(r->req, 503, "the store failed; nothing of this request was stored");
        free(r->body);
        free(r);
    }
    while (s->ingests) {   /* their slices so far were in the batch */
        struct ingest *g = s->ingests;
        s->ingests = g->next;
        if (g->req != req)
            send_error(g->req, 503, "the store failed; nothing of this request was stored");
        cJSON_Delete(g->events);
        free(g);
    }
    if (req)
        send_error(req, 503, "the store failed; nothing of this request was stored");
}

/* --- requests -------------------------------------------------------------- */

static char *body_of(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    char *b = xmalloc(*len + 1);
    evbuffer_copyout(in, b, *len);
    b[*len] = 0;
    return b;
}

/* The next non-blank line of an NDJSON body, without surrounding blanks:
 * its start (length in *n), or NULL at the end. *p moves past it; *line
 * counts every line, blank ones too, so errors can name it. */
static char *ndjson_next(char **p, char *end, size_t *n, long *line)
{
    while (*p < end) {
        char *q = *p, *nl = memchr(q, '\n', (size_t)(end - q));
        size_t len = nl ? (size_t)(nl - q) : (size_t)(end - q);
        *p += len + (nl ? 1 : 0);
        (*line)++;
        while (len && (q[len - 1] == '\r' || q[len - 1] == ' ' || q[len - 1] == '\t'))
            len--;
        while (len && (*q == ' ' || *q == '\t'))
            q++, len--;
        if (len) {
            *n = len;
            return q;
        }
    }
    return NULL;
}

/* A batch refused whole: answered 400, and one log line says so. */
static void reject_batch(struct server *s, struct evhttp_request *req, const char *why)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    engine_logf(s->e, "warn", "rejected a batch of events from %s: %s", addr ? addr : "?", why);
    send_error(req, 400, why);
}

/* Why an Idempotency-Key header cannot serve as an event id, or NULL. */
static const char *idempotency_key_problem(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 255)
        return "header 'Idempotency-Key': must be 1 to 255 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return "header 'Idempotency-Key': must be printable ASCII";
    return NULL;
}

/* POST /v1/events: one object, or NDJSON. Every line is checked before any
 * is stored: a batch is taken whole or not at all. */
static void post_events(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)arg;
    size_t len;
    char *body = body_of(req, &len);
    char err[400];
    cJSON *events = cJSON_CreateArray();
    cJSON *one = json_parse(body, len, err, sizeof err);
    if (cJSON_IsObject(one)) {
        /* Idempotency-Key: the default id of a single event, so a client's
         * retry of the same request is a duplicate, not a second event */
        const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
        if (key) {
            const char *bad = idempotency_key_problem(key);
            if (bad) {
                send_error(req, 400, bad);
                cJSON_Delete(one);
                cJSON_Delete(events);
                free(body);
                return;
            }
            if (!cJSON_GetObjectItemCaseSensitive(one, "id"))
                cJSON_AddStringToObject(one, "id", key);
        }
        cJSON_AddItemToArray(events, one);
    } else {
        cJSON_Delete(one);
        long line = 0;
        char *p = body, *q;
        size_t n;
        while ((q = ndjson_next(&p, body + len, &n, &line))) {
            cJSON *ev = json_parse(q, n, err, sizeof err);
            if (!ev) {
                char msg[500];
                snprintf(msg, sizeof msg, "line %ld: %s; nothing was stored", line, err);
                metrics_add(s->e->metrics, M_EVENTS_REJECTED, NULL, cJSON_GetArraySize(events) + 1);
                reject_batch(s, req, msg);
                cJSON_Delete(events);
                free(body);
                return;
            }
            cJSON_AddItemToArray(events, ev);
        }
    }
    free(body);
    if (cJSON_GetArraySize(events) == 0) {
        reject_batch(s, req, "no event in the body");
        cJSON_Delete(events);
        return;
    }
    int i = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events) {
        i++;
        if (event_check(s->e, ev, err, sizeof err) != 0) {
            char msg[600];
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
            if (cJSON_IsString(id))
                snprintf(msg, sizeof msg, "event %d (id %s): %s; nothing was stored", i, id->valuestring, err);
            else
                snprintf(msg, sizeof msg, "event %d: %s; nothing was stored", i, err);
            metrics_add(s->e->metrics, M_EVENTS_REJECTED, NULL, cJSON_GetArraySize(events));
            reject_batch(s, req, msg);
            cJSON_Delete(events);
            return;
        }
    }
    if (begin_write(s) != 0) {
        cJSON_Delete(events);
        fail_batch(s, req);
        return;
    }
    struct ingest *g = xcalloc(1, sizeof *g), **tail = &s->ingests;
    g->req = req;
    g->events = events;
    g->at = events->child;
    while (*tail)
        tail = &(*tail)->next;
    *tail = g;
    ingest_slice(0, 0, s);   /* the first slice now, the rest in later turns */
}

/* Storing a batch of 1,000 events takes tens of ms: it goes a slice of
 * about INGEST_SLICE_MS at a time, and the loop serves what is ready (a
 * probe, another request) between slices. A batch stored whole queues its
 * answer; the write batch commits (and answers) once no batch is mid-way. */
#define INGEST_SLICE_MS 4.0

static void ingest_slice(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    double deadline = mono_ms() + INGEST_SLICE_MS;
    char err[400];
    int n = 0;
    while (s->ingests && (fd == -1 || n % 16 || mono_ms() < deadline)) {
        struct ingest *g = s->ingests;
        if (g->at) {
            struct event_result res;
            if (event_accept(s->e, g->at, &res, err, sizeof err) != 0) {
                s->ingests = g->next;
                struct evhttp_request *req = g->req;
                cJSON_Delete(g->events);
                free(g);
                fail_batch(s, req);
                return;
            }
            g->accepted += !res.duplicate;
            g->dups += res.duplicate;
            g->at = g->at->next;
            n++;
            continue;
        }
        s->ingests = g->next;
        metrics_add(s->e->metrics, M_EVENTS_INGESTED, NULL, g->accepted);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "accepted", g->accepted);
        cJSON_AddNumberToObject(r, "duplicates", g->dups);
        queue_reply(s, g->req, 202, r);
        cJSON_Delete(g->events);
        free(g);
    }
    if (fd == -1)
        return;
    if (s->ingests) {
        /* a timer, not an activation: the loop polls its sockets first */
        struct timeval zero = {0, 0};
        evtimer_add(s->ingest_next, &zero);
    } else if (s->in_tx) {
        event_active(s->flush, EV_TIMEOUT, 0);
    }
}

static void put_customer(struct server *s, struct evhttp_request *req, const char *id)
{
    size_t len;
    char *body = body_of(req, &len);
    char err[400];
    cJSON *obj = json_parse(body, len, err, sizeof err);
    free(body);
    if (!obj) {
        send_error(req, 400, err);
        return;
    }
    if (!cJSON_IsObject(obj)) {
        send_error(req, 400, "a customer must be a JSON object");
        cJSON_Delete(obj);
        return;
    }
    const cJSON *bid = cJSON_GetObjectItemCaseSensitive(obj, "id");
    if (bid && (!cJSON_IsString(bid) || strcmp(bid->valuestring, id) != 0)) {
        send_error(req, 400, "field 'id': differs from the id in the path");
        cJSON_Delete(obj);
        return;
    }
    if (!bid)
        cJSON_AddStringToObject(obj, "id", id);
    if (begin_write(s) != 0) {
        cJSON_Delete(obj);
        fail_batch(s, req);
        return;
    }
    /* A savepoint: a rejected customer leaves the batch as it was. */
    int created = 0;
    if (store_begin(s->e->st) != 0) {
        cJSON_Delete(obj);
        fail_batch(s, req);
        return;
    }
    if (customer_upsert(s->e, obj, 0, &created, err, sizeof err) != 0) {
        store_rollback(s->e->st);
        cJSON_Delete(obj);
        send_error(req, 400, err);
        return;
    }
    cJSON_Delete(obj);
    if (dates_customer_changed(s->e, id) != 0 || store_commit(s->e->st) != 0) {
        fail_batch(s, req);
        return;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", id);
    cJSON_AddBoolToObject(r, "created", created);
    queue_reply(s, req, created ? 201 : 200, r);
}

static void get_customer(struct server *s, struct evhttp_request *req, const char *id)
{
    cJSON *c = customer_json(s->e, id);
    if (!c) {
        send_error(req, 404, "no such customer");
        return;
    }
    send_cjson(req, 200, c);
}

/* PUT /v1/products/{sku}: the fields given are written, the others kept. */
static void put_product(struct server *s, struct evhttp_request *req, const char *sku)
{
    size_t len;
    char *body = body_of(req, &len);
    char err[400];
    cJSON *obj = json_parse(body, len, err, sizeof err);
    free(body);
    if (!obj || !cJSON_IsObject(obj)) {
        send_error(req, 400, obj ? "a product must be a JSON object" : err);
        cJSON_Delete(obj);
        return;
    }
    const cJSON *bsku = cJSON_GetObjectItemCaseSensitive(obj, "sku");
    if (bsku && (!cJSON_IsString(bsku) || strcmp(bsku->valuestring, sku) != 0)) {
        send_error(req, 400, "field 'sku': differs from the sku in the path");
        cJSON_Delete(obj);
        return;
    }
    if (!bsku)
        cJSON_AddStringToObject(obj, "sku", sku);
    if (begin_write(s) != 0 || store_begin(s->e->st) != 0) {
        cJSON_Delete(obj);
        fail_batch(s, req);
        return;
    }
    int created = 0;
    int rc = product_upsert(s->e->st, obj, 0, engine_now(s->e), &created, err, sizeof err);
    cJSON_Delete(obj);
    if (rc != 0) {
        store_rollback(s->e->st);
        if (strncmp(err, "store: ", 7) == 0)
            fail_batch(s, req);
        else
            send_error(req, 400, err);
        return;
    }
    if (store_commit(s->e->st) != 0) {
        fail_batch(s, req);
        return;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "sku", sku);
    cJSON_AddBoolToObject(r, "created", created);
    queue_reply(s, req, created ? 201 : 200, r);
}

static void get_product(struct server *s, struct evhttp_request *req, const char *sku)
{
    cJSON *p = product_json(s->e->st, sku);
    if (!p)
        send_error(req, 404, "no such product");
    else
        send_cjson(req, 200, p);
}

static void collect_sample(const char *id, void *ud)
{
    cJSON_AddItemToArray(ud, cJSON_CreateString(id));
}

static void get_segment(struct server *s, struct evhttp_request *req, const char *name)
{
    lua_State *L = sandbox_state(s->e->sb);
    int top = lua_gettop(L);
    if (!catalog_push_segment(s->e, name)) {
        lua_settop(L, top);
        send_error(req, 404, "no such segment");
        return;
    }
    lua_getfield(L, -1, "where");
    if (lua_isfunction(L, -1) && sandbox_pcall(s->e->sb, L, 0, 1) != LUA_OK) {
        send_error(req, 500, lua_tostring(L, -1));
        lua_settop(L, top);
        return;
    }
    char err[300];
    segment_query *q = segment_compile(L, -1, engine_now(s->e), err, sizeof err);
    lua_settop(L, top);
    if (!q) {
        send_error(req, 500, err);
        return;
    }
    int64_t n = segment_count(s->e->st, q);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "segment", name);
    cJSON_AddNumberToObject(r, "count", (double)n);
    cJSON *sample = cJSON_AddArrayToObject(r, "sample");
    segment_page(s->e->st, q, "", 10, collect_sample, sample);
    segment_query_free(q);
    send_cjson(req, n < 0 ? 500 : 200, r);
}

/* A positive whole number from text, or -1. */
static long long parse_id(const char *t)
{
    if (!t || !*t)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    return *end || errno || v < 0 ? -1 : v;
}

/* GET /v1/tasks?status=open|done|...|all&assignee=&customer=&overdue=1&after=ID&limit=N:
 * a page of tasks in id order and `next`, the `after` of the next page. */
static void get_tasks(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)arg;
    struct evkeyvalq q;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    evhttp_parse_query_str(query ? query : "", &q);
    struct task_filter f = {.status = evhttp_find_header(&q, "status"),
                            .assignee = evhttp_find_header(&q, "assignee"),
                            .customer = evhttp_find_header(&q, "customer")};
    const char *overdue = evhttp_find_header(&q, "overdue");
    f.overdue = overdue && (!strcmp(overdue, "1") || !strcmp(overdue, "true"));
    if (!f.status)
        f.status = "open";
    const char *after = evhttp_find_header(&q, "after"), *limit = evhttp_find_header(&q, "limit");
    long long a = after ? parse_id(after) : 0, n = limit ? parse_id(limit) : 100;
    if (a < 0)
        send_error(req, 400, "query 'after': must be a task id");
    else if (n < 1 || n > 1000)
        send_error(req, 400, "query 'limit': must be 1 to 1000");
    else
        send_cjson(req, 200, task_page(s->e, &f, a, (int)n));
    evhttp_clear_headers(&q);
}

static void get_task_summary(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)arg;
    send_cjson(req, 200, task_summary(s->e));
}

static void get_task(struct server *s, struct evhttp_request *req, const char *arg)
{
    long long id = parse_id(arg);
    cJSON *t = id > 0 ? task_get(s->e, id) : NULL;
    if (t)
        send_cjson(req, 200, t);
    else
        send_error(req, 404, "no such task");
}

/* PATCH /v1/tasks/{id} {status, outcome, note}: closes an open task and
 * emits task.<status> for its customer. 404 unknown, 409 closed already. */
static void patch_task(struct server *s, struct evhttp_request *req, const char *arg)
{
    long long id = parse_id(arg);
    size_t len;
    char *body = body_of(req, &len);
    char err[400];
    cJSON *obj = json_parse(body, len, err, sizeof err);
    free(body);
    if (!obj || !cJSON_IsObject(obj)) {
        send_error(req, 400, obj ? "the body must be a JSON object {status, outcome, note}" : err);
        cJSON_Delete(obj);
        return;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, obj) {
        if (strcmp(f->string, "status") && strcmp(f->string, "outcome") && strcmp(f->string, "note")) {
            snprintf(err, sizeof err, "unknown field '%.60s' (known: status, outcome, note)", f->string);
            send_error(req, 400, err);
            cJSON_Delete(obj);
            return;
        }
        if (!cJSON_IsString(f) && !cJSON_IsNull(f)) {
            snprintf(err, sizeof err, "field '%s': must be text", f->string);
            send_error(req, 400, err);
            cJSON_Delete(obj);
            return;
        }
    }
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "status"));
    const char *outcome = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "outcome"));
    const char *note = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "note"));
    if (id <= 0) {
        send_error(req, 404, "no such task");
        cJSON_Delete(obj);
        return;
    }
    if (begin_write(s) != 0 || store_begin(s->e->st) != 0) {
        cJSON_Delete(obj);
        fail_batch(s, req);
        return;
    }
    enum task_close_result r = task_close(s->e, id, status, outcome, note, err, sizeof err);
    cJSON_Delete(obj);
    if (r == TASK_STORE_ERROR) {
        store_rollback(s->e->st);
        fail_batch(s, req);
        return;
    }
    if (r != TASK_CLOSED_NOW) {
        store_rollback(s->e->st);
        send_error(req, r == TASK_NOT_FOUND ? 404 : r == TASK_ALREADY_CLOSED ? 409 : 400, err);
        return;
    }
    if (store_commit(s->e->st) != 0) {
        fail_batch(s, req);
        return;
    }
    queue_reply(s, req, 200, task_get(s->e, id));
}

/* The receipts of a request, one at a time: a JSON array's items (a
 * channel's mapped callback, a single object), or an NDJSON body's lines,
 * each read when its turn comes (receipt_batch_accept_line), so a batch
 * never holds the trees of all its lines. */
struct receipt_source {
    const cJSON *item;   /* the array's next item */
    char *p, *end;       /* NDJSON: the lines still to read (p NULL: an array) */
};

/* The next receipt: 1 with *item (an array's) or the line [*text, +*n); 0
 * at the end. */
static int receipt_source_next(struct receipt_source *src, const cJSON **item, const char **text, size_t *n)
{
    *item = NULL;
    if (!src->p) {
        *item = src->item;
        if (src->item)
            src->item = src->item->next;
        return *item != NULL;
    }
    long line = 0;
    return (*text = ndjson_next(&src->p, src->end, n, &line)) != NULL;
}

/* Stores receipts. receipt_accept() checks everything before it writes, so
 * a bad line leaves nothing behind and the others of the batch go on (no
 * savepoint a line). Answers a single receipt with its own status (404 for
 * an unknown message, 400 for a bad field); a batch with 202 and a per-line
 * report. */
static void store_receipts(struct server *s, struct evhttp_request *req, struct receipt_source *src, int single)
{
    if (begin_write(s) != 0) {
        fail_batch(s, req);
        return;
    }
    int accepted = 0, dups = 0, line = 0;
    cJSON *errors = cJSON_CreateArray();
    const cJSON *r;
    const char *text;
    size_t n;
    char err[400];
    struct receipt_batch batch;
    receipt_batch_init(&batch, s->e);
    while (receipt_source_next(src, &r, &text, &n)) {
        line++;
        enum receipt_result res = r ? receipt_batch_accept(&batch, r, err, sizeof err)
                                    : receipt_batch_accept_line(&batch, text, n, err, sizeof err);
        if (res == RECEIPT_STORE_ERROR) {
            cJSON_Delete(errors);
            fail_batch(s, req);
            goto done;
        }
        if (res == RECEIPT_INVALID || res == RECEIPT_UNKNOWN_MESSAGE) {
            if (single) {
                send_error(req, res == RECEIPT_UNKNOWN_MESSAGE ? 404 : 400, err);
                cJSON_Delete(errors);
                goto done;
            }
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "line", line);
            cJSON_AddStringToObject(e, "error", err);
            cJSON_AddItemToArray(errors, e);
            continue;
        }
        accepted += res == RECEIPT_STORED;
        dups += res == RECEIPT_DUPLICATE;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "accepted", accepted);
    cJSON_AddNumberToObject(out, "duplicates", dups);
    cJSON_AddNumberToObject(out, "rejected", cJSON_GetArraySize(errors));
    cJSON_AddItemToObject(out, "errors", errors);
    queue_reply(s, req, 202, out);
done:
    receipt_batch_free(&batch);
}

/* POST /v1/receipts: one receipt object, or NDJSON. */
static void post_receipts(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)arg;
    size_t len;
    char *body = body_of(req, &len);
    char err[400];
    cJSON *one = json_parse(body, len, err, sizeof err);
    if (cJSON_IsObject(one)) {
        struct receipt_source src = {.item = one};
        store_receipts(s, req, &src, 1);
    } else {
        /* how many lines (0, 1 or more): one line is answered as a single
         * receipt */
        char *p = body;
        size_t n;
        long line = 0;
        int lines = 0;
        while (lines < 2 && ndjson_next(&p, body + len, &n, &line))
            lines++;
        struct receipt_source src = {.p = body, .end = body + len};
        if (lines == 0)
            send_error(req, 400, "no receipt in the body");
        else
            store_receipts(s, req, &src, lines == 1);
    }
    cJSON_Delete(one);
    free(body);
}

/* POST /v1/receipts/{channel}: a provider's own callback body, mapped to
 * receipts by the channel's `receipt` function. */
static void post_channel_receipts(struct server *s, struct evhttp_request *req, const char *channel)
{
    size_t len;
    char *body = body_of(req, &len);
    char err[600];
    cJSON *list = receipt_map(s->e, channel, body, len, err, sizeof err);
    free(body);
    if (!list) {
        send_error(req, strstr(err, "no channel") || strstr(err, "no receipt function") ? 404 : 400, err);
        return;
    }
    struct receipt_source src = {.item = list->child};
    store_receipts(s, req, &src, 0);
    cJSON_Delete(list);
}

/* Gauges read from the store when scraped: each row is label values then a
 * count. */
static void metric_rows(strbuf *b, store *st, const char *sql, const char *name, const char *l1,
                        const char *l2)
{
    store_stmt *q = store_sql(st, sql);
    while (store_step(q) == STORE_ROW) {
        strbuf_printf(b, "%s{%s=\"", name, l1);
        metrics_label_value(b, store_col_text(q, 0) ? store_col_text(q, 0) : "");
        if (l2) {
            strbuf_printf(b, "\",%s=\"", l2);
            metrics_label_value(b, store_col_text(q, 1) ? store_col_text(q, 1) : "");
        }
        strbuf_printf(b, "\"} %lld\n", (long long)store_col_int(q, l2 ? 2 : 1));
    }
}

/* The one integer a query yields, or -1 for no row or NULL. */
static int64_t query_int(store *st, const char *sql)
{
    store_stmt *q = store_sql(st, sql);
    int64_t v = store_step(q) == STORE_ROW && store_col_text(q, 0) ? store_col_int(q, 0) : -1;
    store_reset(q);
    return v;
}

static void get_metrics(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)arg;
    engine *e = s->e;
    /* the gauges come from the reader when there is one: it reads the last
     * commit and never waits for the one in flight, so a scrape is not
     * held behind a slice's fsync (the route does not defer it then) */
    store *st = s->reader ? s->reader : e->st;
    strbuf b;
    strbuf_init(&b);
    struct versions v;
    version_get(&v);
    metrics_header(&b, "tend_build_info", "gauge", "The running build: 1, with versions as labels.");
    strbuf_printf(&b, "tend_build_info{version=\"%s\",lua=\"%s\",sqlite=\"%s\",curl=\"%s\",libevent=\"%s\"} 1\n",
                  v.tend, v.lua, v.sqlite, v.curl, v.libevent);
    metrics_render(e->metrics, &b);

    /* events are never deleted, so the highest sequence is the count, read
     * from the end of the key rather than by a scan */
    metrics_header(&b, "tend_events_stored", "gauge", "Events in the store.");
    int64_t stored = query_int(st, "SELECT MAX(seq) FROM events");
    strbuf_printf(&b, "tend_events_stored %lld\n", (long long)(stored < 0 ? 0 : stored));
    /* those past the processed cursor: seqs above it are never deleted, so
     * the difference counts them without walking a backlog */
    int64_t cursor = 0;
    store_meta_get_int(st, "events_cursor", &cursor);
    metrics_header(&b, "tend_events_pending", "gauge", "Events stored but not yet processed.");
    strbuf_printf(&b, "tend_events_pending %lld\n", (long long)(stored > cursor ? stored - cursor : 0));
    /* How far behind the loop is: for each kind of work, the age of the
     * oldest item already due (0 when nothing is due). Each is one step
     * down an index ordered by due time. */
    metrics_header(&b, "tend_oldest_due_seconds", "gauge",
                   "Age of the oldest due item not yet done, by kind (event, wake, delivery).");
    tend_time now = engine_now(e);
    store_stmt *ev = store_sql(st, "SELECT received_at FROM events WHERE seq > ? ORDER BY seq LIMIT 1");
    store_bind_int(ev, 1, cursor);
    tend_time oldest_event = store_step(ev) == STORE_ROW ? store_col_int(ev, 0) : -1;
    store_reset(ev);
    const struct { const char *kind; tend_time at; } due[] = {
        {"event", oldest_event},
        {"wake", query_int(st, "SELECT MIN(wake_at) FROM timers")},
        {"delivery", query_int(st, "SELECT MIN(due_at) FROM outbox_due")},
    };
    for (size_t i = 0; i < sizeof due / sizeof due[0]; i++)
        strbuf_printf(&b, "tend_oldest_due_seconds{kind=\"%s\"} %lld\n", due[i].kind,
                      (long long)(due[i].at >= 0 && due[i].at < now ? now - due[i].at : 0));
    metrics_header(&b, "tend_instances", "gauge", "Journey instances by journey and state.");
    /* kept by triggers as instances and messages change (schema.c) */
    metric_rows(&b, st, "SELECT journey, state, n FROM instance_counts WHERE n <> 0 ORDER BY journey, state",
                "tend_instances", "journey", "state");
    metrics_header(&b, "tend_outbox", "gauge", "Outbox rows by status.");
    metric_rows(&b, st, "SELECT status, n FROM outbox_counts WHERE n <> 0 ORDER BY status", "tend_outbox", "status",
                NULL);
    metrics_header(&b, "tend_http_get_pending", "gauge", "http_get requests journeys wait for (in flight or queued).");
    strbuf_printf(&b, "tend_http_get_pending %lld\n", (long long)store_count(st, "SELECT COUNT(*) FROM fetches"));
    metrics_header(&b, "tend_lua_memory_bytes", "gauge", "Bytes the Lua state holds.");
    strbuf_printf(&b, "tend_lua_memory_bytes %zu\n", sandbox_memory(e->sb));

    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, b.s, b.len);
    strbuf_free(&b);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
    send_body(req, 200, out);
    evbuffer_free(out);
    metrics_inc(answer_metrics, M_HTTP_REQUESTS, "200");
}

/* GET /readyz: 200 when this node should take traffic — the store takes a
 * write lock, the scripts on disk loaded, and the event backlog is under
 * `ready_backlog`; 503 naming each check that failed. */
static void get_readyz(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)arg;
    engine *e = s->e;
    cJSON *r = cJSON_CreateObject();
    cJSON *checks = cJSON_AddObjectToObject(r, "checks");
    int ready = 1;
    /* inside the turn's open write batch the store is writable by definition */
    if (!s->in_tx && (store_exec(e->st, "BEGIN IMMEDIATE") != 0 || store_exec(e->st, "ROLLBACK") != 0)) {
        cJSON_AddStringToObject(checks, "store", store_errmsg(e->st));
        ready = 0;
    } else {
        cJSON_AddStringToObject(checks, "store", "ok");
    }
    if (s->scripts_error) {
        cJSON_AddStringToObject(checks, "scripts", s->scripts_error);
        ready = 0;
    } else {
        cJSON_AddStringToObject(checks, "scripts", "ok");
    }
    int64_t backlog = event_backlog(e);
    if (backlog < 0 || backlog > e->cfg.ready_backlog) {
        char msg[120];
        snprintf(msg, sizeof msg, "%lld events wait to be processed (ready_backlog %d)", (long long)backlog,
                 e->cfg.ready_backlog);
        cJSON_AddStringToObject(checks, "backlog", msg);
        ready = 0;
    } else {
        cJSON_AddStringToObject(checks, "backlog", "ok");
    }
    cJSON_AddBoolToObject(r, "ready", ready);
    send_cjson(req, ready ? 200 : 503, r);
}

static void get_openapi(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)s;
    (void)arg;
    send_json(req, 200, openapi_json);
}

static void get_journey(struct server *s, struct evhttp_request *req, const char *name)
{
    cJSON *j = status_journey(s->e, name);
    if (!j)
        send_error(req, 500, store_errmsg(s->e->st));
    else if (cJSON_IsNull(j)) {
        cJSON_Delete(j);
        send_error(req, 404, "no instance of such a journey");
    } else
        send_cjson(req, 200, j);
}

/* GET /v1/customers/{id}/timeline?limit=N&before=T */
static void get_timeline(struct server *s, struct evhttp_request *req, const char *id)
{
    struct evkeyvalq q;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    evhttp_parse_query_str(query ? query : "", &q);
    const char *before = evhttp_find_header(&q, "before"), *limit = evhttp_find_header(&q, "limit");
    long long b = before ? parse_id(before) : 0, n = limit ? parse_id(limit) : 50;
    if (b < 0)
        send_error(req, 400, "query 'before': must be a time in epoch seconds (the `next` of a page)");
    else if (n < 1 || n > 500)
        send_error(req, 400, "query 'limit': must be 1 to 500");
    else {
        cJSON *t = timeline_customer(s->e, id, b, (int)n);
        if (t)
            send_cjson(req, 200, t);
        else
            send_error(req, 404, "no such customer");
    }
    evhttp_clear_headers(&q);
}

static void get_healthz(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)s;
    (void)arg;
    send_json(req, 200, "{\"ok\":true}");
}

static void get_journeys(struct server *s, struct evhttp_request *req, const char *arg)
{
    (void)arg;
    cJSON *r = status_report(s->e);
    if (r)
        send_cjson(req, 200, r);
    else
        send_error(req, 500, store_errmsg(s->e->st));
}

/* POST /v1/unsubscribe/{token}: the one-click link of a marketing email
 * (RFC 8058). No bearer token: the signed token is the authority, and it
 * names one customer and one channel. It records an `unsubscribe` event
 * for that channel, so the change goes through the usual event path. A GET
 * (a person opening the link) only shows a button that POSTs: mail
 * scanners fetch links, and a fetch must not unsubscribe anyone. */
static void unsubscribe(struct server *s, struct evhttp_request *req, const char *token, int post)
{
    char *secret = unsub_secret(s->e->cfg.unsubscribe_secret, s->e->st);
    char *customer = NULL, *channel = NULL, err[200];
    int ok = secret && unsub_verify(secret, token, &customer, &channel, err, sizeof err) == 0;
    free(secret);
    if (!ok) {
        send_error(req, 404, secret ? err : "the store failed");
    } else if (!post) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "<!doctype html><meta charset=\"utf-8\"><title>Unsubscribe</title>"
                               "<form method=\"post\"><p>Stop marketing messages on this channel? "
                               "/ \u9000\u8ba2\u8425\u9500\u6d88\u606f\uff1f</p>"
                               "<button type=\"submit\">Unsubscribe / \u9000\u8ba2</button></form>\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/html; charset=utf-8");
        send_body(req, 200, b);
        evbuffer_free(b);
    } else {
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "type", "unsubscribe");
        cJSON_AddStringToObject(ev, "customer", customer);
        cJSON_AddStringToObject(ev, "channel", channel);
        cJSON_AddStringToObject(ev, "reason", "list-unsubscribe");
        cJSON_AddNumberToObject(ev, "at", (double)engine_now(s->e));
        struct event_result res;
        if (begin_write(s) != 0 || event_accept(s->e, ev, &res, err, sizeof err) != 0) {
            fail_batch(s, req);
        } else {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddBoolToObject(r, "unsubscribed", 1);
            cJSON_AddStringToObject(r, "channel", channel);
            queue_reply(s, req, 200, r);
        }
        cJSON_Delete(ev);
    }
    free(customer);
    free(channel);
}

static void post_unsubscribe(struct server *s, struct evhttp_request *req, const char *token)
{
    unsubscribe(s, req, token, 1);
}

static void get_unsubscribe(struct server *s, struct evhttp_request *req, const char *token)
{
    unsubscribe(s, req, token, 0);
}

static int authorized(struct server *s, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    /* compare without an early exit, so timing says nothing of the token */
    const char *given = h + 7;
    size_t n = strlen(s->token), m = strlen(given);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(s->token[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

/* --- the router -------------------------------------------------------------- */

typedef void (*route_fn)(struct server *s, struct evhttp_request *req, const char *arg);

/* Every route the API serves. A path ending in "{...}" takes one more
 * segment, URL-decoded, as the handler's argument. docs/openapi.yaml
 * describes exactly these (tests/unit/test_routes.c holds the two together). */
static const struct server_route {
    const char *method;     /* "GET", ...; "*": any method */
    const char *path;
    route_fn fn;
    int open;               /* served without the bearer token */
} routes[] = {
    {"*", "/healthz", get_healthz, 1},
    {"GET", "/readyz", get_readyz, 1},
    {"GET", "/v1/openapi.json", get_openapi, 1},
    {"POST", "/v1/events", post_events, 0},
    {"GET", "/v1/customers/{id}", get_customer, 0},
    {"PUT", "/v1/customers/{id}", put_customer, 0},
    {"GET", "/v1/customers/{id}/timeline", get_timeline, 0},
    {"GET", "/v1/products/{sku}", get_product, 0},
    {"PUT", "/v1/products/{sku}", put_product, 0},
    {"GET", "/v1/journeys", get_journeys, 0},
    {"GET", "/v1/journeys/{name}", get_journey, 0},
    {"GET", "/v1/segments/{name}", get_segment, 0},
    {"GET", "/v1/tasks", get_tasks, 0},
    {"GET", "/v1/tasks/summary", get_task_summary, 0},
    {"GET", "/v1/tasks/{id}", get_task, 0},
    {"PATCH", "/v1/tasks/{id}", patch_task, 0},
    {"POST", "/v1/receipts", post_receipts, 0},
    {"POST", "/v1/receipts/{channel}", post_channel_receipts, 0},
    {"GET", "/metrics", get_metrics, 0},
    {"POST", "/v1/unsubscribe/{token}", post_unsubscribe, 1},    /* the link is signed */
    {"GET", "/v1/unsubscribe/{token}", get_unsubscribe, 1},
};
#define NROUTES (sizeof routes / sizeof routes[0])

int server_route_count(void)
{
    return (int)NROUTES;
}

void server_route_at(int i, const char **method, const char **path)
{
    *method = routes[i].method;
    *path = routes[i].path;
}

/* Does `path` match the route's pattern? A "{...}" segment of the pattern
 * (at most one) matches one segment of the path: "/v1/customers/{id}/timeline".
 * *arg gets it URL-decoded (malloc'd), *arglen its length (a %00 decodes to
 * a NUL inside it, which the router refuses). A segment that decodes to
 * nothing does not match. */
static int path_matches(const char *pattern, const char *path, char **arg, size_t *arglen)
{
    *arg = NULL;
    *arglen = 0;
    const char *open = strchr(pattern, '{');
    if (!open)
        return strcmp(pattern, path) == 0;
    const char *rest = strchr(open, '}') + 1;   /* what follows the parameter */
    size_t n = (size_t)(open - pattern);
    if (strncmp(path, pattern, n) != 0)
        return 0;
    const char *seg = path + n, *end = strchr(seg, '/');
    size_t seglen = end ? (size_t)(end - seg) : strlen(seg);
    if (seglen == 0 || strcmp(seg + seglen, rest) != 0)
        return 0;
    char *raw = xstrndup(seg, seglen);
    *arg = evhttp_uridecode(raw, 0, arglen);
    free(raw);
    if (*arg && *arglen == 0) {
        free(*arg);
        *arg = NULL;
    }
    return *arg != NULL;
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "?";
    }
}

static void route(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    int refused;
    const char *why;
    if (httpguard_arrived(s->guard, req, &refused, &why)) {
        /* a head the guard would not let libevent answer in HTML */
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
        engine_logf(s->e, "info", "refused a request from %s: %d %s", addr ? addr : "?", refused, why);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        send_error(req, refused, why);
        return;
    }
    s->requests++;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path)
        path = "/";
    const char *m = method_name(evhttp_request_get_command(req));
    /* The path decides the route, the method then picks among its handlers;
     * HEAD is served by a route's GET. */
    char allowed[64] = "";
    const struct server_route *hit = NULL;
    char *param = NULL;
    size_t param_len = 0;
    for (size_t i = 0; i < NROUTES && !hit; i++) {
        char *a;
        size_t alen;
        if (!path_matches(routes[i].path, path, &a, &alen))
            continue;
        if (!strcmp(routes[i].method, "*") || !strcmp(routes[i].method, m) ||
            (!strcmp(m, "HEAD") && !strcmp(routes[i].method, "GET"))) {
            hit = &routes[i];
            param = a;
            param_len = alen;
        } else {
            size_t used = strlen(allowed);
            snprintf(allowed + used, sizeof allowed - used, "%s%s", used ? " or " : "", routes[i].method);
            free(a);
        }
    }
    if (hit && !hit->open && !authorized(s, req)) {
        free(param);
        hit = NULL;
        allowed[0] = 0;
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        send_error(req, 401, "a bearer token is required (Authorization: Bearer $TEND_API_TOKEN)");
        return;
    }
    /* A parameter no id can be (%00, bytes that are not UTF-8, a line
     * break) is refused here: a NUL would otherwise cut "a%00b" to "a". */
    char bad_param[160];
    if (hit && param && validate_text(param, param_len, VALIDATE_SINGLE_LINE, bad_param, sizeof bad_param) != 0) {
        char msg[240];
        const char *what = strstr(hit->path, "/customers/") ? "customer id"
                         : strstr(hit->path, "/segments/") ? "segment name" : "parameter";
        snprintf(msg, sizeof msg, "the %s in the path: %s", what, bad_param);
        send_error(req, 400, msg);
        free(param);
        return;
    }
    if (hit && s->committing && hit->fn != get_healthz && hit->fn != get_openapi &&
        !(hit->fn == get_metrics && s->reader)) {
        struct deferred *d = xcalloc(1, sizeof *d), **tail = &s->waiting;
        *d = (struct deferred){req, hit, param, NULL};
        while (*tail)
            tail = &(*tail)->next;
        *tail = d;
        return;
    }
    if (hit) {
        hit->fn(s, req, param);
        free(param);
        return;
    }
    if (!authorized(s, req)) {   /* say nothing of which routes exist to a stranger */
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        send_error(req, 401, "a bearer token is required (Authorization: Bearer $TEND_API_TOKEN)");
    } else if (allowed[0]) {
        char msg[96];
        snprintf(msg, sizeof msg, "use %s", allowed);
        send_error(req, 405, msg);
    } else {
        send_error(req, 404, "no such route");
    }
}

/* --- the loop ---------------------------------------------------------------- */

/* One slice of due work holds the loop at most this long (plus one batch
 * overrun): a probe or a request waits at most about that for its turn. */
#define SLICE_MS 8.0

/* The time left until the start of second `at` on the real clock, plus a
 * millisecond so that time() has reached it when the timer fires. */
static struct timeval until_second(tend_time at)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long us = ((long long)at - (long long)ts.tv_sec) * 1000000LL - ts.tv_nsec / 1000 + 1000;
    if (us < 0)
        us = 0;
    return (struct timeval){(long)(us / 1000000), (long)(us % 1000000)};
}

/* After a slice (rc: engine_slice_end's, -1 failed): at once again when
 * it left work, else when the next work is due. */
static void slice_done(struct server *s, int rc, int more)
{
    engine *e = s->e;
    if (s->stopping)
        return;
    if (rc < 0) {
        engine_logf(e, "error", "a pass failed (it is retried): %s", store_errmsg(e->st));
        more = 0;
    } else if (more) {
        schedule_tick(s);
        return;
    }
    tend_time next = engine_next_due(e), now = engine_now(e);
    /* Work due now that the pass left (deliveries waiting for a free slot)
     * is picked up as transfers finish; look again soon regardless. */
    struct timeval tv = {60, 0};
    if (next >= 0 && next <= now)
        tv = (struct timeval){0, 50000};
    else if (next > now && next - now < 60)
        tv = until_second(next);
    evtimer_add(s->tick, &tv);
}

/* The commit in flight ended (or is waited for now): what waited for it
 * goes — the write batch's answers, or the rest of the slice. */
static void run_waiting(struct server *s);

static void commit_settle(struct server *s)
{
    int kind = s->committing;
    if (!kind) {
        run_waiting(s);
        return;
    }
    s->committing = 0;
    engine *e = s->e;
    if (kind == COMMIT_FLUSH) {
        int ok = store_commit_finish(e->st) == 0;
        if (!ok)
            engine_logf(e, "error", "commit failed, %s", store_errmsg(e->st));
        struct reply *r = s->acking;
        s->acking = NULL;
        answer(r, ok);
        schedule_tick(s);
    } else {
        slice_done(s, engine_slice_end(e, engine_now(e), s->slice_more), s->slice_more);
    }
    run_waiting(s);
}

/* The requests held during the commit, in arrival order, until one of
 * them starts another commit. A request whose client left is let go. */
static void run_waiting(struct server *s)
{
    while (s->waiting && !s->committing) {
        struct deferred *d = s->waiting;
        s->waiting = d->next;
        if (evhttp_request_get_connection(d->req))
            d->hit->fn(s, d->req, d->param);
        else
            send_error(d->req, 503, "the client left");   /* frees it */
        free(d->param);
        free(d);
    }
}

static void on_committed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    if (!s->committing)
        store_commit_finish(s->e->st);   /* waited for already: reads the eventfd */
    commit_settle(s);
}

/* Due work runs in slices: the tick has the lowest priority of the loop,
 * so every request and transfer ready is served before the next slice, and
 * a slice that left work re-arms the tick at once. A slice's commit syncs
 * on the store's thread; requests that need the store wait for it, the
 * rest (/healthz) are answered meanwhile. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    if (s->in_tx || s->stopping || s->committing)   /* answers first: the batch commits, then work goes on */
        return;
    engine *e = s->e;
    logger_flush(0);
    int more = 0;
    int n = engine_slice_start(e, engine_now(e), SLICE_MS, &more);
    if (n >= 0 && store_commit_pending(e->st)) {
        s->committing = COMMIT_SLICE;
        s->slice_more = more;
        return;
    }
    slice_done(s, n < 0 ? -1 : engine_slice_end(e, engine_now(e), more), more);
}

/* An http_get answer woke instances: their sends and events go now. */
static void work_due(void *ud)
{
    struct server *s = ud;
    event_active(s->tick, EV_TIMEOUT, 0);
}

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* While stopping: the open batch commits and is answered; the loop ends
 * once no transfer is in flight (their results stored) or the grace
 * period is over (those left keep their lease and go again later). */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    struct timeval later = {0, 20000};
    commit_settle(s);
    if (s->in_tx) {
        on_flush(-1, 0, s);
        evtimer_add(s->drain, &later);   /* the answers go out first */
        return;
    }
    int left = dispatch_in_flight(s->e);
    if (left == 0 || monotonic() >= s->stop_deadline) {
        if (left)
            engine_logf(s->e, "warn", "shutdown_grace is over: %d transfer%s abandoned (sent again, with the same "
                        "key, when tend run starts again)", left, left == 1 ? "" : "s");
        event_base_loopexit(s->base, NULL);
        return;
    }
    evtimer_add(s->drain, &later);
}

/* SIGTERM, SIGINT: stop taking work, let transfers in flight finish (up to
 * shutdown_grace), commit, exit 0. A second signal stops at once. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    if (s->stopping) {
        engine_logf(s->e, "warn", "signal %d again: stopping now (%d transfer%s in flight abandoned, sent again "
                    "when tend run starts again)", (int)sig, dispatch_in_flight(s->e),
                    dispatch_in_flight(s->e) == 1 ? "" : "s");
        event_base_loopbreak(s->base);
        return;
    }
    s->stopping = 1;
    sd_notify(0, "STOPPING=1");
    evtimer_del(s->tick);
    dispatch_stop_claiming(s->e);
    httpguard_pause_listening(s->guard, 1);
    s->stop_deadline = monotonic() + s->e->cfg.shutdown_grace;
    int n = dispatch_in_flight(s->e);
    engine_logf(s->e, "info", "signal %d: stopping (waiting up to %g s for %d transfer%s in flight)", (int)sig,
                s->e->cfg.shutdown_grace, n, n == 1 ? "" : "s");
    struct timeval now = {0, 0};
    evtimer_add(s->drain, &now);
}

/* SIGHUP: the scripts are loaded again (a set that does not load is
 * refused and the running one stays), and file-channel files are reopened
 * (after a move-style log rotation the next line goes to a new file). */
static void on_hangup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct server *s = arg;
    engine *e = s->e;
    if (s->stopping)
        return;
    if (s->in_tx)
        on_flush(-1, 0, s);
    char *errors = NULL;
    int n = engine_load_dir(e, &errors);
    if (n != 0) {
        if (errors)   /* one line: the errors, separated */
            for (char *p = errors; (p = strchr(p, '\n')) && p[1]; p++)
                *p = ';';
        engine_logf(e, "error", "SIGHUP: %d script error%s, the scripts loaded before stay: %s", n < 0 ? 1 : n,
                    n == 1 ? "" : "s", errors ? errors : "");
        free(s->scripts_error);   /* /readyz says so until a reload succeeds */
        s->scripts_error = xasprintf("the scripts on disk did not load (SIGHUP): %s", errors ? errors : "");
    } else {
        engine_logf(e, "info", "SIGHUP: scripts reloaded from %s", e->dir ? e->dir : ".");
        free(s->scripts_error);
        s->scripts_error = NULL;
    }
    free(errors);
    filesink_close(e);
    engine_logf(e, "info", "SIGHUP: file-channel files reopened");
    schedule_tick(s);
}

/* libevent's own warnings go to the log, rate-limited like any line. */
static void libevent_log(int severity, const char *msg)
{
    logger_write(severity == EVENT_LOG_DEBUG ? "debug" : severity == EVENT_LOG_MSG ? "info"
                 : severity == EVENT_LOG_WARN ? "warn" : "error", msg);
}

/* Descriptors: the soft limit is raised to the hard one; connections get
 * what is left after FD_RESERVE for the store, providers and files. */
static int connection_budget(engine *e)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return e->cfg.max_connections;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit raised = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = want;
    }
    long fds = rl.rlim_cur == RLIM_INFINITY ? (1L << 20) : (long)rl.rlim_cur;
    long room = fds > 2 * FD_RESERVE ? fds - FD_RESERVE : fds / 2;
    if (e->cfg.max_connections > room) {
        engine_logf(e, "warn", "server.max_connections %d lowered to %ld: the descriptor limit is %ld",
                    e->cfg.max_connections, room, fds);
        return (int)room;
    }
    return e->cfg.max_connections;
}

static void guard_log(void *ud, const char *level, const char *msg)
{
    engine_logf(ud, level, "%s", msg);
}

/* The API token: TEND_API_TOKEN, else one made now and kept in DIR/.tend-token
 * (so a restart keeps it), readable by the owner only. */
static char *load_token(engine *e)
{
    const char *env = getenv("TEND_API_TOKEN");
    if (env && *env)
        return xstrdup(env);
    char *path = util_path_join(e->dir, ".tend-token");
    char *tok = util_read_file(path, NULL);
    if (tok) {
        tok[strcspn(tok, "\r\n")] = 0;
        if (*tok) {
            engine_logf(e, "info", "API token from %s", path);
            free(path);
            return tok;
        }
        free(tok);
    }
    unsigned char raw[16];
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        if (fd >= 0)
            close(fd);
        free(path);
        return NULL;
    }
    close(fd);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out >= 0) {
        if (write(out, hex, 32) != 32 || write(out, "\n", 1) != 1)
            engine_logf(e, "warn", "could not write %s", path);
        close(out);
        engine_logf(e, "info", "API token written to %s (set TEND_API_TOKEN to choose one)", path);
    }
    free(path);
    return xstrdup(hex);
}

int server_run(engine *e)
{
    struct server s = {.e = e};
    answer_metrics = e->metrics;
    s.token = load_token(e);
    if (!s.token) {
        engine_logf(e, "error", "no API token and no way to make one");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    event_set_log_callback(libevent_log);
    s.base = event_base_new();
    /* 0: unused, 1: requests, transfers, commits (the default), 2: the tick */
    event_base_priority_init(s.base, 3);
    s.http = evhttp_new(s.base);
    struct httpguard_limits lim = {
        .max_connections = connection_budget(e), .idle_timeout = e->cfg.idle_timeout,
        .header_timeout = e->cfg.header_timeout, .request_timeout = e->cfg.request_timeout,
        .max_head = MAX_HEAD, .max_body = MAX_BODY};
    s.guard = httpguard_new(s.base, s.http, &lim, guard_log, e);
    /* the guard refuses TRACE, CONNECT and unknown methods (501, JSON)
     * before libevent parses them; the rest reach the router, which
     * answers a wrong one with 405 */
    evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                           EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS |
                                           EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
    evhttp_set_gencb(s.http, route, &s);
    char host[256];
    snprintf(host, sizeof host, "%s", e->cfg.listen);
    char *colon = strrchr(host, ':');
    int port = colon ? atoi(colon + 1) : 8725;
    if (colon)
        *colon = 0;
    int rc = 0;
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(s.http, host, (ev_uint16_t)port);
    if (!bound) {
        engine_logf(e, "error", "cannot listen on %s: %s", e->cfg.listen, strerror(errno));
        rc = 1;
        goto out;
    }
    httpguard_watch_listener(s.guard, bound);
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0 && strcmp(host, "::1") != 0)
        engine_logf(e, "warn", "listening on %s: reachable from other machines", e->cfg.listen);
    s.tick = evtimer_new(s.base, on_tick, &s);
    event_priority_set(s.tick, 2);
    engine_attach(e, s.base, work_due, &s);
    s.flush = event_new(s.base, -1, 0, on_flush, &s);
    s.ingest_next = evtimer_new(s.base, ingest_slice, &s);
    int commit_fd = store_commit_fd(e->st);
    if (commit_fd >= 0) {
        s.committed = event_new(s.base, commit_fd, EV_READ | EV_PERSIST, on_committed, &s);
        event_add(s.committed, NULL);
        /* commits sync on their thread: /metrics reads beside them */
        char *rerr = NULL;
        s.reader = store_open_reader(e->db_path, 0, &rerr);
        if (!s.reader) {
            engine_logf(e, "warn", "no read-only connection for /metrics (it waits for commits): %s", rerr);
            free(rerr);
        }
    }
    s.sigint = evsignal_new(s.base, SIGINT, on_signal, &s);
    s.sigterm = evsignal_new(s.base, SIGTERM, on_signal, &s);
    s.sighup = evsignal_new(s.base, SIGHUP, on_hangup, &s);
    s.drain = evtimer_new(s.base, on_drain, &s);
    event_add(s.sigint, NULL);
    event_add(s.sigterm, NULL);
    event_add(s.sighup, NULL);
    event_active(s.tick, EV_TIMEOUT, 0);
    engine_logf(e, "info", "listening on http://%s (store %s, at most %d connections)", e->cfg.listen, e->db_path,
                lim.max_connections);
    /* systemd (Type=notify): the scripts are loaded and the port is bound */
    sd_notify(0, "READY=1");
    event_base_dispatch(s.base);
    commit_settle(&s);
    if (s.in_tx)
        on_flush(-1, 0, &s);
out:
    engine_detach(e);
    if (s.tick)
        event_free(s.tick);
    if (s.flush)
        event_free(s.flush);
    if (s.ingest_next)
        event_free(s.ingest_next);
    if (s.committed)
        event_free(s.committed);
    store_close(s.reader);
    if (s.sigint)
        event_free(s.sigint);
    if (s.sigterm)
        event_free(s.sigterm);
    if (s.sighup)
        event_free(s.sighup);
    if (s.drain)
        event_free(s.drain);
    evhttp_free(s.http);
    httpguard_free(s.guard);
    event_base_free(s.base);
    logger_flush(1);
    free(s.token);
    free(s.scripts_error);
    answer_metrics = NULL;
    return rc;
}
