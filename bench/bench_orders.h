/* bench/bench_orders.h — order.paid events with items, read from NDJSON
 * before a bench's clock starts (header only: each bench/X.c is its own
 * program). Shared by bench_orders_raw (tend's rows) and
 * bench_orders_floor (the fewest rows). */
#ifndef TEND_BENCH_ORDERS_H
#define TEND_BENCH_ORDERS_H

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench_sqlite.h"
#include "util.h"

#define BENCH_MAX_ITEMS 8

struct bench_item {
    char sku[16], category[16];
    double qty, price;
};

/* One event: its texts are owned (bench_orders_free frees them); items
 * past BENCH_MAX_ITEMS are dropped. */
struct bench_order {
    char *id, *customer, *order, *line;
    long long at;
    double total;
    int nitems;
    struct bench_item items[BENCH_MAX_ITEMS];
};

struct bench_orders {
    struct bench_order *v;
    size_t n, cap;
};

static inline double bench_number_of(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* A bench_load_ndjson callback: appends the event j (its line's bytes
 * kept as the body) to the struct bench_orders at ud. */
static inline void bench_add_order(const cJSON *j, char *line, size_t k, void *ud)
{
    struct bench_orders *e = ud;
    if (e->n == e->cap)
        e->v = xrealloc(e->v, (e->cap = e->cap ? e->cap * 2 : 65536) * sizeof *e->v);
    struct bench_order *x = &e->v[e->n++];
    memset(x, 0, sizeof *x);
    x->id = xstrdup(bench_text_of(j, "id"));
    x->customer = xstrdup(bench_text_of(j, "customer"));
    x->order = xstrdup(bench_text_of(j, "order"));
    x->line = xstrndup(line, k);
    x->at = (long long)bench_number_of(j, "at");
    x->total = bench_number_of(j, "total");
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "items")) {
        if (x->nitems == BENCH_MAX_ITEMS)
            break;
        struct bench_item *i = &x->items[x->nitems++];
        snprintf(i->sku, sizeof i->sku, "%s", bench_text_of(it, "sku"));
        snprintf(i->category, sizeof i->category, "%s", bench_text_of(it, "category"));
        i->qty = bench_number_of(it, "qty");
        i->price = bench_number_of(it, "price");
    }
}

static inline void bench_orders_free(struct bench_orders *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].id);
        free(e->v[i].customer);
        free(e->v[i].order);
        free(e->v[i].line);
    }
    free(e->v);
    e->v = NULL;
    e->n = e->cap = 0;
}

#endif
