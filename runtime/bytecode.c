/* bytecode — walking a compiled Lua 5.4 chunk (see bytecode.h).
 *
 * The layout read here is the one ldump.c writes: a header, then each
 * function as source, line range, sizes, code, constants, upvalues, nested
 * functions and debug information (line deltas, absolute lines, locals,
 * upvalue names). Integers in the dump are variable-length, 7 bits a byte,
 * the last byte marked with 0x80. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bytecode.h"
#include "util.h"

/* Lua 5.4 opcodes (lopcodes.h). A global whose name is among a function's
 * first 256 constants is GETTABUP / SETTABUP; past that the compiler loads
 * `_ENV` and the name into registers (GETUPVAL, LOADK or LOADKX+EXTRAARG) and
 * indexes with GETTABLE / SETTABLE. */
#define OP_LOADK 3
#define OP_LOADKX 4
#define OP_GETUPVAL 9
#define OP_GETTABUP 11
#define OP_GETTABLE 12
#define OP_SETTABUP 15
#define OP_SETTABLE 16
#define OP_EXTRAARG 82
#define ABSLINEINFO (-0x80)

/* Constant type tags (lobject.h): only strings matter here. */
#define TAG_NIL 0x00
#define TAG_FALSE 0x01
#define TAG_TRUE 0x11
#define TAG_INT 0x03
#define TAG_FLOAT 0x13
#define TAG_SHORTSTR 0x04
#define TAG_LONGSTR 0x14

struct reader {
    const unsigned char *p, *end;
    int bad;
};

static int take(struct reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static unsigned byte_of(struct reader *r)
{
    if (!take(r, 1))
        return 0;
    return *r->p++;
}

static size_t varint(struct reader *r)
{
    size_t x = 0;
    unsigned b;
    int n = 0;
    do {
        b = byte_of(r);
        x = (x << 7) | (b & 0x7f);
        if (++n > 10)
            r->bad = 1;
    } while (!r->bad && (b & 0x80) == 0);
    return x;
}

static void skip(struct reader *r, size_t n)
{
    if (take(r, n))
        r->p += n;
}

/* A dumped string: points into the dump (not terminated), NULL when absent. */
static const char *string_of(struct reader *r, size_t *len)
{
    size_t size = varint(r);
    *len = 0;
    if (size == 0 || !take(r, size - 1))
        return NULL;
    const char *s = (const char *)r->p;
    r->p += size - 1;
    *len = size - 1;
    return s;
}

struct constant {
    const char *s;      /* a string constant, else NULL */
    size_t len;
};

struct walk {
    struct reader r;
    const struct bytecode_visitor *v;
    int wide;           /* the register form of globals is proven for this build */
    char name[256];
};

/* What a register holds, as far as a global's register form needs: `_ENV`
 * (from GETUPVAL) or a constant (from LOADK). A linear scan is enough: the
 * compiler emits GETUPVAL, LOADK and the GETTABLE of one global read
 * together, and for an assignment the right side only uses registers above
 * them. Every other instruction that writes register A forgets A and all
 * above it, so a register is trusted only while nothing has overwritten it. */
struct reg {
    unsigned char env;
    int k;              /* constant index, -1 when not a constant */
};

/* Opcodes that write no register (their A is an operand or not a register):
 * SETUPVAL, SETTABUP..SETFIELD, MMBIN*, CLOSE, TBC, JMP, the tests
 * EQ..TEST, RETURN/RETURN0/RETURN1, SETLIST, VARARGPREP, EXTRAARG. */
static int writes_no_register(unsigned op)
{
    return op == 10 || (op >= 15 && op <= 18) || (op >= 46 && op <= 48) || (op >= 54 && op <= 66) ||
           (op >= 70 && op <= 72) || op == 78 || op == 81 || op == OP_EXTRAARG;
}

static void forget_from(struct reg *regs, unsigned a, unsigned top)
{
    for (unsigned i = a; i < top; i++)
        regs[i] = (struct reg){0, -1};
}

static const char *constant_name(struct walk *w, const struct constant *k, int nk, unsigned idx)
{
    if ((int)idx >= nk || !k[idx].s || k[idx].len >= sizeof w->name)
        return NULL;
    memcpy(w->name, k[idx].s, k[idx].len);
    w->name[k[idx].len] = 0;
    return w->name;
}

static int function(struct walk *w, int depth)
{
    struct reader *r = &w->r;
    if (depth > 200)
        return -1;
    size_t len;
    string_of(r, &len);   /* source */
    int linedefined = (int)varint(r);
    varint(r);            /* lastlinedefined */
    byte_of(r);           /* numparams */
    int is_vararg = (int)byte_of(r);
    unsigned top = byte_of(r);   /* maxstacksize: the registers in use */
    size_t ncode = varint(r);
    if (!take(r, ncode * 4))
        return -1;
    const unsigned char *code = r->p;
    r->p += ncode * 4;

    size_t nk = varint(r);
    if (nk > (size_t)(r->end - r->p))
        return -1;
    struct constant *k = xcalloc(nk + 1, sizeof *k);
    for (size_t i = 0; i < nk && !r->bad; i++) {
        unsigned tag = byte_of(r);
        if (tag == TAG_FLOAT || tag == TAG_INT)
            skip(r, 8);
        else if (tag == TAG_SHORTSTR || tag == TAG_LONGSTR)
            k[i].s = string_of(r, &k[i].len);
        else if (tag != TAG_NIL && tag != TAG_FALSE && tag != TAG_TRUE)
            r->bad = 1;
    }
    size_t nup = varint(r);
    skip(r, nup * 3);
    size_t nprotos = varint(r);
    for (size_t i = 0; i < nprotos && !r->bad; i++)
        if (function(w, depth + 1) != 0)
            r->bad = 1;

    size_t nline = varint(r);
    const signed char *lineinfo = NULL;
    if (take(r, nline)) {
        lineinfo = (const signed char *)r->p;
        r->p += nline;
    }
    size_t nabs = varint(r);
    int *abs_pc = xcalloc(nabs + 1, sizeof *abs_pc), *abs_line = xcalloc(nabs + 1, sizeof *abs_line);
    for (size_t i = 0; i < nabs && !r->bad; i++) {
        abs_pc[i] = (int)varint(r);
        abs_line[i] = (int)varint(r);
    }
    size_t nloc = varint(r);
    for (size_t i = 0; i < nloc && !r->bad; i++) {
        string_of(r, &len);
        varint(r);
        varint(r);
    }
    size_t nupname = varint(r);
    int *is_env = xcalloc(nupname + 1, sizeof *is_env);
    for (size_t i = 0; i < nupname && !r->bad; i++) {
        const char *s = string_of(r, &len);
        is_env[i] = s && len == 4 && memcmp(s, "_ENV", 4) == 0;
    }

    if (!r->bad) {
        struct reg regs[256];
        forget_from(regs, 0, 256);
        int line = linedefined;
        size_t a = 0;
        for (size_t pc = 0; pc < ncode; pc++) {
            if (lineinfo && pc < nline) {
                if (lineinfo[pc] != ABSLINEINFO) {
                    line += lineinfo[pc];
                } else {
                    while (a < nabs && abs_pc[a] < (int)pc)
                        a++;
                    if (a < nabs && abs_pc[a] == (int)pc)
                        line = abs_line[a];
                }
            }
            uint32_t ins;
            memcpy(&ins, code + pc * 4, 4);
            unsigned op = ins & 0x7f, A = (ins >> 7) & 0xff, B = (ins >> 16) & 0xff, C = (ins >> 24) & 0xff;
            /* a vararg function's first instruction (VARARGPREP) is not a
             * line of its own: Lua's activelines skips it too */
            if (w->v->line && !(pc == 0 && is_vararg))
                w->v->line(w->v->ud, line);
            if (!w->v->global)
                continue;
            const char *g = NULL;
            int write = 0;
            if (op == OP_GETTABUP && B < nupname && is_env[B])
                g = constant_name(w, k, (int)nk, C);
            else if (op == OP_SETTABUP && A < nupname && is_env[A] && (write = 1))
                g = constant_name(w, k, (int)nk, B);
            else if (w->wide && op == OP_GETTABLE && regs[B].env && regs[C].k >= 0)
                g = constant_name(w, k, (int)nk, (unsigned)regs[C].k);
            else if (w->wide && op == OP_SETTABLE && regs[A].env && regs[B].k >= 0 && (write = 1))
                g = constant_name(w, k, (int)nk, (unsigned)regs[B].k);
            if (g)
                w->v->global(w->v->ud, g, line, write);
            if (op == OP_GETUPVAL) {
                forget_from(regs, A, top);
                regs[A].env = B < nupname && is_env[B];
            } else if (op == OP_LOADK) {
                forget_from(regs, A, top);
                regs[A].k = (int)(ins >> 15);
            } else if (op == OP_LOADKX) {
                forget_from(regs, A, top);
                uint32_t extra = 0;
                if (pc + 1 < ncode)
                    memcpy(&extra, code + (pc + 1) * 4, 4);
                if (pc + 1 < ncode && (extra & 0x7f) == OP_EXTRAARG)
                    regs[A].k = (int)(extra >> 7);
            } else if (!writes_no_register(op)) {
                forget_from(regs, A, top);
            }
        }
    }
    free(k);
    free(abs_pc);
    free(abs_line);
    free(is_env);
    return r->bad ? -1 : 0;
}

static int writer(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    strbuf_add(ud, p, n);
    return 0;
}

static int header(struct reader *r)
{
    static const unsigned char want[] = {0x1b, 'L', 'u', 'a', 0x54, 0, 0x19, 0x93, '\r', '\n', 0x1a, '\n',
                                         4, sizeof(lua_Integer), sizeof(lua_Number)};
    if (!take(r, sizeof want) || memcmp(r->p, want, sizeof want) != 0)
        return -1;
    r->p += sizeof want;
    skip(r, sizeof(lua_Integer) + sizeof(lua_Number) + 1);   /* check values, main's upvalue count */
    return r->bad ? -1 : 0;
}

static int walk_dump(lua_State *L, const struct bytecode_visitor *v, int wide)
{
    strbuf dump;
    strbuf_init(&dump);
    lua_dump(L, writer, &dump, 0);
    struct walk w = {{(const unsigned char *)dump.s, (const unsigned char *)dump.s + dump.len, 0}, v, wide, ""};
    int rc = dump.s && header(&w.r) == 0 ? function(&w, 0) : -1;
    strbuf_free(&dump);
    return rc;
}

/* The opcodes are internal to Lua: prove them on a chunk whose answer is
 * known before trusting them with a script. 0: not this format; 1: the
 * GETTABUP/SETTABUP form is proven; 2: the register form too (a chunk whose
 * globals come after 300 other constants). */
struct probe {
    int read_b, wrote_c;
};

static void probe_global(void *ud, const char *name, int line, int is_write)
{
    struct probe *p = ud;
    (void)line;
    if (!is_write && strcmp(name, "b") == 0)
        p->read_b = 1;
    if (is_write && strcmp(name, "c") == 0)
        p->wrote_c = 1;
}

static int probe_chunk(lua_State *L, const char *chunk, size_t len, int wide)
{
    if (luaL_loadbufferx(L, chunk, len, "=probe", "t") != LUA_OK) {
        lua_pop(L, 1);
        return 0;
    }
    struct probe p = {0, 0};
    struct bytecode_visitor v = {probe_global, NULL, &p};
    int ok = walk_dump(L, &v, wide) == 0 && p.read_b && p.wrote_c;
    lua_pop(L, 1);
    return ok;
}

static int format_known(lua_State *L)
{
    static const char chunk[] = "local a = b\nc = a\n";
    if (!probe_chunk(L, chunk, sizeof chunk - 1, 0))
        return 0;
    strbuf wide;
    strbuf_init(&wide);
    strbuf_add(&wide, "local t = {", 11);
    for (int i = 0; i < 300; i++)
        strbuf_printf(&wide, "'k%d',", i);
    strbuf_printf(&wide, "}\nlocal a = b\nc = a .. t[1]\n");
    int level = probe_chunk(L, wide.s, wide.len, 1) ? 2 : 1;
    strbuf_free(&wide);
    return level;
}

int bytecode_walk(const char *src, size_t len, const char *name, const struct bytecode_visitor *v, char *err,
                  size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    char *chunkname = xasprintf("@%s", name);
    int level = format_known(L);
    if (!level) {
        snprintf(err, errlen, "this Lua build's bytecode is not the Lua 5.4 format tend reads");
    } else if (luaL_loadbufferx(L, src, len, chunkname, "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
    } else if (walk_dump(L, v, level == 2) != 0) {
        snprintf(err, errlen, "%s: the compiled chunk could not be read", name);
    } else {
        rc = 0;
    }
    free(chunkname);
    lua_close(L);
    return rc;
}
