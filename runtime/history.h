/* history — the stored form of an instance's recorded steps.
 *
 * A history is text, one entry per line, so a wake reads entries one at a
 * time as far as its replay goes, and a wake that adds steps appends lines
 * to the bytes it read instead of parsing and printing the whole history:
 *
 *   <kind> SP <hash hex | -> SP <t | -> SP <- | p[deadline]> SP <desc> [SP <result>] LF
 *
 * kind: the call (no space or newline); hash: the argument hash ("-" for an
 * entry a migration wrote: only its kind is checked); t: when it was
 * recorded (unix seconds, "-" unknown); "p" marks a wait still pending,
 * with its deadline when it has one ("p0" / "p": none); desc: a JSON string
 * describing the arguments; result: compact JSON (none: the call returned
 * nothing recorded, replayed as nil). JSON never holds a raw newline, so a
 * line is an entry.
 *
 * Stores written before this format hold a JSON array of {k, h, a, t, r, p,
 * d} objects; history_is_json() tells them apart, and history_from_json()
 * converts them (instance.c does it on the instance's next wake).
 *
 * A leaf: no engine, no store, no Lua. Every char * returned is the
 * caller's; struct history_entry points into the text it was read from. */
#ifndef TEND_HISTORY_H
#define TEND_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "util.h"

struct history_entry {
    const char *kind;
    size_t kind_len;
    int has_hash;
    uint32_t hash;
    int has_t;
    int64_t t;
    int pending;
    int64_t deadline;           /* pending wait's deadline, 0: none */
    const char *desc;           /* the JSON string, quotes included */
    size_t desc_len;
    const char *result;         /* compact JSON, NULL: no result */
    size_t result_len;
    size_t start, end;          /* the line's bytes [start, end), newline included */
};

/* Reads the entry at *off of text[0..len) and moves *off past it. Returns
 * 1 with *e filled, 0 at the end of the text, -1 for a malformed line. */
int history_next(const char *text, size_t len, size_t *off, struct history_entry *e);

/* Appends one entry. hash < 0: none; t < 0: unknown; pending: 1 with
 * `deadline` (0: none); desc: plain text (escaped here); result: compact
 * JSON of rlen bytes, or NULL. */
void history_append(strbuf *b, const char *kind, int64_t hash, int64_t t, int pending, int64_t deadline,
                    const char *desc, const char *result, size_t rlen);

/* The entry's description as plain text, malloc'd. */
char *history_desc(const struct history_entry *e);

/* 1 when text is the older JSON-array form ("[...]"), 0 otherwise. */
int history_is_json(const char *text);

/* The history as a JSON array of {k, h, a, t, r, p, d} objects (h: hex
 * text, t: decimal text, as the older form had them), whichever form the
 * text is in. A malformed history gives the entries before the fault. */
cJSON *history_to_json(const char *text, size_t len);

/* The text form of such a JSON array into b (appended); returns the count. */
int history_from_json(const cJSON *arr, strbuf *b);

#endif
