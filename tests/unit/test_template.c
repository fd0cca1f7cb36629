/* Unit tests for runtime/template.c: rendering, placeholder checks, SMS
 * segment counting and SMS lint. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"
#include "util.h"

/* --- helpers ------------------------------------------------------------ */

static cJSON *vars(const char *json)
{
    cJSON *v = cJSON_Parse(json);
    assert_non_null(v);
    return v;
}

/* Renders and compares; expect NULL means the render must fail. */
static void check_render(const char *text, const char *json, const char *expect)
{
    cJSON *v = vars(json);
    char err[256] = "";
    char *out = template_render(text, v, err, sizeof err);
    if (expect) {
        assert_non_null(out);
        assert_string_equal(out, expect);
    } else {
        assert_null(out);
    }
    free(out);
    cJSON_Delete(v);
}

/* Renders expecting failure and returns the error message. */
static const char *render_err(const char *text, const char *json)
{
    static char err[256];
    cJSON *v = vars(json);
    err[0] = '\0';
    char *out = template_render(text, v, err, sizeof err);
    assert_null(out);
    cJSON_Delete(v);
    return err;
}

/* A string of `n` copies of `unit` (a UTF-8 character or several). */
static char *repeat(const char *unit, int n)
{
    size_t len = strlen(unit);
    char *s = malloc(len * (size_t)n + 1);
    assert_non_null(s);
    for (int i = 0; i < n; i++)
        memcpy(s + len * (size_t)i, unit, len);
    s[len * (size_t)n] = '\0';
    return s;
}

static struct sms_info measure(const char *text)
{
    struct sms_info in = {-1, -1, -1};
    sms_measure(text, &in);
    return in;
}

static void check_sms(const char *unit, int n, int unicode, int units, int segments)
{
    char *s = repeat(unit, n);
    struct sms_info in = measure(s);
    assert_int_equal(in.unicode, unicode);
    assert_int_equal(in.units, units);
    assert_int_equal(in.segments, segments);
    free(s);
}

/* Collects placeholders reported by template_vars. */
struct seen {
    int n;
    char path[8][64];
    int has_default[8];
    size_t offset[8];
};

static void on_var(const char *path, int has_default, size_t offset, void *ud)
{
    struct seen *s = ud;
    if (s->n >= 8)
        return;
    snprintf(s->path[s->n], sizeof s->path[0], "%s", path);
    s->has_default[s->n] = has_default;
    s->offset[s->n] = offset;
    s->n++;
}

/* Collects lint findings. */
struct findings {
    int n, errors, warnings;
    char msg[8][256];
    size_t offset[8];
};

static void on_lint(enum lint_level level, size_t offset, const char *message, void *ud)
{
    struct findings *f = ud;
    if (level == LINT_ERROR) f->errors++;
    else f->warnings++;
    if (f->n < 8) {
        snprintf(f->msg[f->n], sizeof f->msg[0], "%s", message);
        f->offset[f->n] = offset;
    }
    f->n++;
}

static struct findings lint(const char *text, const char *const *blocked, int max_seg,
                            double price)
{
    struct findings f;
    memset(&f, 0, sizeof f);
    int errors = template_lint_sms(text, blocked, max_seg, price, on_lint, &f);
    assert_int_equal(errors, f.errors);
    return f;
}

/* --- rendering ---------------------------------------------------------- */

static const struct template_env SHANGHAI = {"Asia/Shanghai", "CNY", 1767225600}; /* 2026-01-01T00:00Z */

/* Renders with an env; expect NULL = must fail, then `want_err` must be in the error. */
static void check_env(const char *text, const char *json, const struct template_env *env,
                      const char *expect, const char *want_err)
{
    cJSON *v = vars(json);
    char err[400] = "";
    template_prog *t = template_compile(text, 0, err, sizeof err);
    if (!t)
        fail_msg("'%s' does not compile: %s", text, err);
    char *out = template_run(t, v, env, err, sizeof err);
    if (expect) {
        if (!out)
            fail_msg("'%s': render failed: %s", text, err);
        if (strcmp(out, expect) != 0)
            fail_msg("'%s': got '%s', want '%s'", text, out, expect);
    } else {
        if (out)
            fail_msg("'%s': rendered '%s', want a failure", text, out);
        if (want_err && !strstr(err, want_err))
            fail_msg("'%s': error '%s' does not say '%s'", text, err, want_err);
    }
    free(out);
    template_free(t);
    cJSON_Delete(v);
}

#define R(text, json, expect) check_env(text, json, &SHANGHAI, expect, NULL)
#define RFAIL(text, json, why) check_env(text, json, &SHANGHAI, NULL, why)

/* The text must not compile; the error must contain every `want`. */
static void check_compile_err(const char *text, const char *want1, const char *want2)
{
    char err[400] = "";
    template_prog *t = template_compile(text, 0, err, sizeof err);
    if (t)
        fail_msg("'%s' compiled, want an error with '%s'", text, want1);
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("'%s': error '%s', want '%s' and '%s'", text, err, want1, want2 ? want2 : "");
}

static void test_render_simple(void **state)
{
    (void)state;
    check_render("Hi {{name}}!", "{\"name\":\"Ann\"}", "Hi Ann!");
    check_render("Hi {{ name }}!", "{\"name\":\"Ann\"}", "Hi Ann!");
    check_render("no placeholders", "{}", "no placeholders");
    check_render("", "{}", "");
    check_render("{{a}}{{b}}", "{\"a\":\"x\",\"b\":\"y\"}", "xy");
    check_render("单 {{name}} 好", "{\"name\":\"小明\"}", "单 小明 好");
    check_render("{x} }} {", "{}", "{x} }} {");      /* single braces are text */
    R("{{ 'lit' }} {{ 3 }} {{ true }}", "{}", "lit 3 true");
}

static void test_render_paths(void **state)
{
    (void)state;
    check_render("Code {{coupon.code}}", "{\"coupon\":{\"code\":\"SAVE10\"}}", "Code SAVE10");
    check_render("{{attrs.baby.name}}", "{\"attrs\":{\"baby\":{\"name\":\"Mia\"}}}", "Mia");
    R("{{ ab | default: 'none' }}", "{\"abc\":\"x\"}", "none");          /* a prefix is not the key */
    R("{{ name.first | default: '?' }}", "{\"name\":\"Ann\"}", "?");
    R("{{ items[1].sku }} {{ items.first.sku }} {{ items.last.sku }} {{ items.size }}",
      "{\"items\":[{\"sku\":\"a\"},{\"sku\":\"b\"},{\"sku\":\"c\"}]}", "b a c 3");
    R("{{ name.size }}", "{\"name\":\"王小明\"}", "3");
}

static void test_render_numbers(void **state)
{
    (void)state;
    check_render("{{n}}", "{\"n\":99}", "99");
    check_render("{{n}}", "{\"n\":0}", "0");
    check_render("{{n}}", "{\"n\":-3}", "-3");
    check_render("{{n}}", "{\"n\":123456789012345}", "123456789012345");
    check_render("{{n}}", "{\"n\":12.5}", "12.5");
    check_render("{{n}}", "{\"n\":0.05}", "0.05");
    check_render("{{n}}", "{\"n\":3.14159}", "3.14");
    check_render("{{n}}", "{\"n\":-0.001}", "0");
    check_render("{{a}}/{{b}}", "{\"a\":true,\"b\":false}", "true/false");
}

static void test_render_missing(void **state)
{
    (void)state;
    assert_string_equal(render_err("Code {{coupon.code}}", "{}"), "line 1: missing variable 'coupon.code'");
    assert_string_equal(render_err("{{name}}", "{\"name\":null}"), "line 1: missing variable 'name'");
    assert_string_equal(render_err("{{name}}", "{\"name\":\"\"}"), "line 1: missing variable 'name'");
    assert_string_equal(render_err("a\nb\n{{x}}", "{}"), "line 3: missing variable 'x'");
    char err[128];
    assert_null(template_render("{{x}}", NULL, err, sizeof err));
    assert_null(template_render("{{x}}", NULL, NULL, 0));
    /* Printing a structure is a mistake a default does not paper over. */
    RFAIL("{{coupon}}", "{\"coupon\":{\"code\":\"A\"}}", "'coupon' is an object, not text");
    RFAIL("{{tags}}", "{\"tags\":[1,2]}", "'tags' is a list, not text");
    RFAIL("{{ coupon | default: 'x' }}", "{\"coupon\":{\"a\":1}}", "not text");
}

static void test_filter_default(void **state)
{
    (void)state;
    R("Hi {{ name | default: 'friend' }}", "{}", "Hi friend");
    R("Hi {{ name | default: \"friend\" }}", "{\"name\":null}", "Hi friend");
    R("Hi {{ name | default: 'friend' }}", "{\"name\":\"\"}", "Hi friend");
    R("Hi {{ name | default: 'friend' }}", "{\"name\":\"Bo\"}", "Hi Bo");
    R("Hi {{ name | default: '亲爱的顾客' }}", "{}", "Hi 亲爱的顾客");
    R("{{ a | default: b }}", "{\"b\":\"from b\"}", "from b");
    R("{{ n | default: 5 | plus: 1 }}", "{}", "6");
}

static void test_filter_case(void **state)
{
    (void)state;
    R("{{ n | upcase }}", "{\"n\":\"ann lee\"}", "ANN LEE");
    R("{{ n | downcase }}", "{\"n\":\"ANN Lee\"}", "ann lee");
    R("{{ n | upcase }}", "{\"n\":\"straße é ж\"}", "STRASSE É Ж");
    R("{{ n | downcase }}", "{\"n\":\"ÉCOLE Ж\"}", "école ж");
    R("{{ n | upcase }}", "{\"n\":\"小明 ok\"}", "小明 OK");
    R("{{ n | capitalize }}", "{\"n\":\"my GREAT title\"}", "My great title");
    R("{{ n | capitalize }}", "{\"n\":\"élan\"}", "Élan");
    R("[{{ n | capitalize }}]", "{\"n\":\" \"}", "[ ]");
    R("{{ n | upcase }}", "{\"n\":12}", "12");
    RFAIL("{{ n | upcase }}", "{\"n\":[1]}", "filter 'upcase' cannot take a list");
}

static void test_filter_truncate(void **state)
{
    (void)state;
    R("{{ s | truncate: 8 }}", "{\"s\":\"Hello world\"}", "Hello...");
    R("{{ s | truncate: 20 }}", "{\"s\":\"Hello world\"}", "Hello world");
    R("{{ s | truncate: 5, '…' }}", "{\"s\":\"感谢您的支持与厚爱\"}", "感谢您的…");
    R("{{ s | truncate: 3, '' }}", "{\"s\":\"😀😀😀😀\"}", "😀😀😀");
    R("{{ s | truncate: 2 }}", "{\"s\":\"abcdef\"}", "...");
    R("{{ s | truncate }}", "{\"s\":\"short\"}", "short");
    /* Lengths past any string, either way: not converted to an integer (fuzz found 1e66). */
    R("{{ s | truncate: n }}", "{\"s\":\"abcdef\",\"n\":1e66}", "abcdef");
    R("{{ s | truncate: n }}", "{\"s\":\"abcdef\",\"n\":-1e66}", "...");
    RFAIL("{{ s | truncate: 'x' }}", "{\"s\":\"abc\"}", "the length must be a number");
}

static void test_filter_size_join(void **state)
{
    (void)state;
    R("{{ l | size }} {{ s | size }} {{ o | size }} {{ m | size }}",
      "{\"l\":[1,2,3],\"s\":\"你好\",\"o\":{\"a\":1},\"m\":null}", "3 2 1 0");
    R("{{ l | join }}", "{\"l\":[\"a\",\"b\"]}", "a b");
    R("{{ l | join: '、' }}", "{\"l\":[\"洗发水\",\"护发素\",3]}", "洗发水、护发素、3");
    R("[{{ l | join: ', ' }}]", "{\"l\":[]}", "[]");
    RFAIL("{{ l | join }}", "{\"l\":[{\"a\":1}]}", "the list holds an object");
    RFAIL("{{ n | size }}", "{\"n\":3}", "filter 'size' cannot take a number");
}

static void test_filter_math(void **state)
{
    (void)state;
    R("{{ n | plus: 2 }}", "{\"n\":3}", "5");
    R("{{ n | minus: 0.5 }}", "{\"n\":3}", "2.5");
    R("{{ n | times: 3 }}", "{\"n\":\"1.5\"}", "4.5");
    R("{{ n | round }}", "{\"n\":2.5}", "3");
    R("{{ n | round: 1 }}", "{\"n\":3.14159}", "3.1");
    R("{{ n | plus: m }}", "{\"n\":1,\"m\":2}", "3");
    RFAIL("{{ n | plus: 1 }}", "{\"n\":\"abc\"}", "filter 'plus': 'abc' is not a number");
    RFAIL("{{ n | times: 'x' }}", "{\"n\":1}", "the argument is text, not a number");
}

static void test_filter_date(void **state)
{
    (void)state;
    /* 2026-03-01T01:30:00Z is 09:30 in Shanghai, still Feb 28 in New York. */
    R("{{ t | date: '%Y-%m-%d %H:%M' }}", "{\"t\":1772328600}", "2026-03-01 09:30");
    R("{{ t | date: '%m月%d日' }}", "{\"t\":1772328600}", "03月01日");
    R("{{ t | date: '%-m月%-d日' }}", "{\"t\":\"2026-03-01T01:30:00Z\"}", "3月1日");
    struct template_env ny = {"America/New_York", NULL, 0};
    check_env("{{ t | date: '%Y-%m-%d %H:%M %z' }}", "{\"t\":1772328600}", &ny, "2026-02-28 20:30 -0500", NULL);
    /* Summer time in New York: -04:00. */
    check_env("{{ t | date: '%H:%M %z' }}", "{\"t\":1782912600}", &ny, "09:30 -0400", NULL);
    /* A calendar date stays that date in every zone. */
    check_env("{{ b | date: '%d/%m %A' }}", "{\"b\":\"1990-05-17\"}", &ny, "17/05 Thursday", NULL);
    R("{{ 'now' | date: '%Y' }}", "{}", "2026");
    RFAIL("{{ t | date: '%Y' }}", "{\"t\":\"soon\"}", "filter 'date': 'soon' is not a time");
    RFAIL("{{ t | date: '%Y' }}", "{\"t\":[1]}", "filter 'date': a list is not a time");
}

static void test_filter_money(void **state)
{
    (void)state;
    R("{{ p | money }}", "{\"p\":1234.5}", "\xC2\xA5" "1,234.50");
    R("{{ p | money }}", "{\"p\":0}", "\xC2\xA5" "0.00");
    R("{{ p | money }}", "{\"p\":1234567.891}", "\xC2\xA5" "1,234,567.89");
    R("{{ p | money }}", "{\"p\":-12}", "-\xC2\xA5" "12.00");
    R("{{ p | money }}", "{\"p\":999.999}", "\xC2\xA5" "1,000.00");
    R("{{ p | money: 'USD' }}", "{\"p\":5}", "$5.00");
    R("{{ p | money: 'JPY' }}", "{\"p\":1500}", "\xC2\xA5" "1,500");
    struct template_env eur = {NULL, "EUR", 0};
    check_env("{{ p | money }}", "{\"p\":1000}", &eur, "\xE2\x82\xAC" "1,000.00", NULL);
    struct template_env chf = {NULL, "CHF", 0};
    check_env("{{ p | money }}", "{\"p\":1}", &chf, "CHF 1.00", NULL);
    RFAIL("{{ p | money }}", "{\"p\":\"lots\"}", "'lots' is not a number");
}

static void test_filter_plural_escape(void **state)
{
    (void)state;
    R("{{ n }} {{ n | plural: 'order', 'orders' }}", "{\"n\":1}", "1 order");
    R("{{ n }} {{ n | plural: 'order', 'orders' }}", "{\"n\":3}", "3 orders");
    R("{{ n | plural: 'order', 'orders' }}", "{\"n\":0}", "orders");
    R("{{ s | escape }}", "{\"s\":\"<b>\\\"Tom\\\" & 'Jo'</b>\"}",
      "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jo&#39;&lt;/b&gt;");
}

static void test_html_escaped_by_default(void **state)
{
    (void)state;
    cJSON *v = vars("{\"name\":\"<script>x</script>\",\"b\":\"a&b\"}");
    char err[200];
    template_prog *t = template_compile("<p>Hi {{ name }} {{ b | escape }}</p>", 1, err, sizeof err);
    assert_non_null(t);
    char *out = template_run(t, v, NULL, err, sizeof err);
    /* Escaped once, never twice; the template's own markup stays. */
    assert_string_equal(out, "<p>Hi &lt;script&gt;x&lt;/script&gt; a&amp;b</p>");
    free(out);
    template_free(t);
    cJSON_Delete(v);
}

static void test_tag_if(void **state)
{
    (void)state;
    const char *t = "{% if n > 10 %}big{% elsif n >= 5 %}mid{% else %}small{% endif %}";
    R(t, "{\"n\":11}", "big");
    R(t, "{\"n\":5}", "mid");
    R(t, "{\"n\":1}", "small");
    R("{% if a == 'x' %}y{% endif %}", "{\"a\":\"x\"}", "y");
    R("{% if a != 'x' %}y{% endif %}", "{\"a\":\"x\"}", "");
    R("{% if a < 2 and b <= 3 %}y{% endif %}", "{\"a\":1,\"b\":3}", "y");
    R("{% if a or b and c %}y{% else %}n{% endif %}", "{\"a\":true,\"b\":false,\"c\":true}", "y");
    R("{% if a and b or c %}y{% else %}n{% endif %}", "{\"a\":false,\"b\":true,\"c\":false}", "n");
    R("{% if missing %}y{% else %}n{% endif %}", "{}", "n");
    R("{% if s %}y{% endif %}", "{\"s\":\"\"}", "y");           /* Liquid: "" is truthy */
    R("{% if tags contains 'vip' %}VIP{% endif %}", "{\"tags\":[\"new\",\"vip\"]}", "VIP");
    R("{% if name contains '明' %}ok{% endif %}", "{\"name\":\"王小明\"}", "ok");
    R("{% if c contains 'code' %}ok{% endif %}", "{\"c\":{\"code\":1}}", "ok");
    R("{% if s == blank %}b{% endif %}{% if l == empty %}e{% endif %}", "{\"s\":\"  \",\"l\":[]}", "be");
    R("{% if m == blank %}b{% endif %}{% if x != blank %}nb{% endif %}", "{\"x\":\"v\"}", "bnb");
    R("{% if n == 2 %}two{% endif %}", "{\"n\":\"2\"}", "");    /* no coercion in == */
    RFAIL("{% if a > 1 %}x{% endif %}", "{\"a\":\"abc\"}", "cannot compare text with a number");
    RFAIL("{% if n contains 1 %}x{% endif %}", "{\"n\":5}", "'contains' needs text");
}

static void test_tag_for(void **state)
{
    (void)state;
    const char *items = "{\"items\":[{\"sku\":\"A\",\"qty\":1},{\"sku\":\"B\",\"qty\":2},{\"sku\":\"C\",\"qty\":3}]}";
    R("{% for i in items %}{{ forloop.index }}.{{ i.sku }}x{{ i.qty }}{% if forloop.last %}.{% else %}, {% endif %}{% endfor %}",
      items, "1.Ax1, 2.Bx2, 3.Cx3.");
    R("{% for i in items limit: 2 %}{{ i.sku }}{% endfor %}", items, "AB");
    R("{% for i in items limit: n %}{{ i.sku }}{% endfor %}", "{\"items\":[1,2,3],\"n\":0}", "");
    R("{% for i in items %}{{ forloop.index0 }}{{ forloop.rindex }}{{ forloop.length }}{% if forloop.first %}f{% endif %} {% endfor %}",
      "{\"items\":[5,6]}", "022f 112 ");
    R("{% for t in tags %}{{ t }}{% else %}none{% endfor %}", "{\"tags\":[]}", "none");
    R("{% for t in nothing %}{{ t }}{% endfor %}.", "{}", ".");
    R("{% for v in o %}{{ forloop.key }}={{ v }};{% endfor %}", "{\"o\":{\"a\":1,\"b\":\"x\"}}", "a=1;b=x;");
    R("{% for a in l %}{% for b in l %}{{ a }}{{ b }} {% endfor %}{% endfor %}", "{\"l\":[1,2]}", "11 12 21 22 ");
    /* The loop variable shadows a var of the same name, only inside. */
    R("{% for name in l %}{{ name }}{% endfor %} {{ name }}", "{\"l\":[\"x\"],\"name\":\"Ann\"}", "x Ann");
    RFAIL("{% for i in n %}x{% endfor %}", "{\"n\":5}", "line 1: cannot loop over 'n': it is a number");
    RFAIL("{% for i in s %}x{% endfor %}", "{\"s\":\"abc\"}", "cannot loop over 's': it is text");
}

static void test_tag_raw_comment_whitespace(void **state)
{
    (void)state;
    R("{% raw %}{{ name }} {% if %}{% endraw %}!", "{}", "{{ name }} {% if %}!");
    R("a{% comment %} {{ anything | bogus }} {% endcomment %}b", "{}", "ab");
    R("a  {{- x -}}  b", "{\"x\":\"X\"}", "aXb");
    R("<{%- if true -%}\n  y\n{%- endif -%}>", "{}", "<y>");
    R("line1\n{% if a %}\nA\n{% endif %}\n", "{\"a\":true}", "line1\n\nA\n\n");
}

static void test_limits(void **state)
{
    (void)state;
    /* 1,001 iterations: the render fails whole, not cut short. */
    {
        char json[16000] = "{\"l\":[";
        for (int i = 0; i < 1001; i++)
            strcat(json, i ? ",1" : "1");
        strcat(json, "]}");
        RFAIL("{% for x in l %}.{% endfor %}", json, "more than 1000 loop iterations");
        RFAIL("{% for a in l %}{% for b in l %}.{% endfor %}{% endfor %}", "{\"l\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32]}",
              "more than 1000 loop iterations");
    }
    char *big = repeat("x", 40000);
    char json[40100];
    snprintf(json, sizeof json, "{\"s\":\"%s\"}", big);
    RFAIL("{{ s }}{{ s }}", json, "over 65536 bytes");
    free(big);
    /* The limit holds to the byte, also for a text long enough that the
     * first output buffer is sized near the limit: 65,536 bytes render, one
     * more fails. */
    {
        char *text = repeat("y", 60000);
        char *tail = repeat("z", 5536);
        char vars[5600];
        snprintf(vars, sizeof vars, "{\"t\":\"%s\"}", tail);
        char *exact = xasprintf("%s{{ t }}", text);
        char *expect = xasprintf("%s%s", text, tail);
        R(exact, vars, expect);
        char *over = xasprintf("%s{{ t }}!", text);
        RFAIL(over, vars, "over 65536 bytes");
        free(exact);
        free(expect);
        free(over);
        free(text);
        free(tail);
    }
    /* 20 nested blocks compile, 21 do not. */
    char text[2000] = "", tail[2000] = "";
    for (int i = 0; i < 20; i++) {
        strcat(text, "{% if true %}");
        strcat(tail, "{% endif %}");
    }
    char ok[4100];
    snprintf(ok, sizeof ok, "%sdeep%s", text, tail);
    R(ok, "{}", "deep");
    snprintf(ok, sizeof ok, "{%% for x in l %%}%sdeep%s{%% endfor %%}", text, tail);
    check_compile_err(ok, "nested more than 20 deep", "column");
}

static void test_compile_errors(void **state)
{
    (void)state;
    check_compile_err("Hi {{name|friend}}", "unknown filter 'friend'", "write {{ name | default: \"friend\" }}");
    check_compile_err("Hi {{name|dear friend}}", "v1 default form: write {{ name | default: \"dear friend\" }}",
                      "byte 11");
    check_compile_err("Hi {{name|亲爱的}}", "write {{ name | default: \"亲爱的\" }}", NULL);
    check_compile_err("{{ name | upcse }}", "line 1, column 11 (byte 11): unknown filter 'upcse' (did you mean 'upcase'?)", NULL);
    check_compile_err("{{ x | frobnicate: 1 }}", "unknown filter 'frobnicate'", NULL);
    check_compile_err("ok\n  {% unless x %}{% endunless %}", "line 2, column 6 (byte 9): unknown tag 'unless'", NULL);
    check_compile_err("{% if a %}x", "line 1, column 1 (byte 1): this block is never closed (no {% endif %})", NULL);
    check_compile_err("{% for a in b %}x{% endif %}", "'{% endif %}' without the block", NULL);
    check_compile_err("{% endfor %}", "without the block it closes", NULL);
    check_compile_err("你好 {{ name", "line 1, column 4 (byte 8): '{{' is never closed", NULL);
    check_compile_err("{% if a %", "never closed", NULL);
    check_compile_err("{{ }}", "expected a variable or a value", NULL);
    check_compile_err("{{ a..b }}", "expected '|' or the end of the output, found '.'", NULL);
    check_compile_err("{{ first name }}", "found 'name'", NULL);
    check_compile_err("{{ x | date }}", "filter 'date' takes 1 argument, not 0", NULL);
    check_compile_err("{{ x | truncate: 1, 2, 3 }}", "takes 0 to 2 arguments, not 3", NULL);
    check_compile_err("{{ x | default: 'a }}", "never closed", NULL);
    check_compile_err("{% if a === b %}{% endif %}", "expected", NULL);
    check_compile_err("{% for in l %}{% endfor %}", "expected 'in'", NULL);
    check_compile_err("{% for x in l limit 2 %}{% endfor %}", "':' after limit", NULL);
    check_compile_err("{% raw %}never closed", "{% raw %} is never closed", NULL);
    check_compile_err("{% else %}", "without the block", NULL);
    check_compile_err("{% if a %}{% else %}{% else %}{% endif %}", "without the block", NULL);
}

/* --- template_vars ------------------------------------------------------ */

static void test_vars_list(void **state)
{
    (void)state;
    struct seen s = {0};
    char err[128] = "";
    int r = template_vars("Hi {{ name | default: 'x' }}, code {{ coupon.code }}."
                          "{% if vip %}{% for i in items %}{{ i.sku }}{{ forloop.index }}{% endfor %}{% endif %}",
                          on_var, &s, err, sizeof err);
    assert_int_equal(r, 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.path[0], "name");
    assert_int_equal(s.has_default[0], 1);
    assert_int_equal(s.offset[0], 7);
    assert_string_equal(s.path[1], "coupon.code");
    assert_int_equal(s.has_default[1], 0);
    assert_string_equal(s.path[2], "vip");
    assert_int_equal(s.has_default[2], 1);
    assert_string_equal(s.path[3], "items");     /* i.sku and forloop are the loop's */
    assert_int_equal(s.has_default[3], 1);
}

static void test_vars_guarded(void **state)
{
    (void)state;
    struct seen s = {0};
    /* inside {% if coupon %} a missing coupon never reaches the output */
    assert_int_equal(template_vars("{% if coupon %}{{ coupon.code }}{% endif %}{{ gift.code }}"
                                   "{% if vip %}{{ coupon.value }}{% endif %}", on_var, &s, NULL, 0), 0);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.path[1], "coupon.code");
    assert_int_equal(s.has_default[1], 1);
    assert_string_equal(s.path[2], "gift.code");
    assert_int_equal(s.has_default[2], 0);
    assert_string_equal(s.path[4], "coupon.value");
    assert_int_equal(s.has_default[4], 0);
}

static void test_vars_malformed(void **state)
{
    (void)state;
    char err[256] = "";
    struct seen s = {0};
    assert_int_equal(template_vars("Hi {{name", on_var, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "byte 4"));
    assert_int_equal(template_vars("plain {text}", on_var, &s, NULL, 0), 0);
    assert_int_equal(s.n, 0);
}

static void test_skeleton(void **state)
{
    (void)state;
    char *s = template_skeleton("Go https://x.cn/r/{{ sku }} now{% if a %} A{% else %} B{% endif %}");
    assert_string_equal(s, "Go https://x.cn/r/X now A B");
    free(s);
    assert_null(template_skeleton("{{ broken"));
}

/* --- SMS ---------------------------------------------------------------- */

static void test_sms_ascii(void **state)
{
    (void)state;
    check_sms("a", 160, 0, 160, 1);
    check_sms("a", 161, 0, 161, 2);
    check_sms("a", 306, 0, 306, 2);
    check_sms("a", 307, 0, 307, 3);
}

static void test_sms_empty(void **state)
{
    (void)state;
    struct sms_info in = measure("");
    assert_int_equal(in.unicode, 0);
    assert_int_equal(in.units, 0);
    assert_int_equal(in.segments, 0);
}

static void test_sms_extension(void **state)
{
    (void)state;
    struct sms_info in = measure("{}[]~^|\\\xE2\x82\xAC\f");     /* ... € FF */
    assert_int_equal(in.unicode, 0);
    assert_int_equal(in.units, 20);
    /* 80 euro signs fill one segment; one more character spills over. */
    check_sms("\xE2\x82\xAC", 80, 0, 160, 1);
    check_sms("[", 81, 0, 162, 2);
}

static void test_sms_gsm_basic(void **state)
{
    (void)state;
    /* The whole non-ASCII basic set stays GSM-7 at one septet each. */
    const char *basic = "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà";
    struct sms_info in = measure(basic);
    assert_int_equal(in.unicode, 0);
    assert_int_equal(in.units, 39);
    in = measure("@$_!\"#%&'()*+,-./:;<=>?\r\n");
    assert_int_equal(in.unicode, 0);
    assert_int_equal(in.units, 25);
    /* Look-alikes outside GSM 03.38 switch to UCS-2. */
    assert_int_equal(measure("ç").unicode, 1);       /* only capital Ç is GSM */
    assert_int_equal(measure("á").unicode, 1);
    assert_int_equal(measure("`").unicode, 1);
    assert_int_equal(measure("a\tb").unicode, 1);
    assert_int_equal(measure("α").unicode, 1);       /* Greek lower case */
}

static void test_sms_chinese(void **state)
{
    (void)state;
    check_sms("中", 70, 1, 70, 1);
    check_sms("中", 71, 1, 71, 2);
    check_sms("中", 134, 1, 134, 2);
    check_sms("中", 135, 1, 135, 3);
}

static void test_sms_emoji(void **state)
{
    (void)state;
    struct sms_info in = measure("hi \xF0\x9F\x98\x80");      /* U+1F600 */
    assert_int_equal(in.unicode, 1);
    assert_int_equal(in.units, 5);
    assert_int_equal(in.segments, 1);
    check_sms("\xF0\x9F\x98\x80", 35, 1, 70, 1);
    check_sms("\xF0\x9F\x98\x80", 36, 1, 72, 2);
}

static void test_sms_one_cjk_switches(void **state)
{
    (void)state;
    char *s = repeat("a", 100);
    struct sms_info in = measure(s);
    assert_int_equal(in.unicode, 0);
    assert_int_equal(in.segments, 1);
    free(s);

    s = repeat("a", 100);
    s[50] = '\0';
    char text[256];
    snprintf(text, sizeof text, "%s好%s", s, s);
    in = measure(text);
    assert_int_equal(in.unicode, 1);
    assert_int_equal(in.units, 101);
    assert_int_equal(in.segments, 2);
    free(s);
}

static void test_sms_invalid_utf8(void **state)
{
    (void)state;
    struct sms_info in = measure("ab\xFF\xFE");
    assert_int_equal(in.unicode, 1);
    assert_int_equal(in.units, 4);
    in = measure("a\xE4\xB8");                     /* truncated 中 */
    assert_int_equal(in.unicode, 1);
    assert_int_equal(in.units, 3);
    in = measure("\xC0\xAF");                      /* overlong '/' */
    assert_int_equal(in.units, 2);
    in = measure("\xED\xA0\x80");                  /* a UTF-16 surrogate */
    assert_int_equal(in.units, 3);
}

/* --- lint --------------------------------------------------------------- */

static void test_lint_link_glued_cjk(void **state)
{
    (void)state;
    const char *text = "点击https://x.cn/a领取";
    struct findings f = lint(text, NULL, 0, 0);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.errors, 2);
    assert_string_equal(f.msg[0], "link 'https://x.cn/a' needs a space before it");
    assert_int_equal(f.offset[0], 6);
    assert_string_equal(f.msg[1], "link 'https://x.cn/a' needs a space after it");
    assert_int_equal(f.offset[1], 6 + strlen("https://x.cn/a"));
}

static void test_lint_link_spaced(void **state)
{
    (void)state;
    assert_int_equal(lint("点击 https://x.cn/a 领取", NULL, 0, 0).n, 0);
    assert_int_equal(lint("see\thttp://x.cn/a\nbye", NULL, 0, 0).n, 0);
    /* The ideographic space is a space. */
    assert_int_equal(lint("点击\xE3\x80\x80www.x.cn\xE3\x80\x80领取", NULL, 0, 0).n, 0);
}

static void test_lint_link_edges(void **state)
{
    (void)state;
    assert_int_equal(lint("https://x.cn/a is the link", NULL, 0, 0).n, 0);
    assert_int_equal(lint("the link is www.x.cn", NULL, 0, 0).n, 0);
    assert_int_equal(lint("HTTPS://X.CN", NULL, 0, 0).n, 0);
    /* "www." inside a link is not a second link. */
    assert_int_equal(lint("go https://www.x.cn/a now", NULL, 0, 0).n, 0);
}

static void test_lint_link_punctuation(void **state)
{
    (void)state;
    struct findings f = lint("Visit https://x.cn/a.", NULL, 0, 0);
    assert_int_equal(f.errors, 1);
    assert_string_equal(f.msg[0], "link 'https://x.cn/a' needs a space after it");

    f = lint("Visit https://x.cn/a!) now", NULL, 0, 0);
    assert_int_equal(f.errors, 1);

    f = lint("访问 https://x.cn/a。", NULL, 0, 0);
    assert_int_equal(f.errors, 1);
    assert_string_equal(f.msg[0], "link 'https://x.cn/a' needs a space after it");

    f = lint("(www.x.cn)", NULL, 0, 0);
    assert_int_equal(f.errors, 2);
    assert_string_equal(f.msg[0], "link 'www.x.cn' needs a space before it");
}

static void test_lint_blocked(void **state)
{
    (void)state;
    const char *const blocked[] = {"free money", "casino", "", "absent", NULL};
    struct findings f = lint("Get FREE Money at the Casino", blocked, 0, 0);
    assert_int_equal(f.errors, 2);
    assert_string_equal(f.msg[0], "blocked word 'free money'");
    assert_int_equal(f.offset[0], 4);
    assert_string_equal(f.msg[1], "blocked word 'casino'");
    assert_int_equal(f.offset[1], 22);

    const char *const cjk[] = {"赌博", NULL};
    memset(&f, 0, sizeof f);
    assert_int_equal(template_lint_words("不要赌博", cjk, on_lint, &f), 1);
    assert_int_equal(template_lint_words("anything", NULL, on_lint, &f), 0);
    assert_int_equal(template_lint_words("anything", cjk, NULL, NULL), 0);
}

static void test_lint_length(void **state)
{
    (void)state;
    char *s = repeat("中", 143);
    struct findings f = lint(s, NULL, 2, 0.05);
    assert_int_equal(f.errors, 0);
    assert_int_equal(f.warnings, 1);
    assert_int_equal(f.offset[0], 0);
    assert_string_equal(f.msg[0],
                        "3 segments (UCS-2, 143 units), over the limit of 2; costs 3 \xC3\x97 "
                        "the segment price, 0.15 a message at 0.05 a segment");

    /* Without a price the cost is stated in segments only. */
    f = lint(s, NULL, 2, 0);
    assert_int_equal(f.warnings, 1);
    assert_non_null(strstr(f.msg[0], "3 segments (UCS-2, 143 units)"));
    assert_null(strstr(f.msg[0], "a message at"));

    /* At the limit, or with no limit, nothing to say. */
    assert_int_equal(lint(s, NULL, 3, 0.05).n, 0);
    assert_int_equal(lint(s, NULL, 0, 0.05).n, 0);
    free(s);

    s = repeat("a", 161);
    f = lint(s, NULL, 1, 0.1);
    assert_non_null(strstr(f.msg[0], "2 segments (GSM-7, 161 units)"));
    assert_non_null(strstr(f.msg[0], "0.2 a message at 0.1 a segment"));
    free(s);
}

static void test_lint_combined(void **state)
{
    (void)state;
    const char *const blocked[] = {"spam", NULL};
    struct findings f = lint("spam点击www.x.cn", blocked, 0, 0);
    assert_int_equal(f.errors, 2);
    assert_int_equal(template_lint_sms("ok", blocked, 0, 0, NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_simple),
        cmocka_unit_test(test_render_paths),
        cmocka_unit_test(test_render_numbers),
        cmocka_unit_test(test_render_missing),
        cmocka_unit_test(test_filter_default),
        cmocka_unit_test(test_filter_case),
        cmocka_unit_test(test_filter_truncate),
        cmocka_unit_test(test_filter_size_join),
        cmocka_unit_test(test_filter_math),
        cmocka_unit_test(test_filter_date),
        cmocka_unit_test(test_filter_money),
        cmocka_unit_test(test_filter_plural_escape),
        cmocka_unit_test(test_html_escaped_by_default),
        cmocka_unit_test(test_tag_if),
        cmocka_unit_test(test_tag_for),
        cmocka_unit_test(test_tag_raw_comment_whitespace),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_vars_list),
        cmocka_unit_test(test_vars_guarded),
        cmocka_unit_test(test_vars_malformed),
        cmocka_unit_test(test_skeleton),
        cmocka_unit_test(test_sms_ascii),
        cmocka_unit_test(test_sms_empty),
        cmocka_unit_test(test_sms_extension),
        cmocka_unit_test(test_sms_gsm_basic),
        cmocka_unit_test(test_sms_chinese),
        cmocka_unit_test(test_sms_emoji),
        cmocka_unit_test(test_sms_one_cjk_switches),
        cmocka_unit_test(test_sms_invalid_utf8),
        cmocka_unit_test(test_lint_link_glued_cjk),
        cmocka_unit_test(test_lint_link_spaced),
        cmocka_unit_test(test_lint_link_edges),
        cmocka_unit_test(test_lint_link_punctuation),
        cmocka_unit_test(test_lint_blocked),
        cmocka_unit_test(test_lint_length),
        cmocka_unit_test(test_lint_combined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
