/* importer — `tend import FILE`: customers from CSV or NDJSON.
 *
 * CSV has a header row naming the fields (id, name, phone, email, city,
 * region, timezone, birthday, blocked, tags — several separated by '|' or
 * ';' — the maintained fields such as orders_count or last_order_at, and
 * attrs.<key> columns for custom attributes); RFC 4180 quoting. NDJSON has one
 * customer object per line, as PUT /v1/customers takes. The format comes
 * from the extension (.csv, .ndjson, .jsonl, .json) or, for stdin, from
 * the first character.
 *
 * `tend import --products FILE`: the product catalog the same way (columns
 * sku name category price usage_days related — related several skus
 * separated by '|' or ';'; NDJSON: one product object a line, as PUT
 * /v1/products takes). A bad value (a usage_days that is not a positive
 * number) rejects its row by line.
 *
 * Each row is an upsert that lands whole or not at all; a bad row is
 * rejected with its line number and reason and the others go on. Rows
 * commit in batches (one fsync per batch). A customer CSV is read and
 * checked on a second thread while the caller's writes the rows; `reject`
 * is called on the caller's thread, in the file's order. */
#ifndef TEND_IMPORTER_H
#define TEND_IMPORTER_H

#include "engine.h"

struct import_report {
    int64_t imported, updated, rejected;
};

typedef void (*import_reject_fn)(void *ud, long line, const char *reason);

/* Imports from `path` ("-" for stdin). Returns 0 when the file could be
 * read to the end (rows may still have been rejected), -1 when it could not
 * (err says why; the rows committed before the failure are kept: all
 * before it when the file could not be read on, those of the batches
 * already committed when the store failed). */
int importer_run(engine *e, const char *path, import_reject_fn reject, void *ud,
                 struct import_report *rep, char *err, size_t errlen);

/* The same for products (product.h). */
int importer_run_products(engine *e, const char *path, import_reject_fn reject, void *ud,
                          struct import_report *rep, char *err, size_t errlen);

#endif
