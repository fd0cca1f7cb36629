/* unsub — signed one-click unsubscribe tokens (RFC 8058 links).
 *
 * A token names a customer and a channel and carries an HMAC-SHA256 over
 * both, keyed with the installation's secret, so a link cannot be forged
 * or pointed at another customer, and needs no state to check. Layout:
 *   base64url(customer) "." base64url(channel) "." hex(HMAC)[0..32]
 * The secret: the config's `unsubscribe_secret`, else $TEND_UNSUBSCRIBE_SECRET,
 * else one generated once and kept in the store (meta key
 * "unsubscribe_secret"), so links in mail already sent stay valid across
 * restarts.
 *
 * Leaf module: takes the store and the settings it needs as arguments. */
#ifndef TEND_UNSUB_H
#define TEND_UNSUB_H

#include <stddef.h>

#include "store.h"

/* The secret (malloc'd): configured, else from the environment, else the
 * store's (made now if absent). NULL if the store fails. */
char *unsub_secret(const char *configured, store *st);

/* A random secret kept in the store under meta_key: read, or made (32
 * random bytes as hex) and stored the first time. malloc'd; NULL if the
 * store fails. Also used for the Message-ID salt (mime.h). */
char *unsub_store_random(store *st, const char *meta_key);

/* The token for customer + channel, malloc'd. */
char *unsub_token(const char *secret, const char *customer, const char *channel);

/* Checks a token: 0 with *customer and *channel malloc'd (the caller frees),
 * -1 with err when it is malformed or the signature does not match. */
int unsub_verify(const char *secret, const char *token, char **customer, char **channel,
                 char *err, size_t errlen);

#endif
