/* orderline — order lines and bought facts (see orderline.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderline.h"
#include "util.h"

/* An sku may come as a number (many shops number their products). */
static const char *item_sku(const cJSON *item, char *buf, size_t n)
{
    const cJSON *sku = cJSON_GetObjectItemCaseSensitive(item, "sku");
    if (cJSON_IsString(sku))
        return sku->valuestring;
    if (cJSON_IsNumber(sku) && sku->valuedouble == floor(sku->valuedouble) && fabs(sku->valuedouble) < 1e15) {
        snprintf(buf, n, "%.0f", sku->valuedouble);
        return buf;
    }
    return NULL;
}

/* qty (default 1) and price (may be absent) of a checked item. */
static double item_qty(const cJSON *item)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(item, "qty");
    return cJSON_IsNumber(q) ? q->valuedouble : 1;
}

static const char *item_text(const cJSON *item, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, k);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

int orderline_check(const cJSON *items, char *err, size_t errlen)
{
    if (!items || cJSON_IsNull(items))
        return 0;
    if (!cJSON_IsArray(items)) {
        snprintf(err, errlen, "field 'items' must be a list of {sku, qty, price, category, name}");
        return -1;
    }
    int n = cJSON_GetArraySize(items);
    if (n > ORDERLINE_MAX_ITEMS) {
        snprintf(err, errlen, "field 'items' has %d items; at most %d are allowed", n, ORDERLINE_MAX_ITEMS);
        return -1;
    }
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, items) {
        i++;
        if (!cJSON_IsObject(item)) {
            snprintf(err, errlen, "item %d: must be an object {sku, qty, price, category, name}", i);
            return -1;
        }
        char buf[32];
        const cJSON *sku = cJSON_GetObjectItemCaseSensitive(item, "sku");
        const char *s = item_sku(item, buf, sizeof buf);
        if (!sku || cJSON_IsNull(sku)) {
            snprintf(err, errlen, "item %d: field 'sku' is required", i);
            return -1;
        }
        if (!s || !s[0] || strlen(s) > ORDERLINE_SKU_MAX) {
            snprintf(err, errlen, "item %d: field 'sku' must be a string of 1 to %d characters",
                     i, ORDERLINE_SKU_MAX);
            return -1;
        }
        const cJSON *qty = cJSON_GetObjectItemCaseSensitive(item, "qty");
        if (qty && !cJSON_IsNull(qty) && (!cJSON_IsNumber(qty) || !(qty->valuedouble > 0) ||
                                          !isfinite(qty->valuedouble))) {
            snprintf(err, errlen, "item %d (sku %s): field 'qty' must be a number above 0", i, s);
            return -1;
        }
        const cJSON *price = cJSON_GetObjectItemCaseSensitive(item, "price");
        if (price && !cJSON_IsNull(price) && (!cJSON_IsNumber(price) || !(price->valuedouble >= 0) ||
                                              !isfinite(price->valuedouble))) {
            snprintf(err, errlen, "item %d (sku %s): field 'price' must be a non-negative number", i, s);
            return -1;
        }
        static const char *const texts[] = {"category", "name"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, texts[k]);
            if (v && !cJSON_IsNull(v) && !cJSON_IsString(v)) {
                snprintf(err, errlen, "item %d (sku %s): field '%s' must be a string", i, s, texts[k]);
                return -1;
            }
        }
    }
    return 0;
}

/* --- storing ------------------------------------------------------------ */

/* One (kind, key) of the order with the quantity of its lines: an order
 * counts once per key however many lines name it. */
struct fact {
    enum orderline_kind kind;
    const char *key;
    double qty;
};

static void add_fact(struct fact *f, int *n, enum orderline_kind kind, const char *key, double qty)
{
    for (int i = 0; i < *n; i++) {
        if (f[i].kind == kind && strcmp(f[i].key, key) == 0) {
            f[i].qty += qty;
            return;
        }
    }
    f[(*n)++] = (struct fact){kind, key, qty};
}

static int order_seen(store *st, const char *customer, const char *order_id)
{
    store_stmt *s = store_sql(st, "SELECT 1 FROM order_items WHERE customer = ? AND order_id = ? LIMIT 1");
    if (!s)
        return -1;
    store_bind_text(s, 1, customer, -1);
    store_bind_text(s, 2, order_id, -1);
    int rc = store_step(s);
    store_reset(s);
    return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}

/* Lines and facts go in multi-row statements of up to CHUNK rows: one
 * statement a chunk instead of one a row (the B-tree work is the same, the
 * per-statement cost is not). The texts are built once per row count. */
#define CHUNK 8

static const char *chunk_sql(char **cache, int rows, const char *head, const char *row, const char *tail)
{
    if (!cache[rows]) {
        strbuf b;
        strbuf_init(&b);
        strbuf_puts(&b, head);
        for (int i = 0; i < rows; i++) {
            if (i)
                strbuf_putc(&b, ',');
            strbuf_puts(&b, row);
        }
        strbuf_puts(&b, tail);
        cache[rows] = strbuf_take(&b);
    }
    return cache[rows];
}

static int store_facts(store *st, const char *customer, const struct fact *f, int n, tend_time at)
{
    static char *sql[CHUNK + 1];
    for (int done = 0; done < n;) {
        int rows = n - done < CHUNK ? n - done : CHUNK;
        /* CASE rather than MIN/MAX of two values: the statement stays within
         * what SQLite and PostgreSQL share (store.h). */
        store_stmt *s = store_sql(st, chunk_sql(sql, rows,
            "INSERT INTO bought (kind, key, customer, orders, qty, first_at, last_at) VALUES ",
            "(?, ?, ?, 1, ?, ?, ?)",
            " ON CONFLICT (customer, kind, key) DO UPDATE SET orders = bought.orders + 1,"
            " qty = bought.qty + excluded.qty,"
            " first_at = CASE WHEN excluded.first_at < bought.first_at THEN excluded.first_at ELSE bought.first_at END,"
            " last_at = CASE WHEN excluded.last_at > bought.last_at THEN excluded.last_at ELSE bought.last_at END"));
        if (!s)
            return -1;
        for (int i = 0; i < rows; i++) {
            const struct fact *x = &f[done + i];
            int p = i * 6;
            store_bind_int(s, p + 1, x->kind);
            store_bind_text(s, p + 2, x->key, -1);
            store_bind_text(s, p + 3, customer, -1);
            store_bind_double(s, p + 4, x->qty);
            store_bind_int(s, p + 5, at);
            store_bind_int(s, p + 6, at);
        }
        if (store_run(s) != 0)
            return -1;
        done += rows;
    }
    return 0;
}

/* Inserts lines first..first+rows-1 (0-based) of items, starting at `item`. */
static int store_chunk(store *st, const char *customer, const char *order_id, tend_time at,
                       const cJSON **item, int first, int rows, char (*skus)[32])
{
    static char *sql[CHUNK + 1];
    store_stmt *s = store_sql(st, chunk_sql(sql, rows,
        "INSERT INTO order_items (customer, order_id, line, sku, category, name, qty, price, at) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?)", ""));
    if (!s)
        return -1;
    for (int i = 0; i < rows; i++, *item = (*item)->next) {
        const cJSON *it = *item;
        const cJSON *price = cJSON_GetObjectItemCaseSensitive(it, "price");
        int p = i * 9;
        store_bind_text(s, p + 1, customer, -1);
        store_bind_text(s, p + 2, order_id, -1);
        store_bind_int(s, p + 3, first + i + 1);
        store_bind_text(s, p + 4, item_sku(it, skus[first + i], sizeof skus[first + i]), -1);
        store_bind_text(s, p + 5, item_text(it, "category"), -1);
        store_bind_text(s, p + 6, item_text(it, "name"), -1);
        store_bind_double(s, p + 7, item_qty(it));
        if (cJSON_IsNumber(price))
            store_bind_double(s, p + 8, price->valuedouble);
        else
            store_bind_null(s, p + 8);
        store_bind_int(s, p + 9, at);
    }
    return store_run(s);
}

int orderline_store(store *st, const char *customer, const char *order_id, tend_time at,
                    const cJSON *items)
{
    int n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : 0;
    if (n == 0)
        return 0;
    int seen = order_seen(st, customer, order_id);
    if (seen != 0)
        return seen < 0 ? -1 : 0;
    struct fact small_facts[2 * 16];
    char small_skus[16][32];
    struct fact *f = n <= 16 ? small_facts : xmalloc(sizeof *f * 2 * (size_t)n);
    char (*skus)[32] = n <= 16 ? small_skus : xmalloc(sizeof *skus * (size_t)n);
    int rc = 0;
    const cJSON *item = items->child;
    for (int done = 0; rc == 0 && done < n; done += CHUNK)
        rc = store_chunk(st, customer, order_id, at, &item, done, n - done < CHUNK ? n - done : CHUNK, skus);
    int nf = 0, line = 0;
    cJSON_ArrayForEach(item, items) {
        const char *category = item_text(item, "category");
        double qty = item_qty(item);
        add_fact(f, &nf, ORDERLINE_SKU, item_sku(item, skus[line], sizeof skus[line]), qty);
        line++;
        if (category)
            add_fact(f, &nf, ORDERLINE_CATEGORY, category, qty);
    }
    if (rc == 0)
        rc = store_facts(st, customer, f, nf, at);
    if (f != small_facts)
        free(f);
    if (skus != small_skus)
        free(skus);
    return rc == 0 ? n : -1;
}

/* --- reading ------------------------------------------------------------ */

int orderline_bought(store *st, const char *customer, enum orderline_kind kind, const char *key,
                     tend_time since, struct orderline_bought *out)
{
    memset(out, 0, sizeof *out);
    store_stmt *s;
    if (since <= 0) {
        s = store_sql(st, "SELECT orders, qty, last_at FROM bought WHERE kind = ? AND key = ? AND customer = ?");
        if (!s)
            return -1;
        store_bind_int(s, 1, kind);
        store_bind_text(s, 2, key, -1);
        store_bind_text(s, 3, customer, -1);
    } else {
        /* A window needs the lines themselves: the facts know only the last time. */
        s = store_sql(st, kind == ORDERLINE_SKU
            ? "SELECT COUNT(DISTINCT order_id), SUM(qty), MAX(at) FROM order_items"
              " WHERE customer = ?1 AND sku = ?2 AND at >= ?3"
            : "SELECT COUNT(DISTINCT order_id), SUM(qty), MAX(at) FROM order_items"
              " WHERE customer = ?1 AND category = ?2 AND at >= ?3");
        if (!s)
            return -1;
        store_bind_text(s, 1, customer, -1);
        store_bind_text(s, 2, key, -1);
        store_bind_int(s, 3, since);
    }
    int rc = store_step(s);
    if (rc == STORE_ROW) {
        out->count = store_col_int(s, 0);
        out->qty = store_col_double(s, 1);
        out->last_at = out->count ? store_col_int(s, 2) : 0;
        store_reset(s);
    }
    return rc == STORE_ERROR ? -1 : 0;
}

int orderline_runs_out_at(store *st, const char *customer, const char *sku, double usage_days,
                          tend_time *out)
{
    store_stmt *s = store_sql(st, "SELECT at, qty FROM order_items WHERE customer = ? AND sku = ?"
                                  " ORDER BY at, order_id, line");
    if (!s)
        return -1;
    store_bind_text(s, 1, customer, -1);
    store_bind_text(s, 2, sku, -1);
    double end = 0;
    int found = 0, rc;
    while ((rc = store_step(s)) == STORE_ROW) {
        double at = (double)store_col_int(s, 0);
        double start = found && end > at ? end : at;
        end = start + store_col_double(s, 1) * usage_days * (double)TEND_DAY;
        found = 1;
    }
    if (rc == STORE_ERROR)
        return -1;
    if (found)
        *out = (tend_time)llround(end);
    return found;
}

int orderline_lines(store *st, const char *customer, tend_time since, tend_time before, int limit,
                    orderline_line_fn fn, void *ud)
{
    store_stmt *s = store_sql(st, "SELECT order_id, sku, category, name, qty, price, at FROM order_items"
                                  " WHERE customer = ? AND at >= ? AND at < ? ORDER BY at, order_id, line"
                                  " LIMIT ?");
    if (!s)
        return -1;
    store_bind_text(s, 1, customer, -1);
    store_bind_int(s, 2, since);
    store_bind_int(s, 3, before);
    store_bind_int(s, 4, limit);
    int n = 0, rc;
    while ((rc = store_step(s)) == STORE_ROW) {
        struct orderline_line l = {
            .order_id = store_col_text(s, 0), .sku = store_col_text(s, 1),
            .category = store_col_text(s, 2), .name = store_col_text(s, 3),
            .qty = store_col_double(s, 4), .price = store_col_double(s, 5),
            .has_price = store_col_type(s, 5) != STORE_NULL, .at = store_col_int(s, 6)};
        fn(&l, ud);
        n++;
    }
    return rc == STORE_ERROR ? -1 : n;
}
