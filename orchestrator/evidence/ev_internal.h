/* SPDX-License-Identifier: Apache-2.0 */
/* The evidence folder's state, shared by its files (internal to cdn_evidence). */
#pragma once

#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>

#include "evidence.h"
#include "redact.h"

/* A file being written with its running SHA-256. */
struct ev_stream {
    int fd;
    EVP_MD_CTX *md;
    uint64_t bytes;
    char *path;
};
int ev_stream_open(struct ev_stream *s, const char *path, cdn_err **err);
int ev_stream_write(struct ev_stream *s, const void *p, size_t n, cdn_err **err);
/* Closes (written, not yet synced: cdn_evidence_close syncs the folder); hex gets the digest (65
 * bytes). */
int ev_stream_close(struct ev_stream *s, char hex[65], cdn_err **err);
void ev_stream_abort(struct ev_stream *s);

struct cdn_evidence {
    char *dir;      /* tasks/<id>/evidence */
    json_t *root;   /* the manifest */
    json_t *cmds;   /* root.commands */
    json_t *arts;   /* root.artifacts */
    json_t *limits; /* root.limits_hit */
    unsigned ncmds;
    int audit_fd;         /* audit.jsonl, opened at the first line (-1 before) */
    uint64_t seq;         /* its lines so far */
    char head[65];        /* the SHA-256 of its last line (64 zeros before the first) */
    struct ev_stream art; /* the artifact being written (fd -1 if none) */
    char *art_name;
    const struct cdn_redactor *redactor; /* borrowed; NULL: no secrets */
};

/* One line on the audit trail (event; value taken), chained to the one before; with key, value
 * is also appended to the manifest's array key (a reader merges those until the next save). */
int ev_audit_append(struct cdn_evidence *ev, const char *event, const char *key, json_t *value,
                    cdn_err **err);
/* ISO 8601 UTC with milliseconds, for the manifest. */
void ev_now(char out[32]);
