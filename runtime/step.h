/* step — the durable primitives a journey's run calls.
 *
 *   wait(s) wait_until(t) wait_for(type, {timeout, where})
 *   send(channel, c, template, vars)   coupon_issue(c, spec)   task(c, spec)
 *   emit(event)  start(journey, c, payload)  http_get(url)
 *   split{A = 50, B = 50}  holdout(percent)  now()  random([m [, n]])  exit(reason)
 *
 * Each call is one history entry (a line, history.h): its kind, the hash of
 * its arguments, a short description, when, and its result. Replaying, a call takes the
 * next entry, checks kind and hash, and returns r without acting again; a
 * mismatch fails the instance with a message naming the step and both calls.
 * random() is not recorded: it is a generator seeded from the instance id
 * and reset at every wake, so the same code draws the same numbers.
 *
 * The customer handle's reads and c:tag/c:untag/c:set (customer_lua.c) are
 * steps too; they use step_take/step_record below. */
#ifndef TEND_STEP_H
#define TEND_STEP_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "history.h"
#include "instance.h"

/* Registers the primitives as globals of e's sandbox. */
void step_register(engine *e);

/* Registers more primitives (task.c, receipt.c): each a C closure over e,
 * a global every script sees. step_engine() is how such a primitive gets e
 * back; it raises first when the entry has tripped, so nothing acts. */
void step_register_fns(engine *e, const luaL_Reg *fns);
engine *step_engine(lua_State *L);

/* The instance running now, or NULL (outside any run). */
struct run_ctx *step_ctx(engine *e);
/* Like step_ctx, but raises "<what> can only be used inside a journey's run". */
struct run_ctx *step_require(lua_State *L, engine *e, const char *what);

enum step_mode { STEP_LIVE, STEP_REPLAY, STEP_PENDING };

/* Takes the next history entry for a call of `kind` whose arguments hash to
 * `hash` (`desc` names them in messages). STEP_REPLAY: the recorded result
 * is pushed. STEP_PENDING: the entry is an unfinished wait (*entry, when
 * given, is it; it points into ctx->hist), nothing pushed. STEP_LIVE:
 * nothing pushed; the caller acts, then calls step_record. Raises on a
 * divergence. */
int step_take(lua_State *L, struct run_ctx *ctx, const char *kind, const char *desc, uint32_t hash,
              struct history_entry *entry);

/* Appends an entry with the Lua value at `idx` as result (0: no result). */
void step_record(lua_State *L, struct run_ctx *ctx, const char *kind, const char *desc,
                 uint32_t hash, int idx);

/* A 31-bit hash of text (FNV-1a folded), the argument check of an entry. */
uint32_t step_hash(const char *text);
/* step_hash of a "\x1f" b, without building it. */
uint32_t step_hash_pair(const char *a, const char *b);

/* A wait for an event, recorded as one step: wait_for and the waits built
 * on it (wait_task, wait_receipt). The instance listens for `listen` (an
 * event type, or "prefix.*" for every type under it); an event of that type
 * for which match(ev, ud) is true (no match: any) ends the wait and the
 * step's result is result(ev) (a new cJSON the step takes; NULL: a copy of
 * the event). After `timeout` seconds (0: never) the result is nil. */
struct step_wait {
    const char *kind, *desc;    /* the history entry's kind and description */
    const char *hashed;         /* the argument text whose hash replay checks */
    const char *listen;
    long long timeout;
    int (*match)(const cJSON *ev, void *ud);
    void *ud;
    cJSON *(*result)(const cJSON *ev);
};
/* Returns what the primitive returns (the result or nil pushed), or yields. */
int step_wait_event(lua_State *L, struct run_ctx *ctx, const struct step_wait *w);

/* Clears the per-wait read cache (called at every wait). */
void step_new_segment(struct run_ctx *ctx);

#endif
