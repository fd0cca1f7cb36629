/* Unit tests for runtime/dispatch.c: delivering outbox rows to a provider.
 *
 * Every test runs a real engine (a temporary SQLite file, a script with a
 * journey that sends on an event) against tests/mock_provider.c started as
 * a child process on 127.0.0.1. The mock counts a request as a delivery the
 * first time it sees its Idempotency-Key and as a replay afterwards, so
 * "deliveries == keys == messages" is the exactly-once check: retries are
 * allowed, double deliveries are not.
 *
 *  - sync path (no event base attached), virtual clock: one blocking
 *    transfer per row, retries found by engine_advance();
 *  - async path (dispatch_attach): libcurl multi on libevent, on the real
 *    clock, and on a virtual clock moved over idle backoff gaps (with 30%
 *    faults the real backoff, 2-4-8-16-32 s, makes 300 messages take 25-90 s);
 *  - dead letters, Retry-After, a crash with a claimed row, SMTP, the
 *    opt-out race against quiet hours, segments and cost.
 *
 * The mock binary is $TEND_BUILD/mock_provider (tests/run.sh sets TEND_BUILD),
 * else build/release/mock_provider. TEST_DISPATCH_FILTER=glob runs only the
 * matching tests. The whole file takes ~20 s, most of it waiting on purpose
 * (slow replies, timeouts, real backoff). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
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
#include "mime.h"
#include "engine.h"
#include "event.h"
#include "outbox.h"
#include "store.h"
#include "util.h"

/* 2026-03-02T10:00:00+08:00, a Monday morning in Shanghai */
#define T0 ((tend_time)1772416800)

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- the mock provider ---------------------------------------------------- */

struct mock {
    pid_t pid;
    int port, smtp_port;
};

/* Mocks still running, so a failed test (cmocka longjmps out of it) does
 * not leave one behind: the per-test teardown stops them. */
#define MAX_LIVE 8
static pid_t live[MAX_LIVE];

static void live_add(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (!live[i]) {
            live[i] = pid;
            return;
        }
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static const char *mock_binary(char *buf, size_t n)
{
    const char *dir = getenv("TEND_BUILD");
    if (dir && *dir) {
        snprintf(buf, n, "%s/mock_provider", dir);
        return buf;
    }
    return "build/release/mock_provider";
}

/* Starts the mock with `args` (NULL-terminated) and waits for its "PORT n"
 * (and "SMTP n" with --smtp) line. port > 0 binds that port (a restart). */
static void mock_start_on(struct mock *m, int port, const char *const *args)
{
    char bin[512];
    const char *path = mock_binary(bin, sizeof bin);
    assert_int_equal(access(path, X_OK), 0);
    const char *argv[32];
    int argc = 0, smtp = 0;
    char portbuf[16];
    argv[argc++] = path;
    argv[argc++] = "--quiet";
    argv[argc++] = "--max-seconds";     /* an orphan never outlives a crashed test long */
    argv[argc++] = "600";
    if (port > 0) {
        snprintf(portbuf, sizeof portbuf, "%d", port);
        argv[argc++] = "--port";
        argv[argc++] = portbuf;
    }
    for (int i = 0; args && args[i]; i++) {
        assert_true(argc < 30);
        smtp |= strcmp(args[i], "--smtp") == 0;
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;

    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    memset(m, 0, sizeof *m);
    m->pid = pid;
    live_add(pid);
    /* Read "PORT n\n" [+ "SMTP n\n"], for at most 10 s. */
    char buf[256];
    size_t len = 0;
    double until = wall() + 10;
    for (;;) {
        buf[len] = 0;
        int have_port = sscanf(buf, "PORT %d", &m->port) == 1 && strchr(buf, '\n');
        char *s = strstr(buf, "SMTP ");
        int have_smtp = !smtp || (s && sscanf(s, "SMTP %d", &m->smtp_port) == 1 && strchr(s, '\n'));
        if (have_port && have_smtp)
            break;
        int left = (int)((until - wall()) * 1000);
        if (left <= 0)
            fail_msg("mock_provider did not report its port: '%s'", buf);
        struct pollfd p = {fds[0], POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t k = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (k <= 0)
            fail_msg("mock_provider exited before reporting its port: '%s'", buf);
        len += (size_t)k;
    }
    close(fds[0]);
    assert_true(m->port > 0);
}

static void mock_start(struct mock *m, const char *const *args)
{
    mock_start_on(m, 0, args);
}

static void mock_stop(struct mock *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGTERM);
    int status = 0;
    while (waitpid(m->pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "note: mock_provider (pid %d) ended with status %d\n", (int)m->pid, status);
    live_remove(m->pid);
    m->pid = 0;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    strbuf_add(ud, p, size * n);
    return size * n;
}

/* GET a control endpoint; the parsed JSON (the caller's). */
static cJSON *mock_get(const struct mock *m, const char *path)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", m->port, path);
    strbuf b;
    strbuf_init(&b);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK || status != 200)
        fail_msg("GET %s: %s (HTTP %ld)", url, curl_easy_strerror(rc), status);
    cJSON *j = cJSON_Parse(b.s ? b.s : "");
    if (!j)
        fail_msg("GET %s: not JSON: %s", url, b.s ? b.s : "");
    strbuf_free(&b);
    return j;
}

static int64_t mock_stat(const struct mock *m, const char *field)
{
    cJSON *j = mock_get(m, "/_stats");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
    assert_true(cJSON_IsNumber(v));
    int64_t n = (int64_t)v->valuedouble;
    cJSON_Delete(j);
    return n;
}

/* --- the engine ------------------------------------------------------------ */

static const char SCRIPT[] =
    "template 'note' {\n"
    "  category = 'transactional',\n"
    "  sms = '{{ name | default: \"friend\" }}: {{what}}',\n"
    "  email = { subject = 'Hello {{ name | default: \"friend\" }}', body = 'Dear {{ name | default: \"friend\" }},\\n{{what}}' },\n"
    "}\n"
    "template 'raw' { category = 'transactional', sms = '{{what}}' }\n"
    "template 'promo' { category = 'marketing', sms = '{{ name | default: \"friend\" }}, 20 off today: {{what}}' }\n"
    "journey 'notify' {\n"
    "  on = 'notify',\n"
    "  run = function(c, ev)\n"
    "    send(ev.via or 'sms', c, ev.template or 'note', { what = ev.what or 'hi' })\n"
    "  end,\n"
    "}\n";

struct env {
    engine *e;
    tclock *clk;
    cJSON *config;
    char db[64];
};

/* channels.sms at the mock (with extra settings as JSON, or NULL),
 * channels.email at its SMTP port when it has one. */
static cJSON *make_config(const struct mock *m, const char *sms_extra, int quiet)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *ch = cJSON_AddObjectToObject(c, "channels");
    cJSON *sms = sms_extra ? cJSON_Parse(sms_extra) : cJSON_CreateObject();
    assert_non_null(sms);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sms", m->port);
    cJSON_AddStringToObject(sms, "type", "http");
    cJSON_AddStringToObject(sms, "url", url);
    cJSON_AddNumberToObject(sms, "price", 0.05);
    cJSON_AddStringToObject(sms, "per", "segment");
    cJSON_AddItemToObject(ch, "sms", sms);
    cJSON *email = cJSON_AddObjectToObject(ch, "email");
    snprintf(url, sizeof url, "smtp://127.0.0.1:%d", m->smtp_port ? m->smtp_port : 1);
    cJSON_AddStringToObject(email, "type", "smtp");
    cJSON_AddStringToObject(email, "url", url);
    cJSON_AddStringToObject(email, "from", "Care <care@shop.test>");   /* the documented form */
    cJSON_AddStringToObject(c, "timezone", "Asia/Shanghai");
    if (quiet) {
        cJSON *q = cJSON_AddObjectToObject(c, "quiet_hours");
        cJSON_AddStringToObject(q, "from", "21:30");
        cJSON_AddStringToObject(q, "to", "08:30");
    } else {
        cJSON_AddFalseToObject(c, "quiet_hours");
    }
    cJSON_AddFalseToObject(c, "caps");
    return c;
}

/* Opens an engine on v->db (a new temp file when v->db is empty) with
 * v->config and v->clk, and loads SCRIPT. */
static void env_engine(struct env *v)
{
    if (!v->db[0]) {
        snprintf(v->db, sizeof v->db, "/tmp/test_dispatch_XXXXXX");
        int fd = mkstemp(v->db);
        assert_true(fd >= 0);
        close(fd);
    }
    struct engine_options o = {.db_path = v->db, .clock = v->clk, .capture = 0, .config = v->config};
    char *err = NULL;
    v->e = engine_open(&o, &err);
    if (!v->e)
        fail_msg("engine_open: %s", err ? err : "?");
    char *errors = NULL;
    int n = engine_load_source(v->e, "t.lua", SCRIPT, sizeof SCRIPT - 1, &errors);
    if (n != 0)
        fail_msg("load: %s", errors ? errors : "?");
    free(errors);
}

static void env_open(struct env *v, cJSON *config, tclock *clk)
{
    memset(v, 0, sizeof *v);
    v->config = config;
    v->clk = clk;
    env_engine(v);
}

static void env_close(struct env *v)
{
    engine_close(v->e);
    v->e = NULL;
    clock_free(v->clk);
    cJSON_Delete(v->config);
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        char p[80];
        snprintf(p, sizeof p, "%s%s", v->db, suffix[i]);
        unlink(p);
    }
}

static void customer(engine *e, const char *json)
{
    cJSON *c = cJSON_Parse(json);
    assert_non_null(c);
    char err[256] = "";
    int created = 0;
    if (customer_upsert(e, c, 0, &created, err, sizeof err) != 0)
        fail_msg("customer_upsert %s: %s", json, err);
    cJSON_Delete(c);
}

static void accept_event(engine *e, cJSON *ev)
{
    char err[256] = "";
    struct event_result res;
    if (event_accept(e, ev, &res, err, sizeof err) != 0)
        fail_msg("event_accept: %s", err);
}

/* A "notify" event for customer `id`; via/template/what may be NULL. */
static void notify(engine *e, const char *id, const char *via, const char *tmpl, const char *what)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "notify");
    cJSON_AddStringToObject(ev, "customer", id);
    cJSON_AddNumberToObject(ev, "at", (double)engine_now(e));
    if (via)
        cJSON_AddStringToObject(ev, "via", via);
    if (tmpl)
        cJSON_AddStringToObject(ev, "template", tmpl);
    if (what)
        cJSON_AddStringToObject(ev, "what", what);
    accept_event(e, ev);
    cJSON_Delete(ev);
}

/* n customers c0001.. with phones, and one notify event each, in one transaction. */
static void many(engine *e, int n)
{
    assert_int_equal(store_begin(e->st), 0);
    for (int i = 1; i <= n; i++) {
        char json[160], id[16], what[32];
        snprintf(id, sizeof id, "c%04d", i);
        snprintf(json, sizeof json, "{\"id\":\"%s\",\"name\":\"N%d\",\"phone\":\"+86138%08d\"}", id, i, i);
        customer(e, json);
        snprintf(what, sizeof what, "message %d", i);
        notify(e, id, NULL, NULL, what);
    }
    assert_int_equal(store_commit(e->st), 0);
}

static int64_t sql_int(engine *e, const char *sql)
{
    store_stmt *s = store_sql(e->st, sql);
    assert_non_null(s);
    if (store_step(s) != STORE_ROW)
        fail_msg("no row: %s", sql);
    int64_t v = store_col_int(s, 0);
    store_reset(s);
    return v;
}

/* The queue entry's key of outbox row `id`. */
static int64_t due_at_of(struct env *v, int64_t id)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT due_at FROM outbox_due WHERE id = %lld", (long long)id);
    return sql_int(v->e, sql);
}

/* Moves row `id`'s queue entry and its due_key to `at` by hand, as a
 * reschedule after its claim would. */
static void move_due(struct env *v, int64_t id, tend_time at)
{
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE outbox_due SET due_at = %lld WHERE id = %lld;"
             " UPDATE outbox SET due_key = %lld WHERE id = %lld", (long long)at, (long long)id,
             (long long)at, (long long)id);
    assert_int_equal(store_exec(v->e->st, sql), 0);
}

/* A text column of the first row (malloc'd, or NULL for SQL NULL). */
static char *sql_text(engine *e, const char *sql)
{
    store_stmt *s = store_sql(e->st, sql);
    assert_non_null(s);
    if (store_step(s) != STORE_ROW)
        fail_msg("no row: %s", sql);
    const char *t = store_col_text(s, 0);
    char *out = t ? xstrdup(t) : NULL;
    store_reset(s);
    return out;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("expected '%s' in '%s'", needle, hay ? hay : "(null)");
}

static int64_t not_sent(engine *e)
{
    return store_count(e->st, "SELECT COUNT(*) FROM outbox WHERE status <> 'sent'");
}

/* Fails, listing the rows not sent (for a test that ran out of time). */
static void fail_unsent(engine *e, double took)
{
    strbuf b;
    strbuf_init(&b);
    store_stmt *s = store_sql(e->st, "SELECT o.id, o.status, o.attempts, o.last_error, d.due_at, o.idem_key"
                                     " FROM outbox o LEFT JOIN outbox_due d ON d.id = o.id"
                                     " WHERE o.status <> 'sent' LIMIT 10");
    while (store_step(s) == STORE_ROW)
        strbuf_printf(&b, "\n  row %lld %s attempts=%lld error=%s due=%lld (now %lld) key=%s",
                      (long long)store_col_int(s, 0), store_col_text(s, 1), (long long)store_col_int(s, 2),
                      store_col_text(s, 3) ? store_col_text(s, 3) : "-", (long long)store_col_int(s, 4),
                      (long long)engine_now(e), store_col_text(s, 5));
    fail_msg("after %.1f s, %lld rows not sent (in flight %d):%s", took, (long long)not_sent(e),
             dispatch_in_flight(e), b.s ? b.s : "");
}

/* Advances the virtual clock in steps until every row is sent (at most
 * `steps` steps of `step` seconds, and 120 s of wall time). */
static void advance_until_sent(engine *e, tend_time step, int steps)
{
    double until = wall() + 120;
    for (int i = 0; i < steps && not_sent(e) > 0 && wall() < until; i++)
        assert_int_equal(engine_advance(e, step), 0);
}

/* Async: pumps the loop until done(e) or max_s seconds of wall time. A
 * 20 ms ticker makes EVLOOP_ONCE return even with nothing in flight, so
 * retries falling due in the store are picked up. */
static void noop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

static int all_sent(engine *e, void *ud)
{
    (void)ud;
    return not_sent(e) == 0 && dispatch_in_flight(e) == 0;
}

static double pump(engine *e, struct event_base *base, double max_s, int (*done)(engine *, void *), void *ud)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, noop_cb, NULL);
    struct timeval tv = {0, 20000};
    event_add(tick, &tv);
    double start = wall();
    while (wall() - start < max_s) {
        assert_true(engine_run_due(e, engine_now(e)) >= 0);
        if (done(e, ud))
            break;
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(tick);
    return wall() - start;
}

/* Async on a virtual clock that only jumps when the loop is idle: whenever
 * nothing is in flight and nothing is due now, the clock moves to the next
 * due row. Transfers and libcurl's timeouts run in real time; backoff gaps
 * (2, 4, 8, 16 ... s) are skipped instead of slept. */
static double pump_compressed(engine *e, tclock *clk, struct event_base *base, double max_s,
                              int (*done)(engine *, void *), void *ud)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, noop_cb, NULL);
    struct timeval tv = {0, 20000};
    event_add(tick, &tv);
    double start = wall();
    while (wall() - start < max_s) {
        assert_true(engine_run_due(e, engine_now(e)) >= 0);
        if (done(e, ud))
            break;
        if (dispatch_in_flight(e) == 0) {
            tend_time next = engine_next_due(e);
            if (next > engine_now(e)) {
                clock_set(clk, next);
                continue;
            }
        }
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(tick);
    return wall() - start;
}

/* The outbox gauge of /metrics (outbox_counts: the claims and sent marks
 * count their rows a batch at a time, the trigger the rest) equals a count
 * of the rows by status. */
static void assert_counts_kept(engine *e)
{
    assert_int_equal(store_count(e->st, "SELECT COUNT(*) FROM (SELECT status, COUNT(*) AS n FROM outbox GROUP BY status"
                                        " EXCEPT SELECT status, n FROM outbox_counts WHERE n <> 0)"), 0);
    assert_int_equal(store_count(e->st, "SELECT COUNT(*) FROM (SELECT status, n FROM outbox_counts WHERE n <> 0"
                                        " EXCEPT SELECT status, COUNT(*) FROM outbox GROUP BY status)"), 0);
}

/* Every row sent exactly once: the mock saw each key delivered once (and
 * the gauge counts them). */
static void assert_exactly_once(const struct mock *m, engine *e, int n)
{
    assert_counts_kept(e);
    assert_int_equal(store_count(e->st, "SELECT COUNT(*) FROM outbox"), n);
    assert_int_equal(not_sent(e), 0);
    assert_int_equal(store_count(e->st, "SELECT COUNT(*) FROM outbox_due"), 0);
    assert_int_equal(store_count(e->st, "SELECT COUNT(DISTINCT idem_key) FROM outbox"), n);
    assert_int_equal(mock_stat(m, "deliveries"), n);
    assert_int_equal(mock_stat(m, "keys"), n);
    /* and the keys the mock got are exactly the outbox's */
    cJSON *d = mock_get(m, "/_deliveries");
    assert_int_equal(cJSON_GetArraySize(d), n);
    const cJSON *x;
    store_stmt *s = store_sql(e->st, "SELECT COUNT(*) FROM outbox WHERE idem_key = ?");
    cJSON_ArrayForEach(x, d) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(x, "key");
        assert_true(cJSON_IsString(k));
        store_bind_text(s, 1, k->valuestring, -1);
        assert_int_equal(store_step(s), STORE_ROW);
        assert_int_equal(store_col_int(s, 0), 1);
        store_reset(s);
    }
    cJSON_Delete(d);
}

/* --- tests ------------------------------------------------------------------ */

#define N_FAULTY 300

/* Sync path, virtual clock: 30% of requests fail (500, 503, 429, dropped
 * connection); everything ends sent, each key delivered once. */
static void test_sync_faults_exactly_once(void **state)
{
    (void)state;
    struct mock m;
    const char *args[] = {"--fail-rate", "0.3", "--faults", "500,503,429,drop", "--retry-after", "1", NULL};
    mock_start(&m, args);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), clock_new_virtual(T0));
    many(v.e, N_FAULTY);
    assert_true(engine_run_due(v.e, engine_now(v.e)) > 0);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox"), N_FAULTY);
    assert_true(not_sent(v.e) > 0);     /* some failed on the first try */
    advance_until_sent(v.e, 30, 400);
    assert_exactly_once(&m, v.e, N_FAULTY);
    int64_t retried = store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE attempts > 1");
    assert_true(retried > 0);
    assert_true(mock_stat(&m, "faults") > 0);
    /* attempts add up to the requests the mock answered */
    assert_int_equal(sql_int(v.e, "SELECT SUM(attempts) FROM outbox"), mock_stat(&m, "requests"));
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE last_error IS NOT NULL"), 0);
    env_close(&v);
    mock_stop(&m);
}

/* Async path: the same faults through libcurl multi on libevent.
 * real = 0: a virtual clock moved over idle gaps (pump_compressed);
 * real = 1: the real clock, waiting out every backoff. */
static void async_faults(const char *rate, int real, double max_s)
{
    struct mock m;
    const char *args[] = {"--fail-rate", rate, "--faults", "500,503,429,drop", "--retry-after", "1", NULL};
    mock_start(&m, args);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), real ? clock_new_real() : clock_new_virtual(T0));
    struct event_base *base = event_base_new();
    assert_int_equal(dispatch_attach(v.e, base), 0);
    many(v.e, N_FAULTY);
    double took = real ? pump(v.e, base, max_s, all_sent, NULL)
                       : pump_compressed(v.e, v.clk, base, max_s, all_sent, NULL);
    if (not_sent(v.e) > 0)
        fail_unsent(v.e, took);
    assert_exactly_once(&m, v.e, N_FAULTY);
    assert_true(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE attempts > 1") > 0);
    assert_true(mock_stat(&m, "faults") > 0);
    /* libcurl may resend a request on its own when a reused connection was
     * dropped before any answer, so the mock can see more than the attempts */
    assert_true(mock_stat(&m, "requests") >= sql_int(v.e, "SELECT SUM(attempts) FROM outbox"));
    env_close(&v);
    event_base_free(base);
    mock_stop(&m);
}

/* 30% faults. On the real clock the exponential backoff (2, 4, 8, 16,
 * 32 s, +-25%) makes the unluckiest of 300 messages take 25-90 s, so this
 * one skips the idle gaps; every transfer still runs for real. */
static void test_async_faults_exactly_once(void **state)
{
    (void)state;
    async_faults("0.3", 0, 20);
}

/* The real clock (as `tend run`), 10% faults: typically 5-20 s. */
static void test_async_faults_real_clock(void **state)
{
    (void)state;
    async_faults("0.1", 1, 60);
}

#define N_SLOW 100

/* Async, slow replies past the channel's timeout: the mock has delivered
 * (it counts on receipt), tend times out and retries with the same key,
 * and the mock reports the retry as a replay, not a second delivery. */
static void test_async_timeouts_replay(void **state)
{
    (void)state;
    struct mock m;
    const char *args[] = {"--fail-rate", "0.2", "--faults", "slow", "--slow-ms", "3000", NULL};
    mock_start(&m, args);
    struct env v;
    env_open(&v, make_config(&m, "{\"timeout\": 1}", 0), clock_new_real());
    struct event_base *base = event_base_new();
    assert_int_equal(dispatch_attach(v.e, base), 0);
    many(v.e, N_SLOW);
    double took = pump(v.e, base, 90, all_sent, NULL);
    if (not_sent(v.e) > 0)
        fail_unsent(v.e, took);
    assert_exactly_once(&m, v.e, N_SLOW);
    int64_t slow = mock_stat(&m, "slow"), replays = mock_stat(&m, "replays");
    assert_true(slow > 0);
    /* every timed-out attempt was followed by a replay of its key */
    assert_int_equal(replays, slow);
    assert_int_equal(mock_stat(&m, "requests"), N_SLOW + replays);
    assert_int_equal(sql_int(v.e, "SELECT SUM(attempts) FROM outbox"), N_SLOW + replays);
    /* the rows that timed out were answered by the replay */
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE attempts > 1 AND"
                                          " response NOT LIKE '%\"replayed\":true%'"), 0);
    assert_true(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE response LIKE '%\"replayed\":true%'") > 0);
    env_close(&v);
    event_base_free(base);
    mock_stop(&m);
}

/* 4xx: a dead letter after one attempt, the provider's answer kept. */
static void test_dead_letter(void **state)
{
    (void)state;
    struct mock m;
    const char *args[] = {"--reject", "BADNUMBER", NULL};
    mock_start(&m, args);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), clock_new_virtual(T0));
    customer(v.e, "{\"id\":\"c1\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
    customer(v.e, "{\"id\":\"bad\",\"name\":\"Bo\",\"phone\":\"+86BADNUMBER7\"}");
    customer(v.e, "{\"id\":\"c2\",\"name\":\"Cy\",\"phone\":\"+8613800000002\"}");
    notify(v.e, "c1", NULL, NULL, "one");
    notify(v.e, "bad", NULL, NULL, "two");
    notify(v.e, "c2", NULL, NULL, "three");
    assert_true(engine_run_due(v.e, engine_now(v.e)) > 0);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'"), 2);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE customer = 'bad' AND status = 'dead'"
                                          " AND attempts = 1"), 1);
    char *resp = sql_text(v.e, "SELECT response FROM outbox WHERE customer = 'bad'");
    assert_contains(resp, "rejected: invalid recipient");
    free(resp);
    char *err = sql_text(v.e, "SELECT last_error FROM outbox WHERE customer = 'bad'");
    assert_contains(err, "400");
    free(err);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 0);
    /* a dead letter is never tried again */
    assert_int_equal(engine_advance(v.e, TEND_DAY), 0);
    assert_int_equal(mock_stat(&m, "requests"), 3);
    assert_int_equal(mock_stat(&m, "rejected"), 1);
    assert_int_equal(mock_stat(&m, "deliveries"), 2);
    env_close(&v);
    mock_stop(&m);
}

/* 429 with Retry-After: 120: the row waits exactly 120 s, then goes. */
static void test_retry_after(void **state)
{
    (void)state;
    struct mock m;
    const char *args[] = {"--fail-rate", "1", "--faults", "429", "--retry-after", "120", NULL};
    mock_start(&m, args);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), clock_new_virtual(T0));
    customer(v.e, "{\"id\":\"c1\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
    notify(v.e, "c1", NULL, NULL, "wait for it");
    assert_true(engine_run_due(v.e, T0) > 0);
    assert_int_equal(mock_stat(&m, "requests"), 1);
    assert_int_equal(sql_int(v.e, "SELECT COUNT(*) FROM outbox_due"), 1);
    assert_int_equal(sql_int(v.e, "SELECT due_at FROM outbox_due"), T0 + 120);
    assert_int_equal(sql_int(v.e, "SELECT due_at FROM outbox"), T0 + 120);
    assert_int_equal(sql_int(v.e, "SELECT attempts FROM outbox"), 1);
    char *status = sql_text(v.e, "SELECT status FROM outbox");
    assert_string_equal(status, "queued");
    free(status);
    char *err = sql_text(v.e, "SELECT last_error FROM outbox");
    assert_contains(err, "429");
    free(err);
    assert_int_equal(engine_next_due(v.e), T0 + 120);

    /* the provider recovers, on the same port */
    int port = m.port;
    mock_stop(&m);
    mock_start_on(&m, port, NULL);
    assert_int_equal(engine_advance(v.e, 119), 0);
    assert_int_equal(mock_stat(&m, "requests"), 0);
    status = sql_text(v.e, "SELECT status FROM outbox");
    assert_string_equal(status, "queued");
    free(status);
    assert_int_equal(engine_advance(v.e, 1), 0);
    status = sql_text(v.e, "SELECT status FROM outbox");
    assert_string_equal(status, "sent");
    free(status);
    assert_int_equal(sql_int(v.e, "SELECT sent_at FROM outbox"), T0 + 120);
    assert_int_equal(sql_int(v.e, "SELECT attempts FROM outbox"), 2);
    assert_int_equal(mock_stat(&m, "deliveries"), 1);
    assert_counts_kept(v.e);    /* a retried row claimed again */
    env_close(&v);
    mock_stop(&m);
}

struct until_requests {
    const struct mock *m;
    int64_t n;
};

static int mock_has_requests(engine *e, void *ud)
{
    (void)e;
    struct until_requests *u = ud;
    return mock_stat(u->m, "requests") >= u->n;
}

/* A row claimed by the async dispatcher whose request reached the provider
 * (which delivered it and is slow to answer); the engine "crashes" (closes
 * with the transfer in flight). Returns the row's idempotency key. */
static char *claim_then_crash(struct env *v, const struct mock *slow)
{
    env_open(v, make_config(slow, NULL, 0), clock_new_virtual(T0));
    struct event_base *base = event_base_new();
    assert_int_equal(dispatch_attach(v->e, base), 0);
    customer(v->e, "{\"id\":\"c1\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
    notify(v->e, "c1", NULL, NULL, "claimed");
    assert_true(engine_run_due(v->e, T0) > 0);
    assert_int_equal(dispatch_in_flight(v->e), 1);
    struct until_requests u = {slow, 1};
    pump(v->e, base, 10, mock_has_requests, &u);
    assert_int_equal(mock_stat(slow, "requests"), 1);
    assert_int_equal(mock_stat(slow, "deliveries"), 1);
    assert_int_equal(dispatch_in_flight(v->e), 1);   /* the reply is 5 s away */
    char *status = sql_text(v->e, "SELECT status FROM outbox");
    assert_string_equal(status, "sending");
    free(status);
    assert_int_equal(sql_int(v->e, "SELECT attempts FROM outbox"), 1);
    assert_int_equal(sql_int(v->e, "SELECT due_at FROM outbox_due"), T0 + 2 * TEND_MINUTE);   /* the lease */
    char *key = sql_text(v->e, "SELECT idem_key FROM outbox");
    assert_non_null(key);
    /* the crash: in-flight transfers are abandoned */
    engine_close(v->e);
    v->e = NULL;
    event_base_free(base);
    clock_free(v->clk);
    return key;
}

/* Reopens the engine on the same file, sync path, virtual clock at T0,
 * and advances past the lease. */
static void reopen_past_lease(struct env *v, const struct mock *m, const char *key)
{
    cJSON_Delete(v->config);
    v->config = make_config(m, NULL, 0);
    v->clk = clock_new_virtual(T0);
    env_engine(v);
    char *status = sql_text(v->e, "SELECT status FROM outbox");
    assert_string_equal(status, "sending");
    free(status);
    /* the lease holds for 2 minutes */
    assert_int_equal(engine_advance(v->e, 2 * TEND_MINUTE - 1), 0);
    status = sql_text(v->e, "SELECT status FROM outbox");
    assert_string_equal(status, "sending");
    free(status);
    assert_int_equal(engine_advance(v->e, 2), 0);
    status = sql_text(v->e, "SELECT status FROM outbox");
    assert_string_equal(status, "sent");
    free(status);
    assert_int_equal(sql_int(v->e, "SELECT attempts FROM outbox"), 2);
    char *now_key = sql_text(v->e, "SELECT idem_key FROM outbox");
    assert_string_equal(now_key, key);
    free(now_key);
    assert_int_equal(store_count(v->e->st, "SELECT COUNT(*) FROM outbox_due"), 0);
}

static void assert_delivered_key(const struct mock *m, const char *key)
{
    cJSON *d = mock_get(m, "/_deliveries");
    assert_int_equal(cJSON_GetArraySize(d), 1);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(d, 0), "key");
    assert_true(cJSON_IsString(k));
    assert_string_equal(k->valuestring, key);
    cJSON_Delete(d);
}

/* Crash with a claimed row; after the lease the row goes again, same key,
 * to the provider (restarted healthy on the same port). */
static void test_crash_retry_same_key(void **state)
{
    (void)state;
    struct mock m;
    const char *slow[] = {"--faults", "slow", "--slow-ms", "5000", "--fail-rate", "1", NULL};
    mock_start(&m, slow);
    struct env v;
    char *key = claim_then_crash(&v, &m);
    assert_delivered_key(&m, key);          /* the slow request was delivered */
    int port = m.port;
    mock_stop(&m);
    mock_start_on(&m, port, NULL);          /* healthy */
    reopen_past_lease(&v, &m, key);
    assert_delivered_key(&m, key);          /* the retry carried the same key */
    assert_int_equal(mock_stat(&m, "requests"), 1);
    free(key);
    env_close(&v);
    mock_stop(&m);
}

/* The same crash, but the retry reaches the same provider, which still
 * knows the key: it answers with a replay, and there is one delivery. */
static void test_crash_retry_replayed(void **state)
{
    (void)state;
    struct mock m;
    const char *slow[] = {"--faults", "slow", "--slow-ms", "5000", "--fail-rate", "1", NULL};
    mock_start(&m, slow);
    struct env v;
    char *key = claim_then_crash(&v, &m);
    reopen_past_lease(&v, &m, key);         /* 5 s for the slow answer; the timeout is 10 s */
    assert_int_equal(mock_stat(&m, "requests"), 2);
    assert_int_equal(mock_stat(&m, "deliveries"), 1);
    assert_int_equal(mock_stat(&m, "replays"), 1);
    assert_int_equal(mock_stat(&m, "keys"), 1);
    assert_delivered_key(&m, key);
    char *resp = sql_text(v.e, "SELECT response FROM outbox");
    assert_contains(resp, "\"replayed\":true");
    free(resp);
    free(key);
    env_close(&v);
    mock_stop(&m);
}

/* A burst larger than one multi-row claim and one multi-row sent mark
 * (OUTBOX_BATCH, 64), on a channel whose concurrency (100) is above the
 * loop's 64 connections per host: the slow provider sees 100 requests at
 * once (not 64 and the rest queued inside libcurl), and each of the 150
 * rows ends sent once, after one attempt, with its own answer stored and
 * its queue entry gone; the outbox gauge counts them all. */
static void test_burst_batches(void **state)
{
    (void)state;
    struct mock m;
    const char *slow[] = {"--faults", "slow", "--slow-ms", "1500", "--fail-rate", "1", NULL};
    mock_start(&m, slow);
    struct env v;
    env_open(&v, make_config(&m, "{\"concurrency\":100}", 0), clock_new_real());
    struct event_base *base = event_base_new();
    assert_int_equal(dispatch_attach(v.e, base), 0);
    many(v.e, 150);
    struct until_requests u = {&m, 100};
    pump(v.e, base, 1.2, mock_has_requests, &u);
    assert_int_equal(mock_stat(&m, "requests"), 100);   /* all in flight before the first answer */
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'sending'"), 150);
    pump(v.e, base, 20, all_sent, NULL);
    assert_exactly_once(&m, v.e, 150);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE attempts = 1 AND sent_at IS NOT NULL"
                                          " AND last_error IS NULL AND response LIKE '{\"id\":\"m%'"), 150);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(DISTINCT response) FROM outbox"), 150);
    assert_int_equal(sql_int(v.e, "SELECT n FROM outbox_counts WHERE status = 'sent'"), 150);
    assert_int_equal(store_count(v.e->st, "SELECT COALESCE(SUM(n), 0) FROM outbox_counts WHERE status <> 'sent'"), 0);
    env_close(&v);
    event_base_free(base);
    mock_stop(&m);
}

/* Two http channels at two URLs of one provider, their messages
 * interleaved through the async dispatcher: each channel's easy handles
 * carry its URL parsed once (CURLOPT_CURLU, kept with the handle's setup),
 * and a handle kept from one channel and taken for the other is reset
 * first, so every request reaches its own channel's path, once. */
static void test_channel_urls_kept_apart(void **state)
{
    (void)state;
    struct mock m;
    mock_start(&m, NULL);
    struct env v;
    cJSON *config = make_config(&m, "{\"concurrency\":4}", 0);
    /* the email channel (SCRIPT's templates have texts for sms and email)
     * as a second http channel */
    cJSON *channels = cJSON_GetObjectItemCaseSensitive(config, "channels");
    cJSON_DeleteItemFromObjectCaseSensitive(channels, "email");
    cJSON *mail = cJSON_AddObjectToObject(channels, "email");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/mail?app=1", m.port);
    cJSON_AddStringToObject(mail, "type", "http");
    cJSON_AddStringToObject(mail, "url", url);
    cJSON_AddNumberToObject(mail, "concurrency", 4);
    env_open(&v, config, clock_new_real());
    struct event_base *base = event_base_new();
    assert_int_equal(dispatch_attach(v.e, base), 0);
    enum { N = 40 };
    for (int round = 0; round < 2; round++) {
        assert_int_equal(store_begin(v.e->st), 0);
        for (int i = 1; i <= N / 2; i++) {
            char json[160], id[16];
            int k = round * N / 2 + i;
            snprintf(id, sizeof id, "c%04d", k);
            snprintf(json, sizeof json, "{\"id\":\"%s\",\"phone\":\"+86138%08d\"}", id, k);
            customer(v.e, json);
            notify(v.e, id, k % 2 ? "email" : "sms", NULL, "hi");
        }
        assert_int_equal(store_commit(v.e->st), 0);
        double took = pump(v.e, base, 20, all_sent, NULL);
        if (!all_sent(v.e, NULL))
            fail_unsent(v.e, took);
    }
    cJSON *d = mock_get(&m, "/_deliveries");
    assert_int_equal(cJSON_GetArraySize(d), N);
    int per[2] = {0, 0};
    const cJSON *one;
    cJSON_ArrayForEach(one, d) {
        const cJSON *body = cJSON_GetObjectItemCaseSensitive(one, "body");
        const cJSON *channel = cJSON_GetObjectItemCaseSensitive(body, "channel");
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(one, "path");
        assert_true(cJSON_IsString(channel) && cJSON_IsString(path));
        int is_mail = strcmp(channel->valuestring, "email") == 0;
        assert_string_equal(path->valuestring, is_mail ? "/mail" : "/sms");
        per[is_mail]++;
    }
    assert_int_equal(per[0], N / 2);
    assert_int_equal(per[1], N / 2);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND attempts = 1"), N);
    cJSON_Delete(d);
    env_close(&v);
    event_base_free(base);
    mock_stop(&m);
}

/* A channel at its concurrency (2) has as many messages claimed ahead,
 * built and waiting for a slot; they start only when a transfer ends. A
 * crash then: the two claimed-ahead messages never left, the two in flight
 * reached the provider. After the lease all five go (to a provider that
 * restarted healthy), each under its own key, once. */
static void test_claim_ahead_crash(void **state)
{
    (void)state;
    struct mock m;
    const char *slow[] = {"--faults", "slow", "--slow-ms", "5000", "--fail-rate", "1", NULL};
    mock_start(&m, slow);
    struct env v;
    env_open(&v, make_config(&m, "{\"concurrency\":2}", 0), clock_new_virtual(T0));
    struct event_base *base = event_base_new();
    assert_int_equal(dispatch_attach(v.e, base), 0);
    many(v.e, 5);
    assert_true(engine_run_due(v.e, T0) > 0);
    assert_int_equal(dispatch_in_flight(v.e), 4);       /* 2 started, 2 claimed ahead */
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'sending'"), 4);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'queued'"), 1);
    struct until_requests u = {&m, 2};
    pump(v.e, base, 10, mock_has_requests, &u);
    assert_int_equal(mock_stat(&m, "requests"), 2);     /* the slow answers hold both slots */
    assert_int_equal(dispatch_in_flight(v.e), 4);
    engine_close(v.e);                                  /* the crash */
    v.e = NULL;
    event_base_free(base);
    clock_free(v.clk);

    int port = m.port;
    mock_stop(&m);
    mock_start_on(&m, port, NULL);
    cJSON_Delete(v.config);
    v.config = make_config(&m, "{\"concurrency\":2}", 0);
    v.clk = clock_new_virtual(T0);
    env_engine(&v);
    assert_int_equal(engine_advance(v.e, 2 * TEND_MINUTE + 1), 0);
    assert_int_equal(not_sent(v.e), 0);
    assert_int_equal(mock_stat(&m, "requests"), 5);
    assert_int_equal(mock_stat(&m, "deliveries"), 5);
    assert_int_equal(mock_stat(&m, "keys"), 5);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE attempts = 2"), 4);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 0);
    assert_counts_kept(v.e);    /* four claimed again after the lease, one first claimed then */
    env_close(&v);
    mock_stop(&m);
}

/* A Bcc: header smuggled in through a name or an address with CR/LF: every
 * entry refuses it, and data that got into the store anyway (by hand, or
 * before the checks) never puts a CR/LF into a header or RCPT TO: the name
 * lands in the subject as spaces, the bad address is a dead letter. */
static void test_smtp_header_injection(void **state)
{
    (void)state;
    struct mock m;
    const char *args[] = {"--smtp", NULL};
    mock_start(&m, args);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), clock_new_virtual(T0));

    const char *refused[] = {
        "{\"id\":\"c9\",\"name\":\"Eve\\r\\nBcc: evil@attacker.test\",\"email\":\"eve@shop.test\"}",
        "{\"id\":\"c9\",\"email\":\"eve@shop.test\\r\\nBcc: evil@attacker.test\"}",
        "{\"id\":\"c9\",\"email\":\"eve@shop.test\\nBcc: evil@attacker.test\"}",
        "{\"id\":\"c9\",\"email\":\"not-an-email\"}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        cJSON *c = cJSON_Parse(refused[i]);
        char err[256] = "";
        int created = 0;
        assert_int_equal(customer_upsert(v.e, c, 0, &created, err, sizeof err), -1);
        assert_true(strstr(err, "field 'name'") || strstr(err, "field 'email'"));
        cJSON_Delete(c);
    }
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM customers WHERE id = 'c9'"), 0);

    customer(v.e, "{\"id\":\"c1\",\"name\":\"Eve\",\"email\":\"eve@shop.test\"}");
    customer(v.e, "{\"id\":\"c2\",\"name\":\"Mal\",\"email\":\"mal@shop.test\"}");
    assert_int_equal(store_exec(v.e->st, "UPDATE customers SET name = 'Eve' || char(13, 10) ||"
                                         " 'Bcc: evil@attacker.test' WHERE id = 'c1'"), 0);
    assert_int_equal(store_exec(v.e->st, "UPDATE customers SET email = 'mal@shop.test' || char(13, 10) ||"
                                         " 'Bcc: evil@attacker.test' WHERE id = 'c2'"), 0);
    notify(v.e, "c1", "email", NULL, "hello");
    notify(v.e, "c2", "email", NULL, "hello");
    assert_true(engine_run_due(v.e, engine_now(v.e)) > 0);

    char *st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c2'");
    assert_string_equal(st, "dead");
    free(st);
    char *err = sql_text(v.e, "SELECT last_error FROM outbox WHERE customer = 'c2'");
    assert_contains(err, "email address refused");
    free(err);

    /* c1's name reaches the message only harmlessly: as spaces in the
     * subject, or the message is refused; never as a header of its own */
    st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c1'");
    int c1_sent = strcmp(st, "sent") == 0;
    free(st);
    cJSON *mails = mock_get(&m, "/_smtp");
    assert_int_equal(cJSON_GetArraySize(mails), c1_sent);
    const cJSON *x;
    cJSON_ArrayForEach(x, mails) {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(x, "to");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(x, "data");
        assert_int_equal(cJSON_GetArraySize(to), 1);
        assert_string_equal(cJSON_GetArrayItem(to, 0)->valuestring, "eve@shop.test");
        assert_true(cJSON_IsString(data));
        /* the header block ends at the first empty line; the body may hold
         * the name's line break, which is harmless there */
        const char *blank = strstr(data->valuestring, "\r\n\r\n");
        assert_non_null(blank);
        char *headers = xstrndup(data->valuestring, (size_t)(blank - data->valuestring));
        assert_null(strstr(headers, "\nBcc:"));
        assert_null(strstr(headers, "\rBcc:"));
        assert_null(strstr(headers, "\nbcc:"));
        free(headers);
    }
    cJSON_Delete(mails);
    env_close(&v);
    mock_stop(&m);
}

/* A header of an http channel whose value has a line break (from tend.lua
 * or a ${VAR} it names) fails the delivery: no request reaches the
 * provider, so no header can be smuggled into it. */
static void test_http_header_injection(void **state)
{
    (void)state;
    struct mock m;
    mock_start(&m, NULL);
    setenv("TEND_TEST_NOTE", "ok\r\nX-Evil: 1", 1);
    struct env v;
    env_open(&v, make_config(&m, "{\"headers\":{\"X-Note\":\"${TEND_TEST_NOTE}\"}}", 0),
             clock_new_virtual(T0));
    customer(v.e, "{\"id\":\"c1\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
    notify(v.e, "c1", "sms", NULL, "hello");
    engine_run_due(v.e, engine_now(v.e));
    char *err = sql_text(v.e, "SELECT last_error FROM outbox WHERE customer = 'c1'");
    assert_contains(err, "header 'X-Note': contains a line break");
    free(err);
    assert_int_equal(mock_stat(&m, "requests"), 0);
    unsetenv("TEND_TEST_NOTE");
    env_close(&v);
    mock_stop(&m);
}

/* SMTP: the customer's address as recipient, subject and body in the
 * message; a customer with no address is a dead letter. */
static void test_smtp(void **state)
{
    (void)state;
    struct mock m;
    const char *args[] = {"--smtp", NULL};
    mock_start(&m, args);
    assert_true(m.smtp_port > 0);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), clock_new_virtual(T0));
    customer(v.e, "{\"id\":\"c1\",\"name\":\"Ann\",\"email\":\"ann@example.test\"}");
    customer(v.e, "{\"id\":\"c2\",\"name\":\"Bo\",\"phone\":\"+8613800000002\"}");
    customer(v.e, "{\"id\":\"c3\",\"name\":\"\xe7\x8e\xb2\xe7\x8e\xb2\",\"email\":\"ling@example.test\"}");
    notify(v.e, "c1", "email", NULL, "your parcel left the warehouse");
    notify(v.e, "c2", "email", NULL, "nowhere to go");
    notify(v.e, "c3", "email", NULL, "non-ASCII subject");
    assert_true(engine_run_due(v.e, engine_now(v.e)) > 0);

    char *st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c1'");
    assert_string_equal(st, "sent");
    free(st);
    st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c3'");
    assert_string_equal(st, "sent");
    free(st);
    st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c2'");
    assert_string_equal(st, "dead");
    free(st);
    char *err = sql_text(v.e, "SELECT last_error FROM outbox WHERE customer = 'c2'");
    assert_contains(err, "has no email address");
    free(err);

    cJSON *mails = mock_get(&m, "/_smtp");
    assert_int_equal(cJSON_GetArraySize(mails), 2);
    int seen_ann = 0, seen_ling = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, mails) {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(x, "to");
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(x, "from");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(x, "data");
        assert_int_equal(cJSON_GetArraySize(to), 1);
        assert_true(cJSON_IsString(from) && cJSON_IsString(data));
        assert_string_equal(from->valuestring, "care@shop.test");
        const char *rcpt = cJSON_GetArrayItem(to, 0)->valuestring;
        if (strcmp(rcpt, "ann@example.test") == 0) {
            seen_ann++;
            assert_contains(data->valuestring, "Subject: Hello Ann\r\n");
            assert_contains(data->valuestring, "To: Ann <ann@example.test>");
            assert_contains(data->valuestring, "From: Care <care@shop.test>\r\n");
            assert_contains(data->valuestring, "Dear Ann,\r\nyour parcel left the warehouse");
        } else if (strcmp(rcpt, "ling@example.test") == 0) {
            seen_ling++;
            /* "Hello 玲玲" as an RFC 2047 encoded word */
            /* "Hello 玲玲": the name as an RFC 2047 encoded word, the body base64 */
            assert_contains(data->valuestring, "Subject: =?UTF-8?B?SGVsbG8g546y546y?=\r\n");
            assert_contains(data->valuestring, "To: =?UTF-8?b?546y546y?= <ling@example.test>\r\n");
            assert_contains(data->valuestring, "Content-Transfer-Encoding: base64\r\n");
            assert_contains(data->valuestring, "Message-Id: <3-0.");
        } else {
            fail_msg("unexpected recipient %s", rcpt);
        }
    }
    assert_int_equal(seen_ann, 1);
    assert_int_equal(seen_ling, 1);
    cJSON_Delete(mails);
    assert_int_equal(mock_stat(&m, "smtp_messages"), 2);
    env_close(&v);
    mock_stop(&m);
}

/* Opt-out race: a marketing message deferred by quiet hours, then the
 * customer unsubscribes; at 08:30 the dispatcher checks again and keeps it
 * back. A second customer who did not unsubscribe gets hers at 08:30. */
/* A mock, an engine with quiet hours at 23:00 (+08:00) and customer c1:
 * a marketing message queued now waits for *morning. */
static void quiet_night(struct env *v, struct mock *m, tend_time *start, tend_time *morning)
{
    char err[128];
    mock_start(m, NULL);
    assert_int_equal(clock_parse_time("2026-03-02T23:00:00+08:00", start, err, sizeof err), 0);
    assert_int_equal(clock_parse_time("2026-03-03T08:30:00+08:00", morning, err, sizeof err), 0);
    env_open(v, make_config(m, NULL, 1), clock_new_virtual(*start));
    customer(v->e, "{\"id\":\"c1\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
}

static void test_suppression_recheck(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    tend_time start, morning;
    quiet_night(&v, &m, &start, &morning);
    customer(v.e, "{\"id\":\"c2\",\"name\":\"Bo\",\"phone\":\"+8613800000002\"}");
    notify(v.e, "c1", NULL, "promo", "spring sale");
    notify(v.e, "c2", NULL, "promo", "spring sale");
    assert_true(engine_run_due(v.e, start) > 0);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'deferred'"), 2);
    store_stmt *s = store_sql(v.e->st, "SELECT COUNT(*) FROM outbox_due WHERE due_at = ?");
    store_bind_int(s, 1, morning);
    assert_int_equal(store_step(s), STORE_ROW);
    assert_int_equal(store_col_int(s, 0), 2);
    store_reset(s);

    assert_int_equal(engine_advance(v.e, 30 * TEND_MINUTE), 0);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "unsubscribe");
    cJSON_AddStringToObject(ev, "customer", "c1");
    cJSON_AddStringToObject(ev, "channel", "sms");
    cJSON_AddNumberToObject(ev, "at", (double)engine_now(v.e));
    accept_event(v.e, ev);
    cJSON_Delete(ev);
    assert_true(engine_run_due(v.e, engine_now(v.e)) >= 0);
    assert_int_equal(mock_stat(&m, "requests"), 0);

    assert_int_equal(engine_advance(v.e, morning + 30 * TEND_MINUTE - engine_now(v.e)), 0);
    char *st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c1'");
    assert_string_equal(st, "suppressed");
    free(st);
    char *why = sql_text(v.e, "SELECT last_error FROM outbox WHERE customer = 'c1'");
    assert_contains(why, "unsubscribed");
    free(why);
    assert_int_equal(sql_int(v.e, "SELECT attempts FROM outbox WHERE customer = 'c1'"), 0);
    st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c2'");
    assert_string_equal(st, "sent");
    free(st);
    assert_int_equal(sql_int(v.e, "SELECT sent_at FROM outbox WHERE customer = 'c2'"), morning);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 0);
    /* the mock got c2's message only */
    assert_int_equal(mock_stat(&m, "requests"), 1);
    cJSON *d = mock_get(&m, "/_deliveries");
    assert_int_equal(cJSON_GetArraySize(d), 1);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(d, 0), "body");
    const cJSON *who = cJSON_GetObjectItemCaseSensitive(body, "customer");
    assert_true(cJSON_IsString(who));
    assert_string_equal(who->valuestring, "c2");
    cJSON_Delete(d);
    env_close(&v);
    mock_stop(&m);
}

/* branch deliv4: an opt-out of every channel (no channel: '*') made while
 * a marketing message waits for the morning also holds at delivery time
 * (read_due looks the '*' row up apart from the channel's own). */
static void test_suppression_recheck_all_channels(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    tend_time start, morning;
    quiet_night(&v, &m, &start, &morning);
    notify(v.e, "c1", NULL, "promo", "spring sale");
    assert_true(engine_run_due(v.e, start) > 0);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'deferred'"), 1);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "unsubscribe");
    cJSON_AddStringToObject(ev, "customer", "c1");
    cJSON_AddNumberToObject(ev, "at", (double)engine_now(v.e));
    accept_event(v.e, ev);
    cJSON_Delete(ev);
    assert_true(engine_run_due(v.e, engine_now(v.e)) >= 0);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM suppressions WHERE channel = '*'"), 1);
    assert_int_equal(engine_advance(v.e, morning + 30 * TEND_MINUTE - engine_now(v.e)), 0);
    char *st = sql_text(v.e, "SELECT status FROM outbox WHERE customer = 'c1'");
    assert_string_equal(st, "suppressed");
    free(st);
    assert_int_equal(mock_stat(&m, "requests"), 0);
    env_close(&v);
    mock_stop(&m);
}

/* branch deliv3: the http body is written without a cJSON tree; what
 * the provider gets is still valid JSON with every field as stored, for
 * texts that need escaping (quotes, backslashes, a tab and a control byte
 * in the text, UTF-8 in the customer id). */
static void test_http_body_escapes(void **state)
{
    (void)state;
    struct mock m;
    mock_start(&m, NULL);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), clock_new_virtual(T0));
    customer(v.e, "{\"id\":\"c-\u00e9\\\"q\\\\\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
    const char *what = "say \"hi\" \\ back\tnow \001 \xe4\xbd\xa0";
    notify(v.e, "c-\xc3\xa9\"q\\", NULL, NULL, what);
    assert_true(engine_run_due(v.e, T0) > 0);
    assert_int_equal(not_sent(v.e), 0);
    cJSON *d = mock_get(&m, "/_deliveries");
    assert_int_equal(cJSON_GetArraySize(d), 1);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(d, 0), "body");
    assert_true(cJSON_IsObject(body));   /* the mock parsed it */
    const char *want[][2] = {{"customer", "c-\xc3\xa9\"q\\"}, {"to", "+8613800000001"}, {"channel", "sms"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, want[i][0]);
        assert_true(cJSON_IsString(f));
        assert_string_equal(f->valuestring, want[i][1]);
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(body, "text");
    assert_true(cJSON_IsString(text));
    assert_non_null(strstr(text->valuestring, what));
    char *key = sql_text(v.e, "SELECT idem_key FROM outbox");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(body, "id")->valuestring, key);
    free(key);
    cJSON_Delete(d);
    env_close(&v);
    mock_stop(&m);
}

/* Issue 12: a channel's contact window holds at delivery time too. A
 * message queued inside the sms window (10:00-11:00, Shanghai) meets a 429
 * with Retry-After 120 at 10:59; its retry would go at 11:01, outside the
 * window, so the dispatcher defers it to the next opening (10:00 the next
 * day) instead of sending it then. */
static void test_window_recheck(void **state)
{
    (void)state;
    struct mock m;
    const char *args[] = {"--fail-rate", "1", "--faults", "429", "--retry-after", "120", NULL};
    mock_start(&m, args);
    tend_time start = T0 + 59 * TEND_MINUTE, next_open = T0 + 24 * 3600;   /* 10:59, 10:00 the next day */
    struct env v;
    env_open(&v, make_config(&m, "{\"window\":\"10:00-11:00\"}", 0), clock_new_virtual(start));
    customer(v.e, "{\"id\":\"c1\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
    notify(v.e, "c1", NULL, NULL, "your parcel");
    assert_true(engine_run_due(v.e, start) > 0);
    assert_int_equal(mock_stat(&m, "requests"), 1);
    assert_int_equal(sql_int(v.e, "SELECT due_at FROM outbox_due"), start + 120);

    int port = m.port;
    mock_stop(&m);
    mock_start_on(&m, port, NULL);
    assert_int_equal(engine_advance(v.e, 120), 0);          /* 11:01: outside the window */
    assert_int_equal(mock_stat(&m, "requests"), 0);
    char *status = sql_text(v.e, "SELECT status FROM outbox");
    assert_string_equal(status, "deferred");
    free(status);
    assert_int_equal(sql_int(v.e, "SELECT due_at FROM outbox_due"), next_open);
    assert_int_equal(engine_next_due(v.e), next_open);

    assert_int_equal(engine_advance(v.e, next_open - engine_now(v.e)), 0);
    status = sql_text(v.e, "SELECT status FROM outbox");
    assert_string_equal(status, "sent");
    free(status);
    assert_int_equal(sql_int(v.e, "SELECT sent_at FROM outbox"), next_open);
    assert_int_equal(sql_int(v.e, "SELECT attempts FROM outbox"), 2);
    assert_int_equal(mock_stat(&m, "deliveries"), 1);
    assert_counts_kept(v.e);    /* a deferred row claimed when it came due */
    env_close(&v);
    mock_stop(&m);
}

/* Segments and cost at price 0.05 per segment: UCS-2 70/67, GSM-7 160/153. */
static void test_cost(void **state)
{
    (void)state;
    struct mock m;
    mock_start(&m, NULL);
    struct env v;
    env_open(&v, make_config(&m, NULL, 0), clock_new_virtual(T0));
    char zh71[71 * 3 + 1] = "", zh70[70 * 3 + 1] = "", a160[161], a161[162];
    for (int i = 0; i < 71; i++)
        strcat(zh71, "\xe6\x82\xa8");       /* 您 */
    for (int i = 0; i < 70; i++)
        strcat(zh70, "\xe6\x82\xa8");
    memset(a160, 'a', 160);
    a160[160] = 0;
    memset(a161, 'b', 161);
    a161[161] = 0;
    const struct { const char *id, *text; int segments; double cost; } cases[] = {
        {"zh71", zh71, 2, 0.10}, {"zh70", zh70, 1, 0.05}, {"a160", a160, 1, 0.05}, {"a161", a161, 2, 0.10},
    };
    for (int i = 0; i < 4; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"id\":\"%s\",\"phone\":\"+861380000000%d\"}", cases[i].id, i);
        customer(v.e, json);
        notify(v.e, cases[i].id, NULL, "raw", cases[i].text);
    }
    assert_true(engine_run_due(v.e, engine_now(v.e)) > 0);
    store_stmt *s = store_sql(v.e->st, "SELECT status, segments, cost, body FROM outbox WHERE customer = ?");
    for (int i = 0; i < 4; i++) {
        store_bind_text(s, 1, cases[i].id, -1);
        assert_int_equal(store_step(s), STORE_ROW);
        assert_string_equal(store_col_text(s, 0), "sent");
        if (store_col_int(s, 1) != cases[i].segments)
            fail_msg("%s: %lld segments, expected %d", cases[i].id, (long long)store_col_int(s, 1),
                     cases[i].segments);
        assert_float_equal(store_col_double(s, 2), cases[i].cost, 1e-9);
        assert_contains(store_col_text(s, 3), cases[i].text);
        store_reset(s);
    }
    double total = 0;
    s = store_sql(v.e->st, "SELECT SUM(cost) FROM outbox WHERE status = 'sent'");
    assert_int_equal(store_step(s), STORE_ROW);
    total = store_col_double(s, 0);
    store_reset(s);
    assert_float_equal(total, 0.30, 1e-9);
    assert_int_equal(mock_stat(&m, "deliveries"), 4);
    env_close(&v);
    mock_stop(&m);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

/* After each test: stops any mock a failed test left running. */
static int stop_leftovers(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i]) {
            struct mock m = {.pid = live[i]};
            mock_stop(&m);
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    clock_shutdown();
    mime_shutdown();
    libevent_global_shutdown();
    return 0;
}

/* n queued rows of customer c1 (outbox_send, as a journey's send() writes
 * them), their queue keys in ids[] and due[] in key order. */
static void queued_rows(struct env *v, int n, int64_t *ids, tend_time *due)
{
    assert_int_equal(store_begin(v->e->st), 0);
    customer(v->e, "{\"id\":\"c1\",\"phone\":\"+8613800000001\"}");
    cJSON *vars = cJSON_CreateObject();
    cJSON_AddStringToObject(vars, "what", "hi");
    for (int i = 0; i < n; i++) {
        struct send_request r = {.instance = 0, .step = i, .journey = "t", .customer = "c1", .channel = "sms",
                                 .template_name = "raw", .vars = vars};
        struct send_result res;
        char err[256];
        assert_int_equal(outbox_send(v->e, &r, &res, err, sizeof err), 0);
        assert_string_equal(res.status, "queued");
    }
    cJSON_Delete(vars);
    assert_int_equal(store_commit(v->e->st), 0);
    store_stmt *s = store_sql(v->e->st, "SELECT due_at, id FROM outbox_due ORDER BY due_at, id");
    for (int i = 0; i < n; i++) {
        assert_int_equal(store_step(s), STORE_ROW);
        due[i] = store_col_int(s, 0);
        ids[i] = store_col_int(s, 1);
    }
    store_reset(s);
}

/* A store on a virtual clock at T0 with one http channel to a fresh mock,
 * and its end, the outbox counts checked against the rows. */
static void mock_env_open(struct mock *m, struct env *v)
{
    mock_start(m, NULL);
    env_open(v, make_config(m, NULL, 0), clock_new_virtual(T0));
}

static void mock_env_close(struct mock *m, struct env *v)
{
    assert_counts_kept(v->e);
    env_close(v);
    mock_stop(m);
}

/* n queued rows (at most 16), claimed together under `lease` and committed. */
static void claimed_rows(struct env *v, int n, int64_t *ids, tend_time lease)
{
    tend_time due[16];
    queued_rows(v, n, ids, due);
    assert_int_equal(store_begin(v->e->st), 0);
    assert_int_equal(outbox_claim_many(v->e, ids, due, n, lease), 0);
    assert_int_equal(store_commit(v->e->st), 0);
}

/* outbox_mark_sent_many of n results at T0 + 1, in its own committed
 * transaction. */
static void sent_committed(struct env *v, const int64_t *done, const char *const *responses, const tend_time *leases,
                           int n)
{
    assert_int_equal(store_begin(v->e->st), 0);
    assert_int_equal(outbox_mark_sent_many(v->e, done, responses, leases, n, T0 + 1), 0);
    assert_int_equal(store_commit(v->e->st), 0);
}

/* outbox_claim_many moves a run of consecutive queue entries to the lease
 * at once; claims that are not one (a queued row left between them) move
 * one by one, and the row between keeps its place. */
static void test_claim_runs(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    mock_env_open(&m, &v);
    int64_t ids[12];
    tend_time due[12];
    queued_rows(&v, 12, ids, due);
    tend_time lease = T0 + 120;
    int64_t gap_ids[5] = {ids[6], ids[7], ids[9], ids[10], ids[11]};     /* ids[8] is not claimed */
    tend_time gap_due[5] = {due[6], due[7], due[9], due[10], due[11]};
    assert_int_equal(store_begin(v.e->st), 0);
    assert_int_equal(outbox_claim_many(v.e, ids, due, 6, lease), 0);      /* a run */
    assert_int_equal(outbox_claim_many(v.e, gap_ids, gap_due, 5, lease), 0);
    assert_int_equal(store_commit(v.e->st), 0);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due WHERE due_at = 1772416920"), 11);
    char sql[160];
    assert_int_equal(due_at_of(&v, ids[8]), due[8]);
    snprintf(sql, sizeof sql, "SELECT status FROM outbox WHERE id = %lld", (long long)ids[8]);
    char *status = sql_text(v.e, sql);
    assert_string_equal(status, "queued");
    free(status);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'sending' AND attempts = 1"
                                          " AND due_key = 1772416920"), 11);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 12);
    mock_env_close(&m, &v);
}

/* outbox_mark_sent_many with the claims' leases: the rows leave the queue
 * by their lease keys; a row whose entry moved since its claim (here by
 * hand) and one whose lease is not known (0) leave it too, found through
 * due_key, and no other row's entry is touched. */
static void test_sent_by_lease(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    mock_env_open(&m, &v);
    int64_t ids[8];
    tend_time lease = T0 + 120;
    claimed_rows(&v, 8, ids, lease);
    /* ids[2]'s entry and due_key move on after its claim */
    char sql[200];
    move_due(&v, ids[2], lease + 60);
    int64_t done[5] = {ids[0], ids[1], ids[2], ids[3], ids[4]};
    const char *responses[5] = {"{}", "{}", "{}", NULL, "{}"};
    tend_time leases[5] = {lease, lease, lease, 0, lease};
    sent_committed(&v, done, responses, leases, 5);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND due_key IS NULL"), 5);
    /* the three still in flight keep their entries at the lease */
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox_due WHERE due_at = %lld AND id IN (%lld, %lld, %lld)",
             (long long)lease, (long long)ids[5], (long long)ids[6], (long long)ids[7]);
    assert_int_equal(store_count(v.e->st, sql), 3);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 3);
    mock_env_close(&m, &v);
}

/* A claim of rows with consecutive ids is one range UPDATE: a row of the
 * range that is not queued (deferred, come due; a claim that expired) is
 * claimed by the second statement, counted by the trigger, and every row
 * of the range is claimed once under the lease. */
static void test_claim_range(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    mock_env_open(&m, &v);
    int64_t ids[8];
    tend_time due[8];
    queued_rows(&v, 8, ids, due);
    assert_int_equal(ids[7], ids[0] + 7);
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE outbox SET status = 'deferred' WHERE id = %lld;"
             " UPDATE outbox SET status = 'sending', attempts = 1, due_key = %lld WHERE id = %lld",
             (long long)ids[2], (long long)due[5], (long long)ids[5]);
    assert_int_equal(store_exec(v.e->st, sql), 0);
    tend_time lease = T0 + 120;
    assert_int_equal(store_begin(v.e->st), 0);
    assert_int_equal(outbox_claim_many(v.e, ids + 1, due + 1, 6, lease), 0);  /* ids[1] .. ids[6] */
    assert_int_equal(store_commit(v.e->st), 0);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox WHERE status = 'sending' AND due_key = %lld"
             " AND attempts = (CASE id WHEN %lld THEN 2 ELSE 1 END)", (long long)lease, (long long)ids[5]);
    assert_int_equal(store_count(v.e->st, sql), 6);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox_due WHERE due_at = %lld", (long long)lease);
    assert_int_equal(store_count(v.e->st, sql), 6);
    /* the rows either side of the range are left as they were */
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND attempts = 0"), 2);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 8);
    mock_env_close(&m, &v);
}

/* The sent mark's queue entries leave by lease, a run of consecutive ids
 * in one range delete and the others by their keys, whatever the order
 * the results came in: the rows still in flight between and after them
 * keep their entries, and each row keeps its own response. */
static void test_sent_runs(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    mock_env_open(&m, &v);
    int64_t ids[10];
    tend_time lease = T0 + 120;
    claimed_rows(&v, 10, ids, lease);
    /* runs 0-2 and 5-6, a lone 8; 3, 4, 7 and 9 still in flight */
    int64_t done[6] = {ids[6], ids[0], ids[8], ids[2], ids[1], ids[5]};
    const char *responses[6] = {"r6", "r0", "r8", "r2", "r1", "r5"};
    tend_time leases[6] = {lease, lease, lease, lease, lease, lease};
    sent_committed(&v, done, responses, leases, 6);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND due_key IS NULL"
             " AND response = 'r' || (id - %lld)", (long long)ids[0]);
    assert_int_equal(store_count(v.e->st, sql), 6);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox_due WHERE due_at = %lld AND id IN (%lld, %lld, %lld, %lld)",
             (long long)lease, (long long)ids[3], (long long)ids[4], (long long)ids[7], (long long)ids[9]);
    assert_int_equal(store_count(v.e->st, sql), 4);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 4);
    mock_env_close(&m, &v);
}

/* A claim of consecutive ids moves their queue entries by one key range
 * filtered by id: another row's entry that lies inside that key range
 * (here a later row due between them) keeps its place, and the claimed
 * rows' entries all move to the lease. */
static void test_claim_range_foreign_entry(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    mock_env_open(&m, &v);
    int64_t ids[8];
    tend_time due[8];
    queued_rows(&v, 8, ids, due);
    char sql[300];
    for (int i = 0; i < 8; i++) {
        tend_time at = i == 7 ? T0 - 7 : T0 - 10 + i;   /* ids[7] due between ids[2] and ids[4] */
        move_due(&v, ids[i], at);
        due[i] = at;
    }
    tend_time lease = T0 + 120;
    assert_int_equal(store_begin(v.e->st), 0);
    assert_int_equal(outbox_claim_many(v.e, ids, due, 6, lease), 0);   /* ids[0] .. ids[5] */
    assert_int_equal(store_commit(v.e->st), 0);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox_due WHERE due_at = %lld AND id BETWEEN %lld AND %lld",
             (long long)lease, (long long)ids[0], (long long)ids[5]);
    assert_int_equal(store_count(v.e->st, sql), 6);
    assert_int_equal(due_at_of(&v, ids[7]), T0 - 7);
    assert_int_equal(due_at_of(&v, ids[6]), T0 - 4);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 8);
    mock_env_close(&m, &v);
}

/* A sent mark's run of consecutive ids is one range UPDATE: a row of the
 * run that is not `sending` (here set back to queued by hand, as a file
 * channel's rows are) is marked by the second statement and counted by the
 * trigger (mock_env_close checks outbox_counts), each row keeps its own
 * response, a NULL one included, and the row after the run is untouched. */
static void test_sent_range_rest(void **state)
{
    (void)state;
    struct mock m;
    struct env v;
    mock_env_open(&m, &v);
    int64_t ids[6];
    tend_time lease = T0 + 120;
    claimed_rows(&v, 6, ids, lease);
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE outbox SET status = 'queued' WHERE id = %lld", (long long)ids[2]);
    assert_int_equal(store_exec(v.e->st, sql), 0);
    int64_t done[5] = {ids[4], ids[0], ids[3], ids[1], ids[2]};
    const char *responses[5] = {"r4", "r0", NULL, "r1", "r2"};
    tend_time leases[5] = {lease, lease, lease, lease, lease};
    sent_committed(&v, done, responses, leases, 5);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND due_key IS NULL AND sent_at = %lld"
             " AND response IS (CASE id - %lld WHEN 3 THEN NULL ELSE 'r' || (id - %lld) END)",
             (long long)(T0 + 1), (long long)ids[0], (long long)ids[0]);
    assert_int_equal(store_count(v.e->st, sql), 5);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM outbox WHERE status = 'sending' AND response IS NULL AND id = %lld",
             (long long)ids[5]);
    assert_int_equal(store_count(v.e->st, sql), 1);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM outbox_due"), 1);
    mock_env_close(&m, &v);
}

/* A proxy named by the environment (http_proxy) is still used: the
 * dispatcher tells libcurl there is none only when no *_proxy variable is
 * set. The channel's URL points at a port nothing listens on; the mock is
 * the proxy, and gets the request. */
static void test_proxy_from_environment(void **state)
{
    (void)state;
    struct mock m;
    mock_start(&m, NULL);
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", m.port);
    assert_int_equal(setenv("http_proxy", proxy, 1), 0);
    cJSON *cfg = make_config(&m, NULL, 0);
    cJSON *sms = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "channels"), "sms");
    cJSON_ReplaceItemInObjectCaseSensitive(sms, "url", cJSON_CreateString("http://127.0.0.1:9/sms"));
    struct env v;
    env_open(&v, cfg, clock_new_virtual(T0));
    customer(v.e, "{\"id\":\"c1\",\"name\":\"Ann\",\"phone\":\"+8613800000001\"}");
    notify(v.e, "c1", NULL, NULL, "through the proxy");
    assert_true(engine_run_due(v.e, T0) > 0);
    unsetenv("http_proxy");
    assert_int_equal(not_sent(v.e), 0);
    cJSON *d = mock_get(&m, "/_deliveries");
    assert_int_equal(cJSON_GetArraySize(d), 1);
    cJSON_Delete(d);
    env_close(&v);
    mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sync_faults_exactly_once, stop_leftovers),
        cmocka_unit_test_teardown(test_async_faults_exactly_once, stop_leftovers),
        cmocka_unit_test_teardown(test_async_faults_real_clock, stop_leftovers),
        cmocka_unit_test_teardown(test_async_timeouts_replay, stop_leftovers),
        cmocka_unit_test_teardown(test_dead_letter, stop_leftovers),
        cmocka_unit_test_teardown(test_retry_after, stop_leftovers),
        cmocka_unit_test_teardown(test_crash_retry_same_key, stop_leftovers),
        cmocka_unit_test_teardown(test_crash_retry_replayed, stop_leftovers),
        cmocka_unit_test_teardown(test_claim_ahead_crash, stop_leftovers),
        cmocka_unit_test_teardown(test_burst_batches, stop_leftovers),
        cmocka_unit_test_teardown(test_smtp, stop_leftovers),
        cmocka_unit_test_teardown(test_smtp_header_injection, stop_leftovers),
        cmocka_unit_test_teardown(test_http_header_injection, stop_leftovers),
        cmocka_unit_test_teardown(test_suppression_recheck, stop_leftovers),
        cmocka_unit_test_teardown(test_suppression_recheck_all_channels, stop_leftovers),
        cmocka_unit_test_teardown(test_http_body_escapes, stop_leftovers),
        cmocka_unit_test_teardown(test_window_recheck, stop_leftovers),
        cmocka_unit_test_teardown(test_cost, stop_leftovers),
        cmocka_unit_test_teardown(test_claim_runs, stop_leftovers),
        cmocka_unit_test_teardown(test_sent_by_lease, stop_leftovers),
        cmocka_unit_test_teardown(test_claim_range, stop_leftovers),
        cmocka_unit_test_teardown(test_sent_runs, stop_leftovers),
        cmocka_unit_test_teardown(test_sent_range_rest, stop_leftovers),
        cmocka_unit_test_teardown(test_claim_range_foreign_entry, stop_leftovers),
        cmocka_unit_test_teardown(test_proxy_from_environment, stop_leftovers),
        cmocka_unit_test_teardown(test_channel_urls_kept_apart, stop_leftovers),
    };
    /* TEST_DISPATCH_FILTER=test_smtp (a glob) runs only the matching tests */
    const char *only = getenv("TEST_DISPATCH_FILTER");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, setup, teardown);
}
