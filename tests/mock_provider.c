/* mock_provider — a fake message provider for tend's delivery tests and
 * benchmarks: an SMS/email-style HTTP API with idempotency keys, plus an
 * optional minimal SMTP server, both on 127.0.0.1 only. Faults (500, 503,
 * 429, slow replies, dropped connections) come from a seeded PRNG, so a run
 * is reproducible for a given request order. After binding it prints
 * "PORT <n>\n" (and "SMTP <n>\n" with --smtp) on stdout for the harness.
 * Control endpoints (paths starting with "/_"; never faulted, counted or
 * logged): GET /_stats, /_deliveries, /_smtp; POST /_heal turns faults off
 * from then on (a crash test lets tend drain against a healthy provider,
 * keeping the keys seen so far). Options: see usage().
 * With --receipts URL it calls back like a real provider: every delivery
 * gets a "delivered" receipt (and a --open-rate share an "opened" one),
 * POSTed as NDJSON batches to URL (tend's /v1/receipts) every 100 ms, with
 * --receipt-token as the bearer token; a batch that is not answered 202 is
 * sent again with the next one.
 *
 * Build: gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
 *            tests/mock_provider.c -levent -lcjson -o mock_provider */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#define MAX_BODY_SIZE (1024 * 1024)
#define SMTP_MAX_LINE (64 * 1024)         /* pending unterminated input */
#define SMTP_MAX_DATA (16 * 1024 * 1024)  /* one message's DATA */
#define LISTEN_BACKLOG 1024               /* benchmarks open many sockets */
#define LOG_FLUSH_MS 100
#define MAX_FAULTS 16
#define MAX_EVENTS 5                      /* 2 signals, deadline, flush, receipts */

/* ============================== State ================================== */

enum fault { FAULT_500, FAULT_503, FAULT_429, FAULT_SLOW, FAULT_DROP };

struct config {
    int port, retry_after, slow_ms, status_ok, max_seconds;
    int smtp, quiet;
    int record;                 /* keep bodies for /_deliveries, /_smtp */
    double fail_rate;
    uint64_t seed;
    enum fault faults[MAX_FAULTS];
    int nfaults;
    const char *log_path, *reject;
    const char *receipts_url, *receipt_token;
    double open_rate;
};

/* Open-addressing hash set: idempotency key -> seq of its first delivery.
 * A set rather than a scan keeps per-request cost O(1) at benchmark rates;
 * keys are never deleted, so linear probing needs no tombstones. */
struct key_slot {
    char *key;                  /* NULL = empty slot */
    uint64_t hash, first_seq;
};

struct keyset {
    struct key_slot *slots;
    size_t cap, used;           /* cap is a power of two */
};

struct delivery {
    char *key, *path, *body;    /* key is NULL when the request had none */
};

/* A successful reply held back by the "slow" fault. */
struct delayed {
    struct evhttp_request *req;
    struct event *timer;
    int status;
    char *body;
    struct delayed *prev, *next;
};

enum smtp_state { SMTP_CMD, SMTP_AUTH, SMTP_DATA, SMTP_CLOSING };

struct smtp_session {
    struct bufferevent *bev;
    enum smtp_state state;
    int auth_steps;             /* AUTH reply lines still expected */
    char *from;
    cJSON *to;                  /* array of recipient strings */
    struct evbuffer *data;
    struct smtp_session *prev, *next;
};

static struct server {
    struct config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *smtp_listener;
    struct event *events[MAX_EVENTS];
    int nevents;
    FILE *log;
    int log_dirty;
    uint64_t rng;
    uint64_t seq;               /* shared by HTTP requests and SMTP mails */
    struct {
        uint64_t requests, deliveries, replays, faults, rejected, slow;
        uint64_t smtp_messages;
    } stats;
    struct keyset keys;
    struct delivery *deliveries;
    size_t ndeliveries, deliveries_cap;
    cJSON *smtp_messages;
    struct delayed *delayed;
    struct smtp_session *sessions;
    /* receipts waiting to be called back, NDJSON; one POST in flight at most */
    char *receipts;
    size_t receipts_len, receipts_cap;
    int receipt_in_flight;
    struct evhttp_connection *receipt_conn;
    struct evhttp_uri *receipt_uri;
    uint64_t receipts_sent;
} srv;

/* Startup failures and OOM end the process: a test helper has no
 * sensible way to degrade, and the harness sees the exit status. */
static void fatal(const char *what)
{
    fprintf(stderr, "mock_provider: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    if (!(p = realloc(p, n))) fatal("out of memory");
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xrealloc(NULL, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

static void say(const char *what)
{
    if (!srv.cfg.quiet) fprintf(stderr, "mock_provider: %s\n", what);
}

/* Deterministic PRNG (splitmix64): tiny and well spread. The same seed and
 * request order give the same faults, so a failing test is reproducible. */
static uint64_t rng_next(void)
{
    uint64_t z = (srv.rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ============================== Key set ================================ */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static struct key_slot *keyset_slot(struct key_slot *slots, size_t cap,
                                    const char *key, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (slots[i].key &&
           (slots[i].hash != h || strcmp(slots[i].key, key) != 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static void keyset_grow(struct keyset *ks)
{
    size_t cap = ks->cap ? ks->cap * 2 : 1024;
    struct key_slot *slots = xrealloc(NULL, cap * sizeof(*slots));
    memset(slots, 0, cap * sizeof(*slots));
    for (size_t i = 0; i < ks->cap; i++) {
        struct key_slot *old = &ks->slots[i];
        if (old->key) *keyset_slot(slots, cap, old->key, old->hash) = *old;
    }
    free(ks->slots);
    ks->slots = slots;
    ks->cap = cap;
}

/* Returns the first-delivery seq of key, or 0 after inserting key with seq:
 * the caller learns "new" vs "replay" with a single probe. */
static uint64_t keyset_get_or_add(struct keyset *ks, const char *key,
                                  uint64_t seq)
{
    if ((ks->used + 1) * 10 >= ks->cap * 7) keyset_grow(ks); /* load < 70% */
    uint64_t h = hash_key(key);
    struct key_slot *slot = keyset_slot(ks->slots, ks->cap, key, h);
    if (slot->key) return slot->first_seq;
    *slot = (struct key_slot){ xstrdup(key), h, seq };
    ks->used++;
    return 0;
}

/* ================================ Log ==================================
 * NDJSON through stdio buffering: a 100 ms timer flushes it, so a test
 * tailing the file sees lines promptly without a syscall per request. */

static void log_json(cJSON *obj)
{
    char *line = cJSON_PrintUnformatted(obj);
    if (!line) return;
    fputs(line, srv.log);
    fputc('\n', srv.log);
    srv.log_dirty = 1;
    free(line);
}

static void log_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (srv.log_dirty) fflush(srv.log);
    srv.log_dirty = 0;
}

/* Bodies are shown as JSON when they parse (so tests can look inside),
 * else as a string. body must be NUL-terminated. */
static cJSON *body_to_json(const char *body)
{
    cJSON *parsed = cJSON_ParseWithOpts(body, NULL, 1);
    return parsed ? parsed : cJSON_CreateString(body);
}

static void add_string_or_null(cJSON *obj, const char *name, const char *s)
{
    if (s) cJSON_AddStringToObject(obj, name, s);
    else cJSON_AddNullToObject(obj, name);
}

/* evhttp_cmd_type values are the bits 1<<0 .. 1<<8 in this order. */
static const char *method_name(enum evhttp_cmd_type cmd)
{
    static const char *names[] = { "GET", "POST", "HEAD", "PUT", "DELETE",
                                   "OPTIONS", "TRACE", "CONNECT", "PATCH" };
    for (int i = 0; i < 9; i++)
        if ((unsigned)cmd == 1u << i) return names[i];
    return "OTHER";
}

static void log_request(struct evhttp_request *req, uint64_t seq,
                        const char *path, const char *key, int status,
                        const char *body)
{
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddNumberToObject(obj, "n", (double)seq);
    cJSON_AddStringToObject(obj, "method",
                            method_name(evhttp_request_get_command(req)));
    cJSON_AddStringToObject(obj, "path", path);
    add_string_or_null(obj, "key", key);
    cJSON_AddNumberToObject(obj, "status", status);
    cJSON_AddItemToObject(obj, "body", body_to_json(body));
    add_string_or_null(obj, "auth", evhttp_find_header(hdrs, "Authorization"));
    log_json(obj);
    cJSON_Delete(obj);
}

/* ============================ HTTP replies ============================= */

static void send_json(struct evhttp_request *req, int status, const char *json)
{
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req),
                      "Content-Type", "application/json");
    evbuffer_add(out, json, strlen(json));
    evhttp_send_reply(req, status, NULL, out);  /* NULL: standard phrase */
    evbuffer_free(out);
}

/* Timer callback of a slow reply (also called directly at shutdown). If
 * the client hung up during the delay, libevent has detached the request
 * from its connection instead of freeing it, and evhttp_send_reply on a
 * detached request just frees it: so firing late is always safe. */
static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *d = arg;
    (void)fd, (void)what;
    if (d->prev) d->prev->next = d->next;
    else srv.delayed = d->next;
    if (d->next) d->next->prev = d->prev;
    send_json(d->req, d->status, d->body);
    event_free(d->timer);
    free(d->body);
    free(d);
}

/* A timer rather than a sleep, so other connections are served meanwhile. */
static void send_later(struct evhttp_request *req, int status,
                       const char *json, int delay_ms)
{
    struct delayed *d = xrealloc(NULL, sizeof(*d));
    struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };
    *d = (struct delayed){ .req = req, .status = status,
                           .body = xstrdup(json), .next = srv.delayed };
    d->timer = evtimer_new(srv.base, delayed_cb, d);
    if (srv.delayed) srv.delayed->prev = d;
    srv.delayed = d;
    evtimer_add(d->timer, &tv);
}

/* Closing without writing a byte is what a client sees from a provider
 * that crashed mid-request (curl: "Empty reply from server"). Freeing the
 * connection inside its own request callback is fine in libevent: the read
 * path expects the request may be gone, and the bufferevent is refcounted
 * while its callbacks run. */
static void drop_connection(struct evhttp_request *req)
{
    evhttp_connection_free(evhttp_request_get_connection(req));
}

/* ========================== Provider endpoint ========================== */

struct outcome {
    int status;                 /* 0 = drop the connection */
    int delay_ms;
    char body[96];
};

static void record_delivery(const char *key, const char *path,
                            const char *body)
{
    if (!srv.cfg.record) return;
    if (srv.ndeliveries == srv.deliveries_cap) {
        size_t cap = srv.deliveries_cap ? srv.deliveries_cap * 2 : 256;
        srv.deliveries = xrealloc(srv.deliveries,
                                  cap * sizeof(*srv.deliveries));
        srv.deliveries_cap = cap;
    }
    srv.deliveries[srv.ndeliveries++] = (struct delivery){
        key ? xstrdup(key) : NULL, xstrdup(path), xstrdup(body) };
}

static void queue_receipt(const char *key, const char *status, uint64_t seq)
{
    char line[600];
    int n = snprintf(line, sizeof line, "{\"key\":\"%.400s\",\"status\":\"%s\",\"id\":\"mock-%s-%" PRIu64 "\"}\n",
                     key, status, status, seq);
    if (n <= 0 || (size_t)n >= sizeof line) return;
    if (srv.receipts_len + (size_t)n + 1 > srv.receipts_cap) {
        srv.receipts_cap = (srv.receipts_len + (size_t)n + 1) * 2;
        srv.receipts = xrealloc(srv.receipts, srv.receipts_cap);
    }
    memcpy(srv.receipts + srv.receipts_len, line, (size_t)n);
    srv.receipts_len += (size_t)n;
}

/* A success is a delivery unless its key was delivered before, in which
 * case it is a replay answered with the first delivery's id. */
static void succeed(uint64_t seq, const char *key, const char *path,
                    const char *body, struct outcome *o)
{
    uint64_t first = key ? keyset_get_or_add(&srv.keys, key, seq) : 0;
    o->status = srv.cfg.status_ok;
    if (first) {
        srv.stats.replays++;
        snprintf(o->body, sizeof(o->body),
                 "{\"id\":\"m%" PRIu64 "\",\"replayed\":true}", first);
    } else {
        srv.stats.deliveries++;
        snprintf(o->body, sizeof(o->body), "{\"id\":\"m%" PRIu64 "\"}", seq);
        record_delivery(key, path, body);
        if (srv.cfg.receipts_url && key) {
            queue_receipt(key, "delivered", seq);
            if ((double)(rng_next() % 1000000) / 1e6 < srv.cfg.open_rate)
                queue_receipt(key, "opened", seq);
        }
    }
}

/* Rejected requests draw nothing from the PRNG, so --reject doesn't shift
 * which of the other requests get faults. "slow" is a late success and
 * "drop" is status 0. */
static void decide(uint64_t seq, const char *key, const char *path,
                   const char *body, size_t len, struct outcome *o)
{
    static const struct { int status; const char *body; } faults[] = {
        [FAULT_500] = { 500, "{\"error\":\"internal error\"}" },
        [FAULT_503] = { 503, "{\"error\":\"service unavailable\"}" },
        [FAULT_429] = { 429, "{\"error\":\"rate limited\"}" },
        [FAULT_SLOW] = { 0, "" }, [FAULT_DROP] = { 0, "" },
    };
    o->delay_ms = 0;
    if (srv.cfg.reject &&
        memmem(body, len, srv.cfg.reject, strlen(srv.cfg.reject))) {
        srv.stats.rejected++;
        o->status = 400;
        strcpy(o->body, "{\"error\":\"rejected: invalid recipient\"}");
        return;
    }
    if (srv.cfg.fail_rate > 0 &&
        (double)(rng_next() >> 11) * 0x1.0p-53 < srv.cfg.fail_rate) {
        enum fault f = srv.cfg.faults[rng_next() % (uint64_t)srv.cfg.nfaults];
        if (f != FAULT_SLOW) {
            srv.stats.faults++;
            o->status = faults[f].status;
            strcpy(o->body, faults[f].body);
            return;
        }
        srv.stats.slow++;
        o->delay_ms = srv.cfg.slow_ms;
    }
    succeed(seq, key, path, body, o);
}

static void provider_request(struct evhttp_request *req, const char *path)
{
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    const char *key = evhttp_find_header(hdrs, "Idempotency-Key");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    uint64_t seq = ++srv.seq;
    struct outcome o;

    /* Appending a NUL before the pullup yields a C string without copying
     * the body (the input buffer is ours to consume). */
    evbuffer_add(in, "", 1);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    srv.stats.requests++;
    decide(seq, key, path, body, len, &o);
    if (srv.log) log_request(req, seq, path, key, o.status, body);

    if (o.status == 0) {
        drop_connection(req);
    } else if (o.delay_ms > 0) {
        send_later(req, o.status, o.body, o.delay_ms);
    } else {
        if (o.status == 429) {
            char secs[16];
            snprintf(secs, sizeof(secs), "%d", srv.cfg.retry_after);
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "Retry-After", secs);
        }
        send_json(req, o.status, o.body);
    }
}

/* ========================== Control endpoints ========================== */

static void send_cjson(struct evhttp_request *req, cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    send_json(req, 200, text ? text : "null");
    free(text);
    cJSON_Delete(json);
}

static void control_stats(struct evhttp_request *req)
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"requests\":%" PRIu64 ",\"deliveries\":%" PRIu64
             ",\"replays\":%" PRIu64 ",\"faults\":%" PRIu64
             ",\"rejected\":%" PRIu64 ",\"slow\":%" PRIu64
             ",\"smtp_messages\":%" PRIu64 ",\"keys\":%zu"
             ",\"receipt_batches\":%" PRIu64 "}",
             srv.stats.requests, srv.stats.deliveries, srv.stats.replays,
             srv.stats.faults, srv.stats.rejected, srv.stats.slow,
             srv.stats.smtp_messages, srv.keys.used, srv.receipts_sent);
    send_json(req, 200, buf);
}

static void control_deliveries(struct evhttp_request *req)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < srv.ndeliveries; i++) {
        const struct delivery *d = &srv.deliveries[i];
        cJSON *obj = cJSON_CreateObject();
        add_string_or_null(obj, "key", d->key);
        cJSON_AddStringToObject(obj, "path", d->path);
        cJSON_AddItemToObject(obj, "body", body_to_json(d->body));
        cJSON_AddItemToArray(arr, obj);
    }
    send_cjson(req, arr);
}

/* Any path under "/_" is a control path, so unknown ones are a 404 rather
 * than a provider request that would skew the counters. */
static void http_cb(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    int get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;
    (void)arg;
    if (!path || !*path) path = "/";
    if (strncmp(path, "/_", 2) != 0)
        provider_request(req, path);
    else if (get && strcmp(path, "/_stats") == 0)
        control_stats(req);
    else if (get && strcmp(path, "/_deliveries") == 0)
        control_deliveries(req);
    else if (get && strcmp(path, "/_smtp") == 0)
        send_cjson(req, cJSON_Duplicate(srv.smtp_messages, 1));
    else if (evhttp_request_get_command(req) == EVHTTP_REQ_POST && strcmp(path, "/_heal") == 0) {
        srv.cfg.fail_rate = 0;
        send_json(req, 200, "{\"fail_rate\":0}");
    }
    else
        send_json(req, 404, "{\"error\":\"no such control endpoint\"}");
}

/* ================================ SMTP =================================
 * Just enough of RFC 5321 for libcurl's SMTP client: no TLS, AUTH accepted
 * blindly, one line-oriented state machine per connection. */

static void smtp_reply(struct smtp_session *s, const char *text)
{
    bufferevent_write(s->bev, text, strlen(text));
}

static void smtp_reset_transaction(struct smtp_session *s)
{
    free(s->from);
    s->from = NULL;
    cJSON_Delete(s->to);
    s->to = cJSON_CreateArray();
    evbuffer_drain(s->data, evbuffer_get_length(s->data));
}

static void smtp_session_free(struct smtp_session *s)
{
    if (s->prev) s->prev->next = s->next;
    else srv.sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    bufferevent_free(s->bev);
    free(s->from);
    cJSON_Delete(s->to);
    evbuffer_free(s->data);
    free(s);
}

/* "FROM:<a@x> SIZE=1" -> "a@x"; tolerates a missing <...>. */
static char *smtp_address(const char *arg)
{
    const char *lt = strchr(arg, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt) return xstrndup(lt + 1, (size_t)(gt - lt - 1));
    arg += strspn(arg, " ");
    return xstrndup(arg, strcspn(arg, " "));
}

static void smtp_finish_message(struct smtp_session *s)
{
    uint64_t seq = ++srv.seq;
    char reply[64];
    cJSON *msg = cJSON_CreateObject();

    evbuffer_add(s->data, "", 1);       /* NUL-terminate for cJSON */
    cJSON_AddNumberToObject(msg, "n", (double)seq);
    cJSON_AddTrueToObject(msg, "smtp");
    cJSON_AddStringToObject(msg, "from", s->from);
    cJSON_AddItemToObject(msg, "to", s->to);
    s->to = NULL;                       /* now owned by msg */
    cJSON_AddStringToObject(msg, "data",
                            (const char *)evbuffer_pullup(s->data, -1));
    srv.stats.smtp_messages++;
    if (srv.log) log_json(msg);
    if (srv.cfg.record) cJSON_AddItemToArray(srv.smtp_messages, msg);
    else cJSON_Delete(msg);

    smtp_reset_transaction(s);
    snprintf(reply, sizeof(reply), "250 OK queued as m%" PRIu64 "\r\n", seq);
    smtp_reply(s, reply);
}

/* A lone "." ends the message; a leading dot is transparency-unstuffed. */
static void smtp_data_line(struct smtp_session *s, const char *line,
                           size_t len)
{
    if (len == 1 && line[0] == '.') {
        s->state = SMTP_CMD;
        smtp_finish_message(s);
        return;
    }
    if (line[0] == '.') line++, len--;
    evbuffer_add(s->data, line, len);
    evbuffer_add(s->data, "\r\n", 2);
}

/* Credentials are not checked, but libcurl insists on the SASL exchange:
 * LOGIN takes two reply lines, PLAIN one, and an initial response on the
 * AUTH line itself counts as the first. arg is NULL for a reply line. */
static void smtp_auth(struct smtp_session *s, const char *arg)
{
    if (arg) {
        int login = strncasecmp(arg, "LOGIN", 5) == 0;
        s->auth_steps = (login ? 2 : 1) - (strchr(arg, ' ') ? 1 : 0);
    } else {
        s->auth_steps--;
    }
    s->state = s->auth_steps ? SMTP_AUTH : SMTP_CMD;
    if (s->auth_steps == 0)
        smtp_reply(s, "235 Authentication successful\r\n");
    else
        smtp_reply(s, s->auth_steps == 2 ? "334 VXNlcm5hbWU6\r\n"
                                         : "334 UGFzc3dvcmQ6\r\n");
}

static int verb_is(const char *line, const char *verb)
{
    size_t n = strlen(verb);
    return strncasecmp(line, verb, n) == 0 &&
           (line[n] == '\0' || line[n] == ' ');
}

static void smtp_command(struct smtp_session *s, const char *line)
{
    const char *arg = strchr(line, ' ');
    arg = arg ? arg + 1 : "";

    if (verb_is(line, "EHLO")) {
        smtp_reply(s, "250-mock-provider\r\n250-AUTH PLAIN LOGIN\r\n"
                      "250 OK\r\n");
    } else if (verb_is(line, "HELO")) {
        smtp_reply(s, "250 mock-provider\r\n");
    } else if (verb_is(line, "MAIL") && strncasecmp(arg, "FROM:", 5) == 0) {
        smtp_reset_transaction(s);
        s->from = smtp_address(arg + 5);
        smtp_reply(s, "250 OK\r\n");
    } else if (verb_is(line, "RCPT") && strncasecmp(arg, "TO:", 3) == 0) {
        char *rcpt = smtp_address(arg + 3);
        cJSON_AddItemToArray(s->to, cJSON_CreateString(rcpt));
        free(rcpt);
        smtp_reply(s, "250 OK\r\n");
    } else if (verb_is(line, "DATA")) {
        int ready = s->from && cJSON_GetArraySize(s->to) > 0;
        if (ready) s->state = SMTP_DATA;
        smtp_reply(s, ready ? "354 End data with <CR><LF>.<CR><LF>\r\n"
                            : "503 MAIL and RCPT first\r\n");
    } else if (verb_is(line, "RSET")) {
        smtp_reset_transaction(s);
        smtp_reply(s, "250 OK\r\n");
    } else if (verb_is(line, "NOOP")) {
        smtp_reply(s, "250 OK\r\n");
    } else if (verb_is(line, "AUTH")) {
        smtp_auth(s, arg);
    } else if (verb_is(line, "QUIT")) {
        s->state = SMTP_CLOSING;
        smtp_reply(s, "221 Bye\r\n");
    } else {
        smtp_reply(s, "502 Command not implemented\r\n");
    }
}

/* Runs when the output buffer drains: after QUIT we close only once the
 * 221 has really been written. */
static void smtp_write_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    (void)bev;
    if (s->state == SMTP_CLOSING) smtp_session_free(s);
}

static void smtp_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;
    char *line;

    while (s->state != SMTP_CLOSING &&
           (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
        if (s->state == SMTP_DATA) smtp_data_line(s, line, len);
        else if (s->state == SMTP_AUTH) smtp_auth(s, NULL);
        else smtp_command(s, line);
        free(line);
    }
    if (s->state == SMTP_CLOSING) {
        bufferevent_disable(bev, EV_READ);
    } else if (evbuffer_get_length(in) > SMTP_MAX_LINE ||
               evbuffer_get_length(s->data) > SMTP_MAX_DATA) {
        /* Bound memory against a peer that never sends a newline or never
         * ends its DATA; a real server would say 552, we just hang up. */
        say("smtp: input too large, closing");
        smtp_session_free(s);
    }
}

static void smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) smtp_session_free(arg);
}

static void smtp_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                           struct sockaddr *sa, int socklen, void *arg)
{
    struct smtp_session *s = xrealloc(NULL, sizeof(*s));
    (void)lev, (void)sa, (void)socklen, (void)arg;
    *s = (struct smtp_session){ .state = SMTP_CMD, .next = srv.sessions };
    s->bev = bufferevent_socket_new(srv.base, fd, BEV_OPT_CLOSE_ON_FREE);
    s->to = cJSON_CreateArray();
    s->data = evbuffer_new();
    if (srv.sessions) srv.sessions->prev = s;
    srv.sessions = s;
    bufferevent_setcb(s->bev, smtp_read_cb, smtp_write_cb, smtp_event_cb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    smtp_reply(s, "220 mock-provider ESMTP ready\r\n");
}

/* ======================== Startup and shutdown ========================= */

/* Binds 127.0.0.1:port (0 = any free port) with a backlog big enough for
 * benchmark bursts, and reports the port actually bound. */
static struct evconnlistener *listen_local(int port, evconnlistener_cb cb,
                                           int *bound)
{
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    struct evconnlistener *lev = evconnlistener_new_bind(
        srv.base, cb, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        LISTEN_BACKLOG, (struct sockaddr *)&sin, sizeof(sin));
    if (lev) {
        getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&sin, &len);
        *bound = ntohs(sin.sin_port);
    }
    return lev;
}

/* The batch in flight: kept until tend answers 202, so a receipt is never
 * lost while tend restarts (tend deduplicates the repeats by id). */
static char *receipt_batch;
static size_t receipt_batch_len;

static void receipt_done(struct evhttp_request *req, void *arg)
{
    (void)arg;
    srv.receipt_in_flight = 0;
    if (req && evhttp_request_get_response_code(req) == 202) {
        srv.receipts_sent++;
        free(receipt_batch);
        receipt_batch = NULL;
        receipt_batch_len = 0;
    }
}

static void receipt_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (srv.receipt_in_flight) return;
    if (!receipt_batch && srv.receipts_len) {   /* take what queued since */
        receipt_batch = srv.receipts;
        receipt_batch_len = srv.receipts_len;
        srv.receipts = NULL;
        srv.receipts_len = srv.receipts_cap = 0;
    }
    if (!receipt_batch) return;
    if (!srv.receipt_conn) {
        const char *host = evhttp_uri_get_host(srv.receipt_uri);
        int port = evhttp_uri_get_port(srv.receipt_uri);
        srv.receipt_conn = evhttp_connection_base_new(srv.base, NULL, host, (ev_uint16_t)(port > 0 ? port : 80));
        if (!srv.receipt_conn) return;
        evhttp_connection_set_timeout(srv.receipt_conn, 5);
    }
    struct evhttp_request *req = evhttp_request_new(receipt_done, NULL);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char auth[300];
    snprintf(auth, sizeof auth, "Bearer %s", srv.cfg.receipt_token ? srv.cfg.receipt_token : "");
    evhttp_add_header(h, "Host", evhttp_uri_get_host(srv.receipt_uri));
    evhttp_add_header(h, "Authorization", auth);
    evhttp_add_header(h, "Content-Type", "application/x-ndjson");
    evbuffer_add(evhttp_request_get_output_buffer(req), receipt_batch, receipt_batch_len);
    const char *path = evhttp_uri_get_path(srv.receipt_uri);
    if (evhttp_make_request(srv.receipt_conn, req, EVHTTP_REQ_POST, path && *path ? path : "/") == 0)
        srv.receipt_in_flight = 1;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    say(arg);
    event_base_loopbreak(srv.base);
}

/* Every long-lived event goes in srv.events so shutdown can free them all;
 * fd -1 is a timer, otherwise a signal number. */
static void add_event(int fd_or_signal, short flags, int ms,
                      event_callback_fn cb, void *arg)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    struct event *ev = event_new(srv.base, fd_or_signal, flags, cb, arg);
    srv.events[srv.nevents++] = ev;
    event_add(ev, ms ? &tv : NULL);
}

static void server_start(void)
{
    struct evconnlistener *lev;
    int port;

    if (!(srv.base = event_base_new()) || !(srv.http = evhttp_new(srv.base)))
        fatal("libevent init");
    evhttp_set_max_body_size(srv.http, MAX_BODY_SIZE);
    evhttp_set_allowed_methods(srv.http,
        EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
        EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(srv.http, http_cb, NULL);
    if (!(lev = listen_local(srv.cfg.port, NULL, &port)) ||
        !evhttp_bind_listener(srv.http, lev))
        fatal("cannot listen for HTTP");
    printf("PORT %d\n", port);
    if (srv.cfg.smtp) {
        srv.smtp_listener = listen_local(0, smtp_accept_cb, &port);
        if (!srv.smtp_listener) fatal("cannot listen for SMTP");
        printf("SMTP %d\n", port);
    }
    fflush(stdout);

    add_event(SIGTERM, EV_SIGNAL | EV_PERSIST, 0, stop_cb, "SIGTERM, bye");
    add_event(SIGINT, EV_SIGNAL | EV_PERSIST, 0, stop_cb, "SIGINT, bye");
    add_event(-1, 0, srv.cfg.max_seconds * 1000, stop_cb,
              "--max-seconds elapsed, bye");
    if (srv.log) add_event(-1, EV_PERSIST, LOG_FLUSH_MS, log_flush_cb, NULL);
    if (srv.cfg.receipts_url) {
        srv.receipt_uri = evhttp_uri_parse(srv.cfg.receipts_url);
        if (!srv.receipt_uri || !evhttp_uri_get_host(srv.receipt_uri)) fatal("--receipts: not a URL");
        add_event(-1, EV_PERSIST, 100, receipt_flush_cb, NULL);
    }
}

/* Pending slow replies are answered before evhttp_free tears connections
 * down (a detached request would otherwise leak); the rest is plain
 * freeing so ASan's leak check stays quiet after SIGTERM. */
static void server_stop(void)
{
    while (srv.delayed) delayed_cb(-1, 0, srv.delayed);
    evhttp_free(srv.http);
    while (srv.sessions) smtp_session_free(srv.sessions);
    if (srv.smtp_listener) evconnlistener_free(srv.smtp_listener);
    for (int i = 0; i < srv.nevents; i++) event_free(srv.events[i]);
    if (srv.receipt_conn) evhttp_connection_free(srv.receipt_conn);
    if (srv.receipt_uri) evhttp_uri_free(srv.receipt_uri);
    free(srv.receipts);
    free(receipt_batch);
    event_base_free(srv.base);
    libevent_global_shutdown();

    if (srv.log) fclose(srv.log);
    for (size_t i = 0; i < srv.ndeliveries; i++) {
        free(srv.deliveries[i].key);
        free(srv.deliveries[i].path);
        free(srv.deliveries[i].body);
    }
    free(srv.deliveries);
    for (size_t i = 0; i < srv.keys.cap; i++) free(srv.keys.slots[i].key);
    free(srv.keys.slots);
    cJSON_Delete(srv.smtp_messages);
}

/* ============================ Command line ============================= */

static void usage(void)
{
    fprintf(stderr,
        "usage: mock_provider [--port N] [--log FILE] [--fail-rate F]\n"
        "         [--seed N] [--faults 500,503,429,slow,drop]\n"
        "         [--retry-after S] [--slow-ms M] [--reject SUBSTR]\n"
        "         [--status-ok N] [--smtp] [--no-record]\n"
        "         [--max-seconds S] [--quiet]\n"
        "         [--receipts URL [--receipt-token T] [--open-rate F]]\n");
    exit(2);
}

static long parse_long(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < min || v > max) usage();
    return v;
}

static double parse_rate(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= 0 && v <= 1)) usage();
    return v;
}

static void parse_faults(const char *list, struct config *cfg)
{
    static const char *names[] = {
        [FAULT_500] = "500", [FAULT_503] = "503", [FAULT_429] = "429",
        [FAULT_SLOW] = "slow", [FAULT_DROP] = "drop",
    };
    cfg->nfaults = 0;
    while (*list) {
        size_t len = strcspn(list, ","), f = 0;
        while (f <= FAULT_DROP &&
               !(strlen(names[f]) == len && !strncmp(names[f], list, len)))
            f++;
        if (f > FAULT_DROP || cfg->nfaults == MAX_FAULTS) usage();
        cfg->faults[cfg->nfaults++] = (enum fault)f;
        list += len + (list[len] == ',');
    }
    if (cfg->nfaults == 0) usage();
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    *cfg = (struct config){ .seed = 1, .retry_after = 2, .slow_ms = 1500,
                            .status_ok = 200, .record = 1,
                            .max_seconds = 600 };
    parse_faults("503,429,drop", cfg);

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = argv[i + 1];
        if (!strcmp(opt, "--smtp")) { cfg->smtp = 1; continue; }
        if (!strcmp(opt, "--quiet")) { cfg->quiet = 1; continue; }
        if (!strcmp(opt, "--no-record")) { cfg->record = 0; continue; }
        if (!val) usage();
        i++;
        if (!strcmp(opt, "--port")) cfg->port = (int)parse_long(val, 0, 65535);
        else if (!strcmp(opt, "--log")) cfg->log_path = val;
        else if (!strcmp(opt, "--fail-rate")) cfg->fail_rate = parse_rate(val);
        else if (!strcmp(opt, "--seed"))
            cfg->seed = (uint64_t)parse_long(val, 0, LONG_MAX);
        else if (!strcmp(opt, "--faults")) parse_faults(val, cfg);
        else if (!strcmp(opt, "--retry-after"))
            cfg->retry_after = (int)parse_long(val, 0, 86400);
        else if (!strcmp(opt, "--slow-ms"))
            cfg->slow_ms = (int)parse_long(val, 0, 3600 * 1000);
        else if (!strcmp(opt, "--reject")) cfg->reject = *val ? val : NULL;
        else if (!strcmp(opt, "--status-ok"))
            cfg->status_ok = (int)parse_long(val, 100, 599);
        else if (!strcmp(opt, "--receipts")) cfg->receipts_url = val;
        else if (!strcmp(opt, "--receipt-token")) cfg->receipt_token = val;
        else if (!strcmp(opt, "--open-rate")) cfg->open_rate = parse_rate(val);
        else if (!strcmp(opt, "--max-seconds"))
            cfg->max_seconds = (int)parse_long(val, 1, 7 * 86400);
        else
            usage();
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv, &srv.cfg);
    signal(SIGPIPE, SIG_IGN);   /* a client hanging up must not kill us */
    srv.rng = srv.cfg.seed;
    if (srv.cfg.log_path && !(srv.log = fopen(srv.cfg.log_path, "a")))
        fatal(srv.cfg.log_path);
    if (srv.log) setvbuf(srv.log, NULL, _IOFBF, 1 << 16);
    srv.smtp_messages = cJSON_CreateArray();
    server_start();
    say("ready");
    event_base_dispatch(srv.base);
    server_stop();
    return 0;
}
