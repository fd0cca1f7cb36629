/* sms — how a text travels as SMS, and the lint of message texts.
 *
 * Pure functions over UTF-8 text: no allocation on the caller's behalf, no
 * state between calls. */
#ifndef TEND_SMS_H
#define TEND_SMS_H

#include <stddef.h>

/* --- SMS ---------------------------------------------------------------- */

/* How a text travels as SMS. GSM-7 if every character is in the GSM 03.38
 * basic set or its extension table (extension characters ^{}\[~]|€ count
 * twice); otherwise UCS-2, counted in UTF-16 code units (an emoji counts 2).
 * One segment holds 160 GSM-7 / 70 UCS-2 units; a longer message is sent as
 * concatenated parts of 153 / 67 units each (the header takes the rest),
 * which is what carriers bill. Invalid UTF-8 counts as UCS-2, one unit a byte. */
struct sms_info {
    int unicode;    /* 1 = UCS-2 (e.g. any CJK character), 0 = GSM-7 */
    int units;      /* septets (GSM-7) or UTF-16 code units (UCS-2) */
    int segments;   /* 0 for the empty text */
};
void sms_measure(const char *text, struct sms_info *out);

/* --- lint --------------------------------------------------------------- */

enum lint_level { LINT_WARNING, LINT_ERROR };

/* One finding; `offset` is the 0-based byte offset in the text it concerns. */
typedef void (*lint_fn)(enum lint_level level, size_t offset, const char *message, void *ud);

/* Lints an SMS text:
 *  - every link (http://, https://, www.) must have whitespace on both sides,
 *    or the start/end of the text: some handsets otherwise glue the
 *    neighbouring characters (typically CJK text or punctuation) into the URL
 *    → LINT_ERROR "link 'https://x.cn/a' needs a space before it" / "after it".
 *    A link ends at whitespace (U+3000 counts) or at the first non-ASCII
 *    byte; ASCII punctuation glued to its end (".", ")", "!") is not part of
 *    it but needs a space after it as well. "Before" findings point at the
 *    link, "after" ones at the byte just past it;
 *  - each word of `blocked` (NULL-terminated list, may be NULL) found in the
 *    text, case-insensitively → LINT_ERROR "blocked word 'free money'";
 *  - more than `max_segments` segments (0 = no limit) → LINT_WARNING at 0:
 *    "3 segments (UCS-2, 143 units), over the limit of 2; costs 3 × the
 *    segment price" — with `price` > 0 the message goes on
 *    ", 0.15 a message at 0.05 a segment" (money to 2 decimals, trimmed).
 * The text is linted as given: `tend check` passes a rendered sample (see
 * lint.c), and the engine re-measures the rendered text at send time. Returns the number of
 * LINT_ERROR findings. */
int template_lint_sms(const char *text, const char *const *blocked, int max_segments,
                      double price, lint_fn fn, void *ud);

/* Blocked-word check alone (for non-SMS channels): a substring match, ASCII
 * case folded, each word reported once at its first occurrence; empty words
 * are skipped. Returns the number found. */
int template_lint_words(const char *text, const char *const *blocked, lint_fn fn, void *ud);

#endif
