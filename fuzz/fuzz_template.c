/* fuzz_template — message templates (the Liquid subset): compile as text
 * and as HTML, render against a fixed set of values in a zone with a
 * currency, list the variables, the skeleton, SMS measuring and the lint.
 * The input is the template text. Invariants: a template renders only if
 * it compiles; output stays within TEMPLATE_MAX_OUTPUT; every variable and
 * lint finding points inside the text. */
#include "fuzz.h"
#include "template.h"

static cJSON *vars;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vars = cJSON_Parse("{\"name\":\"Lingling\",\"city\":\"\xe4\xb8\x8a\xe6\xb5\xb7\",\"total\":99.5,"
                       "\"orders\":3,\"vip\":true,\"empty\":\"\",\"none\":null,\"at\":1772416800,"
                       "\"coupon\":{\"code\":\"GIFT20\",\"expires\":\"2026-03-16\"},"
                       "\"items\":[{\"sku\":\"A\",\"n\":2},{\"sku\":\"<b>\",\"n\":1}],\"list\":[1,2,3]}");
    return vars ? 0 : 1;
}

static void on_var(const char *path, int has_default, size_t offset, void *ud)
{
    size_t size = *(size_t *)ud;
    FUZZ_REQUIRE(path && offset <= size, "variable '%s' at %zu of %zu (default %d)", path ? path : "?",
                 offset, size, has_default);
}

static void on_lint(enum lint_level level, size_t offset, const char *message, void *ud)
{
    (void)level;
    size_t size = *(size_t *)ud;
    FUZZ_REQUIRE(message && offset <= size, "lint at %zu of %zu", offset, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* templates are C strings: the text up to the first NUL */
    char *text = xstrndup((const char *)data, size);
    size_t n = strlen(text);
    char err[300];
    struct template_env env = {.tz = "Asia/Shanghai", .currency = "CNY", .now = FUZZ_T0};
    for (int html = 0; html < 2; html++) {
        template_prog *t = template_compile(text, html, err, sizeof err);
        if (!t) {
            FUZZ_REQUIRE(err[0], "a template refused with no reason");
            continue;
        }
        char *out = template_run(t, vars, &env, err, sizeof err);
        if (out) {
            FUZZ_REQUIRE(strlen(out) <= TEMPLATE_MAX_OUTPUT, "output of %zu bytes", strlen(out));
            free(out);
        }
        template_free(t);
    }
    char *out = template_render(text, vars, err, sizeof err);
    free(out);
    template_vars(text, on_var, &n, err, sizeof err);
    free(template_skeleton(text));
    struct sms_info info;
    sms_measure(text, &info);
    static const char *const blocked[] = {"free money", "\xe5\x85\x8d\xe8\xb4\xb9", NULL};
    template_lint_sms(text, blocked, 3, 0.05, on_lint, &n);
    template_lint_words(text, blocked, on_lint, &n);
    free(text);
    return 0;
}
