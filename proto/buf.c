/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_buf: byte queue with compaction, so a long-lived channel does not creep in memory. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cdn_buf_reserve(struct cdn_buf *b, size_t n) {
    if (b->cap - b->tail >= n)
        return 0;
    size_t used = b->tail - b->head;
    /* Compact first: reuse the consumed head before growing. */
    if (b->head > 0) {
        memmove(b->data, b->data + b->head, used);
        b->head = 0;
        b->tail = used;
        if (b->cap - b->tail >= n)
            return 0;
    }
    if (n > SIZE_MAX / 2 - used)
        return -ENOMEM;
    size_t want = used + n, cap = b->cap ? b->cap : 4096;
    while (cap < want)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cdn_buf_append(struct cdn_buf *b, const void *p, size_t n) {
    int r = cdn_buf_reserve(b, n);
    if (r < 0)
        return r;
    if (n)
        memcpy(b->data + b->tail, p, n);
    b->tail += n;
    return 0;
}

void cdn_buf_consume(struct cdn_buf *b, size_t n) {
    if (n > b->tail - b->head)
        n = b->tail - b->head;
    b->head += n;
    if (b->head == b->tail)
        b->head = b->tail = 0;
}

ssize_t cdn_buf_write_fd(struct cdn_buf *b, int fd) {
    size_t total = 0;
    while (cdn_buf_len(b) > 0) {
        ssize_t n = write(fd, cdn_buf_head(b), cdn_buf_len(b));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        cdn_buf_consume(b, (size_t)n);
        total += (size_t)n;
    }
    return (ssize_t)total;
}

void cdn_buf_clear(struct cdn_buf *b, size_t keep_cap) {
    b->head = b->tail = 0;
    if (b->cap > keep_cap) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

void cdn_buf_free(struct cdn_buf *b) {
    free(b->data);
    *b = (struct cdn_buf){0};
}
