/* helpers — the pure globals every script and test sees.
 *
 *   days(n) hours(n) minutes(n)       → seconds
 *   ago(s)                            → now - s (the sandbox's clock)
 *   now()                             → the sandbox's clock (inside a journey's
 *                                       run the engine's recorded now() wins)
 *   at_least at_most between before after one_of has not_ any all bought
 *                                     → filter nodes for segments (segment.h)
 *   anniversary(field, {at, offset})  → a date trigger for `journey{on = ...}`
 *   log(...)                          → the runtime log, tagged file:line
 *
 * ago() while a script loads (helpers_set_relative on) returns a relative
 * time, a table {ago = s} with metatable HELPERS_AGO_MT: a segment declared as
 * `before(ago(days(90)))` must mean 90 days before each evaluation, not before
 * the day the server started. Everywhere else ago() returns a number.
 *
 * A filter node is a table {op = "between", [1] = a, [2] = b} whose metatable
 * is registered as HELPERS_FILTER_MT; helpers_is_filter() tells them from
 * plain values. */
#ifndef TEND_HELPERS_H
#define TEND_HELPERS_H

#include <lua.h>

#include "sandbox.h"

#define HELPERS_FILTER_MT "tend.filter"
#define HELPERS_TRIGGER_MT "tend.trigger"
#define HELPERS_AGO_MT "tend.ago"

/* Registers the helpers as globals of every env of sb. */
void helpers_register(sandbox *sb);

/* 1 if the value at idx is a filter node / a date trigger. */
int helpers_is_filter(lua_State *L, int idx);
int helpers_is_trigger(lua_State *L, int idx);
/* The registry name of the host metatable (filter, trigger, ago) of the
 * table at idx, or NULL. */
const char *helpers_host_metatable(lua_State *L, int idx);

/* Turns relative ago() on (while scripts load) or off. */
void helpers_set_relative(lua_State *L, int on);

/* If the value at idx is a relative time, stores now - s in *out and returns 1. */
int helpers_resolve_relative(lua_State *L, int idx, tend_time now, tend_time *out);

/* Copies the value at idx of `from` onto `to` (another Lua state): plain
 * data deeply, filter nodes and relative times keeping what they are.
 * Functions, userdata and cycles are refused: 0, or -1 with err. */
int helpers_copy(lua_State *from, int idx, lua_State *to, char *err, size_t errlen);

/* Reads a time argument: a number (epoch seconds) or an ISO-8601 string with
 * an offset. Raises an argument error otherwise. A relative time is
 * resolved against the sandbox's clock. */
tend_time helpers_check_time(lua_State *L, int arg);

#endif
