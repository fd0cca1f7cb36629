/* template — message text in a Liquid subset: compiled once, rendered many
 * times.
 *
 * Syntax (docs/lua-api.md has the full reference):
 *   {{ path | filter: arg, arg | filter }}      output
 *   {% if cond %} {% elsif cond %} {% else %} {% endif %}
 *       cond: operand [op operand] joined by `and` / `or` (and binds
 *       tighter); ops == != > < >= <= contains; operands: paths,
 *       "strings", 'strings', numbers, true false nil blank empty
 *   {% for x in path limit: n %} ... {% else %} ... {% endfor %}
 *       forloop.index forloop.index0 forloop.rindex forloop.first
 *       forloop.last forloop.length forloop.key (the member's name when
 *       looping over an object); the else part runs for an empty list
 *   {% raw %} ... {% endraw %}   {% comment %} ... {% endcomment %}
 *   {{- and -}}, {%- and -%} strip the whitespace on that side.
 * A path is `name(.name|[index])*`; arrays also have .size .first .last,
 * strings .size. Filters: default upcase downcase capitalize truncate size
 * join plus minus times round date money plural escape.
 *
 * Values come from a cJSON object (the customer's fields merged with the
 * send's vars); the caller builds it, this module only reads it. What a
 * missing value does: in an output it fails the render (`missing variable
 * 'coupon.code'`) unless a `default` filter stands in; in a condition it
 * is nil (false, blank); a loop over it runs zero times.
 *
 * Ownership: template_compile returns a program the caller frees with
 * template_free; it keeps its own copy of the text. Rendering returns a
 * malloc'd string the caller frees. A program is read-only while rendering,
 * so one program may be rendered from several threads at once.
 *
 * Limits: output at most TEMPLATE_MAX_OUTPUT bytes, at most
 * TEMPLATE_MAX_ITERATIONS loop iterations per render, blocks nested at most
 * TEMPLATE_MAX_DEPTH deep (the last is a compile error, the others fail the
 * render: a message is whole or not sent). */
#ifndef TEND_TEMPLATE_H
#define TEND_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "sms.h"    /* sms_measure and the text lint used to live here */

#define TEMPLATE_MAX_OUTPUT     65536
#define TEMPLATE_MAX_ITERATIONS 1000
#define TEMPLATE_MAX_DEPTH      20

typedef struct template_prog template_prog;

/* Compiles `text`. `html` = the text is an HTML body: every output is
 * HTML-escaped unless it went through `escape` already. On a malformed
 * template returns NULL with err like
 *   "line 2, column 7 (byte 19): unknown filter 'upcse'"
 * (line and column 1-based, the column in characters, the byte offset
 * 1-based in the whole text). The v1 default form `{{name|friend}}` fails
 * with the fix: "... v1 default form: write {{ name | default: \"friend\" }}". */
template_prog *template_compile(const char *text, int html, char *err, size_t errlen);
void template_free(template_prog *t);

/* What a render needs besides the variables. */
struct template_env {
    const char *tz;         /* the customer's IANA zone for `date` (NULL = UTC) */
    const char *currency;   /* ISO 4217 code for `money` (NULL = "CNY") */
    int64_t now;            /* what "now" / "today" mean to `date` (epoch s) */
};

/* Renders `t` with `vars` (may be NULL). env NULL = UTC, CNY, now = 0.
 * Numbers print as integers when integral (99, not 99.000000), otherwise
 * with up to 2 decimals trimmed ("12.5"); booleans as true/false. A type
 * problem (looping over a number, `plus` on a word, printing a list) fails
 * the render with the line: "line 3: cannot loop over 'n': it is a number".
 * Returns NULL on failure, with err. */
char *template_run(const template_prog *t, const cJSON *vars, const struct template_env *env,
                   char *err, size_t errlen);

/* Compile + run in one go (tests, one-off texts). */
char *template_render(const char *text, const cJSON *vars, char *err, size_t errlen);

/* Calls fn for every variable the text reads from its vars, in order: the
 * path as written ("coupon.code"; loop variables and forloop are not
 * reported), whether a missing value is fine there (a `default` filter, a
 * condition, a loop source), and its 1-based byte offset. Returns -1 with
 * err (as template_compile) if the text does not compile. */
typedef void (*template_var_fn)(const char *path, int has_default, size_t offset, void *ud);
int template_vars(const char *text, template_var_fn fn, void *ud, char *err, size_t errlen);

/* The text with every output replaced by "X" and every tag removed (the
 * raw/comment bodies kept): what the link lint looks at, so a placeholder
 * inside a link does not split it. malloc'd; NULL if it does not compile. */
char *template_skeleton(const char *text);

#endif
