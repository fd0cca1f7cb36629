/* policy — who may get what, and when.
 *
 *  - suppression: an unsubscribed customer gets no marketing on that channel
 *    (or on any, for channel '*'); a blocked one gets nothing at all;
 *  - quiet hours (default 21:30–08:30, in the customer's zone; an unknown
 *    zone means the configured default, never "send anyway"): marketing waits
 *    for the window to end, transactional goes at once;
 *  - a channel's contact window (`window = {"10:00-11:30", "14:00-17:00"}`,
 *    `days = "mon-fri"`, in the customer's zone): a message of any category
 *    outside it waits for the next opening;
 *  - caps (config `caps`, per customer, across journeys): per scope —
 *    "marketing" (marketing messages on every channel; default 1 a local
 *    day, 3 an ISO week) or a channel (its messages of every category but
 *    transactional, and the tasks of that kind) — and per period: day, ISO
 *    week, month (local) or rolling {within = s, max = n}. `segment_caps`
 *    replace a limit for a segment's members. Over a cap a message is
 *    capped, or deferred to the first period with room when its journey or
 *    template says on_cap = "defer". A message of higher priority may take
 *    the slot of a lower-priority one not yet sent, which is then capped in
 *    its place.
 * Checked when a message is queued, and suppression and quiet hours again
 * just before it is delivered (an opt-out in between stops it). */
#ifndef TEND_POLICY_H
#define TEND_POLICY_H

#include <lua.h>

#include "customer.h"
#include "engine.h"

struct policy_verdict {
    const char *status;     /* "queued", "deferred", "capped", "suppressed" */
    tend_time due_at;
    char reason[160];       /* why, for capped/suppressed/deferred */
};

int policy_check(engine *e, const char *customer, const char *channel, int marketing, int priority,
                 int defer_on_cap, tend_time now, struct policy_verdict *v);

/* A task of `kind` (a task-type channel of that name, when declared):
 * due_at is the next opening of its window; its caps count the task
 * ("capped": over one). */
int policy_check_task(engine *e, const char *customer, const char *kind, tend_time now, struct policy_verdict *v);

/* A channel's contact window: spans of the local day and weekdays. */
#define POLICY_MAX_SPANS 8
struct policy_window {
    int n;                          /* spans; 0: the whole day */
    int from[POLICY_MAX_SPANS], to[POLICY_MAX_SPANS];   /* minutes of the local day, to > from */
    unsigned days;                  /* bit 0 = Sunday; 0x7f = every day */
    int restricted_days;
};

/* Reads `window` and `days` of the channel declaration at decl (a non-table:
 * no window). 0, or -1 with err quoting the bad value. */
int policy_read_window(lua_State *L, int decl, struct policy_window *w, char *err, size_t n);

/* t when inside the window in zone tz, else its next opening. */
tend_time policy_window_next(const struct policy_window *w, const char *tz, tend_time t);

/* The first time at or after t outside quiet hours (when marketing) and
 * inside window w, in zone tz: where a message may be delivered. */
tend_time policy_contact_time(engine *e, const struct policy_window *w, const char *tz, int marketing, tend_time t);

/* Counts an event of the customer at `at` in its local hour (best_time). 0 or -1. */
int policy_note_activity(engine *e, const char *customer, tend_time at);
/* The same when the caller has read the customer's stored zone already
 * (`zone`: as stored, "" or NULL for none; an unknown one means the configured). */
int policy_note_activity_in(engine *e, const char *customer, tend_time at, const char *zone);

/* A batch of events notes its activity hours together: between begin and
 * end, policy_note_activity(_in) keeps the counts in `b` (on the caller's
 * stack) and writes them 64 to a statement, before best_time reads them
 * and at policy_activity_end(write = 1), in the batch's transaction; end
 * with write = 0 (the batch failed) drops them. end: 0, or -1 when a write
 * of them failed (then the batch fails). */
struct activity_batch {
    int n, failed;              /* failed: a write of them failed (end says -1) */
    struct { char customer[CUSTOMER_ID_MAX + 1]; int hour; } v[64];
};
void policy_activity_begin(engine *e, struct activity_batch *b);
int policy_activity_end(engine *e, int write);

/* Registers best_time(c, {default = "10:00"}) → the next local time at the
 * customer's most active hour (the local hour holding most of their events,
 * once there are at least 3; the earliest hour on a tie), else at `default`
 * (10:00 when not given). Inside a run it is a recorded step, like at_local. */
void policy_lua_register(engine *e);

/* After a load: every channel named in caps / segment_caps is declared or
 * has template text, every segment exists. 0, or -1 with err naming it. */
int policy_validate(engine *e, char *err, size_t n);

/* At delivery time: 0 go, 1 suppressed (reason filled), 2 wait until *due. */
int policy_recheck(engine *e, const char *customer, const char *channel, int marketing,
                   tend_time now, tend_time *due, char *reason, size_t n);

/* The same, from what the caller already read with the message (one query
 * for the row and its customer instead of three). */
struct policy_facts {
    int blocked;
    int unsubscribed, unsubscribed_all;   /* from this channel / from all */
    const char *timezone;                 /* the customer's, or NULL */
};
int policy_recheck_facts(engine *e, const struct policy_facts *f, const char *channel, int marketing,
                         tend_time now, tend_time *due, char *reason, size_t n);

/* When the quiet hours around `t` end in zone tz (t itself if not quiet). */
tend_time policy_quiet_end(engine *e, const char *tz, tend_time t);

#endif
