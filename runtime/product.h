/* product — the optional product catalog.
 *
 * A product: sku (the key), name, category, price, usage_days (how many days
 * one unit lasts: what runs_out_at() and replenishment reminders need),
 * related (a list of skus to suggest with it). It comes from `tend import
 * --products`, `PUT /v1/products/{sku}` or sim:product{}; scripts read it
 * with product(sku).
 *
 * An upsert writes the fields present and leaves the absent ones as they
 * were; JSON null clears a field. A bad value is an error naming the field
 * and nothing is written. This module is a leaf: it speaks only to the
 * store, in the caller's transaction. Returned cJSON trees are the
 * caller's. */
#ifndef TEND_PRODUCT_H
#define TEND_PRODUCT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "store.h"

#define PRODUCT_SKU_MAX 200
#define PRODUCT_RELATED_MAX 100

/* Flags for product_upsert. */
enum {
    PRODUCT_TEXT_VALUES = 1,    /* values may be text ("12.5"; related "a|b"): CSV */
};

/* Creates or updates the product `obj` describes (it must have "sku").
 * 0 (*created tells which), or -1 with err ("field 'usage_days' must be a
 * positive number of days, got \"abc\""; "store: ..." for a store error). */
int product_upsert(store *st, const cJSON *obj, int flags, tend_time now, int *created,
                   char *err, size_t errlen);

/* The product as JSON (related as an array); NULL when there is none (or on
 * a store error: see store_errmsg). */
cJSON *product_json(store *st, const char *sku);

/* The product's usage_days: 1 with *out, 0 when the product or its
 * usage_days is unknown, -1 on a store error. */
int product_usage_days(store *st, const char *sku, double *out);

#endif
