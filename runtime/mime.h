/* mime — an email message as it goes on the wire, built with GMime 3.
 *
 * What it owns: turning a rendered message (subject, text, optional HTML)
 * into an RFC 5322 message with CRLF line ends:
 *   - From with a display name (RFC 2047 encoded words for a Chinese name),
 *     separate from the envelope sender the caller gives SMTP;
 *   - a Subject folded into encoded words when it is not plain ASCII;
 *   - text/plain alone, or multipart/alternative with text/html after it;
 *     each body quoted-printable (mostly ASCII) or base64 (mostly not), so
 *     no line is over 76 characters and the message is 7-bit clean;
 *   - a Message-ID <key.random@from-domain>: the random part is 64 bits of
 *     HMAC(id_salt, key), so every attempt of one message has the same id
 *     and two stores (each with its own salt) never share one;
 *   - List-Unsubscribe and List-Unsubscribe-Post: List-Unsubscribe=One-Click
 *     (RFC 8058) when an unsubscribe URL is given.
 * GMime is initialised once per process (mime_init is idempotent and
 * thread-safe); mime_shutdown releases it at exit.
 *
 * Nothing here knows the engine: the caller passes every field. */
#ifndef TEND_MIME_H
#define TEND_MIME_H

#include <stddef.h>
#include <stdint.h>

void mime_init(void);
void mime_shutdown(void);

/* Splits a From setting: `Care <care@example.com>`, `"关爱 Care"
 * <care@example.com>` or a bare `care@example.com`. Writes the address
 * (no brackets) into addr and the display name (possibly "") into name.
 * -1 with err if there is no single address with one '@', or CR/LF. */
int mime_parse_from(const char *from, char *name, size_t namelen, char *addr, size_t addrlen,
                    char *err, size_t errlen);

/* 1 if `addr` is a usable recipient address: one '@' with text on both
 * sides, no blanks, CR, LF, '<' or '>'. */
int mime_address_ok(const char *addr);

struct mime_mail {
    const char *from;           /* the From setting, as mime_parse_from takes it */
    const char *to;             /* the recipient's address */
    const char *to_name;        /* the recipient's name, or NULL */
    const char *subject;        /* may be NULL */
    const char *text;           /* the plain body (required) */
    const char *html;           /* the HTML body, or NULL */
    const char *key;            /* the message's idempotency key (Message-ID left part) */
    const char *id_salt;        /* a secret of this store for the Message-ID; NULL = random */
    int64_t date;               /* epoch seconds */
    const char *unsubscribe_url;    /* marketing: the one-click URL, or NULL */
};

/* The message, malloc'd (the caller frees), or NULL with err. */
char *mime_build(const struct mime_mail *m, char *err, size_t errlen);

#endif
