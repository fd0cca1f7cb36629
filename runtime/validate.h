/* validate — the rules every entry applies to what comes in from outside.
 *
 * One module so that the HTTP API, `tend ingest`, `tend import` (CSV and
 * NDJSON), emit() and c:set{} refuse exactly the same things with the same
 * words:
 *   - times: 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, given as epoch
 *     seconds (a finite number; a fraction is dropped) or ISO-8601 with an
 *     offset (clock_parse_time's forms);
 *   - text: valid UTF-8 and no NUL byte; ids and single-line fields (name,
 *     email, phone, city, region) also no control character (CR, LF, TAB...),
 *     since they end up in headers, log lines and SMS;
 *   - email: an RFC 5322 addr-spec subset (see validate_email);
 *   - JSON text: nesting at most a limit, no "\u0000", valid UTF-8 in
 *     strings and keys, every number finite — each reported with the field
 *     path ("attrs.note", "items[2].price") and the byte.
 *
 * A leaf: it knows cJSON and the clock's text forms, nothing of the engine.
 * Every check returns 0, or -1 with a message in err (which may be NULL).
 * Nothing allocates on the caller's behalf. */
#ifndef TEND_VALIDATE_H
#define TEND_VALIDATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "clock.h"

#define VALIDATE_TIME_MIN ((tend_time)0)             /* 1970-01-01T00:00:00Z */
#define VALIDATE_TIME_MAX ((tend_time)253402300799)  /* 9999-12-31T23:59:59Z */
#define VALIDATE_EMAIL_MAX 254

/* A time as epoch seconds: finite and inside the range. */
int validate_time_number(double d, tend_time *out, char *err, size_t errlen);
/* A time as text: "1767225600" or ISO-8601 with an offset, inside the range. */
int validate_time_text(const char *s, tend_time *out, char *err, size_t errlen);
/* A time as JSON: a number or a string as above (anything else is refused). */
int validate_time_json(const cJSON *j, tend_time *out, char *err, size_t errlen);

/* The offset of the first byte of s[0, n) that is not part of a valid UTF-8
 * sequence (overlong forms, surrogates and > U+10FFFF are invalid), or n. */
size_t validate_utf8(const char *s, size_t n);

/* Flags for validate_text. */
enum {
    VALIDATE_SINGLE_LINE = 1,   /* no control character at all (CR, LF, TAB, ESC...) */
};

/* s[0, n) as a text value: no NUL byte, valid UTF-8, and with
 * VALIDATE_SINGLE_LINE no control character. The message says what is wrong
 * and at which byte ("contains a line break (byte 4)"), without the field
 * name: the caller adds it. */
int validate_text(const char *s, size_t n, int flags, char *err, size_t errlen);

/* An email address: local@domain, at most 254 bytes, exactly one '@'.
 * The local part: 1..64 of letters, digits, !#$%&'*+/=?^_`{|}~- and UTF-8,
 * with dots between (none first, last or doubled). The domain: labels of
 * letters, digits, '-' (not first or last) and UTF-8, joined by dots, at
 * least two labels ("shop.example"; a dot-free "localhost" is refused, as it
 * is almost always a typo in customer data). No quoted local parts, no
 * address literals, no spaces, no control characters. */
int validate_email(const char *s, char *err, size_t errlen);

/* Scans JSON text before it is parsed: nesting deeper than max_depth,
 * "\u0000" in a string, invalid UTF-8 in a string or key, and a number that
 * is not finite (1e400) are refused with the field path and byte:
 * "nested too deep (limit 32) at byte 97", "field 'name': invalid UTF-8 at
 * byte 12", "field 'total': number 1e400 is out of range". Grammar is left
 * to the parser: text that is not JSON may pass this scan. */
int validate_json_text(const char *text, size_t len, int max_depth, char *err, size_t errlen);

/* Copies s into buf (size n) with every byte that is not valid UTF-8 or is a
 * control character replaced by '?', cut at n - 1 bytes: safe to echo in
 * error messages and logs. Returns buf. */
char *validate_printable(const char *s, size_t len, char *buf, size_t n);

#endif
