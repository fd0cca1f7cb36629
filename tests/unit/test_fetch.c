/* Unit tests for runtime/fetch.c.
 *
 *  - the connect-address guard (fetch_address_refused): which addresses
 *    http_get may connect to; addresses built with inet_pton;
 *  - http_get on an attached loop (engine_attach) with a virtual clock:
 *    the instance suspends, the request runs on the loop, the answer is
 *    recorded and the journey goes on; no redirect is followed, a body over
 *    1 MiB is an error, an allowed name resolving to 127.0.0.1 is refused
 *    before any byte is sent. The server is libevent's evhttp on the same
 *    loop, on 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "event.h"
#include "fetch.h"

/* The refusal for `text` (an IPv4 or IPv6 address) with `allow`, or NULL. */
static const char *judge(char *const *allow, const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    char shown[64];
    return fetch_address_refused(allow, (const struct sockaddr *)&ss, shown, sizeof shown);
}

static void expect(char *const *allow, const char *text, const char *why)
{
    const char *got = judge(allow, text);
    if (why == NULL && got != NULL)
        fail_msg("%s: refused as %s, expected allowed", text, got);
    if (why != NULL && (got == NULL || strcmp(got, why) != 0))
        fail_msg("%s: %s, expected refused as %s", text, got ? got : "allowed", why);
}

static void test_ipv4_inner_addresses_refused(void **state)
{
    (void)state;
    static const struct { const char *addr, *why; } cases[] = {
        {"127.0.0.1", "loopback"},      {"127.255.1.2", "loopback"},
        {"10.0.0.1", "private"},        {"10.255.255.255", "private"},
        {"172.16.0.1", "private"},      {"172.31.255.254", "private"},
        {"192.168.1.1", "private"},     {"169.254.169.254", "link-local"},
        {"0.0.0.0", "unspecified"},     {"0.1.2.3", "unspecified"},
        {"100.64.0.1", "shared address space"},
        {"224.0.0.1", "multicast"},     {"239.255.255.250", "multicast"},
        {"255.255.255.255", "reserved"}, {"240.0.0.1", "reserved"},
        {"192.0.2.10", "documentation"}, {"198.18.0.1", "benchmarking"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(NULL, cases[i].addr, cases[i].why);
}

static void test_ipv4_public_allowed(void **state)
{
    (void)state;
    const char *ok[] = {"8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.0", "192.167.255.255",
                        "100.128.0.0", "11.0.0.0", "223.255.255.255", "169.253.0.1"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        expect(NULL, ok[i], NULL);
}

static void test_ipv6(void **state)
{
    (void)state;
    static const struct { const char *addr, *why; } cases[] = {
        {"::1", "loopback"},                    {"::", "unspecified"},
        {"::ffff:127.0.0.1", "loopback"},       {"::ffff:10.1.2.3", "private"},
        {"::ffff:192.168.0.1", "private"},      {"::127.0.0.1", "loopback"},
        {"64:ff9b::7f00:1", "loopback"},        {"2002:7f00:1::", "loopback"},
        {"2002:a00:1::1", "private"},           {"fc00::1", "unique-local"},
        {"fd12:3456::1", "unique-local"},       {"fe80::1", "link-local"},
        {"febf::1", "link-local"},              {"fec0::1", "site-local"},
        {"ff02::1", "multicast"},               {"2001:db8::1", "documentation"},
        {"2001::1", "special-purpose"},         {"100::1", "discard-only"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(NULL, cases[i].addr, cases[i].why);
    expect(NULL, "2606:4700::1111", NULL);
    expect(NULL, "::ffff:8.8.8.8", NULL);
    expect(NULL, "64:ff9b::808:808", NULL);
    expect(NULL, "2002:808:808::1", NULL);
}

/* Only the very address named in http_allow opens it, in any spelling of it;
 * a host name in the list opens nothing. */
static void test_literal_allow(void **state)
{
    (void)state;
    char *allow[] = {"localhost", "*.shop.test", "127.0.0.1", "[::1]", "fd00::7", NULL};
    expect(allow, "127.0.0.1", NULL);
    expect(allow, "::ffff:127.0.0.1", NULL);
    expect(allow, "::1", NULL);
    expect(allow, "fd00::7", NULL);
    expect(allow, "127.0.0.2", "loopback");
    expect(allow, "fd00::8", "unique-local");
    expect(allow, "10.0.0.1", "private");
    char *names[] = {"localhost", "intranet", NULL};
    expect(names, "127.0.0.1", "loopback");
}

static void test_address_shown(void **state)
{
    (void)state;
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    inet_pton(AF_INET, "192.168.7.9", &in.sin_addr);
    char shown[64];
    assert_string_equal(fetch_address_refused(NULL, (struct sockaddr *)&in, shown, sizeof shown), "private");
    assert_string_equal(shown, "192.168.7.9");
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_non_null(fetch_address_refused(NULL, &un, shown, sizeof shown));
}

/* --- http_get on the loop ------------------------------------------------ */

static const char SCRIPT[] =
    "template 'got' { category = 'transactional', sms = '{{what}}' }\n"
    "journey 'look' { on = 'look', run = function(c, ev)\n"
    "  local r, err = http_get(ev.url)\n"
    "  send('sms', c, 'got', { what = r and (r.status .. ' ' .. #r.body .. ' ' .. r.body:sub(1, 20))\n"
    "                                  or ('error ' .. err) })\n"
    "end }\n";

struct site {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int requests;
};

static void serve(struct evhttp_request *req, void *arg)
{
    struct site *site = arg;
    site->requests++;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *b = evbuffer_new();
    if (strcmp(uri, "/redirect") == 0) {
        char to[80];
        snprintf(to, sizeof to, "http://127.0.0.1:%d/ok", site->port);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", to);
        evhttp_send_reply(req, 302, "Found", b);
    } else if (strcmp(uri, "/big") == 0) {
        char chunk[4096];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 2 * 256; i++)   /* 2 MiB */
            evbuffer_add(b, chunk, sizeof chunk);
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        evbuffer_add_printf(b, "{\"n\": 1}");
        evhttp_send_reply(req, 200, "OK", b);
    }
    evbuffer_free(b);
}

static void site_start(struct site *site, struct event_base *base)
{
    memset(site, 0, sizeof *site);
    site->base = base;
    site->http = evhttp_new(base);
    evhttp_set_gencb(site->http, serve, site);
    struct evhttp_bound_socket *h = evhttp_bind_socket_with_handle(site->http, "127.0.0.1", 0);
    assert_non_null(h);
    struct sockaddr_in in;
    socklen_t len = sizeof in;
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&in, &len), 0);
    site->port = ntohs(in.sin_port);
}

struct env {
    char db[64];
    tclock *clk;
    engine *e;
    struct event_base *base;
    struct site site;
};

static void env_open(struct env *v, const char *allow_json)
{
    memset(v, 0, sizeof *v);
    snprintf(v->db, sizeof v->db, "/tmp/test_fetch_XXXXXX");
    int fd = mkstemp(v->db);
    assert_true(fd >= 0);
    close(fd);
    v->clk = clock_new_virtual(1767225600);
    char conf[300];
    snprintf(conf, sizeof conf, "{\"timezone\": \"Asia/Shanghai\", \"quiet_hours\": false, \"caps\": false,"
                                " \"unknown_customers\": \"create\", \"http_allow\": %s}", allow_json);
    cJSON *config = cJSON_Parse(conf);
    struct engine_options o = {.db_path = v->db, .clock = v->clk, .capture = 1, .config = config};
    char *err = NULL;
    v->e = engine_open(&o, &err);
    cJSON_Delete(config);
    if (!v->e)
        fail_msg("engine_open: %s", err ? err : "?");
    char *errors = NULL;
    if (engine_load_source(v->e, "t.lua", SCRIPT, sizeof SCRIPT - 1, &errors) != 0)
        fail_msg("load: %s", errors ? errors : "?");
    v->base = event_base_new();
    assert_int_equal(engine_attach(v->e, v->base, NULL, NULL), 0);
    site_start(&v->site, v->base);
}

static void env_close(struct env *v)
{
    engine_close(v->e);
    evhttp_free(v->site.http);
    event_base_free(v->base);
    clock_free(v->clk);
    store_remove(v->db);
}

/* Posts a look event for `customer` at http://HOST:port/PATH (written into
 * url) and lets the engine run it through; returns the text the journey
 * sent (malloc'd). */
static char *look(struct env *v, const char *customer, const char *host, const char *path, char *url,
                  size_t urllen)
{
    snprintf(url, urllen, "http://%s:%d%s", host, v->site.port, path);
    char text[300];
    snprintf(text, sizeof text, "{\"type\": \"look\", \"customer\": \"%s\", \"url\": \"%s\"}", customer, url);
    cJSON *ev = cJSON_Parse(text);
    struct event_result res;
    char err[200];
    assert_int_equal(event_accept(v->e, ev, &res, err, sizeof err), 0);
    cJSON_Delete(ev);
    assert_int_equal(engine_advance(v->e, 0), 0);
    store_stmt *s = store_sql(v->e->st, "SELECT body FROM outbox WHERE customer = ?");
    store_bind_text(s, 1, customer, -1);
    if (store_step(s) != STORE_ROW)
        fail_msg("no message for %s", customer);
    cJSON *body = cJSON_Parse(store_col_text(s, 0));
    store_reset(s);
    char *out = strdup(cJSON_GetObjectItemCaseSensitive(body, "text")->valuestring);
    cJSON_Delete(body);
    assert_int_equal(store_count(v->e->st, "SELECT COUNT(*) FROM fetches"), 0);
    return out;
}

static void test_loop_answer_redirect_and_cap(void **state)
{
    (void)state;
    struct env v;
    env_open(&v, "[\"127.0.0.1\"]");
    char url[100];
    char *got = look(&v, "c1", "127.0.0.1", "/ok", url, sizeof url);
    assert_string_equal(got, "200 8 {\"n\": 1}");
    free(got);
    assert_int_equal(v.site.requests, 1);
    assert_int_equal(store_count(v.e->st, "SELECT COUNT(*) FROM instances WHERE state = 'done'"), 1);

    got = look(&v, "c2", "127.0.0.1", "/redirect", url, sizeof url);
    assert_string_equal(got, "302 0 ");   /* returned as is, not followed */
    free(got);
    assert_int_equal(v.site.requests, 2);

    got = look(&v, "c3", "127.0.0.1", "/big", url, sizeof url);
    char want[200];
    snprintf(want, sizeof want, "error GET %s: body larger than 1 MiB", url);
    assert_string_equal(got, want);
    free(got);
    env_close(&v);
}

static void test_loop_name_resolving_to_loopback_refused(void **state)
{
    (void)state;
    struct env v;
    env_open(&v, "[\"localhost\"]");
    char url[100];
    char *got = look(&v, "c1", "localhost", "/ok", url, sizeof url);
    char want[300];
    snprintf(want, sizeof want, "error GET %s refused: localhost resolves to ", url);
    if (strncmp(got, want, strlen(want)) != 0 || !strstr(got, "127.0.0.1 (loopback)") ||
        !strstr(got, "http_allow (tend.lua) does not name that address"))
        fail_msg("expected the refusal, got: %s", got);
    free(got);
    assert_int_equal(v.site.requests, 0);   /* nothing reached the listener */
    env_close(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_inner_addresses_refused),
        cmocka_unit_test(test_ipv4_public_allowed),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_literal_allow),
        cmocka_unit_test(test_address_shown),
        cmocka_unit_test(test_loop_answer_redirect_and_cap),
        cmocka_unit_test(test_loop_name_resolving_to_loopback_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
