/* json — Lua values to and from JSON (cJSON trees).
 *
 * Lua tables become JSON arrays when their keys are exactly 1..n (n > 0),
 * objects otherwise (an empty table is {}); object keys are written sorted,
 * so the same value always encodes to the same bytes (history hashes rely on
 * this; Lua's own traversal order changes from run to run). Integers that fit
 * stay integers on the way back. JSON null becomes nil. Functions, threads,
 * userdata, non-string keys of objects, NaN/inf and nesting deeper than
 * JSON_MAX_DEPTH are errors, reported in `err` with the path ("vars.coupon.f").
 *
 * Ownership: every cJSON * returned is the caller's (cJSON_Delete); every
 * char * returned is the caller's (free). */
#ifndef TEND_JSON_H
#define TEND_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <lua.h>

#define JSON_MAX_DEPTH 32

/* The value at idx as a cJSON tree, or NULL with err filled. */
cJSON *json_from_lua(lua_State *L, int idx, char *err, size_t errlen);

/* Pushes j as a Lua value (nil for NULL or JSON null). */
void json_push(lua_State *L, const cJSON *j);

/* Parses text and pushes it; returns 0, or -1 with err (nothing pushed). */
int json_push_text(lua_State *L, const char *text, size_t len, char *err, size_t errlen);

/* Compact JSON text of the value at idx, or NULL with err. */
char *json_encode(lua_State *L, int idx, char *err, size_t errlen);

/* The JSON text of the value at idx pushed as a Lua string (returned), or
 * NULL with err and nothing pushed. Code that may raise afterwards holds
 * only this garbage-collected string, never a malloc'd copy that a raise
 * would leak. */
const char *json_push_encoded(lua_State *L, int idx, char *err, size_t errlen);

/* json_from_lua and json_push_encoded for input from a script (emit, c:set,
 * sim:customer, sim:event): every string and key must also be text — no NUL
 * byte (cJSON would cut the string there), valid UTF-8 — or it is an error
 * naming the path. */
cJSON *json_from_lua_input(lua_State *L, int idx, char *err, size_t errlen);
const char *json_push_input(lua_State *L, int idx, char *err, size_t errlen);

/* json_push_text for text tend stored itself (a history's results, an
 * instance's trigger): read straight into Lua values, no cJSON tree, with
 * the same values json_push gives; text it does not take on this fast path
 * (deep nesting, odd escapes, bad bytes) goes through json_push_text. */
int json_push_stored(lua_State *L, const char *text, size_t len, char *err, size_t errlen);

/* For one stored text pushed many times (the trigger of a page of starts):
 * json_template_new reads `text` once and pushes a template of it, or
 * returns -1 with nothing pushed when json_push_stored would not take its
 * fast path (then call that each time). json_template_push pushes, from the
 * template at idx, a new value equal to what json_push_stored(text) pushes,
 * its tables made by the same insertions in the same order, so that even
 * pairs() walks them alike; the template itself stays unchanged. A template
 * is a Lua value to keep (a registry ref), not to hand to scripts. */
int json_template_new(lua_State *L, const char *text, size_t len);
void json_template_push(lua_State *L, int idx);

/* Compact text of a cJSON tree (never NULL for a valid tree). */
char *json_print(const cJSON *j);

/* Parse with a position-bearing error: "invalid JSON at byte 17 near '}'".
 * A NUL byte inside `len` is an error, and so is what validate_json_text()
 * refuses: nesting deeper than JSON_MAX_DEPTH ("nested too deep (limit
 * 32)"), "\u0000", invalid UTF-8, a number that is not finite (1e400). */
cJSON *json_parse(const char *text, size_t len, char *err, size_t errlen);

/* Number as int64 if it is integral and in range; 0 on success. */
int json_int(const cJSON *j, long long *out);

/* The value at a dotted path ("coupon.code") in an object tree, or NULL. */
const cJSON *json_path(const cJSON *obj, const char *path);

#endif
