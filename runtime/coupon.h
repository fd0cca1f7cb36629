/* coupon — coupon codes issued by journeys.
 *
 * coupon_issue(c, {value = 20, valid = days(14), prefix = "GIFT"}) makes a
 * code unique per customer and journey (derived from the instance and step,
 * so a replay would make the same one) and stores it. It returns a table
 * {code, value, expires (a date in the customer's zone), expires_at}. */
#ifndef TEND_COUPON_H
#define TEND_COUPON_H

#include <lua.h>

#include "engine.h"

/* Issues a coupon; pushes the result table. spec is the index of the spec
 * table (0: none). 0, or -1 with err. */
int coupon_issue(engine *e, lua_State *L, const char *journey, int64_t instance, int step,
                 const char *customer, int spec, char *err, size_t errlen);

#endif
