/* fetch — guarded, asynchronous, durable GETs (see fetch.h).
 *
 * The file is in four parts: the guard (URL, host, connect address), one
 * request (its easy handle and the result it becomes), storing an answer
 * into its instance, and the passes that start requests — on the loop, or
 * blocking when there is none. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "fetch.h"
#include "instance.h"
#include "json.h"
#include "netloop.h"
#include "util.h"

#define FETCH_MAX_BODY (1 << 20)
#define FETCH_CONNECT_TIMEOUT_MS 3000L
#define FETCH_TIMEOUT_MS 10000L
#define FETCH_MAX_IN_FLIGHT 64      /* requests on the loop at once; the rest wait their turn */
#define FETCH_HOST_CONNECTIONS 16L

/* --- the guard ---------------------------------------------------------- */

int fetch_host_allowed(engine *e, const char *host)
{
    for (char **p = e->cfg.http_allow; p && *p; p++) {
        const char *rule = *p;
        if (strncmp(rule, "*.", 2) == 0) {
            size_t hl = strlen(host), rl = strlen(rule + 1);   /* ".x.com" */
            if (hl > rl && strcasecmp(host + hl - rl, rule + 1) == 0)
                return 1;
        } else if (strcasecmp(rule, host) == 0) {
            return 1;
        }
    }
    return 0;
}

int fetch_check_url(engine *e, const char *url, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(err, errlen, "'%s' is not a URL", url);
    } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(err, errlen, "'%s': only http and https are allowed", url);
    } else if (!fetch_host_allowed(e, host)) {
        snprintf(err, errlen, "host '%s' is not in http_allow (tend.lua)", host);
    } else {
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* What an IPv4 address (host order) is, when it is not a public one. */
static const char *v4_refused(uint32_t a)
{
    static const struct { uint32_t net, mask; const char *why; } special[] = {
        {0x00000000, 0xff000000, "unspecified"},        /* 0/8 "this network" */
        {0x0a000000, 0xff000000, "private"},            /* 10/8 */
        {0x64400000, 0xffc00000, "shared address space"}, /* 100.64/10 */
        {0x7f000000, 0xff000000, "loopback"},           /* 127/8 */
        {0xa9fe0000, 0xffff0000, "link-local"},         /* 169.254/16 */
        {0xac100000, 0xfff00000, "private"},            /* 172.16/12 */
        {0xc0000000, 0xffffff00, "special-purpose"},    /* 192.0.0/24 */
        {0xc0000200, 0xffffff00, "documentation"},      /* 192.0.2/24 */
        {0xc0a80000, 0xffff0000, "private"},            /* 192.168/16 */
        {0xc6120000, 0xfffe0000, "benchmarking"},       /* 198.18/15 */
        {0xc6336400, 0xffffff00, "documentation"},      /* 198.51.100/24 */
        {0xcb007100, 0xffffff00, "documentation"},      /* 203.0.113/24 */
        {0xe0000000, 0xf0000000, "multicast"},          /* 224/4 */
        {0xf0000000, 0xf0000000, "reserved"},           /* 240/4, broadcast */
    };
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if ((a & special[i].mask) == special[i].net)
            return special[i].why;
    return NULL;
}

static uint32_t v4_at(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* What an IPv6 address is, when it is not a public one; an IPv4 address
 * carried inside one is judged as IPv4 (*v4 set to it). */
static const char *v6_refused(const unsigned char *b, uint32_t *v4, int *has_v4)
{
    static const unsigned char zero[16];
    *has_v4 = 0;
    if (memcmp(b, zero, 16) == 0)
        return "unspecified";
    if (memcmp(b, zero, 15) == 0 && b[15] == 1)
        return "loopback";
    if (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff) {   /* ::ffff:a.b.c.d mapped */
        *v4 = v4_at(b + 12), *has_v4 = 1;
        const char *why = v4_refused(*v4);
        return why ? why : NULL;
    }
    if (memcmp(b, zero, 12) == 0) {   /* ::a.b.c.d, the old compatible form */
        *v4 = v4_at(b + 12), *has_v4 = 1;
        return v4_refused(*v4) ? v4_refused(*v4) : "deprecated IPv4-compatible";
    }
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (memcmp(b, nat64, 12) == 0) {   /* 64:ff9b::/96: the translator reaches the IPv4 one */
        *v4 = v4_at(b + 12), *has_v4 = 1;
        return v4_refused(*v4);
    }
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1)
        return "local-use NAT64";
    if (b[0] == 0x20 && b[1] == 0x02) {   /* 2002::/16, 6to4: the IPv4 one follows */
        *v4 = v4_at(b + 2), *has_v4 = 1;
        return v4_refused(*v4);
    }
    if ((b[0] & 0xfe) == 0xfc)
        return "unique-local";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return "site-local";
    if (b[0] == 0xff)
        return "multicast";
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return "documentation";
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02)   /* 2001::/23, Teredo included */
        return "special-purpose";
    if (b[0] == 0x01 && memcmp(b + 1, zero, 7) == 0)   /* 100::/64 */
        return "discard-only";
    return NULL;
}

/* 1 if an entry of `allow` is this very address. */
static int named_literally(char *const *allow, int family, const void *bytes)
{
    for (char *const *p = allow; p && *p; p++) {
        unsigned char buf[16];
        const char *s = *p;
        char bare[64];
        size_t n = strlen(s);
        if (n >= 2 && n < sizeof bare && s[0] == '[' && s[n - 1] == ']') {   /* "[::1]" */
            snprintf(bare, sizeof bare, "%.*s", (int)(n - 2), s + 1);
            s = bare;
        }
        if (inet_pton(family, s, buf) == 1 && memcmp(buf, bytes, family == AF_INET ? 4 : 16) == 0)
            return 1;
    }
    return 0;
}

const char *fetch_address_refused(char *const *allow, const struct sockaddr *addr, char *text,
                                  size_t textlen)
{
    if (textlen)
        text[0] = 0;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)textlen);
        const char *why = v4_refused(ntohl(in->sin_addr.s_addr));
        return why && !named_literally(allow, AF_INET, &in->sin_addr) ? why : NULL;
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)textlen);
        uint32_t v4 = 0;
        int has_v4 = 0;
        const char *why = v6_refused(in6->sin6_addr.s6_addr, &v4, &has_v4);
        if (!why || named_literally(allow, AF_INET6, &in6->sin6_addr))
            return NULL;
        uint32_t net = htonl(v4);
        if (has_v4 && named_literally(allow, AF_INET, &net))
            return NULL;
        return why;
    }
    return "not an internet address";
}

/* --- one request --------------------------------------------------------- */

struct fetcher;

struct request {
    struct fetcher *f;
    struct request *prev, *next;   /* in flight */
    engine *e;
    int64_t instance;
    int step;
    char *url;
    CURL *easy;
    strbuf body;
    int too_big;
    strbuf refused;             /* addresses the guard refused, "a (why), b (why)" */
    int tried;                  /* an address passed the guard (so a failure is the network's) */
    char errbuf[CURL_ERROR_SIZE];
    cJSON *result;              /* once it ended */
};

struct fetcher {
    engine *e;
    struct netloop *net;
    struct event *flush;        /* stores ended requests, once per loop turn */
    struct request *active;
    int in_flight;
    struct request **done;
    int ndone, capdone;
};

static void request_free(struct request *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    strbuf_free(&r->body);
    strbuf_free(&r->refused);
    cJSON_Delete(r->result);
    free(r->url);
    free(r);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct request *r = ud;
    if (r->body.len + size * n > FETCH_MAX_BODY) {
        r->too_big = 1;
        return 0;
    }
    strbuf_add(&r->body, p, size * n);
    return size * n;
}

/* CURLOPT_OPENSOCKETFUNCTION: the address is known here, the connection
 * not yet made. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct request *r = clientp;
    if (purpose == CURLSOCKTYPE_IPCXN) {
        char text[INET6_ADDRSTRLEN + 1];
        const char *why = fetch_address_refused(r->e->cfg.http_allow, &a->addr, text, sizeof text);
        if (why) {
            strbuf_printf(&r->refused, "%s%s (%s)", r->refused.len ? ", " : "", text, why);
            return CURL_SOCKET_BAD;
        }
        r->tried = 1;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static struct request *request_new(engine *e, int64_t instance, int step, const char *url)
{
    struct request *r = xcalloc(1, sizeof *r);
    r->e = e;
    r->instance = instance;
    r->step = step;
    r->url = xstrdup(url);
    strbuf_init(&r->body);
    strbuf_init(&r->refused);
    CURL *c = r->easy = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");   /* no proxy from the environment: the guard sees the real peer */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, FETCH_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)FETCH_MAX_BODY);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tend/0.1");
    return r;
}

/* {error = message}; takes the message. */
static cJSON *error_result(char *message)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "error", message);
    free(message);
    return r;
}

static cJSON *response(long status, const char *text, size_t len)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "status", (double)status);
    cJSON_AddStringToObject(r, "body", text ? text : "");
    char err[64];
    cJSON *j = text && len ? json_parse(text, len, err, sizeof err) : NULL;
    if (j)
        cJSON_AddItemToObject(r, "json", j);
    return r;
}

/* What an ended transfer becomes. */
static void request_finish(struct request *r, CURLcode rc)
{
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        r->result = response(status, r->body.s, r->body.len);
    } else if (r->refused.len && !r->tried && rc == CURLE_COULDNT_CONNECT) {
        char *host = NULL;
        CURLU *u = curl_url();
        if (curl_url_set(u, CURLUPART_URL, r->url, 0) == CURLUE_OK)
            curl_url_get(u, CURLUPART_HOST, &host, 0);
        r->result = error_result(xasprintf("GET %s refused: %s resolves to %s; http_allow (tend.lua) does not name that address",
                                           r->url, host ? host : "the host", r->refused.s));
        curl_free(host);
        curl_url_cleanup(u);
    } else if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        r->result = error_result(xasprintf("GET %s: body larger than 1 MiB", r->url));
    } else {
        r->result = error_result(xasprintf("GET %s: %s", r->url, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc)));
    }
}

/* A sim: the stubs are the whole world. */
static cJSON *stub_answer(engine *e, const char *url)
{
    const cJSON *stub = cJSON_GetObjectItemCaseSensitive(e->http_stubs, url);
    if (!stub)
        return error_result(xasprintf("no stub for %s (use sim:stub_http)", url));
    if (cJSON_IsString(stub))
        return response(200, stub->valuestring, strlen(stub->valuestring));
    cJSON *out = cJSON_Duplicate(stub, 1);
    if (!cJSON_GetObjectItemCaseSensitive(out, "status"))
        cJSON_AddNumberToObject(out, "status", 200);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(out, "body");
    if (cJSON_IsString(body) && !cJSON_GetObjectItemCaseSensitive(out, "json")) {
        char jerr[64];
        cJSON *j = json_parse(body->valuestring, strlen(body->valuestring), jerr, sizeof jerr);
        if (j)
            cJSON_AddItemToObject(out, "json", j);
    }
    return out;
}

/* --- storing an answer ------------------------------------------------------ */

int fetch_queue(engine *e, int64_t id, int step, const char *url)
{
    store_stmt *s = store_sql(e->st, "INSERT INTO fetches (instance, step, url, since) VALUES (?, ?, ?, ?)"
                                     " ON CONFLICT DO NOTHING");
    store_bind_int(s, 1, id);
    store_bind_int(s, 2, step);
    store_bind_text(s, 3, url, -1);
    store_bind_int(s, 4, engine_now(e));
    return store_run(s);
}

int fetch_cancel(engine *e, int64_t id)
{
    store_stmt *s = store_sql(e->st, "DELETE FROM fetches WHERE instance = ?");
    store_bind_int(s, 1, id);
    return store_run(s);
}

/* The answer goes into the instance (in the caller's transaction): the row
 * leaves, the instance wakes and its replay takes the result. A row already
 * gone (answered before, or the instance ended) is left alone. */
static int apply(engine *e, int64_t id, int step, const cJSON *result)
{
    store_stmt *s = store_sql(e->st, "DELETE FROM fetches WHERE instance = ? AND step = ?");
    store_bind_int(s, 1, id);
    store_bind_int(s, 2, step);
    if (store_run(s) != 0)
        return -1;
    if (store_changes(e->st) == 0)
        return 0;
    return instance_wake_fetched(e, id, step, result);
}

/* --- the loop ------------------------------------------------------------------ */

static int in_flight_already(struct fetcher *f, int64_t id, int step)
{
    for (struct request *r = f ? f->active : NULL; r; r = r->next)
        if (r->instance == id && r->step == step)
            return 1;
    return 0;
}

static void request_done(CURL *easy, CURLcode rc, void *ud)
{
    (void)easy;
    struct request *r = ud;
    struct fetcher *f = r->f;
    request_finish(r, rc);
    if (r->prev)
        r->prev->next = r->next;
    else
        f->active = r->next;
    if (r->next)
        r->next->prev = r->prev;
    f->in_flight--;
    if (f->ndone == f->capdone)
        f->done = xrealloc(f->done, (size_t)(f->capdone = f->capdone ? f->capdone * 2 : 16) * sizeof *f->done);
    f->done[f->ndone++] = r;
    event_active(f->flush, EV_TIMEOUT, 0);
}

/* Stores the answers of this loop turn in one transaction, then asks the
 * loop's owner for a pass: the woken instances' sends and events, and the
 * requests that waited for a free slot. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fetcher *f = arg;
    engine *e = f->e;
    if (!f->ndone)
        return;
    int rc = store_begin(e->st);
    for (int i = 0; i < f->ndone && rc == 0; i++)
        rc = apply(e, f->done[i]->instance, f->done[i]->step, f->done[i]->result);
    for (int i = 0; i < f->ndone; i++)
        request_free(f->done[i]);
    f->ndone = 0;
    if (rc == 0)
        rc = store_commit(e->st);
    else
        store_rollback(e->st);
    if (rc != 0)   /* the rows stay: the next pass sends them again */
        engine_logf(e, "error", "storing http_get answers failed (they will be asked again): %s",
                    store_errmsg(e->st));
    if (e->work_due)
        e->work_due(e->work_due_ud);
}

int fetch_attach(engine *e, struct event_base *base)
{
    if (e->fetch)
        return 0;
    struct fetcher *f = xcalloc(1, sizeof *f);
    f->e = e;
    f->net = netloop_new(base, FETCH_HOST_CONNECTIONS);
    if (!f->net) {
        free(f);
        return -1;
    }
    f->flush = event_new(base, -1, 0, on_flush, f);
    e->fetch = f;
    return 0;
}

int fetch_in_flight(engine *e)
{
    return e->fetch ? e->fetch->in_flight + e->fetch->ndone : 0;
}

static int busy(void *ud)
{
    struct fetcher *f = ud;
    return f->in_flight + f->ndone > 0;
}

int fetch_wait(engine *e, int timeout_ms)
{
    return e->fetch ? netloop_wait(e->fetch->net, busy, e->fetch, timeout_ms) : 0;
}

void fetch_free(engine *e)
{
    struct fetcher *f = e->fetch;
    if (!f)
        return;
    while (f->active) {
        struct request *r = f->active;
        f->active = r->next;
        netloop_remove(f->net, r->easy);
        request_free(r);
    }
    for (int i = 0; i < f->ndone; i++)
        request_free(f->done[i]);
    free(f->done);
    if (f->flush)
        event_free(f->flush);
    netloop_free(f->net);
    free(f);
    e->fetch = NULL;
}

/* --- the pass ------------------------------------------------------------------- */

int64_t fetch_pending(engine *e)
{
    return store_count(e->st, "SELECT COUNT(*) FROM fetches");
}

int fetch_run_due(engine *e, int max)
{
    struct fetcher *f = e->fetch;
    int sim = e->http_stubs != NULL;
    if (f && !sim && f->in_flight >= FETCH_MAX_IN_FLIGHT)
        return 0;
    /* None asked (nearly every pass): one step down the key, where the
     * query below sorts the table into a temporary b-tree even when empty. */
    store_stmt *any = store_sql(e->st, "SELECT 1 FROM fetches LIMIT 1");
    int found = store_step(any);
    if (found == STORE_DONE)
        return 0;
    if (found == STORE_ROW)
        store_reset(any);
    /* The oldest first; those in flight are among them and skipped. */
    store_stmt *s = store_sql(e->st, "SELECT instance, step, url FROM fetches ORDER BY since, instance, step LIMIT ?");
    store_bind_int(s, 1, max + (f ? f->in_flight : 0));
    struct pend { int64_t id; int step; char *url; } *p = NULL;
    int n = 0;
    while (store_step(s) == STORE_ROW) {
        int64_t id = store_col_int(s, 0);
        int step = (int)store_col_int(s, 1);
        if (!sim && in_flight_already(f, id, step))
            continue;
        p = xrealloc(p, (size_t)(n + 1) * sizeof *p);
        p[n].id = id;
        p[n].step = step;
        p[n].url = xstrdup(store_col_text(s, 2));
        n++;
    }
    cJSON **answers = n ? xcalloc((size_t)n, sizeof *answers) : NULL;
    int nanswers = 0;
    for (int i = 0; i < n; i++) {
        if (sim) {
            answers[i] = stub_answer(e, p[i].url);
        } else if (f) {
            if (f->in_flight >= FETCH_MAX_IN_FLIGHT)
                continue;
            struct request *r = request_new(e, p[i].id, p[i].step, p[i].url);
            r->f = f;
            if (netloop_add(f->net, r->easy, request_done, r) != 0) {
                request_free(r);
                continue;   /* tried again at the next pass */
            }
            r->next = f->active;
            if (f->active)
                f->active->prev = r;
            f->active = r;
            f->in_flight++;
            continue;
        } else {
            /* No loop (tend ingest, tools): one request at a time, with no
             * transaction open while it runs. */
            struct request *r = request_new(e, p[i].id, p[i].step, p[i].url);
            request_finish(r, curl_easy_perform(r->easy));
            answers[i] = r->result;
            r->result = NULL;
            request_free(r);
        }
        nanswers++;
    }
    int rc = 0, woken = 0;
    if (nanswers) {
        rc = store_begin(e->st);
        for (int i = 0; i < n && rc == 0; i++)
            if (answers[i] && (rc = apply(e, p[i].id, p[i].step, answers[i])) == 0)
                woken++;
        if (rc == 0)
            rc = store_commit(e->st);
        else
            store_rollback(e->st);
        if (rc != 0)
            engine_logf(e, "error", "storing http_get answers failed: %s", store_errmsg(e->st));
    }
    for (int i = 0; i < n; i++) {
        cJSON_Delete(answers ? answers[i] : NULL);
        free(p[i].url);
    }
    free(answers);
    free(p);
    return rc == 0 ? woken : -1;
}
