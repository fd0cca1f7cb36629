/* netloop — libcurl's multi interface driven by a libevent loop.
 *
 * The outbound half of `tend run`: deliveries (dispatch.c) and journeys'
 * http_get (fetch.c) each own one netloop on the server's event_base. A
 * transfer is an easy handle the caller builds and keeps owning; the loop
 * runs it with socket and timer callbacks (no polling) and calls `done`
 * once it has ended, after the handle was removed from the multi, so the
 * callback may free it. Each netloop has its own connection cache: a
 * connection opened for one owner is never reused by the other.
 *
 * CURLOPT_PRIVATE of an added handle belongs to the netloop. A leaf module:
 * it knows nothing of the engine or the store. */
#ifndef TEND_NETLOOP_H
#define TEND_NETLOOP_H

#include <curl/curl.h>

struct event_base;
struct netloop;

/* curl_global_init(flags) for the process, with libcurl's memory through
 * pool.h's free lists: the blocks of a request's setup and teardown (~35
 * allocations and ~120 frees, most of them of NULL) are kept on the
 * calling thread, the one whose loop runs the transfers, and given back
 * there; a block freed on another thread (libcurl's resolver threads) goes
 * back to the system. Called once, before any other libcurl call, as
 * curl_global_init must be; curl_global_cleanup undoes it. Returns
 * libcurl's code. */
CURLcode netloop_global_init(long flags);

/* Called once per transfer, with libcurl's result. */
typedef void (*netloop_done_fn)(CURL *easy, CURLcode result, void *ud);

/* A loop on `base` allowing at most `max_host_connections` connections to
 * one host (0: libcurl's default, unlimited), keeping up to 4 times that
 * many open between transfers. NULL if libcurl fails. */
struct netloop *netloop_new(struct event_base *base, long max_host_connections);

/* Raises the loop's connections per host to at least `n` (a channel whose
 * concurrency is above it would otherwise queue its transfers inside
 * libcurl, walked at every transfer's end). Never lowers it. */
void netloop_raise_host_connections(struct netloop *n, long at_least);

/* Abandons the transfers still in flight (their `done` is not called; the
 * handles stay the callers') and frees the loop. NULL is allowed. */
void netloop_free(struct netloop *n);

/* Starts a transfer. 0, or -1 (libcurl refused the handle). */
int netloop_add(struct netloop *n, CURL *easy, netloop_done_fn done, void *ud);

/* Abandons one transfer: it stops, `done` is not called. */
void netloop_remove(struct netloop *n, CURL *easy);

/* Lets libcurl start the transfers added since the loop last ran (a
 * request on a kept connection is written now) instead of at the loop's next
 * turn: the caller may then block (a commit's fsync) while they travel.
 * `done` may be called from here. */
void netloop_kick(struct netloop *n);

/* Transfers started and not yet done. */
int netloop_in_flight(const struct netloop *n);

struct event_base *netloop_base(const struct netloop *n);

/* Runs the loop while busy(ud) says 1, for at most timeout_ms: a virtual
 * clock waits for the network before it moves on. 0, or -1 on timeout. */
int netloop_wait(struct netloop *n, int (*busy)(void *ud), void *ud, int timeout_ms);

#endif
