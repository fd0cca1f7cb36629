/* segment — customer filters compiled to SQL.
 *
 * A filter is a Lua table: string keys are field conditions, array items are
 * nested filters (all must hold). Built from the helpers' nodes (helpers.h):
 *
 *   { city = "Shanghai",                          -- equality (nil never matches)
 *     city = one_of("Shanghai", "Beijing"),
 *     total_spent = at_least(1000), orders_count = at_most(3),
 *     total_spent = between(100, 500),            -- inclusive
 *     last_order_at = before(t), first_order_at = after(t),   -- strict
 *     tags = has("vip", "gold"),                  -- every listed tag; tags = "vip" too
 *     lifecycle = not_("dead"), city = not_(one_of("A", "B")),
 *     ["attrs.baby.age"] = at_least(1),           -- JSON attribute by dotted path
 *     any { {city = "A"}, {region = "East"} },    -- array items: nested filters
 *     not_ { city = "A" },                        -- a negated nested filter
 *     bought = { category = "coffee", within = days(30), at_least = 2 },
 *     not_(bought{ sku = "BEANS-1" }) }           -- what was bought (orderline.h)
 *
 * Fields: id name phone email city region timezone birthday first_seen_at
 * first_order_at last_order_at orders_count total_spent last_active_at
 * lifecycle r f m blocked tags bought, and attrs.<path>. `bought` (sku or
 * category; within: seconds back from now; at_least: orders, default 1)
 * reads the bought table by its key, and the customer's order_items only
 * for a count within a window: never Lua, never a pass over every line. An unknown field, an
 * operator on the wrong kind of value, or a malformed path is an error naming
 * it. Relative times (ago() in a declaration) resolve against `now`.
 *
 * A filter whose top level requires a tag (tags = "vip", has("vip", ...))
 * is counted and paged from the tag index (customer_tags carries each
 * customer's last_order_at): with only last_order_at beside the tag, no
 * customer row is read. segment_query_where() stays the plain form.
 *
 * Every value reaches SQL as a bound parameter, never as text in the query,
 * so no value can change the query's meaning. `not_` means "does not match":
 * a customer whose field is NULL matches not_("x").
 *
 * Ownership: a segment_query is the caller's (segment_query_free). */
#ifndef TEND_SEGMENT_H
#define TEND_SEGMENT_H

#include <stddef.h>

#include <lua.h>

#include "clock.h"
#include "store.h"

typedef struct segment_query segment_query;

/* Compiles the filter at idx. NULL with err ("segment: field 'citi' is not a
 * customer field (known: ...)") on failure. Never raises a Lua error. */
segment_query *segment_compile(lua_State *L, int idx, tend_time now, char *err, size_t errlen);
void segment_query_free(segment_query *q);

/* The SQL boolean expression over the columns of `customers` ("1" for an
 * empty filter), and its parameters, bound from index `first` on. */
const char *segment_query_where(const segment_query *q);
int  segment_query_nparams(const segment_query *q);
int  segment_query_bind(const segment_query *q, store_stmt *s, int first);

/* The statement segment_count runs for a filter that is one bought
 * condition alone (from the bought facts or bought_counts, not the
 * customers table), with the same parameters; NULL otherwise (it counts
 * `SELECT COUNT(*) FROM customers WHERE <where>`). For EXPLAIN and tests. */
const char *segment_query_count_sql(const segment_query *q);

/* How many customers match; -1 on a store error. */
int64_t segment_count(store *st, const segment_query *q);

/* Calls fn for up to `limit` matching customer ids greater than `after`
 * ("" for the start), in id order. Returns how many it found, -1 on error.
 * Keyset pages hold no statement open between calls, so a caller may write
 * to the store between pages (and page through 10M customers in constant
 * memory). */
typedef void (*segment_id_fn)(const char *id, void *ud);
int segment_page(store *st, const segment_query *q, const char *after, int limit,
                 segment_id_fn fn, void *ud);

/* 1 if the customer `id` matches; -1 on error. */
int segment_matches(store *st, const segment_query *q, const char *id);

#endif
