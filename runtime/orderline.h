/* orderline — what customers bought: order lines and the per-customer facts
 * the bought queries read.
 *
 * An order event (order.paid, order.delivered, ...) may carry
 * items = [{sku, qty, price, category?, name?}]. orderline_check() validates
 * them when the event is accepted, so a bad item rejects the whole event;
 * they are written when the event is processed, in the processing
 * transaction (orderline_batch_*: a batch's lines together): the raw ingest
 * path gains no index.
 *
 * Tables (schema.c, branch orders): order_items (one row a line, clustered
 * by customer) and bought (one row per customer and sku, and per customer
 * and category: orders, quantity, first and last bought at). An order's
 * lines are stored once, by its order id: the first event of an order that
 * carries items defines them, and a later event of the same order (shipped,
 * delivered) carrying the same items counts nothing again.
 *
 * `count` everywhere is the number of orders that had the sku (or category),
 * not of lines. This module is a leaf: it speaks only to the store, in the
 * caller's transaction. */
#ifndef TEND_ORDERLINE_H
#define TEND_ORDERLINE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "store.h"

#define ORDERLINE_MAX_ITEMS 1000
#define ORDERLINE_SKU_MAX 200

enum orderline_kind { ORDERLINE_SKU = 0, ORDERLINE_CATEGORY = 1 };

/* Checks `items` (NULL or JSON null: none). 0, or -1 with err naming the
 * item (1-based) and the field: "item 2: field 'sku' is required". */
int orderline_check(const cJSON *items, char *err, size_t errlen);

/* Stores the lines of one order of `customer` (items already checked) and
 * updates the bought facts. Returns the number of lines stored (0 when
 * there are none or the order's lines were stored before), -1 on a store
 * error. */
int orderline_store(store *st, const char *customer, const char *order_id, tend_time at,
                    const cJSON *items);

/* The orders of a batch of events, stored together: event processing adds
 * each event's order as it goes and flushes at the end of its transaction
 * (or sooner, before anything that may read the lines runs). The flush
 * writes in key order, each customer's lines and each (customer, key) fact
 * once, with the same result as orderline_store() one order at a time in
 * the order they were added (the first of an order id wins). The batch
 * copies what it keeps; the caller frees it with orderline_batch_free(). */
typedef struct orderline_batch orderline_batch;
orderline_batch *orderline_batch_new(void);
void orderline_batch_free(orderline_batch *b);
/* Adds one order of `customer` (items already checked; none: nothing). */
void orderline_batch_add(orderline_batch *b, const char *customer, const char *order_id, tend_time at,
                         const cJSON *items);
/* Lines held, not yet written. */
int orderline_batch_lines(const orderline_batch *b);
/* Writes what the batch holds in the caller's transaction and empties it.
 * Returns the lines stored, -1 on a store error (emptied all the same: the
 * caller rolls back). */
int orderline_batch_flush(orderline_batch *b, store *st);

struct orderline_bought {
    int64_t count;      /* orders that had the key */
    double qty;         /* quantity over those lines */
    tend_time last_at;  /* 0 when count is 0 */
};

/* What `customer` bought of sku/category `key`, at or after `since` (0: ever).
 * 0, or -1 on a store error. */
int orderline_bought(store *st, const char *customer, enum orderline_kind kind, const char *key,
                     tend_time since, struct orderline_bought *out);

/* When the customer's supply of `sku` ends, with one unit lasting
 * `usage_days`: purchases in time order, each starting when the previous
 * supply ends or when it was bought, whichever is later, and adding
 * qty × usage_days days. 1 with *out, 0 when the customer never bought the
 * sku, -1 on a store error. */
int orderline_runs_out_at(store *st, const char *customer, const char *sku, double usage_days,
                          tend_time *out);

/* One stored line, as orderline_lines() hands it out (pointers valid during
 * the call only). */
struct orderline_line {
    const char *order_id, *sku, *category, *name;
    double qty, price;
    int has_price;
    tend_time at;
};
typedef void (*orderline_line_fn)(const struct orderline_line *l, void *ud);

/* Calls fn for up to `limit` lines of `customer` bought in [since, before),
 * oldest first. Returns how many, -1 on a store error. */
int orderline_lines(store *st, const char *customer, tend_time since, tend_time before, int limit,
                    orderline_line_fn fn, void *ud);

#endif
