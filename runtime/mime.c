/* mime — email messages through GMime 3 (see mime.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <gmime/gmime.h>

#include "mime.h"
#include "util.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int initialised;

static void init_once(void)
{
    g_mime_init();
    initialised = 1;
}

void mime_init(void)
{
    pthread_once(&once, init_once);
}

void mime_shutdown(void)
{
    if (initialised)
        g_mime_shutdown();
    initialised = 0;
}

static int has_crlf(const char *s)
{
    return strchr(s, '\r') || strchr(s, '\n');
}

int mime_address_ok(const char *addr)
{
    const char *at = addr ? strchr(addr, '@') : NULL;
    if (!at || at == addr || !at[1] || strchr(at + 1, '@'))
        return 0;
    for (const char *p = addr; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '<' || *p == '>' ||
            *p == ',' || *p == ';' || *p == '"')
            return 0;
    return 1;
}

int mime_parse_from(const char *from, char *name, size_t namelen, char *addr, size_t addrlen,
                    char *err, size_t errlen)
{
    if (!from || has_crlf(from)) {
        snprintf(err, errlen, "'from' must be one line like \"Care <care@example.com>\"");
        return -1;
    }
    const char *lt = strrchr(from, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;
    const char *a = from, *a_end = from + strlen(from);
    const char *n = "", *n_end = n;
    if (lt) {
        if (!gt || gt[1 + strspn(gt + 1, " \t")]) {
            snprintf(err, errlen, "'from' '%s': the address must end with '>'", from);
            return -1;
        }
        a = lt + 1;
        a_end = gt;
        n = from;
        n_end = lt;
    }
    while (a < a_end && (*a == ' ' || *a == '\t')) a++;
    while (a_end > a && (a_end[-1] == ' ' || a_end[-1] == '\t')) a_end--;
    while (n < n_end && (*n == ' ' || *n == '\t')) n++;
    while (n_end > n && (n_end[-1] == ' ' || n_end[-1] == '\t')) n_end--;
    if (n_end - n >= 2 && *n == '"' && n_end[-1] == '"') {
        n++;
        n_end--;
    }
    snprintf(addr, addrlen, "%.*s", (int)(a_end - a), a);
    snprintf(name, namelen, "%.*s", (int)(n_end - n), n);
    if (!mime_address_ok(addr)) {
        snprintf(err, errlen, "'from' '%s' has no address like care@example.com", from);
        return -1;
    }
    return 0;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* A header value as RFC 2047 encoded words, folded: " =?UTF-8?B?...?=\n"
 * per line. Each word holds at most 39 bytes of text, cut at a character
 * boundary, so a word is under 75 characters and the first line, after
 * "Subject: ", under 78 (GMime 3.2 makes one word of any length). */
static char *encoded_words(const char *text)
{
    strbuf b;
    strbuf_init(&b);
    size_t n = strlen(text), i = 0;
    while (i < n) {
        size_t take = n - i < 39 ? n - i : 39;
        while (take < n - i && ((unsigned char)text[i + take] & 0xC0) == 0x80)
            take--;                     /* never split a UTF-8 sequence */
        gchar *b64 = g_base64_encode((const guchar *)text + i, take);
        strbuf_printf(&b, " =?UTF-8?B?%s?=\n", b64);
        g_free(b64);
        i += take;
    }
    return strbuf_take(&b);
}

/* Sets a header's value as written (raw: leading space, folded lines,
 * final newline); takes `raw`. */
static void set_raw(GMimeMessage *msg, const char *name, char *raw)
{
    GMimeHeader *h = g_mime_header_list_get_header(g_mime_object_get_header_list(GMIME_OBJECT(msg)), name);
    if (h)
        g_mime_header_set_raw_value(h, raw);
    free(raw);
}

/* A body part: UTF-8 text, quoted-printable when it is mostly ASCII and
 * base64 otherwise (GMime picks by the content), never 8bit. */
static GMimeObject *text_part(const char *subtype, const char *text)
{
    GMimeTextPart *p = g_mime_text_part_new_with_subtype(subtype);
    g_mime_text_part_set_text(p, text);
    g_mime_text_part_set_charset(p, "utf-8");
    GMimeContentEncoding enc = g_mime_part_get_best_content_encoding(GMIME_PART(p), GMIME_ENCODING_CONSTRAINT_7BIT);
    if (enc != GMIME_CONTENT_ENCODING_BASE64)
        enc = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;   /* also wraps long ASCII lines */
    g_mime_part_set_content_encoding(GMIME_PART(p), enc);
    return GMIME_OBJECT(p);
}

char *mime_build(const struct mime_mail *m, char *err, size_t errlen)
{
    char name[256], addr[256];
    if (mime_parse_from(m->from, name, sizeof name, addr, sizeof addr, err, errlen) != 0)
        return NULL;
    if (!mime_address_ok(m->to)) {
        snprintf(err, errlen, "'%s' is not an email address", m->to ? m->to : "");
        return NULL;
    }
    if ((m->subject && has_crlf(m->subject)) || (m->to_name && has_crlf(m->to_name))) {
        snprintf(err, errlen, "a subject or name must be one line");
        return NULL;
    }
    mime_init();
    GMimeMessage *msg = g_mime_message_new(TRUE);
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_FROM, name, addr);
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_TO, m->to_name ? m->to_name : "", m->to);
    g_mime_message_set_subject(msg, m->subject ? m->subject : "", "utf-8");
    if (m->subject && !is_ascii(m->subject))
        set_raw(msg, "Subject", encoded_words(m->subject));
    GDateTime *date = g_date_time_new_from_unix_utc(m->date);
    g_mime_message_set_date(msg, date);
    g_date_time_unref(date);

    /* The key makes every attempt of a message share its id; the store's
     * salt keeps two stores (or a restored backup) from colliding. */
    char *id;
    if (m->id_salt) {
        gchar *h = g_compute_hmac_for_string(G_CHECKSUM_SHA256, (const guchar *)m->id_salt,
                                             strlen(m->id_salt), m->key, -1);
        id = xasprintf("%s.%.16s@%s", m->key, h, strchr(addr, '@') + 1);
        g_free(h);
    } else {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            rnd = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&rnd;
        id = xasprintf("%s.%016llx@%s", m->key, (unsigned long long)rnd, strchr(addr, '@') + 1);
    }
    g_mime_message_set_message_id(msg, id);
    free(id);

    if (m->unsubscribe_url && !has_crlf(m->unsubscribe_url)) {
        /* a URL as is: GMime would fold a long one into encoded words,
         * which no mail program reads as a link */
        g_mime_object_set_header(GMIME_OBJECT(msg), "List-Unsubscribe", "<>", NULL);
        set_raw(msg, "List-Unsubscribe", xasprintf(" <%s>\n", m->unsubscribe_url));
        g_mime_object_set_header(GMIME_OBJECT(msg), "List-Unsubscribe-Post", "List-Unsubscribe=One-Click", NULL);
    }

    GMimeObject *plain = text_part("plain", m->text ? m->text : "");
    if (m->html) {
        GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
        GMimeObject *html = text_part("html", m->html);
        g_mime_multipart_add(alt, plain);   /* the last part is the preferred one */
        g_mime_multipart_add(alt, html);
        g_object_unref(plain);
        g_object_unref(html);
        g_mime_message_set_mime_part(msg, GMIME_OBJECT(alt));
        g_object_unref(alt);
    } else {
        g_mime_message_set_mime_part(msg, plain);
        g_object_unref(plain);
    }

    GMimeFormatOptions *opts = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(opts, GMIME_NEWLINE_FORMAT_DOS);
    char *wire = g_mime_object_to_string(GMIME_OBJECT(msg), opts);
    g_mime_format_options_free(opts);
    g_object_unref(msg);
    char *out = xstrdup(wire);
    g_free(wire);
    return out;
}
