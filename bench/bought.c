/* bench/bought — the bought filter over many customers and order lines.
 *
 *   build/release/bench_bought [N [DB]]     (default N = 100000)
 *
 * N customers with 5 order lines each (in 1 to 3 orders over the last
 * year; 200 skus in 10 categories) are stored through orderline_batch_*,
 * the code event processing uses, in batches of 20,000 orders. Then compiled
 * segments count: bought = {category, within = 30 days} (the design's
 * target at 10M customers / 50M lines: < 200 ms), an sku in a window,
 * at_least 2 in a window, and not_(bought{...}). Each count runs 5 times;
 * the fastest and the median are printed with the count. DB defaults to a
 * temporary file, removed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "orderline.h"
#include "segment.h"
#include "store.h"
#include "util.h"

#define NOW 1767225600LL    /* 2026-01-01T00:00:00Z */
#define DAY 86400LL

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t below(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
}

static void die(store *st, const char *what)
{
    fprintf(stderr, "bench_bought: %s: %s\n", what, st ? store_errmsg(st) : "");
    exit(1);
}

/* The store as a bulk load builds it: bought_recent (kind, key, last_at,
 * orders) is dropped while the random-time facts go in and built once at
 * the end, a sort instead of 2N random index inserts; the same index the
 * schema makes, so the counts below read what a live store has. */
static void generate(store *st, long n)
{
    double a = seconds();
    if (store_exec(st, "DROP INDEX bought_recent") != 0)
        die(st, "drop index");
    long orders = 0, lines = 0, in_batch = 0;
    orderline_batch *batch = orderline_batch_new();
    if (store_begin(st) != 0)
        die(st, "begin");
    for (long i = 1; i <= n; i++) {
        char id[24];
        snprintf(id, sizeof id, "c%010ld", i);
        store_stmt *s = store_sql(st, "INSERT INTO customers (id, first_seen_at) VALUES (?, ?)");
        store_bind_text(s, 1, id, -1);
        store_bind_int(s, 2, NOW - 400 * DAY);
        if (store_run(s) != 0)
            die(st, "customer");
        int norders = 1 + (int)below(3), left = 5;
        for (int o = 0; o < norders; o++) {
            int k = o == norders - 1 ? left : 1 + (int)below((uint64_t)(left - (norders - o - 1)));
            left -= k;
            cJSON *items = cJSON_CreateArray();
            for (int j = 0; j < k; j++) {
                int sku = (int)below(200);
                char sk[8], cat[8];
                snprintf(sk, sizeof sk, "S%03d", sku);
                snprintf(cat, sizeof cat, "k%d", sku % 10);
                cJSON *it = cJSON_CreateObject();
                cJSON_AddStringToObject(it, "sku", sk);
                cJSON_AddStringToObject(it, "category", cat);
                cJSON_AddNumberToObject(it, "qty", 1 + (double)below(3));
                cJSON_AddNumberToObject(it, "price", 5 + (double)below(200));
                cJSON_AddItemToArray(items, it);
            }
            char oid[24];
            snprintf(oid, sizeof oid, "o%ld-%d", i, o);
            orderline_batch_add(batch, id, oid, NOW - (long long)below(365 * DAY), items);
            cJSON_Delete(items);
            orders++;
            if (++in_batch == 20000) {
                int got = orderline_batch_flush(batch, st);
                if (got < 0)
                    die(st, "orderline_batch_flush");
                lines += got;
                if (store_commit(st) != 0 || store_begin(st) != 0)
                    die(st, "commit");
                in_batch = 0;
            }
        }
    }
    int got = orderline_batch_flush(batch, st);
    if (got < 0)
        die(st, "orderline_batch_flush");
    lines += got;
    orderline_batch_free(batch);
    if (store_exec(st, "CREATE INDEX bought_recent ON bought(kind, key, last_at, orders)") != 0 ||
        store_commit(st) != 0)
        die(st, "commit");
    double b = seconds();
    printf("bought: %ld customers, %ld orders, %ld lines stored through orderline_batch (index built after) in %.2f s"
           " = %.0f orders/s (%.0f lines/s)\n", n, orders, lines, b - a, orders / (b - a), lines / (b - a));
}

/* Compiles `filter` (Lua source of a table) and times segment_count. */
static void measure(store *st, lua_State *L, const char *label, const char *filter)
{
    char *code = xasprintf("return %s", filter);
    if (luaL_dostring(L, code) != LUA_OK) {
        fprintf(stderr, "bench_bought: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    free(code);
    char err[300];
    segment_query *q = segment_compile(L, -1, NOW, err, sizeof err);
    lua_pop(L, 1);
    if (!q) {
        fprintf(stderr, "bench_bought: %s\n", err);
        exit(1);
    }
    double t[5];
    int64_t count = 0;
    for (int i = 0; i < 5; i++) {
        double a = seconds();
        count = segment_count(st, q);
        t[i] = (seconds() - a) * 1000;
        if (count < 0)
            die(st, "count");
    }
    for (int i = 1; i < 5; i++)     /* sort the five */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    printf("bought: %-44s %9lld customers  fastest %8.1f ms  median %8.1f ms\n", label, (long long)count,
           t[0], t[2]);
    segment_query_free(q);
}

/* Filter nodes as the helpers make them (a table with op and a metatable
 * segment.c recognises); enough for not_ and bought here. */
static const char NODES[] =
    "local mt = {}\n"
    "debug.getregistry()['tend.filter'] = mt\n"
    "function not_(x) return setmetatable({ op = 'not', x }, mt) end\n"
    "function bought(x) return setmetatable({ op = 'bought', x }, mt) end\n";

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    char tmpl[] = "/tmp/bench-bought.XXXXXX";
    const char *path = argc > 2 ? argv[2] : NULL;
    if (!path) {
        int fd = mkstemp(tmpl);
        if (fd < 0)
            die(NULL, "mkstemp");
        close(fd);
        unlink(tmpl);
        path = tmpl;
    }
    struct store_options so = {.synchronous_normal = 1};
    char *err = NULL;
    store *st = store_open(path, &so, &err);
    if (!st) {
        fprintf(stderr, "bench_bought: %s\n", err);
        return 1;
    }
    if (store_count(st, "SELECT COUNT(*) FROM customers") == 0)
        generate(st, n);
    else
        printf("bought: reusing %s (%lld customers, %lld lines)\n", path,
               (long long)store_count(st, "SELECT COUNT(*) FROM customers"),
               (long long)store_count(st, "SELECT COUNT(*) FROM order_items"));
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, NODES) != LUA_OK)
        die(NULL, lua_tostring(L, -1));
    measure(st, L, "{category, within = 30 days}", "{ bought = { category = 'k3', within = 30 * 86400 } }");
    measure(st, L, "{sku, within = 30 days}", "{ bought = { sku = 'S042', within = 30 * 86400 } }");
    measure(st, L, "{category, within = 90 days, at_least = 2}",
            "{ bought = { category = 'k3', within = 90 * 86400, at_least = 2 } }");
    measure(st, L, "{category} (ever)", "{ bought = { category = 'k3' } }");
    measure(st, L, "not_(bought{category, within = 30 days})",
            "{ not_(bought{ category = 'k3', within = 30 * 86400 }) }");
    lua_close(L);
    store_close(st);
    if (argc <= 2)
        store_remove(path);
    return 0;
}
