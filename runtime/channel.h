/* channel — where messages go, and what they cost.
 *
 * Channels are declared in tend.lua (`channels = { sms = {...} }`) or in
 * scripts (`channel "sms" {...}`); a channel nobody declared is a `file`
 * channel, so a fresh set-up runs with no provider at all. Kinds:
 *   http     JSON to a provider's API (libcurl; see dispatch.c)
 *   smtp     email through libcurl SMTP
 *   file     JSON lines appended to a file (default: outbox.ndjson)
 *   task     a follow-up task for staff (assign = name | list | function)
 *   capture  kept in the store only (tests)
 * Costs: `price` per message, or per SMS segment with per = "segment"
 * (segments counted as template.h's sms_measure: 160/153 GSM-7, 70/67 UCS-2). */
#ifndef TEND_CHANNEL_H
#define TEND_CHANNEL_H

#include <lua.h>

#include "engine.h"

enum channel_kind { CHANNEL_FILE, CHANNEL_HTTP, CHANNEL_SMTP, CHANNEL_TASK, CHANNEL_CAPTURE };

struct channel_info {
    enum channel_kind kind;
    double price;
    int per_segment;
};

/* Pushes the declaration table of `name` (nil for an undeclared channel)
 * and fills *info (defaults for an undeclared one). */
void channel_push(engine *e, const char *name, struct channel_info *info);

/* Segments and cost of `text` on channel `name`. */
void channel_cost(engine *e, const char *name, const char *text, int *segments, double *cost);

const char *channel_kind_name(enum channel_kind k);

/* Checks a channel definition (the table at idx): a known type, known keys
 * with values of the right kind. 0, or -1 with err naming the key. */
int channel_check(lua_State *L, int idx, const char *name, char *err, size_t errlen);

#endif
