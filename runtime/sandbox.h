/* sandbox — a Lua 5.4 state that runs untrusted scripts safely.
 *
 * The sandbox is a whitelist: each script gets a fresh _ENV holding copies of
 * the safe parts of the standard library plus the globals tend registers
 * (sandbox_set_global); nothing else is reachable. Reading an unknown global
 * raises an error naming it. Chunks are text only (no bytecode: it can break
 * the VM's invariants), `string.dump` does not exist, `require` reaches only
 * the modules embedded from stdlib/ and the script's own directory.
 *
 * Limits hold for every entry into Lua from C (sandbox_pcall, sandbox_resume):
 *  - an instruction budget, counted by a hook every 1000 instructions across
 *    all coroutines. Once it trips, every later hook tick and every protected
 *    call the script makes (pcall, xpcall, coroutine.resume/wrap) re-raises
 *    the same error, so a script cannot catch it and carry on;
 *  - a byte cap on everything the state allocates (the lua_Alloc refuses to
 *    grow past it); a memory error is made just as sticky. Allocation also
 *    costs budget (one instruction per 256 bytes), so C functions that copy
 *    big strings in one call are paid for;
 *  - a wall-time limit, read by the hook: the backstop for VM instructions
 *    whose cost grows with their operands (comparing two long strings);
 *  - C functions whose work does not show in the instruction count are
 *    re-done or charged (bounded.c): patterns run on a counting matcher,
 *    string.rep and the table functions are charged or refused before they
 *    start, load() refuses chunks over a size.
 * All reset at the next outermost entry. A nested entry (C calling back
 * into Lua while a script runs) shares the outer budget.
 *
 * Errors come back as one string: "file:line: message" and a traceback, cut
 * to SANDBOX_MESSAGE_MAX bytes. An error object that is not a string is
 * described by its type only: no __tostring or __name of a failed script
 * ever runs.
 *
 * Ownership: sandbox_new() owns the lua_State; sandbox_free() closes it.
 * Every lua_State (main or coroutine) maps back to its sandbox through
 * sandbox_of(). */
#ifndef TEND_SANDBOX_H
#define TEND_SANDBOX_H

#include <stddef.h>

#include <lua.h>

#include "clock.h"

typedef struct sandbox sandbox;

struct sandbox_options {
    size_t memory_limit;        /* bytes; 0 → SANDBOX_DEFAULT_MEMORY */
    long   instruction_limit;   /* per outermost entry; 0 → SANDBOX_DEFAULT_INSTRUCTIONS */
    long   time_limit_ms;       /* wall time per outermost entry; 0 → SANDBOX_DEFAULT_TIME_MS */
    size_t load_limit;          /* bytes load() compiles; 0 → SANDBOX_DEFAULT_LOAD */
    const tclock *clock;        /* os.time()/os.date(); NULL → real time */
    /* Where log()/print() go; NULL → stderr with a "log: " prefix. */
    void (*log)(void *ud, const char *where, const char *msg);
    void *log_ud;
};

#define SANDBOX_DEFAULT_MEMORY       ((size_t)256 << 20)
#define SANDBOX_DEFAULT_INSTRUCTIONS 100000000L
#define SANDBOX_DEFAULT_TIME_MS      5000L
#define SANDBOX_DEFAULT_LOAD         ((size_t)1 << 20)
#define SANDBOX_MESSAGE_MAX          4096   /* error messages and log lines */

enum sandbox_trip { SANDBOX_OK = 0, SANDBOX_BUDGET, SANDBOX_MEMORY, SANDBOX_TIME };

sandbox   *sandbox_new(const struct sandbox_options *opts);
void       sandbox_free(sandbox *sb);
lua_State *sandbox_state(sandbox *sb);
sandbox   *sandbox_of(lua_State *L);

/* Registers `name` as a global every new environment receives: pops the value
 * on top of L (the main state). With `internal`, only environments of the
 * embedded stdlib modules see it (the host's private hooks for tend.test). */
void sandbox_set_global(sandbox *sb, const char *name, int internal);

/* Pushes a fresh environment table. `dir` is the directory `require` searches
 * for this environment's modules (NULL: stdlib only). */
void sandbox_new_env(sandbox *sb, const char *dir);

/* Pushes a table of every global a fresh environment sees (name -> value):
 * they sit behind the env, so iterating an env itself finds none of them. */
void sandbox_push_globals(sandbox *sb);

/* Loads text `src` as chunk `name` (shown in errors; "scripts/a.lua") with
 * the environment at index `env` as its _ENV. Pushes the function, or an
 * error message; returns LUA_OK or an error status. */
int sandbox_load(sandbox *sb, const char *src, size_t len, const char *name, int env);

/* Reads and loads a file; a missing file is an error naming it. */
int sandbox_load_file(sandbox *sb, const char *path, int env);

/* lua_pcall with the limits armed and a traceback on error; the function and
 * its nargs arguments are on top of L. On error, pushes one message string. */
int sandbox_pcall(sandbox *sb, lua_State *L, int nargs, int nresults);

/* lua_resume of `co` with the limits armed. On error, pushes one message
 * string (with co's traceback) on co; the message is built on `from` (not
 * NULL), since co's stack may be full. */
int sandbox_resume(sandbox *sb, lua_State *co, lua_State *from, int nargs, int *nres);

/* Why the last entry failed: SANDBOX_BUDGET, SANDBOX_MEMORY, SANDBOX_TIME
 * or SANDBOX_OK. */
enum sandbox_trip sandbox_tripped(sandbox *sb);

/* Outermost entries that tripped a limit since sandbox_new: a caller
 * batching work commits after one, so a restart never redoes it. */
unsigned sandbox_trips(sandbox *sb);

/* For C functions called by scripts. sandbox_charge: `instructions` worth of
 * work is about to be done; raises the budget error (before the work) when
 * the budget cannot pay for it. sandbox_reserve: `bytes` are about to be
 * allocated; raises the memory error when they would pass the cap (garbage
 * collected first); the allocation itself is charged when it happens.
 * sandbox_check_live: raises the trip's
 * error once the entry has tripped (primitives call it first, so nothing a
 * tripped script does acts). All do nothing outside an entry. */
void sandbox_charge(lua_State *L, double instructions);
void sandbox_reserve(lua_State *L, double bytes);
void sandbox_check_live(lua_State *L);

/* Cuts the string at idx to SANDBOX_MESSAGE_MAX bytes, marked "... [cut: N
 * bytes more]". */
void sandbox_cut(lua_State *L, int idx);

/* Bytes in use by the state, and its cap. */
size_t sandbox_memory(sandbox *sb);
size_t sandbox_memory_limit(sandbox *sb);

/* The clock os.time()/ago() read; tests point it at the current sim's. */
const tclock *sandbox_clock(sandbox *sb);
void          sandbox_set_clock(sandbox *sb, const tclock *clock);

/* Calls fn(ud, chunk name, line) for every line the state runs (NULL: off).
 * Host-side only (tend test --coverage): scripts cannot see or change it.
 * Coroutines created afterwards inherit it. */
void sandbox_set_line_hook(sandbox *sb, void (*fn)(void *ud, const char *source, int line), void *ud);

/* Change the limits for later entries (tend.lua's `limits`). */
void sandbox_set_instruction_limit(sandbox *sb, long n);
void sandbox_set_memory_limit(sandbox *sb, size_t bytes);
void sandbox_set_time_limit(sandbox *sb, long ms);
void sandbox_set_load_limit(sandbox *sb, size_t bytes);

/* Sends a line to the configured log, cut to SANDBOX_MESSAGE_MAX bytes. */
void sandbox_log(sandbox *sb, const char *where, const char *msg);

/* "file:line" of the Lua code at stack `level` of L (1 = the function that
 * called the current C function), or "?" . Writes into buf. */
const char *sandbox_where(lua_State *L, int level, char *buf, size_t n);

/* Safe description of the value at idx, running no script code: strings
 * and numbers as text, nil and booleans by name, anything else as
 * "(error object: table)". Pushes a string and returns it. */
const char *sandbox_tostring(lua_State *L, int idx);

#endif
