/* bytecode — what the Lua compiler knows about a script, without running it.
 *
 * A script's text is compiled (never run) in a private, library-free Lua
 * state; the compiled chunk is dumped with lua_dump and every function
 * prototype in it is walked. That gives two facts exactly, as the compiler
 * resolved them:
 *  - the globals each function reads or writes, at their lines: a global is
 *    an index of the `_ENV` upvalue (GETTABUP / SETTABUP, or, past a
 *    function's 256th constant, GETUPVAL of `_ENV` and LOADK of the name
 *    indexed by GETTABLE / SETTABLE), so locals, parameters, loop variables
 *    and table fields are never mistaken for one;
 *  - the lines that hold code (what a coverage report counts).
 * Used by `tend check` (unknown globals) and `tend test --coverage`.
 *
 * The dump format and opcode numbers are those of Lua 5.4; bytecode_walk()
 * checks the header and a known chunk first and fails cleanly on any other
 * build, so a mismatch can never report wrong names. */
#ifndef TEND_BYTECODE_H
#define TEND_BYTECODE_H

#include <stddef.h>

struct bytecode_visitor {
    /* A global read (is_write 0) or assigned (1) at `line`. May be NULL. */
    void (*global)(void *ud, const char *name, int line, int is_write);
    /* A line holding at least one instruction (called once per instruction). May be NULL. */
    void (*line)(void *ud, int line);
    void *ud;
};

/* Compiles `src` as chunk `name` and visits every function in it. Returns 0;
 * -1 with a message in err: the syntax error ("name:line: ..."), or a Lua
 * build whose bytecode is not the 5.4 format. */
int bytecode_walk(const char *src, size_t len, const char *name, const struct bytecode_visitor *v, char *err,
                  size_t errlen);

#endif
