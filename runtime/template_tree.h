/* template_tree — the compiled form of a template, shared by the compiler
 * (template.c) and the renderer (template_render.c). Private to those two:
 * nothing else includes it. Every pointer in a tree is owned by the tree
 * (template_free releases it); text nodes point into prog->src. */
#ifndef TEND_TEMPLATE_TREE_H
#define TEND_TEMPLATE_TREE_H

#include <stddef.h>

#include "template.h"

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
    /* resolved at compile time, so a render compares no names for them: */
    int frame;                  /* the first name is the loop variable of enclosing loop
                                   `frame` (0 = outermost), or -1 */
    int forloop;                /* forloop.<field>: a FORLOOP_* (frame = the innermost loop), or 0 */
    int slot;                   /* the first name is a variable (frame -1): its slot in the
                                   render's cache of variables found, or -1 (past TEMPLATE_SLOTS) */
};

/* Distinct variable names per program that a render looks up only once. */
#define TEMPLATE_SLOTS 64

enum { FORLOOP_NONE, FORLOOP_INDEX, FORLOOP_INDEX0, FORLOOP_RINDEX, FORLOOP_LENGTH, FORLOOP_FIRST,
       FORLOOP_LAST, FORLOOP_KEY, FORLOOP_UNKNOWN };

enum filter_id {
    F_DEFAULT, F_UPCASE, F_DOWNCASE, F_CAPITALIZE, F_TRUNCATE, F_SIZE, F_JOIN, F_PLUS,
    F_MINUS, F_TIMES, F_ROUND, F_DATE, F_MONEY, F_PLURAL, F_ESCAPE
};

extern const struct filter_def {
    const char *name;
    int min_args, max_args;
} template_filters[];
#define NFILTERS ((int)F_ESCAPE + 1)
#define FILTERS template_filters

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
    size_t src_len;             /* a first guess at the output's size */
    int html;
    int nslots;                 /* variable slots in use (struct operand.slot) */
    struct nodes root;
};

/* printf into err[errlen] (nothing when err is NULL). */
void template_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "line 3" for byte offset off of src, 1-based. */
int template_line_of(const char *src, size_t off);

/* Numbers as templates print them: 99, 12.5, 3.14 (see template_run). */
void template_format_number(double x, char *buf, size_t len);

#endif
