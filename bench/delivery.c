/* bench/delivery — delivery to a local HTTP provider, status durable.
 *
 * DESIGN "Targets": delivery to a local HTTP provider ≥ 30k messages/s with
 * every status durably recorded; libcurl multi to a loopback server is the
 * ceiling (~70k requests/s on the reference machine). This measures both on
 * this machine and prints the ratio. Figures only, never pass/fail.
 *
 *  1. starts tests/mock_provider (--no-record --quiet) on 127.0.0.1;
 *  2. creates N customers (customer_upsert) and N queued outbox rows with
 *     outbox_send() — the function a journey's send() calls: template
 *     rendered, policy checked, cost counted, row + outbox_due entry
 *     written — in store batches of 10,000 rows per transaction. (Not through
 *     events and journeys: that path is another benchmark's; this one
 *     measures delivery.) Setup time is printed apart;
 *  3. delivers them all through the ASYNCHRONOUS dispatcher (dispatch_attach:
 *     libcurl multi on libevent, keep-alive, channel concurrency C), with the
 *     store at synchronous=FULL (the default; --synchronous normal to compare):
 *     a message counts once its `sent` status is committed;
 *  4. sends the same number of requests with raw libcurl multi (a fresh mock
 *     of the same settings, same concurrency, keep-alive, the same JSON body
 *     and headers as tend's, C reused easy handles, the URL parsed once as
 *     tend parses it (CURLOPT_CURLU), no store) and prints
 *     tend/raw. libcurl is set up as `tend` sets it up (netloop_global_init:
 *     its memory through runtime/pool.h), for both sides, so the ratio
 *     compares the same use of libcurl.
 *
 * Each side also prints its CPU time a message (and the mock's), and tend
 * the time it spent in COMMIT (its fsyncs): on a shared machine the CPU a
 * message is the steadier figure, and the COMMIT time shows how much of
 * the wall time went to the disk.
 *
 * Build: `make build/release/bench_delivery build/release/mock_provider`
 * (the Makefile's bench_% rule), or by hand from the repository root:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O2 -Iruntime -Ibuild/release \
 *      $(pkg-config --cflags lua5.4 libevent sqlite3 libcurl libcjson) \
 *      -o build/release/bench_delivery bench/delivery.c build/release/libtend.a \
 *      $(pkg-config --libs lua5.4 libevent sqlite3 libcurl libcjson) -lm
 *
 * Run (bench/run.sh: `$B/bench_delivery "$N_DEL"`):
 *
 *   build/release/bench_delivery [N | -n N] [-c 64] [--synchronous full|normal]
 *                                [--mock build/release/mock_provider] [--db PATH]
 *                                [--only tend|raw]
 *
 * N defaults to 100000.
 *
 * The mock is $TEND_BUILD/mock_provider when TEND_BUILD is set, else
 * build/release/mock_provider. The database is a temporary file under
 * $TMPDIR (default /tmp; it must be a real disk for synchronous=FULL to mean
 * anything), removed at the end unless --db is given. Exit status 0 unless
 * something could not run (or not every message was delivered). */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "clock.h"
#include "customer.h"
#include "dispatch.h"
#include "engine.h"
#include "netloop.h"
#include "outbox.h"
#include "store.h"
#include "util.h"

#define SETUP_BATCH 10000

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_delivery: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* --- the mock provider ---------------------------------------------------- */

struct mock {
    pid_t pid;
    int port;
};

static void mock_start(struct mock *m, const char *path)
{
    const char *argv[] = {path, "--no-record", "--quiet", "--max-seconds", "3600", NULL};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 1);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    m->pid = pid;
    m->port = 0;
    char buf[128];
    size_t len = 0;
    double until = wall() + 10;
    while (!(memchr(buf, '\n', len) && sscanf(buf, "PORT %d", &m->port) == 1)) {
        struct pollfd p = {fds[0], POLLIN, 0};
        int left = (int)((until - wall()) * 1000);
        if (left <= 0 || poll(&p, 1, left) < 0)
            die("%s did not report its port", path);
        ssize_t k = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (k <= 0)
            die("%s exited before reporting its port", path);
        len += (size_t)k;
        buf[len] = 0;
    }
    close(fds[0]);
}

/* CPU seconds (user + system) the mock has used so far: whether the
 * provider or the client is the bottleneck shows here, with 2 shared cores. */
static double mock_cpu(const struct mock *m)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)m->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    const char *p = strrchr(buf, ')');   /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of this process so far. */
static double self_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void mock_stop(struct mock *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGTERM);
    while (waitpid(m->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    m->pid = 0;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    strbuf_add(ud, p, size * n);
    return size * n;
}

static long long mock_stat(const struct mock *m, const char *field)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/_stats", m->port);
    strbuf b;
    strbuf_init(&b);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    long long v = -1;
    cJSON *j = rc == CURLE_OK && b.s ? cJSON_Parse(b.s) : NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, field);
    if (cJSON_IsNumber(f))
        v = (long long)f->valuedouble;
    cJSON_Delete(j);
    strbuf_free(&b);
    return v;
}

/* --- tend ------------------------------------------------------------------ */

static const char SCRIPT[] =
    "template 'shipped' {\n"
    "  category = 'transactional',\n"
    "  sms = '{{ name | default: \"friend\" }}, your order {{order}} has shipped: it should reach you on {{day}}.',\n"
    "}\n";

static void log_quiet(void *ud, const char *level, const char *msg)
{
    (void)ud;
    if (strcmp(level, "error") == 0 || strcmp(level, "warn") == 0)
        fprintf(stderr, "tend %s: %s\n", level, msg);
}

struct setup_ctx {
    engine *e;
    int from, to;
};

static int add_customers(store *st, void *ud)
{
    (void)st;
    struct setup_ctx *c = ud;
    char json[160], err[256];
    for (int i = c->from; i < c->to; i++) {
        snprintf(json, sizeof json,
                 "{\"id\":\"c%07d\",\"name\":\"Customer %d\",\"phone\":\"+86138%08d\",\"city\":\"Hangzhou\"}", i,
                 i, i);
        cJSON *o = cJSON_Parse(json);
        int created;
        int rc = customer_upsert(c->e, o, 0, &created, err, sizeof err);
        cJSON_Delete(o);
        if (rc != 0) {
            fprintf(stderr, "customer_upsert: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static int add_messages(store *st, void *ud)
{
    (void)st;
    struct setup_ctx *c = ud;
    char id[16], order[16], err[256];
    cJSON *vars = cJSON_CreateObject();
    cJSON *ord = cJSON_AddStringToObject(vars, "order", "");
    cJSON_AddStringToObject(vars, "day", "Thursday");
    int rc = 0;
    for (int i = c->from; i < c->to && rc == 0; i++) {
        snprintf(id, sizeof id, "c%07d", i);
        snprintf(order, sizeof order, "SO%08d", i);
        cJSON_SetValuestring(ord, order);
        /* instance 0, step i: the idempotency key "0-i" is unique per row */
        struct send_request r = {.instance = 0, .step = i, .journey = "bench", .customer = id,
                                 .channel = "sms", .template_name = "shipped", .vars = vars};
        struct send_result res;
        rc = outbox_send(c->e, &r, &res, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "outbox_send: %s\n", err);
        else if (strcmp(res.status, "queued") != 0) {
            fprintf(stderr, "outbox_send: status %s (%s)\n", res.status, res.error);
            rc = -1;
        }
    }
    cJSON_Delete(vars);
    return rc;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* Returns messages/s, or -1. */
static double bench_tend(const char *mock_path, int n, int conc, int sync_full, const char *db_arg)
{
    struct mock m;
    mock_start(&m, mock_path);
    char db[512];
    if (db_arg) {
        snprintf(db, sizeof db, "%s", db_arg);
        unlink(db);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(db, sizeof db, "%s/bench_delivery_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        int fd = mkstemp(db);
        if (fd < 0)
            die("mkstemp %s: %s", db, strerror(errno));
        close(fd);
    }
    char cfg_json[1024];
    snprintf(cfg_json, sizeof cfg_json,
             "{\"channels\":{\"sms\":{\"type\":\"http\",\"url\":\"http://127.0.0.1:%d/sms\",\"price\":0.05,"
             "\"per\":\"segment\",\"concurrency\":%d,\"timeout\":30}},"
             "\"timezone\":\"Asia/Shanghai\",\"quiet_hours\":false,\"caps\":false,\"synchronous\":\"%s\"}",
             m.port, conc, sync_full ? "full" : "normal");
    cJSON *cfg = cJSON_Parse(cfg_json);
    tclock *clk = clock_new_real();
    struct engine_options o = {.db_path = db, .clock = clk, .config = cfg, .log = log_quiet};
    char *err = NULL;
    engine *e = engine_open(&o, &err);
    if (!e)
        die("engine_open: %s", err ? err : "?");
    char *errors = NULL;
    if (engine_load_source(e, "bench.lua", SCRIPT, sizeof SCRIPT - 1, &errors) != 0)
        die("load: %s", errors ? errors : "?");

    double t0 = wall();
    for (int i = 0; i < n; i += SETUP_BATCH) {
        struct setup_ctx c = {e, i, i + SETUP_BATCH < n ? i + SETUP_BATCH : n};
        if (store_batch(e->st, add_customers, &c) != 0)
            die("creating customers failed: %s", store_errmsg(e->st));
    }
    double t1 = wall();
    for (int i = 0; i < n; i += SETUP_BATCH) {
        struct setup_ctx c = {e, i, i + SETUP_BATCH < n ? i + SETUP_BATCH : n};
        if (store_batch(e->st, add_messages, &c) != 0)
            die("queueing messages failed: %s", store_errmsg(e->st));
    }
    double t2 = wall();
    long long queued = store_count(e->st, "SELECT COUNT(*) FROM outbox_due");
    printf("delivery: setup %d customers in %.2f s, %lld queued rows (outbox_send, %d per transaction) in %.2f s\n",
           n, t1 - t0, queued, SETUP_BATCH, t2 - t1);
    fflush(stdout);

    /* Delivery: the dispatcher drives itself (a finished transfer is stored
     * in that loop turn's transaction, then more rows are claimed); the
     * ticker and engine_run_due() are what `tend run` adds around it. */
    struct event_base *base = event_base_new();
    dispatch_attach(e, base);
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 100000};
    event_add(tick, &tv);
    double start = wall(), limit = start + 600;
    double cpu0 = self_cpu(), mcpu0 = mock_cpu(&m), commit0 = store_commit_ms(e->st);
    if (engine_run_due(e, engine_now(e)) < 0)
        die("engine_run_due: %s", store_errmsg(e->st));
    while (e->stats.deliveries < n && wall() < limit) {
        event_base_loop(base, EVLOOP_ONCE);
        if (dispatch_in_flight(e) == 0 && engine_run_due(e, engine_now(e)) < 0)
            die("engine_run_due: %s", store_errmsg(e->st));
    }
    double took = wall() - start;
    double cpu = self_cpu() - cpu0, mcpu = mock_cpu(&m) - mcpu0, commit_s = (store_commit_ms(e->st) - commit0) / 1e3;
    event_free(tick);

    long long sent = store_count(e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'");
    long long delivered = mock_stat(&m, "deliveries");
    double rate = took > 0 ? sent / took : 0;
    printf("delivery: %lld messages in %.2f s = %.0f msg/s (status durable, synchronous=%s, concurrency %d)\n",
           sent, took, rate, sync_full ? "full" : "normal", conc);
    printf("delivery: tend CPU %.2f s (%.0f%% of the wall time, %.1f us a message), mock CPU %.2f s (%.0f%%,"
           " %.1f us a request); %.2f s in COMMIT (the fsync included)\n", cpu, took > 0 ? 100 * cpu / took : 0,
           sent > 0 ? 1e6 * cpu / (double)sent : 0, mcpu, took > 0 ? 100 * mcpu / took : 0,
           sent > 0 ? 1e6 * mcpu / (double)sent : 0, commit_s);
    if (sent != n || delivered != n)
        fprintf(stderr, "bench_delivery: expected %d: %lld rows sent, %lld delivered by the mock, %lld failures\n",
                n, sent, delivered, (long long)e->stats.failures);
    engine_close(e);
    event_base_free(base);
    clock_free(clk);
    cJSON_Delete(cfg);
    mock_stop(&m);
    if (!db_arg) {
        const char *suffix[] = {"", "-wal", "-shm", "-journal"};
        for (int i = 0; i < 4; i++) {
            char p[600];
            snprintf(p, sizeof p, "%s%s", db, suffix[i]);
            unlink(p);
        }
    }
    return sent == n && delivered == n ? rate : -1;
}

/* --- raw libcurl multi ------------------------------------------------------- */

struct raw_slot {
    CURL *h;
    struct curl_slist *headers;
    char body[512];
    strbuf resp;
};

static size_t sink(char *p, size_t size, size_t n, void *ud)
{
    strbuf *b = ud;
    if (b->len < 2048)
        strbuf_add(b, p, size * n);
    return size * n;
}

/* The request tend sends for row i (same JSON shape, same headers). */
static void raw_prepare(struct raw_slot *s, int i)
{
    snprintf(s->body, sizeof s->body,
             "{\"id\":\"0-%d\",\"channel\":\"sms\",\"customer\":\"c%07d\",\"to\":\"+86138%08d\","
             "\"template\":\"shipped\",\"text\":\"Customer %d, your order SO%08d has shipped: it should reach you "
             "on Thursday.\"}", i, i, i, i, i);
    curl_slist_free_all(s->headers);
    char key[64];
    snprintf(key, sizeof key, "Idempotency-Key: 0-%d", i);
    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, key);
    /* no "Expect:": as tend, which lists it only for a body above 1 KiB */
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
    strbuf_reset(&s->resp);
}

static double bench_raw(const char *mock_path, int n, int conc)
{
    struct mock m;
    mock_start(&m, mock_path);
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sms", m.port);
    /* parsed once, as tend's dispatcher does (CURLOPT_CURLU), so libcurl
     * does not parse the text again at every transfer */
    CURLU *parsed = curl_url();
    if (!parsed || curl_url_set(parsed, CURLUPART_URL, url, 0) != CURLUE_OK) {
        fprintf(stderr, "bench_delivery: raw: cannot parse %s\n", url);
        exit(1);
    }
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    struct raw_slot *slots = calloc((size_t)conc, sizeof *slots);
    int next = 0, done = 0, failed = 0, running = 0;
    double start = wall(), cpu0 = self_cpu(), mcpu0 = mock_cpu(&m);
    for (int i = 0; i < conc && next < n; i++) {
        struct raw_slot *s = &slots[i];
        strbuf_init(&s->resp);
        s->h = curl_easy_init();
        curl_easy_setopt(s->h, CURLOPT_CURLU, parsed);
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
        /* no proxy, as tend's dispatcher says when the environment names
         * none (the variables are not looked up at every transfer) */
        curl_easy_setopt(s->h, CURLOPT_PROXY, "");
        curl_easy_setopt(s->h, CURLOPT_NOPROXY, "");
        curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(s->h, CURLOPT_WRITEDATA, &s->resp);
        curl_easy_setopt(s->h, CURLOPT_CUSTOMREQUEST, "POST");
        raw_prepare(s, next++);
        curl_multi_add_handle(multi, s->h);
    }
    while (done < n) {
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct raw_slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200)
                failed++;
            done++;
            curl_multi_remove_handle(multi, s->h);
            if (next < n) {
                raw_prepare(s, next++);
                curl_multi_add_handle(multi, s->h);
            }
        }
        if (done < n)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    double took = wall() - start;
    double cpu = self_cpu() - cpu0, mcpu = mock_cpu(&m) - mcpu0;
    long long delivered = mock_stat(&m, "deliveries");
    double rate = took > 0 ? n / took : 0;
    /* the mock is one thread: at its CPU a request, one core caps the ceiling
     * at 1e6 / (us a request) requests/s */
    printf("delivery: raw CPU %.2f s (%.0f%% of the wall time, %.1f us a request), mock CPU %.2f s (%.0f%%,"
           " %.1f us a request: one core serves at most %.0f req/s)\n", cpu, took > 0 ? 100 * cpu / took : 0,
           1e6 * cpu / n, mcpu, took > 0 ? 100 * mcpu / took : 0, 1e6 * mcpu / n, mcpu > 0 ? n / mcpu : 0);
    for (int i = 0; i < conc; i++) {
        if (slots[i].h)
            curl_easy_cleanup(slots[i].h);
        curl_slist_free_all(slots[i].headers);
        strbuf_free(&slots[i].resp);
    }
    free(slots);
    curl_multi_cleanup(multi);
    curl_url_cleanup(parsed);
    mock_stop(&m);
    if (failed || delivered != n)
        fprintf(stderr, "bench_delivery: raw: %d failed, %lld delivered of %d\n", failed, delivered, n);
    printf("delivery: raw libcurl multi %d requests in %.2f s = %.0f req/s (concurrency %d, keep-alive, no store)",
           n, took, rate, conc);
    return rate;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_delivery [N | -n N] [-c CONCURRENCY] [--synchronous full|normal]\n"
                    "                      [--mock PATH] [--db PATH] [--only tend|raw]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int n = 100000, conc = 64, sync_full = 1;
    const char *mock_path = NULL, *db = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] >= '0' && a[0] <= '9') {   /* bench/run.sh: bench_delivery N */
            n = atoi(a);
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "-n"))
            n = atoi(v);
        else if (!strcmp(a, "-c"))
            conc = atoi(v);
        else if (!strcmp(a, "--synchronous"))
            sync_full = strcmp(v, "normal") != 0;
        else if (!strcmp(a, "--mock"))
            mock_path = v;
        else if (!strcmp(a, "--db"))
            db = v;
        else if (!strcmp(a, "--only"))
            only = v;
        else
            usage();
    }
    if (n < 1 || conc < 1)
        usage();
    static char path[512];
    if (!mock_path) {
        const char *dir = getenv("TEND_BUILD");
        snprintf(path, sizeof path, "%s/mock_provider", dir && *dir ? dir : "build/release");
        mock_path = path;
    }
    if (access(mock_path, X_OK) != 0)
        die("%s: %s (build it: make %s)", mock_path, strerror(errno), mock_path);
    signal(SIGPIPE, SIG_IGN);
    netloop_global_init(CURL_GLOBAL_DEFAULT);
    double tend = 0, raw = 0;
    int rc = 0;
    if (!only || !strcmp(only, "tend")) {
        tend = bench_tend(mock_path, n, conc, sync_full, db);
        rc |= tend < 0;
    }
    if (!only || !strcmp(only, "raw")) {
        raw = bench_raw(mock_path, n, conc);
        if (tend > 0 && raw > 0)
            printf("; tend/raw = %.2f", tend / raw);
        printf("\n");
    }
    curl_global_cleanup();
    clock_shutdown();
    return rc;
}
