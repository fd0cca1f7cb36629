/* fetch — guarded GETs (see fetch.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "fetch.h"
#include "json.h"
#include "util.h"

#define FETCH_MAX_BODY (1 << 20)

int fetch_host_allowed(engine *e, const char *host)
{
    for (char **p = e->cfg.http_allow; p && *p; p++) {
        const char *rule = *p;
        if (strncmp(rule, "*.", 2) == 0) {
            size_t hl = strlen(host), rl = strlen(rule + 1);   /* ".x.com" */
            if (hl > rl && strcasecmp(host + hl - rl, rule + 1) == 0)
                return 1;
        } else if (strcasecmp(rule, host) == 0) {
            return 1;
        }
    }
    return 0;
}

struct body {
    strbuf b;
    int too_big;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct body *body = ud;
    if (body->b.len + size * n > FETCH_MAX_BODY) {
        body->too_big = 1;
        return 0;
    }
    strbuf_add(&body->b, p, size * n);
    return size * n;
}

static cJSON *response(long status, const char *text, size_t len)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "status", (double)status);
    cJSON_AddStringToObject(r, "body", text ? text : "");
    char err[64];
    cJSON *j = text && len ? json_parse(text, len, err, sizeof err) : NULL;
    if (j)
        cJSON_AddItemToObject(r, "json", j);
    return r;
}

cJSON *fetch_get(engine *e, const char *url, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    cJSON *out = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(err, errlen, "'%s' is not a URL", url);
        goto done;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(err, errlen, "'%s': only http and https are allowed", url);
        goto done;
    }
    if (!fetch_host_allowed(e, host)) {
        snprintf(err, errlen, "host '%s' is not in http_allow (tend.lua)", host);
        goto done;
    }
    if (e->http_stubs) {   /* a sim: the stubs are the whole world */
        const cJSON *stub = cJSON_GetObjectItemCaseSensitive(e->http_stubs, url);
        if (!stub) {
            snprintf(err, errlen, "no stub for %s (use sim:stub_http)", url);
            goto done;
        }
        if (cJSON_IsString(stub)) {
            out = response(200, stub->valuestring, strlen(stub->valuestring));
        } else {
            out = cJSON_Duplicate(stub, 1);
            if (!cJSON_GetObjectItemCaseSensitive(out, "status"))
                cJSON_AddNumberToObject(out, "status", 200);
            const cJSON *body = cJSON_GetObjectItemCaseSensitive(out, "body");
            if (cJSON_IsString(body) && !cJSON_GetObjectItemCaseSensitive(out, "json")) {
                char jerr[64];
                cJSON *j = json_parse(body->valuestring, strlen(body->valuestring), jerr, sizeof jerr);
                if (j)
                    cJSON_AddItemToObject(out, "json", j);
            }
        }
        goto done;
    }
    CURL *c = curl_easy_init();
    struct body body = {{0}, 0};
    strbuf_init(&body.b);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tend/0.1");
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "GET %s: %s", url, body.too_big ? "body larger than 1 MiB" : curl_easy_strerror(rc));
    } else {
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        out = response(status, body.b.s, body.b.len);
    }
    strbuf_free(&body.b);
    curl_easy_cleanup(c);
done:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return out;
}
