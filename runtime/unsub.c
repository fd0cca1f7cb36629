/* unsub — signed unsubscribe tokens (see unsub.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <glib.h>

#include "unsub.h"
#include "util.h"

#define SIG_HEX 32      /* 128 bits of the HMAC: plenty against guessing */

char *unsub_store_random(store *st, const char *meta_key)
{
    char *kept = store_meta_get(st, meta_key);
    if (kept)
        return kept;
    unsigned char raw[32];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return NULL;
    char hex[2 * sizeof raw + 1];
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    if (store_meta_set(st, meta_key, hex) != 0)
        return NULL;
    return xstrdup(hex);
}

char *unsub_secret(const char *configured, store *st)
{
    if (configured && *configured)
        return xstrdup(configured);
    const char *env = getenv("TEND_UNSUBSCRIBE_SECRET");
    if (env && *env)
        return xstrdup(env);
    return unsub_store_random(st, "unsubscribe_secret");
}

/* base64url without padding: safe in a URL path. */
static char *b64url(const char *s)
{
    gchar *b = g_base64_encode((const guchar *)s, strlen(s));
    size_t n = strlen(b);
    for (size_t i = 0; i < n; i++)
        b[i] = b[i] == '+' ? '-' : b[i] == '/' ? '_' : b[i];
    while (n && b[n - 1] == '=')
        b[--n] = '\0';
    char *out = xstrdup(b);
    g_free(b);
    return out;
}

static char *unb64url(const char *s, size_t n)
{
    if (n > 4096)
        return NULL;
    char *t = xmalloc(n + 4);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(g_ascii_isalnum(c) || c == '-' || c == '_')) {
            free(t);
            return NULL;
        }
        t[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t m = n;
    while (m % 4) t[m++] = '=';
    t[m] = '\0';
    gsize len = 0;
    guchar *raw = g_base64_decode(t, &len);
    free(t);
    if (!raw || memchr(raw, '\0', len)) {
        g_free(raw);
        return NULL;
    }
    char *out = xstrndup((const char *)raw, len);
    g_free(raw);
    return out;
}

static char *signature(const char *secret, const char *customer, const char *channel)
{
    /* NUL between the two: "ab"+"c" and "a"+"bc" sign differently */
    size_t a = strlen(customer), b = strlen(channel);
    char *msg = xmalloc(a + b + 2);
    memcpy(msg, customer, a + 1);
    memcpy(msg + a + 1, channel, b + 1);
    gchar *hex = g_compute_hmac_for_data(G_CHECKSUM_SHA256, (const guchar *)secret, strlen(secret),
                                         (const guchar *)msg, a + b + 1);
    free(msg);
    char *out = xstrndup(hex, SIG_HEX);
    g_free(hex);
    return out;
}

char *unsub_token(const char *secret, const char *customer, const char *channel)
{
    char *c = b64url(customer), *ch = b64url(channel), *sig = signature(secret, customer, channel);
    char *t = xasprintf("%s.%s.%s", c, ch, sig);
    free(c);
    free(ch);
    free(sig);
    return t;
}

int unsub_verify(const char *secret, const char *token, char **customer, char **channel,
                 char *err, size_t errlen)
{
    *customer = *channel = NULL;
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.') || strlen(d2 + 1) != SIG_HEX) {
        snprintf(err, errlen, "not an unsubscribe link");
        return -1;
    }
    char *c = unb64url(token, (size_t)(d1 - token));
    char *ch = unb64url(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!c || !ch || !*c || !*ch) {
        free(c);
        free(ch);
        snprintf(err, errlen, "not an unsubscribe link");
        return -1;
    }
    char *want = signature(secret, c, ch);
    /* compare without an early exit, so timing says nothing of the secret */
    unsigned diff = 0;
    for (size_t i = 0; i < SIG_HEX; i++)
        diff |= (unsigned)(want[i] ^ d2[1 + i]);
    free(want);
    if (diff) {
        free(c);
        free(ch);
        snprintf(err, errlen, "the unsubscribe link is not valid (its signature does not match)");
        return -1;
    }
    *customer = c;
    *channel = ch;
    return 0;
}
