/* version — what this build of tend is, and what it runs on.
 *
 * `tend --version` prints it and `/metrics` exports it as tend_build_info,
 * so an operator can tell from either which libraries a node really loaded
 * (the run-time versions, not the ones the headers promised). */
#ifndef TEND_VERSION_H
#define TEND_VERSION_H

#define TEND_VERSION "0.2.0"

struct versions {
    const char *tend, *lua, *sqlite, *curl, *libevent;
};

/* Fills v with static strings. */
void version_get(struct versions *v);

#endif
