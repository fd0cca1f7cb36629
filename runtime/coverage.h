/* coverage — which lines of the journey scripts the tests ran (`tend test
 * --coverage FILE`), written as lcov tracefile records.
 *
 * The host counts lines with the sandbox's line hook (sandbox_set_line_hook
 * with coverage_hit as the callback): scripts never see it. Only files
 * registered with coverage_add_file are counted (the scripts a sim loads),
 * so the test files and the stdlib stay out of the report. The lines a file
 * could run come from its compiled bytecode (bytecode.h), so a line that was
 * never reached shows as DA:line,0 and comments never show. */
#ifndef TEND_COVERAGE_H
#define TEND_COVERAGE_H

#include <stdio.h>

typedef struct coverage coverage;

coverage *coverage_new(void);
void      coverage_free(coverage *c);

/* Counts the lines of `path` from now on (path as the sandbox loads it). */
void coverage_add_file(coverage *c, const char *path);

/* The line hook: `source` is the chunk name ("@scripts/a.lua"). */
void coverage_hit(void *c, const char *source, int line);

/* Writes one lcov record (SF, DA..., LH, LF, end_of_record) per file, in
 * path order; a file reached under two names counts once, a file that
 * cannot be read (a path that never loaded) is left out. 0, or -1 with
 * err when out cannot be written. */
int coverage_write(coverage *c, FILE *out, char *err, size_t errlen);

#endif
