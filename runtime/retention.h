/* retention — what the store forgets, and when (tend.lua `retention`).
 *
 *   retention = { instances = days(90), events = days(180) }
 *
 * Without the setting (or a key of it) nothing is deleted: the store keeps
 * every instance and event for ever, as it always has.
 *
 * The sweep runs from the engine's due work in slices that each touch a
 * bounded number of rows (a few ms) and commit on their own, so it never
 * holds the loop; where it stands is kept in the store (meta), so a restart
 * resumes it.
 *
 * Instances: a pass walks the instances in id order, RETENTION_SLICE ids a
 * slice, and deletes the finished ones (done, failed, converted, exited)
 * whose end (ended_at) is older than the limit. A waiting instance is never
 * deleted; a finished one has no timer, listener or fetch left. The same
 * pass notes which stored script versions still have a waiting instance
 * (scripts.seen_pass), and at its end drops the old versions none used:
 * loading scripts never scans the instances. A pass starts at most once
 * every RETENTION_PASS_EVERY, and only when there is something to do (an
 * instances limit, or a version older than the current load).
 *
 * Events: the oldest processed events (seq at or below the processing
 * cursor) received (received_at) longer ago than the limit go, oldest
 * first, RETENTION_SLICE a slice; an unprocessed event, or one a broadcast
 * is still fanning out, is never deleted. Event-id deduplication holds for
 * as long as the event is kept: an event re-sent with the id of one already
 * deleted is accepted and processed as new. The newest instance and the
 * newest event are always kept, so ids and sequence numbers never repeat. Once a slice finds nothing
 * more to delete the events sweep rests RETENTION_EVENTS_REST.
 *
 * Counters shown by status and reports that count instances or events
 * count what is kept. */
#ifndef TEND_RETENTION_H
#define TEND_RETENTION_H

#include "clock.h"
#include "store.h"

#define RETENTION_SLICE        1000     /* instance ids, or events, per slice */
#define RETENTION_PASS_EVERY   3600     /* seconds between passes over the instances */
#define RETENTION_EVENTS_REST  600      /* seconds the events sweep rests when caught up */

struct retention_policy {
    tend_time instances;        /* seconds a finished instance is kept; 0 = for ever */
    tend_time events;           /* seconds a processed event is kept; 0 = for ever */
};

/* One slice of each sweep that is due at `now` (each in its own
 * transaction; the caller holds none). Returns the rows deleted (0 when
 * nothing was due), or -1 on a store error (nothing of that slice stays). */
int retention_run_due(store *st, const struct retention_policy *p, tend_time now);

#endif
