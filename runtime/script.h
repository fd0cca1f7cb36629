/* script — loading journey scripts, and keeping their versions.
 *
 * A script's version is the hash of its text. Loading stores the text under
 * that hash (the `scripts` table), runs the chunk in a fresh sandbox env so
 * its declarations reach the catalog, and commits the catalog only when
 * every file loaded cleanly: a broken deploy leaves the running set intact.
 * Instances pinned to an older version find it again with
 * script_load_version(), from the store, after any restart; a version is
 * dropped from the store once no waiting instance uses it, by the retention
 * sweep's pass over the instances (retention.h), so a load costs O(files),
 * whatever the number of instances.
 *
 * A journey may carry `migrate = function(step, history) ... end`: when an
 * instance of an older version wakes, migrate decides whether it moves to
 * the current one (return the history to replay, each entry {kind = ...,
 * result = ...}; or true to keep it as is) or finishes where it began (nil). */
#ifndef TEND_SCRIPT_H
#define TEND_SCRIPT_H

#include <stddef.h>

#include "engine.h"

struct run_ctx;

/* Each returns the number of script errors (listed in *errors, malloc'd,
 * one "file:line: message" per line), or -1 when a file cannot be read. */
int script_load_dir(engine *e, const char *dir, char **errors);
int script_load_files(engine *e, const char *const *paths, int n, char **errors);
int script_load_source(engine *e, const char *name, const char *src, size_t len, char **errors);
/* Files and a source text (src may be NULL) as one set: both or neither. */
int script_load_set(engine *e, const char *const *paths, int n, const char *name, const char *src, size_t len,
                    char **errors);

/* Loads an old version from the store (only its journeys). 0 or -1. */
int script_load_version(engine *e, const char *version);

/* Moves the waking instance to its journey's current version when that
 * version's migrate() says so; updates *version and ctx->history. The new
 * version is allocated into *owned (the caller's to free; the one there
 * before is freed): *version may point into a block the caller owns. A
 * failing migrate() is logged and the instance stays on its version. 0, or
 * -1 on a store error. */
int script_migrate(engine *e, char **version, char **owned, struct run_ctx *ctx);

/* The version of a text: 16 hex digits. buf needs 17 bytes. */
char *script_version(const char *src, size_t len, char *buf);

#endif
