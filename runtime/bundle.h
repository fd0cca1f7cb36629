/* bundle — the Lua modules shipped inside the binary.
 *
 * Every stdlib/ .lua file is turned into a C array at build time (stdlib/embed.sh), so
 * `require "tend.test"` works from any directory with no files installed.
 * The table is static and read-only; nothing here allocates. */
#ifndef TEND_BUNDLE_H
#define TEND_BUNDLE_H

#include <stddef.h>

struct bundle_module {
    const char *name;   /* "tend.test" */
    const char *path;   /* "stdlib/tend/test.lua", used as the chunk name */
    const char *source;
    size_t len;
};

/* Ends with an entry whose name is NULL. */
extern const struct bundle_module bundle_modules[];

/* The module called `name`, or NULL. */
const struct bundle_module *bundle_find(const char *name);

#endif
