/* logger — the process's log: one line per entry, on stderr.
 *
 * Text lines read `2026-12-01T09:00:00.123Z info listening on ...`; with
 * the json format each line is one object {"ts", "level", "msg", ...} with
 * extra fields where natural ("suppressed", "source"). A message of several
 * lines (an error with its traceback) is logged as its first line; the
 * whole text follows at level debug. Levels, lowest first: debug, info,
 * warn, error; "log" (a script's log()) counts as info. Entries below the
 * configured level are dropped.
 *
 * Repeats are rate-limited: the same level and text again within
 * LOGGER_INTERVAL seconds is counted, not written; the next time it comes
 * after the interval (or at logger_flush), one line says how many were
 * suppressed. So a storm of identical errors costs a line per interval.
 *
 * The state is the process's (one log per process); the functions are not
 * thread-safe (tend runs one thread). */
#ifndef TEND_LOGGER_H
#define TEND_LOGGER_H

#include <stdio.h>

#define LOGGER_INTERVAL 10

/* "text" or "json"; "debug", "info", "warn" or "error". NULL leaves a
 * value as it is. 0, or -1 with err naming the bad value. */
int logger_configure(const char *format, const char *level, char *err, size_t errlen);

/* Where lines go (default stderr; tests). */
void logger_set_stream(FILE *f);

/* 1 when an entry of this level would be written. */
int logger_enabled(const char *level);

void logger_write(const char *level, const char *msg);

/* Writes the "N more suppressed" lines of repeats whose interval is over
 * (all of them with force). Call it now and then, and at exit. */
void logger_flush(int force);

#endif
