/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_redactor: the task's secrets, and every form of them a command's output could carry: the
 * value, its base64 (standard and URL-safe, at each of the three alignments inside a longer
 * encoding), its URL-encoding (both hex cases) and its JSON-escaped form. Each occurrence becomes
 * "[REDACTED:name]". A stream keeps back the last few bytes of a chunk (fewer than the longest
 * form) so a value split across two chunks is still caught; it lets them go at its end. Freeing
 * the redactor wipes every copy of the values it held (explicit_bzero). Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

/* The shortest value accepted: shorter ones would redact ordinary text. */
#define CDN_SECRET_MIN_BYTES 8u
#define CDN_SECRET_MAX_BYTES (64u * 1024u)

struct cdn_redactor;

int cdn_redactor_new(struct cdn_redactor **out, cdn_err **err);
void cdn_redactor_free(struct cdn_redactor *r);
void cdn_redactor_freep(struct cdn_redactor **r);
/* Adds a secret (value copied; name: letters, digits, '-', '_', '.'). */
int cdn_redactor_add(struct cdn_redactor *r, const char *name, const uint8_t *value, size_t len,
                     cdn_err **err);
bool cdn_redactor_empty(const struct cdn_redactor *r);

/* A whole text: a new allocation with every form replaced (*out_len set). NULL: no memory. */
char *cdn_redact(const struct cdn_redactor *r, const char *s, size_t len, size_t *out_len);

/* One stream of output (a command's stdout, say). */
struct cdn_redact_stream {
    struct cdn_buf held;
};
typedef int (*cdn_redact_sink)(void *ud, const uint8_t *p, size_t n);
/* Feeds n bytes; what is certain is passed to sink (redacted), the tail that could still begin a
 * secret is kept. With final, everything left goes out. Returns sink's first negative return. */
int cdn_redact_feed(const struct cdn_redactor *r, struct cdn_redact_stream *st, const uint8_t *p,
                    size_t n, bool final, cdn_redact_sink sink, void *ud);
void cdn_redact_stream_clear(struct cdn_redact_stream *st);
