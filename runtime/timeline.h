/* timeline — one customer's story, newest first: "why did this customer get
 * this message?" has its answer in one list.
 *
 * Entries: the customer's events; journey instances (journey, state, where
 * it waits or why it failed, and every recorded step with its time and
 * result); messages (channel, template, status, when queued, sent and each
 * receipt, the error, the cost); coupons (issued, redeemed, refused with the
 * reason); staff tasks (status, outcome). Each is {at, kind, ...}; kind is
 * event | instance | message | coupon | coupon_refused | task.
 *
 * Reads only; every part is an index range on the customer. */
#ifndef TEND_TIMELINE_H
#define TEND_TIMELINE_H

#include <cjson/cJSON.h>

#include "engine.h"

/* Up to `limit` entries strictly before `before` (0: now and all), newest
 * first: {"customer": id, "entries": [...], "next": the `before` of the next
 * page or null}. NULL when the customer does not exist. Caller frees. */
cJSON *timeline_customer(engine *e, const char *customer, tend_time before, int limit);

/* Writes a timeline as text for `tend customer ID`. */
void timeline_print(const cJSON *t, FILE *out);

#endif
