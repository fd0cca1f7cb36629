/* dates — yearly date triggers: birthdays, anniversaries, any date field.
 *
 *   journey "birthday" { on = anniversary("birthday", {at = "10:00", offset = -days(1)}), ... }
 *
 * fires once a year per customer at local time `at` in the customer's zone,
 * `offset` before or after the date in the field (birthday, first_order_at,
 * any *_at field, attrs.<path> holding a date or time). A Feb 29 date falls
 * on Feb 28 in common years. The trigger event carries `years` (the age of
 * the date that year, at least 1), `date` and `field`.
 *
 * Each (journey, customer) has one row holding its next fire time, so the
 * due ones are a range scan; a changed field or zone recomputes the row. */
#ifndef TEND_DATES_H
#define TEND_DATES_H

#include "engine.h"

/* Recomputes the rows of one customer (its fields or zone changed). */
int dates_customer_changed(engine *e, const char *customer);

/* After a load: fills the rows of every dated journey whose trigger is new
 * or changed (for all customers), drops those of journeys gone. */
int dates_sync(engine *e);

/* Starts the journeys of triggers due at or before now (at most max), and
 * schedules each one's next year. Returns how many fired, -1 on error. */
int dates_run_due(engine *e, tend_time now, int max);
tend_time dates_next_due(engine *e);

/* 1 if `field` can carry a date trigger. */
int dates_field_valid(const char *field);

/* The next fire time after `after` of a date (y, m, d) for a trigger at
 * minute_of_day + offset in zone tz; *years gets the age. 0 or -1. */
int dates_next_fire(int y, int m, int d, const char *tz, int minute_of_day, tend_time offset,
                    tend_time after, tend_time *out, int *years);

#endif
