/* template — the Liquid subset: the compiler, and walks over the compiled
 * tree (see template.h; rendering is in template_render.c).
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
#include "template_tree.h"
#include "util.h"

/* --- small things ---------------------------------------------------------- */

void template_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Integral values print as integers (a price of 99, not 99.000000); the rest
 * with at most 2 decimals, since template numbers are money and percentages.
 * The 1e15 bound keeps "%.0f" exact and free of exponents. */
void template_format_number(double x, char *buf, size_t len)
{
    if (x == floor(x) && fabs(x) < 1e15 && len >= 24) {   /* exact as an integer: no printf */
        long long v = (long long)fabs(x);
        char rev[24];
        int n = 0;
        do {
            rev[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        size_t k = 0;
        if (x < 0)
            buf[k++] = '-';                 /* -0 is 0 == floor and prints "0" */
        while (n) buf[k++] = rev[--n];
        buf[k] = '\0';
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

const struct filter_def template_filters[] = {
    [F_DEFAULT] = {"default", 1, 1},  [F_UPCASE] = {"upcase", 0, 0},
    [F_DOWNCASE] = {"downcase", 0, 0}, [F_CAPITALIZE] = {"capitalize", 0, 0},
    [F_TRUNCATE] = {"truncate", 0, 2}, [F_SIZE] = {"size", 0, 0},
    [F_JOIN] = {"join", 0, 1},        [F_PLUS] = {"plus", 1, 1},
    [F_MINUS] = {"minus", 1, 1},      [F_TIMES] = {"times", 1, 1},
    [F_ROUND] = {"round", 0, 1},      [F_DATE] = {"date", 1, 1},
    [F_MONEY] = {"money", 0, 1},      [F_PLURAL] = {"plural", 2, 2},
    [F_ESCAPE] = {"escape", 0, 0},
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
        ns->v = xrealloc(ns->v, (size_t)ns->cap * sizeof *ns->v);
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
    const char *scope[TEMPLATE_MAX_DEPTH + 1];  /* loop variables, outermost first */
    int nscope;
    const char *slot_names[TEMPLATE_SLOTS];     /* the variables given a slot, by slot */
    int nslots;
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

int template_line_of(const char *src, size_t off)
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
    template_set_err(p->err, p->errlen, "%s: %s", where, what);
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
        o->seg = xrealloc(o->seg, (size_t)(o->nseg + 1) * sizeof *o->seg);
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

/* Binds a path's first name to an enclosing loop (or forloop) now, once;
 * a variable gets the slot of its name, so a render finds each variable
 * once however often the text reads it. */
static void resolve_path(struct parser *p, struct operand *o)
{
    static const char *const fields[] = {"", "index", "index0", "rindex", "length", "first", "last", "key"};
    o->frame = -1;
    o->slot = -1;
    if (!o->seg[0].name)
        return;
    if (strcmp(o->seg[0].name, "forloop") == 0 && p->nscope > 0) {
        o->frame = p->nscope - 1;
        o->forloop = FORLOOP_UNKNOWN;
        for (int i = 1; o->nseg > 1 && o->seg[1].name && i < (int)(sizeof fields / sizeof fields[0]); i++)
            if (strcmp(o->seg[1].name, fields[i]) == 0)
                o->forloop = i;
        return;
    }
    for (int i = p->nscope - 1; i >= 0; i--)
        if (strcmp(p->scope[i], o->seg[0].name) == 0) {
            o->frame = i;
            return;
        }
    for (int i = 0; i < p->nslots && o->slot < 0; i++)
        if (strcmp(p->slot_names[i], o->seg[0].name) == 0)
            o->slot = i;
    if (o->slot < 0 && p->nslots < TEMPLATE_SLOTS) {
        o->slot = p->nslots;
        p->slot_names[p->nslots++] = o->seg[0].name;
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
        resolve_path(lx->p, o);
    } else {
        unexpected(lx, t, what);
        return -1;
    }
    return 0;
}

/* The known filter within 2 edits of s[0..n), for "did you mean". */
static const char *near_filter(const char *s, size_t n)
{
    for (int f = 0; f < NFILTERS && n < 32; f++) {
        const char *t = FILTERS[f].name;
        size_t m = strlen(t);
        int d[33][33];
        for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
        for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
        for (size_t i = 1; i <= n; i++)
            for (size_t j = 1; j <= m; j++) {
                int best = d[i - 1][j - 1] + (s[i - 1] != t[j - 1]);
                if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
                if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
                d[i][j] = best;
            }
        if (d[n][m] <= 2)
            return t;
    }
    return NULL;
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
                const char *near = name.kind == T_WORD ? near_filter(p->src + name.off, name.len) : NULL;
                if (near)
                    fail(p, name.off, "unknown filter '%.*s' (did you mean '%s'?)", (int)name.len,
                         p->src + name.off, near);
                else if (name.kind == T_WORD && after.kind == T_END)
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
        e->filters = xrealloc(e->filters, (size_t)(e->nfilters + 1) * sizeof *e->filters);
        struct filter *f = &e->filters[e->nfilters++];
        memset(f, 0, sizeof *f);
        f->id = (enum filter_id)id;
        f->off = name.off;
        if (id == F_DEFAULT)
            e->has_default = 1;
        if (accept(&lx, ":")) {
            do {
                f->args = xrealloc(f->args, (size_t)(f->nargs + 1) * sizeof *f->args);
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
        c->c = xrealloc(c->c, (size_t)(c->n + 1) * sizeof *c->c);
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
        me->u.cond.b = xrealloc(me->u.cond.b, (size_t)(me->u.cond.nb + 1) * sizeof *me->u.cond.b);
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
    p->scope[p->nscope++] = out->v[idx].u.loop.var;     /* the body sees the variable */
    int rc = parse_nodes(p, &out->v[idx].u.loop.body, FOR_STOPS, &stop, t->open);
    p->nscope--;
    if (rc != 0)
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
    template_prog *t = xcalloc(1, sizeof *t);
    t->src_len = strlen(text);
    t->src = xstrndup(text, t->src_len);
    t->html = html;
    struct parser p = {.src = t->src, .err = err, .errlen = errlen, .depth = -1};   /* the root is depth 0 */
    if (parse_nodes(&p, &t->root, NULL, NULL, 0) != 0 || p.failed) {
        template_free(t);
        return NULL;
    }
    t->nslots = p.nslots;
    return t;
}

/* --- walking the tree: variables and the skeleton ------------------------------- */

struct walk {
    template_var_fn fn;
    void *ud;
    const char *bound[TEMPLATE_MAX_DEPTH + 1];
    int nbound;
    /* names an enclosing {% if %} branch tests (`{% if coupon %}...`): a
     * missing value there never reaches the output inside */
    const struct cond *guards[TEMPLATE_MAX_DEPTH + 1];
    int nguards;
};

static int guarded(const struct walk *w, const char *root)
{
    for (int g = 0; g < w->nguards; g++)
        for (int k = 0; k < w->guards[g]->n; k++) {
            const struct operand *a = &w->guards[g]->c[k].a;
            if (a->kind == OPD_PATH && a->seg[0].name && strcmp(a->seg[0].name, root) == 0)
                return 1;
        }
    return 0;
}

static void walk_operand(struct walk *w, const struct operand *o, int fine)
{
    if (o->kind != OPD_PATH || !o->seg[0].name || strcmp(o->seg[0].name, "forloop") == 0)
        return;
    for (int i = 0; i < w->nbound; i++)
        if (strcmp(w->bound[i], o->seg[0].name) == 0)
            return;
    if (w->fn)
        w->fn(o->str, fine || guarded(w, o->seg[0].name), o->off + 1, w->ud);
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
                w->guards[w->nguards++] = &n->u.cond.b[b].cond;
                walk_nodes(w, &n->u.cond.b[b].body);
                w->nguards--;
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
    struct walk w = {.fn = fn, .ud = ud};
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
