/* policy — who may get what, and when.
 *
 *  - suppression: an unsubscribed customer gets no marketing on that channel
 *    (or on any, for channel '*'); a blocked one gets nothing at all;
 *  - quiet hours (default 21:30–08:30, in the customer's zone; an unknown
 *    zone means the configured default, never "send anyway"): marketing waits
 *    for the window to end, transactional goes at once;
 *  - caps on marketing (default 1 a local day, 3 an ISO week, per customer,
 *    across journeys): over the cap a message is capped, or deferred to the
 *    first day with room when its journey or template says on_cap = "defer".
 *    A message of higher priority may take the slot of a lower-priority one
 *    not yet sent, which is then capped in its place.
 * Checked when a message is queued, and suppression and quiet hours again
 * just before it is delivered (an opt-out in between stops it). */
#ifndef TEND_POLICY_H
#define TEND_POLICY_H

#include "engine.h"

struct policy_verdict {
    const char *status;     /* "queued", "deferred", "capped", "suppressed" */
    tend_time due_at;
    char reason[160];       /* why, for capped/suppressed/deferred */
};

int policy_check(engine *e, const char *customer, const char *channel, int marketing, int priority,
                 int defer_on_cap, tend_time now, struct policy_verdict *v);

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
