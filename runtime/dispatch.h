/* dispatch — where a message leaves tend.
 *
 * Due outbox rows are claimed and delivered through their channel. file,
 * task and capture channels (and every channel of a sim) deliver in the
 * loop, in one transaction per pass. http and smtp go through libcurl's
 * multi interface driven by libevent (socket and timer callbacks, no
 * polling): a claimed row is `sending` with a lease; its result is stored
 * when the transfer ends; a crash before that leaves the lease to expire and
 * the row is sent again with the same idempotency key (at once when the
 * next `tend run` attaches: dispatch_attach releases such claims).
 *
 * Retries: connect errors, timeouts, 5xx and 429 back off exponentially
 * with jitter, up to the channel's max_backoff (429's Retry-After is
 * honoured); 4xx is a dead letter with the response kept. Suppression,
 * quiet hours and the channel's contact window are checked again just
 * before sending.
 *
 * A pass reads its due rows in chunks (one query each, with the message and
 * its customer), claims them (a full channel's up to its concurrency ahead,
 * started as its transfers end), and lets libcurl write the requests before
 * the pass's commit syncs: a crash before that commit leaves the rows queued
 * and they go again with the same key, like an expired lease. Results are
 * stored in later transactions, a burst of them per commit; under
 * dispatch_attach that commit syncs on the store's thread
 * (store_commit_detach) while the loop goes on with the transfers, and a
 * channel claims ahead what it finished during the last such commit (twice
 * that, at least its concurrency, at most 4 times it), so it stays busy
 * until the next one. Nothing acts on those results before they are
 * durable: every store call waits for the commit first. */
#ifndef TEND_DISPATCH_H
#define TEND_DISPATCH_H

#include "engine.h"

struct event_base;

/* Delivers (or hands to libcurl) up to max due rows. Returns how many were
 * handled, -1 on a store error. */
int dispatch_run_due(engine *e, tend_time now, int max);

/* Starts asynchronous delivery on `base` (tend run, delivery tests). Without
 * it, http/smtp rows are delivered synchronously, one transfer at a time. */
int  dispatch_attach(engine *e, struct event_base *base);
/* From now on nothing new is claimed (results of transfers in flight are
 * still stored): tend run is stopping. */
void dispatch_stop_claiming(engine *e);
/* Transfers in flight. */
int  dispatch_in_flight(engine *e);
/* Runs the attached loop until no transfer is in flight and their results
 * are stored, for at most timeout_ms: the virtual clock waits for the
 * network before it moves on. 0, or -1 on timeout. */
int  dispatch_wait(engine *e, int timeout_ms);
void dispatch_free(engine *e);

#endif
