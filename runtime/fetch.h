/* fetch — http_get(url) for journeys: a guarded GET, asynchronous and durable.
 *
 * The guard. Only http/https URLs whose host tend.lua's http_allow lists
 * ("api.x.com", or "*.x.com" for its subdomains) are tried, with no
 * redirects, no proxy, a 3 s connect and 10 s total timeout and a 1 MiB
 * body cap. The address libcurl is about to connect to is checked too
 * (CURLOPT_OPENSOCKETFUNCTION, so a name that resolves, or is re-bound, to
 * an inner address is caught): loopback, private, link-local, unique-local,
 * multicast, unspecified and other special-purpose addresses (IPv4 ones
 * also inside IPv4-mapped, -compatible, NAT64 and 6to4 IPv6) are refused
 * unless http_allow names that very address ("127.0.0.1", "::1").
 *
 * The life of a request. http_get past the end of an instance's history
 * records a pending entry and a row of `fetches` (fetch_queue, in the wake's
 * transaction) and the instance suspends. fetch_run_due then starts the
 * rows not yet in flight. Under `tend run` (fetch_attach) they run on the
 * event loop beside everything else; when one ends, its result (or error)
 * is handed to instance_wake_fetched in a transaction that also deletes
 * the row, so the replay returns the recorded result. A crash while a
 * request is pending leaves its row: the next process sends it again.
 * Without a loop (tend ingest, tools) fetch_run_due performs the requests
 * one at a time, blocking. In a sim (engine->http_stubs set) the answer is
 * the stub's, given at once in the same pass.
 *
 * Results are {status = n, body = text, json = decoded body when it is
 * JSON} or {error = message}. */
#ifndef TEND_FETCH_H
#define TEND_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "engine.h"

struct sockaddr;
struct event_base;

/* The checks made at the call: a URL, http or https, its host allowed.
 * 0, or -1 with the reason in err. */
int fetch_check_url(engine *e, const char *url, char *err, size_t errlen);

/* 1 if tend.lua allows `host`. */
int fetch_host_allowed(engine *e, const char *host);

/* Why `addr` (AF_INET or AF_INET6) may not be connected to: "loopback",
 * "private", "link-local", ... or NULL when it is a public address or one
 * `allow` (a NULL-terminated list, may be NULL) names literally. The
 * address is written as text into `text`. */
const char *fetch_address_refused(char *const *allow, const struct sockaddr *addr, char *text,
                                  size_t textlen);

/* Records that history entry `step` (0-based) of instance `id` waits for
 * GET `url`. In the caller's transaction. 0 or -1. */
int fetch_queue(engine *e, int64_t id, int step, const char *url);

/* Forgets the pending requests of instance `id` (it ended). 0 or -1. */
int fetch_cancel(engine *e, int64_t id);

/* Starts (loop) or performs (no loop, sim) up to `max` pending requests.
 * Returns how many instances were woken with an answer here, -1 on a
 * store error. Requests started on the loop count when they end. */
int fetch_run_due(engine *e, int max);

/* Pending requests that fetch_run_due would answer at once (no loop). */
int64_t fetch_pending(engine *e);

/* Runs requests on `base` from now on (tend run). 0 or -1. */
int  fetch_attach(engine *e, struct event_base *base);
/* Requests in flight on the loop, and answers not yet stored. */
int  fetch_in_flight(engine *e);
/* Runs the attached loop until nothing is in flight, for at most
 * timeout_ms (a virtual clock waits for the network). 0, or -1 on timeout. */
int  fetch_wait(engine *e, int timeout_ms);
/* Abandons the requests in flight (their rows stay: sent again by the
 * next process) and detaches. */
void fetch_free(engine *e);

#endif
