/* testrun — `tend test`: runs *_test.lua files and prints TAP.
 *
 * Each file runs in a sandbox of its own (nothing leaks from one file into
 * the next) whose clock is virtual: it follows the sim a test is driving, so
 * `ago(days(3))` in a test means three days before that sim's now. */
#ifndef TEND_TESTRUN_H
#define TEND_TESTRUN_H

#include <stdio.h>

struct testrun_options {
    int verbose;        /* print full tracebacks */
    FILE *out;          /* TAP goes here (stdout) */
};

/* Runs every *_test.lua under the given files/directories (sorted, hidden
 * entries skipped). Prints TAP and "N passed, N failed". Returns the exit
 * status: 0 all passed, 1 any failure, 2 a path that does not exist. */
int testrun_paths(const char *const *paths, int npaths, const struct testrun_options *opts);

#endif
