/* coupon — coupon codes issued by journeys.
 *
 * coupon_issue(c, {value = 20, valid = days(14), starts = time,
 * min_spend = 100, prefix = "GIFT"}) makes a code unique per customer and
 * journey (derived from the instance and step, so a replay would make the
 * same one) and stores it. It returns a table {code, value, expires (a date
 * in the customer's zone), expires_at, starts_at, min_spend}. The coupon is
 * valid from `starts` (default: now) for `valid` seconds.
 *
 * A paid order event carrying `coupon = "CODE"` (or `coupons = {...}`)
 * redeems each code that belongs to the order's customer, is inside its
 * window, unused, and whose min_spend the order's amount reaches: the coupon
 * stores redeemed_at and the order, and the event `coupon.redeemed` (code,
 * journey, value, order) follows for the customer. A code that fails any of
 * these is not redeemed: the reason is logged naming the order and kept in
 * coupon_refusals. */
#ifndef TEND_COUPON_H
#define TEND_COUPON_H

#include <cjson/cJSON.h>
#include <lua.h>

#include "engine.h"

/* Issues a coupon; pushes the result table. spec is the index of the spec
 * table (0: none). 0, or -1 with err. */
int coupon_issue(engine *e, lua_State *L, const char *journey, int64_t instance, int step,
                 const char *customer, int spec, char *err, size_t errlen);

/* Redeems the codes an order event carries (see above), in the caller's
 * transaction. `amount` is the order's total (NaN: unknown, which meets no
 * min_spend). Returns 0, or -1 on a store error. */
int coupon_redeem_order(engine *e, const char *customer, tend_time at, const cJSON *ev, double amount);

#endif
