/* fetch — http_get(url) for journeys: a GET to an allowed host.
 *
 * Only hosts listed in tend.lua's http_allow are reachable ("api.x.com", or
 * "*.x.com" for its subdomains), over http/https, without redirects, with a
 * 3 s connect and 10 s total timeout and a 1 MiB body cap. In a sim every
 * answer comes from sim:stub_http(url, response) instead of the network.
 *
 * The request is synchronous: it holds the loop for up to the timeout. That
 * is acceptable for the rare lookups journeys make (a weather index, a
 * stock level); a journey calling it per customer at scale should not.
 * Returns {status = n, body = text, json = decoded body when it is JSON}
 * (caller frees), or NULL with err. */
#ifndef TEND_FETCH_H
#define TEND_FETCH_H

#include <cjson/cJSON.h>

#include "engine.h"

cJSON *fetch_get(engine *e, const char *url, char *err, size_t errlen);

/* 1 if tend.lua allows `host`. */
int fetch_host_allowed(engine *e, const char *host);

#endif
