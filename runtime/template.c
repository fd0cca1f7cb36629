/* template — the Liquid subset: compiler and renderer (see template.h).
 *
 * Compiling turns the text into a tree of nodes (text, output, if, for)
 * whose operands are pre-split paths and parsed literals, so a render only
 * walks the tree: no re-parsing, no allocation except the output buffer and
 * the strings filters make (kept in a per-render arena, freed at once). */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <glib.h>

#include "clock.h"
#include "template.h"

/* --- small things ---------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *xalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fputs("tend: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xgrow(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fputs("tend: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xalloc(n + 1);
    memcpy(p, s, n);
    return p;
}

/* Integral values print as integers (a price of 99, not 99.000000); the rest
 * with at most 2 decimals, since template numbers are money and percentages.
 * The 1e15 bound keeps "%.0f" exact and free of exponents. */
static void format_number(double x, char *buf, size_t len)
{
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(buf, len, "%.0f", x == 0 ? 0.0 : x);   /* no "-0" */
        return;
    }
    snprintf(buf, len, "%.2f", x);
    char *dot = strchr(buf, '.');
    if (dot) {
        char *end = buf + strlen(buf);
        while (end > dot + 1 && end[-1] == '0') *--end = '\0';
        if (end == dot + 1) *dot = '\0';
    }
    if (strcmp(buf, "-0") == 0)         /* -0.001 rounds to nothing */
        strcpy(buf, "0");
}

/* --- the compiled form ------------------------------------------------------ */

enum operand_kind { OPD_NONE, OPD_PATH, OPD_STR, OPD_NUM, OPD_TRUE, OPD_FALSE, OPD_NIL, OPD_BLANK, OPD_EMPTY };

struct segment {
    char *name;                 /* NULL for an [index] */
    long index;
};

struct operand {
    enum operand_kind kind;
    double num;
    char *str;                  /* OPD_STR: the text; OPD_PATH: the path as written */
    size_t len;
    struct segment *seg;
    int nseg;
    size_t off;                 /* 0-based byte offset in the source */
};

enum filter_id {
    F_DEFAULT, F_UPCASE, F_DOWNCASE, F_CAPITALIZE, F_TRUNCATE, F_SIZE, F_JOIN, F_PLUS,
    F_MINUS, F_TIMES, F_ROUND, F_DATE, F_MONEY, F_PLURAL, F_ESCAPE
};

static const struct filter_def {
    const char *name;
    int min_args, max_args;
} FILTERS[] = {
    [F_DEFAULT] = {"default", 1, 1},  [F_UPCASE] = {"upcase", 0, 0},
    [F_DOWNCASE] = {"downcase", 0, 0}, [F_CAPITALIZE] = {"capitalize", 0, 0},
    [F_TRUNCATE] = {"truncate", 0, 2}, [F_SIZE] = {"size", 0, 0},
    [F_JOIN] = {"join", 0, 1},        [F_PLUS] = {"plus", 1, 1},
    [F_MINUS] = {"minus", 1, 1},      [F_TIMES] = {"times", 1, 1},
    [F_ROUND] = {"round", 0, 1},      [F_DATE] = {"date", 1, 1},
    [F_MONEY] = {"money", 0, 1},      [F_PLURAL] = {"plural", 2, 2},
    [F_ESCAPE] = {"escape", 0, 0},
};
#define NFILTERS ((int)(sizeof FILTERS / sizeof FILTERS[0]))

struct filter {
    enum filter_id id;
    struct operand *args;
    int nargs;
    size_t off;
};

struct expr {
    struct operand base;
    struct filter *filters;
    int nfilters;
    int has_default;
};

enum cmp_op { OP_TRUTHY, OP_EQ, OP_NE, OP_GT, OP_LT, OP_GE, OP_LE, OP_CONTAINS };

struct comparison {
    struct operand a, b;
    enum cmp_op op;
    int or_before;              /* joined to the previous one by `or` (else `and`) */
};

struct cond {
    struct comparison *c;
    int n;
};

struct node;
struct nodes {
    struct node *v;
    int n, cap;
};

struct branch {
    struct cond cond;
    struct nodes body;
};

enum node_kind { N_TEXT, N_OUTPUT, N_IF, N_FOR };

struct node {
    enum node_kind kind;
    size_t off;
    union {
        struct { size_t start, len; } text;     /* into prog->src */
        struct expr out;
        struct { struct branch *b; int nb; struct nodes els; int has_else; } cond;
        struct {
            char *var;
            struct operand src, limit;
            int has_limit;
            struct nodes body, els;
        } loop;
    } u;
};

struct template_prog {
    char *src;
    int html;
    struct nodes root;
};

/* --- freeing ----------------------------------------------------------------- */

static void operand_free(struct operand *o)
{
    free(o->str);
    for (int i = 0; i < o->nseg; i++)
        free(o->seg[i].name);
    free(o->seg);
}

static void nodes_free(struct nodes *ns);

static void cond_free(struct cond *c)
{
    for (int i = 0; i < c->n; i++) {
        operand_free(&c->c[i].a);
        operand_free(&c->c[i].b);
    }
    free(c->c);
}

static void node_free(struct node *n)
{
    switch (n->kind) {
    case N_TEXT:
        break;
    case N_OUTPUT:
        operand_free(&n->u.out.base);
        for (int i = 0; i < n->u.out.nfilters; i++) {
            for (int k = 0; k < n->u.out.filters[i].nargs; k++)
                operand_free(&n->u.out.filters[i].args[k]);
            free(n->u.out.filters[i].args);
        }
        free(n->u.out.filters);
        break;
    case N_IF:
        for (int i = 0; i < n->u.cond.nb; i++) {
            cond_free(&n->u.cond.b[i].cond);
            nodes_free(&n->u.cond.b[i].body);
        }
        free(n->u.cond.b);
        nodes_free(&n->u.cond.els);
        break;
    case N_FOR:
        free(n->u.loop.var);
        operand_free(&n->u.loop.src);
        operand_free(&n->u.loop.limit);
        nodes_free(&n->u.loop.body);
        nodes_free(&n->u.loop.els);
        break;
    }
}

static void nodes_free(struct nodes *ns)
{
    for (int i = 0; i < ns->n; i++)
        node_free(&ns->v[i]);
    free(ns->v);
}

void template_free(template_prog *t)
{
    if (!t)
        return;
    nodes_free(&t->root);
    free(t->src);
    free(t);
}

static struct node *nodes_add(struct nodes *ns, enum node_kind kind, size_t off)
{
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 4;
        ns->v = xgrow(ns->v, (size_t)ns->cap * sizeof *ns->v);
    }
    struct node *n = &ns->v[ns->n++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->off = off;
    return n;
}

/* --- the parser ------------------------------------------------------------------ */

struct parser {
    const char *src;
    size_t pos;                 /* where scanning of text resumes */
    int strip_next;             /* the last tag ended with "-}}" / "-%}" */
    int depth;
    char *err;
    size_t errlen;
    int failed;
};

/* "line 2, column 7 (byte 19)" for byte offset off. */
static void locate(const char *src, size_t off, char *buf, size_t n)
{
    int line = 1, col = 1;
    for (size_t i = 0; i < off && src[i]; i++) {
        if (src[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)src[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    snprintf(buf, n, "line %d, column %d (byte %zu)", line, col, off + 1);
}

static int line_of(const char *src, size_t off)
{
    int line = 1;
    for (size_t i = 0; i < off && src[i]; i++)
        line += src[i] == '\n';
    return line;
}

static void fail(struct parser *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct parser *p, size_t off, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    char where[96], what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    locate(p->src, off, where, sizeof where);
    set_err(p->err, p->errlen, "%s: %s", where, what);
}

/* A tag's inside, tokenised on demand. [pos, end) is the tag body. */
struct lexer {
    struct parser *p;
    size_t pos, end;
};

enum tok { T_END, T_WORD, T_STR, T_NUM, T_PUNCT, T_BAD };

struct token {
    enum tok kind;
    size_t off, len;            /* the token's bytes in src */
};

static int is_word_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static int is_word_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-'; }

static void skip_blank(struct lexer *lx)
{
    while (lx->pos < lx->end && isspace((unsigned char)lx->p->src[lx->pos]))
        lx->pos++;
}

static struct token peek(struct lexer *lx)
{
    const char *s = lx->p->src;
    skip_blank(lx);
    struct token t = {T_END, lx->pos, 0};
    size_t i = lx->pos;
    if (i >= lx->end)
        return t;
    char c = s[i];
    if (is_word_start(c)) {
        /* A path: words joined by '.', with [n] or ["key"] parts. */
        while (i < lx->end) {
            if (is_word_char(s[i]) || (s[i] == '.' && i + 1 < lx->end && is_word_start(s[i + 1]))) {
                i++;
            } else if (s[i] == '[') {
                size_t j = i + 1;
                while (j < lx->end && isdigit((unsigned char)s[j])) j++;
                if (j == i + 1 || j >= lx->end || s[j] != ']')
                    break;
                i = j + 1;
            } else {
                break;
            }
        }
        t.kind = T_WORD;
    } else if (c == '"' || c == '\'') {
        i++;
        while (i < lx->end && s[i] != c) i++;
        if (i >= lx->end) {
            t.kind = T_BAD;
            t.len = 1;
            return t;
        }
        i++;
        t.kind = T_STR;
    } else if (isdigit((unsigned char)c) || (c == '-' && i + 1 < lx->end && isdigit((unsigned char)s[i + 1]))) {
        i++;
        while (i < lx->end && (isdigit((unsigned char)s[i]) || (s[i] == '.' && i + 1 < lx->end &&
                                                                 isdigit((unsigned char)s[i + 1]))))
            i++;
        t.kind = T_NUM;
    } else if (strchr("=!<>", c) && i + 1 < lx->end && s[i + 1] == '=') {
        i += 2;
        t.kind = T_PUNCT;
    } else if (strchr("|:,<>", c)) {
        i++;
        t.kind = T_PUNCT;
    } else {
        t.kind = T_BAD;
        i++;
        while (i < lx->end && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    }
    t.len = i - t.off;
    return t;
}

static struct token next(struct lexer *lx)
{
    struct token t = peek(lx);
    lx->pos = t.off + t.len;
    return t;
}

static int tok_is(const struct lexer *lx, struct token t, const char *s)
{
    return (t.kind == T_WORD || t.kind == T_PUNCT) && t.len == strlen(s) &&
           memcmp(lx->p->src + t.off, s, t.len) == 0;
}

static int accept(struct lexer *lx, const char *s)
{
    struct token t = peek(lx);
    if (!tok_is(lx, t, s))
        return 0;
    lx->pos = t.off + t.len;
    return 1;
}

static void unexpected(struct lexer *lx, struct token t, const char *wanted)
{
    if (t.kind == T_END)
        fail(lx->p, t.off, "expected %s before the end of the tag", wanted);
    else if (t.kind == T_BAD && (lx->p->src[t.off] == '"' || lx->p->src[t.off] == '\''))
        fail(lx->p, t.off, "unclosed string");
    else
        fail(lx->p, t.off, "expected %s, found '%.*s'", wanted, (int)t.len, lx->p->src + t.off);
}

/* Splits "a.b[0].c" into segments. */
static void split_path(struct operand *o, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        o->seg = xgrow(o->seg, (size_t)(o->nseg + 1) * sizeof *o->seg);
        struct segment *g = &o->seg[o->nseg++];
        if (s[i] == '[') {
            g->name = NULL;
            g->index = strtol(s + i + 1, NULL, 10);
            i = (size_t)((const char *)memchr(s + i, ']', n - i) - s) + 1;
        } else {
            size_t j = i;
            while (j < n && s[j] != '.' && s[j] != '[') j++;
            g->name = xstrndup(s + i, j - i);
            g->index = 0;
            i = j;
        }
        if (i < n && s[i] == '.')
            i++;
    }
}

static int parse_operand(struct lexer *lx, struct operand *o, const char *what)
{
    struct token t = next(lx);
    const char *s = lx->p->src + t.off;
    memset(o, 0, sizeof *o);
    o->off = t.off;
    if (t.kind == T_STR) {
        o->kind = OPD_STR;
        o->str = xstrndup(s + 1, t.len - 2);
        o->len = t.len - 2;
    } else if (t.kind == T_NUM) {
        o->kind = OPD_NUM;
        o->num = strtod(s, NULL);
    } else if (t.kind == T_WORD) {
        static const struct { const char *w; enum operand_kind k; } words[] = {
            {"true", OPD_TRUE}, {"false", OPD_FALSE}, {"nil", OPD_NIL}, {"null", OPD_NIL},
            {"blank", OPD_BLANK}, {"empty", OPD_EMPTY}};
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
            if (tok_is(lx, t, words[i].w)) {
                o->kind = words[i].k;
                return 0;
            }
        o->kind = OPD_PATH;
        o->str = xstrndup(s, t.len);
        o->len = t.len;
        split_path(o, s, t.len);
    } else {
        unexpected(lx, t, what);
        return -1;
    }
    return 0;
}

static int find_filter(const char *s, size_t n)
{
    for (int i = 0; i < NFILTERS; i++)
        if (strlen(FILTERS[i].name) == n && memcmp(FILTERS[i].name, s, n) == 0)
            return i;
    return -1;
}

/* The body of an output, [start, end) between the braces. */
static int parse_expr(struct parser *p, size_t start, size_t end, struct expr *e)
{
    struct lexer lx = {p, start, end};
    memset(e, 0, sizeof *e);
    if (parse_operand(&lx, &e->base, "a variable or a value") != 0)
        return -1;
    while (accept(&lx, "|")) {
        struct token name = next(&lx);
        int id = name.kind == T_WORD ? find_filter(p->src + name.off, name.len) : -1;
        if (id < 0) {
            struct token after = peek(&lx);
            if (e->nfilters == 0 && e->base.kind == OPD_PATH && name.kind != T_END &&
                !tok_is(&lx, after, ":")) {
                /* {{name|friend}}: the v1 way of writing a default. */
                size_t dstart = name.off, dend = end;
                while (dend > dstart && isspace((unsigned char)p->src[dend - 1])) dend--;
                if (name.kind == T_WORD && after.kind == T_END)
                    fail(p, name.off, "unknown filter '%.*s' (if it is a v1 default, write {{ %s | "
                         "default: \"%.*s\" }})", (int)name.len, p->src + name.off, e->base.str,
                         (int)(dend - dstart), p->src + dstart);
                else
                    fail(p, name.off, "'{{%.*s}}' is the v1 default form: write {{ %s | default: "
                         "\"%.*s\" }}", (int)(end - start), p->src + start, e->base.str,
                         (int)(dend - dstart), p->src + dstart);
            } else if (name.kind == T_WORD) {
                fail(p, name.off, "unknown filter '%.*s'", (int)name.len, p->src + name.off);
            } else {
                unexpected(&lx, name, "a filter name after '|'");
            }
            return -1;
        }
        e->filters = xgrow(e->filters, (size_t)(e->nfilters + 1) * sizeof *e->filters);
        struct filter *f = &e->filters[e->nfilters++];
        memset(f, 0, sizeof *f);
        f->id = (enum filter_id)id;
        f->off = name.off;
        if (id == F_DEFAULT)
            e->has_default = 1;
        if (accept(&lx, ":")) {
            do {
                f->args = xgrow(f->args, (size_t)(f->nargs + 1) * sizeof *f->args);
                if (parse_operand(&lx, &f->args[f->nargs], "an argument") != 0)
                    return -1;
                f->nargs++;
            } while (accept(&lx, ","));
        }
        const struct filter_def *d = &FILTERS[id];
        if (f->nargs < d->min_args || f->nargs > d->max_args) {
            if (d->min_args == d->max_args)
                fail(p, name.off, "filter '%s' takes %d argument%s, not %d", d->name, d->min_args,
                     d->min_args == 1 ? "" : "s", f->nargs);
            else
                fail(p, name.off, "filter '%s' takes %d to %d arguments, not %d", d->name,
                     d->min_args, d->max_args, f->nargs);
            return -1;
        }
    }
    struct token t = peek(&lx);
    if (t.kind != T_END) {
        unexpected(&lx, t, "'|' or the end of the output");
        return -1;
    }
    return 0;
}

static int parse_cond(struct lexer *lx, struct cond *c)
{
    static const struct { const char *s; enum cmp_op op; } ops[] = {
        {"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GE}, {"<=", OP_LE}, {">", OP_GT},
        {"<", OP_LT}, {"contains", OP_CONTAINS}};
    int or_before = 0;
    for (;;) {
        c->c = xgrow(c->c, (size_t)(c->n + 1) * sizeof *c->c);
        struct comparison *k = &c->c[c->n];
        memset(k, 0, sizeof *k);
        if (parse_operand(lx, &k->a, "a condition") != 0)
            return -1;
        c->n++;
        k->or_before = or_before;
        k->op = OP_TRUTHY;
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            if (accept(lx, ops[i].s)) {
                k->op = ops[i].op;
                if (parse_operand(lx, &k->b, "a value to compare with") != 0)
                    return -1;
                break;
            }
        if (accept(lx, "and"))
            or_before = 0;
        else if (accept(lx, "or"))
            or_before = 1;
        else
            break;
    }
    struct token t = peek(lx);
    if (t.kind != T_END) {
        unexpected(lx, t, "an operator (== != > < >= <= contains), 'and', 'or' or '%}'");
        return -1;
    }
    return 0;
}

/* A tag found in the text. */
struct tag {
    size_t open;                /* offset of "{%" */
    size_t body, body_end;      /* the inside, without "-" marks */
    size_t after;               /* just past "%}" */
    size_t name, name_len;
};

/* Finds the end of a tag or output starting at `open` (the "{{"/"{%"),
 * skipping quoted strings. Returns the offset of the closing pair or 0. */
static size_t find_close(const char *s, size_t from, char closer)
{
    for (size_t i = from; s[i]; i++) {
        if (s[i] == '"' || s[i] == '\'') {
            const char *q = strchr(s + i + 1, s[i]);
            if (!q)
                return 0;
            i = (size_t)(q - s);
        } else if (s[i] == closer && s[i + 1] == '}') {
            return i;
        } else if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%')) {
            return 0;           /* another tag opens: this one was never closed */
        }
    }
    return 0;
}

static void add_text(struct parser *p, struct nodes *out, size_t start, size_t end, int strip_right)
{
    if (p->strip_next)
        while (start < end && isspace((unsigned char)p->src[start])) start++;
    if (strip_right)
        while (end > start && isspace((unsigned char)p->src[end - 1])) end--;
    p->strip_next = 0;
    if (end <= start)
        return;
    struct node *n = nodes_add(out, N_TEXT, start);
    n->u.text.start = start;
    n->u.text.len = end - start;
}

/* Reads the tag at `open` into *t; 0 or -1 (reported). */
static int read_tag(struct parser *p, size_t open, struct tag *t)
{
    size_t close = find_close(p->src, open + 2, '%');
    if (!close) {
        fail(p, open, "'{%%' is never closed with '%%}'");
        return -1;
    }
    t->open = open;
    t->body = open + 2;
    if (p->src[t->body] == '-')
        t->body++;
    t->body_end = close;
    if (close > t->body && p->src[close - 1] == '-')
        t->body_end--;
    t->after = close + 2;
    size_t i = t->body;
    while (i < t->body_end && isspace((unsigned char)p->src[i])) i++;
    t->name = i;
    while (i < t->body_end && is_word_char(p->src[i])) i++;
    t->name_len = i - t->name;
    if (t->name_len == 0) {
        fail(p, t->name, "a tag needs a name ({%% if ... %%}, {%% for ... %%})");
        return -1;
    }
    return 0;
}

static int tag_named(const struct parser *p, const struct tag *t, const char *name)
{
    return t->name_len == strlen(name) && memcmp(p->src + t->name, name, t->name_len) == 0;
}

/* Finds "{% endraw %}" (any spacing, "-" marks allowed) after `from`;
 * fills the end tag. */
static int find_end_literal(struct parser *p, size_t from, const char *name, struct tag *end)
{
    const char *s = p->src;
    for (const char *q = strstr(s + from, "{%"); q; q = strstr(q + 2, "{%")) {
        struct parser probe = *p;
        probe.failed = 0;
        probe.err = NULL;
        if (read_tag(&probe, (size_t)(q - s), end) == 0 && tag_named(p, end, name))
            return 0;
    }
    return -1;
}

static int parse_nodes(struct parser *p, struct nodes *out, const char *const *stops, struct tag *stop,
                       size_t opened_at);

static const char *const IF_STOPS[] = {"elsif", "else", "endif", NULL};
static const char *const FOR_STOPS[] = {"else", "endfor", NULL};
static const char *const ENDIF[] = {"endif", NULL};
static const char *const ENDFOR[] = {"endfor", NULL};

static void no_args(struct parser *p, const struct tag *t)
{
    struct lexer lx = {p, t->name + t->name_len, t->body_end};
    struct token k = peek(&lx);
    if (k.kind != T_END)
        fail(p, k.off, "'%.*s' takes nothing after it, found '%.*s'", (int)t->name_len,
             p->src + t->name, (int)k.len, p->src + k.off);
}

static int parse_if(struct parser *p, struct nodes *out, const struct tag *t)
{
    nodes_add(out, N_IF, t->open);
    int idx = out->n - 1;
    struct tag cur = *t, stop;
    for (;;) {
        struct node *me = &out->v[idx];
        me->u.cond.b = xgrow(me->u.cond.b, (size_t)(me->u.cond.nb + 1) * sizeof *me->u.cond.b);
        struct branch *b = &me->u.cond.b[me->u.cond.nb++];
        memset(b, 0, sizeof *b);
        struct lexer lx = {p, cur.name + cur.name_len, cur.body_end};
        if (parse_cond(&lx, &b->cond) != 0)
            return -1;
        if (parse_nodes(p, &b->body, IF_STOPS, &stop, t->open) != 0)
            return -1;
        if (tag_named(p, &stop, "elsif")) {
            cur = stop;
            continue;
        }
        me = &out->v[idx];
        if (tag_named(p, &stop, "else")) {
            no_args(p, &stop);
            me->u.cond.has_else = 1;
            if (p->failed || parse_nodes(p, &me->u.cond.els, ENDIF, &stop, t->open) != 0)
                return -1;
        }
        no_args(p, &stop);
        break;
    }
    return p->failed ? -1 : 0;
}

static int parse_for(struct parser *p, struct nodes *out, const struct tag *t)
{
    struct node *n = nodes_add(out, N_FOR, t->open);
    int idx = out->n - 1;
    struct lexer lx = {p, t->name + t->name_len, t->body_end};
    struct token var = next(&lx);
    if (var.kind != T_WORD || memchr(p->src + var.off, '.', var.len) ||
        memchr(p->src + var.off, '[', var.len)) {
        unexpected(&lx, var, "a loop variable name ({% for item in items %})");
        return -1;
    }
    n->u.loop.var = xstrndup(p->src + var.off, var.len);
    struct token in = next(&lx);
    if (!tok_is(&lx, in, "in")) {
        unexpected(&lx, in, "'in'");
        return -1;
    }
    if (parse_operand(&lx, &n->u.loop.src, "the list to loop over") != 0)
        return -1;
    if (accept(&lx, "limit")) {
        struct token colon = next(&lx);
        if (!tok_is(&lx, colon, ":")) {
            unexpected(&lx, colon, "':' after limit");
            return -1;
        }
        if (parse_operand(&lx, &n->u.loop.limit, "a number after 'limit:'") != 0)
            return -1;
        n->u.loop.has_limit = 1;
    }
    struct token end = peek(&lx);
    if (end.kind != T_END) {
        unexpected(&lx, end, "'limit: n' or '%}'");
        return -1;
    }
    struct tag stop;
    if (parse_nodes(p, &out->v[idx].u.loop.body, FOR_STOPS, &stop, t->open) != 0)
        return -1;
    if (tag_named(p, &stop, "else")) {
        no_args(p, &stop);
        if (p->failed || parse_nodes(p, &out->v[idx].u.loop.els, ENDFOR, &stop, t->open) != 0)
            return -1;
    }
    no_args(p, &stop);
    return p->failed ? -1 : 0;
}

/* Parses nodes until one of `stops` (NULL-terminated; NULL = the end of the
 * text), which is returned in *stop. */
static int parse_nodes(struct parser *p, struct nodes *out, const char *const *stops, struct tag *stop,
                       size_t opened_at)
{
    const char *s = p->src;
    if (++p->depth > TEMPLATE_MAX_DEPTH) {
        fail(p, opened_at, "blocks nested more than %d deep", TEMPLATE_MAX_DEPTH);
        return -1;
    }
    for (;;) {
        const char *q = s + p->pos;
        while ((q = strchr(q, '{')) && q[1] != '{' && q[1] != '%')
            q++;
        if (!q) {
            add_text(p, out, p->pos, strlen(s), 0);
            if (stops) {
                const char *closer = stops[0];
                while (stops[1] && *++stops) closer = *stops;
                fail(p, opened_at, "this block is never closed (no {%% %s %%})", closer);
                return -1;
            }
            p->depth--;
            return 0;
        }
        size_t open = (size_t)(q - s);
        int strip_left = q[2] == '-';
        add_text(p, out, p->pos, open, strip_left);
        if (q[1] == '{') {
            size_t close = find_close(s, open + 2, '}');
            if (!close) {
                fail(p, open, "'{{' is never closed with '}}'");
                return -1;
            }
            size_t body = open + 2 + (size_t)strip_left, body_end = close;
            int strip_right = close > body && s[close - 1] == '-';
            if (strip_right)
                body_end--;
            struct node *n = nodes_add(out, N_OUTPUT, open);
            if (parse_expr(p, body, body_end, &n->u.out) != 0)
                return -1;
            p->pos = close + 2;
            p->strip_next = strip_right;
            continue;
        }
        struct tag t;
        if (read_tag(p, open, &t) != 0)
            return -1;
        p->pos = t.after;
        p->strip_next = s[t.after - 3] == '-';
        for (const char *const *st = stops; st && *st; st++)
            if (tag_named(p, &t, *st)) {
                *stop = t;
                p->depth--;
                return 0;
            }
        int rc = 0;
        if (tag_named(p, &t, "if")) {
            rc = parse_if(p, out, &t);
        } else if (tag_named(p, &t, "for")) {
            rc = parse_for(p, out, &t);
        } else if (tag_named(p, &t, "raw") || tag_named(p, &t, "comment")) {
            int raw = tag_named(p, &t, "raw");
            struct tag end;
            no_args(p, &t);
            if (p->failed)
                return -1;
            if (find_end_literal(p, t.after, raw ? "endraw" : "endcomment", &end) != 0) {
                fail(p, open, "{%% %s %%} is never closed (no {%% end%s %%})", raw ? "raw" : "comment",
                     raw ? "raw" : "comment");
                return -1;
            }
            if (raw) {
                p->strip_next = 0;
                if (end.open > t.after) {
                    struct node *n = nodes_add(out, N_TEXT, t.after);
                    n->u.text.start = t.after;
                    n->u.text.len = end.open - t.after;
                }
            }
            p->pos = end.after;
            p->strip_next = s[end.after - 3] == '-';
        } else {
            static const char *const ends[] = {"elsif", "else", "endif", "endfor", "endraw",
                                               "endcomment", NULL};
            int stray = 0;
            for (const char *const *e = ends; *e; e++)
                stray |= tag_named(p, &t, *e);
            if (stray)
                fail(p, t.name, "'{%% %.*s %%}' without the block it closes", (int)t.name_len,
                     s + t.name);
            else
                fail(p, t.name, "unknown tag '%.*s' (tags: if, elsif, else, endif, for, endfor, raw, "
                     "comment)", (int)t.name_len, s + t.name);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
}

template_prog *template_compile(const char *text, int html, char *err, size_t errlen)
{
    template_prog *t = xalloc(sizeof *t);
    t->src = xstrndup(text, strlen(text));
    t->html = html;
    struct parser p = {.src = t->src, .err = err, .errlen = errlen, .depth = -1};   /* the root is depth 0 */
    if (parse_nodes(&p, &t->root, NULL, NULL, 0) != 0 || p.failed) {
        template_free(t);
        return NULL;
    }
    return t;
}

/* --- values ------------------------------------------------------------------------ */

enum val_kind { V_NIL, V_BOOL, V_NUM, V_STR, V_ARR, V_OBJ };

struct val {
    enum val_kind k;
    int b;
    double n;
    const char *s;
    size_t len;
    const cJSON *j;
    int safe;                   /* already HTML-escaped */
};

static struct val from_json(const cJSON *j)
{
    struct val v = {0};
    if (!j || cJSON_IsNull(j)) {
        v.k = V_NIL;
    } else if (cJSON_IsBool(j)) {
        v.k = V_BOOL;
        v.b = cJSON_IsTrue(j);
    } else if (cJSON_IsNumber(j)) {
        v.k = V_NUM;
        v.n = j->valuedouble;
    } else if (cJSON_IsString(j)) {
        v.k = V_STR;
        v.s = j->valuestring ? j->valuestring : "";
        v.len = strlen(v.s);
    } else if (cJSON_IsArray(j)) {
        v.k = V_ARR;
        v.j = j;
    } else if (cJSON_IsObject(j)) {
        v.k = V_OBJ;
        v.j = j;
    }
    return v;
}

static const char *kind_name(const struct val *v)
{
    static const char *const names[] = {"nothing", "true/false", "a number", "text", "a list",
                                        "an object"};
    return names[v->k];
}

/* Strings made while rendering: blocks chained, all freed after the render. */
struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
};

struct frame {
    const char *name;
    struct val item;
    int index, length;
    const char *key;
};

struct render {
    const template_prog *t;
    const cJSON *vars;
    struct template_env env;
    char *out;
    size_t len, cap;
    int iterations;
    struct frame frames[TEMPLATE_MAX_DEPTH + 1];
    int nframes;
    struct arena_block *arena;
    char *err;
    size_t errlen;
    int failed;
};

static void rfail(struct render *r, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rfail(struct render *r, size_t off, const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = 1;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    set_err(r->err, r->errlen, "line %d: %s", line_of(r->t->src, off), what);
}

static char *arena_alloc(struct render *r, size_t n)
{
    struct arena_block *b = r->arena;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > 4000 ? n + 1 : 4000;
        b = xalloc(sizeof *b + cap);
        b->cap = cap;
        b->next = r->arena;
        r->arena = b;
    }
    char *p = b->data + b->used;
    b->used += n + 1;
    p[n] = '\0';
    return p;
}

static struct val str_val(struct render *r, const char *s, size_t n)
{
    char *p = arena_alloc(r, n);
    memcpy(p, s, n);
    struct val v = {.k = V_STR, .s = p, .len = n};
    return v;
}

static void emit(struct render *r, const char *s, size_t n)
{
    if (r->failed)
        return;
    if (r->len + n > TEMPLATE_MAX_OUTPUT) {
        r->failed = 1;
        set_err(r->err, r->errlen, "the message is over %d bytes (the output limit)", TEMPLATE_MAX_OUTPUT);
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1) cap *= 2;
        r->out = xgrow(r->out, cap);
        r->cap = cap;
    }
    memcpy(r->out + r->len, s, n);
    r->len += n;
    r->out[r->len] = '\0';
}

static void emit_escaped(struct render *r, const char *s, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        emit(r, s + from, i - from);
        emit(r, rep, strlen(rep));
        from = i + 1;
    }
    emit(r, s + from, n - from);
}

/* A scalar as text (numbers as format_number); 0, or -1 for lists/objects. */
static int text_of(struct render *r, const struct val *v, const char **s, size_t *n)
{
    char num[400];
    switch (v->k) {
    case V_NIL: *s = ""; *n = 0; return 0;
    case V_BOOL: *s = v->b ? "true" : "false"; *n = strlen(*s); return 0;
    case V_STR: *s = v->s; *n = v->len; return 0;
    case V_NUM: {
        format_number(v->n, num, sizeof num);
        struct val t = str_val(r, num, strlen(num));
        *s = t.s;
        *n = t.len;
        return 0;
    }
    default: return -1;
    }
}

/* The value at an operand's path. `found` (may be NULL) says whether the
 * first name was known at all. */
static struct val lookup(struct render *r, const struct operand *o)
{
    struct val v = {0};
    const struct segment *g = o->seg;
    int i = 1;
    if (!g[0].name) {
        return v;
    } else if (strcmp(g[0].name, "forloop") == 0 && r->nframes > 0) {
        const struct frame *f = &r->frames[r->nframes - 1];
        if (o->nseg < 2 || !g[1].name)
            return v;
        const char *k = g[1].name;
        i = 2;
        if (!strcmp(k, "index")) { v.k = V_NUM; v.n = f->index + 1; }
        else if (!strcmp(k, "index0")) { v.k = V_NUM; v.n = f->index; }
        else if (!strcmp(k, "rindex")) { v.k = V_NUM; v.n = f->length - f->index; }
        else if (!strcmp(k, "length")) { v.k = V_NUM; v.n = f->length; }
        else if (!strcmp(k, "first")) { v.k = V_BOOL; v.b = f->index == 0; }
        else if (!strcmp(k, "last")) { v.k = V_BOOL; v.b = f->index == f->length - 1; }
        else if (!strcmp(k, "key") && f->key) { v.k = V_STR; v.s = f->key; v.len = strlen(f->key); }
    } else {
        int bound = 0;
        for (int k = r->nframes - 1; k >= 0; k--)
            if (strcmp(r->frames[k].name, g[0].name) == 0) {
                v = r->frames[k].item;
                bound = 1;
                break;
            }
        if (!bound)
            v = from_json(r->vars ? cJSON_GetObjectItemCaseSensitive(r->vars, g[0].name) : NULL);
    }
    for (; i < o->nseg; i++) {
        const struct segment *s = &g[i];
        if (v.k == V_OBJ && s->name) {
            v = from_json(cJSON_GetObjectItemCaseSensitive(v.j, s->name));
        } else if (v.k == V_ARR) {
            int n = cJSON_GetArraySize(v.j);
            if (!s->name)
                v = from_json(s->index >= 0 && s->index < n ? cJSON_GetArrayItem(v.j, (int)s->index) : NULL);
            else if (!strcmp(s->name, "size")) { v.k = V_NUM; v.n = n; }
            else if (!strcmp(s->name, "first")) v = from_json(n ? cJSON_GetArrayItem(v.j, 0) : NULL);
            else if (!strcmp(s->name, "last")) v = from_json(n ? cJSON_GetArrayItem(v.j, n - 1) : NULL);
            else v = (struct val){0};
        } else if (v.k == V_STR && s->name && !strcmp(s->name, "size")) {
            v.k = V_NUM;
            v.n = (double)g_utf8_strlen(v.s, (gssize)v.len);
        } else {
            v = (struct val){0};
        }
    }
    return v;
}

static struct val eval_operand(struct render *r, const struct operand *o)
{
    struct val v = {0};
    switch (o->kind) {
    case OPD_PATH: return lookup(r, o);
    case OPD_STR: v.k = V_STR; v.s = o->str; v.len = o->len; break;
    case OPD_NUM: v.k = V_NUM; v.n = o->num; break;
    case OPD_TRUE: v.k = V_BOOL; v.b = 1; break;
    case OPD_FALSE: v.k = V_BOOL; v.b = 0; break;
    default: break;     /* nil; blank and empty only mean something in == */
    }
    return v;
}

/* --- filters ---------------------------------------------------------------------- */

/* A number from a number or numeric text ("12.5"); -1 if it is neither. */
static int number_of(const struct val *v, double *out)
{
    if (v->k == V_NUM) {
        *out = v->n;
        return 0;
    }
    if (v->k == V_STR && v->len) {
        char *end;
        char buf[64];
        if (v->len >= sizeof buf)
            return -1;
        memcpy(buf, v->s, v->len);
        buf[v->len] = '\0';
        *out = strtod(buf, &end);
        while (isspace((unsigned char)*end)) end++;
        return *end ? -1 : 0;
    }
    return -1;
}

static int is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* Upper/lower case, Unicode-aware (GLib's full case mapping: ß → SS). */
static struct val change_case(struct render *r, const char *s, size_t n, int upper)
{
    if (is_ascii(s, n)) {
        char *p = arena_alloc(r, n);
        for (size_t i = 0; i < n; i++)
            p[i] = (char)(upper ? toupper((unsigned char)s[i]) : tolower((unsigned char)s[i]));
        return (struct val){.k = V_STR, .s = p, .len = n};
    }
    char *g = upper ? g_utf8_strup(s, (gssize)n) : g_utf8_strdown(s, (gssize)n);
    struct val v = str_val(r, g, strlen(g));
    g_free(g);
    return v;
}

static const struct currency {
    const char *code, *symbol;
    int decimals;
} CURRENCIES[] = {
    {"CNY", "\xC2\xA5", 2}, {"RMB", "\xC2\xA5", 2}, {"USD", "$", 2}, {"EUR", "\xE2\x82\xAC", 2},
    {"GBP", "\xC2\xA3", 2}, {"JPY", "\xC2\xA5", 0}, {"HKD", "HK$", 2}, {"TWD", "NT$", 2},
    {"KRW", "\xE2\x82\xA9", 0}, {"SGD", "S$", 2}, {"AUD", "A$", 2}, {"CAD", "C$", 2},
};

/* "¥1,234.50": the symbol, thousands grouped by ',', the currency's decimals. */
static struct val money(struct render *r, double x, const char *code)
{
    const char *symbol = NULL;
    int decimals = 2;
    char other[16];
    for (size_t i = 0; i < sizeof CURRENCIES / sizeof CURRENCIES[0]; i++)
        if (!strcasecmp(CURRENCIES[i].code, code)) {
            symbol = CURRENCIES[i].symbol;
            decimals = CURRENCIES[i].decimals;
        }
    if (!symbol) {
        snprintf(other, sizeof other, "%.3s ", code);
        symbol = other;
    }
    char digits[400], out[480];
    snprintf(digits, sizeof digits, "%.*f", decimals, fabs(x));
    if (strspn(digits, "0.") == strlen(digits))
        x = 0;                          /* no "-¥0.00" */
    size_t intlen = strcspn(digits, ".");
    size_t k = 0;
    if (x < 0) out[k++] = '-';
    k += (size_t)snprintf(out + k, sizeof out - k, "%s", symbol);
    for (size_t i = 0; i < intlen && k < sizeof out - 8; i++) {
        if (i && (intlen - i) % 3 == 0)
            out[k++] = ',';
        out[k++] = digits[i];
    }
    k += (size_t)snprintf(out + k, sizeof out - k, "%s", digits + intlen);
    return str_val(r, out, k);
}

/* A time for `date`: epoch seconds, ISO-8601 text, "now"/"today", or a
 * calendar date "YYYY-MM-DD" (shown as that date, in no zone). */
static int date_filter(struct render *r, const struct filter *f, const struct val *in,
                       const struct val *fmt, struct val *out)
{
    struct tm tm = {0};
    tend_time t = 0;
    int y, m, d, plain_date = 0;
    char text[64] = "", cerr[8];
    if (in->k == V_NUM) {
        t = (tend_time)in->n;
    } else if (in->k == V_STR && in->len < sizeof text) {
        memcpy(text, in->s, in->len);
        if (!strcmp(text, "now") || !strcmp(text, "today"))
            t = r->env.now;
        else if (strlen(text) == 10 && clock_parse_date(text, &y, &m, &d, cerr, sizeof cerr) == 0)
            plain_date = 1;
        else if (clock_parse_time(text, &t, cerr, sizeof cerr) != 0) {
            rfail(r, f->off, "filter 'date': '%s' is not a time", text);
            return -1;
        }
    } else {
        rfail(r, f->off, "filter 'date': %s is not a time", kind_name(in));
        return -1;
    }
    if (plain_date) {
        int64_t days = clock_days_from_civil(y, m, d);
        tm.tm_year = y - 1900;
        tm.tm_mon = m - 1;
        tm.tm_mday = d;
        tm.tm_wday = (int)(((days % 7) + 11) % 7);      /* 1970-01-01 was a Thursday */
        tm.tm_yday = (int)(days - clock_days_from_civil(y, 1, 1));
    } else {
        struct clock_local l;
        const char *tz = r->env.tz ? r->env.tz : "UTC";
        if (clock_to_local(t, tz, &l) != 0) {
            rfail(r, f->off, "filter 'date': cannot show the time in zone '%s'", tz);
            return -1;
        }
        tm.tm_year = l.year - 1900;
        tm.tm_mon = l.month - 1;
        tm.tm_mday = l.day;
        tm.tm_hour = l.hour;
        tm.tm_min = l.minute;
        tm.tm_sec = l.second;
        tm.tm_wday = l.wday;
        tm.tm_yday = l.yday;
        tm.tm_isdst = l.is_dst;
        tm.tm_gmtoff = l.utc_offset;
    }
    char buf[512];
    const char *fs;
    size_t fl;
    if (text_of(r, fmt, &fs, &fl) != 0 || fl >= 256) {
        rfail(r, f->off, "filter 'date': the format must be short text");
        return -1;
    }
    char fbuf[256];
    memcpy(fbuf, fs, fl);
    fbuf[fl] = '\0';
    size_t n = fl ? strftime(buf, sizeof buf, fbuf, &tm) : 0;
    *out = str_val(r, buf, n);
    return 0;
}

/* Applies filter f to v. Returns 0, or -1 after rfail. */
static int apply(struct render *r, const struct filter *f, struct val *v)
{
    struct val a[2] = {{0}, {0}};
    for (int i = 0; i < f->nargs; i++)
        a[i] = eval_operand(r, &f->args[i]);
    const char *name = FILTERS[f->id].name;
    const char *s;
    size_t n;
    double x, y;

    switch (f->id) {
    case F_DEFAULT:
        if (v->k == V_NIL || (v->k == V_BOOL && !v->b) || (v->k == V_STR && v->len == 0) ||
            ((v->k == V_ARR || v->k == V_OBJ) && !v->j->child))
            *v = a[0];
        return 0;
    case F_UPCASE:
    case F_DOWNCASE:
    case F_CAPITALIZE:
    case F_ESCAPE:
    case F_TRUNCATE:
        if (text_of(r, v, &s, &n) != 0)
            break;
        if (f->id == F_ESCAPE) {
            size_t save = r->len;
            emit_escaped(r, s, n);      /* borrow the output buffer, then take it back */
            if (r->failed)
                return -1;
            *v = str_val(r, r->out + save, r->len - save);
            r->len = save;
            v->safe = 1;
        } else if (f->id == F_TRUNCATE) {
            double lim = 50;
            const char *ell = "...";
            size_t ell_len = 3;
            if (f->nargs > 0 && number_of(&a[0], &lim) != 0) {
                rfail(r, f->off, "filter 'truncate': the length must be a number");
                return -1;
            }
            if (f->nargs > 1 && text_of(r, &a[1], &ell, &ell_len) != 0)
                break;
            long chars = g_utf8_strlen(s, (gssize)n);
            if (chars <= (long)lim) {
                *v = str_val(r, s, n);
                return 0;
            }
            long keep = (long)lim - g_utf8_strlen(ell, (gssize)ell_len);
            if (keep < 0) keep = 0;
            /* Cut at a character boundary, never inside a UTF-8 sequence. */
            const char *cut = g_utf8_offset_to_pointer(s, keep);
            size_t head = (size_t)(cut - s);
            char *p = arena_alloc(r, head + ell_len);
            memcpy(p, s, head);
            memcpy(p + head, ell, ell_len);
            *v = (struct val){.k = V_STR, .s = p, .len = head + ell_len};
        } else if (f->id == F_CAPITALIZE) {
            if (n == 0) {
                *v = str_val(r, "", 0);
                return 0;
            }
            const char *rest = g_utf8_next_char(s);
            struct val first = change_case(r, s, (size_t)(rest - s), 1);
            struct val tail = change_case(r, rest, n - (size_t)(rest - s), 0);
            char *p = arena_alloc(r, first.len + tail.len);
            memcpy(p, first.s, first.len);
            memcpy(p + first.len, tail.s, tail.len);
            *v = (struct val){.k = V_STR, .s = p, .len = first.len + tail.len};
        } else {
            *v = change_case(r, s, n, f->id == F_UPCASE);
        }
        return 0;
    case F_SIZE:
        if (v->k == V_STR)
            x = (double)g_utf8_strlen(v->s, (gssize)v->len);
        else if (v->k == V_ARR || v->k == V_OBJ)
            x = cJSON_GetArraySize(v->j);
        else if (v->k == V_NIL)
            x = 0;
        else
            break;
        *v = (struct val){.k = V_NUM, .n = x};
        return 0;
    case F_JOIN: {
        if (v->k == V_NIL) {
            *v = str_val(r, "", 0);
            return 0;
        }
        if (v->k != V_ARR)
            break;
        const char *sep = " ";
        size_t seplen = 1;
        if (f->nargs && text_of(r, &a[0], &sep, &seplen) != 0) {
            rfail(r, f->off, "filter 'join': the separator must be text");
            return -1;
        }
        size_t save = r->len;
        const cJSON *item;
        int first = 1;
        cJSON_ArrayForEach(item, v->j) {
            struct val iv = from_json(item);
            if (text_of(r, &iv, &s, &n) != 0) {
                r->len = save;
                rfail(r, f->off, "filter 'join': the list holds %s, not text", kind_name(&iv));
                return -1;
            }
            if (!first)
                emit(r, sep, seplen);
            emit(r, s, n);
            first = 0;
        }
        if (r->failed)
            return -1;
        *v = str_val(r, r->out + save, r->len - save);
        r->len = save;
        return 0;
    }
    case F_PLUS:
    case F_MINUS:
    case F_TIMES:
        if (number_of(v->k == V_NIL ? &(struct val){.k = V_NUM} : v, &x) != 0)
            break;
        if (number_of(&a[0], &y) != 0) {
            rfail(r, f->off, "filter '%s': the argument is %s, not a number", name, kind_name(&a[0]));
            return -1;
        }
        *v = (struct val){.k = V_NUM, .n = f->id == F_PLUS ? x + y : f->id == F_MINUS ? x - y : x * y};
        return 0;
    case F_ROUND: {
        if (number_of(v, &x) != 0)
            break;
        double digits = 0;
        if (f->nargs && number_of(&a[0], &digits) != 0) {
            rfail(r, f->off, "filter 'round': the number of digits must be a number");
            return -1;
        }
        double p = pow(10, floor(digits));
        *v = (struct val){.k = V_NUM, .n = round(x * p) / p};
        return 0;
    }
    case F_DATE:
        return date_filter(r, f, v, &a[0], v);
    case F_MONEY: {
        if (number_of(v, &x) != 0)
            break;
        char code[8];
        const char *c = r->env.currency ? r->env.currency : "CNY";
        if (f->nargs) {
            if (a[0].k != V_STR || a[0].len >= sizeof code) {
                rfail(r, f->off, "filter 'money': the currency must be a code like \"CNY\"");
                return -1;
            }
            memcpy(code, a[0].s, a[0].len);
            code[a[0].len] = '\0';
            c = code;
        }
        *v = money(r, x, c);
        return 0;
    }
    case F_PLURAL:
        if (number_of(v, &x) != 0)
            break;
        *v = x == 1 ? a[0] : a[1];
        return 0;
    }
    if (v->k == V_NIL)
        rfail(r, f->off, "filter '%s' has nothing to work on (a missing variable?)", name);
    else if (v->k == V_STR)
        rfail(r, f->off, "filter '%s': '%.*s' is not a number", name, (int)(v->len > 40 ? 40 : v->len), v->s);
    else
        rfail(r, f->off, "filter '%s' cannot take %s", name, kind_name(v));
    return -1;
}

/* --- rendering ------------------------------------------------------------------- */

static int is_blank_val(const struct val *v, int whitespace)
{
    switch (v->k) {
    case V_NIL: return 1;
    case V_BOOL: return !v->b && whitespace;
    case V_STR:
        if (!whitespace)
            return v->len == 0;
        for (size_t i = 0; i < v->len; i++)
            if (!isspace((unsigned char)v->s[i]))
                return 0;
        return 1;
    case V_ARR:
    case V_OBJ: return v->j->child == NULL;
    default: return 0;
    }
}

static int equal(const struct val *a, const struct val *b)
{
    if (a->k != b->k)
        return 0;
    switch (a->k) {
    case V_NIL: return 1;
    case V_BOOL: return a->b == b->b;
    case V_NUM: return a->n == b->n;
    case V_STR: return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
    default: return a->j == b->j;
    }
}

/* 1 true, 0 false, -1 failed. */
static int compare(struct render *r, const struct comparison *c)
{
    struct val a = eval_operand(r, &c->a);
    if (c->op == OP_TRUTHY)
        return !(a.k == V_NIL || (a.k == V_BOOL && !a.b));
    if ((c->op == OP_EQ || c->op == OP_NE) && (c->b.kind == OPD_BLANK || c->b.kind == OPD_EMPTY ||
                                               c->a.kind == OPD_BLANK || c->a.kind == OPD_EMPTY)) {
        int special_right = c->b.kind == OPD_BLANK || c->b.kind == OPD_EMPTY;
        struct val other = special_right ? a : eval_operand(r, &c->b);
        enum operand_kind k = special_right ? c->b.kind : c->a.kind;
        int eq = is_blank_val(&other, k == OPD_BLANK);
        return c->op == OP_EQ ? eq : !eq;
    }
    struct val b = eval_operand(r, &c->b);
    switch (c->op) {
    case OP_EQ: return equal(&a, &b);
    case OP_NE: return !equal(&a, &b);
    case OP_CONTAINS: {
        if (a.k == V_NIL)
            return 0;
        if (a.k == V_ARR) {
            const cJSON *item;
            cJSON_ArrayForEach(item, a.j) {
                struct val iv = from_json(item);
                if (equal(&iv, &b))
                    return 1;
            }
            return 0;
        }
        const char *bs;
        size_t bn;
        if (text_of(r, &b, &bs, &bn) != 0) {
            rfail(r, c->b.off, "'contains' needs text or a number on its right, not %s", kind_name(&b));
            return -1;
        }
        char *needle = arena_alloc(r, bn);
        memcpy(needle, bs, bn);
        if (a.k == V_OBJ)
            return cJSON_GetObjectItemCaseSensitive(a.j, needle) != NULL;
        if (a.k != V_STR) {
            rfail(r, c->a.off, "'contains' needs text, a list or an object on its left, not %s",
                  kind_name(&a));
            return -1;
        }
        return g_strstr_len(a.s, (gssize)a.len, needle) != NULL;
    }
    default: break;
    }
    if (a.k == V_NIL || b.k == V_NIL)
        return 0;
    int d;
    if (a.k == V_NUM && b.k == V_NUM) {
        d = a.n < b.n ? -1 : a.n > b.n;
    } else if (a.k == V_STR && b.k == V_STR) {
        size_t n = a.len < b.len ? a.len : b.len;
        d = memcmp(a.s, b.s, n);
        if (d == 0)
            d = a.len < b.len ? -1 : a.len > b.len;
    } else {
        rfail(r, c->a.off, "cannot compare %s with %s", kind_name(&a), kind_name(&b));
        return -1;
    }
    switch (c->op) {
    case OP_GT: return d > 0;
    case OP_LT: return d < 0;
    case OP_GE: return d >= 0;
    default: return d <= 0;
    }
}

/* `and` binds tighter than `or`: a or b and c = a or (b and c). */
static int eval_cond(struct render *r, const struct cond *c)
{
    int any = 0, all = 1;
    for (int i = 0; i < c->n; i++) {
        if (i > 0 && c->c[i].or_before) {
            any |= all;
            all = 1;
        }
        if (!all)
            continue;           /* this and-group is already false */
        int v = compare(r, &c->c[i]);
        if (v < 0)
            return -1;
        all = v;
    }
    return any | all;
}

static int render_nodes(struct render *r, const struct nodes *ns);

static int render_output(struct render *r, const struct node *n)
{
    const struct expr *e = &n->u.out;
    struct val v = eval_operand(r, &e->base);
    int missing = e->base.kind == OPD_PATH && !e->has_default &&
                  (v.k == V_NIL || (v.k == V_STR && v.len == 0));
    for (int i = 0; i < e->nfilters; i++)
        if (apply(r, &e->filters[i], &v) != 0)
            return -1;
    /* A blank in a customer message reads worse than a failed send; a
     * filter that makes something of nothing ({{ l | size }}) is fine. */
    if (missing && (v.k == V_NIL || (v.k == V_STR && v.len == 0))) {
        rfail(r, e->base.off, "missing variable '%s'", e->base.str);
        return -1;
    }
    const char *s;
    size_t len;
    if (text_of(r, &v, &s, &len) != 0) {
        rfail(r, e->base.off, "'%s' is %s, not text (loop over it with {%% for %%}, or print one field)",
              e->base.kind == OPD_PATH ? e->base.str : "the value", kind_name(&v));
        return -1;
    }
    if (r->t->html && !v.safe)
        emit_escaped(r, s, len);
    else
        emit(r, s, len);
    return r->failed ? -1 : 0;
}

static int render_for(struct render *r, const struct node *n)
{
    struct val list = eval_operand(r, &n->u.loop.src);
    if (list.k != V_NIL && list.k != V_ARR && list.k != V_OBJ) {
        rfail(r, n->u.loop.src.off, "cannot loop over '%s': it is %s",
              n->u.loop.src.str ? n->u.loop.src.str : "a value", kind_name(&list));
        return -1;
    }
    int count = list.k == V_NIL ? 0 : cJSON_GetArraySize(list.j);
    if (n->u.loop.has_limit) {
        struct val lv = eval_operand(r, &n->u.loop.limit);
        double lim;
        if (number_of(&lv, &lim) != 0 || lim < 0) {
            rfail(r, n->u.loop.limit.off, "'limit:' must be a number of 0 or more, not %s", kind_name(&lv));
            return -1;
        }
        if (lim < count)
            count = (int)lim;
    }
    if (count == 0)
        return render_nodes(r, &n->u.loop.els);
    struct frame *f = &r->frames[r->nframes++];
    f->name = n->u.loop.var;
    f->length = count;
    const cJSON *item = list.j->child;
    int rc = 0;
    for (int i = 0; i < count && item; i++, item = item->next) {
        if (++r->iterations > TEMPLATE_MAX_ITERATIONS) {
            rfail(r, n->off, "more than %d loop iterations in one message", TEMPLATE_MAX_ITERATIONS);
            rc = -1;
            break;
        }
        f->index = i;
        f->item = from_json(item);
        f->key = list.k == V_OBJ ? item->string : NULL;
        if ((rc = render_nodes(r, &n->u.loop.body)) != 0)
            break;
    }
    r->nframes--;
    return rc;
}

static int render_nodes(struct render *r, const struct nodes *ns)
{
    for (int i = 0; i < ns->n && !r->failed; i++) {
        const struct node *n = &ns->v[i];
        switch (n->kind) {
        case N_TEXT:
            emit(r, r->t->src + n->u.text.start, n->u.text.len);
            break;
        case N_OUTPUT:
            render_output(r, n);
            break;
        case N_IF: {
            const struct nodes *body = n->u.cond.has_else ? &n->u.cond.els : NULL;
            for (int b = 0; b < n->u.cond.nb; b++) {
                int v = eval_cond(r, &n->u.cond.b[b].cond);
                if (v < 0)
                    return -1;
                if (v) {
                    body = &n->u.cond.b[b].body;
                    break;
                }
            }
            if (body)
                render_nodes(r, body);
            break;
        }
        case N_FOR:
            render_for(r, n);
            break;
        }
    }
    return r->failed ? -1 : 0;
}

char *template_run(const template_prog *t, const cJSON *vars, const struct template_env *env,
                   char *err, size_t errlen)
{
    struct render r = {.t = t, .vars = vars, .err = err, .errlen = errlen};
    if (env)
        r.env = *env;
    emit(&r, "", 0);
    r.out = xgrow(r.out, 256);          /* "" renders to "", not NULL */
    r.cap = 256;
    r.out[0] = '\0';
    render_nodes(&r, &t->root);
    while (r.arena) {
        struct arena_block *next = r.arena->next;
        free(r.arena);
        r.arena = next;
    }
    if (r.failed) {
        free(r.out);
        return NULL;
    }
    return r.out;
}

char *template_render(const char *text, const cJSON *vars, char *err, size_t errlen)
{
    template_prog *t = template_compile(text, 0, err, errlen);
    if (!t)
        return NULL;
    char *out = template_run(t, vars, NULL, err, errlen);
    template_free(t);
    return out;
}

/* --- walking the tree: variables and the skeleton ------------------------------- */

struct walk {
    template_var_fn fn;
    void *ud;
    const char *bound[TEMPLATE_MAX_DEPTH + 1];
    int nbound;
};

static void walk_operand(struct walk *w, const struct operand *o, int fine)
{
    if (o->kind != OPD_PATH || !o->seg[0].name || strcmp(o->seg[0].name, "forloop") == 0)
        return;
    for (int i = 0; i < w->nbound; i++)
        if (strcmp(w->bound[i], o->seg[0].name) == 0)
            return;
    if (w->fn)
        w->fn(o->str, fine, o->off + 1, w->ud);
}

static void walk_nodes(struct walk *w, const struct nodes *ns)
{
    for (int i = 0; i < ns->n; i++) {
        const struct node *n = &ns->v[i];
        if (n->kind == N_OUTPUT) {
            walk_operand(w, &n->u.out.base, n->u.out.has_default);
            for (int f = 0; f < n->u.out.nfilters; f++)
                for (int a = 0; a < n->u.out.filters[f].nargs; a++)
                    walk_operand(w, &n->u.out.filters[f].args[a], 1);
        } else if (n->kind == N_IF) {
            for (int b = 0; b < n->u.cond.nb; b++) {
                for (int k = 0; k < n->u.cond.b[b].cond.n; k++) {
                    walk_operand(w, &n->u.cond.b[b].cond.c[k].a, 1);
                    walk_operand(w, &n->u.cond.b[b].cond.c[k].b, 1);
                }
                walk_nodes(w, &n->u.cond.b[b].body);
            }
            walk_nodes(w, &n->u.cond.els);
        } else if (n->kind == N_FOR) {
            walk_operand(w, &n->u.loop.src, 1);
            walk_operand(w, &n->u.loop.limit, 1);
            w->bound[w->nbound++] = n->u.loop.var;
            walk_nodes(w, &n->u.loop.body);
            w->nbound--;
            walk_nodes(w, &n->u.loop.els);
        }
    }
}

int template_vars(const char *text, template_var_fn fn, void *ud, char *err, size_t errlen)
{
    template_prog *t = template_compile(text, 0, err, errlen);
    if (!t)
        return -1;
    struct walk w = {fn, ud, {0}, 0};
    walk_nodes(&w, &t->root);
    template_free(t);
    return 0;
}

static void skeleton_nodes(const template_prog *t, const struct nodes *ns, GString *out)
{
    for (int i = 0; i < ns->n; i++) {
        const struct node *n = &ns->v[i];
        if (n->kind == N_TEXT) {
            g_string_append_len(out, t->src + n->u.text.start, (gssize)n->u.text.len);
        } else if (n->kind == N_OUTPUT) {
            g_string_append_c(out, 'X');
        } else if (n->kind == N_IF) {
            for (int b = 0; b < n->u.cond.nb; b++)
                skeleton_nodes(t, &n->u.cond.b[b].body, out);
            skeleton_nodes(t, &n->u.cond.els, out);
        } else {
            skeleton_nodes(t, &n->u.loop.body, out);
            skeleton_nodes(t, &n->u.loop.els, out);
        }
    }
}

char *template_skeleton(const char *text)
{
    template_prog *t = template_compile(text, 0, NULL, 0);
    if (!t)
        return NULL;
    GString *out = g_string_new("");
    skeleton_nodes(t, &t->root, out);
    template_free(t);
    char *g = g_string_free(out, FALSE);
    char *s = xstrndup(g, strlen(g));
    g_free(g);
    return s;
}
