/* openapi — the HTTP API's description, docs/openapi.yaml, as JSON.
 *
 * The Makefile converts the YAML at build time (docs/openapi-embed.py) and
 * compiles the result in, so `GET /v1/openapi.json` serves exactly the file
 * the docs ship, and a unit test holds it against the router's table. */
#ifndef TEND_OPENAPI_H
#define TEND_OPENAPI_H

#include <stddef.h>

extern const char openapi_json[];     /* NUL-terminated */
extern const size_t openapi_json_len;

#endif
