/* skeleton — `tend new journey NAME`: a commented journey and its test that
 * pass `tend test` and `tend check` as written, for a marketer to edit.
 *
 * Writes DIR/NAME.lua and DIR/NAME_test.lua; never overwrites a file. */
#ifndef TEND_SKELETON_H
#define TEND_SKELETON_H

#include <stddef.h>

/* A journey name tend new accepts: a letter, then letters, digits, '_'
 * (it is also the file name and the template name). */
int skeleton_valid_name(const char *name);

/* Writes the two files. 0; -1 with err (a file that exists, or cannot be
 * written: nothing is left half-written). The paths written go to
 * written[0], written[1] (malloc'd, the caller frees) when written != NULL. */
int skeleton_journey(const char *dir, const char *name, char **written, char *err, size_t errlen);

#endif
