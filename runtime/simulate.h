/* simulate — `tend simulate`: a forecast of what the scripts would send.
 *
 * The scripts of a directory run on a virtual clock against a throw-away
 * in-memory store (about 12 MB a thousand customers for a year) holding the given customers; the given events are fed in at their
 * own times; every channel is captured. At the end: sends by journey,
 * template and channel, their status and cost, conversions and tasks; the
 * contact load per channel and local day (configured zone), flagging days
 * where caps deferred more than 10% of the messages; with `messages`, every
 * message as NDJSON ({customer, journey, template, channel, category,
 * status, at, local} — `local` the time in the customer's zone); and a
 * policy audit that must find nothing: marketing sent in quiet hours,
 * marketing or channel sends over a cap (the most generous limit that
 * could apply: segment overrides included), marketing sent after the
 * customer opted out of the channel, messages deferred to a time inside
 * the run and never delivered. simulate_run returns 1 when the audit finds
 * anything. */
#ifndef TEND_SIMULATE_H
#define TEND_SIMULATE_H

#include <stdio.h>

struct simulate_options {
    const char *dir;
    int days;
    const char *customers;  /* CSV or NDJSON, may be NULL */
    const char *events;     /* NDJSON, may be NULL */
    const char *start;      /* ISO-8601 or epoch; default: now */
    const char *messages;   /* NDJSON of every message written here, may be NULL */
};

/* Returns the exit status. */
int simulate_run(const struct simulate_options *o, FILE *out);

#endif
