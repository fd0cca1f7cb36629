/* catalog — what the loaded scripts declared.
 *
 *   journey "name" { on, when, once, reenter_after, goal, audience, priority,
 *                    on_cap, migrate, run }
 *   template "name" { category, on_cap, priority, <channel> = text | {subject, body} }
 *   segment "name" { where = filter | function() return filter end }
 *   schedule "name" { cron = "0 10 * * *" | every = seconds, tz, run }
 *   channel "name" { type = "http" | "smtp" | "file" | "task" | "capture", ... }
 *
 * Declarations hold Lua functions, so the catalog lives in the Lua registry;
 * C reads it through the push functions below (each pushes one value, or nil,
 * and returns whether it found one). Journeys are kept per version (the
 * content hash of the file that declared them): an instance replays against
 * the version it started on. The other kinds are kept only as last loaded.
 *
 * A declaration is checked when it runs: an unknown key, a wrong type, a
 * duplicate name is an error at the declaring line (`file:line`). */
#ifndef TEND_CATALOG_H
#define TEND_CATALOG_H

#include "engine.h"

/* Registers the declaration globals in e's sandbox. */
void catalog_register(engine *e);

/* Runs a script's chunk (on top of the sandbox stack) as version `version`
 * of `path`, recording its declarations. Returns LUA_OK or pushes an error. */
int catalog_run_script(engine *e, const char *path, const char *version, int old);

/* After a load: the names declared by the newest versions become current.
 * catalog_abort() forgets what a failed load declared. */
void catalog_commit(engine *e);
void catalog_abort(engine *e);

/* Gives the file that declared `decl` its own env back as _ENV. The file's
 * functions share that one upvalue, so a run that assigned _ENV would
 * otherwise change the globals of every later run of the file; the host
 * calls this before each run, when() and audience(). */
void catalog_restore_env(lua_State *L, int decl);

/* Push the declaration (or nil: exactly one value either way); 1 if found. */
int catalog_push_journey(engine *e, const char *name, const char *version);
int catalog_push_current(engine *e, const char *name);
/* The current version of a journey (a pointer into the catalog, valid until
 * the next load), or NULL. */
const char *catalog_current_version(engine *e, const char *name);
/* Pushes the list (array) of current journey names triggered by event type. */
int catalog_push_triggered(engine *e, const char *type);
/* Pushes the list of current journey names with a date trigger. */
int catalog_push_dated(engine *e);
/* Pushes the list of current journey names with a local_cron or holiday trigger. */
int catalog_push_local(engine *e);
int catalog_push_template(engine *e, const char *name);
/* With a template declaration at `decl`: its compiled text for `channel`,
 * part "text" (the body), "subject" or "html"; NULL if it has none. The
 * program lives as long as the declaration (borrowed: do not free). */
struct template_prog;
const struct template_prog *catalog_template_part(lua_State *L, int decl, const char *channel,
                                                  const char *part);
int catalog_push_segment(engine *e, const char *name);
/* Pushes name -> declaration for every current schedule / channel / journey. */
int catalog_push_all(engine *e, const char *kind);

/* The catalog's file:line of a declaration table at idx ("?" if none). */
const char *catalog_where(engine *e, int idx, char *buf, size_t n);

#endif
