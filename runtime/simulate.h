/* simulate — `tend simulate`: a forecast of what the scripts would send.
 *
 * The scripts of a directory run on a virtual clock against a throw-away
 * store holding the given customers; the given events are fed in at their
 * own times; every channel is captured. At the end: sends by journey,
 * template and channel, their status and cost, conversions and tasks. */
#ifndef TEND_SIMULATE_H
#define TEND_SIMULATE_H

#include <stdio.h>

struct simulate_options {
    const char *dir;
    int days;
    const char *customers;  /* CSV or NDJSON, may be NULL */
    const char *events;     /* NDJSON, may be NULL */
    const char *start;      /* ISO-8601 or epoch; default: now */
};

/* Returns the exit status. */
int simulate_run(const struct simulate_options *o, FILE *out);

#endif
