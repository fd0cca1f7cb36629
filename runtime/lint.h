/* lint — what `tend check` finds in templates and sends, beyond loading.
 *
 *  - a malformed placeholder ("{{name" or "{{a..b}}") is an error;
 *  - a send whose arguments are written out — send("sms", c, "gift",
 *    {coupon = x}) — is checked against its template: an unknown template,
 *    a template with no text for that channel, or a placeholder that neither
 *    the customer's fields nor the literal vars provide (and that has no
 *    default) is an error at the send's file:line. A send whose template or
 *    vars are computed is not knowable and is left to run time;
 *  - SMS texts (a channel named *sms*, or priced per segment): a link must
 *    have a space or the text's edge on both sides; blocked words of the
 *    channel (`blocked_words = {...}`) are errors; more segments than the
 *    channel's `max_segments` (default 1) is a warning with count and cost;
 *  - every channel's blocked words apply to its texts;
 *  - every segment compiles (a misspelt field is an error at its declaration),
 *    and so does every journey's audience table (its own, and a local_cron or
 *    holiday trigger's), the error at the journey's declaration;
 *  - when the store exists (store_path, else DIR's configured `db`), it is
 *    read, never written (opened read-only): an anniversary whose field holds
 *    a value that is no date for some of the store's first 100,000 customers
 *    is a warning at the journey's file:line, with a count and an example. */
#ifndef TEND_LINT_H
#define TEND_LINT_H

#include "engine.h"

typedef void (*lint_report_fn)(void *ud, int error, const char *where, const char *message);

/* Lints the loaded catalog; returns the number of errors. store_path may be
 * NULL (DIR's configured store). */
int lint_run(engine *e, const char *store_path, lint_report_fn report, void *ud, int *warnings);

#endif
