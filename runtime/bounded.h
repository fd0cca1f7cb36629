/* bounded — the string and table functions a single call of which could
 * hold the process, redone or wrapped so their work is paid from the
 * sandbox's budget (sandbox_charge) or refused before it starts.
 *
 * Lua's own string matcher backtracks without counting: one call of
 * ("a"):rep(300):find(".-.-.-b") runs for seconds, a gsub with nested
 * quantifiers for hours, and the hook never fires inside it. So find, match,
 * gmatch and gsub here are a matcher of our own, written from the patterns
 * section of the Lua 5.4 manual (same syntax, same results, same error
 * texts), that counts every step and charges them as it goes: a runaway
 * pattern trips the budget within a few thousand steps of it running out.
 * A plain find (or a pattern without specials) is memmem, linear.
 *
 *   string.rep     empty results at once; the result's size is reserved
 *                  against the memory cap before a byte is allocated; built
 *                  by doubling copies, not one copy per repetition
 *   table.move, table.concat, table.unpack, table.insert, table.remove,
 *   table.sort     the element count (n log n for sort) is charged before
 *                  the original function runs; more than the budget left is
 *                  refused at once
 *   string.byte, utf8.len, utf8.codepoint, utf8.offset   charged by length
 *
 * bounded_install() replaces the functions in the global string, table and
 * utf8 tables of a freshly opened state (sandbox_new calls it before it
 * copies them into the scripts' base). */
#ifndef TEND_BOUNDED_H
#define TEND_BOUNDED_H

#include <lua.h>

void bounded_install(lua_State *L);

#endif
