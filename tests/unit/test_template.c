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

static void test_render_simple(void **state)
{
    (void)state;
    check_render("Hi {{name}}!", "{\"name\":\"Ann\"}", "Hi Ann!");
    check_render("no placeholders", "{}", "no placeholders");
    check_render("", "{}", "");
    check_render("{{a}}{{b}}", "{\"a\":\"x\",\"b\":\"y\"}", "xy");
    check_render("单 {{name}} 好", "{\"name\":\"小明\"}", "单 小明 好");
}

static void test_render_nested(void **state)
{
    (void)state;
    check_render("Code {{coupon.code}}", "{\"coupon\":{\"code\":\"SAVE10\"}}", "Code SAVE10");
    check_render("{{attrs.baby.name}}", "{\"attrs\":{\"baby\":{\"name\":\"Mia\"}}}", "Mia");
    /* A prefix of a key is not the key. */
    check_render("{{ab|none}}", "{\"abc\":\"x\"}", "none");
    /* Walking through a non-object finds nothing. */
    check_render("{{name.first|?}}", "{\"name\":\"Ann\"}", "?");
}

static void test_render_default(void **state)
{
    (void)state;
    check_render("Hi {{name|friend}}", "{}", "Hi friend");
    check_render("Hi {{name|friend}}", "{\"name\":null}", "Hi friend");
    check_render("Hi {{name|friend}}", "{\"name\":\"\"}", "Hi friend");
    check_render("Hi {{name|friend}}", "{\"name\":\"Bo\"}", "Hi Bo");
    check_render("Hi {{ name | dear friend }}", "{}", "Hi dear friend");
    check_render("[{{name|}}]", "{}", "[]");
    check_render("{{a.b|x}}", "{\"a\":{}}", "x");
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
    check_render("{{n}}", "{\"n\":2.999}", "3");
    check_render("{{n}}", "{\"n\":-0.001}", "0");
    check_render("{{n}}", "{\"n\":1e20}", "100000000000000000000");
}

static void test_render_booleans(void **state)
{
    (void)state;
    check_render("{{a}}/{{b}}", "{\"a\":true,\"b\":false}", "true/false");
}

static void test_render_missing(void **state)
{
    (void)state;
    assert_string_equal(render_err("Code {{coupon.code}}", "{}"),
                        "missing variable 'coupon.code'");
    assert_string_equal(render_err("{{name}}", "{\"name\":null}"), "missing variable 'name'");
    assert_string_equal(render_err("{{name}}", "{\"name\":\"\"}"), "missing variable 'name'");
    /* NULL vars: every placeholder is missing. */
    char err[128];
    assert_null(template_render("{{x}}", NULL, err, sizeof err));
    assert_string_equal(err, "missing variable 'x'");
    char *out = template_render("{{x|d}}", NULL, err, sizeof err);
    assert_string_equal(out, "d");
    free(out);
}

static void test_render_object_value(void **state)
{
    (void)state;
    assert_string_equal(render_err("{{coupon}}", "{\"coupon\":{\"code\":\"A\"}}"),
                        "variable 'coupon' is an object, not text");
    assert_string_equal(render_err("{{tags}}", "{\"tags\":[1,2]}"),
                        "variable 'tags' is an array, not text");
    /* A default does not paper over a structural mistake. */
    check_render("{{coupon|x}}", "{\"coupon\":{}}", NULL);
}

static void test_render_whitespace(void **state)
{
    (void)state;
    check_render("Hi {{ name }}", "{\"name\":\"Ann\"}", "Hi Ann");
    check_render("Hi {{\tname\t}}", "{\"name\":\"Ann\"}", "Hi Ann");
    check_render("{{  coupon.code  |  none  }}", "{}", "none");
}

static void test_render_malformed(void **state)
{
    (void)state;
    const char *e = render_err("Hi {{name", "{\"name\":\"Ann\"}");
    assert_non_null(strstr(e, "unclosed placeholder"));
    assert_non_null(strstr(e, "byte 4"));
    check_render("{{a..b}}", "{}", NULL);
    /* Single braces and a lone "}}" are plain text. */
    check_render("{x} }} {", "{}", "{x} }} {");
}

static void test_render_null_err(void **state)
{
    (void)state;
    assert_null(template_render("{{x}}", NULL, NULL, 0));
}

/* --- template_vars ------------------------------------------------------ */

static void test_vars_list(void **state)
{
    (void)state;
    struct seen s = {0};
    char err[128] = "";
    int r = template_vars("Hi {{name|friend}}, code {{ coupon.code }}.", on_var, &s, err,
                          sizeof err);
    assert_int_equal(r, 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.path[0], "name");
    assert_int_equal(s.has_default[0], 1);
    assert_int_equal(s.offset[0], 4);
    assert_string_equal(s.path[1], "coupon.code");
    assert_int_equal(s.has_default[1], 0);
    assert_int_equal(s.offset[1], 26);
}

static void test_vars_none(void **state)
{
    (void)state;
    struct seen s = {0};
    assert_int_equal(template_vars("plain {text}", on_var, &s, NULL, 0), 0);
    assert_int_equal(s.n, 0);
}

static void expect_malformed(const char *text, const char *what, const char *where)
{
    char err[256] = "";
    struct seen s = {0};
    assert_int_equal(template_vars(text, on_var, &s, err, sizeof err), -1);
    if (!strstr(err, what) || !strstr(err, where))
        fail_msg("'%s': got error '%s', want '%s' and '%s'", text, err, what, where);
}

static void test_vars_malformed(void **state)
{
    (void)state;
    expect_malformed("{{ }}", "empty placeholder", "byte 1");
    expect_malformed("{{}}", "empty placeholder", "byte 1");
    expect_malformed("Hi {{name", "unclosed placeholder '{{name'", "byte 4");
    expect_malformed("ab{{a..b}}", "bad variable name in placeholder '{{a..b}}'", "byte 3");
    expect_malformed("{{.a}}", "bad variable name", "byte 1");
    expect_malformed("{{a.}}", "bad variable name", "byte 1");
    expect_malformed("{{first name}}", "bad variable name", "byte 1");
    expect_malformed("{{|x}}", "bad variable name", "byte 1");
    /* A newline or a new "{{" before "}}" means the first was never closed. */
    expect_malformed("{{name\n}}", "unclosed placeholder", "byte 1");
    expect_malformed("x {{a {{b}}", "unclosed placeholder", "byte 3");
    expect_malformed("{{{{a}}}}", "unclosed placeholder", "byte 1");
}

static void test_vars_reports_before_error(void **state)
{
    (void)state;
    struct seen s = {0};
    char err[128];
    assert_int_equal(template_vars("{{ok}} then {{bad", on_var, &s, err, sizeof err), -1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.path[0], "ok");
    assert_non_null(strstr(err, "byte 13"));
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
        cmocka_unit_test(test_render_nested),
        cmocka_unit_test(test_render_default),
        cmocka_unit_test(test_render_numbers),
        cmocka_unit_test(test_render_booleans),
        cmocka_unit_test(test_render_missing),
        cmocka_unit_test(test_render_object_value),
        cmocka_unit_test(test_render_whitespace),
        cmocka_unit_test(test_render_malformed),
        cmocka_unit_test(test_render_null_err),
        cmocka_unit_test(test_vars_list),
        cmocka_unit_test(test_vars_none),
        cmocka_unit_test(test_vars_malformed),
        cmocka_unit_test(test_vars_reports_before_error),
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
