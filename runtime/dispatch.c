/* dispatch — delivering outbox rows (see dispatch.h).
 *
 * The file is in four parts: building a request from a row (http body,
 * smtp message), judging a result (sent / retry / dead), the pass over due
 * rows, and the asynchronous engine (libcurl multi on libevent). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <lauxlib.h>

#include "channel.h"
#include "customer.h"
#include "dispatch.h"
#include "filesink.h"
#include "json.h"
#include "mime.h"
#include "metrics.h"
#include "netloop.h"
#include "outbox.h"
#include "policy.h"
#include "task.h"
#include "unsub.h"
#include "util.h"
#include "validate.h"

#define LEASE (2 * TEND_MINUTE)     /* a claimed row is retried after this if nothing is heard */
#define MAX_RESPONSE 2048           /* bytes of a provider's answer kept */

/* --- a row and its request --------------------------------------------- */

struct row {
    int64_t id;
    tend_time due_at;
    char *customer, *channel, *category, *body, *key, *template_name, *journey;
    int attempts;
    /* the customer, read with the row: for the policy re-check and `to` */
    struct policy_facts facts;
    char *timezone, *phone, *email, *name;
    char *texts;                /* one block holding every string above */
};

static void row_free(struct row *r)
{
    free(r->texts);
}

/* Channel settings read for one delivery. */
struct chan_conf {
    enum channel_kind kind;
    char *url, *method, *from, *user, *password, *to_field, *envelope_from;
    struct curl_slist *headers;
    int has_body_fn;
    int success[16], nsuccess;
    long timeout_ms, connect_timeout_ms;
    int max_attempts;
    int max_backoff;            /* seconds */
    int concurrency;
    double rate;
    struct policy_window window;    /* `window` / `days`: rechecked at delivery */
    /* http: what an easy handle is set up with, once (url, method, login,
     * timeouts); a kept handle set up the same is reused as it is */
    char *setup;
};

static void chan_conf_free(struct chan_conf *c)
{
    free(c->url);
    free(c->method);
    free(c->from);
    free(c->user);
    free(c->password);
    free(c->to_field);
    free(c->envelope_from);
    free(c->setup);
    curl_slist_free_all(c->headers);
}

/* "Bearer ${SMS_KEY}" → the value with environment variables filled in;
 * secrets stay out of scripts and out of the store. */
static char *expand_env(const char *s, char *err, size_t errlen)
{
    strbuf b;
    strbuf_init(&b);
    while (*s) {
        const char *open = strstr(s, "${");
        if (!open) {
            strbuf_puts(&b, s);
            break;
        }
        strbuf_add(&b, s, (size_t)(open - s));
        const char *close = strchr(open, '}');
        if (!close) {
            strbuf_puts(&b, open);
            break;
        }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(close - open - 2), open + 2);
        const char *v = getenv(name);
        if (!v) {
            snprintf(err, errlen, "environment variable %s is not set", name);
            strbuf_free(&b);
            return NULL;
        }
        strbuf_puts(&b, v);
        s = close + 1;
    }
    return strbuf_take(&b);
}

static char *opt_string(lua_State *L, int t, const char *k, const char *def, char *err, size_t errlen,
                        int *failed)
{
    lua_getfield(L, t, k);
    const char *v = lua_isstring(L, -1) ? lua_tostring(L, -1) : def;
    char *out = v ? expand_env(v, err, errlen) : NULL;
    if (v && !out)
        *failed = 1;
    lua_pop(L, 1);
    return out;
}

static int opt_int(lua_State *L, int t, const char *k, int def)
{
    lua_getfield(L, t, k);
    int v = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

static int read_conf_table(engine *e, const char *name, struct chan_conf *c, char *err, size_t errlen);

/* Reads the channel's settings (the Lua stack is left as it was). */
static int read_conf(engine *e, const char *name, struct chan_conf *c, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    int rc = read_conf_table(e, name, c, err, errlen);
    lua_settop(L, top);
    return rc;
}

static int read_conf_table(engine *e, const char *name, struct chan_conf *c, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    memset(c, 0, sizeof *c);
    struct channel_info info;
    channel_push(e, name, &info);
    c->kind = info.kind;
    c->max_attempts = 10;
    c->max_backoff = 3600;
    c->concurrency = 16;
    c->timeout_ms = 10000;
    c->connect_timeout_ms = 3000;
    c->window.days = 0x7f;
    if (!lua_istable(L, -1))
        return 0;
    int t = lua_gettop(L), failed = 0;
    if (policy_read_window(L, t, &c->window, err, errlen) != 0)
        return -1;      /* checked at load (channel_check): not expected */
    c->url = opt_string(L, t, "url", NULL, err, errlen, &failed);
    c->method = opt_string(L, t, "method", "POST", err, errlen, &failed);
    c->from = opt_string(L, t, "from", NULL, err, errlen, &failed);
    c->user = opt_string(L, t, "username", NULL, err, errlen, &failed);
    c->password = opt_string(L, t, "password", NULL, err, errlen, &failed);
    c->to_field = opt_string(L, t, "address", NULL, err, errlen, &failed);
    if (!c->to_field)
        c->to_field = opt_string(L, t, "to", NULL, err, errlen, &failed);
    c->envelope_from = opt_string(L, t, "envelope_from", NULL, err, errlen, &failed);
    c->max_attempts = opt_int(L, t, "max_attempts", 10);
    c->max_backoff = opt_int(L, t, "max_backoff", 3600);
    c->concurrency = opt_int(L, t, "concurrency", 16);
    lua_getfield(L, t, "timeout");
    lua_getfield(L, t, "connect_timeout");
    /* seconds, fractions allowed; never 0, which libcurl reads as "none" */
    if (lua_isnumber(L, -2) && lua_tonumber(L, -2) > 0)
        c->timeout_ms = (long)(lua_tonumber(L, -2) * 1000) > 0 ? (long)(lua_tonumber(L, -2) * 1000) : 1;
    if (lua_isnumber(L, -1) && lua_tonumber(L, -1) > 0)
        c->connect_timeout_ms = (long)(lua_tonumber(L, -1) * 1000) > 0 ? (long)(lua_tonumber(L, -1) * 1000) : 1;
    lua_pop(L, 2);
    lua_getfield(L, t, "rate");
    c->rate = lua_tonumber(L, -1);
    lua_getfield(L, t, "body");
    c->has_body_fn = lua_isfunction(L, -1);
    lua_pop(L, 2);
    if (lua_getfield(L, t, "success") == LUA_TTABLE) {
        for (int i = 1; i <= (int)lua_rawlen(L, -1) && c->nsuccess < 16; i++) {
            lua_rawgeti(L, -1, i);
            c->success[c->nsuccess++] = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, t, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (!failed && lua_next(L, -2)) {
            char *v = lua_isstring(L, -1) ? expand_env(lua_tostring(L, -1), err, errlen) : NULL;
            char why[160];
            if (v && validate_text(v, strlen(v), VALIDATE_SINGLE_LINE, why, sizeof why) != 0) {
                /* a line break from the settings or ${ENV} would add headers */
                snprintf(err, errlen, "header '%s': %s", lua_tostring(L, -2), why);
                free(v);
                v = NULL;
            }
            if (!v) {
                failed = 1;
            } else {
                char *h = xasprintf("%s: %s", lua_tostring(L, -2), v);
                c->headers = curl_slist_append(c->headers, h);
                free(h);
                free(v);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (failed)
        return -1;
    if ((c->kind == CHANNEL_HTTP || c->kind == CHANNEL_SMTP) && !c->url) {
        snprintf(err, errlen, "channel '%s' has no url", name);
        return -1;
    }
    if (c->kind == CHANNEL_HTTP)
        c->setup = xasprintf("%s\n%s\n%s\n%s\n%ld\n%ld", c->url, c->method, c->user ? c->user : "",
                             c->password ? c->password : "", c->timeout_ms, c->connect_timeout_ms);
    return 0;
}

/* The message as channel code sees it. */
static void push_message(engine *e, lua_State *L, const struct row *r, const cJSON *body)
{
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, r->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, r->key);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, r->channel);
    lua_setfield(L, -2, "channel");
    lua_pushstring(L, r->template_name ? r->template_name : "");
    lua_setfield(L, -2, "template");
    lua_pushstring(L, r->category);
    lua_setfield(L, -2, "category");
    json_push(L, cJSON_GetObjectItemCaseSensitive(body, "text"));
    lua_setfield(L, -2, "text");
    json_push(L, cJSON_GetObjectItemCaseSensitive(body, "subject"));
    lua_setfield(L, -2, "subject");
    json_push(L, cJSON_GetObjectItemCaseSensitive(body, "html"));
    lua_setfield(L, -2, "html");
    if (!customer_push(e, L, r->customer)) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushstring(L, r->customer);
        lua_setfield(L, -2, "id");
    }
    lua_setfield(L, -2, "customer");
}

/* s as a JSON string, escaped as cJSON prints it (the bytes an http
 * channel's body had when it was printed from a cJSON object) */
static void put_json_string(strbuf *b, const char *s)
{
    strbuf_json_string(b, s, strlen(s));
}

/* The JSON sent to an http channel: the channel's body(msg) if it has one,
 * else {id, channel, customer, to, template, text, subject}. */
static char *http_payload(engine *e, const struct row *r, const struct chan_conf *c, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    char *out = NULL;
    if (c->has_body_fn) {
        cJSON *body = cJSON_Parse(r->body);
        int t = lua_gettop(L);
        struct channel_info info;
        channel_push(e, r->channel, &info);
        lua_getfield(L, -1, "body");
        push_message(e, L, r, body);
        if (sandbox_pcall(e->sb, L, 1, 1) != LUA_OK) {
            snprintf(err, errlen, "channel '%s' body(): %s", r->channel, lua_tostring(L, -1));
        } else if (lua_isstring(L, -1)) {
            out = xstrdup(lua_tostring(L, -1));
        } else {
            out = json_encode(L, -1, err, errlen);
        }
        lua_settop(L, t);
        cJSON_Delete(body);
    } else {
        /* written as json_print would print the object {id, channel,
         * customer, to, template} (the same bytes), without building it */
        const char *field = c->to_field ? c->to_field : "phone";
        size_t bl = strlen(r->body);
        strbuf b;
        strbuf_init(&b);
        b.s = xmalloc(b.cap = 128 + strlen(r->key) + strlen(r->customer) + bl);
        b.s[0] = 0;
        strbuf_puts(&b, "{\"id\":");
        put_json_string(&b, r->key);
        strbuf_puts(&b, ",\"channel\":");
        put_json_string(&b, r->channel);
        strbuf_puts(&b, ",\"customer\":");
        put_json_string(&b, r->customer);
        strbuf_puts(&b, ",\"to\":");
        if (!strcmp(field, "phone") || !strcmp(field, "email")) {
            const char *to = field[0] == 'p' ? r->phone : r->email;
            if (to)
                put_json_string(&b, to);
            else
                strbuf_puts(&b, "null");
        } else {
            cJSON *who = customer_json(e, r->customer);
            const cJSON *to = who ? json_path(who, field) : NULL;
            cJSON *copy = to ? cJSON_Duplicate(to, 0) : NULL;   /* as it always was: not recursive */
            char *v = copy ? json_print(copy) : NULL;
            strbuf_puts(&b, v ? v : "null");
            free(v);
            cJSON_Delete(copy);
            cJSON_Delete(who);
        }
        if (r->template_name) {
            strbuf_puts(&b, ",\"template\":");
            put_json_string(&b, r->template_name);
        }
        /* The stored body is an object printed by json_print (outbox.c):
         * its members follow ours as they are, not parsed and reprinted. */
        if (bl > 2 && r->body[0] == '{' && r->body[bl - 1] == '}') {
            strbuf_putc(&b, ',');
            strbuf_add(&b, r->body + 1, bl - 1);
        } else {
            strbuf_putc(&b, '}');
        }
        out = strbuf_take(&b);
    }
    return out;
}

/* The one-click unsubscribe URL for a marketing email: the public base
 * (config public_url, else http://<listen>) + /v1/unsubscribe/<token>. */
static char *unsubscribe_url(engine *e, const struct row *r)
{
    char *secret = unsub_secret(e->cfg.unsubscribe_secret, e->st);
    if (!secret)
        return NULL;
    char *token = unsub_token(secret, r->customer, r->channel);
    char *url = e->cfg.public_url ? xasprintf("%s/v1/unsubscribe/%s", e->cfg.public_url, token)
                                  : xasprintf("http://%s/v1/unsubscribe/%s", e->cfg.listen, token);
    free(token);
    free(secret);
    return url;
}

/* The RFC 5322 message for a row (mime.c builds it); NULL with err. */
static char *smtp_payload(engine *e, const struct row *r, const struct chan_conf *c, char *err, size_t errlen)
{
    cJSON *body = cJSON_Parse(r->body);
    const cJSON *subject = cJSON_GetObjectItemCaseSensitive(body, "subject");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(body, "text");
    const cJSON *html = cJSON_GetObjectItemCaseSensitive(body, "html");
    char *unsub = r->category && strcmp(r->category, "marketing") == 0 ? unsubscribe_url(e, r) : NULL;
    char *salt = unsub_store_random(e->st, "message_id_salt");
    struct mime_mail m = {
        .from = c->from ? c->from : "tend@localhost",
        .to = r->email,
        .to_name = r->name,
        .subject = cJSON_IsString(subject) ? subject->valuestring : NULL,
        .text = cJSON_IsString(text) ? text->valuestring : "",
        .html = cJSON_IsString(html) ? html->valuestring : NULL,
        .key = r->key,
        .date = engine_now(e),
        .unsubscribe_url = unsub,
        .id_salt = salt,
    };
    char *out = mime_build(&m, err, errlen);
    free(unsub);
    free(salt);
    cJSON_Delete(body);
    return out;
}

/* --- one transfer ------------------------------------------------------ */

struct transfer {
    struct dispatcher *d;
    struct transfer *prev, *next;   /* in flight: the dispatcher's list */
    CURL *easy;
    struct easy_setup *setup;   /* the easy handle's (chan_conf.setup), or NULL: reset when kept */
    int64_t id;
    int attempts, max_attempts, max_backoff;
    int nsuccess, success[16];
    enum channel_kind kind;
    char *channel;
    tend_time due_at;           /* when the row became deliverable (latency metric) */
    tend_time lease;            /* the claim's: where its queue entry waits (0: not known) */
    struct curl_slist *headers, *rcpt;
    /* An http request's headers when its channel sets none of its own: the
     * list lives here (libcurl only reads it), no node or copy allocated */
    struct curl_slist inline_headers[3];
    char key_header[96];
    char *payload;
    size_t payload_len, payload_off;
    strbuf response;
    long retry_after;           /* seconds, from a 429 */
    CURLcode result;
    long status;
    char errbuf[CURL_ERROR_SIZE];
};

/* What an http channel's easy handle was set up with, kept with the
 * handle: the setup's text (chan_conf.setup), which a handle taken for the
 * same channel must match, and the channel's URL parsed once (the handle's
 * CURLOPT_CURLU: libcurl copies it at each transfer instead of parsing
 * CURLOPT_URL again, ~10k instructions a request less, callgrind), or NULL
 * when it was set as CURLOPT_URL. */
struct easy_setup {
    CURLU *url;
    char text[];
};

static struct easy_setup *easy_setup_new(const char *text, CURLU *url)
{
    size_t len = strlen(text) + 1;
    struct easy_setup *s = xmalloc(sizeof *s + len);
    s->url = url;
    memcpy(s->text, text, len);
    return s;
}

/* After the handle that used it is reset or cleaned up. */
static void easy_setup_free(struct easy_setup *s)
{
    if (!s)
        return;
    curl_url_cleanup(s->url);
    free(s);
}

static CURL *easy_take(engine *e, const char *setup, struct easy_setup **setup_out);

/* 1 if a variable libcurl may take a proxy from is set: any name ending in
 * _proxy, in either case (http_proxy, HTTPS_PROXY, all_proxy, no_proxy,
 * smtp_proxy, ...). With none, a handle is given CURLOPT_PROXY "", which
 * is what libcurl would conclude at each transfer; with one, libcurl reads
 * them as before. */
static int proxy_in_environment(void)
{
    extern char **environ;
    for (char **v = environ; v && *v; v++) {
        const char *eq = strchr(*v, '=');
        size_t n = eq ? (size_t)(eq - *v) : strlen(*v);
        if (n >= 6 && strncasecmp(*v + n - 6, "_proxy", 6) == 0)
            return 1;
    }
    return 0;
}

static int proxy_for(engine *e);
static void easy_give(struct dispatcher *d, CURL *easy, struct easy_setup *setup);

static void transfer_free(struct transfer *t)
{
    if (t->easy)
        easy_give(t->d, t->easy, t->setup);
    if (t->headers != t->inline_headers)
        curl_slist_free_all(t->headers);
    curl_slist_free_all(t->rcpt);
    free(t->payload);
    free(t->channel);
    strbuf_free(&t->response);
    free(t);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct transfer *t = ud;
    size_t len = size * n;
    if (t->response.len < MAX_RESPONSE)
        strbuf_add(&t->response, p, len < MAX_RESPONSE - t->response.len ? len : MAX_RESPONSE - t->response.len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct transfer *t = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char v[64];
        snprintf(v, sizeof v, "%.*s", (int)(len - 12), p + 12);
        char *end;
        long secs = strtol(v, &end, 10);
        if (end != v && secs >= 0) {
            t->retry_after = secs;
        } else {
            time_t when = curl_getdate(v, NULL);   /* an HTTP date */
            if (when > 0)
                t->retry_after = (long)(when - time(NULL));
        }
    }
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    struct transfer *t = ud;
    size_t left = t->payload_len - t->payload_off, want = size * n;
    size_t k = left < want ? left : want;
    memcpy(buf, t->payload + t->payload_off, k);
    t->payload_off += k;
    return k;
}

/* Builds the transfer for a row, or NULL (err: why it cannot be sent). */
static struct transfer *transfer_new(engine *e, const struct row *r, const struct chan_conf *c,
                                     char *err, size_t errlen)
{
    struct transfer *t = xcalloc(1, sizeof *t);
    strbuf_init(&t->response);
    t->id = r->id;
    t->attempts = r->attempts + 1;
    t->max_attempts = c->max_attempts;
    t->max_backoff = c->max_backoff;
    t->kind = c->kind;
    t->channel = xstrdup(r->channel);
    t->due_at = r->due_at;
    t->nsuccess = c->nsuccess;
    memcpy(t->success, c->success, sizeof t->success);
    CURL *h = t->easy = easy_take(e, c->kind == CHANNEL_HTTP ? c->setup : NULL, &t->setup);
    t->d = e->dispatch;     /* where the handle goes back to */
    if (!t->setup) {
        /* a new or reset handle: what every message of the channel shares;
         * an http channel's URL parsed here, with the flags libcurl parses
         * CURLOPT_URL with (one it cannot parse is left to libcurl, which
         * reports it as before) */
        CURLU *url = c->kind == CHANNEL_HTTP && c->setup ? curl_url() : NULL;
        if (url && curl_url_set(url, CURLUPART_URL, c->url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME)
                       != CURLUE_OK) {
            curl_url_cleanup(url);
            url = NULL;
        }
        if (url)
            curl_easy_setopt(h, CURLOPT_CURLU, url);
        else
            curl_easy_setopt(h, CURLOPT_URL, c->url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        /* with no proxy in the environment, libcurl is told so: it would
         * look five variables up at every transfer (~1.5k instructions),
         * and no_proxy and NO_PROXY two more (~0.6k) */
        if (!proxy_for(e)) {
            curl_easy_setopt(h, CURLOPT_PROXY, "");
            curl_easy_setopt(h, CURLOPT_NOPROXY, "");
        }
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        if (c->user)
            curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
        if (c->password)
            curl_easy_setopt(h, CURLOPT_PASSWORD, c->password);
        if (c->kind == CHANNEL_HTTP) {
            curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
            curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
            if (c->setup)
                t->setup = easy_setup_new(c->setup, url);
        }
    }
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    if (c->kind == CHANNEL_HTTP) {
        t->payload = http_payload(e, r, c, err, errlen);
        if (!t->payload) {
            transfer_free(t);
            return NULL;
        }
        t->payload_len = strlen(t->payload);
        int klen = snprintf(t->key_header, sizeof t->key_header, "Idempotency-Key: %s", r->key);
        if (!c->headers && klen >= 0 && (size_t)klen < sizeof t->key_header) {
            /* the usual request: the same three headers, in the same order;
             * "Expect:" (no 100-continue) only for a body libcurl would ask
             * for one (libcurl does so above 1 KiB, or 1 MiB in newer releases): each
             * header in the list is compared with every name libcurl looks
             * for at every request (~0.7k instructions), and an empty one
             * sends nothing */
            static char content_type[] = "Content-Type: application/json", expect[] = "Expect:";
            t->inline_headers[0] = (struct curl_slist){content_type, &t->inline_headers[1]};
            t->inline_headers[1] = (struct curl_slist){t->key_header,
                                                       t->payload_len > 1024 ? &t->inline_headers[2] : NULL};
            t->inline_headers[2] = (struct curl_slist){expect, NULL};
            t->headers = t->inline_headers;
        } else {
            for (struct curl_slist *s = c->headers; s; s = s->next)
                t->headers = curl_slist_append(t->headers, s->data);
            t->headers = curl_slist_append(t->headers, "Content-Type: application/json");
            char *key = xasprintf("Idempotency-Key: %s", r->key);
            t->headers = curl_slist_append(t->headers, key);
            free(key);
            t->headers = curl_slist_append(t->headers, "Expect:");
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, t->payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)t->payload_len);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
    } else {
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        char why[200];
        if (!r->email || !*r->email) {
            snprintf(err, errlen, "customer %s has no email address", r->customer);
            transfer_free(t);
            return NULL;
        }
        /* An address stored before entries checked them, or by hand: one
         * that is not a plain address (a CR/LF would inject SMTP commands
         * through RCPT TO and headers through To:) is never used. */
        if (validate_email(r->email, why, sizeof why) != 0) {
            snprintf(err, errlen, "customer %s: email address refused: %s", r->customer, why);
            transfer_free(t);
            return NULL;
        }
        t->payload = smtp_payload(e, r, c, err, errlen);
        char name[256], addr[256];
        /* the envelope sender is a bare address: the From's, unless set apart
         * (envelope_from: where bounces go) */
        if (!t->payload || mime_parse_from(c->envelope_from ? c->envelope_from : c->from ? c->from
                                           : "tend@localhost", name, sizeof name, addr, sizeof addr,
                                           err, errlen) != 0) {
            transfer_free(t);
            return NULL;
        }
        t->payload_len = strlen(t->payload);
        char *rcpt = xasprintf("<%s>", r->email);
        t->rcpt = curl_slist_append(NULL, rcpt);
        free(rcpt);
        char *envelope = xasprintf("<%s>", addr);
        curl_easy_setopt(h, CURLOPT_MAIL_FROM, envelope);   /* libcurl copies it */
        free(envelope);
        curl_easy_setopt(h, CURLOPT_MAIL_RCPT, t->rcpt);
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, t);
        curl_easy_setopt(h, CURLOPT_INFILESIZE, (long)t->payload_len);
    }
    return t;
}

/* --- judging a result -------------------------------------------------- */

/* Exponential backoff with ±25% jitter: retries of many messages failing
 * together spread out instead of returning in one wave. The jitter comes
 * from the row id and attempt, so a run is repeatable. */
static tend_time backoff(int64_t id, int attempts, int max_backoff)
{
    double base = 2.0 * pow(2.0, attempts - 1 < 16 ? attempts - 1 : 16);
    if (base > max_backoff)
        base = max_backoff > 0 ? max_backoff : 1;
    uint64_t h = util_hash64(&id, sizeof id) ^ (uint64_t)attempts * 0x9E3779B97F4A7C15ULL;
    double jitter = 0.75 + 0.5 * (double)(h % 1000) / 1000.0;
    tend_time s = (tend_time)(base * jitter);
    return s < 1 ? 1 : s;
}

static int is_success(const struct transfer *t)
{
    if (t->kind == CHANNEL_SMTP)
        return t->result == CURLE_OK;
    if (t->nsuccess == 0)
        return t->status >= 200 && t->status < 300;
    for (int i = 0; i < t->nsuccess; i++)
        if (t->success[i] == t->status)
            return 1;
    return 0;
}

/* Failures to retry, counted over one burst of results: one log line per
 * burst, not one per message. */
struct retry_note {
    int count;
    char last[480];             /* the last one's channel and error */
    int dead;                   /* dead letters among the results */
};

/* Stores what became of a transfer (retries are counted in `note`, or
 * logged one by one without it). */
/* Deliveries of one burst, marked sent together (outbox_mark_sent_many). */
struct sent_batch {
    int64_t *ids;
    const char **responses;     /* the transfers' buffers: freed after the write */
    tend_time *leases;          /* where each one's queue entry is (its claim's lease) */
    int n, cap;
};

static int record_result(engine *e, struct transfer *t, struct retry_note *note, struct sent_batch *sent)
{
    tend_time now = engine_now(e);
    const char *resp = t->response.s;
    if (t->result == CURLE_OK && is_success(t)) {
        e->stats.deliveries++;
        metrics_inc(e->metrics, M_DELIVERIES, t->channel);
        metrics_observe(e->metrics, M_DELIVERY_LATENCY, (const char *const[]){t->channel},
                        metrics_now() - (double)t->due_at);
        if (!sent)
            return outbox_mark_sent(e, t->id, now, resp);
        if (sent->n == sent->cap) {
            sent->cap = sent->cap ? 2 * sent->cap : OUTBOX_BATCH;
            sent->ids = xrealloc(sent->ids, (size_t)sent->cap * sizeof *sent->ids);
            sent->responses = xrealloc(sent->responses, (size_t)sent->cap * sizeof *sent->responses);
            sent->leases = xrealloc(sent->leases, (size_t)sent->cap * sizeof *sent->leases);
        }
        sent->leases[sent->n] = t->lease;
        sent->ids[sent->n] = t->id;
        sent->responses[sent->n++] = resp;
        return 0;
    }
    char error[400];
    int retry;
    if (t->kind == CHANNEL_SMTP) {
        /* a 5xx reply (no such mailbox) will not change; 4xx and lost
         * connections may */
        snprintf(error, sizeof error, "%s (SMTP %ld)",
                 t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result), t->status);
        retry = !(t->status >= 500 && t->status < 600);
    } else if (t->result != CURLE_OK) {
        snprintf(error, sizeof error, "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
        retry = 1;
    } else {
        snprintf(error, sizeof error, "HTTP %ld", t->status);
        retry = t->status >= 500 || t->status == 429 || t->status == 408;
    }
    e->stats.failures++;
    metrics_inc(e->metrics, M_DELIVERY_FAILURES, t->channel);
    if (!retry || t->attempts >= t->max_attempts) {
        metrics_inc(e->metrics, M_DEAD_LETTERS, t->channel);
        if (note)
            note->dead++;
    }
    if (!retry) {
        engine_logf(e, "warn", "message %lld on channel '%s' is a dead letter: %s", (long long)t->id, t->channel,
                    error);
        return outbox_mark_dead(e, t->id, now, error, resp);
    }
    if (t->attempts >= t->max_attempts) {
        char gave[460];
        snprintf(gave, sizeof gave, "gave up after %d attempts: %s", t->attempts, error);
        engine_logf(e, "warn", "message %lld on channel '%s' is a dead letter: %s", (long long)t->id, t->channel,
                    gave);
        return outbox_mark_dead(e, t->id, now, gave, resp);
    }
    if (note) {
        note->count++;
        snprintf(note->last, sizeof note->last, "channel '%.60s': %.400s", t->channel, error);
    } else {
        engine_logf(e, "warn", "message %lld on channel '%s' failed and will be retried: %s", (long long)t->id,
                    t->channel, error);
    }
    tend_time wait = t->status == 429 && t->retry_after > 0 ? t->retry_after : backoff(t->id, t->attempts, t->max_backoff);
    return outbox_mark_retry(e, t->id, now + wait, error);
}

/* --- the asynchronous engine -------------------------------------------- */

struct chan_slot {
    char *name;
    int in_flight, concurrency;
    double rate, tokens, refilled;      /* token bucket, in real seconds */
    /* Claimed transfers waiting for a slot (at most `concurrency`, none for
     * a channel with a `rate`): one starts as soon as a transfer of the
     * channel ends, with no store work in between, so the channel stays
     * busy while results wait to be committed together. */
    struct transfer *ready, *ready_tail;
    int nready;
    /* How many may wait: the channel's concurrency, or twice what it
     * finished during the last commit on the store's thread if more (the
     * claims are written in that commit's transaction, so the claimed-ahead
     * rows are what keeps the channel busy until the next one), at most
     * AHEAD_MAX times the concurrency. */
    int ahead;
    int ended;                  /* transfers ended since that commit started */
};

struct dispatcher {
    engine *e;
    struct event_base *base;
    struct netloop *net;        /* the transfers, on the server's loop */
    struct event *flush;        /* stores finished transfers, once per loop turn */
    int in_flight;
    int nready;                 /* claimed, waiting in their channel's queue */
    struct transfer *active;    /* in flight, so shutdown can free them */
    struct transfer **done;
    int ndone, capdone;
    struct chan_slot *slots;
    int nslots;
    int stopping;               /* claims nothing new (tend run is stopping) */
    int proxy_env;              /* proxy_in_environment() when attached */
    int added;                  /* transfers started by this pass */
    CURL **idle;                /* easy handles kept for the next transfers */
    struct easy_setup **idle_setup;  /* each one's setup, or NULL (reset) */
    int nidle, idle_cap;        /* idle_cap: kept at most (idle_keep) */
    struct sent_batch sent;     /* on_flush's, kept for the next */
    /* on_flush's commit, on the store's thread (store_commit_detach):
     * transfers go on meanwhile; results that end then wait for it */
    struct event *committed;    /* store_commit_detached_fd readable */
    int committing;             /* started, its result not yet read */
    int dead_pending;           /* dead letters in it: work_due once durable */
};

#define IDLE_HANDLES 256            /* kept at least; more for wide channels (idle_keep) */
#define FLUSH_WAIT_US 2000
#define AHEAD_MAX 4                 /* claimed ahead: at most this many times a channel's concurrency */

/* proxy_in_environment() as the dispatcher saw it when attached (a
 * transfer of `tend ingest`, which has none, looks again). */
static int proxy_for(engine *e)
{
    return e->dispatch ? e->dispatch->proxy_env : proxy_in_environment();
}

/* An easy handle: one kept from an ended transfer (its buffers and DNS
 * entries kept), else a new one. Saves an init and a cleanup per message.
 * One set up for `setup` (an http channel's url, method, login, timeouts)
 * is taken as it is and *setup_out owns that setup's text: the options
 * shared by the channel's messages are set once per handle, not once per
 * message (no URL parsed per message). Otherwise *setup_out is NULL and the
 * handle is new or reset. */
static CURL *easy_take(engine *e, const char *setup, struct easy_setup **setup_out)
{
    struct dispatcher *d = e->dispatch;
    *setup_out = NULL;
    if (!d || d->nidle == 0)
        return curl_easy_init();
    if (setup)
        for (int i = d->nidle - 1; i >= 0 && i >= d->nidle - 8; i--)
            if (d->idle_setup[i] && strcmp(d->idle_setup[i]->text, setup) == 0) {
                CURL *h = d->idle[i];
                *setup_out = d->idle_setup[i];
                d->nidle--;
                d->idle[i] = d->idle[d->nidle];
                d->idle_setup[i] = d->idle_setup[d->nidle];
                return h;
            }
    CURL *h = d->idle[--d->nidle];
    if (d->idle_setup[d->nidle]) {
        curl_easy_reset(h);
        easy_setup_free(d->idle_setup[d->nidle]);
    }
    return h;
}

/* How many idle handles are kept: as many as the channels hold at once at
 * most (each transfer in flight or claimed ahead has one: AHEAD_MAX + 1
 * times a channel's concurrency), at least IDLE_HANDLES. Fewer, and a
 * channel of concurrency 128 freed and made again a handle for every
 * second message (callgrind: 1,423 curl_easy_init for 3,000 messages). */
static int idle_keep(const struct dispatcher *d)
{
    int keep = 0;
    for (int i = 0; i < d->nslots; i++)
        keep += (AHEAD_MAX + 1) * d->slots[i].concurrency;
    return keep > IDLE_HANDLES ? keep : IDLE_HANDLES;
}

/* Keeps an ended transfer's handle (with its setup text, taken over), or
 * cleans it up. The options that pointed into the transfer are cleared. */
static void easy_give(struct dispatcher *d, CURL *easy, struct easy_setup *setup)
{
    if (!d || d->nidle == idle_keep(d)) {
        curl_easy_cleanup(easy);
        easy_setup_free(setup);
        return;
    }
    if (d->idle_cap < idle_keep(d)) {
        d->idle_cap = idle_keep(d);
        d->idle = xrealloc(d->idle, (size_t)d->idle_cap * sizeof *d->idle);
        d->idle_setup = xrealloc(d->idle_setup, (size_t)d->idle_cap * sizeof *d->idle_setup);
    }
    if (setup) {
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL);
    } else {
        curl_easy_reset(easy);
    }
    d->idle_setup[d->nidle] = setup;
    d->idle[d->nidle++] = easy;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct chan_slot *slot_of(struct dispatcher *d, const char *name, const struct chan_conf *c)
{
    for (int i = 0; i < d->nslots; i++)
        if (strcmp(d->slots[i].name, name) == 0)
            return &d->slots[i];
    d->slots = xrealloc(d->slots, (size_t)(d->nslots + 1) * sizeof *d->slots);
    struct chan_slot *s = &d->slots[d->nslots++];
    s->name = xstrdup(name);
    s->in_flight = 0;
    s->concurrency = c->concurrency > 0 ? c->concurrency : 16;
    s->rate = c->rate;
    s->tokens = c->rate > 0 ? c->rate : 0;
    s->refilled = mono();
    s->ready = s->ready_tail = NULL;
    s->nready = 0;
    s->ahead = s->concurrency;
    s->ended = 0;
    /* the channel's transfers each get a connection (64 per host unless a
     * channel's concurrency asks for more) */
    netloop_raise_host_connections(d->net, s->concurrency);
    return s;
}

/* 1 if a row of the channel may be claimed ahead, to start when a slot
 * frees (the channel is at its concurrency, not held back by its rate). */
static int can_queue(const struct chan_slot *s)
{
    return s->rate <= 0 && s->in_flight >= s->concurrency && s->nready < s->ahead;
}

/* 1 if the channel may start another transfer now. */
static int slot_take(struct chan_slot *s)
{
    if (s->in_flight >= s->concurrency)
        return 0;
    if (s->rate > 0) {
        double now = mono();
        s->tokens += (now - s->refilled) * s->rate;
        if (s->tokens > s->rate)
            s->tokens = s->rate;
        s->refilled = now;
        if (s->tokens < 1)
            return 0;
        s->tokens -= 1;
    }
    s->in_flight++;
    return 1;
}

static void transfer_done(CURL *easy, CURLcode result, void *ud);

/* Hands a claimed transfer to libcurl (its slot is taken). */
static void start_transfer(struct dispatcher *d, struct transfer *t)
{
    t->prev = NULL;
    t->next = d->active;
    if (d->active)
        d->active->prev = t;
    d->active = t;
    d->in_flight++;
    d->added = 1;
    if (netloop_add(d->net, t->easy, transfer_done, t) != 0)
        transfer_done(t->easy, CURLE_FAILED_INIT, t);   /* stored as a retry */
}

/* A slot of the channel is free: its next claimed transfer goes now. Its
 * claim may still be committing (the pass's fsync): a crash before that
 * leaves the row queued, sent again with the same key. */
static void start_ready(struct dispatcher *d, struct chan_slot *s)
{
    if (!s->ready || s->in_flight >= s->concurrency)
        return;
    struct transfer *t = s->ready;
    s->ready = t->next;
    if (!s->ready)
        s->ready_tail = NULL;
    s->nready--;
    d->nready--;
    s->in_flight++;
    start_transfer(d, t);
}

/* A transfer ended (netloop): it is stored with the others of this loop
 * turn, in one commit. */
static void transfer_done(CURL *easy, CURLcode result, void *ud)
{
    struct transfer *t = ud;
    struct dispatcher *d = t->d;
    t->result = result;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (t->prev)
        t->prev->next = t->next;
    else
        d->active = t->next;
    if (t->next)
        t->next->prev = t->prev;
    if (d->ndone == d->capdone)
        d->done = xrealloc(d->done, (size_t)(d->capdone = d->capdone ? d->capdone * 2 : 64) * sizeof *d->done);
    d->done[d->ndone++] = t;
    d->in_flight--;
    for (int i = 0; i < d->nslots; i++)
        if (strcmp(d->slots[i].name, t->channel) == 0) {
            d->slots[i].in_flight--;
            d->slots[i].ended++;
            start_ready(d, &d->slots[i]);
        }
    /* Stored once the loop has read what is ready: the completions of one
     * turn share a commit. While most transfers are still in flight the
     * commit waits up to FLUSH_WAIT_US for more of them (fewer, larger
     * commits: a page of the outbox is written once for many rows). */
    if (d->ndone * 2 >= d->ndone + d->in_flight || d->stopping) {
        event_active(d->flush, EV_TIMEOUT, 0);
    } else if (!evtimer_pending(d->flush, NULL)) {
        struct timeval tv = {0, FLUSH_WAIT_US};
        evtimer_add(d->flush, &tv);
    }
}

/* on_flush's commit ended (or was settled by another store call): its
 * result is read once; the dead letters in it wake the loop now. */
static void commit_result(struct dispatcher *d)
{
    engine *e = d->e;
    d->committing = 0;
    for (int i = 0; i < d->nslots; i++) {
        struct chan_slot *s = &d->slots[i];
        int want = 2 * s->ended;
        s->ahead = want < s->concurrency ? s->concurrency
                   : want > AHEAD_MAX * s->concurrency ? AHEAD_MAX * s->concurrency : want;
    }
    int dead = d->dead_pending;
    d->dead_pending = 0;
    if (store_commit_detached_result(e->st) != 0)
        engine_logf(e, "error", "storing delivery results failed (they will be retried): %s",
                    store_errmsg(e->st));
    else if (e->work_due && dead)
        e->work_due(e->work_due_ud);
}

static void on_flush(evutil_socket_t fd, short what, void *arg);

static void on_committed(evutil_socket_t fd, short what, void *arg)
{
    struct dispatcher *d = arg;
    if (!d->committing) {
        store_commit_detached_result(d->e->st);   /* read already: empties the eventfd */
        return;
    }
    commit_result(d);
    /* the results that ended during the commit, and the next claims */
    on_flush(fd, what, d);
}

/* Stores every finished transfer in one transaction: one fsync for a burst
 * of deliveries, not one each. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dispatcher *d = arg;
    engine *e = d->e;
    if (!d->ndone)
        return;
    if (store_commit_pending(e->st)) {
        /* ours: commit_ended flushes when it ends; another owner's (the
         * server's): look again shortly rather than wait for its fsync */
        if (!d->committing) {
            struct timeval tv = {0, FLUSH_WAIT_US};
            evtimer_add(d->flush, &tv);
        }
        return;
    }
    if (d->committing)
        commit_result(d);   /* settled by another call: read it first */
    struct retry_note retried = {0, "", 0};
    int rc = store_begin(e->st);
    struct sent_batch *sent = &d->sent;
    sent->n = 0;
    for (int i = 0; i < d->ndone && rc == 0; i++)
        rc = record_result(e, d->done[i], &retried, sent);
    if (rc == 0 && sent->n)
        rc = outbox_mark_sent_many(e, sent->ids, sent->responses, sent->leases, sent->n, engine_now(e));
    for (int i = 0; i < d->ndone; i++)
        transfer_free(d->done[i]);
    d->ndone = 0;
    if (retried.count)
        engine_logf(e, "warn", "%d deliver%s failed and will be retried (last: %s)", retried.count,
                    retried.count == 1 ? "y" : "ies", retried.last);
    /* The freed slots are refilled in the same transaction: one commit
     * (one fsync) stores the results and the next claims together. */
    if (rc == 0 && dispatch_run_due(e, engine_now(e), e->cfg.delivery_batch) < 0)
        rc = -1;
    /* The commit syncs on the store's thread while the loop goes on with
     * the transfers (the claimed-ahead ones start as slots free). Nothing
     * is done on the strength of it before commit_result: every store call
     * waits for it first, and the dead letters' work_due waits for it. */
    if (rc == 0 && d->committed) {
        rc = store_commit_detach(e->st);
        if (rc == 0 && store_commit_pending(e->st)) {
            d->committing = 1;
            for (int i = 0; i < d->nslots; i++)
                d->slots[i].ended = 0;
            d->dead_pending += retried.dead;
            return;
        }
    } else if (rc == 0) {
        rc = store_commit(e->st);
    } else {
        store_rollback(e->st);
    }
    if (rc != 0)
        engine_logf(e, "error", "storing delivery results failed (they will be retried): %s",
                    store_errmsg(e->st));
    /* a dead letter is an event (message.dead, receipt.c): a fallback
     * waiting on it moves on now, not at the loop's next timed pass */
    else if (e->work_due && retried.dead)
        e->work_due(e->work_due_ud);
}

/* Messages a previous process claimed and did not finish (it died, or
 * stopped with transfers in flight) go again now instead of when their
 * lease runs out: with the same key, so a provider that got one already
 * answers it as a replay. Claims are the due rows up to a lease ahead. */
static int release_claims(engine *e)
{
    static const char *const sql[] = {
        "UPDATE outbox SET due_key = ?1 WHERE status = 'sending' AND id IN"
        " (SELECT id FROM outbox_due WHERE due_at > ?1 AND due_at <= ?2)",
        "UPDATE outbox_due SET due_at = ?1 WHERE due_at > ?1 AND due_at <= ?2"
        " AND (SELECT status FROM outbox o WHERE o.id = outbox_due.id) = 'sending'",
    };
    tend_time now = engine_now(e);
    int rc = store_begin(e->st);
    for (int i = 0; i < 2 && rc == 0; i++) {
        store_stmt *s = store_sql(e->st, sql[i]);
        store_bind_int(s, 1, now);
        store_bind_int(s, 2, now + LEASE);
        rc = store_run(s);
    }
    if (rc == 0)
        return store_commit(e->st);
    store_rollback(e->st);
    engine_logf(e, "error", "releasing the claims of a previous run failed: %s", store_errmsg(e->st));
    return -1;
}

int dispatch_attach(engine *e, struct event_base *base)
{
    if (e->dispatch)
        return 0;
    release_claims(e);
    struct dispatcher *d = xcalloc(1, sizeof *d);
    d->e = e;
    d->base = base;
    d->net = netloop_new(base, 64L);
    d->proxy_env = proxy_in_environment();
    d->flush = event_new(base, -1, 0, on_flush, d);
    int commit_fd = store_commit_detached_fd(e->st);
    if (commit_fd >= 0) {
        d->committed = event_new(base, commit_fd, EV_READ | EV_PERSIST, on_committed, d);
        event_add(d->committed, NULL);
    }
    e->dispatch = d;
    return 0;
}

void dispatch_stop_claiming(engine *e)
{
    if (e->dispatch)
        e->dispatch->stopping = 1;
}

int dispatch_in_flight(engine *e)
{
    return e->dispatch ? e->dispatch->in_flight + e->dispatch->nready + e->dispatch->ndone : 0;
}

void dispatch_free(engine *e)
{
    struct dispatcher *d = e->dispatch;
    if (!d)
        return;
    if (d->committing && store_commit_detached_result(e->st) != 0)
        engine_logf(e, "error", "storing delivery results failed (they will be retried): %s",
                    store_errmsg(e->st));
    if (d->committed)
        event_free(d->committed);
    /* Transfers still in flight are abandoned: their rows keep their
     * lease and go again (same key) after it expires, or when `tend run`
     * starts again. */
    while (d->active) {
        struct transfer *t = d->active;
        d->active = t->next;
        if (d->net)
            netloop_remove(d->net, t->easy);
        transfer_free(t);
    }
    for (int i = 0; i < d->ndone; i++)
        transfer_free(d->done[i]);
    free(d->done);
    free(d->sent.ids);
    free(d->sent.responses);
    free(d->sent.leases);
    /* Claimed ahead and never started: their leases run out (or the next
     * `tend run` releases them) and they go then, with the same key. */
    for (int i = 0; i < d->nslots; i++) {
        while (d->slots[i].ready) {
            struct transfer *t = d->slots[i].ready;
            d->slots[i].ready = t->next;
            transfer_free(t);
        }
        free(d->slots[i].name);
    }
    free(d->slots);
    /* last: the transfers freed above gave their handles back */
    for (int i = 0; i < d->nidle; i++) {
        curl_easy_cleanup(d->idle[i]);
        easy_setup_free(d->idle_setup[i]);
    }
    free(d->idle);
    free(d->idle_setup);
    if (d->flush)
        event_free(d->flush);
    netloop_free(d->net);
    free(d);
    e->dispatch = NULL;
}

/* --- the pass over due rows ------------------------------------------- */

/* The row's texts, copied into one block (one malloc a row, not eleven):
 * columns customer, channel, category, body, key, template, journey,
 * timezone, phone, email, name; NULL for SQL NULL. */
static void row_texts(store_stmt *s, struct row *r)
{
    static const int cols[] = {2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 15};
    char **to[] = {&r->customer, &r->channel, &r->category, &r->body, &r->key, &r->template_name,
                   &r->journey, &r->timezone, &r->phone, &r->email, &r->name};
    enum { NTEXTS = sizeof cols / sizeof cols[0] };
    /* each column's text asked for once: it stays valid while the row is
     * current (store_col_bytes after store_col_text converts nothing) */
    const char *text[NTEXTS];
    size_t len[NTEXTS], total = 0;
    for (int i = 0; i < NTEXTS; i++) {
        text[i] = store_col_text(s, cols[i]);
        len[i] = text[i] ? (size_t)store_col_bytes(s, cols[i]) + 1 : 0;
        total += len[i];
    }
    char *p = r->texts = xmalloc(total ? total : 1);
    for (int i = 0; i < NTEXTS; i++) {
        *to[i] = len[i] ? memcpy(p, text[i], len[i]) : NULL;
        p += len[i];
    }
}

/* Due rows with their message and customer, in (due_at, id) order after
 * (after_at, after_id), at most `limit`: one query for a chunk rather than
 * one per row. A due entry whose outbox row is gone has r->customer NULL.
 * The opt-out column is 1 (all channels), 0 (this channel) or NULL: two
 * key lookups, as `channel IN (o.channel, '*')` built a temporary index
 * for every row; LEFT JOINs on the whole key (at most one row each), whose
 * cursors open once a statement, where a correlated subquery opens its
 * own at every row. */
static int read_due(engine *e, tend_time now, tend_time after_at, int64_t after_id, int limit, struct row *rows)
{
    store_stmt *s = store_sql(e->st,
        "SELECT d.due_at, d.id, o.customer, o.channel, o.category, o.body, o.idem_key, o.attempts, o.template,"
        " o.journey, c.blocked, c.timezone, c.phone, c.email,"
        " CASE WHEN sa.customer IS NOT NULL THEN 1 WHEN sc.customer IS NOT NULL THEN 0 END,"
        " c.name"
        " FROM outbox_due d LEFT JOIN outbox o ON o.id = d.id LEFT JOIN customers c ON c.id = o.customer"
        " LEFT JOIN suppressions sa ON sa.customer = o.customer AND sa.channel = '*'"
        " LEFT JOIN suppressions sc ON sc.customer = o.customer AND sc.channel = o.channel"
        " WHERE d.due_at <= ?1 AND (d.due_at, d.id) > (?2, ?3) ORDER BY d.due_at, d.id LIMIT ?4");
    store_bind_int(s, 1, now);
    store_bind_int(s, 2, after_at);
    store_bind_int(s, 3, after_id);
    store_bind_int(s, 4, limit);
    int n = 0;
    int rc;
    while (n < limit && (rc = store_step(s)) == STORE_ROW) {
        struct row *r = &rows[n++];
        memset(r, 0, sizeof *r);
        r->due_at = store_col_int(s, 0);
        r->id = store_col_int(s, 1);
        if (store_col_type(s, 2) == STORE_NULL)
            continue;
        row_texts(s, r);
        r->attempts = (int)store_col_int(s, 7);
        r->facts.blocked = (int)store_col_int(s, 10);
        r->facts.unsubscribed = store_col_type(s, 14) != STORE_NULL;
        r->facts.unsubscribed_all = store_col_int(s, 14) == 1;
        r->facts.timezone = r->timezone;
    }
    store_reset(s);
    return n;
}

/* Appends the message to the file channel's file as one JSON line. */
static int write_file(engine *e, const struct row *r, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    int top = lua_gettop(L);
    struct channel_info info;
    channel_push(e, r->channel, &info);
    char *path = xstrdup(lua_istable(L, -1) && lua_getfield(L, -1, "path") == LUA_TSTRING
                             ? lua_tostring(L, -1) : "outbox.ndjson");
    lua_settop(L, top);
    cJSON *line = cJSON_CreateObject();
    cJSON_AddNumberToObject(line, "id", (double)r->id);
    cJSON_AddStringToObject(line, "key", r->key);
    cJSON_AddStringToObject(line, "channel", r->channel);
    cJSON_AddStringToObject(line, "customer", r->customer);
    if (r->template_name)
        cJSON_AddStringToObject(line, "template", r->template_name);
    cJSON_AddStringToObject(line, "category", r->category);
    cJSON *body = cJSON_Parse(r->body);
    const cJSON *v;
    cJSON_ArrayForEach(v, body) cJSON_AddItemToObject(line, v->string, cJSON_Duplicate(v, 1));
    cJSON_Delete(body);
    char when[40];
    cJSON_AddStringToObject(line, "at", clock_format(engine_now(e), NULL, when, sizeof when));
    char *text = json_print(line);
    cJSON_Delete(line);
    int rc = filesink_append(e, path, text, err, errlen);
    free(text);
    free(path);
    return rc;
}

static int deliver_task(engine *e, const struct row *r, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(e->sb);
    struct channel_info info;
    channel_push(e, r->channel, &info);
    int top = lua_gettop(L);
    /* The channel table doubles as the task spec: its assign rule applies. */
    lua_createtable(L, 0, 2);
    if (lua_istable(L, top)) {
        lua_getfield(L, top, "assign");
        lua_setfield(L, -2, "assign");
    }
    cJSON *body = cJSON_Parse(r->body);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(body, "text");
    lua_pushstring(L, cJSON_IsString(text) ? text->valuestring : "");
    lua_setfield(L, -2, "note");
    cJSON_Delete(body);
    int rc = task_create(e, L, r->journey ? r->journey : r->channel, 0, 0, r->customer, lua_gettop(L), err,
                         errlen);
    lua_settop(L, top - 1);
    return rc;
}

static int claim(engine *e, const struct row *r)
{
    return outbox_claim_many(e, &r->id, &r->due_at, 1, engine_now(e) + LEASE);
}

static int move_due(engine *e, const struct row *r, tend_time due)
{
    store_stmt *s = store_sql(e->st, "UPDATE outbox_due SET due_at = ? WHERE due_at = ? AND id = ?");
    store_bind_int(s, 1, due);
    store_bind_int(s, 2, r->due_at);
    store_bind_int(s, 3, r->id);
    if (store_run(s) != 0)
        return -1;
    s = store_sql(e->st, "UPDATE outbox SET status = 'deferred', due_at = ?1, due_key = ?1 WHERE id = ?2");
    store_bind_int(s, 1, due);
    store_bind_int(s, 2, r->id);
    return store_run(s);
}

/* One pass's view of the channels: settings read once per channel (not per
 * row), and which channels have no free slot left in this pass. */
struct pass {
    struct pass_channel {
        char *name;
        struct chan_conf conf;
        int rc;                 /* read_conf's result */
        char err[300];
        int full;
    } *ch;
    int n;
    /* rows handed to the loop whose claim is still to write (claim_flush),
     * by their outbox_due key */
    int64_t claim_id[OUTBOX_BATCH];
    tend_time claim_due[OUTBOX_BATCH];
    struct transfer *claim_transfer[OUTBOX_BATCH];  /* each learns its lease */
    int nclaim;
};

/* Writes the pass's pending claims: what claim() does for one row, in two
 * statements for up to OUTBOX_BATCH rows. Before the pass's commit, as
 * claim() would be; the transfers may already be with libcurl, which sends
 * nothing before netloop_kick at the pass's end. */
static int claim_flush(engine *e, struct pass *p)
{
    if (!p->nclaim)
        return 0;
    tend_time lease = engine_now(e) + LEASE;
    int rc = outbox_claim_many(e, p->claim_id, p->claim_due, p->nclaim, lease);
    for (int i = 0; i < p->nclaim; i++)
        p->claim_transfer[i]->lease = rc == 0 ? lease : 0;
    p->nclaim = 0;
    return rc;
}

static struct pass_channel *pass_channel(engine *e, struct pass *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->ch[i].name, name) == 0)
            return &p->ch[i];
    p->ch = xrealloc(p->ch, (size_t)(p->n + 1) * sizeof *p->ch);
    struct pass_channel *c = &p->ch[p->n++];
    memset(c, 0, sizeof *c);
    c->name = xstrdup(name);
    c->rc = read_conf(e, name, &c->conf, c->err, sizeof c->err);
    return c;
}

static void pass_free(struct pass *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->ch[i].name);
        chan_conf_free(&p->ch[i].conf);
    }
    free(p->ch);
}

/* The channel's contact window holds at delivery time too (issue 12): a
 * message queued inside it whose retry falls outside waits for the next
 * opening (for marketing, also outside quiet hours) rather than going now.
 * Returns now when it may go. */
static tend_time contact_window(engine *e, const struct policy_window *w, const struct row *r, tend_time now)
{
    if (w->n == 0 && !w->restricted_days)
        return now;
    const char *tz = r->timezone && clock_tz_valid(r->timezone) ? r->timezone : e->cfg.timezone;
    return policy_contact_time(e, w, tz, strcmp(r->category, "marketing") == 0, now);
}

enum outcome { HANDLED = 1, SKIPPED = 0, BLOCKING = 2, FAILED = -1 };

/* One row: HANDLED, SKIPPED (its channel has no free slot), BLOCKING (a
 * claimed transfer in *blocking, to be performed outside the transaction),
 * or FAILED (a store error). */
static int deliver(engine *e, struct pass *p, struct row *r, struct transfer **blocking)
{
    tend_time now = engine_now(e), due;
    char reason[200], err[300] = "";
    struct pass_channel *ch = pass_channel(e, p, r->channel);
    if (ch->full)
        return SKIPPED;
    if (ch->rc != 0) {
        /* A settings problem (a missing secret): keep the message, retry. */
        engine_logf(e, "error", "channel '%s': %s", r->channel, ch->err);
        return outbox_mark_retry(e, r->id, now + TEND_MINUTE, ch->err) == 0 ? HANDLED : FAILED;
    }
    enum channel_kind kind = e->capture ? CHANNEL_CAPTURE : ch->conf.kind;
    int network = kind == CHANNEL_HTTP || kind == CHANNEL_SMTP;
    struct dispatcher *d = e->dispatch;
    /* The slot first: a full channel costs this row nothing more. */
    struct chan_slot *slot = network && d && d->net ? slot_of(d, r->channel, &ch->conf) : NULL;
    int took = slot && slot_take(slot);
    if (slot && !took && !can_queue(slot)) {
        ch->full = 1;
        return SKIPPED;
    }
    int verdict = policy_recheck_facts(e, &r->facts, r->channel, strcmp(r->category, "marketing") == 0, now,
                                       &due, reason, sizeof reason);
    if (verdict == 0 && (due = contact_window(e, &ch->conf.window, r, now)) > now)
        verdict = 2;
    if (verdict != 0) {
        if (took)
            slot->in_flight--;
        if (verdict == 1)
            return outbox_mark(e, r->id, "suppressed", reason) == 0 ? HANDLED : FAILED;
        return move_due(e, r, due) == 0 ? HANDLED : FAILED;
    }
    if (!network) {
        int rc = kind == CHANNEL_FILE ? write_file(e, r, err, sizeof err)
                 : kind == CHANNEL_TASK ? deliver_task(e, r, err, sizeof err) : 0;
        if (rc != 0) {
            engine_logf(e, "error", "channel '%s': %s", r->channel, err);
            return outbox_mark_retry(e, r->id, now + TEND_MINUTE, err) == 0 ? HANDLED : FAILED;
        }
        e->stats.deliveries++;
        metrics_inc(e->metrics, M_DELIVERIES, r->channel);
        metrics_observe(e->metrics, M_DELIVERY_LATENCY, (const char *const[]){r->channel},
                        metrics_now() - (double)r->due_at);
        return outbox_mark_sent(e, r->id, now, NULL) == 0 ? HANDLED : FAILED;
    }
    struct transfer *t = transfer_new(e, r, &ch->conf, err, sizeof err);
    if (!t) {
        if (took)
            slot->in_flight--;
        return outbox_mark_dead(e, r->id, now, err, NULL) == 0 ? HANDLED : FAILED;
    }
    if (!slot) {
        if (claim(e, r) != 0) {
            transfer_free(t);
            return FAILED;
        }
        *blocking = t;
        return BLOCKING;
    }
    if (p->nclaim == OUTBOX_BATCH && claim_flush(e, p) != 0) {
        transfer_free(t);
        if (took)
            slot->in_flight--;
        return FAILED;
    }
    p->claim_id[p->nclaim] = r->id;
    p->claim_transfer[p->nclaim] = t;
    p->claim_due[p->nclaim++] = r->due_at;
    t->d = d;
    if (took) {
        start_transfer(d, t);
        return HANDLED;
    }
    t->next = NULL;     /* claimed ahead: waits for a slot of its channel */
    if (slot->ready_tail)
        slot->ready_tail->next = t;
    else
        slot->ready = t;
    slot->ready_tail = t;
    slot->nready++;
    d->nready++;
    return HANDLED;
}

/* Ends the pass's transaction: file lines reach the disk before it commits,
 * and go if it does not. */
static int finish(engine *e, int rc)
{
    char err[300];
    if (rc == 0 && filesink_sync(e, err, sizeof err) != 0) {
        engine_logf(e, "error", "file channel: %s", err);
        rc = -1;
    }
    if (rc == 0 && store_commit(e->st) == 0)
        return 0;
    if (store_in_batch(e->st))
        store_rollback(e->st);
    filesink_discard(e);
    return -1;
}

/* 1 when every channel the loop sends through is at its limit: a pass now
 * would read due rows only to leave them. A finishing transfer starts the
 * next pass. */
static int all_slots_full(struct dispatcher *d)
{
    if (!d || !d->net || d->nslots == 0 || d->in_flight == 0)
        return 0;
    for (int i = 0; i < d->nslots; i++)
        if (d->slots[i].in_flight < d->slots[i].concurrency || can_queue(&d->slots[i]))
            return 0;
    return 1;
}

/* How many due rows to read at a time: as many as the network channels
 * have free slots (a pass after a few transfers ended reads a few rows, not
 * a whole batch it would leave), at least a small chunk for the rest. */
static int chunk_size(struct dispatcher *d, int max)
{
    int chunk = max;
    if (d && d->net && d->nslots > 0) {
        int free_slots = 0;
        for (int i = 0; i < d->nslots; i++) {
            const struct chan_slot *c = &d->slots[i];
            if (c->in_flight < c->concurrency)
                free_slots += c->concurrency - c->in_flight;
            if (c->rate <= 0)
                free_slots += c->ahead - c->nready;
        }
        chunk = free_slots > 16 ? free_slots : 16;
    }
    return chunk < max ? chunk : max;
}

int dispatch_run_due(engine *e, tend_time now, int max)
{
    if (e->dispatch && e->dispatch->stopping)
        return 0;
    if (all_slots_full(e->dispatch))
        return 0;
    struct pass p = {0};
    int handled = 0, seen = 0;
    /* The rows are read inside the transaction that claims them. */
    int rc = store_begin(e->st);
    tend_time after_at = INT64_MIN;
    int64_t after_id = INT64_MIN;
    struct row *rows = NULL;
    int cap = 0;
    /* At most `max` due rows are looked at, in chunks: a row of a channel
     * with no free slot is passed over, and the rows after it still go. */
    while (rc == 0 && seen < max && !all_slots_full(e->dispatch)) {
        int want = chunk_size(e->dispatch, max - seen);
        if (want > cap)
            rows = xrealloc(rows, (size_t)(cap = want) * sizeof *rows);
        int n = read_due(e, now, after_at, after_id, want, rows);
        if (n == 0)
            break;
        seen += n;
        after_at = rows[n - 1].due_at;
        after_id = rows[n - 1].id;
        int i = 0;
        for (; i < n && rc == 0 && !all_slots_full(e->dispatch); i++) {
            struct row *r = &rows[i];
            if (!r->customer) {
                /* a due entry without its row: drop it */
                store_stmt *d = store_sql(e->st, "DELETE FROM outbox_due WHERE due_at = ? AND id = ?");
                store_bind_int(d, 1, r->due_at);
                store_bind_int(d, 2, r->id);
                rc = store_run(d);
                continue;
            }
            struct transfer *t = NULL;
            int k = deliver(e, &p, r, &t);
            if (k == FAILED) {
                rc = -1;
            } else if (k == BLOCKING) {
                /* No loop attached (tools, tests): the claim commits, the
                 * transfer runs with no transaction open, its result commits.
                 * A crash in between leaves the claim's lease to expire. */
                rc = finish(e, claim_flush(e, &p));
                t->result = curl_easy_perform(t->easy);
                curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
                if (rc == 0)
                    rc = store_begin(e->st);
                if (rc == 0)
                    rc = record_result(e, t, NULL, NULL);
                transfer_free(t);
                handled++;
            } else if (k == SKIPPED) {
                /* its entry stays in the queue: the claims before it are
                 * written now, so a batch of claims is a run of
                 * consecutive entries (outbox_claim_many moves them at once) */
                rc = claim_flush(e, &p);
            } else {
                handled += k;
            }
        }
        if (rc == 0)
            rc = claim_flush(e, &p);
        for (int j = 0; j < n; j++)
            row_free(&rows[j]);
        if (i < n || n < want)   /* stopped early, or nothing more is due */
            break;
    }
    free(rows);
    pass_free(&p);
    /* The claims' requests go out now, and travel while the commit below
     * (or on_flush's) waits for the disk. A crash before that commit leaves
     * the rows queued: they go again with the same key, as an expired
     * lease would. A result is stored only in a later transaction. */
    if (rc == 0 && e->dispatch && e->dispatch->added) {
        e->dispatch->added = 0;
        netloop_kick(e->dispatch->net);
    }
    if (!store_in_batch(e->st))   /* a failed begin (after a blocking transfer) */
        return rc == 0 ? handled : -1;
    return finish(e, rc) == 0 && rc == 0 ? handled : -1;
}

static int busy(void *ud)
{
    struct dispatcher *d = ud;
    return d->in_flight + d->nready + d->ndone + d->committing > 0;
}

int dispatch_wait(engine *e, int timeout_ms)
{
    struct dispatcher *d = e->dispatch;
    if (!d || !d->net)
        return 0;
    return netloop_wait(d->net, busy, d, timeout_ms);
}
