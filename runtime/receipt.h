/* receipt — what happened to a message after it left comes back.
 *
 * A receipt {message = <outbox id> | key = "<idempotency key>", status =
 * delivered | failed | opened | clicked | replied | unsubscribed, at = time,
 * reason = text, id = unique id} updates its outbox row (delivered_at,
 * opened_at, ... — the first time of each kind counts) and becomes the event
 * `message.<status>` for the message's customer with the fields message,
 * key, channel, template, journey (and reason), so goals, wait_for and
 * wait_receipt see it; `unsubscribed` also suppresses the channel for that
 * customer (event.c). Receipts with an `id` are deduplicated by it; without
 * one, by message and status. A receipt can only name a message, so it can
 * only ever reach that message's own customer.
 *
 * Sources: POST /v1/receipts (server.c), a channel's `receipt = function(body)`
 * mapping a provider's own callback (receipt_map), sim:receipt{} in tests. */
#ifndef TEND_RECEIPT_H
#define TEND_RECEIPT_H

#include <cjson/cJSON.h>

#include "engine.h"
#include "util.h"

enum receipt_result { RECEIPT_STORED = 0, RECEIPT_DUPLICATE, RECEIPT_UNKNOWN_MESSAGE, RECEIPT_INVALID,
                      RECEIPT_STORE_ERROR };

/* Validates and stores one receipt in the caller's transaction. err names
 * the field for RECEIPT_INVALID, the message for RECEIPT_UNKNOWN_MESSAGE. */
enum receipt_result receipt_accept(engine *e, const cJSON *r, char *err, size_t errlen);

/* Receipts stored one after another in the caller's transaction (a POST
 * /v1/receipts batch): the buffers a receipt needs (its message's row, its
 * event's text) are kept from one receipt to the next, so a receipt of a
 * batch allocates nothing of its own. The batch owns them until
 * receipt_batch_free(); receipt_batch_accept() answers as receipt_accept(). */
struct receipt_batch {
    engine *e;
    strbuf body;        /* the message.<status> event's text */
    char *row;          /* the message row's text columns, one after another */
    size_t row_cap;
    char *line;         /* a copy of the line being read, its strings cut in place */
    size_t line_cap;
};
void receipt_batch_init(struct receipt_batch *b, engine *e);
enum receipt_result receipt_batch_accept(struct receipt_batch *b, const cJSON *r, char *err, size_t errlen);
/* The same for one NDJSON line of text (trimmed, not NUL-terminated): a
 * line that is not JSON is RECEIPT_INVALID with its parse error in err. */
enum receipt_result receipt_batch_accept_line(struct receipt_batch *b, const char *line, size_t len, char *err,
                                              size_t errlen);
void receipt_batch_free(struct receipt_batch *b);

/* Runs channel `channel`'s `receipt` function on a provider's callback body
 * (its JSON, or the raw text when it is not JSON) and returns the receipts it
 * made as a JSON array (caller frees), or NULL with err (no such channel, no
 * receipt function, the function failed or returned something else). */
cJSON *receipt_map(engine *e, const char *channel, const char *body, size_t len, char *err, size_t errlen);

/* A message moved to dead letters becomes the event `message.dead` for its
 * customer (message, key, channel, template, journey, reason), so a
 * fallback passes on at once. In the caller's transaction; 0 or -1. */
int receipt_dead(engine *e, int64_t message, tend_time at, const char *reason);

/* Registers wait_receipt(r, status, {timeout = s}) → the receipt event or nil. */
void receipt_register(engine *e);

#endif
