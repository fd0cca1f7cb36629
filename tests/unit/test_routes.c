/* The router and its description: every route `tend run` serves is in
 * docs/openapi.yaml (compiled in as openapi_json), and every operation the
 * document describes is a route — so neither can drift from the other. And
 * the metrics registry renders the text format Prometheus parses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metrics.h"
#include "openapi.h"
#include "server.h"

static const char *const http_methods[] = {"get", "put", "post", "delete", "patch", "head", "options", NULL};

static void lower(const char *in, char *out, size_t n)
{
    size_t i = 0;
    for (; in[i] && i + 1 < n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = 0;
}

static void every_route_is_described(void **state)
{
    (void)state;
    cJSON *doc = cJSON_Parse(openapi_json);
    assert_non_null(doc);
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    assert_true(cJSON_IsObject(paths));
    int missing = 0;
    for (int i = 0; i < server_route_count(); i++) {
        const char *method, *path;
        server_route_at(i, &method, &path);
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(paths, path);
        char m[16];
        lower(strcmp(method, "*") ? method : "GET", m, sizeof m);
        if (!item || !cJSON_GetObjectItemCaseSensitive(item, m)) {
            fprintf(stderr, "route %s %s is not in docs/openapi.yaml\n", method, path);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
    cJSON_Delete(doc);
}

static void every_operation_is_routed(void **state)
{
    (void)state;
    cJSON *doc = cJSON_Parse(openapi_json);
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    int extra = 0, ops = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, paths) {
        for (const char *const *m = http_methods; *m; m++) {
            if (!cJSON_GetObjectItemCaseSensitive(item, *m))
                continue;
            ops++;
            int found = 0;
            for (int i = 0; i < server_route_count() && !found; i++) {
                const char *method, *path;
                server_route_at(i, &method, &path);
                char lm[16];
                lower(method, lm, sizeof lm);
                found = !strcmp(path, item->string) && (!strcmp(lm, *m) || !strcmp(method, "*"));
            }
            if (!found) {
                fprintf(stderr, "docs/openapi.yaml describes %s %s, which no route serves\n", *m, item->string);
                extra++;
            }
        }
    }
    assert_true(ops >= server_route_count());
    assert_int_equal(extra, 0);
    cJSON_Delete(doc);
}

static void metrics_render_help_type_and_histograms(void **state)
{
    (void)state;
    metrics *m = metrics_new();
    metrics_add(m, M_SENDS, (const char *const[]){"sms", "queued"}, 2);
    metrics_add(m, M_SENDS, (const char *const[]){"sms", "capped"}, 1);
    metrics_inc(m, M_DELIVERIES, "we\"ird\\chan");
    metrics_observe(m, M_DELIVERY_LATENCY, (const char *const[]){"sms"}, 0.02);
    metrics_observe(m, M_DELIVERY_LATENCY, (const char *const[]){"sms"}, 7);
    assert_true(metrics_value(m, M_SENDS, (const char *const[]){"sms", "queued"}) == 2);
    strbuf b;
    strbuf_init(&b);
    metrics_render(m, &b);
    assert_non_null(strstr(b.s, "# HELP tend_sends_total "));
    assert_non_null(strstr(b.s, "# TYPE tend_sends_total counter\n"));
    assert_non_null(strstr(b.s, "tend_sends_total{channel=\"sms\",status=\"queued\"} 2\n"));
    assert_non_null(strstr(b.s, "tend_deliveries_total{channel=\"we\\\"ird\\\\chan\"} 1\n"));
    /* cumulative buckets: 0.02 is under 0.025, both are under 10 and +Inf */
    assert_non_null(strstr(b.s, "tend_delivery_latency_seconds_bucket{channel=\"sms\",le=\"0.01\"} 0\n"));
    assert_non_null(strstr(b.s, "tend_delivery_latency_seconds_bucket{channel=\"sms\",le=\"0.025\"} 1\n"));
    assert_non_null(strstr(b.s, "tend_delivery_latency_seconds_bucket{channel=\"sms\",le=\"10\"} 2\n"));
    assert_non_null(strstr(b.s, "tend_delivery_latency_seconds_bucket{channel=\"sms\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(b.s, "tend_delivery_latency_seconds_count{channel=\"sms\"} 2\n"));
    /* a family with no labels shows a zero sample before its first event */
    assert_non_null(strstr(b.s, "\ntend_events_ingested_total 0\n"));
    assert_non_null(strstr(b.s, "tend_wake_lateness_seconds_count 0\n"));
    strbuf_free(&b);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_described),
        cmocka_unit_test(every_operation_is_routed),
        cmocka_unit_test(metrics_render_help_type_and_histograms),
    };
    return cmocka_run_group_tests_name("routes", tests, NULL, NULL);
}
