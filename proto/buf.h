/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_buf: a growable byte queue (append at the tail, consume at the head) for frame I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A value type, not opaque: it is embedded in the structs of the modules that use it.
 * Bytes [head, tail) are queued; [tail, cap) is free room. */
struct cdn_buf {
    uint8_t *data;
    size_t head;
    size_t tail;
    size_t cap;
};

/* Makes room for at least n more bytes at the tail; returns 0 or -ENOMEM. */
int cdn_buf_reserve(struct cdn_buf *b, size_t n);
int cdn_buf_append(struct cdn_buf *b, const void *p, size_t n);
static inline size_t cdn_buf_len(const struct cdn_buf *b) { return b->tail - b->head; }
/* An empty, never-grown buffer has no storage: its head is an empty string, not NULL + 0. */
static inline const uint8_t *cdn_buf_head(const struct cdn_buf *b) {
    return b->data ? b->data + b->head : (const uint8_t *)"";
}
static inline uint8_t *cdn_buf_tail(struct cdn_buf *b) { return b->data + b->tail; }
static inline size_t cdn_buf_room(const struct cdn_buf *b) { return b->cap - b->tail; }
static inline void cdn_buf_advance(struct cdn_buf *b, size_t n) { b->tail += n; }
void cdn_buf_consume(struct cdn_buf *b, size_t n);
/* Writes queued bytes to a (non-blocking) fd; returns bytes written, 0 on EAGAIN, -errno. */
ssize_t cdn_buf_write_fd(struct cdn_buf *b, int fd);
/* Drops everything queued and releases memory above keep_cap bytes. */
void cdn_buf_clear(struct cdn_buf *b, size_t keep_cap);
void cdn_buf_free(struct cdn_buf *b);
