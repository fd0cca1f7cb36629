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
 * `offset_days = -1` fires at `at` on the day before, in calendar days (DST
 * or not); `offset` (seconds) adds a sub-day shift. A date already past this
 * year when the row is computed (a customer imported late) fires next year,
 * unless `late = hours(n)`: a firing missed by at most that much still
 * happens at once (never twice: the last firing is kept). A field value that
 * is there but no date is logged as a warning. A zone not in the tz database
 * means the configured zone, logged once per store and zone.
 *
 * Each (journey, customer) has one row holding its next fire time, so the
 * due ones are a range scan; a changed field or zone recomputes the row. */
#ifndef TEND_DATES_H
#define TEND_DATES_H

#include "engine.h"

/* Recomputes the rows of one customer (its fields or zone changed). */
int dates_customer_changed(engine *e, const char *customer);

/* 1 when some journey of the loaded catalog is planned by a date field or
 * a local time (dates_customer_changed has work), else 0. A caller that
 * changes many customers under one catalog asks once. */
int dates_any_planned(engine *e);

/* After a load: fills the rows of every dated journey whose trigger is new
 * or changed (for all customers), drops those of journeys gone; the same for
 * local-time triggers (below). */
int dates_sync(engine *e);

/* Starts the journeys of triggers due at or before now (at most max), and
 * schedules each one's next year. Returns how many fired, -1 on error. */
int dates_run_due(engine *e, tend_time now, int max);
tend_time dates_next_due(engine *e);

/* Local-time triggers (calendar.h builds them):
 *
 *   journey "statement" { on = local_cron("0 9 1 1,7 *", {audience = filter}), ... }
 *   journey "mid_autumn" { on = holiday("mid_autumn", {at = "10:00", offset_days = -1,
 *                                                      audience = filter}), ... }
 *
 * fire for every customer of the audience at that local time in the
 * customer's own zone. One row per (journey, zone) holds the zone's next
 * slot; when it is due, the zone's customers are started in pages (id order,
 * the resume point committed with each page, so a crash or restart starts
 * nobody twice for a slot), then the row moves to the first slot after now
 * (after downtime: one catch-up firing, not one per missed slot). Customers
 * with no zone or an unknown one live by the configured zone (an unknown one
 * is logged once). A zone is planned at load and when a customer of a zone
 * not yet planned appears. The trigger event: {type = "local_cron" |
 * "holiday", at, slot = "YYYY-MM-DDTHH:MM" (local), zone, name, date}. The
 * audience is the trigger's, else the journey's `audience` (a filter, or a
 * function of the slot event), else every customer.
 *
 * dates_local_sync runs inside dates_sync's transaction; dates_local_run_due
 * works one page of the earliest due row: returns customers paged + 1, 0
 * when nothing is due, -1 on error. */
int dates_local_sync(engine *e);
int dates_local_run_due(engine *e, tend_time now, int page);
/* engine_run_due's stage: outside a transaction, every page of the
 * earliest due row, each committed on the store's thread while the next
 * page's first runs are done (the same rows and resume points, a page at a
 * time, as dates_local_run_due's); inside one (a slice), one page as
 * dates_local_run_due. Returns as dates_local_run_due, summed. */
int dates_local_run_slot(engine *e, tend_time now, int page);

/* 1 if `field` can carry a date trigger. */
int dates_field_valid(const char *field);

/* The zone a customer lives by, from its stored `timezone` ("" for none):
 * itself, or the configured zone for none or one not in the tz database
 * (one that left it); the latter is logged once per store and zone (a
 * write to the store's meta, so call it where writing is fine). The
 * result is `zone` or the configured zone's string. */
const char *dates_zone(engine *e, const char *zone);

/* For `tend check`: of the first max_rows customers of `schema` ("main", or
 * a store ATTACHed under that name), how many hold a value in `field` that
 * is no date (so would never fire). The first one's id and value are
 * copied (truncated) into id and value. Returns -1 when the field is no date
 * field or the query fails (no customers table there). */
long dates_count_malformed(engine *e, const char *schema, const char *field, long max_rows, char *id, size_t idlen,
                           char *value, size_t valuelen);

/* The next fire time after `after` of a date (y, m, d) for a trigger at
 * local time minute_of_day on the date shifted by offset_days calendar days,
 * plus offset seconds, in zone tz; *years gets the age. 0 or -1. */
int dates_next_fire(int y, int m, int d, const char *tz, int minute_of_day, int offset_days,
                    tend_time offset, tend_time after, tend_time *out, int *years);

#endif
