/* server — `tend run`: the HTTP API and the loop that drives the engine.
 *
 *   POST /v1/events            one JSON object, or an NDJSON batch
 *   PUT  /v1/customers/{id}    create or update a customer
 *   GET  /v1/customers/{id}
 *   GET  /v1/journeys          instances by state and step, conversions, sends, cost
 *   GET  /v1/segments/{name}   count and a sample
 *   GET  /v1/tasks             open tasks (?status=all, ?assignee=NAME)
 *   GET  /metrics              Prometheus text
 *   GET  /healthz              liveness; no token needed
 *   GET  /readyz               readiness (store, scripts, backlog); no token
 *   GET  /v1/openapi.json      this API described (docs/openapi.yaml); no token
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

/* Serves until SIGINT/SIGTERM. Returns the process exit status. Under
 * systemd (NOTIFY_SOCKET set) it says READY=1 once listening and
 * STOPPING=1 when it begins to stop. */
int server_run(engine *e);

/* The router's table, for the test that holds it against docs/openapi.yaml:
 * route i's method ("GET", ...; "*" for any) and path ("/v1/customers/{id}"). */
int  server_route_count(void);
void server_route_at(int i, const char **method, const char **path);

#endif
