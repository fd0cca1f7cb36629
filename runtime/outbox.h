/* outbox — messages on their way out.
 *
 * send() writes an outbox row in the same transaction as the step that
 * called it, so a message exists exactly when its step is recorded. The row
 * carries the rendered text, the policy's verdict and an idempotency key
 * (instance id + step) that every delivery attempt sends to the provider.
 *
 * Statuses: queued (due now), deferred (due later: quiet hours, a cap),
 * sending (claimed by the dispatcher; retried with the same key after a
 * crash), sent, dead (the provider refused it: 4xx), failed (it could not be
 * rendered), capped and suppressed (policy kept it back). Rows still to go
 * live in outbox_due, keyed by (due_at, id), so the dispatcher drains a range.
 *
 * Ownership: results are written into the caller's structs; nothing here
 * allocates on the caller's behalf. */
#ifndef TEND_OUTBOX_H
#define TEND_OUTBOX_H

#include <cjson/cJSON.h>

#include "engine.h"

struct send_request {
    int64_t instance;           /* 0 outside an instance */
    int step;                   /* history index of the send */
    const char *journey;
    const char *customer;
    const char *channel;
    const char *template_name;
    const cJSON *vars;          /* may be NULL */
    int priority;               /* journey priority unless the template sets one */
    int defer_on_cap;           /* journey on_cap = "defer" */
    int64_t attempt_of;         /* a fallback: the message's first attempt (its caps were counted) */
};

struct send_result {
    char status[16];            /* queued deferred capped suppressed failed */
    int64_t id;                 /* the outbox row */
    tend_time due_at;
    char error[256];            /* for failed: why */
};

/* Renders the template for the channel, applies policy and stores the row.
 * Returns 0 with *out filled (a render error is status "failed", not an
 * error); -1 when the call itself is wrong (unknown template, no text for
 * that channel) with err set. */
int outbox_send(engine *e, const struct send_request *r, struct send_result *out,
                char *err, size_t errlen);

/* The earliest due_at of a row still to deliver, or -1. */
tend_time outbox_next_due(engine *e);

/* Moves a delivered / refused / retried row to its new status. */
int outbox_mark_sent(engine *e, int64_t id, tend_time at, const char *response);
int outbox_mark_dead(engine *e, int64_t id, tend_time at, const char *error, const char *response);
int outbox_mark_retry(engine *e, int64_t id, tend_time due_at, const char *error);
int outbox_mark(engine *e, int64_t id, const char *status, const char *error);

/* Rows a multi-row statement takes at once (claims, sent marks). */
#define OUTBOX_BATCH 64

/* outbox_mark_sent for n rows (ids[i] answered responses[i], which may be
 * NULL), all at `at`: one UPDATE per OUTBOX_BATCH rows and one queue delete
 * a row; the rows that were `sending` are counted in outbox_counts by one
 * statement for the batch (the trigger leaves that move to it). leases
 * (may be NULL; an entry may be 0: not known) are the rows' claim leases
 * (outbox_claim_many's), where their queue entries should be: the rows
 * of one lease leave the queue in one statement a run of consecutive ids
 * and one for the others, and any of the lease's entries found elsewhere
 * are looked up row by row as without leases. 0, or -1 on a store error. */
int outbox_mark_sent_many(engine *e, const int64_t *ids, const char *const *responses, const tend_time *leases,
                          int n, tend_time at);

/* Claims n due rows for delivery under a lease: each (due_at[i], ids[i])
 * queue entry moves to `lease` (when it is tried again if no result is
 * stored), the row becomes `sending` with one more attempt. One UPDATE per
 * OUTBOX_BATCH rows, or one for all when the ids are consecutive (two
 * when some were not queued) and the queued rows
 * counted in outbox_counts by one statement; a second backend does the
 * same with FOR UPDATE SKIP LOCKED. 0, or -1 on a store error. */
int outbox_claim_many(engine *e, const int64_t *ids, const tend_time *due_at, int n, tend_time lease);

#endif
