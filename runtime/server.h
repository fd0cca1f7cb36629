/* server — `tend run`: the HTTP API and the loop that drives the engine.
 *
 *   POST /v1/events            one JSON object, or an NDJSON batch
 *   PUT  /v1/customers/{id}    create or update a customer
 *   GET  /v1/customers/{id}
 *   GET  /v1/journeys          instances by state and step, conversions, sends, cost
 *   GET  /v1/segments/{name}   count and a sample
 *   GET  /v1/tasks             open tasks (?status=all, ?assignee=NAME)
 *   GET  /metrics              Prometheus text
 *   GET  /healthz              no token needed
 *
 * Every other route needs `Authorization: Bearer $TEND_API_TOKEN`. Bodies over
 * 1 MiB get 413; malformed JSON gets 400 with the reason and the line; a
 * batch with one bad line stores nothing. Events are answered only after
 * they are committed: all requests that arrive in one loop turn share one
 * transaction (one fsync), then each gets its answer.
 *
 * One libevent loop runs everything: the HTTP server, a timer set to the
 * engine's next due time, and the libcurl transfers of deliveries and
 * http_get (netloop.c). */
#ifndef TEND_SERVER_H
#define TEND_SERVER_H

#include "engine.h"

/* Serves until SIGINT/SIGTERM. Returns the process exit status. */
int server_run(engine *e);

#endif
