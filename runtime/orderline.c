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

/* A batch holds its text in one arena; offsets into it stay valid as it
 * grows, pointers are made from them when the batch is written. */
struct bline {
    size_t sku, category, name;   /* offsets; (size_t)-1: none */
    double qty, price;
    int has_price;
};

struct border {
    size_t customer_off, order_off;
    const char *customer, *order_id;   /* set by the flush */
    tend_time at;
    int first, n;   /* its lines: lines[first .. first+n) */
    int idx;        /* the order of arrival: the first of an order id wins */
};

/* One (customer, kind, key) of one order, then, once merged, of the batch. */
struct bfact {
    const char *customer, *key;
    enum orderline_kind kind;
    int order;      /* the border index (merging counts distinct orders) */
    int64_t orders;
    double qty;
    tend_time first_at, last_at;
    tend_time prev_at;   /* the latest order but one, NO_PREV while orders = 1 */
    int is_new;          /* store_facts inserted it (no fact for the key before) */
};

#define NO_PREV INT64_MIN

struct orderline_batch {
    strbuf text;
    struct border *orders;
    int norders, cap_orders;
    struct bline *lines;
    int nlines, cap_lines;
};

#define NO_TEXT ((size_t)-1)

static size_t keep_text(orderline_batch *b, const char *s)
{
    if (!s)
        return NO_TEXT;
    size_t off = b->text.len;
    strbuf_add(&b->text, s, strlen(s) + 1);   /* with its NUL: texts sit side by side */
    return off;
}

static const char *text_at(const orderline_batch *b, size_t off)
{
    return off == NO_TEXT ? NULL : b->text.s + off;
}

orderline_batch *orderline_batch_new(void)
{
    orderline_batch *b = xcalloc(1, sizeof *b);
    strbuf_init(&b->text);
    return b;
}

void orderline_batch_free(orderline_batch *b)
{
    if (!b)
        return;
    strbuf_free(&b->text);
    free(b->orders);
    free(b->lines);
    free(b);
}

int orderline_batch_lines(const orderline_batch *b)
{
    return b->nlines;
}

static void batch_reset(orderline_batch *b)
{
    strbuf_reset(&b->text);
    b->norders = b->nlines = 0;
}

void orderline_batch_add(orderline_batch *b, const char *customer, const char *order_id, tend_time at,
                         const cJSON *items)
{
    int n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : 0;
    if (n == 0)
        return;
    if (b->norders == b->cap_orders)
        b->orders = xrealloc(b->orders, (size_t)(b->cap_orders = b->cap_orders ? b->cap_orders * 2 : 256) *
                                        sizeof *b->orders);
    if (b->nlines + n > b->cap_lines) {
        while (b->nlines + n > b->cap_lines)
            b->cap_lines = b->cap_lines ? b->cap_lines * 2 : 1024;
        b->lines = xrealloc(b->lines, (size_t)b->cap_lines * sizeof *b->lines);
    }
    struct border *o = &b->orders[b->norders];
    *o = (struct border){.customer_off = keep_text(b, customer), .order_off = keep_text(b, order_id),
                         .at = at, .first = b->nlines, .n = n, .idx = b->norders};
    b->norders++;
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        char buf[32];
        const cJSON *price = cJSON_GetObjectItemCaseSensitive(it, "price");
        b->lines[b->nlines++] = (struct bline){
            .sku = keep_text(b, item_sku(it, buf, sizeof buf)), .category = keep_text(b, item_text(it, "category")),
            .name = keep_text(b, item_text(it, "name")), .qty = item_qty(it),
            .price = cJSON_IsNumber(price) ? price->valuedouble : 0, .has_price = cJSON_IsNumber(price)};
    }
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

/* Lines go in multi-row statements of up to CHUNK rows: one
 * statement a chunk instead of one a row (the B-tree work is the same, the
 * per-statement cost is not). The texts are built once per row count. */
#define CHUNK 16

static const char *chunk_sql(char **cache, int rows, const char *head, const char *row, const char *tail)
{
    return cache[rows] ? cache[rows] : (cache[rows] = util_rows_text(head, row, rows, tail));
}

/* Binds row `i` of a chunk (its parameters start after ?p) from item `k`. */
typedef void (*chunk_bind_fn)(store_stmt *s, int p, int k, const void *ud);

/* Runs INSERT `head` + n rows of `row` (of `params` parameters each) in
 * statements of up to CHUNK rows. 0, or -1 on a store error. */
static int run_chunks(store *st, char **cache, const char *head, const char *row, int params, int n,
                      chunk_bind_fn bind, const void *ud)
{
    for (int done = 0; done < n;) {
        int rows = n - done < CHUNK ? n - done : CHUNK;
        store_stmt *s = store_sql(st, chunk_sql(cache, rows, head, row, ""));
        if (!s)
            return -1;
        for (int i = 0; i < rows; i++)
            bind(s, i * params, done + i, ud);
        if (store_run(s) != 0)
            return -1;
        done += rows;
    }
    return 0;
}

/* bought_counts gains one customer per new fact: one row per key of the
 * batch (a few hundred at most), not one trigger run per fact (that cost
 * 4.6 us a fact, 17% of an order's processing). The keys are counted in
 * an open-addressed table of (kind, key), in order of first appearance
 * (sorting the batch's new facts by key cost ~4k instructions an order). */
static int count_new(store *st, struct bfact *f, int n)
{
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap *= 2;
    int *slot = xmalloc(cap * sizeof *slot);   /* index into keys, -1: empty */
    for (size_t i = 0; i < cap; i++)
        slot[i] = -1;
    struct bfact **keys = xmalloc((size_t)(n ? n : 1) * sizeof *keys);
    int *customers = xmalloc((size_t)(n ? n : 1) * sizeof *customers);
    int nkeys = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        if (!f[i].is_new)
            continue;
        unsigned char kind = (unsigned char)f[i].kind;
        size_t h = (size_t)util_hash64_add(util_hash64(&kind, 1), f[i].key, strlen(f[i].key)) & (cap - 1);
        while (slot[h] >= 0 && (keys[slot[h]]->kind != f[i].kind || strcmp(keys[slot[h]]->key, f[i].key)))
            h = (h + 1) & (cap - 1);
        if (slot[h] >= 0) {
            customers[slot[h]]++;
        } else {
            slot[h] = nkeys;
            keys[nkeys] = &f[i];
            customers[nkeys++] = 1;
        }
    }
    /* one row a statement, as the facts (no statement journal) */
    store_stmt *s = nkeys ? store_sql(st, "INSERT INTO bought_counts (kind, key, customers) VALUES (?, ?, ?)"
                                          " ON CONFLICT (kind, key) DO UPDATE SET"
                                          " customers = bought_counts.customers + excluded.customers")
                          : NULL;
    if (nkeys && !s)
        rc = -1;
    for (int k = 0; k < nkeys && rc == 0; k++) {
        store_bind_int(s, 1, keys[k]->kind);
        store_bind_text_kept(s, 2, keys[k]->key, -1);
        store_bind_int(s, 3, customers[k]);
        rc = store_run(s);
    }
    free(slot);
    free(keys);
    free(customers);
    return rc;
}

/* Binds the fact as ?p+1..?p+8 of s (kind, key, customer, orders, qty,
 * first_at, last_at, prev_at). */
static void bind_fact_at(store_stmt *s, int p, const struct bfact *x)
{
    /* the texts sit in the batch, unchanged until the flush returns */
    store_bind_int(s, p + 1, x->kind);
    store_bind_text_kept(s, p + 2, x->key, -1);
    store_bind_text_kept(s, p + 3, x->customer, -1);
    store_bind_int(s, p + 4, x->orders);
    store_bind_double(s, p + 5, x->qty);
    store_bind_int(s, p + 6, x->first_at);
    store_bind_int(s, p + 7, x->last_at);
    if (x->prev_at == NO_PREV)
        store_bind_null(s, p + 8);
    else
        store_bind_int(s, p + 8, x->prev_at);
}

/* Binds the fact as ?1..?8 of s and runs it. */
static int bind_fact(store_stmt *s, const struct bfact *x)
{
    bind_fact_at(s, 0, x);
    return store_run(s);
}

/* 1 when `customer` has no fact yet (every fact of the batch for it is
 * new), 0 when it has one, -1 on a store error. One key probe a customer. */
static int no_facts_yet(store *st, const char *customer)
{
    store_stmt *s = store_sql(st, "SELECT 1 FROM bought WHERE customer = ? LIMIT 1");
    if (!s)
        return -1;
    store_bind_text_kept(s, 1, customer, -1);
    int rc = store_step(s);
    store_reset(s);
    return rc == STORE_DONE ? 1 : rc == STORE_ROW ? 0 : -1;
}

/* The facts of customers that had none, CHUNK rows a statement: each is
 * known to be new, so the statement is a plain insert, and OR IGNORE (no
 * row can conflict: the customer had no fact, and the merge left one per
 * key) lets it never abort, so it keeps no statement journal (see
 * store_facts). One statement for 16 facts instead of one a fact: the
 * B-tree work is the same, the statement's own cost is paid once. */
static void bind_fresh(store_stmt *s, int p, int k, const void *ud)
{
    bind_fact_at(s, p, ((struct bfact *const *)ud)[k]);
}

static int insert_fresh(store *st, struct bfact **f, int n)
{
    static char *sql[CHUNK + 1];
    return run_chunks(st, sql,
        "INSERT OR IGNORE INTO bought (kind, key, customer, orders, qty, first_at, last_at, prev_at) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?)", 8, n, bind_fresh, f);
}

/* A fact of a customer who has facts already: one statement a fact, not
 * CHUNK: an upsert's DO UPDATE can always abort
 * (SQLite codes it so), and a statement that writes several rows and can
 * abort keeps a statement journal, a copy of every page it touches (a
 * 16-fact chunk touched ~20: the facts' rows and their bought_recent
 * entries, scattered over the keys). One row a statement is never
 * journaled; it costs a step per fact instead. CASE rather than MIN/MAX
 * of two values: the statement stays within what SQLite and PostgreSQL
 * share (store.h), and a function call would count as a way to abort.
 * An INSERT that does nothing on conflict, then an UPDATE for a fact that
 * was there: the row count of the INSERT says the fact is new, for
 * bought_counts (an insert trigger cost 4.6 us a fact, RETURNING on the
 * upsert 9 us). The facts of a customer without any (most of a batch: a
 * first order, or a first order with lines) skip that: one probe a
 * customer says they are all new, and they go in chunks (insert_fresh).
 * f is sorted by customer (the merge's order). */
static int store_facts(store *st, struct bfact *f, int n)
{
    /* looked up once: the loop only binds and steps */
    store_stmt *ins = n ? store_sql(st,
        "INSERT INTO bought (kind, key, customer, orders, qty, first_at, last_at, prev_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (customer, kind, key) DO NOTHING")
        : NULL;
    store_stmt *upd = n ? store_sql(st,
        "UPDATE bought SET orders = orders + ?4, qty = qty + ?5,"
        " first_at = CASE WHEN ?6 < first_at THEN ?6 ELSE first_at END,"
        " last_at = CASE WHEN ?7 > last_at THEN ?7 ELSE last_at END,"
        /* the second latest of both sides' order times (they are distinct
         * orders: an order's lines are stored once); a NULL prev_at
         * compares false */
        " prev_at = CASE WHEN ?7 >= last_at THEN CASE WHEN ?8 > last_at THEN ?8 ELSE last_at END"
        " ELSE CASE WHEN prev_at > ?7 THEN prev_at ELSE ?7 END END"
        " WHERE customer = ?3 AND kind = ?1 AND key = ?2")
        : NULL;
    if (n && (!ins || !upd))
        return -1;
    struct bfact **fresh = xmalloc((size_t)(n ? n : 1) * sizeof *fresh);
    int nfresh = 0, rc = 0;
    for (int i = 0; i < n && rc == 0;) {
        int end = i + 1;   /* [i, end): one customer's facts */
        while (end < n && !strcmp(f[end].customer, f[i].customer))
            end++;
        int none = no_facts_yet(st, f[i].customer);
        if (none < 0)
            rc = -1;
        for (; i < end && rc == 0; i++) {
            struct bfact *x = &f[i];
            if (none) {
                x->is_new = 1;
                fresh[nfresh++] = x;
                continue;
            }
            if (bind_fact(ins, x) != 0) {
                rc = -1;
                break;
            }
            x->is_new = store_changes(st) == 1;
            if (!x->is_new && bind_fact(upd, x) != 0)
                rc = -1;
        }
        i = end;
    }
    if (rc == 0)
        rc = insert_fresh(st, fresh, nfresh);
    free(fresh);
    return rc == 0 ? count_new(st, f, n) : -1;
}

/* A line to insert: its order and the line itself. */
struct brow {
    const struct border *o;
    const struct bline *l;
    int line;   /* 1-based within the order */
};

struct rows_of {
    const orderline_batch *b;
    const struct brow *r;
};

static void bind_row(store_stmt *s, int p, int k, const void *ud)
{
    const struct rows_of *ro = ud;
    const struct brow *x = &ro->r[k];
    store_bind_text_kept(s, p + 1, x->o->customer, -1);
    store_bind_text_kept(s, p + 2, x->o->order_id, -1);
    store_bind_int(s, p + 3, x->line);
    store_bind_text_kept(s, p + 4, text_at(ro->b, x->l->sku), -1);
    store_bind_text_kept(s, p + 5, text_at(ro->b, x->l->category), -1);
    store_bind_text_kept(s, p + 6, text_at(ro->b, x->l->name), -1);
    store_bind_double(s, p + 7, x->l->qty);
    if (x->l->has_price)
        store_bind_double(s, p + 8, x->l->price);
    else
        store_bind_null(s, p + 8);
    store_bind_int(s, p + 9, x->o->at);
}

static int store_rows(store *st, const orderline_batch *b, const struct brow *r, int n)
{
    static char *sql[CHUNK + 1];
    /* OR IGNORE: the flush inserts only orders it found unstored, once
     * each, with every NOT NULL value bound, so nothing can conflict;
     * a multi-row statement that cannot abort keeps no statement
     * journal (see store_facts). */
    struct rows_of ro = {b, r};
    return run_chunks(st, sql,
        "INSERT OR IGNORE INTO order_items (customer, order_id, line, sku, category, name, qty, price, at) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?)", 9, n, bind_row, &ro);
}

static int cmp_order(const void *a, const void *b)
{
    const struct border *x = a, *y = b;
    int c = strcmp(x->customer, y->customer);
    if (!c)
        c = strcmp(x->order_id, y->order_id);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_fact(const void *a, const void *b)
{
    const struct bfact *x = a, *y = b;
    int c = x->customer == y->customer ? 0 : strcmp(x->customer, y->customer);
    if (!c)
        c = (x->kind > y->kind) - (x->kind < y->kind);
    if (!c)
        c = strcmp(x->key, y->key);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* Writing in key order touches each page of order_items and bought once
 * (they are clustered by customer), where arrival order would jump about
 * them. The result is the same as storing the orders one by one. */
int orderline_batch_flush(orderline_batch *b, store *st)
{
    if (b->norders == 0)
        return 0;
    for (int i = 0; i < b->norders; i++) {
        b->orders[i].customer = text_at(b, b->orders[i].customer_off);
        b->orders[i].order_id = text_at(b, b->orders[i].order_off);
    }
    qsort(b->orders, (size_t)b->norders, sizeof *b->orders, cmp_order);
    struct brow *rows = xmalloc((size_t)b->nlines * sizeof *rows);
    struct bfact *facts = xmalloc((size_t)b->nlines * 2 * sizeof *facts);
    int nrows = 0, nfacts = 0, rc = 0;
    for (int i = 0; i < b->norders && rc == 0; i++) {
        const struct border *o = &b->orders[i];
        /* an order's lines are stored once: the first event carrying them wins */
        if (i > 0 && !strcmp(o->customer, b->orders[i - 1].customer) && !strcmp(o->order_id, b->orders[i - 1].order_id))
            continue;
        int seen = order_seen(st, o->customer, o->order_id);
        if (seen < 0)
            rc = -1;
        if (seen != 0)
            continue;
        for (int k = 0; k < o->n; k++) {
            const struct bline *l = &b->lines[o->first + k];
            rows[nrows++] = (struct brow){o, l, k + 1};
            facts[nfacts++] = (struct bfact){o->customer, text_at(b, l->sku), ORDERLINE_SKU, i, 0, l->qty, o->at, o->at,
                                             NO_PREV, 0};
            if (l->category != NO_TEXT)
                facts[nfacts++] = (struct bfact){o->customer, text_at(b, l->category), ORDERLINE_CATEGORY, i, 0,
                                                 l->qty, o->at, o->at, NO_PREV, 0};
        }
    }
    if (rc == 0)
        rc = store_rows(st, b, rows, nrows);
    /* one row per (customer, kind, key): `orders` counts the distinct orders.
     * The facts come grouped by customer (the orders were sorted so), so
     * only each customer's few are sorted, not the whole batch's. */
    for (int i = 0; i < nfacts;) {
        int end = i + 1;
        while (end < nfacts && (facts[end].customer == facts[i].customer || !strcmp(facts[end].customer, facts[i].customer)))
            end++;
        qsort(facts + i, (size_t)(end - i), sizeof *facts, cmp_fact);
        i = end;
    }
    int merged = 0;
    for (int i = 0; i < nfacts; i++) {
        struct bfact *f = &facts[i];
        struct bfact *m = merged ? &facts[merged - 1] : NULL;
        if (m && !strcmp(m->customer, f->customer) && m->kind == f->kind && !strcmp(m->key, f->key)) {
            if (m->order != f->order) {   /* another order: its time may be the latest or the one before */
                m->orders++;
                if (f->last_at >= m->last_at)
                    m->prev_at = m->last_at;
                else if (m->prev_at == NO_PREV || f->last_at > m->prev_at)
                    m->prev_at = f->last_at;
            }
            m->order = f->order;
            m->qty += f->qty;
            m->first_at = f->first_at < m->first_at ? f->first_at : m->first_at;
            m->last_at = f->last_at > m->last_at ? f->last_at : m->last_at;
        } else {
            facts[merged] = *f;
            facts[merged++].orders = 1;
        }
    }
    if (rc == 0)
        rc = store_facts(st, facts, merged);
    free(rows);
    free(facts);
    batch_reset(b);
    return rc == 0 ? nrows : -1;
}

int orderline_store(store *st, const char *customer, const char *order_id, tend_time at,
                    const cJSON *items)
{
    orderline_batch *b = orderline_batch_new();
    orderline_batch_add(b, customer, order_id, at, items);
    int n = orderline_batch_flush(b, st);
    orderline_batch_free(b);
    return n;
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
