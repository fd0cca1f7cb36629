/* event — where an event enters tend.
 *
 * Accepting and processing are two steps with a commit between them:
 * event_accept() validates and stores (the caller commits, then answers the
 * sender: an acknowledged event is on disk); event_process() later applies
 * stored events in sequence order — customer fields, wait_for and goal
 * listeners, journey triggers, broadcast fan-outs — and advances the
 * processed cursor in the same transaction. A crash in between re-processes
 * nothing twice and skips nothing.
 *
 * An event: {"type": "order.paid", "customer": "c1", "at": <epoch seconds or
 * ISO-8601 with offset>, "id": <optional unique id>, ...payload}. An id seen
 * before makes the event a duplicate (accepted, not stored again: webhook
 * retries are harmless). No customer: a broadcast, which reaches journeys
 * through their audience. */
#ifndef TEND_EVENT_H
#define TEND_EVENT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "engine.h"

#define EVENT_MAX_BYTES (1 << 20)

struct event_result {
    int64_t seq;        /* the stored event's sequence (0 for a duplicate) */
    int duplicate;
};

/* Validates `ev` without storing it: 0, or -1 with err naming the field. */
int event_check(engine *e, const cJSON *ev, char *err, size_t errlen);

/* Validates `ev` and stores it (inside the caller's transaction, or its own
 * when there is none). -1 with err naming the field when it is invalid;
 * nothing is stored then. */
int event_accept(engine *e, const cJSON *ev, struct event_result *res, char *err, size_t errlen);

/* An event tend made itself (a receipt's message.<status>): its columns and
 * `body`, the JSON text of the event object holding those same values, made
 * by a caller that knows them valid (a type of tend's own, a customer read
 * from the store, a one-line id) — so nothing is checked or printed again.
 * Stored as event_accept() stores; the strings are borrowed for the call. */
struct event_made {
    const char *type, *id, *customer;
    tend_time at;
    const char *body;   /* NUL-terminated */
};
int event_accept_made(engine *e, const struct event_made *m, struct event_result *res, char *err, size_t errlen);

/* Parses and accepts NDJSON: every valid line is stored, all in one
 * transaction; each invalid line is reported through `reject` with its
 * 1-based line number. Blank lines are skipped. */
struct ingest_report {
    int64_t accepted, duplicates, rejected;
};
typedef void (*event_reject_fn)(void *ud, long line, const char *reason);
int event_ingest_ndjson(engine *e, const char *data, size_t len, event_reject_fn reject, void *ud,
                        struct ingest_report *rep);
/* The same from a stream, read in bounded pieces (a few MiB whatever the
 * input's size), committing every 50,000 stored lines as the whole-buffer
 * form does; the caller keeps and closes `in`. -1 on a store or read error
 * (what was committed before stays). */
int event_ingest_stream(engine *e, FILE *in, event_reject_fn reject, void *ud, struct ingest_report *rep);

/* Processes up to `max` accepted events in one transaction. Returns how many,
 * -1 on a store error (nothing of the batch is kept then). */
int event_process(engine *e, int max);

/* Accepted events not yet processed. */
int64_t event_backlog(engine *e);

/* Works one page of a pending broadcast fan-out. Returns instances started,
 * 0 when no fan-out is pending, -1 on error. */
int event_fanout(engine *e, int page);
int event_fanout_pending(engine *e);

#endif
