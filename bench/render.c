/* bench/render — Liquid template render rate, one core.
 *
 *   build/release/bench_render [N]        (default 1000000)
 *
 * A 10-line template (an if/else on the customer's language, money, a local
 * date, a loop over 5 order items with forloop.last, plural, truncate) is
 * compiled once and rendered N times with the vars a send would see (the
 * customer's fields and 5 items). Printed: renders per CPU second and the
 * bytes of one message. Target: >= 200,000 renders/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "template.h"

static const char TEMPLATE[] =
    "{% if attrs.lang == \"en\" %}Hi {{ name | default: \"there\" }},{% else %}{{ name | default: \"亲爱的顾客\" }}，您好！{% endif %}\n"
    "Your order {{ order.id | upcase }} of {{ order.at | date: \"%-m月%-d日 %H:%M\" }} is on its way:\n"
    "{% for i in items limit: 5 %}\n"
    "  {{ forloop.index }}. {{ i.name | truncate: 20 }} x{{ i.qty }} {{ i.price | times: i.qty | money }}"
    "{% if forloop.last %}.{% else %};{% endif %}\n"
    "{% endfor %}\n"
    "Total {{ order.total | money }} for {{ items | size }} {{ items | size | plural: \"item\", \"items\" }}.\n"
    "{% if orders_count > 1 %}Thank you for coming back.{% else %}Welcome!{% endif %}\n"
    "Track it: https://shop.example/t/{{ order.id }}\n";

static const char VARS[] =
    "{\"id\":\"c1\",\"name\":\"王小明\",\"city\":\"上海\",\"timezone\":\"Asia/Shanghai\",\"orders_count\":3,"
    "\"total_spent\":1299.5,\"attrs\":{\"lang\":\"zh\"},"
    "\"order\":{\"id\":\"a1b2c3\",\"at\":1772328600,\"total\":1234.5},"
    "\"items\":[{\"name\":\"洗发水 Shampoo 500ml\",\"qty\":2,\"price\":59},"
    "{\"name\":\"护发素 Conditioner\",\"qty\":1,\"price\":69},"
    "{\"name\":\"发膜 Hair mask deep repair\",\"qty\":1,\"price\":129.9},"
    "{\"name\":\"梳子 Comb\",\"qty\":3,\"price\":19.5},"
    "{\"name\":\"毛巾 Towel\",\"qty\":2,\"price\":35}]}";

/* CPU time of this process: the rate of one core, whatever else the
 * machine is running at the time. */
static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char err[300];
    template_prog *t = template_compile(TEMPLATE, 0, err, sizeof err);
    cJSON *vars = cJSON_Parse(VARS);
    if (!t || !vars) {
        fprintf(stderr, "bench_render: %s\n", t ? "bad vars" : err);
        return 1;
    }
    struct template_env env = {"Asia/Shanghai", "CNY", 1772328600};
    char *one = template_run(t, vars, &env, err, sizeof err);
    if (!one) {
        fprintf(stderr, "bench_render: %s\n", err);
        return 1;
    }
    size_t bytes = strlen(one);
    free(one);
    double a = seconds();
    size_t total = 0;
    for (long i = 0; i < n; i++) {
        char *out = template_run(t, vars, &env, err, sizeof err);
        total += strlen(out);
        free(out);
    }
    double b = seconds();
    printf("render: %ld renders of a 10-line template with a 5-item loop in %.2f s CPU = %.0f renders/s"
           " (%zu bytes each; target >= 200000)\n", n, b - a, n / (b - a), bytes);
    if (total != bytes * (size_t)n)
        return 1;
    template_free(t);
    cJSON_Delete(vars);
    clock_shutdown();
    return 0;
}
