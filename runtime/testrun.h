/* testrun — `tend test`: runs *_test.lua files and prints TAP.
 *
 * Each file runs in a sandbox of its own (nothing leaks from one file into
 * the next) whose clock is virtual: it follows the sim a test is driving, so
 * `ago(days(3))` in a test means three days before that sim's now. */
#ifndef TEND_TESTRUN_H
#define TEND_TESTRUN_H

#include <stdio.h>

struct testrun_options {
    int verbose;            /* print full tracebacks */
    FILE *out;              /* TAP goes here (stdout) */
    const char *filter;     /* -k: a POSIX extended regex; only matching cases run (or NULL) */
    const char *junit;      /* --junit: JUnit XML written here (or NULL) */
    const char *coverage;   /* --coverage: lcov of the scripts the sims ran (or NULL) */
};

/* Runs every *_test.lua under the given files/directories (sorted, hidden
 * entries skipped). Prints TAP 13: a failure's diagnostics are a YAML block
 * (message, at, traceback, the failed instances and warn/error log lines of
 * the sims while the case ran); a file that fails outside any case is one
 * failed case named after it. The last line is "N passed, N failed" (and
 * ", N skipped" when t.skip skipped any). Returns the exit status: 0 all
 * passed, 1 any failure, 2 a path that does not exist, an invalid -k
 * pattern or an output file that cannot be written (the reason on stderr). */
int testrun_paths(const char *const *paths, int npaths, const struct testrun_options *opts);

#endif
